"""The delivery state machine without a PBX: every (state, event) pair, agent choice, and the
commands each step asks for."""

from __future__ import annotations

import itertools

import pytest

from contracts import sip
from transfer import delivery as dm
from transfer.delivery import (
    CALL_EVENTS, DESK, DESK_EVENTS, DETAILS, IGNORED, TRANSITIONS, AddToBridge, AgentsSeen,
    Answer, Arrival, Attempt, CallState, CreateBridge, DeleteBridge, Desk, Done, Ev, Failed,
    HangUp, ListAgents, Publish, RingAgent, Ringback, StartMOH, StopMOH, StopRingback,
)

AGENTS = ("a1", "a2", "a3")
TRANSFER_HEADERS = {"X-Hotline-Transfer-Id": "T1", "X-Hotline-Origin": "110",
                    "X-Hotline-Mode": "blind"}


def desk(free=AGENTS) -> Desk:
    ids = (f"{i:08x}" for i in itertools.count(1))
    d = Desk(agents=AGENTS, agent_ring=4.0, no_agent_retry=1.0, new_id=lambda: next(ids))
    dm.step(d, Ev.AGENTS_SEEN, 0, AgentsSeen(frozenset(free)))
    return d


def flat(cmds) -> list:
    """The commands with each attempt's steps in line (what the interpreter would request)."""
    out = []
    for c in cmds:
        out += flat(c.steps) if isinstance(c, Attempt) else [c]
    return out


def of(cmds, kind) -> list:
    return [c for c in flat(cmds) if isinstance(c, kind)]


def attempt(cmds) -> Attempt:
    (a,) = [c for c in cmds if isinstance(c, Attempt)]
    return a


def arrive(d: Desk, caller="c1", now=1.0, headers=None, **kw) -> list:
    return dm.step(d, Ev.ARRIVED, now, Arrival(caller, "13800138000", f"L-{caller}",
                                                headers or {}, role_set=False, **kw))


def succeed(d: Desk, cmds, now=1.0, bridge="B1") -> list:
    """Play the interpreter when every request succeeds: feed each attempt's ``then``."""
    out = []
    for c in cmds:
        out.append(c)
        if isinstance(c, Attempt) and c.then is not None:
            made = bridge if any(isinstance(s, CreateBridge) for s in c.steps) else None
            out += succeed(d, dm.step(d, c.then, now, Done(c.caller, c.leg, made)), now, bridge)
    return out


def connected(d: Desk, caller="c1", now=1.0) -> dm.Call:
    succeed(d, arrive(d, caller, now), now)
    call = d.calls[caller]
    succeed(d, dm.step(d, Ev.AGENT_ANSWERED, now + 1, dm.Leg(caller, call.agent_leg)), now + 1)
    assert call.state == CallState.CONNECTED
    return call


def detached(d: Desk, transfer_id: str = "T1") -> dm.Call:
    """A connected call whose agent started a blind transfer and was released from it."""
    call = connected(d)
    dm.step(d, Ev.TRANSFER_STARTED, 3, dm.TransferNote(call.caller, transfer_id))
    dm.step(d, Ev.DETACH, 3, dm.Detach(call.caller))
    return call


# --- the table -----------------------------------------------------------------------------

def test_every_call_state_and_event_is_in_the_table_or_explicitly_ignored():
    for pair in itertools.product(CallState, CALL_EVENTS):
        assert (pair in TRANSITIONS) != (pair in IGNORED), pair
    assert set(TRANSITIONS) | set(IGNORED) == set(itertools.product(CallState, CALL_EVENTS))
    assert set(DESK_EVENTS) == set(DESK) and set(DETAILS) == set(CALL_EVENTS)
    for pair, row in TRANSITIONS.items():
        assert row.next and row.next <= set(CallState), pair
    for pair, why in IGNORED.items():
        assert why, pair


def test_ignored_pairs_change_nothing():
    d = desk()
    call = connected(d)
    before = (call.state, call.agent_leg, call.remote_leg, call.bridge, dict(d.legs))
    assert (CallState.CONNECTED, Ev.RING_FAILED) in IGNORED
    assert dm.step(d, Ev.RING_FAILED, 5, Failed("c1", call.agent_leg, Answer("c1"), "x")) == []
    assert (call.state, call.agent_leg, call.remote_leg, call.bridge, dict(d.legs)) == before


def _in_state(state: CallState, transferred: bool) -> tuple[Desk, dm.Call | None]:
    """A desk with caller c1 in ``state`` (ENDED: known once, gone now)."""
    d = desk(free=("a1",) if state != CallState.WAITING else ())
    headers = TRANSFER_HEADERS if transferred else {}
    if state == CallState.WAITING and transferred:
        d = desk(free=("a1",))
        succeed(d, arrive(d, headers=headers))
        call = d.calls["c1"]
        dm.step(d, Ev.CHANNEL_GONE, 2, dm.Gone(call.agent_leg, 19))    # no answer: waits
        assert call.state == CallState.WAITING
        return d, call
    succeed(d, arrive(d, headers=headers, hold=state == CallState.TRANSFERRING))
    call = d.calls.get("c1")
    if state == CallState.CONNECTED:
        succeed(d, dm.step(d, Ev.AGENT_ANSWERED, 2, dm.Leg("c1", call.agent_leg)))
    if state == CallState.ENDED:
        dm.step(d, Ev.CHANNEL_GONE, 2, dm.Gone("c1"))
        return d, None
    assert call.state == state
    return d, call


