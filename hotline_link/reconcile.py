"""``hotline-link calls reconcile``: the call records of queue calls that no service took, from
the PBX's own CDR.

A queue call (the centre's ``Queue()``, or the queue in degraded mode) is recorded by its hangup
handler through the FastAGI "record" command. With every FastAGI server down (the service
stopped: exactly when the PBX answers calls alone) the handler writes the record into the call's
CDR userfield instead (``transfer.callrecord.UNRECORDED``), so it is kept by the PBX itself with
the rest of the centre's call detail. This reads those rows from the CDR's CSV
(``cdr-custom/Master.csv``, whose last column is the userfield) and appends each record through
the same claim as the service's sink: a call already recorded (by an earlier run, or by the
service) is not recorded again, so the command may run as often as one likes (after an outage,
or from cron).
"""

from __future__ import annotations

import csv
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from contracts.names import CALL_CLAIM
from transfer.callrecord import from_queue_fields, unrecorded

from .outcomes import CALL, RecordSink
from .redisconn import connect
from .settings import Settings


@dataclass
class Tally:
    found: int = 0             # distinct calls the CDR holds unrecorded
    recorded: int = 0          # appended now
    already: int = 0           # recorded before (an earlier run, or the service)
    waiting: int = 0           # not appended: Redis did not take them (run again)


def unrecorded_records(paths: list[Path], now: float | None = None) -> list[dict]:
    """The call records the CDR files hold for calls no service recorded, one per call (a call
    with several CDR rows carries the same userfield on each)."""
    now = time.time() if now is None else now
    out: dict[str, dict] = {}
    for path in paths:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            for row in csv.reader(fh):
                found = unrecorded(row[-1]) if row else None
                if found is None:
                    continue
                hotline, fields = found
                rec = from_queue_fields(fields, hotline, now=now)
                if rec["call_id"]:
                    out.setdefault(rec["call_id"], rec)
    return list(out.values())


async def reconcile(settings: Settings, paths: list[Path]) -> Tally:
    records = unrecorded_records(paths)
    tally = Tally(found=len(records))
    redis = connect(settings.redis, socket_timeout=5, socket_connect_timeout=5)
    try:
        # A spool of its own, emptied before returning: what Redis does not take now stays in
        # the CDR, where the next run finds it.
        with tempfile.TemporaryDirectory(prefix="hotline-reconcile-") as spool:
            sink = RecordSink(redis, Path(spool), settings.redis.durable, kind=CALL)
            pipe = redis.pipeline(transaction=False)
            for rec in records:
                pipe.exists(CALL_CLAIM.format(rec["call_id"]))
            claimed = await pipe.execute() if records else []
            for rec, done in zip(records, claimed):
                if done:
                    tally.already += 1
                    continue
                await sink.keep(rec)
                tally.recorded += 1
            tally.waiting = await sink.drain()
            tally.recorded -= tally.waiting
    finally:
        await redis.aclose()
    return tally
