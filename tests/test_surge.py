"""The surge plan (R8) on the real lab: more callers than agents, scripted with SIPp.

The test lab's 12345 plan (tests/lab.toml): a surge once three callers wait, over after three quiet
seconds, with one overflow seat, 12345-o1 (a phone of its own)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from bench.load import Sipp
from test_calls import _gauges
from test_sidecar import stack  # noqa: F401 - fixture

pytestmark = pytest.mark.lab


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
    scenario = Sipp(tmp_path).scenario("caller", hold_ms)          # the benchmark's callers
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
    sipp = sipp_callers(lab, tmp_path, calls=5, hold_ms=8000)
    try:
        # Five callers, two agents (rung, not answering): three hold for lack of a free agent,
        # the surge starts and the overflow seat is rung.
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


def test_a_caller_holding_in_a_surge_asks_for_a_call_back_and_one_work_order_is_made(
        phones, lab, stack, call_records, service, tmp_path):  # noqa: F811
    """Five SIPp callers: both agents and the overflow seat take one each, two hold (a surge);
    the citizen holds too, hears its place in line, then the menu after menu_after (2 s),
    presses 9: the goodbye is said and the call ends; its record says callback, and the 12345
    ticket system gets one call-back work order for it. Every prompt played was found."""
    import json

    pbx_log = Path(lab.descriptor["state_dir"]) / "pbx-12345" / "log" / "messages.log"
    log_from = pbx_log.stat().st_size
    service_from = service.log.stat().st_size

    from test_calls import one_record
    from test_delivery import CITIZEN_NUMBER

    sipp = sipp_callers(lab, tmp_path, calls=5, hold_ms=15000)
    try:
        seats = phones.agents["12345"] + phones.overflow["12345"]
        taken: list = []

        def take() -> bool:
            for p in seats:
                if p not in taken and p.ringing_calls():
                    p.ringing_calls()[0].accept()
                    taken.append(p)
            return len(taken) == len(seats)
        phones.lib.wait_for(take, 15, "both agents and the overflow seat to take a caller")
        since = time.time()
        call = phones.citizen.dial("12345")
        call.wait_confirmed()
        phones.lib.sleep(4.0)                       # past menu_after, at the next tick
        assert not call.ended
        call.send_dtmf("9")
        call.wait_ended(20)                         # after "已为您登记回电……再见。"
        rec = one_record(phones, call_records, since, "12345", CITIZEN_NUMBER)
        assert (rec["disposition"], rec["ended_by"]) == ("callback", "caller")
        assert rec["answered_at"] is None and rec["wait_ms"] >= 2000
        tickets = stack.wait(lambda: [t for t in stack.tickets("12345")
                                      if rec["call_id"] in json.dumps(t, ensure_ascii=False)],
                             15, "the call-back work order")
        phones.lib.sleep(1.0)                       # a second one would be there now
        assert len([t for t in stack.tickets("12345")
                    if rec["call_id"] in json.dumps(t, ensure_ascii=False)]) == len(tickets) == 1
        assert CITIZEN_NUMBER in json.dumps(tickets[0], ensure_ascii=False)
        assert sipp.wait(30) == 0, "a SIPp call failed"   # its callers hang up after 15 s
        said = [json.loads(line) for line in service.log.read_bytes()[service_from:]
                .decode(errors="replace").splitlines() if '"place in line announced"' in line]
        assert any(e["call_id"] == rec["call_id"] for e in said), "no place-in-line announcement"
        failed = [line for line in pbx_log.read_bytes()[log_from:].decode(errors="replace")
                  .splitlines() if "Playback failed" in line and "hotline-link/" in line]
        assert not failed, failed
    finally:
        if sipp.poll() is None:
            sipp.kill()
            sipp.wait(5)
        phones.lib.hang_up_all()
    phones.lib.wait_for(lambda: not lab.leftovers(), 15, "both PBXs to be empty")
