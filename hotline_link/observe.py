"""What the service shows of itself: ``GET /metrics`` (Prometheus) and ``GET /health`` on its own
HTTP address (``service.http``; per hot-standby instance ``ha.instances.<name>.http``; loopback by
default), and each hotline's live gauges written to Redis every second (``contracts.names.LIVE``)
for the sidecar's API.

Everything is read from the applications' desks at the moment it is asked for: nothing is counted
on a call's path, and a scrape costs the service what one small HTTP request costs. Neither the
HTTP endpoint nor the Redis write can stop or slow a call: a port already taken is logged and the
service runs on without it; a Redis write that fails is skipped until the next second.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from contracts.names import LIVE, LIVE_PERIOD, LIVE_TTL
from transfer.delivery import gauges

from .lease import Lease
from .outcomes import RecordSink

if TYPE_CHECKING:
    from ari_app.app import HotlineApp

log = structlog.get_logger("observe")

AGENT_STATES = ("free", "busy", "offline")


@dataclass
class View:
    """The running service as the endpoint sees it. ``apps`` is the service's own dict: this
    term's applications, empty while the instance stands by."""
    instance: str | None
    apps: dict[str, "HotlineApp"]
    sinks: tuple[RecordSink, ...]
    lease: Lease | None

    @property
    def role(self) -> str:
        if self.lease is None:
            return "single"
        return "active" if self.apps else "standby"

    def hotlines(self) -> dict[str, dict]:
        now = time.monotonic()
        return {hid: {"ari_connected": app.ari.connected, **asdict(gauges(app.desk, now)),
                      **transfer_gauges(app)}
                for hid, app in self.apps.items()}


def transfer_gauges(app: "HotlineApp") -> dict[str, int]:
    """Transfers this hotline started that are not over: all, and those with both agents on
    the line with the caller (three-way and emergency: the consultation, 三方会商)."""
    active = list(app.transfers.active.values())
    return {"transfers": len(active), "three_way": sum(1 for t in active if t.conference)}


class _Collector:
    def __init__(self, view: View):
        self.view = view

    def collect(self):
        v = self.view
        inst = v.instance or ""
        active = GaugeMetricFamily("hotline_service_active",
                                   "1 while this instance acts on calls (holds the lease, or is "
                                   "the only instance)", labels=["instance"])
        active.add_metric([inst], 0 if v.role == "standby" else 1)
        yield active
        spooled = GaugeMetricFamily("hotline_records_spooled",
                                    "Records kept in the local spool until Redis (and its "
                                    "replica) has them", labels=["kind"])
        for sink in v.sinks:
            spooled.add_metric([sink.kind.name], sink.spooled())
        yield spooled
        families = {
            "ari_connected": GaugeMetricFamily(
                "hotline_ari_connected", "1 while the hotline's ARI application is connected",
                labels=["hotline"]),
            "waiting": GaugeMetricFamily(
                "hotline_callers_waiting", "Callers waiting for an agent (held or ringing one)",
                labels=["hotline"]),
            "longest_wait_s": GaugeMetricFamily(
                "hotline_longest_wait_seconds", "How long the caller waiting longest has waited",
                labels=["hotline"]),
            "calls": GaugeMetricFamily(
                "hotline_calls_in_progress", "Calls the hotline holds now, any state",
                labels=["hotline"]),
            "surge": GaugeMetricFamily(
                "hotline_surge", "1 while the hotline's surge plan is on (overflow seats take "
                "callers)", labels=["hotline"]),
            "transfers": GaugeMetricFamily(
                "hotline_transfers_in_progress", "Transfers the hotline started that are not "
                "over yet", labels=["hotline"]),
            "three_way": GaugeMetricFamily(
                "hotline_three_way_calls", "Of those, three-way and emergency calls (both agents "
                "with the caller)", labels=["hotline"]),
        }
        agents = GaugeMetricFamily("hotline_agents", "The hotline's agents by state (free: "
                                   "registered and idle; busy: on a call or rung; offline: not "
                                   "registered)", labels=["hotline", "state"])
        requests = CounterMetricFamily("hotline_ari_requests",
                                       "ARI REST requests the service sent to the hotline's PBX",
                                       labels=["hotline"])
        for hid, app in v.apps.items():
            requests.add_metric([hid], app.ari.requests)
        for hid, h in v.hotlines().items():
            for key, family in families.items():
                family.add_metric([hid], float(h[key]))
            for state in AGENT_STATES:
                n = h[f"agents_{state}"]
                if n is not None:           # unknown before the first look: no figure invented
                    agents.add_metric([hid, state], n)
        yield from families.values()
        yield agents
        yield requests


def _registry(view: View) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(_Collector(view))
    ProcessCollector(registry=registry)
    return registry


def web_app(view: View) -> web.Application:
    registry = _registry(view)

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(_request: web.Request) -> web.Response:
        hotlines = view.hotlines()
        # A standby is healthy while it waits; an acting instance when every PBX is connected.
        ok = view.role == "standby" or (bool(hotlines) and
                                        all(h["ari_connected"] for h in hotlines.values()))
        body = {"ok": ok, "instance": view.instance, "role": view.role, "hotlines": hotlines,
                "spooled": {s.kind.name: s.spooled() for s in view.sinks}}
        return web.json_response(body, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    return app


async def serve_http(view: View, address: tuple[str, int] | None) -> None:
    """Serve until cancelled. A port that cannot be bound costs the endpoint, not the service."""
    if address is None:
        return
    runner = web.AppRunner(web_app(view), access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, *address).start()
        except OSError as exc:
            log.error("cannot serve /metrics and /health; the service runs on without them",
                      address=f"{address[0]}:{address[1]}", error=str(exc))
            return
        log.info("serving /metrics and /health", address=f"{address[0]}:{address[1]}")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


async def publish_live(redis: aioredis.Redis, view: View, period: float = LIVE_PERIOD) -> None:
    """Each hotline's gauges to Redis every ``period`` seconds while this instance acts."""
    while True:
        await asyncio.sleep(period)
        if not view.apps:
            continue
        at = time.time()
        pipe = redis.pipeline(transaction=False)
        for hid, h in view.hotlines().items():
            pipe.set(LIVE.format(hid), json.dumps({**h, "at": at}), ex=LIVE_TTL)
        try:
            await pipe.execute()
        except RedisError as exc:
            log.debug("live gauges not written", error=str(exc))
