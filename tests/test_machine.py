"""The transfer state machine, every state x event pair, and the races that matter."""

from __future__ import annotations

import itertools

import pytest

from transfer.machine import (
    DETAILS, TRANSITIONS, Alert, Answered, Bridge, BridgeFailed, CancelTimer, Decision, DropAgent,
    Ev, Facts, HangUp, IllegalTransition, Key, Notify, Originate, Record, RecordingFailed,
    ReleaseAgent, Result, ReturnToOrigin, Ringback, Row, StartRecording, StartTimer, State,
    StopRecording, TargetFailed, Transfer, chain_of, out_of_scope, start, step,
)
from transfer import machine

# One detail of the right type per event (None: the event carries none).
SAMPLE = {
    Ev.TARGET_RINGING: None, Ev.TARGET_ANSWERED: Answered("110-a1"),
    Ev.TARGET_FAILED: TargetFailed("busy", "PBX said busy"), Ev.BRIDGED: None,
    Ev.BRIDGE_FAILED: BridgeFailed("target"), Ev.CALLER_HUNG_UP: None, Ev.RING_TIMEOUT: None,
    Ev.KEY: Key("*1"), Ev.DECISION: Decision("accept", "target", "110-a1"),
    Ev.AGENT_HUNG_UP: None, Ev.RESTARTED: Facts(True, True, True, True),
    Ev.RECORDING_FAILED: RecordingFailed("disk full"),
}


def new(mode: str = "blind", **kw) -> Transfer:
    t = Transfer(transfer_id="T1", call_id="C1", hotline="12345", target="110",
                 dial="PJSIP/110@trunk-110", caller="caller-ch", caller_number="13800138000",
                 agent="12345-a1", agent_leg="agent-ch", mode=mode, ring_timeout=30,
                 emergency=(mode == "emergency"), **kw)
    return t


def records(cmds) -> list[Result]:
    return [c.result for c in cmds if isinstance(c, Record)]


LIVE = [State.DIALING, State.BRIDGING, State.CONFERENCE]


def test_every_state_and_event_has_a_transition():
    for state, event in itertools.product(LIVE, Ev):
        assert (state, event) in TRANSITIONS, (state, event)
    assert len(TRANSITIONS) == len(LIVE) * len(Ev)      # and DONE has none: it ignores all


def test_ignored_pairs_stay_where_they_are_and_every_row_declares_its_next_states():
    for (state, event), row in TRANSITIONS.items():
        assert isinstance(row, Row) and row.next, (state, event)
        assert row.next <= set(State), (state, event)
        if row.handler is machine._ignore:
            assert row.next == {state}, (state, event)


def _in(state: State, mode: str, **kw) -> Transfer:
    """A transfer brought to ``state`` the way the adapter would."""
    t = new(mode, **kw)
    start(t, 0)
    if state in (State.BRIDGING, State.CONFERENCE):
        step(t, Ev.TARGET_ANSWERED, 1, Answered("110-a1"))
    if state == State.CONFERENCE:
        step(t, Ev.BRIDGED, 1.1)
    assert t.state == state
    return t


# Details that take each handler down each of its branches.
VARIANTS = {
    Ev.TARGET_FAILED: [TargetFailed(k) for k in ("busy", "rejected", "no_answer", "odd")],
    Ev.BRIDGE_FAILED: [BridgeFailed("caller"), BridgeFailed("target")],
    Ev.DECISION: [Decision(a, s, "x") for a in ("accept", "leave", "undecided", "cancel", "?")
                  for s in ("origin", "target")],
    Ev.RESTARTED: [Facts(*bits) for bits in itertools.product((True, False), repeat=5)],
}


@pytest.mark.parametrize("mode, state, event", [
    (m, s, e) for m in ("blind", "three_way", "emergency") for s in LIVE for e in Ev
    if not (m == "blind" and s == State.CONFERENCE)])    # a blind transfer has no conference