def _details(event: Ev, call: dm.Call | None) -> list:
    """Details that take the event's handler down its branches."""
    leg = (call.agent_leg if call else None) or "c1-leg"
    return {
        Ev.CALLER_GONE: [Done("c1")],
        Ev.AGENT_LEG_GONE: [dm.LegGone("c1", leg, cause) for cause in (0, 17, 21)],
        Ev.REMOTE_LEG_GONE: [dm.LegGone("c1", (call.remote_leg if call else None) or "r")],
        Ev.AGENT_ANSWERED: [dm.Leg("c1", leg), dm.Leg("c1", "someone-else")],
        Ev.AGENT_BRIDGE_READY: [Done("c1", leg, "B9"), Done("c1", leg, None)],
        Ev.AGENT_BRIDGED: [Done("c1", leg)],
        Ev.CONNECT_FAILED: [Failed("c1", leg, AddToBridge("B", ()), "gone", alive)
                            for alive in (frozenset({"c1"}), frozenset({leg}), frozenset())],
        Ev.RING_FAILED: [Failed("c1", leg, s, "x") for s in (Ringback("c1"), StopMOH("c1"))],
        Ev.HELD: [Done("c1")],
        Ev.ADOPT_BRIDGE_READY: [Done("c1", leg, "B9")],
        Ev.ADOPTED: [Done("c1", leg)],
        Ev.ADOPT_FAILED: [Failed("c1", leg, CreateBridge("x"), "x", alive)
                          for alive in (frozenset({"c1"}), frozenset({leg}),
                                        frozenset({"c1", leg}))],
        Ev.RELEASE_HOLD: [dm.CallRef("c1")],
        Ev.TRANSFER_STARTED: [dm.TransferNote("c1", "T9")],
        Ev.TRANSFER_RESUMED: [dm.TransferNote("c1", "T9", blind) for blind in (True, False)],
        Ev.DETACH: [dm.Detach("c1"), dm.Detach("c1", 2.0)],
        Ev.RINGBACK_SET: [dm.Tone("c1", True), dm.Tone("c1", False)],
        Ev.BRIDGE_MADE: [dm.BridgeNote("c1", "B9")],
        Ev.REMOTE_JOINED: [dm.RemoteJoined("c1", "r1", "T9")],
        Ev.DROP_AGENT: [dm.CallRef("c1")],
        Ev.RETURNED: [dm.Returned("c1", "a1"), dm.Returned("c1", None)],
        Ev.TRANSFER_ENDED: [dm.RemoteJoined("c1", "r1"), dm.RemoteJoined("c1", None)],
        Ev.CALLER_KEY: [dm.CallerKey("c1", k) for k in ("1", "9", "#")],
        Ev.PROMPT_DONE: [dm.PromptDone("c1", "prompt-c1-menu"), dm.PromptDone("c1", "other")],
    }[event]


@pytest.mark.parametrize("state, event", sorted(TRANSITIONS, key=str))
def test_each_row_moves_only_to_the_states_it_declares(state, event):
    for transferred in (False, True):
        for detail in _details(event, _in_state(state, transferred)[1]):
            d, call = _in_state(state, transferred)
            dm.step(d, event, 9.0, detail)          # raises IllegalTransition otherwise
            now = d.calls["c1"].state if "c1" in d.calls else CallState.ENDED
            assert now in TRANSITIONS[(state, event)].next, (state, event, detail, now)


def test_a_handler_that_leaves_its_declared_states_is_caught(monkeypatch):
    d, call = _in_state(CallState.CONNECTED, False)
    monkeypatch.setitem(TRANSITIONS, (CallState.CONNECTED, Ev.CALLER_GONE),
                        dm.Row(TRANSITIONS[(CallState.CONNECTED, Ev.CALLER_GONE)].handler,
                               frozenset({CallState.CONNECTED})))
    with pytest.raises(dm.IllegalTransition):
        dm.step(d, Ev.CALLER_GONE, 5, Done("c1"))


def test_each_event_takes_only_its_own_detail_type():
    d = desk()
    for event in Ev:
        with pytest.raises(TypeError):
            dm.step(d, event, 1, "c1")


# --- arrival and agent choice ----------------------------------------------------------------

def test_a_caller_is_answered_and_the_longest_idle_agent_rung_with_ringback():
    d = desk()
    d.idle_since.update({"a1": 50.0, "a2": 10.0, "a3": 30.0})
    cmds = succeed(d, arrive(d, now=60.0), 60.0)
    requests = [c for c in flat(cmds) if not isinstance(c, (dm.Log, Publish, dm.CallNote))]
    assert requests[:2] == [dm.SetVar("c1", "HOTLINE_ROLE", "caller"), Answer("c1")]
    ring = of(cmds, RingAgent)[0]
    assert ring.agent == "a2" and ring.leg == "L-c1-a2-00000001" and ring.timeout == 4
    assert ring.variables["HOTLINE_CALLER"] == "c1"
    assert Ringback("c1") in flat(cmds)
    assert [p.kind for p in of(cmds, Publish)] == ["agent_ringing"]
    call = d.calls["c1"]
    assert (call.state, call.agent, call.answered, call.ringing) == \
        (CallState.RINGING, "a2", True, True)
    assert d.reserved == {"a2"} and d.legs == {ring.leg: ("c1", "agent")}


def test_callers_are_served_in_arrival_order_and_never_used_agents_first():
    d = desk(free=("a1", "a2"))
    d.idle_since["a1"] = 5.0
    succeed(d, arrive(d, "c1", 1.0), 1.0)
    succeed(d, arrive(d, "c2", 2.0), 2.0)
    assert (d.calls["c1"].agent, d.calls["c2"].agent) == ("a2", "a1")


