"""``make chaos`` writes its result like a benchmark: ``bench/results/chaos.json`` and the README's
table, with the machine and how many cases of each group passed. A pytest plugin, registered by
``tests/conftest.py``.

Only a whole run at full scale writes it (every chaos case of its lab selected, none deselected,
no ``CHAOS_*`` variable scaling it down): a run narrowed with ``-k`` or to one file, or the quick
pass ``make test`` ends with, is a check, not the suite's result.

Some cases need a lab of their own (``LAB_OF``: the Sentinel failover runs on
``tests/chaos/lab-sentinel.toml``); ``make chaos`` runs each lab's cases in a pytest run of its
own, and each run replaces its own files' figures in ``chaos.json``, keeping the other runs'.
A case can add measured figures (the failover time): ``request.node.user_properties.append(
("chaos_figures", [{"name", "value", "unit"}, ...]))``; they are named after their file too.
"""

from __future__ import annotations

import json
import os
import re
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
    "test_sentinel.py": "Redis primary killed -9 during a burst and transfers; it and the active "
                        "instance at once, Sentinel lab",
    "test_standby.py": "hot standby: active instance killed -9 or frozen",
}
# The lab file a chaos file runs on, where it is not tests/chaos/lab.toml.
LAB_OF = {"test_sentinel.py": "lab-sentinel.toml"}
_FILE_OF = re.compile(r"\((test_[a-z_]+\.py)\)$")


class ChaosResult:
    def __init__(self) -> None:
        self.started = datetime.now(timezone.utc)
        self.t0 = time.monotonic()
        self.selected: dict[str, int] = {}          # file -> cases selected
        self.files: set[str] = set()
        self.deselected = 0
        self.cases: dict[str, str] = {}             # node id -> "passed" | "failed"
        self.failures: list[dict] = []
        self.measured: list[dict] = []               # figures the cases measured

    def _in_chaos(self, item) -> bool:
        return Path(str(item.fspath)).resolve().parent == HERE

    def pytest_deselected(self, items) -> None:
        self.deselected += sum(1 for i in items if self._in_chaos(i))

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items) -> None:
        chaos = [i for i in items if self._in_chaos(i)]
        self.selected = {}
        for i in chaos:
            name = Path(str(i.fspath)).name
            self.selected[name] = self.selected.get(name, 0) + 1
        self.files = set(self.selected)

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
        elif report.when == "call" and not report.skipped:
            self.cases.setdefault(report.nodeid, "passed")
            name = Path(path).name
            for key, figures in report.user_properties:
                if key == "chaos_figures":
                    self.measured += [{**f, "name": f"{f['name']} ({name})"} for f in figures]

    def pytest_sessionfinish(self, session) -> None:
        outcomes: dict[str, dict[str, int]] = {}
        for nodeid, outcome in self.cases.items():
            group = outcomes.setdefault(Path(nodeid.split("::", 1)[0]).name,
                                        {"passed": 0, "failed": 0})
            group[outcome] += 1
        ran = len(self.cases)
        lab = Path(os.environ.get("HOTLINE_TEST_LAB", "lab.toml")).name
        mine = {p.name for p in HERE.glob("test_*.py") if LAB_OF.get(p.name, "lab.toml") == lab}
        whole = bool(mine) and mine <= self.files
        scaled = any(k.startswith("CHAOS_") for k in os.environ)
        # The other labs' files are not collected in this run (their cases need another lab).
        if (not ran or not whole or scaled or self.deselected
                or ran < sum(n for f, n in self.selected.items() if f in mine)):
            return
        from bench.report import update_readme
        from bench.results import RESULTS, write_result

        figures = [{"name": f"{GROUPS.get(name, name)} ({name})", "value": g["passed"],
                    "unit": f"of {g['passed'] + g['failed']} cases passed",
                    "target": "all", "met": g["failed"] == 0}
                   for name, g in sorted(outcomes.items()) if name in mine]
        figures += [{"target": None, "met": None, **f} for f in self.measured]
        failures = [f for f in self.failures
                    if Path(f["case"].split("::", 1)[0]).name in mine]
        # The other labs' runs: their figures and failures stay as they were.
        try:
            before = json.loads((RESULTS / "chaos.json").read_text())
        except (OSError, ValueError):
            before = {}
        kept = [f for f in before.get("figures", [])
                if (m := _FILE_OF.search(f["name"])) and m.group(1) not in mine]
        kept_failures = [f for f in before.get("details", {}).get("failures", [])
                         if Path(f["case"].split("::", 1)[0]).name not in mine]
        # A result from before the runs were split is the plain lab's run.
        runs = before.get("details", {}).get("runs") or (
            {"lab.toml": {"started": before["started"], "duration_s": before.get("duration_s"),
                          "cases": before.get("details", {}).get("cases", 0)}}
            if "started" in before else {})
        runs = {k: v for k, v in runs.items() if k != lab}
        runs[lab] = {"started": self.started.isoformat(timespec="seconds"),
                     "duration_s": round(time.monotonic() - self.t0, 1), "cases": ran}
        # The header shows the whole suite: from the first run's start, every run's time.
        write_result({"benchmark": "chaos", "command": "make chaos", "figures": kept + figures,
                      "details": {"cases": sum(r["cases"] for r in runs.values()),
                                  "failures": kept_failures + failures, "runs": runs},
                      "started": min(r["started"] for r in runs.values())},
                     None, sum(r["duration_s"] or 0 for r in runs.values()))
        update_readme()
