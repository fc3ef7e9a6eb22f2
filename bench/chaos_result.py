"""``make chaos`` writes its result like a benchmark: ``bench/results/chaos.json`` and the README's
table, with the machine and how many cases of each group passed. A pytest plugin, registered by
``tests/conftest.py``.

Only a whole run at full scale writes it (every chaos case selected, none deselected, no
``CHAOS_*`` variable scaling it down): a run narrowed with ``-k`` or to one file, or the quick
pass ``make test`` ends with, is a check, not the suite's result.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent.parent / "tests" / "chaos"
GROUPS = {
    "test_availability.py": "service, sidecar or Redis down, Redis restarted empty",
    "test_faults.py": "app, PBX and Redis faults; DTMF fuzz",
    "test_sidecar_faults.py": "sidecar killed, platforms failing, during a burst",
    "test_sip_security.py": "SIP scanning and unauthenticated INVITE/REFER",
    "test_config_everything.py": "every invalid config value",
    "test_standby.py": "hot standby: active instance killed -9 or frozen",
}
# Figures the cases measure (name -> values), reported beside the pass counts:
# "takeover_s" (test_standby.py), "redis_failover_s" (the Sentinel cases).
MEASURED: dict[str, list[float]] = {}
TARGETS = {"takeover_s": ("s after the lease lapsed (p50 / max)", 3.0,
                          "hot-standby takeover: the new active's ARI connect"),
           "redis_failover_s": ("s from kill -9 to the first write on the new primary "
                                "(p50 / max)", None, "Redis Sentinel failover")}


class ChaosResult:
    def __init__(self) -> None:
        self.started = datetime.now(timezone.utc)
        self.t0 = time.monotonic()
        self.selected = 0
        self.files: set[str] = set()
        self.deselected = 0
        self.cases: dict[str, str] = {}             # node id -> "passed" | "failed"
        self.failures: list[dict] = []

    def _in_chaos(self, item) -> bool:
        return Path(str(item.fspath)).resolve().parent == HERE

    def pytest_deselected(self, items) -> None:
        self.deselected += sum(1 for i in items if self._in_chaos(i))

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items) -> None:
        chaos = [i for i in items if self._in_chaos(i)]
        self.selected = len(chaos)
        self.files = {Path(str(i.fspath)).name for i in chaos}

    def pytest_runtest_logreport(self, report) -> None:
        path = report.nodeid.split("::", 1)[0]
        if Path(path).parent.name != "chaos":
            return
        # A case fails if any phase does: the invariants (no channel or bridge left, every
        # outcome once) are checked in the fixtures' teardown.
        if report.failed:
            self.cases[report.nodeid] = "failed"
            self.failures.append({"case": report.nodeid, "phase": report.when,
                                  "error": str(report.longrepr).strip().splitlines()[-1][:300]})
        elif report.when == "call":
            self.cases.setdefault(report.nodeid, "passed")

    def pytest_sessionfinish(self, session) -> None:
        outcomes: dict[str, dict[str, int]] = {}
        for nodeid, outcome in self.cases.items():
            group = outcomes.setdefault(Path(nodeid.split("::", 1)[0]).name,
                                        {"passed": 0, "failed": 0})
            group[outcome] += 1
        ran = len(self.cases)
        whole = self.files == {p.name for p in HERE.glob("test_*.py")}
        scaled = any(k.startswith("CHAOS_") for k in os.environ)
        if not ran or not whole or scaled or self.deselected or ran < self.selected:
            return
        from bench.report import update_readme
        from bench.results import write_result

        figures = [{"name": f"{GROUPS.get(name, name)} ({name})", "value": g["passed"],
                    "unit": f"of {g['passed'] + g['failed']} cases passed",
                    "target": "all", "met": g["failed"] == 0}
                   for name, g in sorted(outcomes.items())]
        for key, values in sorted(MEASURED.items()):
            if not values:
                continue
            unit, target, what = TARGETS.get(key, ("", None, key))
            worst = max(values)
            figures.append({"name": f"{what} ({len(values)} measured)",
                            "value": f"{statistics.median(values):.2f} / {worst:.2f}",
                            "unit": unit, "target": f"<= {target}" if target else "measured",
                            "met": worst <= target if target else True})
        write_result({"benchmark": "chaos", "command": "make chaos", "figures": figures,
                      "details": {"cases": ran, "failures": self.failures}},
                     self.started, time.monotonic() - self.t0)
        update_readme()