def test_no_free_agent_means_music_on_hold_and_a_new_round_after_no_agent_retry():
    d = desk(free=("a1",))
    succeed(d, arrive(d), 1.0)
    call = d.calls["c1"]
    cmds = succeed(d, dm.step(d, Ev.CHANNEL_GONE, 5.0, dm.Gone(call.agent_leg, 19)), 5.0)
    # a1 was tried this round: the caller holds, ringback off, music on.
    assert [c for c in flat(cmds) if isinstance(c, (StopRingback, StartMOH))] == \
        [StopRingback("c1"), StartMOH("c1")]
    assert (call.state, call.holding, call.held_since, call.tried) == \
        (CallState.WAITING, True, 5.0, {"a1"})
    assert succeed(d, dm.step(d, Ev.TICK, 5.5, dm.Tick()), 5.5) == []    # too early
    cmds = succeed(d, dm.step(d, Ev.TICK, 6.0, dm.Tick()), 6.0)
    assert flat(cmds)[0] == StopMOH("c1") and of(cmds, RingAgent)[0].agent == "a1"
    assert call.state == CallState.RINGING and not call.holding


def test_a_transfer_s_trace_is_on_the_caller_s_channel_before_its_name():
    """The instance after a kill -9 reads a transfer Redis never took from its caller's
    channel: whenever the channel names a transfer, the trace is there already."""
    d = desk()
    call = connected(d)
    cmds = dm.step(d, Ev.TRANSFER_STARTED, 3, dm.TransferNote(call.caller, "T1", trace="{}"))
    names = [c.name for c in flat(cmds) if isinstance(c, dm.SetVar)]
    assert names.index(dm.TRACE_VAR) < names.index(dm.TRANSFER_VAR), names
    assert [c.value for c in flat(cmds) if isinstance(c, dm.SetVar)][0] == "{}"


def test_a_caller_handed_back_while_still_talking_to_the_agent_stays_with_the_agent():
    """After a restart a transfer is carried on from how it began: one whose agent the old
    process never released fails, and its caller must not be put back in the queue."""
    d = desk()
    call = connected(d)
    dm.step(d, Ev.TRANSFER_STARTED, 3, dm.TransferNote(call.caller, "T1"))
    agent, leg = call.agent, call.agent_leg
    cmds = succeed(d, dm.step(d, Ev.RETURNED, 9, dm.Returned("c1", agent)), 9)
    assert call.state == CallState.CONNECTED and (call.agent, call.agent_leg) == (agent, leg)
    assert not of(cmds, RingAgent) and call.transfer_id is None


def test_a_caller_handed_back_tries_the_transferring_agent_first():
    d = desk()
    call = detached(d)
    first = call.agents[0]
    assert call.state == CallState.TRANSFERRING and call.agent is None
    cmds = succeed(d, dm.step(d, Ev.RETURNED, 9, dm.Returned("c1", first)), 9)
    assert of(cmds, RingAgent)[0].agent == first
    assert not of(cmds, Ringback)                # the transfer left ringback playing
    assert call.transfer_id is None and call.prefer == first


def test_a_transferred_caller_with_no_free_agent_is_refused_busy_without_being_answered():
    d = desk(free=())
    cmds = arrive(d, headers=TRANSFER_HEADERS)
    assert HangUp("c1", reason="busy") in flat(cmds) and not of(cmds, Answer)
    assert "c1" not in d.calls


def test_a_transferred_caller_rings_unanswered_and_a_declining_agent_rejects_it():
    d = desk()
    cmds = succeed(d, arrive(d, headers=TRANSFER_HEADERS))
    call = d.calls["c1"]
    assert not of(cmds, Answer) and not call.answered and call.ringing
    ring = of(cmds, RingAgent)[0]
    assert ring.variables["PJSIP_HEADER(add,X-Hotline-Transfer-Id)"] == "T1"
    cmds = dm.step(d, Ev.CHANNEL_GONE, 3, dm.Gone(call.agent_leg, dm.CAUSE_REJECTED))
    assert HangUp("c1", reason="rejected") in flat(cmds) and "c1" not in d.calls


def test_without_device_states_the_pbx_is_asked_and_its_answer_dispatches():
    d = desk()
    dm.step(d, Ev.AGENTS_SEEN, 0, AgentsSeen(None))
    cmds = succeed(d, arrive(d))
    assert cmds[-1] == ListAgents()
    cmds = dm.step(d, Ev.AGENTS_LISTED, 1, AgentsSeen(frozenset({"a3"})))
    assert of(cmds, RingAgent)[0].agent == "a3"


def test_an_agent_becoming_free_is_offered_to_the_waiting_caller():
    d = desk(free=())
    succeed(d, arrive(d))
    assert d.calls["c1"].holding
    assert dm.step(d, Ev.DEVICE_STATE, 2, dm.DeviceState("PJSIP/a2", "INUSE")) == []
    cmds = dm.step(d, Ev.DEVICE_STATE, 3, dm.DeviceState("PJSIP/a2", "NOT_INUSE"))
    assert of(cmds, RingAgent)[0].agent == "a2"


# --- connecting and ending -------------------------------------------------------------------

def test_agent_answer_quiets_the_caller_makes_the_bridge_then_bridges_both():
    d = desk()
    succeed(d, arrive(d))
    call = d.calls["c1"]
    leg = call.agent_leg
    cmds = dm.step(d, Ev.AGENT_ANSWERED, 2, dm.Leg("c1", leg))
    first = attempt(cmds)
    assert first.steps == (StopRingback("c1"), CreateBridge("call-L-c1")) and \
        first.probe == ("c1", leg)
    second = attempt(dm.step(d, first.then, 2, Done("c1", leg, "B7")))
    # The agent's keys (and the caller's) reach the app, not the other party's ear.
    assert second.steps == (AddToBridge("B7", ("c1", leg), absorb_dtmf=True),)
    cmds = dm.step(d, second.then, 2.5, Done("c1", leg))
    assert call.state == CallState.CONNECTED and call.bridge == "B7"
    assert [p.kind for p in of(cmds, Publish)] == ["agent_connected"]


