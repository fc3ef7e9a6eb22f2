"""Transfers and three-way calls as one pure state machine: events in, commands out, no I/O.

Modes: ``blind`` (one-key transfer, R1), ``three_way`` (R2) and ``emergency`` (a three-way call
to 110 with an immediate alert, R4).

Rules:

1. An attempt starts in DIALING. In a blind transfer the initiating agent is released at once and
   the caller hears ringback; in a three-way call the caller and the agent keep talking (the
   caller is never put on silence). The target (another platform, over the trunk) is dialled and
   a ring timer runs.
2. The target answering moves to BRIDGING: the target leg joins the caller's bridge. BRIDGED ends
   a blind transfer with ``accepted``; a three-way call moves to CONFERENCE and its bridge is
   recorded.
3. The target failing (busy, rejected, unreachable), or the ring timer firing, ends the attempt
   with the matching ``fallback_*`` result. A blind transfer hands the caller back to the origin
   hotline, preferring the agent who transferred (R3: the first receiver handles it); in a
   three-way call the agent is still there and hears an error tone. A timer firing on a target
   that never even rang means the target is unreachable, not unanswered.
4. In CONFERENCE either agent decides, by key: *accept* (my platform takes it: the other agent
   leaves), *leave* (I leave: the other platform takes it), *undecided* (the first receiver, the
   origin, takes it and syncs: ``undecided_first_receiver``), *cancel* (the target leaves: back to
   two parties). Hang-ups decide too: the target hanging up is a cancel, the origin agent hanging
   up means the target platform accepts. Decisions before the target answered mean nothing,
   except *cancel* by the origin agent.
5. The origin agent hanging up before the target answered turns a three-way call into a blind
   transfer: the caller hears ringback, and falls back to the origin hotline if need be.
6. The caller hanging up cancels every other leg: ``caller_abandoned``.
7. Keys that start an attempt change nothing while one is in progress (one call, one attempt).
8. After an app restart the adapter reports what still exists (RESTARTED with facts); the machine
   finishes, falls back or carries on from there. DONE is final: every later event is ignored, so
   an outcome is recorded exactly once.

The transitions are data (``TRANSITIONS``: (state, event) -> handler and the states it may move
to, checked at every step); the table is also what the tests enumerate. Each event's detail is a
typed dataclass (``DETAILS``). The adapter that feeds the machine is ``ari_app.transfers``; the
commands it returns are carried out by ``ari_app.interpreter``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Callable

from contracts import sip
from contracts.vocab import (CONFERENCE_MODES, AlertKind, DecidedHow, DecisionAction, Mode,
                             Result, Side)

# IllegalTransition is this machine's error too (re-exported).
from .table import IllegalTransition, Row, check_move, row as _row  # noqa: F401


class State(StrEnum):
    DIALING = "dialing"
    BRIDGING = "bridging"
    CONFERENCE = "conference"
    DONE = "done"


class Ev(StrEnum):
    """The events; ``DETAILS`` names the detail each one carries (None: none)."""
    TARGET_RINGING = "target_ringing"
    TARGET_ANSWERED = "target_answered"
    TARGET_FAILED = "target_failed"
    BRIDGED = "bridged"
    BRIDGE_FAILED = "bridge_failed"
    CALLER_HUNG_UP = "caller_hung_up"
    RING_TIMEOUT = "ring_timeout"
    KEY = "key"
    DECISION = "decision"
    AGENT_HUNG_UP = "agent_hung_up"        # the origin agent's leg ended
    RESTARTED = "restarted"
    RECORDING_FAILED = "recording_failed"  # the call goes on without it


DECISIONS = tuple(DecisionAction)


# --- event details ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Answered:
    """Who answered on the target platform (that platform tells us through Redis; None when
    it could not)."""
    agent: str | None = None


@dataclass(frozen=True)
class TargetFailed:
    """Why the target leg failed: its kind (a key of FAILURE_RESULTS; anything else counts as
    unreachable) and, for the record, what the PBX said."""
    kind: str
    why: str | None = None


@dataclass(frozen=True)
class BridgeFailed:
    """Joining the target leg to the caller's bridge failed; which of the two legs is gone."""
    gone: str                    # "caller" | "target"


@dataclass(frozen=True)
class Key:
    sequence: str                # e.g. "*1"


@dataclass(frozen=True)
class Decision:
    action: str                  # accept | leave | undecided | cancel
    side: str                    # origin | target
    agent: str | None = None


