"""Three-way calls on the real lab: caller + 12345 agent + 110 agent agree who takes the matter."""

from __future__ import annotations

import urllib.error
import wave
from pathlib import Path

import pytest

from test_delivery import connect
from test_transfer import check_record

pytestmark = pytest.mark.lab

KEYS = {"accept": "*7", "leave": "*8", "undecided": "*9", "cancel": "*0"}
DIRECTIONS = {"12345": ("citizen", "12345", "110"), "110": ("caller", "110", "12345")}


def three_way(phones, origin: str):
    """Caller + origin agent, *2, the other platform's agent answers: three parties talking."""
    who, number, target = DIRECTIONS[origin]
    call, agent, leg = connect(phones, getattr(phones, who), number, origin)
    leg.send_dtmf("*2")
    leg.hears(call)                 # caller and agent keep talking while it rings
    far_agent, far_leg = phones.ringing_agent(target, timeout=8)
    assert far_leg.header("X-Hotline-Mode") == "three_way"
    far_leg.accept()
    far_leg.hears(call)
    leg.hears(far_leg)
    call.hears(far_leg)
    return call, agent, leg, far_agent, far_leg


# (key, pressed by, who stays with the caller, result)
CASES = [
    ("accept", "origin", "origin", "accepted_by_origin"),
    ("accept", "target", "target", "accepted_by_target"),
    ("leave", "origin", "target", "accepted_by_target"),
    ("leave", "target", "origin", "accepted_by_origin"),
    ("undecided", "origin", "origin", "undecided_first_receiver"),
    ("undecided", "target", "origin", "undecided_first_receiver"),
    ("cancel", "origin", "origin", "cancelled"),
    ("cancel", "target", "origin", "cancelled"),
]


def _decide(phones, outcomes, origin, action, presser, stays, result):
    call, agent, leg, far_agent, far_leg = three_way(phones, origin)
    (leg if presser == "origin" else far_leg).send_dtmf(KEYS[action])
    stayer, leaver = (leg, far_leg) if stays == "origin" else (far_leg, leg)
    leaver.wait_ended(5)
    stayer.hears(call)              # the caller never lost audio
    call.hears(stayer)
    assert not call.ended
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result=result, mode="three_way", origin=origin)
    assert rec["decided_by"]["side"] == presser and rec["decided_by"]["how"] == "key"
    assert rec["decided_by"]["action"] == action
    assert rec["durations_ms"]["consult"] is not None


@pytest.mark.parametrize("action, presser, stays, result", CASES,
                         ids=[f"{a}-by-{p}" for a, p, _, _ in CASES])
def test_decision_keys_when_12345_starts(phones, outcomes, action, presser, stays, result):
    _decide(phones, outcomes, "12345", action, presser, stays, result)


@pytest.mark.parametrize("action, presser, stays, result", CASES,
                         ids=[f"{a}-by-{p}" for a, p, _, _ in CASES])
def test_decision_keys_when_110_starts(phones, outcomes, action, presser, stays, result):
    _decide(phones, outcomes, "110", action, presser, stays, result)


def test_far_agent_hanging_up_is_a_cancel(phones, outcomes):
    call, agent, leg, far_agent, far_leg = three_way(phones, "12345")
    far_leg.hang_up()
    leg.hears(call)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="cancelled")
    assert rec["decided_by"] == {"side": "target", "agent": far_agent.username, "how": "hangup"}


def test_origin_agent_hanging_up_means_the_far_platform_accepts(phones, outcomes):
    call, agent, leg, far_agent, far_leg = three_way(phones, "12345")
    leg.hang_up()
    far_leg.hears(call)
    call.hears(far_leg)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted_by_target")
    assert rec["decided_by"]["how"] == "hangup" and rec["decided_by"]["side"] == "origin"


def test_caller_hanging_up_ends_the_conference_and_leaves_nothing(phones, outcomes, lab):
    call, agent, leg, far_agent, far_leg = three_way(phones, "110")
    call.hang_up()
    leg.wait_ended(5)
    far_leg.wait_ended(5)
    phones.lib.wait_for(lambda: not lab.leftovers(), 5, "both PBXs to have no channel or bridge")
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="caller_abandoned")


def test_far_leg_busy_keeps_caller_and_agent_together(phones, outcomes):
    busy1, _, _ = connect(phones, phones.caller, "110", "110")
    busy2, _, _ = connect(phones, phones.caller, "110", "110")
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*2")
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="fallback_busy", mode="three_way")
    leg.hears(call)
    call.hears(leg)