@pytest.mark.parametrize("mode, absorbed", [("three_way", False), ("emergency", False),
                                            ("blind", True)])
def test_only_the_other_platforms_three_way_call_lets_its_agents_keys_cross(mode, absorbed):
    # There the far agent's decision keys must cross the trunk to the origin, which absorbs them.
    d = desk()
    succeed(d, arrive(d))
    call = d.calls["c1"]
    call.headers.update({sip.TRANSFER_ID: "t1", sip.MODE: mode})
    leg = call.agent_leg
    first = attempt(dm.step(d, Ev.AGENT_ANSWERED, 2, dm.Leg("c1", leg)))
    second = attempt(dm.step(d, first.then, 2, Done("c1", leg, "B7")))
    assert second.steps == (AddToBridge("B7", ("c1", leg), absorb_dtmf=absorbed),)


def test_a_stray_agent_answer_is_hung_up():
    d = desk()
    assert dm.step(d, Ev.AGENT_ANSWERED, 1, dm.Leg("gone", "leg9")) == [HangUp("leg9")]


def test_bridging_failure_tries_the_next_agent_or_ends_the_call():
    d = desk()
    succeed(d, arrive(d))
    call = d.calls["c1"]
    leg = call.agent_leg
    cmds = dm.step(d, Ev.CONNECT_FAILED, 3, Failed("c1", leg, AddToBridge("B", ()), "gone",
                                                   frozenset({"c1"})))
    assert HangUp(leg) in flat(cmds) and call.state == CallState.RINGING and call.agent_leg != leg
    cmds = dm.step(d, Ev.CONNECT_FAILED, 4, Failed("c1", call.agent_leg, Answer("c1"), "gone",
                                                   frozenset()))
    assert HangUp("c1") in flat(cmds) and "c1" not in d.calls


def test_a_ring_that_cannot_be_placed_frees_the_agent_and_the_caller_waits():
    d = desk()
    succeed(d, arrive(d))
    call = d.calls["c1"]
    agent, leg = call.agent, call.agent_leg
    dm.step(d, Ev.RING_FAILED, 2, Failed("c1", leg, Ringback("c1"), "no"))
    assert (call.state, call.agent, call.ringing) == (CallState.WAITING, None, False)
    assert agent not in d.reserved and leg not in d.legs and d.idle_since[agent] == 2


def test_the_caller_hanging_up_ends_every_leg_and_the_bridge_once():
    d = desk()
    call = connected(d)
    dm.step(d, Ev.REMOTE_JOINED, 4, dm.RemoteJoined("c1", "r1", "T1"))
    cmds = dm.step(d, Ev.CHANNEL_GONE, 5, dm.Gone("c1"))
    assert [c for c in flat(cmds) if isinstance(c, (HangUp, DeleteBridge))] == [
        HangUp(call.agent_leg), HangUp("r1"), HangUp("c1"), DeleteBridge("B1")]
    assert d.calls == {} and d.legs == {} and d.reserved == set()
    assert call.state == CallState.ENDED


def test_one_party_left_after_a_transfer_keeps_the_call_two_parties_or_ends_it():
    d = desk()
    call = connected(d)
    dm.step(d, Ev.REMOTE_JOINED, 4, dm.RemoteJoined("c1", "r1"))
    dm.step(d, Ev.CHANNEL_GONE, 5, dm.Gone(call.agent_leg))
    assert call.state == CallState.CONNECTED and call.agent is None
    cmds = dm.step(d, Ev.CHANNEL_GONE, 6, dm.Gone("r1"))
    assert HangUp("c1") in flat(cmds) and "c1" not in d.calls


def test_a_refer_release_hangs_the_agent_up_after_the_grace():
    d = desk()
    call = connected(d)
    leg = call.agent_leg
    cmds = dm.step(d, Ev.DETACH, 5, dm.Detach("c1", 2.0))
    assert cmds == [dm.CallNote(d.calls["c1"]), dm.RemoveFromBridge("B1", "c1"),
                    HangUp(leg, after=2.0)]


def test_a_queue_call_handed_over_is_bridged_then_its_key_runs():
    d = desk()
    cmds = dm.step(d, Ev.ADOPT, 1, dm.Adoption("c1", "139", "L1", "leg1", "a2", "transfer"))
    first = attempt(cmds)
    assert first.steps[-1] == CreateBridge("call-L1") and "a2" in d.reserved
    cmds = succeed(d, cmds, bridge="B3")
    assert dm.KeyAction("c1", "transfer") in cmds and d.calls["c1"].bridge == "B3"
    assert d.pending_keys == {}


def test_a_queue_call_handed_over_keeps_the_queues_arrival_and_answer():
    d = desk()
    dm.step(d, Ev.ADOPT, 100, dm.Adoption("c1", "139", "L1", "leg1", "a2", "transfer",
                                          waited_s=30, answered_s=12))
    call = d.calls["c1"]
    assert (call.arrived, call.agent_at, call.queued) == (70, 88, True)
    # A clock that disagrees (an answer "before" the arrival) is held to the arrival.
    dm.step(d, Ev.ADOPT, 100, dm.Adoption("c2", "139", "L2", "leg2", "a1", "transfer",
                                          waited_s=5, answered_s=9))
    assert d.calls["c2"].agent_at == d.calls["c2"].arrived == 95


