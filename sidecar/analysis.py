"""Joint analysis in the sidecar (R13): ``GET /analysis`` over the recorded transfers and online
requests, and the early warning, which reads each hour's counts per matter category
(``contracts.names.MATTER_STATS``, kept by ``Syncer.remember``) and raises ``early_warning``
once a day for a category far above its own baseline (``transfer.analysis.warnings``)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone

import redis.asyncio as aioredis
import structlog

from contracts.names import ALERTED, ALERTS, MATTER_STATS
from contracts.vocab import AlertKind
from transfer import analysis

from .calls import RAISE_ONCE
from .settings import AnalysisSettings

log = structlog.get_logger("analysis")

RAISED_FOR = 24 * 3600          # a category still rising is raised again the next day


async def hourly_counts(redis: aioredis.Redis, now: float) -> tuple[dict, int]:
    """Each hour's counts per category over the last day and the baseline before it."""
    now_hour = int(now // 3600)
    hours = list(range(now_hour - 24 * (analysis.BASELINE_DAYS + 1) + 1, now_hour + 1))
    pipe = redis.pipeline(transaction=False)
    for hour in hours:
        pipe.hgetall(MATTER_STATS.format(hour))
    hourly = {hour: {k.decode(): int(v) for k, v in counts.items()}
              for hour, counts in zip(hours, await pipe.execute()) if counts}
    return hourly, now_hour


async def current_warnings(redis: aioredis.Redis, a: AnalysisSettings, now: float
                           ) -> list[analysis.EarlyWarning]:
    hourly, now_hour = await hourly_counts(redis, now)
    return analysis.warnings(hourly, now_hour, a.warn_p, a.warn_min)


async def check(redis: aioredis.Redis, a: AnalysisSettings, now: float) -> list[str]:
    """Raise ``early_warning`` for each category rising now (once per ``RAISED_FOR``); the
    categories it was raised for."""
    raised = []
    for w in await current_warnings(redis, a, now):
        alert = {"kind": str(AlertKind.EARLY_WARNING), **w.to_dict(),
                 "at": datetime.fromtimestamp(now, timezone.utc).isoformat()}
        if await redis.eval(RAISE_ONCE, 2, ALERTED.format(f"{AlertKind.EARLY_WARNING}:"
                                                          f"{w.category}"),
                            ALERTS.key, RAISED_FOR, ALERTS.maxlen, ALERTS.field,
                            json.dumps(alert, ensure_ascii=False)):
            log.warning("matter category above its baseline", **w.to_dict())
            raised.append(w.category)
    return raised


async def watch(redis: aioredis.Redis, a: AnalysisSettings) -> None:
    while True:
        await asyncio.sleep(a.warn_every)
        try:
            await check(redis, a, time.time())
        except (aioredis.RedisError, OSError) as exc:
            log.warning("early warning not checked; Redis unavailable", error=str(exc))