def test_far_leg_no_answer_keeps_caller_and_agent_together(phones, outcomes):
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*2")
    phones.ringing_agent("110", timeout=8)
    [rec] = outcomes.wait(phones.lib, timeout=12)
    check_record(rec, result="fallback_no_answer", mode="three_way")
    leg.hears(call)
    call.hears(leg)


def test_far_pbx_down_keeps_caller_and_agent_together(phones, outcomes, lab):
    from conftest import cli, pbx_back

    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    cli("lab", "stop", "asterisk-110")
    try:
        leg.send_dtmf("*2")
        [rec] = outcomes.wait(phones.lib, timeout=12)
        check_record(rec, result="fallback_unreachable", mode="three_way")
        leg.hears(call)
    finally:
        cli("lab", "start", "asterisk-110")
        pbx_back(phones, lab, "110")


def test_the_three_way_part_is_recorded_and_named_in_the_record(phones, outcomes, lab):
    from audio import TONES_HZ, wav_has_tone

    call, agent, leg, far_agent, far_leg = three_way(phones, "12345")
    leg.hears(far_leg)                   # the 110 agent's tone, then the caller's, into the bridge
    far_leg.hears(call)
    leg.send_dtmf("*7")
    far_leg.wait_ended(5)
    [rec] = outcomes.wait(phones.lib)
    assert rec["recording"]
    path = Path(lab.descriptor["state_dir"]) / "pbx-12345" / "spool" / "recording" / f"{rec['recording']}.wav"
    played = {far_leg.phone.tone_hz, call.phone.tone_hz}
    # The WAV header is completed when the recording stops, after the 110 agent has left.
    def holds_the_tones() -> bool:
        try:
            return all(wav_has_tone(path, hz) for hz in played)
        except (OSError, EOFError, wave.Error):          # not there, or not finished yet
            return False

    phones.lib.wait_for(holds_the_tones, 5,
                        f"the recording {path} to hold the parties' tones {sorted(played)}")
    silent = [hz for hz in TONES_HZ if hz not in played and hz != leg.phone.tone_hz]
    assert not any(wav_has_tone(path, hz) for hz in silent), "a tone nobody played"


def test_app_killed_mid_conference_keeps_three_parties_and_keys_work_after_restart(
        phones, outcomes, service):
    call, agent, leg, far_agent, far_leg = three_way(phones, "12345")
    service.kill()
    service.start()
    far_leg.hears(call)                     # still three-way: Asterisk kept the bridge
    leg.hears(far_leg)
    # A digit that ends in the instant the app re-subscribes is lost (ARI does not replay
    # events); an agent would press again. Give the restarted app a moment, then press once.
    phones.lib.sleep(1)
    leg.send_dtmf("*7")
    far_leg.wait_ended(8)
    call.hears(leg)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted_by_origin")
    phones.lib.sleep(2)
    assert len(outcomes.since_mark()) == 1


def test_an_agent_leaving_a_ringing_three_way_while_the_app_is_down_leaves_a_blind_transfer(
        phones, outcomes, service):
    """Rule 5 across a restart: the 12345 agent starts a three-way call and, while the service
    is down and the 110 agent's phone still rings, hangs up. The restarted service finds the
    caller alone in the call's bridge with the transfer in flight: the caller hears ringback
    and gets the 110 agent when they answer. Before, it was hung up as a call left with only
    the caller."""
    from audio import NOT_SPEECH_HZ

    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*2")
    far_agent, far_leg = phones.ringing_agent("110", timeout=8)
    service.kill()
    leg.hang_up()
    phones.lib.sleep(0.5)
    service.start()
    call.hears_tone(NOT_SPEECH_HZ[0], source="ringback")     # 450 Hz: the lab's ringing tone
    far_leg.accept()
    far_leg.hears(call)
    call.hears(far_leg)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted_by_target", mode="three_way")
    assert rec["decided_by"]["how"] == "hangup" and not call.ended


@pytest.mark.parametrize("pause_ms, killed_after_s", [(3000, 3.5), (10000, 0)],
                         ids=["taken-late", "never-taken"])
