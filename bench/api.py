"""What scoped access and the audit trail cost the sidecar's API (issue 19).

The sidecar runs as its own process on the bench lab. ``RECORDS`` synthetic transfer records are
synced first; then, for three kinds of client (the administrator, who sees every record as it is;
a desktop of 12345, whose reads are checked for its centre; a city-wide supervisor, who gets every
record with numbers masked), ``REQUESTS`` requests each of ``GET /transfers/{id}`` and
``GET /transfers?limit=100`` with ``CONCURRENCY`` clients at once. Per kind: latency p50/p99,
requests per second, and the sidecar's CPU per request. Every request also appended one audit
entry: the trail's bytes per entry are read from Redis (``MEMORY USAGE``), and the two steps the
access layer adds to each request are timed alone in this process: finding the client of a token
among 1,000 clients, and writing one audit entry (one ``XADD``) to the lab's Redis.

    python -m bench --only api          # or: python -m bench.api (the bench lab must be up)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import redis

from bench.procs import cpu_seconds
from bench.results import percentiles
from bench.sidecar import _record
from bench.stack import Stack, run_alone
from contracts.names import AUDIT, OUTCOMES, RECORD
from sidecar import access

RECORDS = 2000
REQUESTS = 2000
CONCURRENCY = 8
KINDS = {"admin": None, "desktop of 12345": ("desktop", "12345"),
         "city-wide supervisor (masked)": ("supervisor", None)}


async def _load(base: str, token: str, paths: list[str]) -> tuple[list[float], float]:
    """Latencies (ms) of GETting ``paths`` with ``CONCURRENCY`` at once, and the wall time."""
    latencies: list[float] = []
    queue = list(reversed(paths))
    headers = {"Authorization": f"Bearer {token}"}

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            path = queue.pop()
            t0 = time.perf_counter()
            async with session.get(base + path, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{path}: {resp.status}")
            latencies.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
    return latencies, time.perf_counter() - t0


def _auth_cost(tmp: Path) -> float:
    """Microseconds to find a token's client among 1,000 (the file unchanged: one stat)."""
    path = tmp / "bench-api-clients.json"
    path.unlink(missing_ok=True)
    hotlines = ("12345", "110")
    tokens = [access.add(path, f"c{i}", "desktop", "12345", hotlines) for i in range(1000)]
    clients = access.Clients(path, None, hotlines)
    clients.authenticate(f"Bearer {tokens[0]}")
    n = 20_000
    t0 = time.perf_counter()
    for i in range(n):
        clients.authenticate(f"Bearer {tokens[i % 1000]}")
    path.unlink()
    return (time.perf_counter() - t0) / n * 1e6


def _audit_cost(r: redis.Redis, entry: dict) -> float:
    """Microseconds for one audit entry's XADD, one at a time (as each request writes it)."""
    key = f"bench:audit:{uuid.uuid4().hex}"
    n = 5000
    t0 = time.perf_counter()
    for _ in range(n):
        r.xadd(key, AUDIT.entry(entry))
    cost = (time.perf_counter() - t0) / n * 1e6
    r.delete(key)
    return cost


def run(config: Path, lab_descriptor: dict) -> dict:
    r = redis.Redis.from_url(lab_descriptor["redis"]["url"])
    settings = Stack.settings_of(config)
    clients_file = settings.sidecar.clients_file
    host, port = settings.sidecar.listen
    base = f"http://{host}:{port}"
    tokens = {"admin": settings.sidecar.token}
    run_id = uuid.uuid4().hex[:6]
    names = {kind: f"bench-{spec[0]}-{run_id}" for kind, spec in KINDS.items() if spec}
    for kind, name in names.items():
        tokens[kind] = access.add(clients_file, name, *KINDS[kind], settings.hotlines)
    records = [_record() for _ in range(RECORDS)]
    out: dict[str, dict] = {}
    with Stack(config, lab_descriptor, sidecar=True, service=False) as stack:
        pid = stack.procs["sidecar"].pid
        pipe = r.pipeline(transaction=False)
        for rec in records:
            pipe.xadd(OUTCOMES.key, {"transfer_id": rec["transfer_id"],
                                     OUTCOMES.field: json.dumps(rec)})
        pipe.execute()
        last = RECORD.format(records[-1]["transfer_id"])
        stack.wait_until(lambda: r.exists(last), "records synced", timeout=300)
        audit_before = r.xlen(AUDIT.key)
        for kind in KINDS:
            for name, paths in (
                    ("one record", [f"/transfers/{records[i % RECORDS]['transfer_id']}"
                                    for i in range(REQUESTS)]),
                    ("a page of 100", ["/transfers?limit=100"] * (REQUESTS // 4))):
                cpu0 = cpu_seconds(pid)
                latencies, wall = asyncio.run(_load(base, tokens[kind], paths))
                cpu = cpu_seconds(pid) - cpu0
                out[f"{kind}: {name}"] = {
                    "latency_ms": percentiles(latencies), "requests": len(paths),
                    "per_s": round(len(paths) / wall), "cpu_ms_per_request":
                        round(cpu / len(paths) * 1000, 3)}
        entries = r.xlen(AUDIT.key) - audit_before
        audit_bytes = r.memory_usage(AUDIT.key, samples=0) / max(1, r.xlen(AUDIT.key))
        [(_id, fields)] = r.xrevrange(AUDIT.key, count=1)
        entry = AUDIT.payload(fields)
    for name in names.values():
        access.revoke(clients_file, name)
    auth_us = _auth_cost(Path(lab_descriptor["state_dir"]))
    audit_us = _audit_cost(r, entry)
    r.close()
    figures = []
    for label, res in out.items():
        figures += [
            {"name": f"{label}: latency p50 / p99", "value":
                f"{res['latency_ms']['p50']} / {res['latency_ms']['p99']}", "unit": "ms",
             "target": None, "met": None},
            {"name": f"{label}: requests per second ({CONCURRENCY} clients)",
             "value": res["per_s"], "unit": "requests/s", "target": None, "met": None},
            {"name": f"{label}: sidecar CPU per request", "value": res["cpu_ms_per_request"],
             "unit": "ms", "target": None, "met": None}]
    figures += [
        {"name": "audit entries written for the requests made", "value": entries,
         "unit": "entries", "target": str(sum(r["requests"] for r in out.values())),
         "met": entries == sum(r["requests"] for r in out.values())},
        {"name": "audit trail memory per entry in Redis", "value": round(audit_bytes),
         "unit": "bytes", "target": None, "met": None},
        {"name": "finding a token's client among 1,000 (per request)",
         "value": round(auth_us, 2), "unit": "µs", "target": None, "met": None},
        {"name": "writing one audit entry to Redis (per request)", "value": round(audit_us, 1),
         "unit": "µs", "target": None, "met": None},
    ]
    return {"benchmark": "api", "command": "python -m bench --only api", "figures": figures,
            "details": {"runs": out, "records": RECORDS, "concurrency": CONCURRENCY}}


if __name__ == "__main__":
    sys.exit(run_alone(run))
