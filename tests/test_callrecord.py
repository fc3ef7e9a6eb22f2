"""Call records from the delivery machine, without a PBX: one per call, its disposition, who
ended it and its times; the live call's note and a call rebuilt from it."""

from __future__ import annotations

import json

import jsonschema

from conftest import ROOT
from contracts.vocab import Disposition, EndedBy
from test_delivery_machine import (TRANSFER_HEADERS, arrive, connected, desk, detached, flat,
                                   succeed)
from transfer import callrecord
from transfer import delivery as dm
from transfer.delivery import Ev

OFFSET = 1_800_000_000.0          # wall clock minus monotonic clock in these tests


def ended(cmds) -> dm.CallEnded:
    [end] = [c for c in flat(cmds) if isinstance(c, dm.CallEnded)]
    return end


SCHEMA = json.loads((ROOT / "config" / "call-record.schema.json").read_text())


def rec(end: dm.CallEnded) -> dict:
    """The record, which must pass the published schema."""
    r = callrecord.record(end.call, "12345", end.ended, end.ended_by, end.disposition, OFFSET)
    jsonschema.validate(r, SCHEMA, cls=jsonschema.Draft202012Validator,
                        format_checker=jsonschema.FormatChecker())
    return r


def test_an_answered_call_ended_by_the_agent():
    d = desk()
    call = connected(d, now=1.0)                       # an agent answered at 2.0
    r = rec(ended(dm.step(d, Ev.CHANNEL_GONE, 62.0, dm.Gone(call.agent_leg))))
    assert (r["disposition"], r["ended_by"]) == ("answered", "agent")
    assert (r["wait_ms"], r["talk_ms"], r["duration_ms"]) == (1000, 60000, 61000)
    assert r["agents"] == ["a1"] and r["transfers"] == [] and r["transfer_in"] is None
    assert r["arrived_at"].startswith("2027-01-15T08:00:01.000") and r["hotline"] == "12345"


def test_a_caller_who_hangs_up_before_any_agent_abandoned():
    d = desk(free=())
    succeed(d, arrive(d, now=1.0), 1.0)
    r = rec(ended(dm.step(d, Ev.CHANNEL_GONE, 31.0, dm.Gone("c1"))))
    assert (r["disposition"], r["ended_by"]) == ("abandoned", "caller")
    assert (r["wait_ms"], r["talk_ms"], r["answered_at"]) == (30000, None, None)


def test_a_transferred_caller_refused_busy():
    d = desk(free=())
    end = ended(arrive(d, headers=TRANSFER_HEADERS))
    r = rec(end)
    assert (r["disposition"], r["ended_by"]) == ("refused", "service")
    assert r["transfer_in"] == {"transfer_id": "T1", "origin": "110"}


def test_a_blind_transfer_the_other_platform_took_is_transferred_with_its_id():
    d = desk()
    call = detached(d)
    assert call.transfers == ["T1"] and call.handed_off
    dm.step(d, Ev.TRANSFER_ENDED, 5, dm.RemoteJoined("c1", "r1"))
    r = rec(ended(dm.step(d, Ev.CHANNEL_GONE, 9, dm.Gone("r1"))))
    assert (r["disposition"], r["ended_by"]) == ("transferred", "remote")
    assert r["transfers"] == ["T1"] and r["agents"] == [call.agents[0]]


def test_a_failed_transfer_back_to_an_agent_is_answered_and_keeps_both_agents():
    d = desk()
    call = detached(d)
    first = call.agents[0]
    succeed(d, dm.step(d, Ev.RETURNED, 9, dm.Returned("c1", "a2")), 9)
    succeed(d, dm.step(d, Ev.AGENT_ANSWERED, 10, dm.Leg("c1", call.agent_leg)), 10)
    r = rec(ended(dm.step(d, Ev.CHANNEL_GONE, 20, dm.Gone("c1"))))
    assert (r["disposition"], r["ended_by"]) == ("answered", "caller")
    assert r["agents"] == [first, "a2"] and r["transfers"] == ["T1"]


