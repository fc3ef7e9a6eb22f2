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


def _kpis(stack) -> dict:  # noqa: F811
    status, body = stack.api("GET", "/kpis?hotline=110")
    assert status == 200, body
    return body["hotlines"]["110"]


def test_kpis_and_metrics_count_a_scripted_mix_of_calls(phones, call_records, stack):  # noqa: F811
    """Two answered calls (one answered only after 3 s), one abandoned while ringing and one
    short abandon: the 110 KPIs move by exactly that, in the API and in /metrics alike."""
    before = _kpis(stack)["24h"]
    metric = 'hotline_calls{hotline="110",kind="%s",window="24h"}'
    seen = stack.metrics()
    since = time.time()
    # Answered at once, then answered after 3 s of ringing.
    for delay in (0.0, 3.0):
        call = phones.caller.dial("110")
        agent, leg = phones.ringing_agent("110")
        phones.lib.sleep(delay)
        leg.accept()
        leg.wait_confirmed()
        leg.hears(call)                   # bridged (the caller was answered at arrival)
        call.hang_up()
        call.wait_ended(5)
    # Abandoned after 6 s of ringing, and within the 5 s short-abandon threshold.
    for wait in (6.0, 1.0):
        call = phones.caller.dial("110")
        phones.ringing_agent("110")
        phones.lib.sleep(wait)
        call.hang_up()
        call.wait_ended(5)
    phones.lib.wait_for(lambda: len(mine(call_records, since, "110", CALLER_110_NUMBER)) == 4,
                        10, "4 call records")
    after = stack.wait(lambda: (k := _kpis(stack)["24h"])["offered"] - before["offered"] == 4
                       and k, 15, "the KPIs to count the 4 calls")
    delta = {k: after[k] - before[k] for k in ("offered", "answered", "abandoned",
                                                "abandoned_short")}
    assert delta == {"offered": 4, "answered": 2, "abandoned": 2, "abandoned_short": 1}
    now = stack.metrics()
    for kind, n in delta.items():
        assert now[metric % kind] - seen.get(metric % kind, 0) == n, kind
    assert now['hotline_call_rate{hotline="110",rate="answer_rate",window="24h"}'] == \
        after["answer_rate"]


def test_an_answer_rate_under_target_raises_one_alert_per_hour(phones, call_records,
                                                                 stack):  # noqa: F811
    """The check the sidecar runs every minute, here with a target no real hour meets (1.0)
    and no minimum of calls: the alert goes out once, signed like every webhook, and the next
    look within the hour raises nothing."""
    import asyncio

    import redis.asyncio as aioredis

    from contracts.names import ALERTED
    from sidecar.calls import check_answer_rate

    call = phones.caller.dial("110")             # one call that nobody answers, in this hour
    phones.ringing_agent("110")
    call.hang_up()
    call.wait_ended(5)
    phones.lib.sleep(1)
    url = stack.settings.redis_url

    async def check() -> list[str]:
        r = aioredis.from_url(url)
        try:
            return await check_answer_rate(r, ("110",), 1.0, time.time(), min_offered=1)
        finally:
            await r.aclose()

    stack.redis.delete(ALERTED.format("answer_rate_low:110"))
    try:
        assert asyncio.run(check()) == ["110"]
        assert asyncio.run(check()) == []
        alert = stack.wait(lambda: next(
            (w["event"]["data"] for w in stack.webhooks() if w["event"]["event"] ==
             "answer_rate_low" and w["event"]["data"]["answer_rate_target"] == 1.0), None),
            15, "the answer_rate_low webhook")
        assert alert["hotline"] == "110" and alert["window"] == "1h"
        assert alert["answer_rate"] < 1.0 and alert["answered"] < alert["offered"]
    finally:
        stack.redis.delete(ALERTED.format("answer_rate_low:110"))


# --- live gauges: the service's own /metrics and /health, and the sidecar's /kpis -----------------

