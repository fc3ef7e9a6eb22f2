"""One-key transfer on the real lab: 12345 <-> 110 over the trunk, with real phones."""

from __future__ import annotations

import json
from datetime import datetime

import jsonschema
import pytest

from conftest import ROOT
from contracts.names import ALERTS
from test_contracts import check_payload
from test_delivery import CALLER_110_NUMBER, CITIZEN_NUMBER, connect

pytestmark = pytest.mark.lab

SCHEMA = json.loads((ROOT / "config" / "outcome-record.schema.json").read_text())


def check_record(rec: dict, **expected) -> None:
    jsonschema.validate(rec, SCHEMA)
    for key, value in expected.items():
        assert rec[key] == value, f"{key}: {rec[key]!r} != {value!r} in {json.dumps(rec)}"
    ts = {k: datetime.fromisoformat(v) for k, v in rec["timestamps"].items() if v}
    order = [k for k in ("requested", "dialing", "ringing", "answered", "bridged", "ended") if k in ts]
    assert [ts[k] for k in order] == sorted(ts[k] for k in order), rec["timestamps"]


def answer_what_rings(phones, hotline: str, tries: int = 3):
    """Answer the first ringing agent of ``hotline``; if that call ends at once (a ring that was
    being cancelled as it was answered), answer the next one that rings."""
    for _ in range(tries):
        agent, leg = phones.ringing_agent(hotline, timeout=10)
        leg.accept()
        phones.lib.wait_for(lambda: leg.confirmed or leg.ended, 5, "the answer to take")
        phones.lib.sleep(0.5)
        if not leg.ended:
            return agent, leg
    raise AssertionError(f"every call answered at {hotline} ended at once ({tries} tries)")


def transfer_by_key(phones, caller_phone, number, origin, target):
    call, agent, leg = connect(phones, caller_phone, number, origin)
    leg.send_dtmf("*1")
    leg.wait_ended(5)                                   # the origin agent is released at once
    far_agent, far_leg = phones.ringing_agent(target, timeout=8)
    return call, agent, far_agent, far_leg


def test_12345_to_110_by_key(phones, outcomes):
    call, agent, far_agent, far_leg = transfer_by_key(phones, phones.citizen, "12345", "12345", "110")
    assert far_leg.caller_number() == CITIZEN_NUMBER
    tid = far_leg.header("X-Hotline-Transfer-Id")
    assert tid and far_leg.header("X-Hotline-Origin") == "12345"
    far_leg.accept()
    far_leg.hears(call)
    call.hears(far_leg)
    assert not call.ended
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, transfer_id=tid, result="accepted", origin="12345", target="110",
                 mode="blind", trigger="dtmf", initiating_agent=agent.username,
                 answering_agent=far_agent.username, caller_number=CITIZEN_NUMBER)
    # The origin agent is free again: a new call reaches them.
    assert not agent.live_calls()


def test_110_to_12345_by_key(phones, outcomes):
    call, agent, far_agent, far_leg = transfer_by_key(phones, phones.caller, "110", "110", "12345")
    assert far_leg.caller_number() == CALLER_110_NUMBER
    assert far_leg.header("X-Hotline-Origin") == "110"
    far_leg.accept()
    far_leg.hears(call)
    call.hears(far_leg)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted", origin="110", target="12345",
                 answering_agent=far_agent.username)