def test_a_three_way_call_the_other_agent_left_stays_answered():
    d = desk()
    call = connected(d)
    dm.step(d, Ev.REMOTE_JOINED, 4, dm.RemoteJoined("c1", "r1", "T1"))
    dm.step(d, Ev.CHANNEL_GONE, 5, dm.Gone("r1"))
    r = rec(ended(dm.step(d, Ev.CHANNEL_GONE, 6, dm.Gone(call.agent_leg))))
    assert r["disposition"] == "answered"


def test_every_call_ends_with_exactly_one_record():
    d = desk()
    cmds = []
    for i, caller in enumerate(("c1", "c2", "c3")):
        cmds += succeed(d, arrive(d, caller, now=float(i)), float(i))
    for caller in ("c1", "c2", "c3"):
        cmds += dm.step(d, Ev.CHANNEL_GONE, 10, dm.Gone(caller))
        cmds += dm.step(d, Ev.CHANNEL_GONE, 11, dm.Gone(caller))      # a late duplicate
    ends = [c.call.call_id for c in flat(cmds) if isinstance(c, dm.CallEnded)]
    assert sorted(ends) == ["L-c1", "L-c2", "L-c3"]


def test_a_call_rebuilt_after_a_restart_keeps_what_its_note_knew():
    d = desk()
    call = connected(d, now=1.0)
    dm.step(d, Ev.TRANSFER_STARTED, 3, dm.TransferNote("c1", "T1"))
    note = callrecord.note(call, "12345", OFFSET)
    known = callrecord.from_note(note, OFFSET + 100.0)    # a new process: another offset
    fresh = desk()
    channels = ({"id": "c1", "linkedid": "L-c1", "state": "Up",
                 "caller": {"number": "13800138000"},
                 "channelvars": {"HOTLINE_ROLE": "caller"}},
                {"id": call.agent_leg, "state": "Up",
                 "channelvars": {"HOTLINE_ROLE": "agent", "HOTLINE_AGENT": call.agent,
                                 "HOTLINE_CALLER": "c1"}})
    bridges = ({"id": "B1", "name": "call-L-c1", "channels": ["c1", call.agent_leg]},)
    dm.step(fresh, Ev.RECONCILE, 500.0, dm.Found(channels, bridges, {}, {"c1": known}))
    found = fresh.calls["c1"]
    assert found.recovered and found.transfers == ["T1"] and found.agents == [call.agent]
    assert (found.arrived, found.agent_at) == (1.0 - 100.0, 2.0 - 100.0)
    r = callrecord.record(found, "12345", 600.0, EndedBy.CALLER, Disposition.ANSWERED,
                          OFFSET + 100.0)
    assert r["arrived_at"] == note["arrived_at"] and r["recovered"] is True


def test_a_note_of_a_call_that_ended_unseen_gives_its_record():
    d = desk(free=())
    succeed(d, arrive(d, now=1.0), 1.0)
    call = callrecord.from_note(callrecord.note(d.calls["c1"], "12345", OFFSET), OFFSET)
    assert dm.disposition(call, None, EndedBy.UNSEEN) == Disposition.LOST


def test_a_transfer_starting_renews_the_calls_note():
    d = desk()
    connected(d)
    notes = [c for c in dm.step(d, Ev.TRANSFER_STARTED, 3, dm.TransferNote("c1", "T1"))
             if isinstance(c, dm.CallNote)]
    assert [n.call.transfers for n in notes] == [["T1"]]


# --- calls the centre's own Queue() delivered ---------------------------------------------------

def queue_rec(**kw) -> dict:
    from contracts.vocab import DeliveredBy
    args = dict(call_id="L1", hotline="110", caller_number="13800138000",
                delivered_by=DeliveredBy.QUEUE, arrived=OFFSET, answered=None,
                ended=OFFSET + 10, agent=None, ended_by=EndedBy.CALLER, queue_status="",
                transfer_in=None) | kw
    r = callrecord.from_queue(**args)
    jsonschema.validate(r, SCHEMA, cls=jsonschema.Draft202012Validator,
                        format_checker=jsonschema.FormatChecker())
    return r