@dataclass(frozen=True)
class RecordingFailed:
    why: str


FAILURE_RESULTS = {
    "busy": Result.FALLBACK_BUSY,
    "rejected": Result.FALLBACK_REJECTED,
    "unreachable": Result.FALLBACK_UNREACHABLE,
    "no_answer": Result.FALLBACK_NO_ANSWER,
}


# --- commands (what the adapter must do) ----------------------------------------------------------

@dataclass(frozen=True)
class ReleaseAgent:
    """Hang up the initiating agent's leg without ending the caller's call."""
    channel: str


@dataclass(frozen=True)
class Ringback:
    """Ringback for the caller on or off. ``announce``: a prompt the caller hears first (a
    blind transfer's announcement of where the call goes), then ringback."""
    channel: str
    on: bool
    announce: str | None = None


@dataclass(frozen=True)
class Originate:
    leg: str
    dial: str
    caller_number: str
    headers: dict
    timeout: float


@dataclass(frozen=True)
class Bridge:
    channels: tuple[str, ...]


@dataclass(frozen=True)
class HangUp:
    channel: str


@dataclass(frozen=True)
class StartTimer:
    name: str
    deadline: float


@dataclass(frozen=True)
class CancelTimer:
    name: str


@dataclass(frozen=True)
class ReturnToOrigin:
    """Hand the caller back to the origin hotline's delivery, this agent first (R3)."""
    caller: str
    prefer_agent: str | None


@dataclass(frozen=True)
class Alert:
    kind: str


@dataclass(frozen=True)
class DropAgent:
    """The origin agent leaves a three-way call; caller and target stay together."""
    channel: str


@dataclass(frozen=True)
class StartRecording:
    name: str


@dataclass(frozen=True)
class StopRecording:
    name: str


@dataclass(frozen=True)
class Notify:
    """Play a short tone or prompt to one party (e.g. the agent whose three-way call failed)."""
    channel: str
    sound: str


@dataclass(frozen=True)
class Record:
    result: Result


Command = ReleaseAgent | Ringback | Originate | Bridge | HangUp | StartTimer | CancelTimer | \
    ReturnToOrigin | Alert | DropAgent | StartRecording | StopRecording | Notify | Record


# --- the transfer ---------------------------------------------------------------------------------

@dataclass
class Facts:
    """What the adapter found on the PBX after a restart."""
    caller_alive: bool
    target_alive: bool
    target_up: bool
    bridged: bool          # caller and target already share a bridge
    agent_alive: bool = True


Detail = Answered | TargetFailed | BridgeFailed | Key | Decision | RecordingFailed | Facts

# The detail each event carries; ``step`` refuses any other, so a handler can rely on its type.
DETAILS: dict[Ev, type | None] = {
    Ev.TARGET_RINGING: None,
    Ev.TARGET_ANSWERED: Answered,
    Ev.TARGET_FAILED: TargetFailed,
    Ev.BRIDGED: None,
    Ev.BRIDGE_FAILED: BridgeFailed,
    Ev.CALLER_HUNG_UP: None,
    Ev.RING_TIMEOUT: None,
    Ev.KEY: Key,
    Ev.DECISION: Decision,
    Ev.AGENT_HUNG_UP: None,
    Ev.RESTARTED: Facts,
    Ev.RECORDING_FAILED: RecordingFailed,
}


