"""The audit trail: every request to the API (who, what, when, from where, with what result) as
an entry of an append-only Redis stream, ``hotline:audit``, and ``GET /audit`` to read it.

Refused requests are entries too (401: no known token; 403: a scope or a centre the client does
not have). An entry is written before the response goes out, so a response the client saw is in
the trail; if Redis cannot take it, the entry goes to the log instead, whole, and the request is
answered all the same (the API's reads and writes need Redis anyway). Entries are never edited;
the stream is trimmed by age only (``sidecar.audit_retention_days``).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import redis.asyncio as aioredis
import structlog
from aiohttp import web

from contracts.names import AUDIT
from contracts.privacy import mask_number

from .access import Client

log = structlog.get_logger("audit")

FIELDS = ("id", "at", "client", "role", "hotline", "remote", "method", "path", "query", "scope",
          "status", "outcome", "ms", "resource")
PAGE = 1000


def outcome(status: int) -> str:
    return ("unauthenticated" if status == 401 else "refused" if status == 403
            else "error" if status >= 400 else "ok")


class Audit:
    def __init__(self, redis: aioredis.Redis, retention_days: float):
        self.redis = redis
        self.retention_s = retention_days * 86400

    def entry(self, request: web.Request, client: Client | None, scope: str | None,
              status: int, started: float) -> dict:
        resource = ",".join(f"{k}={v}" for k, v in request.match_info.items())
        return {"at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "client": client.name if client else None,
                "role": client.role if client else None,
                "hotline": client.hotline if client else None,
                "remote": request.remote, "method": request.method, "path": request.path,
                # A caller's number given as a filter is personal data like any other.
                "query": mask_number(request.query_string)[:500], "scope": scope,
                "status": status, "outcome": outcome(status),
                "ms": round((time.perf_counter() - started) * 1000, 2),
                "resource": resource or None}

    async def record(self, entry: dict) -> None:
        log.info("api request", **{k: v for k, v in entry.items() if v is not None})
        minid = f"{int((time.time() - self.retention_s) * 1000)}-0"
        try:
            await self.redis.xadd(AUDIT.key, AUDIT.entry(entry), minid=minid, approximate=True)
        except (aioredis.RedisError, OSError) as exc:
            log.error("audit entry kept in the log only: Redis did not take it",
                      error=str(exc), **{f"audit_{k}": v for k, v in entry.items()})

    async def query(self, request: web.Request, since: float, until: float,
                    after: str | None, limit: int) -> tuple[list[dict], str | None]:
        """Entries from ``since`` to ``until`` (unix seconds) after the cursor ``after`` (an
        entry id), matching the filters, at most ``limit``: (entries, next cursor or None)."""
        q = request.query
        lo = f"({after}" if after else f"{int(since * 1000)}-0"
        hi = "+" if until == float("inf") else f"{int(until * 1000)}-18446744073709551615"
        rows: list[dict] = []
        last = None
        while len(rows) < limit:
            got = await self.redis.xrange(AUDIT.key, lo, hi, count=PAGE)
            for entry_id, fields in got:
                last = entry_id.decode()
                try:
                    entry = {"id": last, **AUDIT.payload(fields)}
                except (KeyError, ValueError):
                    continue
                if _matches(entry, q):
                    rows.append(entry)
                    if len(rows) >= limit:
                        break
            if len(got) < PAGE:
                return rows, None if len(rows) < limit else last
            lo = f"({last}"
        return rows, last


def _matches(entry: dict, q) -> bool:
    for name in ("client", "outcome", "method", "hotline"):
        if q.get(name) is not None and str(entry.get(name)) != q[name]:
            return False
    if q.get("status") is not None and str(entry.get("status")) != q["status"]:
        return False
    if q.get("path") is not None and not str(entry.get("path", "")).startswith(q["path"]):
        return False
    return True