def test_each_row_moves_only_to_the_states_it_declares(mode, state, event):
    for detail in VARIANTS.get(event, [SAMPLE[event]]):
        for agent_left in (False, True):
            t = _in(state, mode)
            if agent_left and state != State.CONFERENCE:
                step(t, Ev.AGENT_HUNG_UP, 1.5)
            if t.state != state:
                continue
            step(t, event, 2, detail)           # step raises IllegalTransition otherwise
            assert t.state in TRANSITIONS[(state, event)].next


def test_a_handler_that_leaves_its_declared_states_is_caught(monkeypatch):
    t = _in(State.DIALING, "blind")
    wrong = Row(machine._answered, frozenset({State.DIALING}))
    monkeypatch.setitem(TRANSITIONS, (State.DIALING, Ev.TARGET_ANSWERED), wrong)
    with pytest.raises(IllegalTransition):
        step(t, Ev.TARGET_ANSWERED, 1, Answered())


def test_each_event_takes_only_its_own_detail_type():
    t = _in(State.DIALING, "blind")
    for event, kind in DETAILS.items():
        assert isinstance(SAMPLE[event], kind) if kind else SAMPLE[event] is None
        with pytest.raises(TypeError):
            step(t, event, 1, "a string" if kind else Key("*1"))
    with pytest.raises(TypeError):
        step(t, Ev.TARGET_ANSWERED, 1, "110-a1")     # the old untyped form
    assert t.state == State.DIALING


def test_start_blind_releases_agent_rings_caller_dials_target_and_arms_timer():
    t = new()
    cmds = start(t, now=100.0)
    assert cmds == [
        ReleaseAgent("agent-ch"), Ringback("caller-ch", True),
        Originate("T1-target", "PJSIP/110@trunk-110", "13800138000",
                  {"X-Hotline-Transfer-Id": "T1", "X-Hotline-Origin": "12345",
                   "X-Hotline-Mode": "blind"}, 30),
        StartTimer("ring", 130.0),
    ]
    assert t.state == State.DIALING and t.steps["dialing"] == 100.0


def test_start_blind_with_an_announcement_plays_it_while_the_target_is_dialled():
    cmds = start(new(announce="to-110"), now=100.0)
    assert cmds[1] == Ringback("caller-ch", True, "to-110")
    assert isinstance(cmds[2], Originate)          # dialled at once, not after the prompt


def test_a_fall_back_after_an_announcement_leaves_the_caller_plain_ringback():
    t = new(announce="to-110")
    start(t, now=100.0)
    cmds = step(t, Ev.TARGET_FAILED, 101.0, TargetFailed("busy", "PBX said busy"))
    i = cmds.index(Ringback("caller-ch", False))
    assert cmds[i + 1] == Ringback("caller-ch", True)
    assert isinstance(cmds[i + 2], ReturnToOrigin)


def test_start_emergency_keeps_the_agent_and_alerts_first():
    t = new("emergency", category="emergencies")
    cmds = start(t, 5.0)
    assert cmds[0] == Alert("emergency")
    assert not any(isinstance(c, (ReleaseAgent, Ringback)) for c in cmds)
    originate = next(c for c in cmds if isinstance(c, Originate))
    assert originate.headers["X-Hotline-Emergency"] == "1"
    assert originate.headers["X-Hotline-Category"] == "emergencies"


def test_answer_then_bridged_is_accepted_once():
    t = new()
    start(t, 0)
    step(t, Ev.TARGET_RINGING, 1)
    cmds = step(t, Ev.TARGET_ANSWERED, 2, Answered("110-a1"))
    assert cmds == [CancelTimer("ring"), Ringback("caller-ch", False),
                    Bridge(("caller-ch", "T1-target"))]
    assert t.state == State.BRIDGING
    assert records(step(t, Ev.BRIDGED, 2.1)) == [Result.ACCEPTED]
    assert t.state == State.DONE and t.steps["bridged"] == 2.1
    # Anything after DONE changes nothing: the outcome is recorded once.
    for ev in Ev:
        assert step(t, ev, 9, SAMPLE[ev]) == []