@dataclass
class Transfer:
    transfer_id: str
    call_id: str
    hotline: str                 # origin platform
    target: str                  # target id (e.g. "110", "119")
    dial: str
    caller: str                  # caller's channel id on the origin PBX
    caller_number: str
    agent: str | None            # initiating agent endpoint
    agent_leg: str | None
    mode: str = Mode.BLIND       # contracts.vocab.Mode
    trigger: str = "dtmf"        # dtmf | refer | api | screen
    category: str | None = None
    emergency: bool = False
    matter: dict | None = None     # what the desktop tagged the call with (matter.schema.json)
    # R6: the chain of transfers this one continues (the call came in by a transfer): its id
    # (the first hop's transfer id), this hop's number and the hop before. None: a first hop.
    chain_id: str | None = None
    chain_hop: int = 1
    previous_transfer: str | None = None
    ring_timeout: float = 30.0
    announce: str | None = None    # the prompt a blind transfer's caller hears first
    target_leg: str = ""
    state: State = State.DIALING
    result: Result | None = None
    detail: str | None = None
    answered_by: str | None = None
    was_ringing: bool = False
    agent_present: bool = True     # the origin agent is still on a three-way call
    recording: str | None = None
    decided_by: dict | None = None
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def conference(self) -> bool:
        return self.mode in CONFERENCE_MODES

    @property
    def agent_stays(self) -> bool:
        """The origin agent is with the caller while the target is dialled."""
        return self.conference and self.agent_present

    def to_dict(self) -> dict:
        # Every field is a plain value or a flat dict of them (the matter: replaced whole, never
        # changed in place): a shallow copy is the whole state.
        # (dataclasses.asdict deep-copies recursively: 16 % of the no-I/O replay's time, as the
        # state is saved after every step.)
        out = {name: getattr(self, name) for name in _TRANSFER_FIELDS}
        out["decided_by"] = dict(self.decided_by) if self.decided_by is not None else None
        out["steps"] = dict(self.steps)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Transfer":
        data = dict(data)
        data["state"] = State(data["state"])
        data["result"] = Result(data["result"]) if data.get("result") else None
        return cls(**data)

    def headers(self) -> dict[str, str]:
        headers = {sip.TRANSFER_ID: self.transfer_id, sip.ORIGIN: self.hotline,
                   sip.MODE: str(self.mode)}
        if self.category:
            headers[sip.CATEGORY] = self.category
        if self.emergency:
            headers[sip.EMERGENCY] = "1"
        if self.matter and self.matter.get("matter_id"):
            headers[sip.MATTER_ID] = self.matter["matter_id"]
        if self.chain_id:                 # a first hop's chain is its own transfer id: implied
            headers[sip.CHAIN_ID] = self.chain_id
            headers[sip.CHAIN_HOP] = str(self.chain_hop)
        return headers

    @property
    def chain(self) -> dict:
        """The record's view of the chain (R6)."""
        return {"id": self.chain_id or self.transfer_id, "hop": self.chain_hop,
                "previous": self.previous_transfer}


_TRANSFER_FIELDS = tuple(f.name for f in fields(Transfer))
MAX_HOPS = 99        # a chain longer than this is a loop or a forged header: counted no further


def chain_of(headers: dict[str, str]) -> tuple[str | None, int, str | None]:
    """R6: (chain id, hop, previous transfer id) for a transfer of a call that came in with
    these X-Hotline-* headers; (None, 1, None) for a call that did not come in by a transfer.
    The headers come from another PBX: a hop that is not a small positive number counts as 1."""
    previous = headers.get(sip.TRANSFER_ID)
    if not previous:
        return None, 1, None
    try:
        before = min(max(int(headers.get(sip.CHAIN_HOP) or 1), 1), MAX_HOPS)
    except ValueError:
        before = 1
    return headers.get(sip.CHAIN_ID) or previous, before + 1, previous


def out_of_scope(transfer_id: str, call_id: str, hotline: str, caller: str, caller_number: str,
                 agent: str | None, agent_leg: str | None, trigger: str, now: float) -> Transfer:
    """The agent's out-of-scope key: no transfer, only a record that the caller was told where
    to turn (R5). It is done the moment it exists."""
    return Transfer(transfer_id=transfer_id, call_id=call_id, hotline=hotline, target="",
                    dial="", caller=caller, caller_number=caller_number, agent=agent,
                    agent_leg=agent_leg, mode=Mode.NONE, trigger=trigger, state=State.DONE,
                    result=Result.OUT_OF_SCOPE_GUIDED, steps={"requested": now, "ended": now})


def start(t: Transfer, now: float) -> list[Command]:
    """Commands that begin a transfer in DIALING."""
    t.state = State.DIALING
    t.steps.setdefault("requested", now)
    t.steps["dialing"] = now
    t.target_leg = t.target_leg or f"{t.transfer_id}-target"
    cmds: list[Command] = []
    if t.emergency:
        cmds.append(Alert(AlertKind.EMERGENCY))
    if not t.conference:
        if t.agent_leg:
            cmds.append(ReleaseAgent(t.agent_leg))
        # (no agent: a screened caller, R9). The announcement plays while the target is dialled,
        # so it adds nothing to the time until the target rings.
        cmds.append(Ringback(t.caller, True, t.announce))
    cmds += [
        Originate(t.target_leg, t.dial, t.caller_number, t.headers(), t.ring_timeout),
        StartTimer("ring", now + t.ring_timeout),
    ]
    return cmds