def test_a_queue_call_answered_after_a_wait():
    r = queue_rec(answered=OFFSET + 2.5, agent="110-a1", ended_by=EndedBy.AGENT)
    assert (r["disposition"], r["ended_by"], r["delivered_by"]) == ("answered", "agent", "queue")
    assert (r["wait_ms"], r["talk_ms"], r["duration_ms"]) == (2500, 7500, 10000)
    assert r["agents"] == ["110-a1"] and r["answered_at"].endswith("02.500+00:00")


def test_a_queue_caller_who_gives_up_abandoned_and_a_queue_timeout_lost():
    r = queue_rec(agent="110-a1")              # rang an agent, nobody answered, caller left
    assert (r["disposition"], r["agents"], r["talk_ms"], r["wait_ms"]) == \
        ("abandoned", [], None, 10000)
    assert queue_rec(ended_by=EndedBy.PBX, queue_status="TIMEOUT")["disposition"] == "lost"


def test_a_degraded_transfer_the_queue_turned_away_is_refused_and_names_its_transfer():
    from contracts.vocab import DeliveredBy
    r = queue_rec(delivered_by=DeliveredBy.DEGRADED, ended_by=EndedBy.PBX,
                  queue_status="JOINEMPTY", transfer_in={"transfer_id": "T1", "origin": "12345"})
    assert (r["disposition"], r["delivered_by"]) == ("refused", "degraded")
    assert r["transfer_in"] == {"transfer_id": "T1", "origin": "12345"}


def test_the_hangup_handlers_fields_make_the_same_record_by_agi_or_from_the_cdr():
    """The dialplan's fields (QUEUE_FIELDS) give the record; the CDR userfield of a call no
    service took carries the hotline and the same fields."""
    fields = ["trunk", "pbx110-1.5", f"{OFFSET}", f"{OFFSET + 2.5}", f"{OFFSET + 10}", "110-a1",
              "agent", "", "T1", "12345", "13800138000"]
    r = callrecord.from_queue_fields(fields, "110", now=0)
    jsonschema.validate(r, SCHEMA, cls=jsonschema.Draft202012Validator,
                        format_checker=jsonschema.FormatChecker())
    assert (r["call_id"], r["delivered_by"], r["disposition"], r["ended_by"]) == \
        ("pbx110-1.5", "degraded", "answered", "agent")
    assert r["transfer_in"] == {"transfer_id": "T1", "origin": "12345"}
    assert (r["caller_number"], r["agents"], r["wait_ms"]) == ("13800138000", ["110-a1"], 2500)
    userfield = f"{callrecord.UNRECORDED};hotline=110;record={','.join(fields)}"
    assert callrecord.unrecorded(userfield) == ("110", fields)
    for other in ("", "hotline-link:degraded;entry=inbound", "hotline-link:call;transfers=T1",
                  f"{callrecord.UNRECORDED};hotline=110"):
        assert callrecord.unrecorded(other) is None


def test_queue_fields_missing_or_wrong_fall_back_without_inventing():
    """An old dialplan's shorter list, a hang-up party the record does not know, no end time:
    the PBX ended it, now is the end, the AGI session's ids stand in."""
    r = callrecord.from_queue_fields(["queue", "", "x", "", ""], "12345", now=OFFSET + 5,
                                     call_id="pbx-9", caller_number="139")
    assert (r["call_id"], r["caller_number"], r["ended_by"], r["disposition"]) == \
        ("pbx-9", "139", "pbx", "lost")
    assert r["duration_ms"] == 0 and r["delivered_by"] == "queue"
    assert callrecord.from_queue_fields(["queue"] + [""] * 5 + ["unseen"], "1", now=1)[
        "ended_by"] == "pbx"
