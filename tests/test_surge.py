"""The surge plan (R8) on the real lab: more callers than agents, scripted with SIPp.

The test lab's 12345 plan (tests/lab.toml): a surge once three callers wait, over after three quiet
seconds, with one overflow seat, 12345-o1 (a phone of its own)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from test_calls import _gauges
from test_sidecar import stack  # noqa: F401 - fixture

pytestmark = pytest.mark.lab

SIPP = Path(__file__).resolve().parent.parent / "bench" / "sipp"


def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def sipp_callers(lab, tmp_path: Path, calls: int, hold_ms: int) -> subprocess.Popen:
    """``calls`` citizen calls to 12345 at once, each hanging up ``hold_ms`` after it was
    answered (the application answers a caller at once; it then waits for an agent)."""
    account = next(a for a in lab.accounts if a["role"] == "citizen" and a["hotline"] == "12345")
    fields = tmp_path / "callers.csv"
    fields.write_text("SEQUENTIAL\n" + f"{account['username']};[authentication "
                      f"username={account['username']} password={account['password']}]\n")
    scenario = tmp_path / "caller.xml"
    scenario.write_text((SIPP / "caller.xml.in").read_text().replace("@HOLD_MS@", str(hold_ms)))
    sip = lab.descriptor["pbx"]["12345"]["sip"]
    host = lab.descriptor["phone_host"]
    return subprocess.Popen(
        ["sipp", f"{sip['host']}:{sip['port']}", "-sf", str(scenario), "-s", "12345",
         "-inf", str(fields), "-i", host, "-p", str(_free_udp_port(host)), "-mi", host,
         "-mp", str(_free_udp_port(host)), "-m", str(calls), "-l", str(calls), "-r", "20",
         "-nostdin", "-timeout", "60s"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_more_callers_than_agents_start_the_surge_plan_and_its_overflow_seat_takes_one(
        phones, lab, stack, tmp_path):  # noqa: F811
    webhooks = len(stack.webhooks())
    [seat] = phones.overflow["12345"]
    assert _gauges("12345")["hotline_surge"] == 0
    sipp = sipp_callers(lab, tmp_path, calls=4, hold_ms=8000)
    try:
        # Four callers, two agents: the surge starts and the overflow seat is rung.
        phones.lib.wait_for(lambda: seat.ringing_calls(), 15, "the overflow seat to ring")
        assert _gauges("12345")["hotline_surge"] == 1
        leg = seat.ringing_calls()[0]
        leg.accept()
        leg.wait_confirmed()
        started = stack.wait(lambda: next(
            (w["event"]["data"] for w in stack.webhooks()[webhooks:]
             if w["event"]["event"] == "surge"), None), 10, "the surge webhook")
        assert started["hotline"] == "12345" and started["state"] == "started"
        assert started["waiting"] >= 3 and started["overflow"] == ["12345-o1"]
        leg.wait_ended(15)                    # the SIPp caller hangs up after its 8 s
        assert sipp.wait(20) == 0, "a SIPp call failed"
    finally:
        if sipp.poll() is None:
            sipp.kill()
            sipp.wait(5)
        phones.lib.hang_up_all()
    # Nobody waits any more: three quiet seconds later the surge is over.
    ended = stack.wait(lambda: next(
        (w["event"]["data"] for w in stack.webhooks()[webhooks:]
         if w["event"]["event"] == "surge" and w["event"]["data"]["state"] == "ended"), None),
        20, "the surge-ended webhook")
    assert ended["lasted_s"] >= 3.0
    assert _gauges("12345")["hotline_surge"] == 0
    phones.lib.wait_for(lambda: not lab.leftovers(), 15, "both PBXs to be empty")