def add_history(t: Transfer, stored: Transfer) -> None:
    """``t`` was carried on from its trace (the transfer as it began) after a restart into a
    Redis that did not answer; ``stored`` is what Redis held when it did. Its steps' times are
    the true ones (the restart timed what it found anew) and it may know who answered."""
    t.steps = {**t.steps, **stored.steps}
    t.answered_by = t.answered_by or stored.answered_by
    t.was_ringing = t.was_ringing or stored.was_ringing


def _finish(t: Transfer, result: Result, now: float, detail: str | None = None) -> list[Command]:
    t.state = State.DONE
    t.result = result
    t.detail = detail or t.detail      # the adapter may have noted a cause already
    t.steps["ended"] = now
    return [CancelTimer("ring"), Record(result)]


def _fallback(t: Transfer, kind: str, now: float, detail: str | None = None) -> list[Command]:
    cmds: list[Command] = [HangUp(t.target_leg)]
    if t.agent_stays:
        if t.agent_leg:
            cmds.append(Notify(t.agent_leg, "beeperr"))
    else:
        if t.announce:
            # The announcement's playback (prompt, then its ringing tone) gives way to the
            # PBX's ringback, which delivery stops when an agent answers.
            cmds += [Ringback(t.caller, False), Ringback(t.caller, True)]
        # The caller is handed back still hearing ringback; delivery owns the tones from here.
        cmds.append(ReturnToOrigin(t.caller, t.agent))
    return cmds + _finish(t, FAILURE_RESULTS[kind], now, detail)


def _ringing(t: Transfer, now: float, detail=None) -> list[Command]:
    if not t.was_ringing:
        t.was_ringing = True
        t.steps["ringing"] = now
    return []


def _answered(t: Transfer, now: float, answered: Answered) -> list[Command]:
    t.state = State.BRIDGING
    t.steps["answered"] = now
    t.answered_by = answered.agent
    cmds: list[Command] = [CancelTimer("ring")]
    if not t.agent_stays:
        cmds.append(Ringback(t.caller, False))
    cmds.append(Bridge((t.caller, t.target_leg)))
    return cmds


def _failed(t: Transfer, now: float, failed: TargetFailed) -> list[Command]:
    kind = failed.kind if failed.kind in FAILURE_RESULTS else "unreachable"
    return _fallback(t, kind, now, failed.why)


def _timeout(t: Transfer, now: float, detail=None) -> list[Command]:
    return _fallback(t, "no_answer" if t.was_ringing else "unreachable", now)


def _caller_gone(t: Transfer, now: float, detail=None) -> list[Command]:
    return [HangUp(t.target_leg)] + _finish(t, Result.CALLER_ABANDONED, now)


def _bridged(t: Transfer, now: float, detail=None) -> list[Command]:
    t.steps["bridged"] = now
    if not t.conference:
        return _finish(t, Result.ACCEPTED, now)
    if not t.agent_present:
        # The origin agent left before the target answered: the target platform has it.
        t.decided_by = {"side": Side.ORIGIN, "agent": t.agent, "how": DecidedHow.HANGUP}
        return _finish(t, Result.ACCEPTED_BY_TARGET, now)
    t.state = State.CONFERENCE
    t.steps["conference"] = now
    t.recording = recording_of(t)
    return [StartRecording(t.recording)]


def recording_of(t: Transfer) -> str:
    """The name of a three-way call's recording (it begins with the conference)."""
    return f"threeway-{t.transfer_id}"


def found_in_conference(t: Transfer) -> None:
    """``t`` is carried on from its trace (as it began: DIALING) and its recording is live: it
    had become a conference before the restart, which RESTARTED then goes on from (a hang-up
    meanwhile is a decision, and the recording is stopped)."""
    t.state = State.CONFERENCE
    t.recording = recording_of(t)


def _decided(t: Transfer, result: Result, now: float, decided_by: dict,
             cmds: list[Command]) -> list[Command]:
    t.decided_by = decided_by
    if t.recording:
        cmds = [StopRecording(t.recording)] + cmds
    return cmds + _finish(t, result, now)


def _decision(t: Transfer, now: float, d: Decision) -> list[Command]:
    by = {"side": d.side, "agent": d.agent, "how": DecidedHow.KEY, "action": d.action}
    if (d.action, d.side) in (("accept", "origin"), ("leave", "target")):
        return _decided(t, Result.ACCEPTED_BY_ORIGIN, now, by, [HangUp(t.target_leg)])
    if (d.action, d.side) in (("accept", "target"), ("leave", "origin")):
        return _decided(t, Result.ACCEPTED_BY_TARGET, now, by,
                        [DropAgent(t.agent_leg)] if t.agent_leg else [])
    if d.action == "undecided":
        return _decided(t, Result.UNDECIDED_FIRST_RECEIVER, now, by, [HangUp(t.target_leg)])
    if d.action == "cancel":
        return _decided(t, Result.CANCELLED, now, by, [HangUp(t.target_leg)])
    return []


