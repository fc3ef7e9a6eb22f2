"""Benchmark result files: ``bench/results/<name>.json``, one per benchmark, one shape for all.

    {"benchmark", "command", "machine": {cpu, cores, memory_gb, kernel, python},
     "started", "duration_s", "figures": [{name, value, unit, target, met}], "details": {...}}
"""

from __future__ import annotations

import json
import math
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def percentiles(samples: list[float]) -> dict[str, float | int | None]:
    """p50/p95/p99 (nearest rank), min, max and count; None for an empty list."""
    if not samples:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "min": None, "max": None}
    ordered = sorted(samples)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 2)

    return {"n": len(ordered), "p50": rank(50), "p95": rank(95), "p99": rank(99),
            "min": round(ordered[0], 2), "max": round(ordered[-1], 2)}


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def write_result(result: dict, started: datetime | None = None,
                 duration_s: float | None = None, directory: Path = RESULTS) -> Path:
    """Complete ``result`` with the machine and the times, and write it as JSON."""
    result = {**result}
    result.setdefault("machine", machine())
    result.setdefault("started", (started or datetime.now(timezone.utc)).isoformat(
        timespec="seconds"))
    if duration_s is not None:
        result["duration_s"] = round(duration_s, 1)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result['benchmark']}.json"
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return path