def test_reconcile_ends_what_is_gone_and_takes_back_what_is_bridged():
    d = desk()
    call = connected(d)
    channels = ({"id": "x1", "state": "Up", "name": "PJSIP/c-1", "linkedid": "LX",
                 "caller": {"number": "139"}, "channelvars": {"HOTLINE_ROLE": "caller"}},
                {"id": "x1-agent", "state": "Up", "name": "PJSIP/a3-1",
                 "channelvars": {"HOTLINE_ROLE": "agent", "HOTLINE_AGENT": "a3",
                                 "HOTLINE_CALLER": "x1"}})
    bridges = ({"id": "BX", "name": "call-LX", "channels": ["x1", "x1-agent"]},
               {"id": "B-empty", "name": "call-old", "channels": []})
    cmds = dm.step(d, Ev.RECONCILE, 9, dm.Found(channels, bridges, {}))
    assert HangUp("c1") in flat(cmds) and call.state == CallState.ENDED
    found = d.calls["x1"]
    assert (found.state, found.agent, found.bridge) == (CallState.CONNECTED, "a3", "BX")
    assert DeleteBridge("B-empty") in flat(cmds) and DeleteBridge("BX") not in flat(cmds)


def test_the_arrival_of_a_caller_found_at_reconnect_is_the_same_call():
    """The instance (re)connects while a caller is entering: it finds the channel in the list
    and offers it, then the caller's StasisStart arrives. Seen in the lab: taken as a new
    arrival it was offered again and the agent already ringing was cut."""
    d = desk()
    waiting = ({"id": "w1", "state": "Up", "name": "PJSIP/c-1", "linkedid": "LW",
                "caller": {"number": "138"}, "channelvars": {"HOTLINE_ROLE": "caller"}},)
    first = flat(dm.step(d, Ev.RECONCILE, 9, dm.Found(waiting, (), {})))
    found = d.calls["w1"]
    assert found.recovered and found.state == CallState.RINGING
    rung = [c for c in first if isinstance(c, dm.RingAgent)]
    again = flat(dm.step(d, Ev.ARRIVED, 9.1, Arrival("w1", "138", "LW", {}, role_set=True)))
    assert d.calls["w1"] is found and found.state == CallState.RINGING
    assert not [c for c in again if isinstance(c, (dm.RingAgent, dm.HangUp, dm.Answer))]
    assert len(rung) == 1


def test_reconcile_ends_an_agent_left_alone_in_a_call_bridge_and_the_bridge():
    """The caller hung up while no instance watched: the agent's leg stays in the call's
    bridge. Both go, not only the leg (the bridge would be left over for good)."""
    d = desk()
    channels = ({"id": "y1-agent", "state": "Up", "name": "PJSIP/a2-1",
                 "channelvars": {"HOTLINE_ROLE": "agent", "HOTLINE_AGENT": "a2",
                                 "HOTLINE_CALLER": "y1"}},)
    bridges = ({"id": "BY", "name": "call-LY", "channels": ["y1-agent"]},)
    cmds = flat(dm.step(d, Ev.RECONCILE, 9, dm.Found(channels, bridges, {})))
    assert HangUp("y1-agent") in cmds and DeleteBridge("BY") in cmds


def test_reconcile_keeps_a_caller_alone_in_its_call_with_a_transfer_in_flight():
    """A three-way call's agent hung up while no instance watched, before the far agent
    answered: the caller is alone in the call's bridge, and its channel names the transfer.
    It waits for the far agent out of the bridge; before, it was hung up as a call left with
    only the caller."""
    d = desk()
    channels = ({"id": "z1", "state": "Up", "name": "PJSIP/c-1", "linkedid": "LZ",
                 "caller": {"number": "139"},
                 "channelvars": {"HOTLINE_ROLE": "caller", dm.TRANSFER_VAR: "T7"}},)
    bridges = ({"id": "BZ", "name": "call-LZ", "channels": ["z1"]},)
    cmds = flat(dm.step(d, Ev.RECONCILE, 9, dm.Found(channels, bridges, {})))
    found = d.calls["z1"]
    assert (found.state, found.transfer_id, found.bridge) == (CallState.TRANSFERRING, "T7", "BZ")
    assert dm.RemoveFromBridge("BZ", "z1") in cmds
    assert HangUp("z1") not in cmds and DeleteBridge("BZ") not in cmds


def test_music_that_could_not_start_is_tried_again_at_the_next_offer():
    d = desk(free=())
    arrival = attempt(arrive(d))
    moh = attempt(dm.step(d, arrival.then, 1.0, Done("c1")))   # answered; nobody is free
    assert moh.steps == (StartMOH("c1"),) and moh.failed is None
    # The interpreter got an error for StartMOH, so no HELD: the caller is not on hold ...
    assert not d.calls["c1"].holding
    # ... and the next offer asks for the music again.
    assert StartMOH("c1") in flat(dm.step(d, Ev.TICK, 2.0, dm.Tick()))
    succeed(d, [attempt(dm.step(d, Ev.TICK, 3.0, dm.Tick()))], 3.0)
    assert d.calls["c1"].holding and d.calls["c1"].held_since == 3.0


# --- live gauges -----------------------------------------------------------------------------