@pytest.mark.parametrize("kind, result", [
    ("busy", Result.FALLBACK_BUSY), ("rejected", Result.FALLBACK_REJECTED),
    ("unreachable", Result.FALLBACK_UNREACHABLE), ("weird", Result.FALLBACK_UNREACHABLE),
])
def test_target_failure_returns_the_caller_to_the_transferring_agent(kind, result):
    t = new()
    start(t, 0)
    cmds = step(t, Ev.TARGET_FAILED, 3, TargetFailed(kind, f"PBX said {kind}"))
    assert cmds == [HangUp("T1-target"), ReturnToOrigin("caller-ch", "12345-a1"),
                    CancelTimer("ring"), Record(result)]
    assert t.detail == f"PBX said {kind}"


def test_ring_timeout_after_ringing_is_no_answer_and_without_ringing_is_unreachable():
    t = new()
    start(t, 0)
    step(t, Ev.TARGET_RINGING, 1)
    assert records(step(t, Ev.RING_TIMEOUT, 30)) == [Result.FALLBACK_NO_ANSWER]
    t2 = new()
    start(t2, 0)
    assert records(step(t2, Ev.RING_TIMEOUT, 30)) == [Result.FALLBACK_UNREACHABLE]


def test_emergency_failure_keeps_the_caller_with_the_agent():
    t = new("emergency")
    start(t, 0)
    cmds = step(t, Ev.TARGET_FAILED, 1, TargetFailed("busy"))
    assert not any(isinstance(c, ReturnToOrigin) for c in cmds)
    assert Notify("agent-ch", "beeperr") in cmds
    assert records(cmds) == [Result.FALLBACK_BUSY]


@pytest.mark.parametrize("state_events", [[], [Ev.TARGET_ANSWERED]])
def test_caller_hang_up_cancels_the_target_leg(state_events):
    t = new()
    start(t, 0)
    for ev in state_events:
        step(t, ev, 1, SAMPLE[ev])
    cmds = step(t, Ev.CALLER_HUNG_UP, 2)
    assert HangUp("T1-target") in cmds
    assert records(cmds) == [Result.CALLER_ABANDONED]


def test_race_caller_hangs_up_while_target_answers():
    # The answer is processed first, then bridging finds the caller gone.
    t = new()
    start(t, 0)
    step(t, Ev.TARGET_ANSWERED, 1, Answered())
    cmds = step(t, Ev.BRIDGE_FAILED, 1.01, BridgeFailed("caller"))
    assert HangUp("T1-target") in cmds and records(cmds) == [Result.CALLER_ABANDONED]
    # ...and the hang-up event that arrives afterwards is ignored.
    assert step(t, Ev.CALLER_HUNG_UP, 1.02) == []


def test_race_target_hangs_up_between_answer_and_bridge():
    t = new()
    start(t, 0)
    step(t, Ev.TARGET_ANSWERED, 1, Answered())
    cmds = step(t, Ev.TARGET_FAILED, 1.01, TargetFailed("rejected"))
    assert ReturnToOrigin("caller-ch", "12345-a1") in cmds
    assert records(cmds) == [Result.FALLBACK_REJECTED]


def test_keys_during_a_transfer_do_nothing():
    t = new()
    start(t, 0)
    assert step(t, Ev.KEY, 1, Key("*1")) == []
    step(t, Ev.TARGET_ANSWERED, 2, Answered())
    assert step(t, Ev.KEY, 3, Key("*1")) == []
    assert t.state == State.BRIDGING


def test_late_ring_timeout_after_answer_is_ignored():
    t = new()
    start(t, 0)
    step(t, Ev.TARGET_ANSWERED, 29.9, Answered())
    assert step(t, Ev.RING_TIMEOUT, 30) == []


@pytest.mark.parametrize("facts, expected_state, expected_records", [
    (Facts(caller_alive=False, target_alive=True, target_up=False, bridged=False),
     State.DONE, [Result.CALLER_ABANDONED]),
    (Facts(caller_alive=True, target_alive=True, target_up=True, bridged=True),
     State.DONE, [Result.ACCEPTED]),
    (Facts(caller_alive=True, target_alive=True, target_up=True, bridged=False),
     State.BRIDGING, []),
    (Facts(caller_alive=True, target_alive=True, target_up=False, bridged=False),
     State.DIALING, []),
    (Facts(caller_alive=True, target_alive=False, target_up=False, bridged=False),
     State.DONE, [Result.FALLBACK_UNREACHABLE]),
])
def test_restart_reconciles_from_what_still_exists(facts, expected_state, expected_records):
    t = new()
    start(t, 0)
    cmds = step(t, Ev.RESTARTED, 5, facts)
    assert t.state == expected_state
    assert records(cmds) == expected_records


