"""What durable Redis costs: the AOF fsync policy, measured on the bench lab's own Redis.

Policies: ``off`` (``appendonly no``: nothing survives a restart), ``everysec`` (an OS crash may
lose the last second) and ``always`` (every acknowledged write is on disk: the lab's and the
README's production setting). The policy is switched on the running Redis with ``CONFIG SET``
(turning AOF on starts a rewrite, which is waited for), so every policy meets the same server,
data and machine.

Per policy:

* the service's outcome append (its own Lua script, ``hotline_link.outcomes``), one at a time:
  latency p50/p99 and appends per second;
* 32 clients each running the sidecar's kind of write, a MULTI/EXEC of five commands (ticket ids,
  XACK, alert outbox), at once: transactions per second.

What a replica-confirmed write costs (the bench lab runs Redis under Sentinel, ``[lab]
redis_sentinel``: a primary and a replica, both ``appendfsync always``), with and without ``WAIT 1``
as ``hotline_link.redisconn.Durable`` sends it:

* per record: the service's outcome append (EVAL, then WAIT on the same connection, one round
  trip), one at a time: p50/p99 and appends per second;
* per transfer: the sidecar's ticket transaction for one record (MULTI/EXEC of five writes), then
  ``Durable.confirm`` (PUBLISH mark + WAIT, a second round trip), one at a time (p50/p99) and 32
  clients at once (per second).

The end-to-end before/after (sidecar throughput and latency, load set-up and CPU at 200 calls with
and without AOF) is measured by the ``sidecar`` and ``load`` benchmarks with ``fsync_policy``.

    python -m bench.durability            # the bench lab must be up
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import redis

from bench.results import percentiles
from bench.stack import ROOT, Stack
from contracts.names import OUTCOME_CLAIM, OUTCOMES
from hotline_link.outcomes import APPEND_SCRIPT, CLAIM_TTL
from hotline_link.redisconn import MARK_CHANNEL

POLICIES = ("off", "everysec", "always")
SCRATCH = "bench:durability"


def set_fsync(r: redis.Redis, policy: str, timeout: float = 60.0) -> None:
    """Put the running Redis on ``policy`` and return once an AOF it starts is written."""
    if policy == "off":
        r.config_set("appendonly", "no")
        return
    r.config_set("appendfsync", policy)
    r.config_set("appendonly", "yes")
    deadline = time.monotonic() + timeout
    while True:
        info = r.info("persistence")
        if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"AOF rewrite still running after {timeout:.0f} s")
        time.sleep(0.05)


@contextmanager
def fsync_policy(r: redis.Redis, policy: str | None):
    """``policy`` for the block (None: leave Redis as it is), the previous setting after it."""
    if policy is None:
        yield
        return
    was_on = r.config_get("appendonly")["appendonly"] == "yes"
    was = r.config_get("appendfsync")["appendfsync"] if was_on else "off"
    set_fsync(r, policy)
    try:
        yield
    finally:
        set_fsync(r, was)


def _appends(r: redis.Redis, count: int) -> dict:
    append = r.register_script(APPEND_SCRIPT)
    stream = f"{SCRATCH}:outcomes"
    record = json.dumps({"schema": 1, "result": "accepted", "caller_number": "13800138000",
                         "pad": "x" * 600})                 # about a real record's size
    took = []
    t0 = time.perf_counter()
    for _ in range(count):
        tid = uuid.uuid4().hex
        s = time.perf_counter()
        append(keys=[stream, f"{SCRATCH}:{OUTCOME_CLAIM.format(tid)}"],
               args=[tid, record, CLAIM_TTL, OUTCOMES.field, "transfer_id"])
        took.append((time.perf_counter() - s) * 1000)
    elapsed = time.perf_counter() - t0
    return {"n": count, "per_s": round(count / elapsed), "latency_ms": percentiles(took)}


def _appends_waited(r: redis.Redis, count: int, replicas: int, wait_ms: int = 200) -> dict:
    """The sink's append as it runs now: EVAL and, with ``replicas``, WAIT in one pipeline."""
    stream = f"{SCRATCH}:outcomes"
    record = json.dumps({"schema": 1, "result": "accepted", "caller_number": "13800138000",
                         "pad": "x" * 600})
    took, short = [], 0
    t0 = time.perf_counter()
    for _ in range(count):
        tid = uuid.uuid4().hex
        s = time.perf_counter()
        pipe = r.pipeline(transaction=False)
        pipe.eval(APPEND_SCRIPT, 2, stream, f"{SCRATCH}:{OUTCOME_CLAIM.format(tid)}", tid,
                  record, CLAIM_TTL, OUTCOMES.field, "transfer_id")
        if replicas:
            pipe.wait(replicas, wait_ms)
        replies = pipe.execute()
        took.append((time.perf_counter() - s) * 1000)
        short += bool(replicas) and replies[-1] < replicas
    elapsed = time.perf_counter() - t0
    return {"n": count, "per_s": round(count / elapsed), "latency_ms": percentiles(took),
            "not_confirmed": short}