def test_gauges_count_waiting_callers_their_longest_wait_and_agents_by_state():
    d = Desk(agents=AGENTS, agent_ring=4.0, no_agent_retry=1.0, new_id=lambda: "x")
    assert dm.gauges(d, 0).agents_free is None          # nothing known before the first look
    dm.step(d, Ev.AGENTS_SEEN, 0, AgentsSeen(frozenset({"a1"}), online=frozenset({"a1", "a2"})))
    g = dm.gauges(d, 0)
    assert (g.agents_free, g.agents_busy, g.agents_offline, g.waiting) == (1, 1, 1, 0)
    succeed(d, arrive(d, "c1", now=10.0), 10.0)           # a1 rings for c1
    succeed(d, arrive(d, "c2", now=12.0), 12.0)           # nobody left: c2 holds
    g = dm.gauges(d, 15.0)
    assert (g.waiting, g.longest_wait_s, g.calls) == (2, 5.0, 2)
    assert (g.agents_free, g.agents_busy, g.agents_offline) == (0, 2, 1)
    call = d.calls["c1"]
    succeed(d, dm.step(d, Ev.AGENT_ANSWERED, 16.0, dm.Leg("c1", call.agent_leg)), 16.0)
    g = dm.gauges(d, 20.0)
    assert (g.waiting, g.longest_wait_s) == (1, 8.0)      # c2 only, since 12
    # a3 registers (its device state says so), then a2 logs off.
    dm.step(d, Ev.DEVICE_STATE, 21.0, dm.DeviceState("PJSIP/a3", "NOT_INUSE"))
    dm.step(d, Ev.DEVICE_STATE, 21.0, dm.DeviceState("PJSIP/a2", "UNAVAILABLE"))
    g = dm.gauges(d, 21.0)
    assert g.agents_offline == 1 and g.agents_free + g.agents_busy + g.agents_offline == 3


def test_a_caller_handed_back_after_a_failed_transfer_waits_again_from_the_hand_back():
    d = desk()
    call = detached(d)
    assert dm.gauges(d, 5).waiting == 0                   # with the other platform's ringing
    dm.step(d, Ev.RETURNED, 30.0, dm.Returned(call.caller, prefer="a1"))
    assert dm.gauges(d, 32.0).longest_wait_s == 2.0


# --- emergencies (R4) ------------------------------------------------------------------------

EMERGENCY_HEADERS = {**TRANSFER_HEADERS, "X-Hotline-Origin": "12345",
                     "X-Hotline-Mode": "emergency", "X-Hotline-Emergency": "1"}


def ringing_legs(cmds) -> dict[str, str]:
    return {r.leg: r.agent for r in of(cmds, RingAgent)}


def test_an_emergency_rings_every_free_agent_and_the_first_to_answer_takes_it():
    d = desk()
    cmds = succeed(d, arrive(d, headers=EMERGENCY_HEADERS))
    call = d.calls["c1"]
    legs = ringing_legs(cmds)
    assert sorted(legs.values()) == list(AGENTS) and not of(cmds, Answer)
    assert d.reserved == set(AGENTS) and dm.gauges(d, 1).agents_free == 0
    second = next(leg for leg, a in legs.items() if a == "a2")
    cmds = succeed(d, dm.step(d, Ev.AGENT_ANSWERED, 3, dm.Leg("c1", second)), 3)
    others = {leg for leg in legs if leg != second}
    assert {h.channel for h in of(cmds, HangUp)} == others
    assert all(h.reason == "answered_elsewhere" for h in of(cmds, HangUp))
    assert of(cmds, Answer) == [Answer("c1")]
    assert (call.state, call.agent, call.agent_leg, call.offers) == \
        (CallState.CONNECTED, "a2", second, {})
    assert d.reserved == {"a2"} and all(leg not in d.legs for leg in others)
    # The legs hung up end later: nothing of theirs reaches the call.
    for leg in others:
        assert dm.step(d, Ev.CHANNEL_GONE, 4, dm.Gone(leg, 26)) == []
    assert call.state == CallState.CONNECTED


def test_an_emergency_with_every_agent_busy_is_not_refused_and_goes_before_older_callers():
    d = desk(free=())
    succeed(d, arrive(d, "c0", now=0.5))                       # an ordinary caller, first
    cmds = succeed(d, arrive(d, "c1", now=1.0, headers=EMERGENCY_HEADERS))
    assert not of(cmds, HangUp) and "c1" in d.calls and not of(cmds, Answer)
    assert d.calls["c1"].ringing                                # the origin hears ringback
    cmds = dm.step(d, Ev.DEVICE_STATE, 5, dm.DeviceState("PJSIP/a2", "NOT_INUSE"))
    [ring] = of(cmds, RingAgent)
    assert (ring.agent, ring.caller) == ("a2", "c1")            # the emergency, not c0
    cmds = dm.step(d, Ev.DEVICE_STATE, 6, dm.DeviceState("PJSIP/a3", "NOT_INUSE"))
    [ring] = of(cmds, RingAgent)                                # a3 frees: it rings too
    assert (ring.agent, ring.caller) == ("a3", "c1") and len(d.calls["c1"].offers) == 1


def test_an_agent_declining_an_emergency_stops_only_that_phone():
    d = desk(free=("a1", "a2"))
    legs = ringing_legs(succeed(d, arrive(d, headers=EMERGENCY_HEADERS)))
    call = d.calls["c1"]
    first = call.agent_leg
    cmds = dm.step(d, Ev.CHANNEL_GONE, 2, dm.Gone(first, dm.CAUSE_REJECTED))
    assert not of(cmds, HangUp) and "c1" in d.calls
    [other] = [leg for leg in legs if leg != first]
    assert (call.state, call.agent_leg, call.offers) == (CallState.RINGING, other, {})
    assert d.reserved == {legs[other]}
    # The last phone does not answer either: the emergency waits on, and rings again.
    cmds = dm.step(d, Ev.CHANNEL_GONE, 6, dm.Gone(other, 19))
    assert "c1" in d.calls and d.calls["c1"].state == CallState.WAITING
    cmds = succeed(d, dm.step(d, Ev.TICK, 8, dm.Tick()), 8)
    assert sorted(ringing_legs(cmds).values()) == ["a1", "a2"]


def test_the_caller_leaving_an_emergency_stops_every_phone():
    d = desk()
    legs = ringing_legs(succeed(d, arrive(d, headers=EMERGENCY_HEADERS)))
    cmds = dm.step(d, Ev.CHANNEL_GONE, 2, dm.Gone("c1", 16))
    assert set(legs) <= {h.channel for h in of(cmds, HangUp)}
    assert not d.reserved and not d.legs and "c1" not in d.calls