def channel_formats(lab) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(PBX, channel name) -> the audio formats (native, read, write) of every live channel."""
    return {(hid, ch["name"]): tuple(
                ari.variable(ch["id"], f"CHANNEL(audio{kind}format)").strip("()")
                for kind in ("native", "read", "write"))
            for hid, ari in lab.ari.items() for ch in ari.channels()}


def test_an_a_law_call_stays_a_law_across_the_trunk(phones, outcomes, lab):
    """China's networks speak G.711 A-law: a caller's phone offering it first keeps it on every
    leg of both PBXs, the trunk included, and no leg translates (read = write = native)."""
    phones.citizen.offer_codecs("PCMA", "PCMU")
    try:
        call, agent, far_agent, far_leg = transfer_by_key(phones, phones.citizen, "12345",
                                                          "12345", "110")
        far_leg.accept()
        call.hears(far_leg)
        far_leg.hears(call)
        formats = channel_formats(lab)
        trunks = [name for _, name in formats if "trunk-" in name]
        assert len(formats) == 4 and len(trunks) == 2, formats   # caller, 2 trunk legs, agent
        assert all(f == ("alaw", "alaw", "alaw") for f in formats.values()), formats
    finally:
        phones.citizen.offer_codecs()
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted", origin="12345", target="110")


# The DTMF column of "*" and "1": a key tone played in band would carry it.
KEY_TONE_HZ = 1209


def test_the_caller_never_hears_the_agents_keys(phones, outcomes):
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    with call.listening(KEY_TONE_HZ) as heard:
        leg.send_dtmf("*1")
        leg.wait_ended(5)
        far_agent, far_leg = phones.ringing_agent("110", timeout=8)
        phones.lib.sleep(1.0)                     # the keys' tail, if any
    assert call.digits == "", "the caller's phone received the agent's keys as RFC 4733 events"
    assert heard() == [], "the caller heard a key tone"
    far_leg.accept()
    call.hears(far_leg)                  # and no digit left stuck in the caller's stream
    far_leg.hears(call)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted", trigger="dtmf", origin="12345", target="110")


def test_12345_to_110_by_the_phones_transfer_button(phones, outcomes, service):
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    log_from = service.log.stat().st_size
    leg.transfer_to("110")                                   # SIP REFER
    leg.wait_ended(5)
    assert leg.transfer_status[-1] == 200                    # told by NOTIFY, hung up itself
    far_agent, far_leg = phones.ringing_agent("110", timeout=8)
    assert far_leg.caller_number() == CITIZEN_NUMBER
    far_leg.accept()
    call.hears(far_leg)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted", trigger="refer", origin="12345", target="110")
    # One REFER, one transfer, and nothing for monitoring to page on.
    said = [json.loads(line) for line in service.log.read_bytes()[log_from:].splitlines()
            if line.startswith(b"{")]
    assert [e["event"] for e in said if e.get("level") in ("warning", "error")] == []


def test_busy_target_returns_the_caller_to_the_transferring_agent(phones, outcomes):
    # Both 110 agents are busy with other callers.
    busy1, _, _ = connect(phones, phones.caller, "110", "110")
    busy2, _, _ = connect(phones, phones.caller, "110", "110")
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*1")
    leg.wait_ended(5)
    back = agent.wait_incoming(10)                       # rung back: the first receiver handles it
    back.accept()
    back.hears(call)
    call.hears(back)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="fallback_busy", origin="12345", target="110",
                 initiating_agent=agent.username)


def test_no_answer_falls_back_after_the_ring_timeout(phones, outcomes):
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*1")
    leg.wait_ended(5)
    phones.ringing_agent("110", timeout=8)               # the 110 side rings, nobody answers
    back = agent.wait_incoming(12)                       # after timeouts.transfer_ring (6 s)
    back.accept()
    back.hears(call)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="fallback_no_answer")
    assert rec["durations_ms"]["total"] >= 5500


def test_rejected_by_the_target_agent_falls_back(phones, outcomes):
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*1")
    leg.wait_ended(5)
    _, far_leg = phones.ringing_agent("110", timeout=8)
    far_leg.reject(603)                                  # Decline
    back = agent.wait_incoming(10)
    back.accept()
    back.hears(call)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="fallback_rejected")


def test_origin_agent_not_answering_the_ring_back_goes_to_the_next_agent(phones, outcomes):
    busy1, _, _ = connect(phones, phones.caller, "110", "110")
    busy2, _, _ = connect(phones, phones.caller, "110", "110")
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*1")
    leg.wait_ended(5)
    agent.wait_incoming(10)                              # rung back, but lets it ring
    other, other_leg = phones.ringing_agent("12345", timeout=10, exclude=[agent])
    other_leg.accept()
    other_leg.hears(call)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="fallback_busy")


def test_far_pbx_stopped_falls_back_as_unreachable(phones, outcomes, lab):
    from conftest import cli, pbx_back

    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    cli("lab", "stop", "asterisk-110")
    try:
        leg.send_dtmf("*1")
        leg.wait_ended(5)
        back = agent.wait_incoming(12)
        back.accept()
        back.hears(call)
        [rec] = outcomes.wait(phones.lib)
        check_record(rec, result="fallback_unreachable")
    finally:
        cli("lab", "start", "asterisk-110")
        pbx_back(phones, lab, "110")


def test_caller_hang_up_while_the_target_rings_cancels_every_leg(phones, outcomes, lab):
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*1")
    leg.wait_ended(5)
    _, far_leg = phones.ringing_agent("110", timeout=8)
    call.hang_up()
    far_leg.wait_ended(5)
    phones.lib.wait_for(lambda: not lab.leftovers(), 5, "both PBXs to have no channel or bridge")
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="caller_abandoned")


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15])
def test_caller_hanging_up_as_the_key_is_pressed_is_recorded_validly(phones, outcomes, lab, delay):
    # Found by the DTMF fuzz: a transfer that ended before it started dialling had no
    # "requested" timestamp, and the sidecar dead-lettered its record as invalid.
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*1")
    phones.lib.sleep(delay)
    call.hang_up()
    phones.lib.wait_for(lambda: not lab.leftovers(), 10, "both PBXs to have no channel or bridge")
    phones.lib.sleep(0.5)
    for rec in outcomes.since_mark():         # none if the hang-up beat the key
        check_record(rec)
        assert rec["result"] in ("caller_abandoned", "fallback_unreachable"), rec


def test_key_pressed_twice_makes_one_transfer(phones, outcomes):
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*1*1")
    leg.wait_ended(5)
    far_agent, far_leg = phones.ringing_agent("110", timeout=8)
    phones.lib.sleep(1)
    assert sum(len(p.ringing_calls()) for p in phones.agents["110"]) == 1
    far_leg.accept()
    call.hears(far_leg)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted")


def test_the_callers_keys_trigger_nothing(phones, outcomes, lab):
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    call.send_dtmf("*1")
    call.send_dtmf("*3")
    phones.lib.sleep(2)
    assert not leg.ended and not any(p.ringing_calls() for p in phones.agents["110"])
    assert not [c for c in lab.ari["12345"].channels() if "trunk" in c["name"]]
    leg.hears(call)
    assert outcomes.since_mark() == []


def test_refer_to_an_unknown_number_is_refused_and_nothing_is_dialled(phones, outcomes, lab):
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.transfer_to("999")
    # The phone gets a final answer (a NOTIFY ending the REFER's subscription), not silence.
    phones.lib.wait_for(lambda: leg.transfer_final is not None, 3, "the REFER's final NOTIFY")
    assert leg.transfer_final >= 300, leg.transfer_status
    leg.transfer_final = None
    leg.transfer_to("110&PJSIP/evil")
    phones.lib.wait_for(lambda: leg.transfer_final is not None, 3, "the REFER's final NOTIFY")
    assert leg.transfer_final >= 300, leg.transfer_status
    phones.lib.sleep(1)
    assert not leg.ended and not call.ended
    assert not [c for c in lab.ari["12345"].channels() if "trunk" in c["name"]]
    call.hears(leg)
    assert outcomes.since_mark() == []


def test_out_of_scope_marker_records_and_transfers_nothing(phones, outcomes):
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*5")
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="out_of_scope_guided", mode="none", target=None,
                 initiating_agent=agent.username)
    assert not leg.ended
    call.hears(leg)


def test_app_killed_while_the_target_rings_completes_after_restart(phones, outcomes, service):
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*1")
    leg.wait_ended(5)
    phones.ringing_agent("110", timeout=8)
    service.kill()                                       # SIGKILL, mid-transfer
    service.start()
    # Killed at the very moment its originate started, the app may lose the agent's leg (Asterisk
    # cancels it); the restarted app then rings an agent again. Either way: answer what rings,
    # and if what was answered turns out to be the cancelled ring, answer the next one.
    phones.lib.sleep(1)
    far_agent, far_leg = answer_what_rings(phones, "110")
    far_leg.hears(call)
    call.hears(far_leg)
    [rec] = outcomes.wait(phones.lib, timeout=10)
    check_record(rec, result="accepted")
    phones.lib.sleep(2)
    assert len(outcomes.since_mark()) == 1               # recorded once, not once per process


def test_a_transfer_redis_never_took_completes_after_a_kill(phones, outcomes, service, lab):
    """Redis takes no writes (CLIENT PAUSE WRITE: a stalled fsync, a failover) from before *1
    until after the service was killed and came back, so the transfer's state never reached it.
    The restarted service learns the transfer from the caller's channel, where it was written
    as it started, and the far agent's answer completes it, recorded once. Before, the caller
    heard ringback for good and the far agent's answer was hung up."""
    import redis

    r = redis.Redis.from_url(lab.descriptor["redis"]["url"], socket_timeout=5)
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    r.execute_command("CLIENT", "PAUSE", 8000, "WRITE")
    leg.send_dtmf("*1")
    leg.wait_ended(5)
    phones.ringing_agent("110", timeout=8)
    service.kill()                                       # its state still waiting for Redis
    service.start()
    phones.lib.sleep(1)
    far_agent, far_leg = answer_what_rings(phones, "110")
    far_leg.hears(call)
    call.hears(far_leg)
    [rec] = outcomes.wait(phones.lib, timeout=15)        # appended once the pause is over
    check_record(rec, result="accepted", mode="blind", initiating_agent=agent.username)
    phones.lib.sleep(2)
    assert len(outcomes.since_mark()) == 1


