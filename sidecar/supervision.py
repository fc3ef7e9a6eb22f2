"""Supervision (督办, R11): every synced matter has deadlines on its owner's ticket.

When both tickets exist, the owner's ticket gets two deadlines from ``sidecar.deadlines`` (by the
record's category, else ``default``): report acceptance within ``accept`` seconds and the final
result within ``final`` seconds, both through ``POST /feedback``. A deadline that passes raises
an ``overdue`` alert once (level 1) and, if it is still open ``escalate`` seconds later, again
(level 2, escalation). Feedback clears what it answers: ``accepted``/``in_progress`` the
acceptance deadline, ``closed`` both.

The deadlines live in one Redis sorted set scored by due time, so they survive restarts; an item
is alerted by whoever removes it from the set (ZREM returns 1 once), so two sidecars never alert
the same item twice.
"""

from __future__ import annotations

import asyncio
import json
import time

import redis.asyncio as aioredis
import structlog

from contracts.names import ALERTS, DEADLINES, OVERDUE, TRAIL
from contracts.vocab import AlertKind

from . import trail
from .metrics import Metrics
from .settings import SidecarSettings
from .sync import ticket_transfer

log = structlog.get_logger("supervision")

STAGES = ("accept", "final")
CLEARS = {"accepted": ("accept",), "in_progress": ("accept",), "closed": ("accept", "final")}


# Who takes a due item also raises its alert (into the outbox) and schedules its escalation, in
# one step: two sidecars never both alert it, and a crash never takes it without alerting.
_TAKE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', ARGV[7], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[6])
if ARGV[8] ~= '' then redis.call('RPUSH', KEYS[4], ARGV[8]) end
return 1
"""


class Supervisor:
    def __init__(self, redis: aioredis.Redis, settings: SidecarSettings, period: float = 0.5,
                 metrics: Metrics | None = None):
        self.redis = redis
        self.metrics = metrics or Metrics()
        self._take = redis.register_script(_TAKE)
        self.settings = settings
        self.period = period
        self.raised = 0

    def schedule(self, pipe, category: str | None, platform: str, ticket: str,
                 now: float | None = None) -> None:
        """Deadlines for a synced ticket (``TICKET_TRANSFER`` names its transfer: the sync writes it
        for both tickets of a pair)."""
        d = self.settings.deadline(category)
        now = time.time() if now is None else now
        pipe.zadd(DEADLINES, {f"{platform}|{ticket}|accept|1": now + d.accept,
                        f"{platform}|{ticket}|final|1": now + d.final}, nx=True)

    async def feedback(self, platform: str, ticket: str, status: str) -> None:
        members = [f"{platform}|{ticket}|{stage}|{level}"
                   for stage in CLEARS.get(status, ()) for level in (1, 2)]
        if members:
            pipe = self.redis.pipeline(transaction=True)
            pipe.zrem(DEADLINES, *members)
            pipe.srem(OVERDUE, *(f"{platform}|{ticket}|{stage}" for stage in CLEARS[status]))
            await pipe.execute()

    async def overdue_items(self) -> int:
        return await self.redis.scard(OVERDUE)

    async def run(self) -> None:
        while True:
            try:
                await self.check(time.time())
            except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                log.warning("redis unavailable; retrying", error=str(exc))
            await asyncio.sleep(self.period)

    async def check(self, now: float) -> None:
        for raw in await self.redis.zrangebyscore(DEADLINES, "-inf", now, start=0, num=500):
            member = raw.decode()
            platform, ticket, stage, level = member.split("|")
            about = await ticket_transfer(self.redis, platform, ticket) or {}
            tid, category = about.get("transfer_id"), about.get("category")
            # Still open at escalation time? Then it is raised again, one level up.
            again = f"{platform}|{ticket}|{stage}|2" if level == "1" else ""
            alert = json.dumps({"kind": AlertKind.OVERDUE, "platform": platform, "ticket_id": ticket,
                                "stage": stage, "level": int(level), "escalation": level == "2",
                                "transfer_id": tid, "category": category}, ensure_ascii=False)
            step = (trail.entry("overdue", platform=platform, ticket_id=ticket, stage=stage,
                                level=int(level)) if tid else "")
            taken = await self._take(
                keys=[DEADLINES, ALERTS.key, OVERDUE, TRAIL.format(tid or "-")], args=[
                    member, alert, again, now + self.settings.deadline(category).escalate,
                    ALERTS.maxlen, f"{platform}|{ticket}|{stage}", ALERTS.field, step])
            if not taken:
                continue                     # another sidecar took it, or feedback cleared it
            self.raised += 1
            self.metrics.overdue.labels(stage, level).inc()
            log.warning("ticket overdue", platform=platform, ticket=ticket, stage=stage,
                        level=int(level), transfer_id=tid)
