"""Call records, the sidecar's side: every record of ``hotline:calls`` (one per call offered to a
hotline, written by the service) is kept for queries (``GET /calls``) and linked with the
transfers made from the call (their ids are in the record; each transfer's outcome record names
the call by ``call_id``).

Storing is idempotent and acknowledged in the same transaction, so a record read again after a
crash or a failover changes nothing: a script keeps the record, indexes it by arrival and, only
if it was not indexed yet, adds it to its arrival minute's KPI counters (``transfer/kpi.py``), so
each call counts once however many sidecars read the stream or however often one re-reads it.
``kpis`` sums those counters over the windows centres watch (15 min, 1 h, 24 h). A record that is not one (no call id, no
arrival) goes to the dead-letter stream with the reason, like an outcome record.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone
from typing import Awaitable, Callable

import redis.asyncio as aioredis
import structlog

from contracts.names import (ALERTED, ALERTS, CALL_INDEX, CALL_RECORD, CALL_STATS, CALLS,
                             CALLS_GROUP, OUTCOMES_DEAD)
from contracts.vocab import AlertKind, Disposition
from hotline_link.redisconn import NO_WAIT, Durable, NotReplicated
from transfer import kpi

from .adapters import TicketError
from .sync import consume

log = structlog.get_logger("calls")

STATS_TTL = 26 * 3600           # an hour's counters outlive the 24 h window

# KEYS: record key, index, the arrival hour's counters; ARGV: record, arrival (epoch s), call id,
# counters' TTL, then counter field / increment pairs.
STORE = """
redis.call('SET', KEYS[1], ARGV[1])
if redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[3]) == 1 then
  for i = 5, #ARGV, 2 do redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i + 1]) end
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  return 1
end
return 0
"""


def thresholds(sc) -> kpi.Thresholds:
    """The counting thresholds of the sidecar's settings (``[sidecar.kpi]``)."""
    return kpi.Thresholds(short_abandon=sc.kpi.short_abandon, service_level=sc.kpi.service_level)


def _stats_key(hotline: str, minute: int) -> str:
    return CALL_STATS.format(f"{hotline}:{minute // 60}")


def _arrival(record: dict) -> float:
    call_id = record["call_id"]
    if not isinstance(call_id, str) or not call_id:
        raise ValueError("call_id must be a non-empty string")
    return datetime.fromisoformat(record["arrived_at"]).timestamp()


# A call-back request whose ticket could not be made yet (its platform down) is tried again after
# this long: the record stays unacknowledged meanwhile (it is stored and counted already).
CALLBACK_RETRY = 30.0


class CallStore:
    def __init__(self, redis: aioredis.Redis, consumer: str, thresholds: kpi.Thresholds,
                 durable: Durable = NO_WAIT,
                 callback: Callable[[dict, bool], Awaitable[str]] | None = None):
        self.redis = redis
        self.consumer = consumer
        self.thresholds = thresholds
        self.durable = durable
        self.callback = callback        # makes a call-back request's ticket (Syncer)
        self.stored = 0

    async def run(self) -> None:
        # A new group starts at the beginning: every call ever recorded is counted.
        await consume(self.redis, CALLS.key, CALLS_GROUP, self.consumer, "0", self.handle,
                      reclaim_after=CALLBACK_RETRY, durable=self.durable)

    async def handle(self, entry_id: bytes, fields: dict, redelivered: bool = False) -> None:
        pipe = self.redis.pipeline(transaction=True)
        try:
            record = CALLS.payload(fields)
            arrived = _arrival(record)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raw = fields.get(CALLS.field.encode(), b"").decode(errors="replace")
            log.error("call record dead-lettered", entry=entry_id, reason=str(exc))
            pipe.xadd(OUTCOMES_DEAD.key, {"entry": entry_id, "stream": CALLS.key,
                                          "reason": f"not a valid call record: {exc}",
                                          OUTCOMES_DEAD.field: raw})
        else:
            call_id = record["call_id"]
            minute = kpi.minute_of(arrived)
            counters = [x for name, n in kpi.contributions(record, self.thresholds).items()
                        for x in (f"{minute}:{name}", n)]
            pipe.eval(STORE, 3, CALL_RECORD.format(call_id), CALL_INDEX,
                      _stats_key(str(record.get("hotline")), minute),
                      json.dumps(record, ensure_ascii=False), arrived, call_id, STATS_TTL,
                      *counters)
            if record.get("disposition") == Disposition.CALLBACK and self.callback is not None:
                # Stored and counted first (the script does both once); acknowledged only once
                # the ticket exists: a platform that is down leaves the entry pending, and it
                # is tried again (reclaimed) later.
                await pipe.execute()
                pipe = self.redis.pipeline(transaction=True)
                try:
                    await self.callback(record, redelivered)
                except TicketError as exc:
                    if not exc.permanent:
                        raise
                    log.error("call-back work order dead-lettered", call_id=call_id,
                              reason=str(exc))
                    pipe.xadd(OUTCOMES_DEAD.key, {
                        "entry": entry_id, "stream": CALLS.key,
                        "reason": f"call-back work order: {exc}",
                        OUTCOMES_DEAD.field: json.dumps(record, ensure_ascii=False)})
        pipe.xack(CALLS.key, CALLS_GROUP, entry_id)
        await pipe.execute()
        try:
            await self.durable.confirm(self.redis)
        except NotReplicated as exc:
            log.warning("call record stored before a replica confirmed it", entry=entry_id,
                        error=str(exc))
        self.stored += 1


