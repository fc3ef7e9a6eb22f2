"""The main job: one ARI application per configured hotline, until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
import structlog

from agi.server import AgiServer
from ari_app.app import HotlineApp
from ari_app.client import AppReplaced, AriFenced
from contracts.names import SERVICE_LEASE

from .lease import Lease, LeaseLost
from .observe import View, publish_live, serve_http
from .outcomes import CALL, OutcomeSink, RecordSink
from .persistence import warn_if_not_durable
from .redisconn import connect
from .recommender import Recommender
from .settings import Settings, load_catalog

log = structlog.get_logger("service")


async def serve(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then stop cleanly (returns normally)."""
    # Short timeouts: Redis is the hand-off and the restart memory, never on a call's critical
    # path; an unreachable Redis must cost a call milliseconds, not seconds.
    # One retry on a new connection after a connection error: after a Redis restart the pooled
    # connections are dead, and the first write on one (a transfer's state) would otherwise be
    # skipped, leaving a service restarted soon after nothing to carry the transfer on from.
    # Timeouts are not retried: a hung Redis must still cost milliseconds.
    # Under Sentinel the same holds for the sentinels asked where the primary is.
    redis = connect(settings.redis, socket_timeout=0.5, socket_connect_timeout=0.5,
                    retry=Retry(NoBackoff(), 1), retry_on_error=[redis_errors.ConnectionError])
    instance = settings.ha.instance
    # Instances on one host must not replay (and unlink) each other's spool files.
    spool = settings.spool_dir / instance if instance else settings.spool_dir
    sink = OutcomeSink(redis, spool, settings.redis.durable)
    # Call records: their own spool folder (a sink replays every *.json of its folder).
    call_sink = RecordSink(redis, spool / "calls", settings.redis.durable, kind=CALL)
    sinks = (sink, call_sink)
    # With a replica to wait for, a lease claim counts once the replica has it, or when no replica
    # is connected (a failover must not give a standby a primary that lacks our latest renewal).
    lease = (Lease(redis, instance, settings.ha.lease_ttl,
                   replicas=settings.redis.durable_replicas,
                   wait_ms=settings.redis.durable_wait_ms) if instance else None)
    apps: dict[str, HotlineApp] = {}      # this term's applications (none while standing by)

    def app_ready(hid: str) -> bool:
        app = apps.get(hid)
        return app is not None and app.ari.connected and app.ari.allowed()

    # FastAGI shares the loop, the Redis client and its timeouts with the ARI applications. A
    # standby serves it too: `route` and `screen` change no call, and `key` is refused (the
    # application is not connected here).
    catalog = load_catalog()
    # The IVR's recommender: loaded off the event loop; until then ``route`` answers by the
    # catalog's rules (what it costs: README, "Recommender").
    recommender = Recommender(catalog, log)
    recommender.load_in_background()
    agi = AgiServer(settings, catalog, redis, app_ready=app_ready, records=call_sink,
                    recommender=recommender)
    view = View(instance, apps, sinks, lease)
    log.info("service starting", hotlines=list(settings.hotlines), config=list(settings.sources),
             instance=instance)
    try:
        async with asyncio.TaskGroup() as tg:
            # Beside the applications, not before them: a stalled Redis held their connecting
            # up for its timeouts (a second, seen after a restart).
            tg.create_task(warn_if_not_durable(redis, log), name="persistence-check")
            tg.create_task(sink.run(), name="outcome-replay")
            tg.create_task(call_sink.run(), name="call-record-replay")
            tg.create_task(agi.keep_trying(), name="fastagi")
            tg.create_task(serve_http(view, settings.http), name="http")
            tg.create_task(publish_live(redis, view), name="live-gauges")
            if lease is None:
                apps.update(_apps(settings, redis, sinks, None, agi))
                for app in apps.values():
                    tg.create_task(app.run(), name=f"ari-{app.hotline.id}")
            else:
                tg.create_task(_terms(settings, redis, sinks, lease, apps, agi), name="hot-standby")
    except asyncio.CancelledError:
        log.info("service stopping")
    finally:
        if lease is not None:
            await lease.release()
        await agi.close()
        with contextlib.suppress(Exception):
            await redis.aclose()


def _apps(settings: Settings, redis: aioredis.Redis, sinks: tuple[OutcomeSink, RecordSink],
          lease: Lease | None, agi: AgiServer) -> dict[str, HotlineApp]:
    # AMI, where configured, lets a new active instance move on the requests left waiting on
    # the instance it replaced (HotlineApp.rescue_stranded).
    guard, fence = (lease.held, (SERVICE_LEASE, lease.token)) if lease else (None, None)
    return {h.id: HotlineApp(settings, h, redis, *sinks, guard=guard, manager=agi.ami.get(h.id),
                             fence=fence)
            for h in settings.hotlines.values()}


async def _terms(settings: Settings, redis: aioredis.Redis,
                 sinks: tuple[OutcomeSink, RecordSink], lease: Lease,
                 apps: dict[str, HotlineApp], agi: AgiServer) -> None:
    """Hot standby: wait for the lease, act while it is held, stand by again when it is lost.

    Each term starts from nothing, as a restart does: the applications rebuild their view from
    the PBXs' live channels and bridges and Redis's transfer state (what another instance did
    meanwhile is there, not in this process's memory)."""
    while True:
        await lease.acquire()
        started = time.monotonic()
        apps.update(_apps(settings, redis, sinks, lease, agi))
        log.warning("active: this instance holds the lease", instance=lease.instance)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(lease.keep(), name="lease")
                for app in apps.values():
                    tg.create_task(app.run(), name=f"ari-{app.hotline.id}")
        except* (LeaseLost, AriFenced, AppReplaced) as group:
            log.error("standing by: this instance stopped acting", instance=lease.instance,
                      why="; ".join(str(e) or type(e).__name__ for e in group.exceptions),
                      active_s=round(time.monotonic() - started, 1))
        finally:
            apps.clear()
        # Whatever ended the term, the lease is not ours to keep (an application replaced under
        # a held lease means another process is on the PBX: let the lease decide again).
        await lease.release("standby")


async def until_signal(*jobs, stop_within: float | None = None) -> None:
    """Run ``jobs`` (coroutines that clean up when cancelled) until SIGINT/SIGTERM.

    ``stop_within``: the seconds a stop may take after the signal before the process exits
    anyway. A cancellation can be lost inside a task (seen with the sidecar: told to stop just
    after it started, it went on serving for ten minutes and answered no further signal), and a
    process told to stop must not go on working beside the one that replaced it. Not for a
    process whose stop waits for its children (the supervisor)."""
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def stop() -> None:
        main.cancel()
        if stop_within is not None:
            loop.call_later(stop_within, _stopped_anyway, stop_within)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        await asyncio.gather(*jobs)
    except asyncio.CancelledError:
        pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _stopped_anyway(seconds: float) -> None:
    log.error("not stopped within the deadline after the signal; exiting", seconds=seconds)
    logging.shutdown()
    os._exit(1)