def test_restart_while_the_target_rings_rearms_the_ring_timer_at_its_first_deadline():
    t = new()
    start(t, 100.0)
    step(t, Ev.TARGET_RINGING, 101.0)
    cmds = step(t, Ev.RESTARTED, 112.0, Facts(True, True, False, False))
    assert t.state == State.DIALING
    assert cmds == [StartTimer("ring", 130.0)]        # dialled at 100, 30 s to answer


def test_a_three_way_carried_on_from_its_trace_gets_redis_s_past_when_redis_answers():
    """Restarted into a Redis that did not answer, the transfer as it began (its trace) and
    the PBX's facts make a conference again at the restart's time; what Redis held, read
    later, puts back when it was answered and bridged, and by whom."""
    stored = new("three_way")
    start(stored, 0)
    step(stored, Ev.TARGET_RINGING, 1)
    step(stored, Ev.TARGET_ANSWERED, 4, Answered("110-a1"))
    step(stored, Ev.BRIDGED, 4.2)
    trace = new("three_way")
    start(trace, 0)
    t = Transfer.from_dict(trace.to_dict())
    step(t, Ev.RESTARTED, 60, Facts(True, True, True, True))
    assert t.state == State.CONFERENCE and t.steps["conference"] == 60
    machine.add_history(t, Transfer.from_dict(stored.to_dict()))
    assert t.steps == {"requested": 0, "dialing": 0, "ringing": 1, "answered": 4,
                       "bridged": 4.2, "conference": 4.2}
    assert t.answered_by == "110-a1" and t.was_ringing and t.state == State.CONFERENCE
    cmds = step(t, Ev.DECISION, 70, Decision("accept", "origin", "12345-a1"))
    assert records(cmds) == [Result.ACCEPTED_BY_ORIGIN] and t.steps["ended"] == 70


@pytest.mark.parametrize("facts, result", [
    (Facts(True, False, False, False), Result.CANCELLED),               # the far agent left
    (Facts(True, True, True, True, agent_alive=False), Result.ACCEPTED_BY_TARGET),
])
def test_a_three_way_found_in_conference_from_its_trace_is_decided_by_a_hang_up_meanwhile(
        facts, result):
    """Carried on from its trace (DIALING) with its recording live: a conference before the
    restart, so a hang-up while the service was away is a decision and the recording stops
    (from DIALING the far agent's leaving would be a failure to reach them)."""
    trace = new("three_way")
    start(trace, 0)
    t = Transfer.from_dict(trace.to_dict())
    machine.found_in_conference(t)
    cmds = step(t, Ev.RESTARTED, 60, facts)
    assert records(cmds) == [result]
    assert StopRecording("threeway-T1") in cmds and t.recording == "threeway-T1"


def test_a_three_way_whose_agent_left_while_the_app_was_away_is_a_blind_transfer():
    """Rule 5 after a restart: the agent left before the far side answered, so the caller
    (alone now) hears ringback while the target still rings, and is the far side's once it
    answers."""
    t = new("three_way")
    start(t, 0)
    cmds = step(t, Ev.RESTARTED, 5, Facts(True, True, False, False, agent_alive=False))
    assert cmds == [Ringback("caller-ch", True), StartTimer("ring", 30)]
    assert not t.agent_present and t.state == State.DIALING
    cmds = step(t, Ev.TARGET_ANSWERED, 8, Answered("110-a1"))
    assert Ringback("caller-ch", False) in cmds and Bridge(("caller-ch", t.target_leg)) in cmds
    assert records(step(t, Ev.BRIDGED, 8.2)) == [Result.ACCEPTED_BY_TARGET]