def test_a_three_way_begun_while_redis_stalls_is_known_to_the_next_instance(
        phones, outcomes, service, lab, pause_ms, killed_after_s):
    """Redis takes no writes (CLIENT PAUSE WRITE: as a stalled fsync or a failover holds them)
    while the 12345 agent starts a three-way call, and the service is killed. Taken late: the
    pause is over first, the transfer's state is written once Redis takes writes again, and the
    next instance reads it (before, the state was skipped for good). Never taken: killed while
    Redis still holds it, so the next instance learns it from the caller's channel. Either way
    the agent's *7 decides it (before, it did nothing), and the recording the first instance
    began is named in the record and stops at the decision."""
    import redis

    r = redis.Redis.from_url(lab.descriptor["redis"]["url"], socket_timeout=5)
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    r.execute_command("CLIENT", "PAUSE", pause_ms, "WRITE")
    leg.send_dtmf("*2")
    _, far_leg = phones.ringing_agent("110", timeout=8)
    far_leg.accept()
    far_leg.hears(call)                     # three parties while Redis still holds its writes
    phones.lib.sleep(killed_after_s)        # taken late: the pause over, the writer's next try
    service.kill()
    service.start()
    leg.hears(far_leg)                      # Asterisk kept the three parties together
    phones.lib.sleep(1)
    leg.send_dtmf("*7")
    far_leg.wait_ended(8)
    call.hears(leg)
    [rec] = outcomes.wait(phones.lib, timeout=15)
    check_record(rec, result="accepted_by_origin", mode="three_way")
    assert rec["decided_by"]["how"] == "key"
    assert rec["recording"] == f"threeway-{rec['transfer_id']}" and not rec["detail"], rec
    ari = lab.ari["12345"]

    def stopped() -> bool:
        try:
            ari.request("GET", f"/recordings/live/{rec['recording']}")
        except urllib.error.HTTPError as exc:
            return exc.code == 404
        return False

    phones.lib.wait_for(stopped, 5, "the three-way part's recording to stop")


def test_a_restart_into_a_stalled_redis_knows_the_three_way_from_the_pbx(
        phones, outcomes, service, lab):
    """The service is killed in a three-way call and comes back while Redis answers nothing for
    8 s (CLIENT PAUSE ALL): it knows the call at once from the caller's channel (the transfer's
    trace) and the PBX's bridge, without Redis (before, only once Redis answered). What Redis
    held is added when it answers: the record's conference began before the kill."""
    import json
    import time
    from datetime import datetime, timezone

    import redis

    from test_calls import _service_get

    call, agent, leg, far_agent, far_leg = three_way(phones, "12345")
    phones.lib.sleep(0.5)                   # the conference's state is in Redis
    r = redis.Redis.from_url(lab.descriptor["redis"]["url"], socket_timeout=5)
    killed_at = datetime.now(timezone.utc)
    r.execute_command("CLIENT", "PAUSE", 8000, "ALL")
    paused = time.monotonic()
    service.kill()
    service.start()
    far_leg.hears(call)                     # Asterisk kept the three parties together

    def knows_the_three_way() -> bool:
        return json.loads(_service_get("/health")[1])["hotlines"]["12345"]["three_way"] == 1

    phones.lib.wait_for(knows_the_three_way, 6, "the service to know the three-way call")
    assert time.monotonic() - paused < 7.5, "known only once Redis answered"
    phones.lib.sleep(max(0.0, 8 - (time.monotonic() - paused)) + 3)   # Redis read again
    leg.send_dtmf("*7")
    far_leg.wait_ended(8)
    call.hears(leg)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted_by_origin")
    assert datetime.fromisoformat(rec["timestamps"]["conference"]) < killed_at, rec["timestamps"]


def test_keys_from_the_caller_do_nothing_in_a_three_way(phones, outcomes):
    call, agent, leg, far_agent, far_leg = three_way(phones, "12345")
    for key in ("*7", "*8", "*9", "*0", "*2"):
        call.send_dtmf(key)
    phones.lib.sleep(2)
    assert not leg.ended and not far_leg.ended
    assert outcomes.since_mark() == []
    far_leg.hears(call)


def test_both_agents_pressing_at_once_makes_exactly_one_decision(phones, outcomes):
    call, agent, leg, far_agent, far_leg = three_way(phones, "12345")
    leg.send_dtmf("*7")
    far_leg.send_dtmf("*7")
    phones.lib.sleep(3)
    recs = outcomes.since_mark()
    assert len(recs) == 1 and recs[0]["result"] in ("accepted_by_origin", "accepted_by_target")
    stayer = leg if recs[0]["result"] == "accepted_by_origin" else far_leg
    assert not stayer.ended and not call.ended
    stayer.hears(call)