def _ticket_tx(r: redis.Redis, tag: str, replicas: int, wait_ms: int = 200) -> bool:
    """One record's ticket transaction (the sidecar's shape), then its confirmation."""
    pipe = r.pipeline(transaction=True)
    pipe.hset(f"{SCRATCH}:tickets", tag, "t-12345")
    pipe.hset(f"{SCRATCH}:tickets", f"{tag}:110", "t-110")
    pipe.xadd(f"{SCRATCH}:alerts", {"alert": "{}"}, maxlen=10_000, approximate=True)
    pipe.incr(f"{SCRATCH}:acked")
    pipe.expire(f"{SCRATCH}:tickets", 3600)
    pipe.execute()
    if not replicas:
        return True
    pipe = r.pipeline(transaction=False)
    pipe.publish(MARK_CHANNEL, b"")
    pipe.wait(replicas, wait_ms)
    return pipe.execute()[-1] >= replicas


def _per_transfer(url: str, count: int, clients: int, each: int, replicas: int) -> dict:
    r = redis.Redis.from_url(url)
    took, short = [], 0
    for i in range(count):
        s = time.perf_counter()
        short += not _ticket_tx(r, f"one-{i}", replicas)
        took.append((time.perf_counter() - s) * 1000)
    r.close()
    elapsed = _all_at_once(url, clients,
                           lambda c, n: [_ticket_tx(c, f"{n}-{i}", replicas) for i in range(each)])
    return {"latency_ms": percentiles(took), "not_confirmed": short,
            "clients": clients, "per_s": round(clients * each / elapsed)}


def _all_at_once(url: str, clients: int, job) -> float:
    """``job(client, n)`` in ``clients`` threads, each with its own connection, released
    together; seconds until the last one ends."""
    start = threading.Barrier(clients + 1)

    def work(n: int) -> None:
        c = redis.Redis.from_url(url)
        start.wait()
        job(c, n)
        c.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def replica_cost(url: str, appends: int, clients: int, each: int) -> tuple[list, dict]:
    """Per record and per transfer, without and with WAIT 1 (the lab's policy, always)."""
    r = redis.Redis.from_url(url)
    got = {}
    try:
        for replicas in (0, 1):
            got[replicas] = {"append": _appends_waited(r, appends, replicas),
                             "transfer": _per_transfer(url, appends // 3, clients, each,
                                                       replicas)}
            _clean(r)
    finally:
        _clean(r)
        r.close()
    figures = []
    for replicas, label in ((0, "no WAIT"), (1, "WAIT 1 (replica-confirmed)")):
        app, tr = got[replicas]["append"], got[replicas]["transfer"]
        figures += _append_figures(label, app) + [
            {"name": f"{label}: a transfer's ticket transaction, p50",
             "value": tr["latency_ms"]["p50"], "unit": "ms", "target": None, "met": None},
            {"name": f"{label}: a transfer's ticket transaction, p99",
             "value": tr["latency_ms"]["p99"], "unit": "ms", "target": None, "met": None},
            {"name": f"{label}: {clients} clients' ticket transactions", "value": tr["per_s"],
             "unit": "/s", "target": None, "met": None},
        ]
    unconfirmed = sum(got[1][k]["not_confirmed"] for k in ("append", "transfer"))
    figures.append({"name": "WAIT 1: writes the replica did not confirm within 200 ms",
                    "value": unconfirmed, "unit": "", "target": "0", "met": unconfirmed == 0})
    return figures, got