def _decision_while_dialing(t: Transfer, now: float, d: Decision) -> list[Command]:
    if t.agent_stays and d.action == "cancel" and d.side == "origin":
        by = {"side": Side.ORIGIN, "agent": d.agent, "how": DecidedHow.KEY,
              "action": DecisionAction.CANCEL}
        return _decided(t, Result.CANCELLED, now, by, [HangUp(t.target_leg)])
    return []


def _agent_gone_early(t: Transfer, now: float, detail=None) -> list[Command]:
    if not t.agent_stays:
        return []
    t.agent_present = False
    return [Ringback(t.caller, True)] if t.state == State.DIALING else []


def _conference_target_gone(t: Transfer, now: float, detail=None) -> list[Command]:
    by = {"side": Side.TARGET, "agent": t.answered_by, "how": DecidedHow.HANGUP}
    return _decided(t, Result.CANCELLED, now, by, [])


def _conference_agent_gone(t: Transfer, now: float, detail=None) -> list[Command]:
    t.agent_present = False
    by = {"side": Side.ORIGIN, "agent": t.agent, "how": DecidedHow.HANGUP}
    return _decided(t, Result.ACCEPTED_BY_TARGET, now, by, [])


def _conference_caller_gone(t: Transfer, now: float, detail=None) -> list[Command]:
    by = {"side": Side.CALLER, "agent": None, "how": DecidedHow.HANGUP}
    return _decided(t, Result.CALLER_ABANDONED, now, by, [HangUp(t.target_leg)])


def _bridge_failed(t: Transfer, now: float, failed: BridgeFailed) -> list[Command]:
    if failed.gone == "caller":
        return _caller_gone(t, now)
    # The target answered and vanished before we could bridge: as good as a rejection.
    return _fallback(t, "rejected", now, "target hung up before being bridged")


def _ignore(t: Transfer, now: float, detail=None) -> list[Command]:
    return []


def _restarted(t: Transfer, now: float, facts: Facts) -> list[Command]:
    if t.state == State.CONFERENCE:
        if not facts.caller_alive:
            return _conference_caller_gone(t, now)
        if not facts.target_alive:
            return _conference_target_gone(t, now)
        if not facts.agent_alive:
            return _conference_agent_gone(t, now)
        return []           # still three parties: keys work again
    if not facts.caller_alive:
        return _caller_gone(t, now)
    cmds: list[Command] = []
    if t.agent_stays and not facts.agent_alive:
        # The agent left a three-way call before the far side answered while the app was
        # away: a blind transfer now (rule 5), whose caller hears ringback.
        t.agent_present = False
        if not facts.bridged:
            cmds.append(Ringback(t.caller, True))
    if facts.bridged:
        return cmds + _bridged(t, now)
    if facts.target_alive and facts.target_up:
        return cmds + _answered(t, now, Answered(t.answered_by))
    if facts.target_alive:
        # Still ringing: after a restart the ring timer died with the old process (after a
        # reconnect the adapter replaces it); either way it keeps its first deadline.
        return cmds + [StartTimer("ring", t.steps.get("dialing", now) + t.ring_timeout)]
    return cmds + _fallback(t, "unreachable", now, "target leg ended while the app was down")


def _recording_failed(t: Transfer, now: float, failed: RecordingFailed) -> list[Command]:
    """The three-way part is not recorded; the call goes on, and the record says why."""
    t.recording = None
    t.detail = f"recording failed: {failed.why}"
    return []


def _target_gone_while_bridging(t: Transfer, now: float, failed: TargetFailed) -> list[Command]:
    return _bridge_failed(t, now, BridgeFailed("target"))


Handler = Callable[[Transfer, float, Detail | None], list[Command]]