def test_a_failed_recording_is_noted_and_the_three_way_call_goes_on():
    t = new("three_way")
    start(t, 0)
    step(t, Ev.TARGET_ANSWERED, 1, Answered("110-a1"))
    step(t, Ev.BRIDGED, 2)
    assert t.state == State.CONFERENCE and t.recording == "threeway-T1"
    assert step(t, Ev.RECORDING_FAILED, 2.1, RecordingFailed("disk full")) == []
    assert t.state == State.CONFERENCE and t.recording is None
    cmds = step(t, Ev.DECISION, 9, Decision("accept", "target", "110-a1"))
    assert records(cmds) == [Result.ACCEPTED_BY_TARGET]
    assert not [c for c in cmds if isinstance(c, StopRecording)]    # nothing to stop
    assert t.detail == "recording failed: disk full"


def test_out_of_scope_is_a_record_and_nothing_else():
    t = out_of_scope("T9", "C9", "12345", "caller-ch", "13800138000", "12345-a1", "agent-ch",
                     "dtmf", 50.0)
    assert (t.state, t.result, t.mode, t.target) == (State.DONE, Result.OUT_OF_SCOPE_GUIDED,
                                                     "none", "")
    assert t.steps == {"requested": 50.0, "ended": 50.0}
    for ev in Ev:
        assert step(t, ev, 51, SAMPLE[ev]) == []


def test_restart_in_bridging_with_bridge_done_is_accepted():
    t = new()
    start(t, 0)
    step(t, Ev.TARGET_ANSWERED, 1, Answered())
    cmds = step(t, Ev.RESTARTED, 2, Facts(True, True, True, True))
    assert records(cmds) == [Result.ACCEPTED]


def test_round_trip_through_a_dict_keeps_everything():
    t = new(category="public_order")
    start(t, 0)
    step(t, Ev.TARGET_RINGING, 1)
    again = Transfer.from_dict(t.to_dict())
    assert again == t


def conference(mode: str = "three_way") -> Transfer:
    t = new(mode)
    start(t, 0)
    step(t, Ev.TARGET_ANSWERED, 1, Answered("110-a1"))
    cmds = step(t, Ev.BRIDGED, 1.1)
    assert t.state == State.CONFERENCE
    assert cmds == [StartRecording("threeway-T1")]
    return t


def test_three_way_start_keeps_caller_and_agent_talking():
    t = new("three_way")
    cmds = start(t, 0)
    assert not any(isinstance(c, (ReleaseAgent, Ringback, Alert)) for c in cmds)
    assert any(isinstance(c, Originate) for c in cmds)


@pytest.mark.parametrize("action, side, result, leaves", [
    ("accept", "origin", Result.ACCEPTED_BY_ORIGIN, HangUp("T1-target")),
    ("leave", "target", Result.ACCEPTED_BY_ORIGIN, HangUp("T1-target")),
    ("accept", "target", Result.ACCEPTED_BY_TARGET, DropAgent("agent-ch")),
    ("leave", "origin", Result.ACCEPTED_BY_TARGET, DropAgent("agent-ch")),
    ("undecided", "origin", Result.UNDECIDED_FIRST_RECEIVER, HangUp("T1-target")),
    ("undecided", "target", Result.UNDECIDED_FIRST_RECEIVER, HangUp("T1-target")),
    ("cancel", "origin", Result.CANCELLED, HangUp("T1-target")),
    ("cancel", "target", Result.CANCELLED, HangUp("T1-target")),
])
def test_each_decision_key_by_each_agent(action, side, result, leaves):
    t = conference()
    cmds = step(t, Ev.DECISION, 5, Decision(action, side, "someone"))
    assert cmds[0] == StopRecording("threeway-T1")
    assert leaves in cmds
    assert records(cmds) == [result]
    assert t.decided_by == {"side": side, "agent": "someone", "how": "key", "action": action}
    # A second key (the other agent, at the same moment) does nothing more.
    assert step(t, Ev.DECISION, 5.01, Decision("accept", "origin")) == []


