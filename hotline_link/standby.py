"""``hotline-link status``: which service instance is active, read from Redis."""

from __future__ import annotations

import time

from contracts.names import SERVICE_INSTANCES, SERVICE_LEASE
from contracts.standby import view

from .redisconn import connect
from .settings import Settings


async def describe(settings: Settings) -> tuple[list[str], str | None]:
    # Through Sentinel where configured: after a failover the configured URL is a replica or gone.
    redis = connect(settings.redis, socket_timeout=2, socket_connect_timeout=2)
    try:
        token = await redis.get(SERVICE_LEASE)
        entries = await redis.hgetall(SERVICE_INSTANCES)
    finally:
        await redis.aclose()
    state = view(token, entries, time.time())
    active = state["active"]
    lines = [f"active instance: {active}" if active else
             "active instance: none (no instance holds the lease; a single instance without "
             "service.instance holds none)"]
    for name, e in state["instances"].items():
        seen = time.time() - float(e.get("seen", 0))
        lines.append(f"  {name:<12} {e.get('state', '?'):<8} pid {e.get('pid')} on "
                     f"{e.get('host')}, last seen {seen:.1f} s ago"
                     + ("  STALE" if e["stale"] else ""))
    return lines, active
