"""Call records, the adapter's side: the delivery machine's ``CallNote``/``CallEnded`` become the
live call's note in Redis (``OPEN_CALLS``) and its record in the call sink (spool, then the
``hotline:calls`` stream, exactly once: ``hotline_link.outcomes``).

The note is best effort and never holds a call up (written behind the call: ``writebehind``;
Redis away delays the notes, never the call). The record is not best effort: spooled and fsynced
before anything else.
A call that ended while no instance watched has only its note: the instance that reconciles finds
its caller gone and records it (``ended_by`` "unseen"); if the instance that saw it end records it
too (its spool, after a restart), the stream's claim on the call id keeps the first one.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Callable

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from contracts.names import OPEN_CALLS
from contracts.vocab import EndedBy
from hotline_link.outcomes import RecordSink
from transfer import callrecord
from transfer import delivery as dm

from .writebehind import LatestWriter

log = structlog.get_logger("calls")


def _offset() -> float:
    """Wall clock minus monotonic clock, now (the machine's times are monotonic)."""
    return time.time() - time.monotonic()


class CallBook:
    def __init__(self, redis: aioredis.Redis, sink: RecordSink, hotline_id: str,
                 allowed: Callable[[], bool] = lambda: True,
                 fence: tuple[str, str] | None = None):
        self.redis = redis
        self.sink = sink
        self.hotline = hotline_id
        self.key = OPEN_CALLS.format(hotline_id)
        # Notes to write (call id -> the call, serialized when written) or remove (None).
        self.writer = LatestWriter(redis, self._write, "call notes", hotline_id, allowed, fence,
                                   transaction=False)
        # Calls this process recorded lately: a reconcile racing the removal of their notes must
        # not record them again as unseen (the stream's claim would keep whichever came first).
        self._recorded: OrderedDict[str, None] = OrderedDict()

    def note(self, call: dm.Call) -> None:
        self.writer.put(call.call_id, call)

    def _forget(self, call_id: str) -> None:
        self.writer.put(call_id, None)

    def _write(self, pipe, call_id: str, call: dm.Call | None) -> None:
        if call is None:
            pipe.hdel(self.key, call_id)
        else:
            pipe.hset(self.key, call_id, json.dumps(callrecord.note(call, self.hotline, _offset()),
                                                    ensure_ascii=False))

    async def run(self) -> None:
        await self.writer.run()

    async def flush(self) -> bool:
        return await self.writer.flush()

    async def ended(self, cmd: dm.CallEnded) -> None:
        record = callrecord.record(cmd.call, self.hotline, cmd.ended, cmd.ended_by,
                                   cmd.disposition, _offset())
        await self.sink.emit(record)
        self._recorded[cmd.call.call_id] = None
        if len(self._recorded) > 10_000:
            self._recorded.popitem(last=False)
        self._forget(cmd.call.call_id)

    async def known(self) -> dict[str, dict]:
        """The notes of this hotline's calls, by call id ({} when Redis cannot say)."""
        try:
            raw = await self.redis.hgetall(self.key)
        except (RedisError, OSError) as exc:
            log.warning("cannot read the live calls' notes", hotline=self.hotline, error=str(exc))
            return {}
        out = {}
        for call_id, entry in raw.items():
            try:
                out[call_id.decode()] = json.loads(entry)
            except (ValueError, UnicodeDecodeError):
                log.error("unreadable call note", hotline=self.hotline, call_id=call_id)
        return out

    async def reconcile(self, live_callers: set[str], desk: dm.Desk) -> dict[str, dm.Call]:
        """After a (re)connect: the noted calls whose caller is live, by caller channel, to be
        merged into what the machine finds; those whose caller is gone are recorded now."""
        offset = _offset()
        found: dict[str, dm.Call] = {}
        known_ids = {c.call_id for c in desk.calls.values()}
        for call_id, n in (await self.known()).items():
            try:
                call = callrecord.from_note(n, offset)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("unreadable call note", hotline=self.hotline, call_id=call_id,
                          error=str(exc))
                continue
            if call.caller in live_callers:
                found[call.caller] = call
            elif call_id in self._recorded:
                self._forget(call_id)
            elif call_id not in known_ids:
                now = time.monotonic()
                await self.ended(dm.CallEnded(call, now, EndedBy.UNSEEN,
                                              dm.disposition(call, None, EndedBy.UNSEEN)))
        return found