def _service_get(path: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    from conftest import service_settings

    host, port = service_settings().http
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _gauges(hotline: str) -> dict[str, float]:
    status, text = _service_get("/metrics")
    assert status == 200, text
    out = {}
    for line in text.splitlines():
        if line.startswith("hotline_") and f'hotline="{hotline}"' in line:
            name, value = line.rsplit(" ", 1)
            out[name.replace(f'hotline="{hotline}",', "").replace(f'{{hotline="{hotline}"}}', "")] \
                = float(value)
    return out


def test_the_service_shows_who_waits_how_long_and_which_agents_are_free(
        phones, service, stack):  # noqa: F811
    """A caller ringing a 110 agent waits (and its wait grows), the agent rung is busy; once
    answered nobody waits. The same figures in the service's /metrics, its /health and, written
    each second, the sidecar's /kpis."""
    agents = len(phones.agents["110"])
    g = _gauges("110")
    requests = g["hotline_ari_requests_total"]
    assert g["hotline_agents{state=\"free\"}"] == agents
    assert g["hotline_agents{state=\"offline\"}"] == 0 and g["hotline_callers_waiting"] == 0
    call = phones.caller.dial("110")
    agent, leg = phones.ringing_agent("110")
    phones.lib.sleep(1.2)
    g = _gauges("110")
    assert g["hotline_callers_waiting"] == 1 and g["hotline_calls_in_progress"] == 1
    assert 1.2 <= g["hotline_longest_wait_seconds"] < 5
    assert (g["hotline_agents{state=\"busy\"}"], g["hotline_agents{state=\"free\"}"]) == \
        (1, agents - 1)
    assert g["hotline_ari_requests_total"] > requests      # (the agent dialled, the caller rung)
    live = stack.wait(lambda: (v := stack.api("GET", "/kpis?hotline=110")[1]["live"]["110"])
                      and v["waiting"] == 1 and v, 5, "the live gauges in /kpis")
    assert live["ari_connected"] and live["agents_busy"] == 1 and live["longest_wait_s"] > 0
    leg.accept()
    call.hears(leg)
    g = _gauges("110")
    assert (g["hotline_callers_waiting"], g["hotline_longest_wait_seconds"]) == (0, 0)
    assert g["hotline_agents{state=\"busy\"}"] == 1 and g["hotline_calls_in_progress"] == 1
    status, body = _service_get("/health")
    health = json.loads(body)
    assert status == 200 and health["ok"] and health["role"] == "single"
    assert health["hotlines"]["110"]["ari_connected"] and health["hotlines"]["110"]["calls"] == 1
    assert set(health["spooled"]) == {"outcome", "call record"}
    call.hang_up()
    call.wait_ended(5)
    phones.lib.wait_for(lambda: _gauges("110")["hotline_agents{state=\"free\"}"] == agents, 5,
                        "the agent free again")


# --- calls the centre's own Queue() delivers, and calls in degraded mode --------------------------

def test_queue_calls_are_counted_answered_and_abandoned(phones, call_records):
    """Calls Queue() delivers without any key pressed: recorded by the queue's hangup handler
    through the FastAGI "record" command, with the queue's own times and agent."""
    from test_agi import queue_connect

    since = time.time()
    call, agent, leg = queue_connect(phones, phones.caller, "110")
    phones.lib.sleep(1.0)
    leg.hang_up()
    call.wait_ended(5)
    rec = one_record(phones, call_records, since, "110", CALLER_110_NUMBER)
    assert (rec["delivered_by"], rec["disposition"], rec["ended_by"]) == \
        ("queue", "answered", "agent")
    assert rec["agents"] == [agent.username] and rec["transfers"] == []
    assert 0 < rec["wait_ms"] < 10_000 and rec["talk_ms"] >= 1000
    assert abs(rec["wait_ms"] + rec["talk_ms"] - rec["duration_ms"]) <= 2
    since = time.time()
    call = phones.caller.dial("queue-110")
    phones.ringing_agent("110")
    phones.lib.sleep(1.5)
    call.hang_up()
    call.wait_ended(5)
    rec = one_record(phones, call_records, since, "110", CALLER_110_NUMBER)
    assert (rec["delivered_by"], rec["disposition"], rec["ended_by"]) == \
        ("queue", "abandoned", "caller")
    assert rec["answered_at"] is None and rec["agents"] == [] and rec["wait_ms"] >= 1500


def test_a_queue_call_handed_to_the_application_by_a_key_is_recorded_once(phones, call_records,
                                                                          outcomes):
    """A key hands the queue call to the application, which records it: the queue's hangup
    handler stands back, so there is one record, with the transfer in it, the queue's agent and
    the times the queue noted (arrival, answer), not the hand-over's."""
    from test_agi import queue_connect

    since = time.time()
    call, agent, leg = queue_connect(phones, phones.citizen, "12345")
    talked = time.time()
    phones.lib.sleep(1.0)
    leg.send_dtmf("*1")
    leg.wait_ended(5)
    far_agent, far_leg = phones.ringing_agent("110", timeout=8)
    far_leg.accept()
    call.hears(far_leg)
    [out] = outcomes.wait(phones.lib)
    far_leg.hang_up()
    call.wait_ended(5)
    rec = one_record(phones, call_records, since, "12345", CITIZEN_NUMBER)
    assert (rec["delivered_by"], rec["disposition"]) == ("queue", "transferred")
    assert rec["transfers"] == [out["transfer_id"]] and rec["agents"][0] == agent.username
    assert since - 0.1 <= datetime.fromisoformat(rec["arrived_at"]).timestamp() < talked
    assert datetime.fromisoformat(rec["answered_at"]).timestamp() < talked
    assert rec["talk_ms"] >= 1000
