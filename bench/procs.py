"""Where the machine's CPU goes during a benchmark: per process (with its children) and idle.

Read from /proc: a process's utime + stime, and the machine's busy and idle time over all its
CPUs. The lab's own processes are found in its state file (every process the lab started is
recorded there with its pid).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """``pid`` and every descendant."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except (FileNotFoundError, ValueError):
                pass
    return out


def cpu_seconds(pid: int, children: bool = True) -> float:
    """CPU seconds ``pid`` (and, by default, its descendants alive now) used so far."""
    total = 0.0
    for p in tree(pid) if children else [pid]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(") ", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
        except (FileNotFoundError, IndexError):
            pass
    return total


def machine_seconds() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine since boot, all CPUs together."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]                  # idle + iowait
    return (sum(fields) - idle) / TICK, idle / TICK


def lab_processes(lab_descriptor: dict) -> dict[str, int]:
    """Name -> pid of every process the lab started (redis, asterisk-<id>, standin-<id>)."""
    state = json.loads((Path(lab_descriptor["state_dir"]) / "state.json").read_text())
    return {p["name"]: p["pid"] for p in state["processes"]}


class CpuMeter:
    """Cores each named group of processes used between ``start()`` and ``stop()``, and the
    machine's idle cores over the same time."""

    def __init__(self, groups: dict[str, list[int]]):
        self.groups = groups

    def _read(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.groups.items()}

    def start(self) -> "CpuMeter":
        self._t0, self._cpu0, self._machine0 = time.monotonic(), self._read(), machine_seconds()
        return self

    def stop(self) -> dict:
        elapsed = time.monotonic() - self._t0
        cpu, (busy, idle) = self._read(), machine_seconds()
        return {
            "cores": {name: round((cpu[name] - self._cpu0[name]) / elapsed, 3) for name in cpu},
            "machine_busy_cores": round((busy - self._machine0[0]) / elapsed, 3),
            "machine_idle_cores": round((idle - self._machine0[1]) / elapsed, 3),
            "cpus": os.cpu_count(),
        }
