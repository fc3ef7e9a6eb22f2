"""Call records on the real lab: every call offered to a hotline gives one record, whatever
became of it, with the right disposition, party and times; the sidecar keeps them for
``GET /calls`` and links each with its transfers' outcomes."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from urllib.parse import quote

import jsonschema
import pytest

from conftest import ROOT
from test_degraded import cdr_rows, wait_cdr
from test_delivery import CALLER_110_NUMBER, CITIZEN_NUMBER, connect
from test_sidecar import stack  # noqa: F401 - fixture
from test_transfer import transfer_by_key

pytestmark = pytest.mark.lab

SCHEMA = json.loads((ROOT / "config" / "call-record.schema.json").read_text())


def mine(records, since: float, hotline: str, number: str) -> list[dict]:
    return [r for r in records.since_mark()
            if r["hotline"] == hotline and r["caller_number"] == number
            and datetime.fromisoformat(r["arrived_at"]).timestamp() >= since - 0.5]


def one_record(phones, records, since: float, hotline: str, number: str,
               timeout: float = 10.0) -> dict:
    phones.lib.wait_for(lambda: mine(records, since, hotline, number), timeout,
                        f"the {hotline} call record")
    phones.lib.sleep(0.5)                     # a duplicate would arrive now
    [rec] = mine(records, since, hotline, number)
    jsonschema.validate(rec, SCHEMA, cls=jsonschema.Draft202012Validator,
                        format_checker=jsonschema.FormatChecker())
    return rec


def ms_between(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() * 1000


def test_an_answered_call_ended_by_the_agent(phones, call_records):
    since = time.time()
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    call.hears(leg)
    phones.lib.sleep(1)
    leg.hang_up()
    call.wait_ended(5)
    rec = one_record(phones, call_records, since, "12345", CITIZEN_NUMBER)
    assert (rec["disposition"], rec["ended_by"]) == ("answered", "agent")
    assert rec["agents"] == [agent.username] and rec["transfers"] == []
    assert rec["answered_at"] and not rec["recovered"] and rec["transfer_in"] is None
    # The times are the call's: answered after the agent's phone rang, talked ~1 s and more.
    assert 0 < rec["wait_ms"] < 10_000 and rec["talk_ms"] >= 1000
    assert abs(rec["wait_ms"] + rec["talk_ms"] - rec["duration_ms"]) <= 2
    assert abs(ms_between(rec["arrived_at"], rec["ended_at"]) - rec["duration_ms"]) <= 2


def test_a_caller_who_hangs_up_while_agents_ring_abandoned(phones, call_records):
    since = time.time()
    call = phones.caller.dial("110")
    phones.ringing_agent("110")
    phones.lib.sleep(1.5)
    call.hang_up()
    call.wait_ended(5)
    rec = one_record(phones, call_records, since, "110", CALLER_110_NUMBER)
    assert (rec["disposition"], rec["ended_by"]) == ("abandoned", "caller")
    assert rec["answered_at"] is None and rec["agents"] == [] and rec["talk_ms"] is None
    assert rec["wait_ms"] >= 1500


def test_a_transferred_call_has_a_record_on_each_side_linked_by_its_transfer(
        phones, call_records, outcomes, stack, lab):  # noqa: F811
    since = time.time()
    cdrs = {h: len(cdr_rows(lab, h)) for h in ("12345", "110")}
    call, agent, far_agent, far_leg = transfer_by_key(
        phones, phones.citizen, "12345", "12345", "110")
    tid = far_leg.header("X-Hotline-Transfer-Id")
    far_leg.accept()
    call.hears(far_leg)
    [outcome] = outcomes.wait(phones.lib)
    far_leg.hang_up()
    call.wait_ended(5)
    origin = one_record(phones, call_records, since, "12345", CITIZEN_NUMBER)
    assert (origin["disposition"], origin["transfers"]) == ("transferred", [tid])
    assert origin["agents"] == [agent.username] and origin["call_id"] == outcome["call_id"]
    target = one_record(phones, call_records, since, "110", CITIZEN_NUMBER)
    assert target["transfer_in"] == {"transfer_id": tid, "origin": "12345"}
    assert (target["disposition"], target["agents"]) == ("answered", [far_agent.username])
    assert target["ended_by"] == "agent"
    # The sidecar keeps both, and one call's view names its transfer's outcome.
    status, got = stack.wait(lambda: (r := stack.api("GET", f"/calls/{origin['call_id']}"))[0]
                             == 200 and r[1]["transfer_outcomes"][0]["synced"] and r,
                             15, "the call in the sidecar")
    assert got["transfer_outcomes"] == [{"transfer_id": tid, "synced": True, "mode": "blind",
                                         "target": "110", "result": "accepted"}]
    frm = quote(datetime.fromtimestamp(since - 1, timezone.utc).isoformat())
    status, page = stack.api("GET", f"/calls?hotline=110&disposition=answered&from={frm}"
                                    f"&agent={far_agent.username}")
    assert status == 200 and target["call_id"] in [c["call_id"] for c in page["calls"]]
    status, page = stack.api("GET", f"/calls?hotline=110&disposition=abandoned&from={frm}")
    assert target["call_id"] not in [c["call_id"] for c in page["calls"]]
    # The PBXs' own records name the transfer too (CDR userfield), on the same linkedid.
    row = wait_cdr(phones, lab, "12345", cdrs["12345"],
                   lambda r: r["linkedid"] == origin["call_id"] and r["userfield"],
                   "the origin's CDR")
    assert row["userfield"] == f"hotline-link:call;transfers={tid}"
    row = wait_cdr(phones, lab, "110", cdrs["110"],
                   lambda r: r["linkedid"] == target["call_id"] and r["userfield"],
                   "the target's CDR")
    assert row["userfield"] == f"hotline-link:call;transfer_in={tid};origin=12345"


def test_a_call_that_ends_while_the_service_is_down_is_counted_by_the_restarted_one(
        phones, call_records, service):
    since = time.time()
    call, agent, leg = connect(phones, phones.caller, "110", "110")
    service.kill()
    try:
        call.hang_up()                      # nobody watches: the agent stays in the bridge
        call.wait_ended(5)
    finally:
        service.start()
    leg.wait_ended(10)                      # the restarted service hangs the agent's leg up
    rec = one_record(phones, call_records, since, "110", CALLER_110_NUMBER, timeout=15)
    assert rec["ended_by"] == "unseen" and rec["disposition"] == "answered"
    assert rec["agents"] == [agent.username] and rec["answered_at"]