# (state, event) -> (handler, possible next states). DONE has no row: it ignores everything.
TRANSITIONS: dict[tuple[State, Ev], Row] = {
    (State.DIALING, Ev.TARGET_RINGING): _row(_ringing, State.DIALING),
    (State.DIALING, Ev.TARGET_ANSWERED): _row(_answered, State.BRIDGING),
    (State.DIALING, Ev.TARGET_FAILED): _row(_failed, State.DONE),
    (State.DIALING, Ev.BRIDGED): _row(_ignore, State.DIALING),
    (State.DIALING, Ev.BRIDGE_FAILED): _row(_ignore, State.DIALING),
    (State.DIALING, Ev.CALLER_HUNG_UP): _row(_caller_gone, State.DONE),
    (State.DIALING, Ev.RING_TIMEOUT): _row(_timeout, State.DONE),
    (State.DIALING, Ev.KEY): _row(_ignore, State.DIALING),
    (State.DIALING, Ev.DECISION): _row(_decision_while_dialing, State.DIALING, State.DONE),
    (State.DIALING, Ev.AGENT_HUNG_UP): _row(_agent_gone_early, State.DIALING),
    (State.DIALING, Ev.RESTARTED): _row(_restarted, State.DIALING, State.BRIDGING,
                                             State.CONFERENCE, State.DONE),
    (State.DIALING, Ev.RECORDING_FAILED): _row(_ignore, State.DIALING),
    (State.BRIDGING, Ev.TARGET_RINGING): _row(_ignore, State.BRIDGING),
    (State.BRIDGING, Ev.TARGET_ANSWERED): _row(_ignore, State.BRIDGING),
    (State.BRIDGING, Ev.TARGET_FAILED): _row(_target_gone_while_bridging, State.DONE),
    (State.BRIDGING, Ev.BRIDGED): _row(_bridged, State.CONFERENCE, State.DONE),
    (State.BRIDGING, Ev.BRIDGE_FAILED): _row(_bridge_failed, State.DONE),
    (State.BRIDGING, Ev.CALLER_HUNG_UP): _row(_caller_gone, State.DONE),
    (State.BRIDGING, Ev.RING_TIMEOUT): _row(_ignore, State.BRIDGING),
    (State.BRIDGING, Ev.KEY): _row(_ignore, State.BRIDGING),
    (State.BRIDGING, Ev.DECISION): _row(_ignore, State.BRIDGING),
    (State.BRIDGING, Ev.AGENT_HUNG_UP): _row(_agent_gone_early, State.BRIDGING),
    (State.BRIDGING, Ev.RESTARTED): _row(_restarted, State.DIALING, State.BRIDGING,
                                              State.CONFERENCE, State.DONE),
    (State.BRIDGING, Ev.RECORDING_FAILED): _row(_ignore, State.BRIDGING),
    (State.CONFERENCE, Ev.TARGET_RINGING): _row(_ignore, State.CONFERENCE),
    (State.CONFERENCE, Ev.TARGET_ANSWERED): _row(_ignore, State.CONFERENCE),
    (State.CONFERENCE, Ev.TARGET_FAILED): _row(_conference_target_gone, State.DONE),
    (State.CONFERENCE, Ev.BRIDGED): _row(_ignore, State.CONFERENCE),
    (State.CONFERENCE, Ev.BRIDGE_FAILED): _row(_ignore, State.CONFERENCE),
    (State.CONFERENCE, Ev.CALLER_HUNG_UP): _row(_conference_caller_gone, State.DONE),
    (State.CONFERENCE, Ev.RING_TIMEOUT): _row(_ignore, State.CONFERENCE),
    (State.CONFERENCE, Ev.KEY): _row(_ignore, State.CONFERENCE),
    (State.CONFERENCE, Ev.DECISION): _row(_decision, State.CONFERENCE, State.DONE),
    (State.CONFERENCE, Ev.AGENT_HUNG_UP): _row(_conference_agent_gone, State.DONE),
    (State.CONFERENCE, Ev.RESTARTED): _row(_restarted, State.CONFERENCE, State.DONE),
    (State.CONFERENCE, Ev.RECORDING_FAILED): _row(_recording_failed, State.CONFERENCE),
}


def step(t: Transfer, event: Ev, now: float, detail: Detail | None = None) -> list[Command]:
    """Apply one event; DONE ignores everything (an outcome is recorded exactly once)."""
    expected = DETAILS[event]
    if not (isinstance(detail, expected) if expected is not None else detail is None):
        raise TypeError(f"{event} carries {expected.__name__ if expected else 'no detail'}, "
                        f"not {type(detail).__name__}")
    if t.state == State.DONE:
        return []
    row = TRANSITIONS[(t.state, event)]
    before = t.state
    cmds = row.handler(t, now, detail)
    check_move(row, before, event, t.state)
    return cmds
