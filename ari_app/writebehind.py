"""What the application keeps in Redis for the next instance (a transfer's state, a live call's
note), written behind the call, never on its path.

One writer per kind sends the latest state of each key in one pipeline: a burst of changes costs
a dict entry each, a removal never overtakes a write, and a key is written once however often it
changed meanwhile. Redis slow or away delays the writes, never an event: what was not written is
tried again (every ``retry`` seconds) until it is, or until something newer replaced it. So a
state that one slow fsync kept out of Redis is there a moment later, and an instance that starts
after this one sees it (before, a transfer begun while Redis was slow was skipped for good, and
a restart then left its three-way call deaf to the agents' keys).

A process that lost its lease writes nothing more: its states are stale, and the instance acting
now writes its own. ``allowed`` (the lease by this process's clock) stops it before a batch;
``fence`` (the lease's key and this process's token) stops a batch already on its way, in Redis:
the batch is a script that writes only while the key still holds the token.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable, Hashable

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

log = structlog.get_logger("writebehind")

RETRY = 1.0     # seconds between tries while Redis does not take the writes

# KEYS[1]: the lease; ARGV[1]: this process's token, ARGV[2]: the batch, [[command, args...]...].
_FENCED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for _, op in ipairs(cjson.decode(ARGV[2])) do redis.call(unpack(op)) end
return 1
"""


class _Batch:
    """The commands a writer's ``write`` adds, kept as a list for the fenced script (the same
    names as a redis-py pipeline's, so ``write`` serves both)."""

    def __init__(self):
        self.ops: list[list[str]] = []

    def set(self, key, value):
        self.ops.append(["SET", key, value])

    def delete(self, *keys):
        self.ops.append(["DEL", *keys])

    def sadd(self, key, *members):
        self.ops.append(["SADD", key, *members])

    def srem(self, key, *members):
        self.ops.append(["SREM", key, *members])

    def hset(self, key, field, value):
        self.ops.append(["HSET", key, field, value])

    def hdel(self, key, *fields):
        self.ops.append(["HDEL", key, *fields])


class NotOurs(Exception):
    """The lease is another instance's: the batch was not written, and is dropped."""


class LatestWriter:
    def __init__(self, redis: aioredis.Redis, write: Callable[[Any, Hashable, Any], None],
                 what: str, hotline: str, allowed: Callable[[], bool] = lambda: True,
                 fence: tuple[str, str] | None = None, transaction: bool = True,
                 retry: float = RETRY):
        self.redis = redis
        self._write = write           # adds a key's commands to the pipeline (value None: gone)
        self.fence = fence
        self.transaction = transaction
        self._fenced = redis.register_script(_FENCED) if fence else None
        self.what = what
        self.hotline = hotline
        self.allowed = allowed
        self.retry = retry
        self._dirty: dict[Hashable, Any] = {}
        self._inflight: dict[Hashable, Any] = {}
        self._wake = asyncio.Event()
        # One batch in flight at a time: two pipelines on two pooled connections could land in
        # either order, an older state over a newer one.
        self._lock = asyncio.Lock()

    def put(self, key: Hashable, value: Any) -> None:
        """The state to write for ``key`` (None: remove it), replacing any not written yet."""
        self._dirty[key] = value
        self._wake.set()

    def waiting(self) -> dict[Hashable, Any]:
        """The states not written yet (those being written included), by key."""
        return {**self._inflight, **self._dirty}

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not await self.flush():
                await asyncio.sleep(self.retry)
                self._wake.set()

    async def flush(self) -> bool:
        """Write what is waiting; False when a batch was not written (it waits for the next
        try). What was put meanwhile is the next batch's: ``run`` is woken for it."""
        async with self._lock:
            if not self._dirty:
                return True
            if not self.allowed():
                self._dirty.clear()
                return True
            batch, self._dirty = self._dirty, {}
            self._inflight = batch
            written = False
            try:
                await self._send(batch)
                written = True
            except NotOurs:
                log.warning(f"{self.what} not written: the lease is another instance's",
                            hotline=self.hotline, dropped=len(batch))
                written = True              # dropped: not this process's to write any more
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                log.debug(f"{self.what} not written", hotline=self.hotline,
                          waiting=len(batch.keys() | self._dirty.keys()),
                          error=str(exc) or type(exc).__name__)
            except Exception:           # noqa: BLE001 - a state that cannot be written
                # must not stop the writer (nor, at a stop, the application's own ending).
                log.exception(f"{self.what} not written", hotline=self.hotline)
            finally:
                self._inflight = {}
                if not written:     # failed or cancelled: kept unless something newer came
                    for key, value in batch.items():
                        self._dirty.setdefault(key, value)
            return written

    async def _send(self, batch: dict[Hashable, Any]) -> None:
        if self._fenced is None:
            pipe = self.redis.pipeline(transaction=self.transaction)
            for key, value in batch.items():
                self._write(pipe, key, value)
            await pipe.execute()
            return
        ops = _Batch()
        for key, value in batch.items():
            self._write(ops, key, value)
        lease, token = self.fence
        if not await self._fenced(keys=[lease], args=[token, json.dumps(ops.ops)]):
            raise NotOurs()