# --- the surge plan (R8) -----------------------------------------------------------------------

def surge_desk(free=("a1",)) -> Desk:
    d = Desk(agents=AGENTS, agent_ring=4.0, no_agent_retry=1.0, new_id=lambda: "x",
             surge_plan=dm.SurgePlan(waiting=2, longest_wait=30.0, calm_after=5.0,
                                     overflow=("o1",)))
    dm.step(d, Ev.AGENTS_SEEN, 0, AgentsSeen(frozenset(free) | {"o1"},
                                             online=frozenset(AGENTS) | {"o1"}))
    return d


def test_a_surge_brings_the_overflow_seats_in_and_ends_after_a_calm_spell():
    d = surge_desk()
    succeed(d, arrive(d, "c1", now=1.0), 1.0)           # a1 rings: c1 does not hold
    succeed(d, arrive(d, "c2", now=2.0), 2.0)           # c2 holds: one is not a surge
    assert not of(dm.step(d, Ev.TICK, 2.5, dm.Tick()), dm.Surge)
    assert d.calls["c2"].agent is None and not d.surge
    succeed(d, arrive(d, "c3", now=2.8), 2.8)
    cmds = succeed(d, dm.step(d, Ev.TICK, 3.0, dm.Tick()), 3.0)   # two holding: surge
    [surge] = of(cmds, dm.Surge)
    assert (surge.on, surge.waiting, surge.overflow) == (True, 3, ("o1",))
    assert [r.agent for r in of(cmds, RingAgent)] == ["o1"]       # c2 goes to the seat
    assert d.calls["c2"].agent == "o1" and dm.gauges(d, 3.0).surge
    # Both answered, c3 alone holds (under both thresholds): the surge ends after 5 calm seconds.
    for caller, now in (("c1", 4.0), ("c2", 4.0)):
        succeed(d, dm.step(d, Ev.AGENT_ANSWERED, now, dm.Leg(caller, d.calls[caller].agent_leg)),
                now)
    assert not of(dm.step(d, Ev.TICK, 5.0, dm.Tick()), dm.Surge)
    assert not of(dm.step(d, Ev.TICK, 9.0, dm.Tick()), dm.Surge)
    [end] = of(dm.step(d, Ev.TICK, 10.5, dm.Tick()), dm.Surge)
    assert (end.on, end.lasted_s) == (False, 7.5) and not d.surge
    # The seat finishes its call; afterwards no caller is given to it.
    dm.step(d, Ev.CHANNEL_GONE, 11.0, dm.Gone("c2", 16))
    assert "o1" not in dm.free_agents(d)


def test_one_caller_waiting_too_long_starts_a_surge_too():
    d = surge_desk(free=())
    succeed(d, arrive(d, "c1", now=0.0), 0.0)
    assert not of(dm.step(d, Ev.TICK, 29.0, dm.Tick()), dm.Surge)
    cmds = succeed(d, dm.step(d, Ev.TICK, 30.5, dm.Tick()), 30.5)
    assert of(cmds, dm.Surge)[0].longest_wait_s == 30.5
    assert [r.agent for r in of(cmds, RingAgent)] == ["o1"]


def menu_desk() -> Desk:
    d = Desk(agents=AGENTS, agent_ring=4.0, no_agent_retry=1.0, new_id=lambda: "x",
             surge_plan=dm.SurgePlan(waiting=1, longest_wait=30.0, calm_after=5.0, overflow=(),
                                     menu_after=10.0, menu="menu", answers={"1": "faq-1"},
                                     callback_key="9", callback_done="callback-ok"))
    dm.step(d, Ev.AGENTS_SEEN, 0, AgentsSeen(frozenset(), online=frozenset(AGENTS)))
    return d


def test_a_caller_holding_in_a_surge_hears_the_menu_an_answer_and_music_again():
    d = menu_desk()
    succeed(d, arrive(d, "c1", now=0.0), 0.0)                      # nobody free: holds
    dm.step(d, Ev.TICK, 1.0, dm.Tick())                             # the surge starts
    call = d.calls["c1"]
    assert d.surge and call.holding and not dm.step(d, Ev.CALLER_KEY, 2, dm.CallerKey("c1", "9"))
    cmds = dm.step(d, Ev.TICK, 10.5, dm.Tick())
    assert of(cmds, StopMOH) and of(cmds, dm.Play)[0].prompts == ("menu",)
    assert not dm.step(d, Ev.TICK, 11.5, dm.Tick())                # offered once
    cmds = dm.step(d, Ev.CALLER_KEY, 12, dm.CallerKey("c1", "1"))
    assert of(cmds, dm.StopPlay) and of(cmds, dm.Play)[0].prompts == ("faq-1",)
    assert not dm.step(d, Ev.PROMPT_DONE, 13, dm.PromptDone("c1", "prompt-c1-menu"))  # stopped
    cmds = dm.step(d, Ev.PROMPT_DONE, 15, dm.PromptDone("c1", call.prompt))
    assert [s for a in cmds if isinstance(a, Attempt) for s in a.steps] == [StartMOH("c1")]
    # An agent frees while a prompt plays: the prompt stops, the agent rings.
    dm.step(d, Ev.CALLER_KEY, 16, dm.CallerKey("c1", "1"))
    cmds = dm.step(d, Ev.DEVICE_STATE, 17, dm.DeviceState("PJSIP/a1", "NOT_INUSE"))
    assert of(cmds, dm.StopPlay) and of(cmds, RingAgent) and call.prompt is None


