"""Degraded mode on the real lab: with the service down, every hotline call still reaches an agent.

A failed ``Stasis()`` (no application connected) gives the call to the centre's own queue over the
same agents (``[hotline-degraded]`` in ``dialplan/extensions.conf.j2``); the PBX's CDR marks such
calls so they can be counted afterwards.
"""

from __future__ import annotations

import csv
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from test_agi import _ari_post
from test_delivery import CALLER_110_NUMBER, CITIZEN_NUMBER
from test_transfer import answer_what_rings, check_record, transfer_by_key

pytestmark = pytest.mark.lab

# cdr_custom.conf.j2's columns
CDR_COLUMNS = ("start", "answer", "end", "src", "dst", "dcontext", "channel", "dstchannel",
               "lastapp", "disposition", "billsec", "linkedid", "userfield")


def cdr_rows(lab, hotline: str) -> list[dict]:
    path = Path(lab.descriptor["pbx"][hotline]["log"]) / "cdr-custom" / "Master.csv"
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [dict(zip(CDR_COLUMNS, row)) for row in csv.reader(fh)]


def wait_cdr(phones, lab, hotline: str, since: int, cond, what: str) -> dict:
    """The first CDR row written after row ``since`` that satisfies ``cond``."""
    def found():
        return next((r for r in cdr_rows(lab, hotline)[since:] if cond(r)), None)
    return phones.lib.wait_for(found, 10, what)


@pytest.fixture
def service_down(service, phones):
    """The service stopped (SIGKILL: no goodbye to ARI) for the test, and started again after."""
    service.kill()
    yield service
    phones.lib.hang_up_all()
    service.start()


def degraded_connect(phones, caller_phone, number: str, hotline: str):
    call = caller_phone.dial(number)
    agent, leg = answer_what_rings(phones, hotline)
    call.wait_confirmed()
    leg.hears(call)
    call.hears(leg)
    return call, agent, leg


def unrecorded_fields(row: dict) -> dict:
    """The queue record a CDR row carries for a call no service took (its userfield)."""
    from transfer.callrecord import QUEUE_FIELDS, unrecorded

    found = unrecorded(row["userfield"])
    assert found is not None, row["userfield"]
    hotline, fields = found
    return {"hotline": hotline, **dict(zip(QUEUE_FIELDS, fields))}


def test_citizen_call_to_12345_reaches_an_agent_with_the_service_down(phones, lab, service_down,
                                                                       call_records):
    """Answered by the queue while no service runs; the PBX keeps the call's record in its CDR,
    and "hotline-link calls reconcile" records it once, however often it runs."""
    from conftest import cli
    from test_calls import one_record

    since = time.time()
    before = len(cdr_rows(lab, "12345"))
    call, agent, leg = degraded_connect(phones, phones.citizen, "12345", "12345")
    assert agent in phones.agents["12345"]
    assert leg.caller_number() == CITIZEN_NUMBER
    assert leg.header("X-Hotline-Degraded") == "1"
    leg.hears(call)
    phones.lib.sleep(1.0)
    call.hang_up()
    row = wait_cdr(phones, lab, "12345", before,
                   lambda r: r["userfield"].startswith("hotline-link:unrecorded"),
                   "the CDR of the degraded call")
    assert row["disposition"] == "ANSWERED" and row["src"] == CITIZEN_NUMBER
    f = unrecorded_fields(row)
    assert (f["hotline"], f["entry"], f["agent"], f["ended_by"], f["caller"]) == \
        ("12345", "inbound", agent.username, "caller", CITIZEN_NUMBER)
    cdr = str(Path(lab.descriptor["pbx"]["12345"]["log"]) / "cdr-custom" / "Master.csv")
    first = cli("calls", "reconcile", "--cdr", cdr).stdout
    rec = one_record(phones, call_records, since, "12345", CITIZEN_NUMBER)
    assert (rec["call_id"], rec["delivered_by"], rec["disposition"], rec["ended_by"]) == \
        (row["linkedid"], "degraded", "answered", "caller")
    assert rec["agents"] == [agent.username] and rec["talk_ms"] >= 1000
    again = cli("calls", "reconcile", "--cdr", cdr).stdout
    assert "0 recorded now" in again and "0 recorded now" not in first, (first, again)
    one_record(phones, call_records, since, "12345", CITIZEN_NUMBER)      # still only one


def test_caller_call_to_110_reaches_an_agent_with_the_service_down(phones, lab, service_down):
    before = len(cdr_rows(lab, "110"))
    call, agent, leg = degraded_connect(phones, phones.caller, "110", "110")
    assert agent in phones.agents["110"]
    assert leg.caller_number() == CALLER_110_NUMBER
    call.hears(leg)
    call.hang_up()
    row = wait_cdr(phones, lab, "110", before,
                   lambda r: r["userfield"].startswith("hotline-link:unrecorded"),
                   "the CDR of the degraded call")
    assert unrecorded_fields(row)["entry"] == "inbound"


