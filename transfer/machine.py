"""The one-key transfer as a pure state machine: events in, commands out, no I/O.

Rules (R1, R3, R4 of the requirements):

1. A transfer starts in DIALING. In a blind transfer the initiating agent is released at once;
   in an emergency transfer the agent stays with the caller. The caller hears ringback while the
   target (another platform, over the trunk) is dialled, and a ring timer runs.
2. The target answering moves to BRIDGING: the caller and the target leg are bridged. BRIDGED
   ends the transfer with result ``accepted``.
3. The target failing (busy, rejected, unreachable), or the ring timer firing, ends the transfer
   with the matching ``fallback_*`` result, and the caller is handed back to the origin hotline,
   preferring the agent who transferred (R3: the first receiver handles it). A timer firing on a
   target that never even rang means the target is unreachable, not unanswered.
4. The caller hanging up while the transfer is in progress cancels every other leg:
   ``caller_abandoned``.
5. Keys pressed while a transfer is in progress change nothing (one call, one transfer).
6. After an app restart the adapter reports what still exists (RESTARTED with facts); the machine
   finishes or falls back from there. DONE is final: every later event is ignored, so an outcome
   is recorded exactly once.

The transitions are data (``TRANSITIONS``); the table is also what the tests enumerate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Callable


class State(StrEnum):
    DIALING = "dialing"
    BRIDGING = "bridging"
    DONE = "done"


class Ev(StrEnum):
    TARGET_RINGING = "target_ringing"
    TARGET_ANSWERED = "target_answered"
    TARGET_FAILED = "target_failed"        # detail: busy | rejected | unreachable | no_answer
    BRIDGED = "bridged"
    BRIDGE_FAILED = "bridge_failed"        # detail: which leg is gone: caller | target
    CALLER_HUNG_UP = "caller_hung_up"
    RING_TIMEOUT = "ring_timeout"
    KEY = "key"                            # detail: the key sequence
    RESTARTED = "restarted"                # facts: Facts


class Result(StrEnum):
    ACCEPTED = "accepted"
    FALLBACK_BUSY = "fallback_busy"
    FALLBACK_NO_ANSWER = "fallback_no_answer"
    FALLBACK_REJECTED = "fallback_rejected"
    FALLBACK_UNREACHABLE = "fallback_unreachable"
    CALLER_ABANDONED = "caller_abandoned"
    CANCELLED = "cancelled"
    OUT_OF_SCOPE_GUIDED = "out_of_scope_guided"


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
    channel: str
    on: bool


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
class Record:
    result: Result


Command = ReleaseAgent | Ringback | Originate | Bridge | HangUp | StartTimer | CancelTimer | \
    ReturnToOrigin | Alert | Record


# --- the transfer ---------------------------------------------------------------------------------

@dataclass
class Facts:
    """What the adapter found on the PBX after a restart."""
    caller_alive: bool
    target_alive: bool
    target_up: bool
    bridged: bool          # caller and target already share a bridge


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
    mode: str = "blind"          # blind | emergency
    trigger: str = "dtmf"        # dtmf | refer | api
    category: str | None = None
    emergency: bool = False
    ring_timeout: float = 30.0
    target_leg: str = ""
    state: State = State.DIALING
    result: Result | None = None
    detail: str | None = None
    answered_by: str | None = None
    was_ringing: bool = False
    steps: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Transfer":
        data = dict(data)
        data["state"] = State(data["state"])
        data["result"] = Result(data["result"]) if data.get("result") else None
        return cls(**data)

    def headers(self) -> dict[str, str]:
        headers = {"X-Hotline-Transfer-Id": self.transfer_id, "X-Hotline-Origin": self.hotline}
        if self.category:
            headers["X-Hotline-Category"] = self.category
        if self.emergency:
            headers["X-Hotline-Emergency"] = "1"
        return headers


def start(t: Transfer, now: float) -> list[Command]:
    """Commands that begin a transfer in DIALING."""
    t.state = State.DIALING
    t.steps.setdefault("requested", now)
    t.steps["dialing"] = now
    t.target_leg = t.target_leg or f"{t.transfer_id}-target"
    cmds: list[Command] = []
    if t.emergency:
        cmds.append(Alert("emergency"))
    if t.mode == "blind" and t.agent_leg:
        cmds.append(ReleaseAgent(t.agent_leg))
        cmds.append(Ringback(t.caller, True))
    cmds += [
        Originate(t.target_leg, t.dial, t.caller_number, t.headers(), t.ring_timeout),
        StartTimer("ring", now + t.ring_timeout),
    ]
    return cmds


def _finish(t: Transfer, result: Result, now: float, detail: str | None = None) -> list[Command]:
    t.state = State.DONE
    t.result = result
    t.detail = detail or t.detail      # the adapter may have noted a cause already
    t.steps["ended"] = now
    return [CancelTimer("ring"), Record(result)]


def _fallback(t: Transfer, kind: str, now: float, detail: str | None = None) -> list[Command]:
    cmds: list[Command] = [HangUp(t.target_leg)]
    if t.mode == "blind":
        # The caller is handed back still hearing ringback; delivery owns the tones from here.
        cmds.append(ReturnToOrigin(t.caller, t.agent))
    return cmds + _finish(t, FAILURE_RESULTS[kind], now, detail)


def _ringing(t: Transfer, now: float, detail=None) -> list[Command]:
    if not t.was_ringing:
        t.was_ringing = True
        t.steps["ringing"] = now
    return []


def _answered(t: Transfer, now: float, detail=None) -> list[Command]:
    t.state = State.BRIDGING
    t.steps["answered"] = now
    t.answered_by = detail
    cmds: list[Command] = [CancelTimer("ring")]
    if t.mode == "blind":
        cmds.append(Ringback(t.caller, False))
    cmds.append(Bridge((t.caller, t.target_leg)))
    return cmds


def _failed(t: Transfer, now: float, detail=None) -> list[Command]:
    kind = detail if detail in FAILURE_RESULTS else "unreachable"
    return _fallback(t, kind, now)


def _timeout(t: Transfer, now: float, detail=None) -> list[Command]:
    return _fallback(t, "no_answer" if t.was_ringing else "unreachable", now)


def _caller_gone(t: Transfer, now: float, detail=None) -> list[Command]:
    return [HangUp(t.target_leg)] + _finish(t, Result.CALLER_ABANDONED, now)


def _bridged(t: Transfer, now: float, detail=None) -> list[Command]:
    t.steps["bridged"] = now
    return _finish(t, Result.ACCEPTED, now)


def _bridge_failed(t: Transfer, now: float, detail=None) -> list[Command]:
    if detail == "caller":
        return _caller_gone(t, now)
    # The target answered and vanished before we could bridge: as good as a rejection.
    return _fallback(t, "rejected", now, "target hung up before being bridged")


def _ignore(t: Transfer, now: float, detail=None) -> list[Command]:
    return []


def _restarted(t: Transfer, now: float, facts: Facts) -> list[Command]:
    if not facts.caller_alive:
        return _caller_gone(t, now)
    if facts.bridged:
        return _bridged(t, now)
    if facts.target_alive and facts.target_up:
        return _answered(t, now, t.answered_by)
    if facts.target_alive:
        return []           # still ringing: the adapter re-arms the ring timer from the record
    return _fallback(t, "unreachable", now, "target leg ended while the app was down")


Handler = Callable[[Transfer, float, object], list[Command]]

TRANSITIONS: dict[tuple[State, Ev], Handler] = {
    (State.DIALING, Ev.TARGET_RINGING): _ringing,
    (State.DIALING, Ev.TARGET_ANSWERED): _answered,
    (State.DIALING, Ev.TARGET_FAILED): _failed,
    (State.DIALING, Ev.BRIDGED): _ignore,
    (State.DIALING, Ev.BRIDGE_FAILED): _ignore,
    (State.DIALING, Ev.CALLER_HUNG_UP): _caller_gone,
    (State.DIALING, Ev.RING_TIMEOUT): _timeout,
    (State.DIALING, Ev.KEY): _ignore,
    (State.DIALING, Ev.RESTARTED): _restarted,
    (State.BRIDGING, Ev.TARGET_RINGING): _ignore,
    (State.BRIDGING, Ev.TARGET_ANSWERED): _ignore,
    (State.BRIDGING, Ev.TARGET_FAILED): lambda t, now, d: _bridge_failed(t, now, "target"),
    (State.BRIDGING, Ev.BRIDGED): _bridged,
    (State.BRIDGING, Ev.BRIDGE_FAILED): _bridge_failed,
    (State.BRIDGING, Ev.CALLER_HUNG_UP): _caller_gone,
    (State.BRIDGING, Ev.RING_TIMEOUT): _ignore,
    (State.BRIDGING, Ev.KEY): _ignore,
    (State.BRIDGING, Ev.RESTARTED): _restarted,
}


def step(t: Transfer, event: Ev, now: float, detail: object = None) -> list[Command]:
    """Apply one event; DONE ignores everything (an outcome is recorded exactly once)."""
    if t.state == State.DONE:
        return []
    return TRANSITIONS[(t.state, event)](t, now, detail)
