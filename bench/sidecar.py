"""Sidecar throughput: outcome records appended at a fixed rate, through to both platforms.

The sidecar runs as its own process on the bench lab, against the lab's stand-in ticket systems.
Two phases: the target rate (which shows the capacity when more is offered than one process
takes), then ``SUSTAINED_RATE`` for 30 s (the latency without a backlog).
A generator appends synthetic outcome records to ``hotline:outcomes`` in batches every 10 ms at
``--rate`` records/s for ``--seconds``. Per record: from its stream entry (the id is the append
time in ms) to the moment its second ticket was created (the stand-ins record ``created_at``).
The sidecar's resident memory is sampled every second. Targets (issue 7): 2,000 records/s for
60 s, p99 <= 100 ms, memory flat; every record one ticket on each platform, no duplicate.

    python -m bench.sidecar [--rate 2000] [--seconds 60]     # the bench lab must be up
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

import redis

from bench.durability import fsync_policy
from bench.procs import cpu_seconds, lab_processes
from bench.results import percentiles, write_result
from bench.stack import ROOT, Stack
from contracts.names import OUTCOMES, OUTCOMES_GROUP

TICK = 0.01
# A rate one sidecar process keeps up with on the 2-core bench machine (it syncs 600-900/s at most).
SUSTAINED_RATE = 250


def _record() -> dict:
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    tid = uuid.uuid4().hex
    return {"schema": 1, "transfer_id": tid, "call_id": f"bench-{tid[:8]}", "mode": "blind",
            "trigger": "api", "origin": "12345", "target": "110", "initiating_agent": "12345-a1",
            "answering_agent": "110-a1", "caller_number": "13800138000", "category": None,
            "emergency": False, "result": "accepted", "detail": None, "decided_by": None,
            "recording": None, "timestamps": {"requested": now, "dialing": now, "ended": now},
            "durations_ms": {"to_answer": None, "ringing": None, "consult": None, "total": 0}}


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return json.loads(resp.read())


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _lab_pids(lab_descriptor: dict) -> dict[str, int]:
    # Under Sentinel the data nodes are redis-a and redis-b (both work for each write).
    return {name: pid for name, pid in lab_processes(lab_descriptor).items()
            if name == "redis" or name.startswith(("redis-", "standin-"))}


def _drained(r: redis.Redis, timeout: float = 900.0) -> float:
    """Wait until the sidecar has taken and acknowledged every record appended so far (a phase
    that outran it leaves a backlog, which the next phase's records would queue behind);
    returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        group = next((g for g in r.xinfo_groups(OUTCOMES.key)
                      if g["name"].decode() == OUTCOMES_GROUP), None)
        lag = None if group is None else group.get("lag")
        if group is not None and lag is None:        # Redis could not tell: count it
            lag = r.xlen(OUTCOMES.key) - (group.get("entries-read") or 0)
        if lag == 0 and group["pending"] == 0:
            return time.monotonic() - t0
        time.sleep(0.5)
    raise RuntimeError(f"the sidecar's backlog did not drain within {timeout:.0f} s")


def _phase(r: redis.Redis, standins: dict[str, str], pids: dict[str, int], rate: int,
           seconds: float) -> dict:
    """Append ``rate`` records/s for ``seconds``, wait until both tickets of each exist; measure.
    Starts once what earlier phases appended is drained."""
    waited_for_backlog = _drained(r)
    before = {pid: _get(url + "/_standin/stats") for pid, url in standins.items()}
    appended: dict[str, int] = {}                       # transfer id -> entry time (ms)
    rss: list[tuple[float, float]] = []
    sampling = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not sampling.wait(1.0):
            rss.append((round(time.monotonic() - t0, 1), round(_rss_mb(pids["sidecar"]), 1)))
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu_before = {name: cpu_seconds(p, children=False) for name, p in pids.items()}
    started = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate) - sent
        if due > 0:
            pipe = r.pipeline(transaction=False)
            batch = [_record() for _ in range(due)]
            for rec in batch:
                pipe.xadd(OUTCOMES.key, OUTCOMES.entry(rec, transfer_id=rec["transfer_id"]))
            for rec, entry in zip(batch, pipe.execute()):
                appended[rec["transfer_id"]] = int(entry.split(b"-")[0])
            sent += due
        time.sleep(max(0.0, TICK - (time.monotonic() - started - elapsed)))
    generated_for = time.monotonic() - started

    # Until every record has both tickets (or clearly never will).
    deadline = time.monotonic() + max(120.0, seconds * 3)
    while time.monotonic() < deadline:
        stats = {p: _get(u + "/_standin/stats") for p, u in standins.items()}
        if all(stats[p]["tickets"] - before[p]["tickets"] >= sent for p in standins):
            break
        time.sleep(0.5)
    drained_after = time.monotonic() - started
    # Cores each process used while it worked: which one the machine ran out of.
    cores = {name: round((cpu_seconds(p, children=False) - cpu_before[name]) / drained_after, 2)
             for name, p in pids.items()}
    sampling.set()
    sampler.join(2)
    created: dict[str, float] = {}
    for url in standins.values():
        for key, at in _get(url + "/_standin/created"):
            tid = key.rsplit(":", 1)[0]
            if tid in appended:
                created[tid] = max(created.get(tid, 0.0), at)
    after = {p: _get(u + "/_standin/stats") for p, u in standins.items()}
    rss_values = [v for _, v in rss]
    # "Flat": what the last quarter of the run holds over the first quarter.
    quarter = max(1, len(rss_values) // 4)
    return {
        "rate": rate, "seconds": seconds, "records": sent,
        "waited_for_earlier_backlog_s": round(waited_for_backlog, 1),
        "appended_per_s": sent / generated_for,
        "synced": len(created), "synced_per_s": len(created) / drained_after,
        "latency_ms": percentiles([created[t] * 1000 - appended[t] for t in created]),
        "tickets_per_platform": {p: after[p]["tickets"] - before[p]["tickets"] for p in standins},
        "duplicates": sum(after[p]["duplicates"] - before[p]["duplicates"] for p in standins),
        "drained_after_s": round(drained_after, 1), "cores_used": cores,
        "rss_growth_mb": (sum(rss_values[-quarter:]) / quarter - sum(rss_values[:quarter]) / quarter
                          if rss_values else 0.0),
        "sidecar_rss_mb": {"first": rss_values[0] if rss_values else None,
                           "peak": max(rss_values) if rss_values else None,
                           "last": rss_values[-1] if rss_values else None,
                           "samples": rss[:: max(1, len(rss) // 60)]},
    }


def second_sidecar_config(config: Path, lab_descriptor: dict) -> Path:
    """The config of a second sidecar process: its own consumer name and listening port."""
    host, port = Stack.settings_of(config).sidecar.listen
    with socket.socket() as free:
        free.bind((host, 0))
        port2 = free.getsockname()[1]
    text = config.read_text()
    if f'listen = "{host}:{port}"' not in text:
        raise RuntimeError(f"{config}: [sidecar] listen not found as written")
    variant = Path(lab_descriptor["state_dir"]) / "sidecar-2.toml"
    variant.write_text(text.replace(f'listen = "{host}:{port}"',
                                    f'listen = "{host}:{port2}"\nconsumer = "sidecar-2"', 1))
    return variant


def run(config: Path, lab_descriptor: dict, rate: int = 2000, seconds: float = 60.0,
        sustained: int = SUSTAINED_RATE, sustained_seconds: float = 30.0,
        policy_seconds: float = 10.0) -> dict:
    """The target rate first (it shows the capacity: what one sidecar process syncs per second
    when more is offered than it can take), then a rate it sustains, whose latency is the
    sidecar's own and not the backlog's."""
    r = redis.Redis.from_url(lab_descriptor["redis"]["url"])
    standins = {pid: api.url for pid, api in Stack.settings_of(config).sidecar.platforms.items()}
    with Stack(config, lab_descriptor, sidecar=True, service=False) as stack:
        pids = {"sidecar": stack.procs["sidecar"].pid, **_lab_pids(lab_descriptor)}
        full = _phase(r, standins, pids, rate, seconds)
        easy = _phase(r, standins, pids, sustained, sustained_seconds)
        # Scaling out: a second process, its own consumer of the same group.
        with Stack(second_sidecar_config(config, lab_descriptor), lab_descriptor, sidecar=True,
                   service=False) as second:
            two = _phase(r, standins, {**pids, "sidecar-2": second.procs["sidecar"].pid},
                         rate, sustained_seconds)
        # What durability costs: the same short phases with Redis on each fsync policy.
        policies = {}
        for policy in ("off", "always"):
            with fsync_policy(r, policy):
                policies[policy] = {
                    "capacity": _phase(r, standins, pids, rate, policy_seconds),
                    "sustained": _phase(r, standins, pids, sustained, policy_seconds)}
    r.close()
    lat, easy_lat = full["latency_ms"], easy["latency_ms"]
    return {
        "benchmark": "sidecar", "command": "make bench",
        "figures": [
            {"name": "records appended per second", "value": round(full["appended_per_s"]),
             "unit": "records/s", "target": f">= {rate}",
             "met": full["appended_per_s"] >= rate * 0.98},
            {"name": "records synced per second (to both platforms)",
             "value": round(full["synced_per_s"]), "unit": "records/s", "target": f">= {rate}",
             "met": full["synced_per_s"] >= rate * 0.98},
            {"name": "appended to both tickets created, p50", "value": lat["p50"], "unit": "ms",
             "target": None, "met": None},
            {"name": "appended to both tickets created, p99", "value": lat["p99"], "unit": "ms",
             "target": "<= 100 ms", "met": lat["p99"] is not None and lat["p99"] <= 100},
            {"name": "sidecar memory growth, last quarter over first",
             "value": round(full["rss_growth_mb"], 1), "unit": "MB", "target": "flat (< 10 MB)",
             "met": abs(full["rss_growth_mb"]) < 10},
            {"name": "records still queued when the run stopped waiting (backlog, not lost)",
             "value": full["records"] - full["synced"], "unit": "records", "target": "0",
             "met": full["records"] == full["synced"]},
            {"name": "duplicate requests at the platforms",
             "value": full["duplicates"] + easy["duplicates"], "unit": "requests", "target": "0",
             "met": full["duplicates"] + easy["duplicates"] == 0},
            {"name": f"at {sustained} records/s (sustained): appended to both tickets, p50",
             "value": easy_lat["p50"], "unit": "ms", "target": None, "met": None},
            {"name": f"at {sustained} records/s (sustained): appended to both tickets, p99",
             "value": easy_lat["p99"], "unit": "ms", "target": None, "met": None},
            {"name": "two sidecar processes: records synced per second",
             "value": round(two["synced_per_s"]), "unit": "records/s", "target": None,
             "met": None},
            {"name": "two sidecar processes: duplicate requests at the platforms",
             "value": two["duplicates"], "unit": "requests", "target": "0",
             "met": two["duplicates"] == 0},
        ] + _policy_figures(policies, rate, sustained),
        "details": {"at_target_rate": full, "at_sustained_rate": easy,
                    "two_processes_at_target_rate": two, "fsync_policies": policies},
    }


def _policy_figures(policies: dict, rate: int, sustained: int) -> list[dict]:
    figures = []
    for policy, phases in policies.items():
        label = "Redis without AOF" if policy == "off" else f"Redis appendfsync {policy}"
        cap, easy = phases["capacity"], phases["sustained"]
        figures += [
            {"name": f"{label}: records synced per second at {rate}/s offered",
             "value": round(cap["synced_per_s"]), "unit": "records/s", "target": None,
             "met": None},
            {"name": f"{label}: at {sustained} records/s, appended to both tickets, p99",
             "value": easy["latency_ms"]["p99"], "unit": "ms", "target": None, "met": None},
            {"name": f"{label}: Redis CPU at {rate}/s offered", "unit": "cores",
             "value": round(sum(c for n, c in cap["cores_used"].items()
                                if n == "redis" or n.startswith("redis-")), 2),
             "target": None, "met": None},
            {"name": f"{label}: duplicate requests at the platforms",
             "value": cap["duplicates"] + easy["duplicates"], "unit": "requests", "target": "0",
             "met": cap["duplicates"] + easy["duplicates"] == 0},
        ]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sidecar")
    parser.add_argument("--config", type=Path, default=ROOT / "bench" / "lab.toml")
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--sustained", type=int, default=SUSTAINED_RATE)
    args = parser.parse_args(argv)
    result = run(args.config, Stack.descriptor_of(args.config), args.rate, args.seconds,
                 args.sustained)
    write_result(result)
    print(json.dumps({k: v for k, v in result.items() if k != "details"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
