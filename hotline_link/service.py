"""The main job: one ARI application per configured hotline, until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
import structlog

from agi.server import AgiServer
from ari_app.app import HotlineApp

from .outcomes import OutcomeSink
from .persistence import warn_if_not_durable
from .redisconn import connect
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
    sink = OutcomeSink(redis, settings.spool_dir, settings.redis.durable)
    apps = [HotlineApp(settings, h, redis, sink) for h in settings.hotlines.values()]
    by_id = {app.hotline.id: app for app in apps}
    # FastAGI shares the loop, the Redis client and its timeouts with the ARI applications.
    agi = AgiServer(settings, load_catalog(), redis,
                    app_ready=lambda hid: by_id[hid].ari.connected)
    await agi.start()
    log.info("service starting", hotlines=list(settings.hotlines), config=list(settings.sources))
    await warn_if_not_durable(redis, log)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(sink.run(), name="outcome-replay")
            for app in apps:
                tg.create_task(app.run(), name=f"ari-{app.hotline.id}")
    except asyncio.CancelledError:
        log.info("service stopping")
    finally:
        await agi.close()
        with contextlib.suppress(Exception):
            await redis.aclose()


async def until_signal(*jobs) -> None:
    """Run ``jobs`` (coroutines that clean up when cancelled) until SIGINT/SIGTERM."""
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main.cancel)
    try:
        await asyncio.gather(*jobs)
    except asyncio.CancelledError:
        pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
