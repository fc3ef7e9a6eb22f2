"""The sidecar's stream consumer against the lab's real Redis: an entry whose handler failed is
not lost and not stuck until a restart; it is claimed again and handled as redelivered."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from sidecar.sync import consume


@pytest.fixture
async def rds(lab):
    client = aioredis.from_url(lab.descriptor["redis"]["url"])
    yield client
    await client.aclose()


class Flaky:
    """Fails the first call for each entry in ``fail``; acknowledges everything else."""

    def __init__(self, rds, stream: str, group: str, fail: set[bytes]):
        self.rds, self.stream, self.group, self.fail = rds, stream, group, fail
        self.calls: list[tuple[bytes, bool]] = []
        self.done: set[bytes] = set()

    async def __call__(self, entry_id: bytes, fields: dict, redelivered: bool) -> None:
        self.calls.append((entry_id, redelivered))
        if entry_id in self.fail:
            self.fail.discard(entry_id)
            raise RuntimeError("handler bug")
        await self.rds.xack(self.stream, self.group, entry_id)
        self.done.add(entry_id)


async def _until(predicate, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("concurrency", [1, 8])
async def test_an_entry_whose_handler_failed_is_claimed_again(rds, concurrency):
    stream, group = f"test:consume:{uuid.uuid4().hex}", "g"
    ids = [await rds.xadd(stream, {"n": str(i)}) for i in range(5)]
    await rds.xgroup_create(stream, group, id="0")
    handler = Flaky(rds, stream, group, {ids[2]})
    task = asyncio.create_task(consume(rds, stream, group, "c1", "0", handler, concurrency,
                                       reclaim_after=0.5))
    try:
        await _until(lambda: handler.done == set(ids))
    finally:
        task.cancel()
    assert (ids[2], False) in handler.calls and (ids[2], True) in handler.calls
    assert sum(1 for e, _ in handler.calls if e != ids[2]) == 4, "others were handled once"
    assert (await rds.xpending(stream, group))["pending"] == 0
    await rds.delete(stream)


async def test_a_backlog_entry_that_fails_again_does_not_hold_up_the_rest(rds):
    """After a crash the consumer's own pending entries come first; one that fails again is
    passed over (and reclaimed later), not read back forever while new entries wait."""
    stream, group = f"test:consume:{uuid.uuid4().hex}", "g"
    ids = [await rds.xadd(stream, {"n": str(i)}) for i in range(3)]
    await rds.xgroup_create(stream, group, id="0")
    # A consumer that read them and died before acknowledging.
    await rds.xreadgroup(group, "c1", {stream: ">"}, count=10)
    handler = Flaky(rds, stream, group, {ids[0]})
    task = asyncio.create_task(consume(rds, stream, group, "c1", "0", handler, 4,
                                       reclaim_after=1.0))
    try:
        await _until(lambda: {ids[1], ids[2]} <= handler.done, 3.0)
        late = await rds.xadd(stream, {"n": "new"})
        await _until(lambda: late in handler.done, 3.0)
        assert ids[0] not in handler.done
        await _until(lambda: handler.done == {*ids, late})
    finally:
        task.cancel()
    assert handler.calls[:3] == [(ids[0], True), (ids[1], True), (ids[2], True)]
    assert handler.calls.count((ids[0], True)) == 2
    await rds.delete(stream)
