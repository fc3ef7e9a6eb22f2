"""Agent delivery on the real lab: calls reach a free agent, with caller ID and a media path."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.lab

CITIZEN_NUMBER = "13800138000"
CALLER_110_NUMBER = "13900139000"


def connect(phones, caller_phone, number, hotline):
    """Dial, let the first ringing agent answer, and return once the two hear each other."""
    call = caller_phone.dial(number)
    agent, leg = phones.ringing_agent(hotline)
    leg.accept()
    call.wait_confirmed()
    leg.wait_confirmed()
    leg.hears(call)
    return call, agent, leg


def test_citizen_reaches_12345_agent_with_caller_id_and_two_way_audio(phones):
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    assert agent in phones.agents["12345"]
    assert leg.caller_number() == CITIZEN_NUMBER
    leg.hears(call)
    call.hears(leg)


def test_the_audio_check_hears_only_a_connected_party(phones):
    """The media proof can fail: a party of another call, or one whose tone is not sent, is
    not heard, and the tone heard is the frequency of the party that played it."""
    from phones import Timeout

    call, _, leg = connect(phones, phones.citizen, "12345", "12345")
    other, _, other_leg = connect(phones, phones.caller, "110", "110")
    with pytest.raises(Timeout):
        call.hears(other_leg, timeout=1.5)          # a tone in another call
    with pytest.raises(Timeout):
        leg.hears(other, timeout=1.5)
    call.hears(leg)
    assert {hz for hz, _ in call.tones_heard} == {leg.phone.tone_hz}
    assert leg.phone.tone_hz != other_leg.phone.tone_hz


def test_a_crashed_phone_fails_its_test_and_is_started_again(phones, lab):
    """The phone rig itself: a phone whose process dies mid-call raises PhoneDied (instead of
    every later test failing on a broken pipe), and after recovery it registers and calls."""
    import signal

    from conftest import recover_dead_phones
    from phones import PhoneDied

    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    os.kill(agent.proc.pid, signal.SIGSEGV)
    with pytest.raises(PhoneDied, match=rf"{agent.username}'s phone process died \(signal 11\)"):
        phones.lib.sleep(3)
    assert "signal 11" in recover_dead_phones(phones, lab)
    assert call.wait_ended().ended
    assert agent.registered and not phones.lib.dead()
    call, again, leg = connect(phones, phones.citizen, "12345", "12345")
    call.hears(leg)


def test_a_phone_whose_call_will_not_end_fails_its_test_and_is_started_again(phones, lab):
    """The phone rig: a phone that cannot end its call (frozen here; in CI its SIP stack had
    lost track of the call) fails the test it is in, not every later one: the call is ended on
    the PBX and the phone started again."""
    import signal

    from conftest import hang_up_every_call

    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    os.kill(agent.proc.pid, signal.SIGSTOP)
    with pytest.raises(pytest.fail.Exception,
                       match=rf"calls that would not end: <Call {agent.username}/{leg.key} "):
        hang_up_every_call(phones, lab)
    assert call.ended and not agent.live_calls() and agent.registered
    call, again, leg = connect(phones, phones.citizen, "12345", "12345")
    call.hears(leg)


def _agent_states(service, since: int, agent: str) -> list[tuple[str, float]]:
    """(device state, when) of ``agent`` as the service saw them, from its log."""
    import json
    from datetime import datetime

    out = []
    for line in service.log.read_bytes()[since:].splitlines():
        if line.startswith(b"{"):
            e = json.loads(line)
            if e.get("event") == "agent state" and e.get("agent") == agent:
                out.append((e["state"], datetime.fromisoformat(e["timestamp"]).timestamp()))
    return out


# qualify_frequency 5 s + qualify_timeout 2 s (dialplan/pjsip.conf.j2), and a little slack.
QUALIFY_WITHIN_S = 7.5


def seen_unavailable_after(phones, service, agent: str, since: int, frozen_at: float) -> float:
    """Seconds from ``frozen_at`` (time.time()) until the service saw ``agent`` UNAVAILABLE."""
    phones.lib.wait_for(
        lambda: any(s == "UNAVAILABLE" for s, _ in _agent_states(service, since, agent)),
        12, f"{agent} to be seen UNAVAILABLE")
    return next(t for s, t in _agent_states(service, since, agent) if s == "UNAVAILABLE") \
        - frozen_at


def test_a_registered_phone_that_is_gone_is_not_rung_and_comes_back_by_itself(phones, service):
    """A phone frozen (registered, its socket open, answering nothing: unplugged, a lost NAT
    binding) turns UNAVAILABLE by qualify and is skipped; answering again, it is rung again."""
    import signal
    import time

    gone = phones.agents["12345"][1]
    other = phones.agents["12345"][0]
    since = service.log.stat().st_size
    stopped = time.time()
    os.kill(gone.proc.pid, signal.SIGSTOP)
    try:
        assert seen_unavailable_after(phones, service, gone.username, since, stopped) \
            <= QUALIFY_WITHIN_S
        for _ in range(2):               # twice: whichever agent the service would try first
            call = phones.citizen.dial("12345")
            leg = other.wait_incoming(2)     # at once, not after the gone phone's agent ring
            leg.accept()
            call.hears(leg)
            call.hang_up()
            leg.wait_ended(5)
    finally:
        os.kill(gone.proc.pid, signal.SIGCONT)
    back_from = service.log.stat().st_size
    phones.lib.wait_for(
        lambda: any(s == "NOT_INUSE" for s, _ in _agent_states(service, back_from, gone.username)),
        12, f"{gone.username} to be free again")
    # Two callers now reach both agents, the one that was gone among them.
    _, first, _ = connect(phones, phones.citizen, "12345", "12345")
    _, second, _ = connect(phones, phones.citizen, "12345", "12345")
    assert {first, second} == {gone, other}


def test_110_caller_reaches_110_agent(phones):
    call, agent, leg = connect(phones, phones.caller, "110", "110")
    assert agent in phones.agents["110"]
    assert leg.caller_number() == CALLER_110_NUMBER
    leg.hears(call)
    call.hears(leg)


def test_call_through_the_trunk_reaches_an_agent_of_the_other_pbx(phones, lab):
    # The 12345 centre's citizen dials 110: the 12345 PBX routes it over the trunk.
    call, agent, leg = connect(phones, phones.citizen, "110", "110")
    assert agent in phones.agents["110"]
    assert leg.caller_number() == CITIZEN_NUMBER
    trunk_legs = [c["name"] for c in lab.ari["12345"].channels() if "trunk-110" in c["name"]]
    assert trunk_legs, "the call did not cross the trunk"
    leg.hears(call)
    call.hears(leg)


def test_agent_no_answer_goes_to_the_next_agent(phones):
    call = phones.citizen.dial("12345")
    first, first_leg = phones.ringing_agent("12345")
    # The first agent lets it ring; after timeouts.agent_ring (4 s in the test lab) the app
    # gives up on them and rings the other agent.
    second, second_leg = phones.ringing_agent("12345", timeout=10, exclude=[first])
    first_leg.wait_ended(3)
    assert second is not first
    second_leg.accept()
    call.wait_confirmed()
    second_leg.hears(call)


def test_agent_busy_rejection_goes_to_the_next_agent(phones):
    call = phones.citizen.dial("12345")
    first, first_leg = phones.ringing_agent("12345")
    first_leg.reject(486)
    second, second_leg = phones.ringing_agent("12345", timeout=5, exclude=[first])
    second_leg.accept()
    call.wait_confirmed()
    call.hears(second_leg)


def test_agent_answering_and_dropping_at_once_never_strands_the_caller(phones, lab):
    # Whether the hang-up beats the app's bridging is a race the test cannot steer. If it does,
    # the caller never met the agent and is offered to the next one; if not, it was a connected
    # call the agent ended, and the caller's call ends. Never a caller left alone in silence.
    call = phones.caller.dial("110")
    first, first_leg = phones.ringing_agent("110")
    first_leg.accept()
    first_leg.hang_up()
    phones.lib.wait_for(lambda: call.ended or any(p.ringing_calls() for p in phones.agents["110"]
                                                   if p is not first), 8,
                        "the call to end or the next agent to ring")
    if not call.ended:
        second, second_leg = phones.ringing_agent("110", exclude=[first])
        second_leg.accept()
        second_leg.hears(call)
    else:
        phones.lib.wait_for(lambda: not lab.leftovers(), 5, "no channel or bridge left")


def test_caller_hang_up_while_agent_rings_leaves_no_channel(phones, lab):
    call = phones.citizen.dial("12345")
    agent, leg = phones.ringing_agent("12345")
    call.hang_up()
    leg.wait_ended(5)
    phones.lib.wait_for(lambda: not lab.leftovers(), 5, "both PBXs to have no channel or bridge")


def test_agent_hang_up_ends_the_call_for_the_caller(phones, lab):
    call, agent, leg = connect(phones, phones.caller, "110", "110")
    leg.hang_up()
    call.wait_ended(5)
    phones.lib.wait_for(lambda: not lab.leftovers(), 5, "both PBXs to have no channel or bridge")


def test_caller_holds_when_every_agent_is_busy_and_is_served_when_one_frees(phones):
    first, _, first_leg = connect(phones, phones.caller, "110", "110")
    second = phones.caller.dial("110")
    _, second_leg = phones.ringing_agent("110")
    second_leg.accept()
    second.wait_confirmed()
    third = phones.caller.dial("110")
    # Answered by the app and on hold: no agent rings while both are busy.
    third.wait_confirmed()
    phones.lib.sleep(2)
    assert not any(p.ringing_calls() for p in phones.agents["110"])
    first_leg.hang_up()
    first.wait_ended(5)
    agent, leg = phones.ringing_agent("110", timeout=5)
    leg.accept()
    leg.wait_confirmed()
    leg.hears(third)


def test_the_app_gets_only_the_events_it_acts_on_and_watches_each_agents_phone(service, lab):
    # Set at each connect: an event filter (the stream was three quarters ChannelVarset and the
    # like) and a device-state subscription per agent (who is free, without asking per call).
    # Plus the REST answers, when requests go over the event WebSocket.
    from ari_app.app import HANDLED
    from ari_app.client import TRANSPORT_EVENTS

    for hid in ("12345", "110"):
        ari = lab.ari[hid]
        app = ari.request("GET", f"/applications/{ari.app}")
        assert sorted(e["type"] for e in app["events_allowed"]) == sorted(HANDLED
                                                                          + TRANSPORT_EVENTS)
        agents = [a["username"] for a in lab.accounts
                  if a["role"] == "agent" and a["hotline"] == hid]
        assert agents and set(app["device_names"]) >= {f"PJSIP/{a}" for a in agents}
