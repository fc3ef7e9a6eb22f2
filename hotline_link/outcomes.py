"""Records handed to the sidecar through a Redis stream: outcome records (one per transfer
attempt, ``OUTCOME``) and call records (one per call offered to a hotline, ``CALL``).

Never lost, never doubled:

* ``emit`` first writes the record to the local spool (one file per record id, written to a
  temporary name, fsynced, renamed), then tries to append it to the stream.
* The append is a Lua script that claims ``hotline:outcome:<transfer_id>`` (``hotline:call:
  <call_id>``) with NX before XADD, in one atomic step: replaying a spooled record that already
  reached the stream adds nothing.
* A spool file is removed only after the append succeeded (or was found to be done already);
  while Redis is down, records stay in the spool and ``run`` retries them every second.
* Under Sentinel (``redis.durable_replicas``), "succeeded" means a replica confirmed it too
  (WAIT, in the same round trip as the append): a record the primary took but its replica did
  not yet have would be lost if the primary failed over now, so it stays in the spool and is
  appended again; the claim makes that a no-op where the first append survived, and the script
  writes the claim again then, so that the WAIT after it covers the first append.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from contracts.names import CALL_CLAIM, CALLS, OUTCOME_CLAIM, OUTCOMES, Stream

from .redisconn import NO_WAIT, Durable, NotReplicated

log = structlog.get_logger("outcomes")

CLAIM_TTL = 30 * 24 * 3600      # dedupe window: far longer than any spool outage

# KEYS: the stream, the record's claim; ARGV: record id, record (JSON), claim TTL, payload field,
# id field. A replay writes the claim's expiry again: a write of its own, so that a WAIT that
# follows on the same connection waits for the replica to have everything up to it, the first
# append too.
APPEND_SCRIPT = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then
  return redis.call('XADD', KEYS[1], '*', ARGV[5], ARGV[1], ARGV[4], ARGV[2])
end
redis.call('EXPIRE', KEYS[2], ARGV[3])
return false
"""


@dataclass(frozen=True)
class Kind:
    """A kind of record: its stream, its claim key, and the field that identifies one."""
    stream: Stream
    claim: str
    key: str
    name: str


OUTCOME = Kind(OUTCOMES, OUTCOME_CLAIM, "transfer_id", "outcome")
CALL = Kind(CALLS, CALL_CLAIM, "call_id", "call record")


class RecordSink:
    def __init__(self, redis: aioredis.Redis, spool_dir: Path, durable: Durable = NO_WAIT,
                 kind: Kind = OUTCOME):
        self.redis = redis
        self.spool = spool_dir
        self.durable = durable
        self.kind = kind
        self.spool.mkdir(parents=True, exist_ok=True)
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()

    def _path(self, record_id: str) -> Path:
        return self.spool / f"{record_id}.json"

    def spooled(self) -> int:
        """Records not yet in the stream (or not yet confirmed by a replica)."""
        return sum(1 for _ in self.spool.glob("*.json"))

    def _write_spool(self, record: dict) -> Path:
        path = self._path(record[self.kind.key])
        if path.exists():
            # A second record of one attempt waiting with the first (a restart that carried on
            # an attempt already recorded, while Redis was away): the first stands, as in the
            # stream, and is not overwritten.
            log.warning(f"{self.kind.name} already spooled; kept the first",
                        **{self.kind.key: record[self.kind.key]}, result=record.get("result"))
            return path
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump(record, fh, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
        return path

    async def emit(self, record: dict) -> None:
        """Durable once this returns (spooled, fsynced); the stream append follows in the
        background so that a slow or absent Redis never holds up call handling."""
        await self.keep(record)
        task = asyncio.create_task(self.flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _append_one(self, path: Path) -> None:
        record = json.loads(path.read_text())
        k = self.kind
        rid = record[k.key]
        # One round trip on one connection: the append (EVAL: the server caches the script, and
        # a pipeline with EVALSHA would first ask whether it is loaded) and, under Sentinel, the
        # WAIT for the replica that must have it before the spool lets go.
        pipe = self.redis.pipeline(transaction=False)
        pipe.eval(APPEND_SCRIPT, 2, k.stream.key, k.claim.format(rid), rid,
                  json.dumps(record, ensure_ascii=False), CLAIM_TTL, k.stream.field, k.key)
        self.durable.add_wait(pipe)
        replies = await pipe.execute()
        self.durable.check(replies)
        path.unlink(missing_ok=True)
        # The claim was there: a replay of one that got through, or a second record of the same
        # attempt (a restart that found its stale state); the first one stands.
        event = f"{k.name} recorded" if replies[0] else f"{k.name} already recorded; kept the first"
        log.info(event, **{k.key: rid}, result=record.get("result"),
                 disposition=record.get("disposition"))

    async def flush(self) -> int:
        """Append every spooled record; returns how many are still waiting."""
        async with self._lock:
            pending = sorted(self.spool.glob("*.json"), key=lambda p: p.stat().st_mtime)
            for i, path in enumerate(pending):
                try:
                    await self._append_one(path)
                except NotReplicated as exc:
                    log.warning(f"{self.kind.name} spooled until a replica confirms it",
                                error=str(exc), waiting=len(pending) - i)
                    return len(pending) - i
                except RedisError as exc:
                    log.warning(f"{self.kind.name} spooled, redis unavailable",
                                error=str(exc), waiting=len(pending) - i)
                    return len(pending) - i
                except (OSError, ValueError) as exc:
                    # A damaged spool file must not block the others; keep it for a human.
                    log.error(f"unreadable spooled {self.kind.name}", path=str(path),
                              error=str(exc))
                    path.rename(path.with_suffix(".bad"))
            return 0

    async def keep(self, record: dict) -> None:
        """Spool only (fsynced); the next ``flush`` appends it. For a batch appended at once."""
        await asyncio.to_thread(self._write_spool, record)

    async def drain(self) -> int:
        """Wait for the appends ``emit`` started, then try what is left once more; returns how
        many records are still spooled (for a one-shot writer that exits after)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return await self.flush()

    async def run(self, period: float = 1.0) -> None:
        while True:
            await asyncio.sleep(period)
            if any(self.spool.glob("*.json")):
                await self.flush()


# The outcome sink is the default kind's; kept under its name for its many readers.
OutcomeSink = RecordSink