def test_a_transfer_neither_redis_nor_its_channel_can_describe_hands_the_caller_back(
        phones, outcomes, service, lab):
    """As above, with the caller's trace of the transfer gone too (a channel from before the
    trace was written, say): the restarted service cannot finish the transfer, so it ends it
    and the caller, who would otherwise wait on it for good, goes to a 12345 agent again."""
    import redis

    r = redis.Redis.from_url(lab.descriptor["redis"]["url"], socket_timeout=5)
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    r.execute_command("CLIENT", "PAUSE", 8000, "WRITE")
    leg.send_dtmf("*1")
    leg.wait_ended(5)
    _, far_leg = phones.ringing_agent("110", timeout=8)
    service.kill()
    ari = lab.ari["12345"]
    [caller] = [c["id"] for c in ari.channels()
                if (c.get("channelvars") or {}).get("HOTLINE_ROLE") == "caller"]
    # Queued behind the announcement the caller hears (a Stasis channel's requests wait for its
    # playback).
    ari.request("POST", f"/channels/{caller}/variable", variable="HOTLINE_TRANSFER_TRACE",
                value="", timeout=15)
    service.start()
    far_leg.wait_ended(8)                               # the far ring is called off
    back_agent, back_leg = answer_what_rings(phones, "12345")
    back_leg.hears(call)
    call.hears(back_leg)