def test_a_call_back_request_ends_the_call_after_the_goodbye_and_is_recorded_as_such():
    d = menu_desk()
    succeed(d, arrive(d, "c1", now=0.0), 0.0)
    dm.step(d, Ev.TICK, 1.0, dm.Tick())
    dm.step(d, Ev.TICK, 10.5, dm.Tick())
    cmds = dm.step(d, Ev.CALLER_KEY, 12, dm.CallerKey("c1", "9"))
    [end] = of(cmds, dm.CallEnded)
    assert end.disposition == "callback" and end.ended_by == "caller"
    assert of(cmds, dm.StopPlay) == [dm.StopPlay("prompt-c1-menu")]     # the menu stops
    assert of(cmds, dm.Play)[0] == dm.Play("c1", ("callback-ok",), "goodbye-c1")
    assert HangUp("c1", after=dm.GOODBYE_MAX) in flat(cmds)
    assert "c1" not in d.calls


def test_an_emergency_nobody_takes_rings_the_emergency_seats_after_their_delay():
    d = Desk(agents=AGENTS, agent_ring=4.0, no_agent_retry=1.0, new_id=lambda: "x",
             emergency_seats=("s1",), emergency_after=15.0)
    dm.step(d, Ev.AGENTS_SEEN, 0, AgentsSeen(frozenset({"s1"}), online=frozenset({*AGENTS, "s1"})))
    succeed(d, arrive(d, "c0", now=0.0), 0.0)                 # an ordinary caller: never the seat
    succeed(d, arrive(d, "c1", now=1.0, headers=EMERGENCY_HEADERS), 1.0)
    assert not of(dm.step(d, Ev.TICK, 15.0, dm.Tick()), RingAgent)
    [ring] = of(succeed(d, dm.step(d, Ev.TICK, 16.5, dm.Tick()), 16.5), RingAgent)
    assert (ring.agent, ring.caller) == ("s1", "c1")
    assert d.calls["c0"].agent is None


def test_the_answering_agent_hears_the_whisper_then_the_caller_is_bridged():
    d = desk()
    d.whisper = {"110": "whisper-110"}
    succeed(d, arrive(d, headers=TRANSFER_HEADERS))             # origin 110
    call = d.calls["c1"]
    cmds = dm.step(d, Ev.AGENT_ANSWERED, 3, dm.Leg("c1", call.agent_leg))
    assert of(cmds, dm.Play) == [dm.Play(call.agent_leg, ("whisper-110",), "prompt-c1-whisper")]
    assert not of(cmds, Answer) and not of(cmds, CreateBridge)    # the caller still rings
    cmds = dm.step(d, Ev.PROMPT_DONE, 4.5, dm.PromptDone("c1", "prompt-c1-whisper"))
    assert of(cmds, Answer) == [Answer("c1")] and of(cmds, CreateBridge)


def test_an_agent_leaving_during_the_whisper_lets_the_next_one_hear_it_too():
    d = desk()
    d.whisper = {"110": "whisper-110"}
    succeed(d, arrive(d, headers=TRANSFER_HEADERS))
    call = d.calls["c1"]
    first = call.agent_leg
    dm.step(d, Ev.AGENT_ANSWERED, 3, dm.Leg("c1", first))
    dm.step(d, Ev.CHANNEL_GONE, 3.5, dm.Gone(first, 16))           # hung up while it played
    assert call.prompt is None and not call.whispered
    succeed(d, dm.step(d, Ev.TICK, 5, dm.Tick()), 5)
    cmds = dm.step(d, Ev.AGENT_ANSWERED, 6, dm.Leg("c1", call.agent_leg))
    assert of(cmds, dm.Play)


def test_numbers_are_said_from_digit_prompts():
    assert dm.say_number(0) == ("num-0",) and dm.say_number(10) == ("num-10",)
    assert dm.say_number(13) == ("num-10", "num-3")
    assert dm.say_number(20) == ("num-2", "num-10")
    assert dm.say_number(47) == ("num-4", "num-10", "num-7")
    assert dm.say_number(250) == dm.say_number(99)


def test_a_holding_caller_hears_its_place_in_line_and_the_expected_wait_during_a_surge():
    d = Desk(agents=AGENTS, agent_ring=4.0, no_agent_retry=1.0, new_id=lambda: "x",
             surge_plan=dm.SurgePlan(waiting=2, longest_wait=60.0, calm_after=5.0, overflow=(),
                                     position_every=30.0))
    dm.step(d, Ev.AGENTS_SEEN, 0, AgentsSeen(frozenset(), online=frozenset(AGENTS)))
    for i, caller in enumerate(("c1", "c2", "c3")):
        succeed(d, arrive(d, caller, now=float(i)), float(i))
    cmds = dm.step(d, Ev.TICK, 3.0, dm.Tick())                 # the surge starts
    plays = {p.channel: p.prompts for p in of(cmds, dm.Play)}
    # c3 has two ahead; 3 callers x 180 s over 3 agents: 3 minutes.
    assert plays["c3"] == ("queue-ahead", "num-2", "queue-people", "num-3", "queue-minutes")
    assert plays["c1"][1] == "num-0"
    assert not of(dm.step(d, Ev.TICK, 4.0, dm.Tick()), dm.Play)   # not over itself, not again


def test_a_transferred_caller_brings_its_matter_and_a_forged_id_is_not_used():
    headers = {"X-Hotline-Transfer-Id": "T1", "X-Hotline-Origin": "12345",
               "X-Hotline-Matter-Id": "ab" * 16}
    cmds = arrive(desk(), headers=headers)
    assert dm.CarryMatter("ab" * 16, "L-c1") in cmds
    forged = arrive(desk(), headers={**headers, "X-Hotline-Matter-Id": "x}:*"})
    assert not [c for c in forged if isinstance(c, dm.CarryMatter)]
    assert not [c for c in arrive(desk()) if isinstance(c, dm.CarryMatter)]
