"""The hot-standby lease against a real redis-server: one holder at a time, a lapse hands it over,
a frozen holder refuses to act before it learns it lost, a clean stop hands over at once."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from contracts.names import SERVICE_INSTANCES, SERVICE_LEASE
from contracts.standby import view
from hotline_link.lease import POLL, Lease, LeaseLost

pytestmark = pytest.mark.lab


@pytest.fixture
def redis_url(lab):
    return lab.descriptor["redis"]["url"]


async def _client(url: str) -> aioredis.Redis:
    r = aioredis.from_url(url, socket_timeout=0.5)
    await r.delete(SERVICE_LEASE, SERVICE_INSTANCES)
    return r


def test_one_holder_and_a_lapse_hands_over(redis_url):
    async def go():
        r = await _client(redis_url)
        a, b = Lease(r, "a", 1.0), Lease(r, "b", 1.0)
        await a.acquire()
        assert a.held() and await b._try() is False and not b.held()
        keeper = asyncio.create_task(a.keep())
        await asyncio.sleep(2.5)                  # renewed past its 1 s TTL
        assert a.held() and not keeper.done()
        keeper.cancel()                           # a dies: it renews no more
        lapsed = time.monotonic()
        await b.acquire()
        took = time.monotonic() - lapsed
        assert b.held() and not a.held()          # a's own clock ran out before b got it
        assert took <= 1.0 + POLL + 0.3
        state = view(await r.get(SERVICE_LEASE), await r.hgetall(SERVICE_INSTANCES), time.time())
        assert state["active"] == "b"
        await r.aclose()
    asyncio.run(go())


def test_a_frozen_holder_refuses_before_it_hears_it_lost(redis_url):
    async def go():
        r = await _client(redis_url)
        now = [0.0]
        a = Lease(r, "a", 1.0, clock=lambda: now[0])
        await a.acquire()
        assert a.held()
        now[0] += 1.0                             # a frozen for a whole TTL by its own clock
        assert not a.held()                       # no Redis round trip needed to know
        b = Lease(r, "b", 1.0)
        await asyncio.sleep(1.1)
        await b.acquire()
        with pytest.raises(LeaseLost, match="another instance|ran out"):
            await a.keep()
        assert not a.held()
        await r.aclose()
    asyncio.run(go())


def test_a_clean_stop_hands_over_in_one_poll(redis_url):
    async def go():
        r = await _client(redis_url)
        a, b = Lease(r, "a", 5.0), Lease(r, "b", 5.0)
        await a.acquire()
        waiting = asyncio.create_task(b.acquire())
        await asyncio.sleep(0.2)
        await a.release()
        released = time.monotonic()
        await asyncio.wait_for(waiting, 2)
        assert time.monotonic() - released <= POLL + 0.2
        assert b.held() and not a.held()
        await r.aclose()
    asyncio.run(go())


def test_one_name_twice_is_still_two_leases(redis_url):
    async def go():
        r = await _client(redis_url)
        first, second = Lease(r, "a", 2.0), Lease(r, "a", 2.0)
        await first.acquire()
        assert await second._try() is False
        await r.aclose()
    asyncio.run(go())


def test_with_no_replica_connected_a_claim_that_asks_for_one_still_counts(redis_url):
    """durable_replicas = 1 and the replica gone for good (the lab's plain Redis has none): no
    failover can lose the claim, so the instance stays active instead of every instance
    standing down for as long as the replica is away."""
    async def go():
        r = await _client(redis_url)
        assert int((await r.info("replication"))["connected_slaves"]) == 0
        a = Lease(r, "a", 1.0, replicas=1, wait_ms=50)
        await asyncio.wait_for(a.acquire(), 2)
        keeper = asyncio.create_task(a.keep())
        await asyncio.sleep(1.5)                  # renewed past its TTL
        assert a.held() and not keeper.done()
        keeper.cancel()
        await r.aclose()
    asyncio.run(go())


def test_what_is_written_behind_the_calls_stops_at_the_lease_in_redis(redis_url):
    """The writer of transfer states and call notes under hot standby: its batches are a script
    that writes only while the lease holds this process's token, so a batch already on its way
    when another instance took over writes nothing (the local clock's check comes before the
    batch and cannot stop it)."""
    from ari_app.writebehind import LatestWriter

    key = "hotline:test:fenced"

    def write(pipe, field, value):
        if value is None:
            pipe.hdel(key, field)
        else:
            pipe.hset(key, field, value)

    async def go():
        r = await _client(redis_url)
        await r.delete(key)
        a = Lease(r, "a", 5.0)
        await a.acquire()
        writer = LatestWriter(r, write, "test states", "12345", fence=(SERVICE_LEASE, a.token))
        writer.put("t1", "三方通话 conference")
        writer.put("t2", "ringing")
        assert await writer.flush()
        writer.put("t2", None)
        assert await writer.flush()
        assert await r.hgetall(key) == {b"t1": "三方通话 conference".encode()}
        await r.set(SERVICE_LEASE, "b/1/feedface")    # another instance holds it now
        writer.put("t1", "stale")
        assert await writer.flush()                    # dropped, not retried
        assert not writer.waiting()
        assert await r.hgetall(key) == {b"t1": "三方通话 conference".encode()}
        await r.delete(key, SERVICE_LEASE)
        await r.aclose()
    asyncio.run(go())