async def kpis(redis: aioredis.Redis, hotline: str, now: float) -> dict[str, dict]:
    """The hotline's KPIs over each window of ``kpi.WINDOWS``, from the counters of the hours
    they span."""
    now_minute = kpi.minute_of(now)
    longest = max(kpi.WINDOWS.values())
    hours = range((now_minute - longest) // 60, now_minute // 60 + 1)
    pipe = redis.pipeline(transaction=False)
    for hour in hours:
        pipe.hgetall(_stats_key(hotline, hour * 60))
    minutes: dict[int, dict[str, int]] = {}
    for fields in await pipe.execute():
        for field, value in fields.items():
            minute, _, name = field.decode().partition(":")
            minutes.setdefault(int(minute), {})[name] = int(value)
    return {name: kpi.summary(kpi.window(minutes, now_minute, span))
            for name, span in kpi.WINDOWS.items()}


# KEYS: the "raised lately" flag, the alert outbox; ARGV: how long it holds, the outbox's trim
# length, the payload field, the alert. Raised at most once per hotline and period, by whichever
# sidecar looks first, and never lost between the flag and the outbox.
RAISE_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', ARGV[3], ARGV[4])
  return 1
end
return 0
"""
ALERT_EVERY = 3600.0            # an answer rate still low is raised again after an hour


async def check_answer_rate(redis: aioredis.Redis, hotlines, target: float, now: float,
                            min_offered: int = kpi.MIN_OFFERED) -> list[str]:
    """Raise ``answer_rate_low`` for each hotline whose last hour's answer rate is under
    ``target``; the hotlines it was raised for."""
    raised = []
    for hotline in hotlines:
        k = (await kpis(redis, hotline, now))["1h"]
        if not kpi.answer_rate_low(k, target, min_offered):
            continue
        alert = {"kind": str(AlertKind.ANSWER_RATE_LOW), "hotline": hotline, "window": "1h",
                 "answer_rate": k["answer_rate"], "answer_rate_target": target,
                 "offered": k["offered"],
                 "answered": k["answered"],
                 "at": datetime.fromtimestamp(now, timezone.utc).isoformat()}
        if await redis.eval(RAISE_ONCE, 2, ALERTED.format(f"{AlertKind.ANSWER_RATE_LOW}:{hotline}"),
                            ALERTS.key, int(ALERT_EVERY), ALERTS.maxlen, ALERTS.field,
                            json.dumps(alert, ensure_ascii=False)):
            log.warning("answer rate under target", hotline=hotline, **{
                k2: alert[k2] for k2 in ("answer_rate", "answer_rate_target", "offered",
                                         "answered")})
            raised.append(hotline)
    return raised


async def watch_answer_rate(redis: aioredis.Redis, hotlines, target: float,
                            period: float = 60.0) -> None:
    while True:
        try:
            await check_answer_rate(redis, hotlines, target, time.time())
        except (aioredis.RedisError, OSError) as exc:
            log.warning("answer rate not checked; Redis unavailable", error=str(exc))
        await asyncio.sleep(period)
