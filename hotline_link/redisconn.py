"""How every process reaches Redis (the service, the sidecar, the FastAGI server through the
service, ``doctor``): ``connect(settings.redis, <the caller's timeouts>)``, and how a write that
must not be lost is confirmed on a replica (``Durable``).

Two shapes of Redis, one call:

* ``[redis] url`` alone: one Redis at that URL.
* ``[redis] sentinels`` and ``master_name``: the primary that Redis Sentinel names. redis-py's
  Sentinel pool asks the sentinels on every new connection, so a client follows a failover: the
  connections to a dead primary fail (as if Redis were down for the seconds the failover takes),
  the next ones reach the replica Sentinel promoted. A demoted primary answers writes with
  READONLY, which the pool turns into a reconnect. The URL still gives the database number and
  password (the host and port are Sentinel's to say).

Replication is asynchronous: the primary acknowledges a write before its replica has it, and a
failover in between loses it. ``WAIT <replicas> <ms>`` closes that: it returns once that many
replicas acknowledged everything this connection wrote. ``Durable`` is that step, for the writes
whose loss the product cannot absorb (outcome records, the sidecar's alerts and ticket links,
API commands). With ``durable_replicas = 0`` (the default, and the only sense without replicas)
it costs nothing: no WAIT is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

# Published (to nobody) by ``Durable.confirm``: see there.
MARK_CHANNEL = "hotline:durable-mark"


class NotReplicated(RedisError):
    """The primary applied a write but fewer replicas than ``durable_replicas`` confirmed it
    within ``durable_wait_ms``. A RedisError on purpose: every caller already treats "Redis could
    not take this" by keeping the write (spool, pending entry) and trying again."""


@dataclass(frozen=True)
class Durable:
    """Confirm writes on ``replicas`` replicas, waiting at most ``wait_ms`` each time."""
    replicas: int = 0
    wait_ms: int = 0

    def add_wait(self, pipe) -> None:
        """Queue WAIT after the writes queued on ``pipe`` (a non-transactional pipeline: one
        connection, so the WAIT covers exactly those writes; one round trip for both). The
        caller passes the pipeline's replies to ``check``."""
        if self.replicas:
            pipe.wait(self.replicas, self.wait_ms)

    def check(self, replies: list) -> None:
        """Raise ``NotReplicated`` unless the WAIT ``add_wait`` queued (the last reply) was
        confirmed by enough replicas."""
        if self.replicas and replies[-1] < self.replicas:
            raise NotReplicated(f"{replies[-1]} of {self.replicas} replica(s) confirmed the "
                                f"write within {self.wait_ms} ms")

    async def confirm(self, redis: aioredis.Redis) -> None:
        """Confirm every write made so far on the primary (on any connection: the MULTI/EXEC a
        pipeline ran on a connection that went back to the pool, or entries another client
        appended that this one just read). WAIT waits for the replication offset of the
        connection's own last write, so this connection first writes one thing that goes to the
        replicas and nowhere else: a PUBLISH (propagated to replicas, never written to the AOF,
        heard by no one). Replication is one ordered stream, so a replica that has the mark has
        everything before it."""
        if not self.replicas:
            return
        pipe = redis.pipeline(transaction=False)
        pipe.publish(MARK_CHANNEL, b"")
        self.add_wait(pipe)
        self.check(await pipe.execute())


NO_WAIT = Durable()


@dataclass(frozen=True)
class RedisSettings:
    url: str
    sentinels: tuple[tuple[str, int], ...]   # empty: the URL's Redis, no Sentinel
    master_name: str
    durable_replicas: int
    durable_wait_ms: int

    @property
    def durable(self) -> Durable:
        return Durable(self.durable_replicas, self.durable_wait_ms)

    def describe(self) -> str:
        """Where Redis is, for log lines and doctor's messages."""
        if not self.sentinels:
            return self.url
        return (f"Sentinel master {self.master_name!r} via "
                + ", ".join(f"{h}:{p}" for h, p in self.sentinels))


def connect(rs: RedisSettings, **options) -> aioredis.Redis:
    """A client of the primary. ``options`` are the caller's redis-py connection options
    (timeouts, retry): the service's are short on purpose, the sidecar's longer. With Sentinel
    they also apply to the questions put to the sentinels, so an unreachable sentinel costs what
    an unreachable Redis costs."""
    if not rs.sentinels:
        return aioredis.from_url(rs.url, **options)
    parts = urlsplit(rs.url)
    db = int(parts.path.strip("/") or 0) if parts.scheme != "unix" else 0
    sentinel_kwargs = {k: v for k, v in options.items() if k.startswith("socket_")}
    sentinel = Sentinel(list(rs.sentinels), sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(rs.master_name, db=db, password=parts.password,
                               username=parts.username, **options)