@pytest.mark.parametrize("event, result, side", [
    (Ev.TARGET_FAILED, Result.CANCELLED, "target"),
    (Ev.AGENT_HUNG_UP, Result.ACCEPTED_BY_TARGET, "origin"),
    (Ev.CALLER_HUNG_UP, Result.CALLER_ABANDONED, "caller"),
])
def test_hang_ups_are_decisions(event, result, side):
    t = conference()
    cmds = step(t, event, 6, SAMPLE[event])
    assert records(cmds) == [result]
    assert t.decided_by["how"] == "hangup" and t.decided_by["side"] == side


def test_decisions_before_the_target_answers_mean_nothing_but_cancel():
    t = new("three_way")
    start(t, 0)
    assert step(t, Ev.DECISION, 1, Decision("accept", "origin")) == []
    cmds = step(t, Ev.DECISION, 2, Decision("cancel", "origin"))
    assert HangUp("T1-target") in cmds and records(cmds) == [Result.CANCELLED]


def test_origin_agent_leaving_early_turns_it_into_a_blind_transfer():
    t = new("three_way")
    start(t, 0)
    assert step(t, Ev.AGENT_HUNG_UP, 1) == [Ringback("caller-ch", True)]
    cmds = step(t, Ev.TARGET_FAILED, 2, TargetFailed("busy"))
    assert ReturnToOrigin("caller-ch", "12345-a1") in cmds
    t2 = new("three_way")
    start(t2, 0)
    step(t2, Ev.AGENT_HUNG_UP, 1)
    step(t2, Ev.TARGET_ANSWERED, 2, Answered())
    assert records(step(t2, Ev.BRIDGED, 2.1)) == [Result.ACCEPTED_BY_TARGET]


def test_restart_in_conference_keeps_it_or_decides_from_what_is_left():
    t = conference()
    assert step(t, Ev.RESTARTED, 9, Facts(True, True, True, True, agent_alive=True)) == []
    assert t.state == State.CONFERENCE
    assert records(step(t, Ev.RESTARTED, 9, Facts(True, True, True, True, agent_alive=False))) == \
        [Result.ACCEPTED_BY_TARGET]


def test_saved_state_is_every_field_and_a_copy():
    from dataclasses import asdict
    t = Transfer(transfer_id="t", call_id="c", hotline="12345", target="110", dial="PJSIP/110",
                 caller="ch", caller_number="138", agent="a", agent_leg="al",
                 decided_by={"side": "origin"}, steps={"requested": 1.0})
    saved = t.to_dict()
    assert saved == asdict(t)
    saved["steps"]["ringing"] = 2.0
    saved["decided_by"]["side"] = "target"
    assert t.steps == {"requested": 1.0} and t.decided_by == {"side": "origin"}


def test_a_transfer_that_continues_a_chain_names_it_and_its_hop():
    t = new()
    t.chain_id, t.chain_hop, t.previous_transfer = "T0", 2, "T0"
    [origin] = [c for c in start(t, now=100.0) if isinstance(c, Originate)]
    assert (origin.headers["X-Hotline-Chain-Id"], origin.headers["X-Hotline-Chain-Hop"]) == ("T0", "2")
    assert t.chain == {"id": "T0", "hop": 2, "previous": "T0"}
    first = new()
    assert first.chain == {"id": "T1", "hop": 1, "previous": None}
    assert "X-Hotline-Chain-Id" not in first.headers()


def test_the_chain_a_transfer_continues_comes_from_the_call_s_headers():
    assert chain_of({}) == (None, 1, None)
    assert chain_of({"X-Hotline-Transfer-Id": "T0"}) == ("T0", 2, "T0")
    assert chain_of({"X-Hotline-Transfer-Id": "T1", "X-Hotline-Chain-Id": "T0",
                     "X-Hotline-Chain-Hop": "2"}) == ("T0", 3, "T1")
    # Another PBX's headers: a hop that is no small positive number counts as 1, a long one stops.
    for bad in ("-5", "x", "0"):
        assert chain_of({"X-Hotline-Transfer-Id": "T1", "X-Hotline-Chain-Hop": bad})[1] == 2
    assert chain_of({"X-Hotline-Transfer-Id": "T1", "X-Hotline-Chain-Hop": "100000"})[1] == 100