def test_app_killed_after_the_transfer_keeps_the_call_and_cleans_up_at_hang_up(phones, outcomes,
                                                                                service, lab):
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*1")
    leg.wait_ended(5)
    far_agent, far_leg = phones.ringing_agent("110", timeout=8)
    far_leg.accept()
    call.hears(far_leg)
    outcomes.wait(phones.lib)
    service.kill()
    service.start()
    far_leg.hears(call)                             # Asterisk kept the bridge
    far_leg.hang_up()
    call.wait_ended(5)                                   # the adopted call ends cleanly
    phones.lib.wait_for(lambda: not lab.leftovers(), 5, "both PBXs to have no channel or bridge")
    assert len(outcomes.since_mark()) == 1


def test_redis_stopped_during_a_transfer_delays_only_the_record(phones, outcomes, lab):
    import os
    import signal

    pid = lab.descriptor["redis"]["pid"]
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    os.kill(pid, signal.SIGSTOP)                         # Redis hangs: no answers at all
    try:
        leg.send_dtmf("*1")
        leg.wait_ended(5)
        far_agent, far_leg = phones.ringing_agent("110", timeout=8)
        far_leg.accept()
        far_leg.hears(call)
        call.hears(far_leg)
    finally:
        os.kill(pid, signal.SIGCONT)
    [rec] = outcomes.wait(phones.lib, timeout=10)
    check_record(rec, result="accepted")
    phones.lib.sleep(2.5)                                # two more replay rounds: still one
    assert len(outcomes.since_mark()) == 1


def test_chained_transfer_to_the_provincial_12345_by_its_own_key(phones, outcomes, lab):
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*41")
    leg.wait_ended(5)
    call.hears_echo()                           # the provincial line's echo
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted", target="province", origin="12345", trigger="dtmf")


