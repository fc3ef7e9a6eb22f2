"""The hot-standby lease: which of several service instances acts on the PBXs.

One key in Redis (``SERVICE_LEASE``) holds the active instance's token with a TTL. The active
instance renews it every ``ttl / 5``; a standby tries to take it every ``POLL`` seconds and
succeeds only once it has lapsed (its holder died, froze, or lost Redis). A clean stop deletes it,
so a planned switch-over (deploy, ``systemctl stop``) takes one poll, not a TTL.

The safety rule: an instance acts only while ``held()``, i.e. while its own monotonic clock says
the lease it last claimed has not run out. That clock starts when the claim was *sent*, and Redis
counts the TTL from when it *received* it, so by the time a standby can take the lease the old
holder's own clock already says no: a process frozen for longer than the TTL (SIGSTOP, a VM
pause, swap) wakes up refusing to act before it has even heard that someone else took over.
``DRIFT`` leaves room for the two clocks running at slightly different rates.

The token is ``<instance>/<pid>/<random>``: unique per process, so two processes started by
mistake with one instance name never share a lease, and a restarted instance waits for its old
lease like any standby.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import time
from typing import Callable

import redis.asyncio as aioredis
import structlog
from redis import exceptions as redis_errors

from contracts.names import SERVICE_INSTANCES, SERVICE_LEASE

log = structlog.get_logger("lease")

POLL = 0.5              # seconds between a standby's tries: the takeover's share after a lapse
DRIFT = 0.02            # the share of the TTL given up for clock-rate differences

# Take the lease if nobody holds it, extend it if we do; 1 if ours now, 0 if someone else's.
_CLAIM = """
local holder = redis.call('get', KEYS[1])
if not holder then
  redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class LeaseLost(Exception):
    """This instance may no longer act: another holds the lease, or it could not be renewed
    before it ran out."""


class Lease:
    def __init__(self, redis: aioredis.Redis, instance: str, ttl: float, *,
                 replicas: int = 0, wait_ms: int = 200,
                 clock: Callable[[], float] = time.monotonic):
        self.redis = redis
        self.instance = instance
        self.token = f"{instance}/{os.getpid()}/{secrets.token_hex(4)}"
        self.ttl = ttl
        self.renew_every = ttl / 5
        # With a replica (Sentinel), a claim counts only once the replica has it: a failover
        # must not hand a standby a primary on which our latest renewal is missing.
        self.replicas = replicas
        self.wait_ms = wait_ms          # under the client's socket timeout (redis.durable_wait_ms)
        self._lagging = False
        self.clock = clock
        self.deadline = 0.0
        self.state = "standby"
        self.since = time.time()
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)

    def held(self) -> bool:
        return self.clock() < self.deadline

    async def _try(self) -> bool | None:
        """True: ours until ``deadline``; False: another instance's; None: Redis did not say."""
        sent = self.clock()
        try:
            ours = await self._claim(keys=[SERVICE_LEASE],
                                     args=[self.token, int(self.ttl * 1000)])
            if ours and self.replicas and not await self._replicated():
                return None
        except (redis_errors.RedisError, OSError) as exc:
            log.debug("lease claim failed", error=repr(exc))
            return None
        if ours:
            self.deadline = max(self.deadline, sent + self.ttl * (1 - DRIFT))
        return bool(ours)

    async def _replicated(self) -> bool:
        """Whether a failover could hand a standby a primary that lacks this claim: not if
        the replicas have it, and not if no replica is connected (Sentinel promotes only
        replicas; one that is gone cannot be). A replica lost for good must not make every
        instance stand down, which would cost callers their keys for as long as it is gone."""
        acked = await self.redis.wait(self.replicas, self.wait_ms)
        if acked >= self.replicas:
            self._lagging = False
            return True
        connected = int((await self.redis.info("replication")).get("connected_slaves", 0))
        if acked >= connected:
            if not self._lagging:
                log.warning("lease claims not replicated: no replica connected",
                            replicas=connected, wanted=self.replicas)
            self._lagging = True
            return True
        log.warning("lease claim not on a replica yet", replicas=acked, connected=connected)
        return False

    async def acquire(self) -> None:
        """Wait until this instance holds the lease."""
        while True:
            if await self._try():
                self._became("active")
                return
            await self._presence()
            await asyncio.sleep(POLL)

    async def keep(self) -> None:
        """Renew while active; raise ``LeaseLost`` the moment this instance may no longer act."""
        while True:
            await self._presence()
            # Wake for the next renewal, or at the deadline if the renewals keep failing.
            await asyncio.sleep(max(0.0, min(self.renew_every, self.deadline - self.clock())))
            if not self.held():
                raise self._lost("the lease ran out before it could be renewed")
            try:
                async with asyncio.timeout(max(0.01, self.deadline - self.clock())):
                    ours = await self._try()
            except TimeoutError:
                ours = None
            if ours is False:
                raise self._lost("another instance holds the lease")
            if not self.held():
                raise self._lost("the lease ran out before it could be renewed")

    async def release(self, state: str = "stopped") -> None:
        """Give the lease up now (a clean stop, or the end of a term), so a standby need not
        wait for it to lapse."""
        self.deadline = 0.0
        self._became(state)
        try:
            await self._release(keys=[SERVICE_LEASE], args=[self.token])
            await self._presence()
        except (redis_errors.RedisError, OSError) as exc:
            log.warning("lease not released; it lapses on its own", error=repr(exc))

    def _lost(self, why: str) -> LeaseLost:
        self.deadline = 0.0
        self._became("standby")
        return LeaseLost(why)

    def _became(self, state: str) -> None:
        if state != self.state:
            self.state, self.since = state, time.time()

    async def _presence(self) -> None:
        """What ``hotline-link status`` and the sidecar's /health show of this instance."""
        entry = {"state": self.state, "pid": os.getpid(), "host": socket.gethostname(),
                 "since": round(self.since, 3), "seen": round(time.time(), 3),
                 "lease_ttl": self.ttl}
        try:
            await self.redis.hset(SERVICE_INSTANCES, self.instance, json.dumps(entry))
        except (redis_errors.RedisError, OSError):
            pass                    # only a status display; the lease itself is what counts