def test_three_way_key_during_a_three_way_does_nothing(phones, outcomes):
    call, agent, leg, far_agent, far_leg = three_way(phones, "12345")
    leg.send_dtmf("*2")
    phones.lib.sleep(2)
    assert sum(len(p.ringing_calls()) for p in phones.agents["110"]) == 0
    assert not far_leg.ended and outcomes.since_mark() == []
    leg.send_dtmf("*0")
    far_leg.wait_ended(5)
    assert outcomes.wait(phones.lib)[0]["result"] == "cancelled"


def test_an_emergency_with_every_110_agent_busy_waits_first_in_line_for_the_first_who_frees(
        phones, outcomes):
    """R4: both 110 agents talking and an ordinary caller already waiting; the 12345 agent's
    *3 is neither refused nor timed out (it waits past transfer_ring), caller and 12345 agent
    keep talking meanwhile, and the first 110 agent who hangs up is rung for the emergency, not
    for the caller who waited longer."""
    busy = phones.every_agent_busy("110")
    ordinary = phones.caller.dial("110")
    phones.lib.sleep(1.0)
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*3")
    phones.lib.sleep(8.0)                           # past transfer_ring (6 s)
    assert not any(p.ringing_calls() for p in phones.agents["110"])
    assert not call.ended and not leg.ended
    call.hears(leg)                                 # together while 110 is busy
    freed_call, freed_agent, freed_leg = busy.pop(0)
    freed_leg.hang_up()
    freed_call.wait_ended(5)
    far_agent, far_leg = phones.ringing_agent("110", timeout=8)
    assert far_agent is freed_agent
    assert far_leg.header("X-Hotline-Emergency") == "1"
    assert far_leg.header("X-Hotline-Origin") == "12345"
    far_leg.accept()
    far_leg.hears(call)
    call.hears(far_leg)
    leg.hears(far_leg)
    assert not ordinary.ended                       # still waiting, after the emergency
    far_leg.send_dtmf(KEYS["accept"])
    leg.wait_ended(5)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted_by_target", mode="emergency", origin="12345")
    for c, _a, lg in busy:
        lg.hang_up()
        c.wait_ended(5)
    ordinary.hang_up()
    far_leg.hang_up()
    call.wait_ended(5)


def test_an_emergency_rings_every_free_110_agent_and_the_first_to_answer_takes_it(
        phones, outcomes):
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*3")
    agents = phones.agents["110"]
    phones.lib.wait_for(lambda: all(p.ringing_calls() for p in agents), 8,
                        "every 110 agent to ring")
    legs = [p.ringing_calls()[0] for p in agents]
    legs[-1].accept()
    for other in legs[:-1]:
        other.wait_ended(5)                         # stopped ringing: answered elsewhere
    legs[-1].hears(call)
    call.hears(legs[-1])
    legs[-1].send_dtmf(KEYS["accept"])
    leg.wait_ended(5)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted_by_target", mode="emergency", origin="12345")
    assert rec["answering_agent"] == agents[-1].username and rec["emergency"] is True
    legs[-1].hang_up()
    call.wait_ended(5)


def test_an_emergency_nobody_takes_rings_the_supervisors_seat_after_its_delay(phones, outcomes):
    """R4: both 110 agents talking; after emergency_seats_after (3 s in the test lab) the
    emergency also rings 110's emergency seat (110-s1), which takes it."""
    busy = phones.every_agent_busy("110")
    [seat] = phones.overflow["110"]
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*3")
    phones.lib.sleep(2.0)
    assert not seat.ringing_calls()                 # not before its delay
    phones.lib.wait_for(lambda: seat.ringing_calls(), 5, "the emergency seat to ring")
    seat_leg = seat.ringing_calls()[0]
    assert seat_leg.header("X-Hotline-Emergency") == "1"
    seat_leg.accept()
    seat_leg.hears(call)
    call.hears(seat_leg)
    seat_leg.send_dtmf(KEYS["accept"])
    leg.wait_ended(5)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted_by_target", mode="emergency", origin="12345")
    assert rec["answering_agent"] == seat.username
    for c, _a, lg in busy:
        lg.hang_up()
        c.wait_ended(5)
    seat_leg.hang_up()
    call.wait_ended(5)