def test_call_over_the_trunk_reaches_a_far_agent_with_the_service_down(phones, lab, service_down):
    # The 12345 centre's citizen dials 110: the 12345 PBX routes it over the trunk, and the
    # 110 centre's from-trunk finds no application.
    call, agent, leg = degraded_connect(phones, phones.citizen, "110", "110")
    assert agent in phones.agents["110"]
    assert leg.caller_number() == CITIZEN_NUMBER
    assert any("trunk-110" in c["name"] for c in lab.ari["12345"].channels())
    # Not "*" from the agent: with the features.conf keys on the call, the bridge holds an
    # agent's "*" until the next digit shows it starts no key (as on any queue call).
    call.hears(leg)


def test_transfer_over_the_trunk_keeps_its_headers_with_the_far_service_down(phones, lab,
                                                                             service_down):
    """A transfer the 12345 side sends (its headers as the application sets them) while the 110
    application is down: a 110 agent answers, their phone gets the headers, the CDR names the
    transfer. The near side here is an ARI originate, as the application dials its transfers."""
    tid = uuid.uuid4().hex
    before = len(cdr_rows(lab, "110"))
    headers = {"X-Hotline-Transfer-Id": tid, "X-Hotline-Origin": "12345",
               "X-Hotline-Mode": "blind", "X-Hotline-Category": "public_order",
               "X-Hotline-Emergency": "0"}
    _ari_post(lab, "12345", "/channels",
              {"endpoint": "PJSIP/110@trunk-110", "context": "lab-agi-probe", "extension": "hold",
               "callerId": CITIZEN_NUMBER, "timeout": 20},
              {"variables": {f"PJSIP_HEADER(add,{k})": v for k, v in headers.items()}})
    agent, leg = answer_what_rings(phones, "110")
    for name, value in headers.items():
        assert leg.header(name) == value, name
    assert leg.header("X-Hotline-Degraded") == "1"
    assert leg.caller_number() == CITIZEN_NUMBER
    leg.hang_up()
    row = wait_cdr(phones, lab, "110", before, lambda r: tid in r["userfield"],
                   "the CDR of the transferred call")
    f = unrecorded_fields(row)
    assert (f["entry"], f["transfer_id"], f["origin"], f["ended_by"]) == \
        ("trunk", tid, "12345", "agent")
    assert row["disposition"] == "ANSWERED"


def test_unanswered_trunk_call_rings_and_is_not_answered_by_the_queue(phones, lab, service_down):
    """Over the trunk the degraded queue rings (no answer, no music) until an agent answers, so
    the sending centre sees 'no answer' as it is and can take its caller back."""
    call = phones.citizen.dial("110")
    phones.ringing_agent("110", timeout=10)
    time.sleep(1.0)
    assert not call.confirmed and not call.ended
    trunk = [c for c in lab.ari["12345"].channels() if "trunk-110" in c["name"]]
    assert trunk and all(c["state"] != "Up" for c in trunk), trunk
    call.hang_up()


def test_service_back_takes_new_calls_and_leaves_degraded_calls_alone(phones, lab, service,
                                                                      outcomes):
    """A call answered in degraded mode stays up when the service comes back (the restarted
    application must not adopt or hang up a call its queue owns), and the next call is the
    application's again: a one-key transfer works."""
    service.kill()
    try:
        call, agent, leg = degraded_connect(phones, phones.caller, "110", "110")
    finally:
        service.start()
    phones.lib.sleep(2.0)                     # the app has reconciled by now
    assert not call.ended and not leg.ended
    leg.hears(call)
    call.hears(leg)
    call.hang_up()
    leg.wait_ended(5)
    phones.lib.wait_for(lambda: not lab.leftovers(), 5, "both PBXs idle")
    assert outcomes.since_mark() == []
    call, agent, far_agent, far_leg = transfer_by_key(phones, phones.citizen, "12345", "12345",
                                                      "110")
    assert far_leg.header("X-Hotline-Degraded") is None
    far_leg.accept()
    call.hears(far_leg)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted")


def test_doctor_sees_what_is_up_and_names_what_to_change(lab, service):
    from conftest import cli

    up = cli("doctor", check=False)
    for hid, pbx in lab.descriptor["pbx"].items():
        assert f"ok       {hid}: application {pbx['ari']['app']} connected" in up.stdout
        assert f"ok       {hid}: dialplan has the degraded-mode fallback" in up.stdout
        assert f"ok       {hid}: AMI" in up.stdout
        assert f"PROBLEM  {hid}: ari.conf channelvars" not in up.stdout
    assert "ok       FastAGI" in up.stdout
    assert "ok       Redis persists (AOF, appendfsync always)" in up.stdout
    service.kill()
    try:
        down = cli("doctor", check=False)
    finally:
        service.start()
    assert down.returncode == 2, down.stdout + down.stderr[-3000:]
    assert "PROBLEM  12345: application hotline-12345 not connected" in down.stdout
    assert "PROBLEM  FastAGI" in down.stdout and "unreachable" in down.stdout


