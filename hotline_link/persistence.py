"""Does the Redis we use keep what it acknowledged? Asked by the service and the sidecar at start
(a loud warning when it does not), by the sidecar's /health and by ``hotline-link doctor``.

Redis that persists nothing loses every outcome record, alert and ticket link it holds at its
next restart. AOF (``appendonly yes``) is what keeps acknowledged writes across a restart or a
kill -9; RDB snapshots alone lose everything since the last snapshot.
"""

from __future__ import annotations

import redis.asyncio as aioredis

ADVICE = ("run Redis with appendonly yes and appendfsync always (or everysec); "
          "see the README, 'Durable Redis'")


async def persistence(redis: aioredis.Redis) -> dict:
    """``{"aof": bool, "appendfsync": str|None, "rdb_save": str|None, "durable": bool}``.
    ``appendfsync`` and ``rdb_save`` are None where CONFIG is not allowed (a managed Redis)."""
    info = await redis.info("persistence")
    aof = bool(int(info.get("aof_enabled", 0)))
    appendfsync = rdb_save = None
    try:
        appendfsync = (await redis.config_get("appendfsync")).get("appendfsync")
        rdb_save = (await redis.config_get("save")).get("save")
    except aioredis.ResponseError:
        pass
    return {"aof": aof, "appendfsync": appendfsync, "rdb_save": rdb_save,
            "durable": aof}


async def warn_if_not_durable(redis: aioredis.Redis, log) -> dict | None:
    """Log loudly (error level, at start) when Redis persists nothing. Best effort: a Redis
    that is away now is not a reason to stop, and is checked again by /health and doctor."""
    try:
        state = await persistence(redis)
    except (aioredis.RedisError, OSError) as exc:
        log.warning("cannot ask redis about its persistence", error=str(exc))
        return None
    if not state["durable"]:
        log.error("REDIS PERSISTS NOTHING: a restart of it loses outcome records, alerts and "
                  "ticket links", advice=ADVICE, **state)
    return state
