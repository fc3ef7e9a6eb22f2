"""``hotline-link demo`` on the real lab: its scenario runs with the lab's own softphones, and
every step's outcome record and both tickets exist afterwards (read here from the sidecar's API
and from the two ticket systems' stand-ins, not from the demo's word)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import CONFIG, ROOT
from test_sidecar import stack, transfer_of  # noqa: F401 - fixture

pytestmark = pytest.mark.lab


def test_the_demo_plays_its_scenario_and_every_step_is_recorded(  # noqa: F811
        stack, service, _phones):
    # The demo registers the lab's seats itself (one registration per seat): the tests' phones
    # step aside while it runs, and register again after.
    for p in _phones.all():
        p.stop()
    try:
        run = subprocess.run([sys.executable, "-m", "hotline_link.cli", "-c", str(CONFIG), "demo",
                              "--pace", "0", "--json"], cwd=ROOT, capture_output=True,
                             text=True, timeout=240)
    finally:
        for p in _phones.all():
            p.restart()
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["demo"] == "ok"
    steps = {s["step"]: s for s in summary["steps"]}
    assert list(steps) == ["transfer", "three_way", "emergency"]
    expected = {"transfer": ("12345", "110", "blind", "accepted", False),
                "three_way": ("110", "12345", "three_way", "accepted_by_target", False),
                "emergency": ("12345", "110", "emergency", "accepted_by_target", True)}
    for key, (origin, target, mode, result, emergency) in expected.items():
        step = steps[key]
        status, body = stack.api("GET", f"/transfers/{step['transfer_id']}")
        assert status == 200
        rec = body["record"]
        assert (rec["origin"], rec["target"], rec["mode"], rec["result"], rec["emergency"]) == (
            origin, target, mode, result, emergency), key
        assert rec["trigger"] == "dtmf" and rec["matter"]["matter_id"] == step["matter_id"]
        assert body["tickets"] == step["tickets"] and set(body["tickets"]) == {"12345", "110"}
        for pid, ticket in body["tickets"].items():
            [made] = [t for t in stack.tickets(pid) if str(t["id"]) == str(ticket)]
            assert transfer_of(made) == step["transfer_id"]
    # The emergency's alert went out as it started.
    assert any(w["event"]["event"] == "emergency"
               and w["event"]["data"]["transfer_id"] == steps["emergency"]["transfer_id"]
               for w in stack.webhooks())