@pytest.mark.parametrize("target", ["119", "120", "122", "water", "power", "gas", "heating"])
def test_emergency_and_utility_lines_by_refer_from_110(phones, outcomes, target):
    call, agent, leg = connect(phones, phones.caller, "110", "110")
    leg.transfer_to(target)
    leg.wait_ended(5)
    assert leg.transfer_status[-1] == 200
    call.hears_echo()
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted", target=target, origin="110", trigger="refer")


def test_emergency_key_alerts_at_once_and_keeps_the_agent_until_110_answers(phones, outcomes, lab):
    import redis

    r = redis.Redis.from_url(lab.descriptor["redis"]["url"])
    last = r.xrevrange(ALERTS.key, count=1)
    mark = last[0][0] if last else b"0-0"
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*3")
    alerts = phones.lib.wait_for(lambda: r.xrange(ALERTS.key, min=b"(" + mark), 3,
                                 "an emergency alert")
    alert = ALERTS.payload(alerts[0][1])
    check_payload("alert", alert)
    assert alert["kind"] == "emergency" and alert["origin"] == "12345" and alert["target"] == "110"
    far_agent, far_leg = phones.ringing_agent("110", timeout=8)
    assert far_leg.header("X-Hotline-Emergency") == "1"
    assert not leg.ended                                   # the 12345 agent stays on the line
    leg.hears(call)
    far_leg.accept()
    far_leg.hears(call)                               # three parties hear each other
    leg.hears(far_leg)
    call.hears(far_leg)
    leg.hang_up()                                          # the origin agent may leave now
    far_leg.hears(call)
    assert not call.ended
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted_by_target", mode="emergency", emergency=True, target="110")
    assert rec["decided_by"] == {"side": "origin", "agent": agent.username, "how": "hangup"}


def test_transfer_key_during_an_emergency_transfer_starts_nothing_more(phones, outcomes):
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*3")
    far_agent, far_leg = phones.ringing_agent("110", timeout=8)
    phones.lib.sleep(0.5)
    leg.send_dtmf("*1")                                  # the agent is still on the line
    leg.send_dtmf("*41")
    phones.lib.sleep(1.5)
    # One transfer only: the emergency rings every 110 agent once (R4), nothing else rings.
    ringing = [c for p in phones.agents["110"] for c in p.ringing_calls()]
    assert len(ringing) == len(phones.agents["110"])
    assert {c.header("X-Hotline-Transfer-Id") for c in ringing} == \
        {far_leg.header("X-Hotline-Transfer-Id")}
    assert not leg.ended
    far_leg.accept()
    far_leg.hears(call)
    leg.send_dtmf("*8")                                  # voice contact made: the agent leaves
    leg.wait_ended(5)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted_by_target", mode="emergency")


def test_the_caller_hears_where_a_blind_transfer_goes_then_ringback(phones, outcomes):
    """Issue 16 (5): the 12345 target 110 has an announcement ([prompts] to-110, synthesized by
    the lab with espeak-ng): after *1 the caller hears speech, not only the ringing tone, and
    the 110 agent's phone rings meanwhile (the announcement adds nothing to the set-up)."""
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*1")
    leg.wait_ended(5)
    call.hears_speech(timeout=5)
    far_agent, far_leg = phones.ringing_agent("110", timeout=8)
    far_leg.accept()
    call.hears(far_leg)
    far_leg.hears(call)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted")
    far_leg.hang_up()
    call.wait_ended(5)


def test_the_answering_agent_hears_the_whisper_before_the_caller(phones, outcomes, service,
                                                                 monkeypatch):
    """Issue 16 (5): with hotlines.110.whisper set (here from the environment), the 110 agent
    who answers a transfer from 12345 first hears "12345转来电话。" (speech), then talks with
    the caller."""
    service.stop()
    monkeypatch.setenv("HOTLINE_LINK__HOTLINES__110__WHISPER__12345", "whisper-12345")
    try:
        service.start()
        call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
        leg.send_dtmf("*1")
        leg.wait_ended(5)
        far_agent, far_leg = phones.ringing_agent("110", timeout=8)
        far_leg.accept()
        far_leg.hears_speech(timeout=5)
        call.hears(far_leg)
        far_leg.hears(call)
        [rec] = outcomes.wait(phones.lib)
        check_record(rec, result="accepted")
        far_leg.hang_up()
        call.wait_ended(5)
    finally:
        service.stop()
        monkeypatch.delenv("HOTLINE_LINK__HOTLINES__110__WHISPER__12345")
        service.start()