def _transactions(url: str, clients: int, each: int) -> dict:
    """``clients`` threads, each ``each`` MULTI/EXEC blocks of five writes, all at once."""
    def work(r: redis.Redis, n: int) -> None:
        for i in range(each):
            pipe = r.pipeline(transaction=True)
            pipe.hset(f"{SCRATCH}:tickets", f"{n}-{i}", "t-12345")
            pipe.hset(f"{SCRATCH}:tickets", f"{n}-{i}:110", "t-110")
            pipe.xadd(f"{SCRATCH}:alerts", {"alert": "{}"}, maxlen=10_000, approximate=True)
            pipe.incr(f"{SCRATCH}:acked")
            pipe.expire(f"{SCRATCH}:tickets", 3600)
            pipe.execute()

    elapsed = _all_at_once(url, clients, work)
    return {"clients": clients, "transactions": clients * each,
            "per_s": round(clients * each / elapsed)}


def _append_figures(label: str, app: dict) -> list[dict]:
    return [
        {"name": f"{label}: outcome append, p50", "value": app["latency_ms"]["p50"],
         "unit": "ms", "target": None, "met": None},
        {"name": f"{label}: outcome append, p99", "value": app["latency_ms"]["p99"],
         "unit": "ms", "target": None, "met": None},
        {"name": f"{label}: outcome appends one at a time", "value": app["per_s"],
         "unit": "/s", "target": None, "met": None},
    ]


def _clean(r: redis.Redis) -> None:
    for key in r.scan_iter(f"{SCRATCH}:*", count=1000):
        r.unlink(key)


def run(config: Path, lab_descriptor: dict, appends: int = 3000, clients: int = 32,
        each: int = 100) -> dict:
    url = lab_descriptor["redis"]["url"]
    r = redis.Redis.from_url(url)
    per: dict[str, dict] = {}
    try:
        for policy in POLICIES:
            with fsync_policy(r, policy):
                per[policy] = {"append": _appends(r, appends),
                               "transactions": _transactions(url, clients, each)}
            _clean(r)
    finally:
        _clean(r)
        r.close()
    figures = []
    for policy in POLICIES:
        app, tx = per[policy]["append"], per[policy]["transactions"]
        label = "no AOF" if policy == "off" else f"appendfsync {policy}"
        figures += _append_figures(label, app) + [
            {"name": f"{label}: {clients} clients' 5-write transactions",
             "value": tx["per_s"], "unit": "/s", "target": None, "met": None},
        ]
    details = {"policies": per, "method": __doc__.strip()}
    if lab_descriptor["redis"].get("sentinels"):
        more, details["replica"] = replica_cost(url, appends, clients, each)
        figures += more
    return {"benchmark": "durability", "command": "make bench", "figures": figures,
            "details": details}


def main(argv: list[str] | None = None) -> int:
    import argparse

    from bench.results import write_result

    parser = argparse.ArgumentParser(prog="python -m bench.durability")
    parser.add_argument("--config", type=Path, default=ROOT / "bench" / "lab.toml")
    args = parser.parse_args(argv)
    result = run(args.config, Stack.descriptor_of(args.config))
    write_result(result)
    print(json.dumps(result["figures"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
