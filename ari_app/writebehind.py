"""What the application keeps in Redis for the next instance (a transfer's state, a live call's
note), written behind the call, never on its path.

One writer per kind sends the latest state of each key in one pipeline: a burst of changes costs
a dict entry each, a removal never overtakes a write, and a key is written once however often it
changed meanwhile. Redis slow or away delays the writes, never an event: what was not written is
tried again (every ``retry`` seconds) until it is, or until something newer replaced it. So a
state that one slow fsync kept out of Redis is there a moment later, and an instance that starts
after this one sees it (before, a transfer begun while Redis was slow was skipped for good, and
a restart then left its three-way call deaf to the agents' keys).

A process that lost its lease writes nothing more (``allowed``): its states are stale, and the
instance acting now writes its own.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Hashable

import structlog
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

log = structlog.get_logger("writebehind")

RETRY = 1.0     # seconds between tries while Redis does not take the writes


class LatestWriter:
    def __init__(self, pipeline: Callable[[], Pipeline],
                 write: Callable[[Pipeline, Hashable, Any], None], what: str, hotline: str,
                 allowed: Callable[[], bool] = lambda: True, retry: float = RETRY):
        self._pipeline = pipeline
        self._write = write           # adds a key's commands to the pipeline (value None: gone)
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
                pipe = self._pipeline()
                for key, value in batch.items():
                    self._write(pipe, key, value)
                await pipe.execute()
                written = True
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
