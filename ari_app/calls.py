"""Call records, the adapter's side: the delivery machine's ``CallNote``/``CallEnded`` become the
live call's note in Redis (``OPEN_CALLS``) and its record in the call sink (spool, then the
``hotline:calls`` stream, exactly once: ``hotline_link.outcomes``).

The note is best effort and never holds a call up (written in the background by one writer, the
latest state of each call in one pipeline; Redis away delays the notes, never the call). The record is not best effort: spooled and fsynced before anything else.
A call that ended while no instance watched has only its note: the instance that reconciles finds
its caller gone and records it (``ended_by`` "unseen"); if the instance that saw it end records it
too (its spool, after a restart), the stream's claim on the call id keeps the first one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from contracts.names import OPEN_CALLS
from contracts.vocab import EndedBy
from hotline_link.outcomes import RecordSink
from transfer import callrecord
from transfer import delivery as dm

log = structlog.get_logger("calls")


def _offset() -> float:
    """Wall clock minus monotonic clock, now (the machine's times are monotonic)."""
    return time.time() - time.monotonic()


class CallBook:
    def __init__(self, redis: aioredis.Redis, sink: RecordSink, hotline_id: str):
        self.redis = redis
        self.sink = sink
        self.hotline = hotline_id
        self.key = OPEN_CALLS.format(hotline_id)
        # Notes to write (call id -> the call, serialized when written) or remove (None): one
        # writer (``run``) sends the latest state of each in one pipeline, so a burst of changes
        # costs a dict entry each, a removal never overtakes a write, and a call's note is
        # written once however often it changed meanwhile.
        self._dirty: dict[str, dm.Call | None] = {}
        self._wake = asyncio.Event()
        # Calls this process recorded lately: a reconcile racing the removal of their notes must
        # not record them again as unseen (the stream's claim would keep whichever came first).
        self._recorded: OrderedDict[str, None] = OrderedDict()

    def note(self, call: dm.Call) -> None:
        self._dirty[call.call_id] = call
        self._wake.set()

    def _forget(self, call_id: str) -> None:
        self._dirty[call_id] = None
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        if not self._dirty:
            return
        batch, self._dirty = self._dirty, {}
        offset = _offset()
        pipe = self.redis.pipeline(transaction=False)
        for call_id, call in batch.items():
            if call is None:
                pipe.hdel(self.key, call_id)
            else:
                pipe.hset(self.key, call_id, json.dumps(callrecord.note(call, self.hotline, offset),
                                                        ensure_ascii=False))
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            # Kept for the next try unless a newer state replaced it meanwhile.
            for call_id, call in batch.items():
                self._dirty.setdefault(call_id, call)
            log.debug("call notes not written", hotline=self.hotline, waiting=len(self._dirty),
                      error=str(exc))

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
