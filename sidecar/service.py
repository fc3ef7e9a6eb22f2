"""The sidecar process: work-order sync, alert forwarding, and its HTTP endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time

import aiohttp
import redis.asyncio as aioredis
import structlog
from aiohttp import web

from contracts.names import ALERTS, ALERTS_GROUP, SERVICE_INSTANCES, SERVICE_LEASE
from contracts.standby import view
from hotline_link.persistence import persistence, warn_if_not_durable
from hotline_link.redisconn import Durable, connect
from hotline_link.recommender import Recommender
from hotline_link.settings import Settings, load_catalog

from . import adapters, analysis
from .access import Clients
from .alerts import Alerts
from .api import Api
from .audit import Audit
from .feedback import Feedback
from .calls import CallStore, thresholds, watch_answer_rate
from .metrics import Metrics
from .settings import AnalysisSettings, Tls
from .supervision import Supervisor
from .sync import Syncer, consume, ensure_group

log = structlog.get_logger("sidecar")

async def forward_alerts(redis: aioredis.Redis, alerts: Alerts, consumer: str,
                         durable: Durable) -> None:
    """Alerts the ARI app raises at the moment they happen (an emergency transfer starting)
    go out as webhooks at once, not after the call's outcome record. An entry is acknowledged
    only once every subscriber has it (or its retries ran out): a sidecar killed in between
    sends it again on restart, under the same alert id (``alert-<entry id>``)."""
    async def done(entry_id: bytes, tasks: list[asyncio.Task]) -> None:
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(aioredis.RedisError, OSError):
            await redis.xack(ALERTS.key, ALERTS_GROUP, entry_id)

    async def forward(entry_id: bytes, fields: dict, _redelivered: bool) -> None:
        try:
            body = ALERTS.payload(fields)
            tasks = alerts.deliver(body.get("kind", "unknown"),
                                   {k: v for k, v in body.items() if k != "kind"},
                                   f"alert-{entry_id.decode()}")
        except (KeyError, ValueError, AttributeError) as exc:
            log.warning("unreadable alert skipped", entry=entry_id, error=str(exc))
            tasks = []
        # Not awaited here: one slow subscriber must not hold the next emergency back.
        pending.add(task := asyncio.create_task(done(entry_id, tasks)))
        task.add_done_callback(pending.discard)

    pending: set[asyncio.Task] = set()
    # A new group starts now: alerts are about the present. ``consume`` hands an alert over once
    # a replica has it (see there): one sent and then lost in a failover would be raised again.
    await consume(redis, ALERTS.key, ALERTS_GROUP, consumer, "$", forward, durable=durable)


def make_app(redis: aioredis.Redis, syncer: Syncer, alerts: Alerts, catalog,
             clients: Clients, hotlines: tuple[str, ...],
             durable: Durable | None = None,
             answer_rate_target: float | None = None,
             recommender: Recommender | None = None,
             *, audit: Audit, analysis_settings: AnalysisSettings) -> web.Application:
    async def health(_request: web.Request) -> web.Response:
        try:
            state = await persistence(redis)
            store = {"reachable": True, **state}
            if not state["durable"]:
                store["warning"] = "Redis persists nothing: a restart loses records and alerts"
        except (aioredis.RedisError, OSError) as exc:
            store = {"reachable": False, "error": str(exc)}
        try:
            # Which service instance acts on the PBXs (hot standby); None with a single one.
            service = view(await redis.get(SERVICE_LEASE),
                           await redis.hgetall(SERVICE_INSTANCES), time.time())
        except (aioredis.RedisError, OSError):
            service = None
        return web.json_response({"ok": True, "synced": syncer.synced, "retries": syncer.retries,
                                  "dead_lettered": syncer.dead, "alerts_sent": alerts.sent,
                                  "alerts_lost": alerts.failed, "redis": store,
                                  "service": service})

    return Api(redis, syncer, catalog, clients, hotlines, durable, answer_rate_target,
               recommender, audit=audit, analysis_settings=analysis_settings).app(health)


def tls_context(tls: Tls | None) -> ssl.SSLContext | None:
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


async def serve(settings: Settings) -> None:
    sc = settings.sidecar
    redis = connect(settings.redis, socket_timeout=5, socket_connect_timeout=2)
    durable = settings.redis.durable
    async with aiohttp.ClientSession() as session:
        metrics = Metrics()
        alerts = Alerts(session, sc.webhooks, timeout=sc.request_timeout, metrics=metrics)
        clients = {pid: adapters.make(session, pid, api, sc.request_timeout, redis)
                   for pid, api in sc.platforms.items()}
        catalog = load_catalog()
        syncer = Syncer(redis, clients, catalog, sc.consumer, sc.retry_for, metrics,
                        stability=sc.stability, disputes=sc.disputes,
                        concurrency=sc.concurrency, request_timeout=sc.request_timeout,
                        durable=durable,
                        elsewhere=frozenset(settings.hotlines) - frozenset(sc.platforms))
        syncer.supervisor = Supervisor(redis, sc, metrics=metrics)
        await warn_if_not_durable(redis, log)
        # The alert group exists before anything can put an alert in the outbox.
        await ensure_group(redis, ALERTS.key, ALERTS_GROUP, "$")
        recommender = Recommender(catalog, log)
        recommender.load_in_background()
        # aiohttp's own access log is off: every request is an audit entry (and a log line).
        runner = web.AppRunner(make_app(redis, syncer, alerts, catalog,
                                        Clients(sc.clients_file, sc.token, settings.hotlines),
                                        tuple(settings.hotlines), durable,
                                        sc.kpi.answer_rate_target, recommender,
                                        audit=Audit(redis, sc.audit_retention_days),
                                        analysis_settings=sc.analysis),
                               access_log=None)
        await runner.setup()
        await web.TCPSite(runner, *sc.listen, ssl_context=tls_context(sc.tls)).start()
        log.info("sidecar listening", listen=f"{sc.listen[0]}:{sc.listen[1]}",
                 tls=sc.tls is not None,
                 platforms={p: f"{c.kind} {c.role} {c.base}" for p, c in clients.items()})
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(syncer.run(), name="sync")
                tg.create_task(forward_alerts(redis, alerts, sc.consumer, durable),
                               name="alerts")
                tg.create_task(syncer.supervisor.run(), name="supervision")
                tg.create_task(Feedback(redis, syncer, durable).watch(clients, sc.status_poll),
                               name="status-watch")
                tg.create_task(CallStore(redis, sc.consumer, thresholds(sc), durable,
                                         callback=syncer.callback_ticket).run(), name="calls")
                tg.create_task(watch_answer_rate(redis, tuple(settings.hotlines),
                                                 sc.kpi.answer_rate_target), name="answer-rate")
                tg.create_task(analysis.watch(redis, sc.analysis), name="early-warning")
        except asyncio.CancelledError:
            log.info("sidecar stopping")
        finally:
            await alerts.drain(2.0)
            await runner.cleanup()
            with contextlib.suppress(Exception):
                await redis.aclose()
            log.info("sidecar stopped")