async def test_a_redis_that_persists_nothing_is_flagged(tmp_path):
    import socket
    import subprocess

    import redis.asyncio as aioredis
    from hotline_link.persistence import persistence

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(tmp_path), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)
    client = aioredis.Redis(port=port)
    try:
        for _ in range(100):
            try:
                await client.ping()
                break
            except aioredis.ConnectionError:
                time.sleep(0.05)
        state = await persistence(client)
        assert state == {"aof": False, "appendfsync": "everysec", "rdb_save": "",
                         "durable": False}
        await client.config_set("appendonly", "yes")
        assert (await persistence(client))["durable"] is True
    finally:
        await client.aclose()
        proc.kill()
        proc.wait(5)


async def test_a_doctor_check_that_breaks_is_a_problem_line_not_a_crash():
    from hotline_link.doctor import Report, _guarded

    async def broken():
        raise ValueError("unexpected answer")

    def fine():
        report.ok.append("fine")

    report = Report()
    await _guarded(report, "12345: ARI", broken())
    await _guarded(report, "FastAGI", fine)
    assert report.ok == ["fine"]
    assert report.problems == ["12345: ARI: the check itself failed (ValueError: unexpected "
                               "answer); run `hotline-link doctor` again, and report it if it "
                               "repeats"]


def test_an_emergency_goes_first_in_the_degraded_queue(phones, lab, service_down):
    """R4 without the application: both 110 agents talking and an ordinary caller waiting in the
    queue; an emergency sent over the trunk (X-Hotline-Emergency: 1) joins with a higher queue
    priority and is rung to the first agent who frees, ahead of the ordinary caller."""
    busy = phones.every_agent_busy("110")
    ordinary = phones.caller.dial("110")
    phones.lib.sleep(1.0)
    tid = uuid.uuid4().hex
    headers = {"X-Hotline-Transfer-Id": tid, "X-Hotline-Origin": "12345",
               "X-Hotline-Mode": "emergency", "X-Hotline-Emergency": "1"}
    sent = _ari_post(lab, "12345", "/channels",
                     {"endpoint": "PJSIP/110@trunk-110", "context": "lab-agi-probe",
                      "extension": "hold", "callerId": CITIZEN_NUMBER, "timeout": 30},
                     {"variables": {f"PJSIP_HEADER(add,{k})": v for k, v in headers.items()}})
    ari = lab.ari["12345"]
    try:
        phones.lib.sleep(1.0)
        freed_call, freed_agent, freed_leg = busy.pop(0)
        freed_leg.hang_up()
        freed_call.wait_ended(5)
        agent, leg = phones.ringing_agent("110", timeout=10)
        assert agent is freed_agent
        assert leg.header("X-Hotline-Transfer-Id") == tid
        assert leg.header("X-Hotline-Emergency") == "1"
        assert not ordinary.ended
    finally:                                        # the sending side gives up: both ends go
        urllib.request.urlopen(urllib.request.Request(
            f"{ari.url}/channels/{sent['id']}", method="DELETE",
            headers={"Authorization": ari.auth}), timeout=5).close()
    leg.wait_ended(5)


def test_a_degraded_call_is_counted_while_the_service_cannot_reach_that_pbx(
        phones, service, call_records, monkeypatch):
    """The service runs (its FastAGI answers) but its 110 application cannot connect: 110's
    calls go to the queue, and each still leaves one call record, delivered_by "degraded"."""
    import socket

    from conftest import service_settings
    from test_calls import one_record

    service.kill()
    monkeypatch.setenv("HOTLINE_LINK__HOTLINES__110__ARI__URL", "http://127.0.0.1:9")
    try:
        service.start(connected=False)
        host, port = service_settings().agi.listen
        phones.lib.wait_for(lambda: _accepts(socket, host, port), 10, "the FastAGI server")
        since = time.time()
        call, agent, leg = degraded_connect(phones, phones.caller, "110", "110")
        assert leg.header("X-Hotline-Degraded") == "1"
        phones.lib.sleep(1.0)
        call.hang_up()
        leg.wait_ended(5)
        rec = one_record(phones, call_records, since, "110", CALLER_110_NUMBER)
        assert (rec["delivered_by"], rec["disposition"], rec["ended_by"]) == \
            ("degraded", "answered", "caller")
        assert rec["agents"] == [agent.username] and rec["talk_ms"] >= 1000
    finally:
        service.kill()
        monkeypatch.delenv("HOTLINE_LINK__HOTLINES__110__ARI__URL")
        service.start()


def _accepts(socket, host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False
