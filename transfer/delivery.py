"""Agent delivery as a pure state machine: who gets the caller, when an agent is tried next, what
waits, what rings, what is bridged, when the call ends. Events in, commands out, no I/O.

Rules:

* A caller is answered at once and hears ringback while an agent rings, music on hold while no
  agent is free. Callers are served in arrival order.
* A *transferred* caller (an inbound trunk call carrying ``X-Hotline-Transfer-Id``) is not answered
  until one of our agents answers: the platform that transferred it must see busy, no answer or
  rejection as such, and falls back on its side (R3). With no free agent at all it is refused as
  busy; an agent declining it (603) rejects the transfer; otherwise agents are tried in turn until
  the other side gives up. The agent's phone gets the ``X-Hotline-*`` headers.
* An *emergency* (a transferred caller with ``X-Hotline-Emergency: 1``: the ``*3`` call, R4) is
  never refused: it waits ahead of every other caller, rings every free agent at once (the
  first to answer takes it, the others stop ringing) and every agent who frees up while it rings;
  one agent declining or not answering only stops that phone.
* A free agent is one of the hotline's agents that is registered (endpoint online), has no channel
  on the PBX and is not being rung by us (known from the phones' device states, ``DEVICE_STATE``;
  until the first look after a connect, from the PBX's endpoint listing, ``ListAgents``); the one
  idle longest is chosen, except that a caller handed back after a failed transfer tries the
  agent who transferred it first (``choose``).
* An agent who does not answer within ``agent_ring`` (or is busy, or rejects) is skipped and the
  next free agent is tried; when every free agent was tried, the caller holds and the round
  starts again after ``no_agent_retry``.
* Caller and agent meet in a ``mixing,dtmf_events`` bridge (DTMF events carry the agents' keys).
  A call has at most one local agent leg and one remote leg (the other platform, after a
  transfer). The call ends, every leg hung up and the bridge destroyed, when the caller hangs up
  or when no party but the caller is left.
* While the transfer machine (``transfer.machine``) owns a call's fate, it tells this machine what
  changed for the call (``TRANSFER_*``, ``DETACH``, ``RETURNED``, ...): ``Call`` is written here
  only, in the handlers below.

One machine serves a hotline (``Desk``): agent choice spans its calls. Each call is in a
``CallState``; an event about a call is handled by ``TRANSITIONS[(state, event)]`` (a handler and
the states it may leave the call in, checked at every step) or is listed in ``IGNORED``; the
events about the whole hotline (arrivals, ticks, agents' states, reconnects) by ``DESK_EVENTS``.

Requests whose outcome decides what comes next are grouped in an ``Attempt``: the interpreter
runs its steps in order and answers with the attempt's ``then`` event (all went well) or its
``failed`` event (which step failed, which channels still exist). Everything else is carried out
as given. How to follow a call: ``ari_app/app.py`` (the ARI event's handler) ->
``ari_app/delivery.py`` (the event's facts) -> ``step`` here -> commands ->
``ari_app/interpreter.py`` (ARI requests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Callable

from contracts import sip
from contracts.sip import HEADERS
from contracts.vocab import CONFERENCE_MODES, Disposition, EndedBy, LiveEvent

# IllegalTransition is this machine's error too (re-exported).
from .table import IllegalTransition, Row, check_move, row as _row  # noqa: F401

AGENT, REMOTE = "agent", "remote"
# ISDN causes of a leg that ended (ChannelDestroyed.cause).
CAUSE_BUSY, CAUSE_REJECTED = 17, 21
TRUNK_PREFIX = "PJSIP/trunk-"          # channel names of calls from the other platform


class CallState(StrEnum):
    WAITING = "waiting"              # no agent: ringback or music on hold
    RINGING = "ringing"              # an agent's phone rings for this caller
    CONNECTED = "connected"          # with an agent and/or the other platform
    TRANSFERRING = "transferring"    # the transfer machine has it (blind, screened)
    ENDED = "ended"                  # every leg hung up; the desk forgot it


WAITING, RINGING, CONNECTED, TRANSFERRING, ENDED = CallState


@dataclass
class Call:
    caller: str                 # caller's channel id
    number: str                 # caller's number (personal data: masked in logs)
    call_id: str                # Asterisk linkedid, stable across every leg of the call
    arrived: float
    state: CallState = WAITING
    answered: bool = False
    agent: str | None = None    # endpoint name of the agent rung or connected
    agent_leg: str | None = None
    agent_since: float = 0.0
    remote_leg: str | None = None
    bridge: str | None = None
    tried: set[str] = field(default_factory=set)
    prefer: str | None = None   # agent to try first (the one who transferred, on fall-back)
    holding: bool = False       # music on hold playing
    ringing: bool = False       # ringback playing
    held_since: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)   # X-Hotline-* of a transferred call
    transfer_id: str | None = None                           # a transfer of ours in progress
    # For the call record (CallEnded): when an agent of ours first talked with the caller, who
    # did, the transfers made from the call, whether the other platform joined it and whether
    # the caller was last left with it; ``recovered``: rebuilt after a restart or takeover, so
    # ``arrived`` and ``agent_at`` are when this instance found the call.
    agent_at: float | None = None
    agents: list[str] = field(default_factory=list)
    transfers: list[str] = field(default_factory=list)
    remote_joined: bool = False
    handed_off: bool = False
    recovered: bool = False
    queued: bool = False        # the centre's Queue() delivered it; a key handed it to us
    returned_at: float = 0.0    # handed back after a failed transfer: waits again from then
    # The surge plan's self-service menu (R8): the playback the caller hears now (its id), the
    # menu offered once, and a call-back asked for.
    prompt: str | None = None
    menu_offered: bool = False
    callback: bool = False
    whispered: bool = False     # the answering agent heard the whisper (or there is none)
    position_at: float | None = None   # when its place in line was last announced
    # An emergency's other ringing legs (leg -> agent) beside ``agent_leg``: every free agent
    # rings at once; the first to answer becomes ``agent_leg``, the rest are hung up.
    offers: dict[str, str] = field(default_factory=dict)

    @property
    def transferred_in(self) -> bool:
        return sip.TRANSFER_ID in self.headers

    @property
    def emergency(self) -> bool:
        return self.transferred_in and self.headers.get(sip.EMERGENCY) == "1"

    @property
    def keys_cross(self) -> bool:
        """Whether its parties' keys must reach the other side of the bridge: only in the other
        platform's three-way call, whose agents' decision keys cross the trunk to the origin."""
        return self.headers.get(sip.MODE) in CONFERENCE_MODES


@dataclass
class Desk:
    """One hotline's delivery: its calls and what is known of its agents."""
    agents: tuple[str, ...]                          # in configuration order
    agent_ring: float
    no_agent_retry: float
    new_id: Callable[[], str]                        # unique ids for agent legs (hex)
    calls: dict[str, Call] = field(default_factory=dict)            # by caller channel id
    legs: dict[str, tuple[str, str]] = field(default_factory=dict)  # leg -> (caller, role)
    reserved: set[str] = field(default_factory=set)  # agents we ring or have connected
    idle_since: dict[str, float] = field(default_factory=dict)      # when their last call ended
    # Agent -> free (registered, no call) as the PBX last said, kept current by device-state
    # events; None until the first look after a (re)connect: then each delivery asks the PBX.
    agent_free: dict[str, bool] | None = None
    # Of the agents not free, those whose phone is not registered (device state UNAVAILABLE):
    # for the live gauges only, which tell "busy" from "logged off".
    offline: set[str] = field(default_factory=set)
    # Queue() calls being adopted -> the key action to run once they are ours.
    pending_keys: dict[str, str] = field(default_factory=dict)
    # The surge plan (R8): extra seats that join the pool while too many callers wait.
    surge_plan: "SurgePlan | None" = None
    # R4: seats an emergency is offered to as well once it has waited ``emergency_after`` s.
    emergency_seats: tuple[str, ...] = ()
    emergency_after: float = 0.0
    # What the agent who answers a transferred call hears before the caller is bridged: a
    # prompt by origin hotline ("emergency": for an emergency). Empty: no whisper.
    whisper: dict[str, str] = field(default_factory=dict)
    # Talk time of the calls that ended, smoothed: the expected wait's unit (s).
    talk_avg: float = 180.0
    surge: bool = False
    surge_since: float = 0.0
    calm_since: float | None = None          # surge on, thresholds no longer passed: since when

    @property
    def overflow(self) -> tuple[str, ...]:
        return self.surge_plan.overflow if self.surge_plan else ()

    def watched(self) -> tuple[str, ...]:
        """Every endpoint whose state the desk follows: agents, overflow and emergency seats."""
        return self.agents + self.overflow + self.emergency_seats

    def seats(self) -> tuple[str, ...]:
        """Who may be given a caller now: the agents, and the overflow seats during a surge."""
        return self.agents + self.overflow if self.surge else self.agents

    def call_of_agent_leg(self, leg: str) -> Call | None:
        owner = self.legs.get(leg)
        if owner is None or owner[1] != AGENT:
            return None
        call = self.calls.get(owner[0])
        return call if call is not None and (call.agent_leg == leg or leg in call.offers) \
            else None


# Playback ids: a prompt to a waiting caller, and the goodbye after which the caller is hung up.
PROMPT, GOODBYE, WHISPER = "prompt-", "goodbye-", "whisper"
# The caller channel's variable that names the transfer in progress ("" when none).
TRANSFER_VAR = "HOTLINE_TRANSFER"
# ... and the transfer as it began (the transfer machine's state, JSON), written before the name:
# the instance after a kill -9 finds there a transfer whose state never reached Redis. Not in
# ari.conf's channelvars (it would ride on every event of the caller's channel): read when needed.
TRACE_VAR = "HOTLINE_TRANSFER_TRACE"
# The PBX's own record of the call (CDR, and CEL's userfield) names what hotline-link did with
# it, so a CDR ties in with the call and outcome records: "hotline-link:call;transfers=<id>,<id>"
# on the origin's side, "hotline-link:call;transfer_in=<id>;origin=<hotline>" on the target's
# (the degraded dialplan writes "hotline-link:degraded;...").
USERFIELD = "CDR(userfield)"


def userfield(call: Call) -> str:
    parts = ["hotline-link:call"]
    if call.transferred_in:
        parts += [f"transfer_in={call.headers[sip.TRANSFER_ID]}",
                  f"origin={call.headers.get(sip.ORIGIN, '')}"]
    if call.transfers:
        parts.append("transfers=" + ",".join(call.transfers))
    return ";".join(parts)


# --- commands (what the interpreter does) -----------------------------------------------------
# Commands and event details are slotted dataclasses, not frozen ones: several are built for
# every event, a frozen one takes five times as long to build, and nothing changes them once
# made.

@dataclass(slots=True)
class SetVar:
    channel: str
    name: str
    value: str


@dataclass(slots=True)
class Answer:
    channel: str


@dataclass(slots=True)
class Ringback:
    """Start the caller's ringback (stopping it is ``StopRingback``, which never fails)."""
    channel: str


@dataclass(slots=True)
class StopRingback:
    channel: str


@dataclass(slots=True)
class StartMOH:
    channel: str


@dataclass(slots=True)
class StopMOH:
    channel: str


@dataclass(slots=True)
class RingAgent:
    """Originate the agent's leg into this app (``agent,<caller>``), rung for ``timeout`` s."""
    leg: str
    agent: str
    caller: str
    caller_number: str
    variables: dict
    timeout: int


@dataclass(slots=True)
class CreateBridge:
    """A ``mixing,dtmf_events`` bridge; its id comes back in the attempt's ``then`` event."""
    name: str


@dataclass(slots=True)
class AddToBridge:
    bridge: str
    channels: tuple[str, ...]
    # Their keys still reach the app (ChannelDtmfReceived) but no other party: an agent's *1 is
    # a command, not a tone in the caller's ear (nor a stuck digit when the key ends the leg).
    absorb_dtmf: bool = False


@dataclass(slots=True)
class RemoveFromBridge:
    bridge: str
    channel: str


@dataclass(slots=True)
class DeleteBridge:
    bridge: str


@dataclass(slots=True)
class HangUp:
    """Hang a channel up (already gone is fine). ``reason``: the cause the other side sees
    (busy -> SIP 486, rejected -> SIP 403); ``after``: seconds to leave it up first."""
    channel: str
    reason: str | None = None
    after: float = 0.0


@dataclass(slots=True)
class ListAgents:
    """Ask the PBX which agents are registered and have no channel; answer: AGENTS_LISTED."""


@dataclass(slots=True)
class NoteAnsweringAgent:
    """Far side of a transfer: tell the origin who answered (for its record)."""
    transfer_id: str
    agent: str | None


@dataclass(slots=True)
class CarryMatter:
    """A transferred call brought a matter (its id, ``X-Hotline-Matter-Id``): tag this call with
    the same matter, so that a correction here keeps its id and a further transfer carries it."""
    matter_id: str
    call_id: str


@dataclass(slots=True)
class KeyAction:
    """A Queue() call handed over by a key press is ours now: run that key's action on it."""
    caller: str
    action: str


@dataclass(frozen=True, slots=True)
class SurgePlan:
    """When a hotline is in a surge, and what it does then (``hotlines.<id>.surge``)."""
    waiting: int                # this many callers waiting starts a surge,
    longest_wait: float         # or the longest wait passing this (s);
    calm_after: float           # it ends once neither has held for this long (s)
    overflow: tuple[str, ...]   # seats that take callers during the surge
    # The self-service menu: a caller holding this long during a surge hears ``menu`` (a
    # prompt); a key of ``answers`` plays that answer, ``callback_key`` records a call-back
    # request (``callback_done`` says so, then the call ends). None: no menu.
    menu_after: float | None = None
    menu: str | None = None
    answers: dict[str, str] = field(default_factory=dict)
    callback_key: str | None = None
    callback_done: str | None = None
    # Every this many seconds (and when it starts holding) a holding caller hears its place in
    # line and the expected wait (the POSITION prompts). None: not announced.
    position_every: float | None = None


@dataclass(slots=True)
class Surge:
    """A surge started (``on``) or ended: the ``surge`` alert, with the figures that decided."""
    on: bool
    waiting: int
    longest_wait_s: float
    overflow: tuple[str, ...]
    lasted_s: float | None = None


@dataclass(slots=True)
class Play:
    """Play prompts (their [prompts] names) to a channel as one playback with this id; a
    PROMPT_DONE follows when it ends."""
    channel: str
    prompts: tuple[str, ...]
    playback: str


@dataclass(slots=True)
class StopPlay:
    playback: str


@dataclass(slots=True)
class Publish:
    """A live event for agent desktops."""
    kind: str
    fields: dict


@dataclass(slots=True)
class CallEnded:
    """A call left the desk: the interpreter writes its call record (adding the hotline and the
    wall-clock times). ``call`` is no longer the desk's: nothing changes it any more."""
    call: Call
    ended: float
    ended_by: EndedBy
    disposition: Disposition


@dataclass(slots=True)
class CallNote:
    """What the call record will need changed (arrival, an agent, a transfer, the other
    platform): the interpreter keeps the live call's note (``OPEN_CALLS``) current."""
    call: Call


@dataclass(slots=True)
class Log:
    message: str
    level: str = "info"
    fields: dict = field(default_factory=dict)


@dataclass(slots=True)
class Attempt:
    """Steps that must all succeed, in order. When one fails the rest are skipped and the
    machine gets ``failed`` with a ``Failed``; when all succeed it gets ``then`` with a ``Done``.
    ``only_gone``: only "no such channel" counts as failing (any other error propagates, as a
    fault of the PBX link rather than of the call). ``probe``: channels whose existence the
    interpreter looks up when a step failed."""
    steps: tuple["Command", ...]
    caller: str
    leg: str | None = None
    then: "Ev | None" = None
    failed: "Ev | None" = None
    only_gone: bool = False
    probe: tuple[str, ...] = ()


Command = SetVar | Answer | Ringback | StopRingback | StartMOH | StopMOH | RingAgent | \
    CreateBridge | AddToBridge | RemoveFromBridge | DeleteBridge | HangUp | ListAgents | \
    NoteAnsweringAgent | KeyAction | Publish | Log | Attempt


# A matter's id as the other centre sends it (a header: checked before it names a Redis key).
MATTER_ID_RE = re.compile(sip.MATTER_ID_PATTERN)


# --- events ----------------------------------------------------------------------------------

class Ev(StrEnum):
    # The hotline's (DESK_EVENTS): no call, or a call that does not exist yet.
    ARRIVED = "arrived"                    # Arrival: a caller entered the app
    ADOPT = "adopt"                        # Adoption: a Queue()-bridged call handed over
    CHANNEL_GONE = "channel_gone"          # Gone: any channel's hang-up
    OFFER = "offer"                        # offer free agents to waiting callers
    TICK = "tick"                          # Tick: callers on hold get another round
    DEVICE_STATE = "device_state"          # DeviceState of an agent's phone
    AGENTS_SEEN = "agents_seen"            # AgentsSeen: after a (re)connect, who is free
    AGENTS_LISTED = "agents_listed"        # AgentsSeen: the PBX's answer to ListAgents
    RECONCILE = "reconcile"                # Found: what exists on the PBX after a (re)connect
    # A call's (TRANSITIONS, by its state).
    CALLER_GONE = "caller_gone"            # Done | Failed: the caller's channel is gone
    AGENT_LEG_GONE = "agent_leg_gone"      # LegGone
    REMOTE_LEG_GONE = "remote_leg_gone"    # LegGone
    AGENT_ANSWERED = "agent_answered"      # Leg: the agent's leg entered the app
    AGENT_BRIDGE_READY = "agent_bridge_ready"  # Done: answered, quiet, bridge there
    AGENT_BRIDGED = "agent_bridged"        # Done: caller and agent share the bridge
    CONNECT_FAILED = "connect_failed"      # Failed
    RING_FAILED = "ring_failed"            # Failed: the agent could not be rung
    HELD = "held"                          # Done: music on hold plays
    ADOPT_BRIDGE_READY = "adopt_bridge_ready"  # Done
    ADOPTED = "adopted"                    # Done
    ADOPT_FAILED = "adopt_failed"          # Failed
    RELEASE_HOLD = "release_hold"          # CallRef: a screened caller goes to an agent after all
    TRANSFER_STARTED = "transfer_started"  # TransferNote
    TRANSFER_RESUMED = "transfer_resumed"  # TransferNote: found again after a reconnect
    DETACH = "detach"                      # Detach: the agent leaves a call being transferred
    RINGBACK_SET = "ringback_set"          # Tone: the transfer machine turned ringback on/off
    BRIDGE_MADE = "bridge_made"            # BridgeNote: the transfer made the call's bridge
    REMOTE_JOINED = "remote_joined"        # RemoteJoined: the other platform is in the call
    DROP_AGENT = "drop_agent"              # CallRef: the agent leaves a three-way call
    RETURNED = "returned"                  # Returned: a failed transfer hands the caller back
    CALLER_KEY = "caller_key"              # CallerKey: a digit the caller pressed
    PROMPT_DONE = "prompt_done"            # PromptDone: a playback to the caller ended
    TRANSFER_ENDED = "transfer_ended"      # RemoteJoined (leg None: nobody joined)


DESK = (Ev.ARRIVED, Ev.ADOPT, Ev.CHANNEL_GONE, Ev.OFFER, Ev.TICK, Ev.DEVICE_STATE,
        Ev.AGENTS_SEEN, Ev.AGENTS_LISTED, Ev.RECONCILE)
CALL_EVENTS = tuple(e for e in Ev if e not in DESK)


# --- event details ---------------------------------------------------------------------------

@dataclass(slots=True)
class Arrival:
    caller: str
    number: str
    call_id: str
    headers: dict               # X-Hotline-* (only those with a value)
    role_set: bool              # HOTLINE_ROLE=caller is on the channel already
    hold: bool = False          # screened: answer, but give it to no agent yet
    listed: frozenset | None = None   # free per the PBX, when the desk has no device states


@dataclass(slots=True)
class Adoption:
    caller: str
    number: str
    call_id: str
    leg: str
    agent: str
    action: str                 # the key's action, run once the call is ours
    # What the queue noted (HOTLINE_ARRIVED / HOTLINE_ANSWERED), as seconds before the
    # hand-over: the call record then starts when the caller arrived, not at the key.
    waited_s: float | None = None
    answered_s: float | None = None


@dataclass(slots=True)
class CallerKey:
    caller: str
    digit: str


@dataclass(slots=True)
class PromptDone:
    caller: str
    playback: str


@dataclass(slots=True)
class Gone:
    channel: str
    cause: int = 0


@dataclass(slots=True)
class Tick:
    pass


@dataclass(slots=True)
class DeviceState:
    name: str                   # e.g. PJSIP/12345-a1
    state: str                  # e.g. NOT_INUSE


@dataclass(slots=True)
class AgentsSeen:
    free: frozenset | None      # None: the PBX could not be asked
    online: frozenset | None = None     # registered, busy or not (None: not listed)


@dataclass(slots=True)
class Found:
    """Our channels (those with HOTLINE_ROLE) and every bridge, as ARI lists them, and the
    X-Hotline-* headers of trunk callers the desk does not know yet."""
    channels: tuple[dict, ...]
    bridges: tuple[dict, ...]
    headers: dict               # caller channel id -> headers
    known: dict = field(default_factory=dict)   # caller channel id -> its call as last noted


@dataclass(slots=True)
class CallRef:
    caller: str


@dataclass(slots=True)
class Leg:
    caller: str
    leg: str


@dataclass(slots=True)
class LegGone:
    caller: str
    leg: str
    cause: int = 0


@dataclass(slots=True)
class Done:
    """An attempt went through; ``bridge``: the one a CreateBridge step made."""
    caller: str
    leg: str | None = None
    bridge: str | None = None


@dataclass(slots=True)
class Failed:
    """An attempt's step failed: which, why, and which probed channels still exist."""
    caller: str
    leg: str | None
    step: object
    error: str
    alive: frozenset = frozenset()


@dataclass(slots=True)
class TransferNote:
    caller: str
    transfer_id: str
    blind: bool = False
    trace: str = ""             # TRACE_VAR's value (a transfer that starts)


@dataclass(slots=True)
class Detach:
    caller: str
    grace: float = 0.0


@dataclass(slots=True)
class Tone:
    caller: str
    on: bool


@dataclass(slots=True)
class BridgeNote:
    caller: str
    bridge: str


@dataclass(slots=True)
class RemoteJoined:
    caller: str
    leg: str | None
    transfer_id: str | None = None    # the attempt that stays open (a three-way call)


@dataclass(slots=True)
class Returned:
    caller: str
    prefer: str | None


# --- agent choice ----------------------------------------------------------------------------

def free_agents(d: Desk, listed: frozenset | None = None) -> list[str]:
    """Free agents, longest idle first: never-used agents first (idle since 0), then the longest
    idle; ties keep configuration order. ``listed``: the PBX's answer when there are no device
    states to go by."""
    if d.agent_free is not None:
        online = {a for a, free in d.agent_free.items() if free}
    else:
        online = listed or frozenset()
    free = [a for a in d.seats() if a in online and a not in d.reserved]
    return sorted(free, key=lambda a: d.idle_since.get(a, 0.0))


def choose(call: Call, free: list[str]) -> str | None:
    """The agent for this caller: not tried this round, the preferred one (who transferred it)
    first."""
    choices = [a for a in free if a not in call.tried]
    if call.prefer in choices:
        return call.prefer
    return choices[0] if choices else None


# --- live gauges ----------------------------------------------------------------------------

# Device states of a phone that is not registered (Asterisk's ast_device_state names).
OFFLINE_STATES = frozenset({"UNAVAILABLE", "INVALID", "UNKNOWN"})


@dataclass(frozen=True, slots=True)
class Gauges:
    """A hotline's state now, as a supervisor's wallboard shows it (R8's surge thresholds are
    read from the same figures)."""
    waiting: int                # callers no agent of ours is talking with: held or ringing one
    longest_wait_s: float       # of those, how long the one waiting longest has waited
    calls: int                  # calls the desk holds, any state
    agents_free: int | None     # None: not known (no look at the agents since the connect)
    agents_busy: int | None
    agents_offline: int | None
    surge: bool = False         # the surge plan is on (overflow seats take callers)


def waiting_since(call: Call) -> float | None:
    """Since when the caller has been waiting for an agent (None: not waiting). A caller handed
    back after a failed transfer waits again from the hand-back."""
    if call.state not in (WAITING, RINGING):
        return None
    return call.arrived if call.agent_at is None else (call.returned_at or call.arrived)


def gauges(d: Desk, now: float) -> Gauges:
    since = [t for t in map(waiting_since, d.calls.values()) if t is not None]
    if d.agent_free is None:
        free = busy = offline = None
    else:
        free = len([a for a in free_agents(d) if a not in d.overflow])
        offline = len([a for a in d.agents if a in d.offline and a not in d.reserved])
        busy = len(d.agents) - free - offline
    return Gauges(waiting=len(since), longest_wait_s=round(max((now - t for t in since),
                                                               default=0.0), 3),
                  calls=len(d.calls), agents_free=free, agents_busy=busy,
                  agents_offline=offline, surge=d.surge)


# --- what the handlers share -----------------------------------------------------------------

def _clog(call: Call, message: str, level: str = "info", **fields) -> Log:
    fields = {"call_id": call.call_id, **fields}
    if call.transfer_id and "transfer_id" not in fields:
        fields["transfer_id"] = call.transfer_id
    return Log(message, level, fields)


def _live(kind: str, call: Call, agent: str | None) -> Publish:
    h = call.headers
    transfer = ({"transfer_id": h[sip.TRANSFER_ID], "origin": h.get(sip.ORIGIN),
                 "category": h.get(sip.CATEGORY), "emergency": h.get(sip.EMERGENCY) == "1",
                 "matter_id": h.get(sip.MATTER_ID)}
                if call.transferred_in else None)
    return Publish(kind, {"agent": agent, "call_id": call.call_id, "caller_number": call.number,
                          "transfer": transfer})


def _release(d: Desk, agent: str | None, now: float) -> None:
    if agent is not None and agent in d.reserved:
        d.reserved.discard(agent)
        d.idle_since[agent] = now


def _dispatch(d: Desk, now: float, listed: frozenset | None = None,
              asked: bool = False) -> list[Command]:
    """Offer free agents to waiting callers: emergencies first (each to every free agent, also
    while it rings already), then the others, oldest caller first."""
    waiting = sorted((c for c in d.calls.values()
                      if c.state == WAITING or (c.state == RINGING and c.emergency)),
                     key=lambda c: (not c.emergency, c.arrived))
    if not waiting:
        return []
    if d.agent_free is None and not asked:
        return [ListAgents()]
    free = free_agents(d, listed)
    cmds: list[Command] = []
    for call in waiting:
        pool = free + _emergency_seats_due(d, call, now, listed)
        agent = choose(call, pool)
        if agent is None:
            if call.state == WAITING:
                cmds += _hold(d, call, now)
            continue
        while agent is not None:
            pool.remove(agent)
            if agent in free:
                free.remove(agent)
            cmds += _ring_agent(d, call, agent)
            agent = choose(call, pool) if call.emergency else None
    return cmds


def _emergency_seats_due(d: Desk, call: Call, now: float,
                         listed: frozenset | None) -> list[str]:
    """The emergency seats free for ``call`` now: an emergency that waited long enough."""
    since = waiting_since(call)
    if not (call.emergency and d.emergency_seats and since is not None and
            now - since >= d.emergency_after):
        return []
    online = ({a for a, free in d.agent_free.items() if free} if d.agent_free is not None
              else set(listed or ()))
    return [s for s in d.emergency_seats if s in online and s not in d.reserved]


def _ring_agent(d: Desk, call: Call, agent: str) -> list[Command]:
    """Ring ``agent`` for the caller: as the call's agent leg, or, for an emergency already
    ringing someone, as one more offer beside it."""
    leg = f"{call.call_id}-{agent}-{d.new_id()[:8]}"
    call.tried.add(agent)
    if call.state == RINGING and call.agent_leg:
        call.offers[leg] = agent
    else:
        call.state, call.agent, call.agent_leg = RINGING, agent, leg
    d.reserved.add(agent)
    d.legs[leg] = (call.caller, AGENT)
    variables = {
        # The phone's own transfer key (REFER) becomes a ChannelTransfer event for us.
        "PJSIP_TRANSFER_HANDLING()": "ari-only",
        "HOTLINE_ROLE": AGENT, "HOTLINE_CALLER": call.caller, "HOTLINE_AGENT": agent,
    }
    for name, value in call.headers.items():
        variables[f"PJSIP_HEADER(add,{name})"] = value
    steps: list[Command] = []
    if call.holding:
        steps.append(StopMOH(call.caller))
        call.holding = False
    if call.prompt:
        steps.append(StopPlay(call.prompt))
        call.prompt = None
    if not call.ringing:
        steps.append(Ringback(call.caller))
        call.ringing = True
    steps += [
        RingAgent(leg, agent, call.caller, call.number, variables,
                  max(1, round(d.agent_ring))),
        _clog(call, "ringing agent", agent=agent),
        # The screen-pop: the agent's desktop learns who rings, and why, before they answer.
        _live(LiveEvent.AGENT_RINGING, call, agent),
    ]
    return [Attempt(tuple(steps), call.caller, leg, failed=Ev.RING_FAILED)]


def _hold(d: Desk, call: Call, now: float) -> list[Command]:
    if call.transferred_in:
        # Not answered: keep the other platform hearing ringback while agents free up.
        call.held_since = call.held_since or now
        return []
    if call.holding or call.prompt:
        return []                    # music plays already, or comes back after the prompt
    cmds: list[Command] = []
    if call.ringing:
        cmds.append(StopRingback(call.caller))
        call.ringing = False
    # Not held when music cannot start (a caller gone meanwhile: its hang-up ends the call);
    # the next offer tries again. Any error counts: the callers after this one in the same
    # offer have been given their agents already, and must get their requests.
    return cmds + [Attempt((StartMOH(call.caller),), call.caller, then=Ev.HELD)]


def disposition(call: Call, reason: str | None, by: EndedBy) -> Disposition:
    """How a call ended, for its record."""
    if call.callback:
        return Disposition.CALLBACK
    if call.agent_at is None and not call.remote_joined:
        if reason in ("busy", "rejected"):
            return Disposition.REFUSED
        return Disposition.ABANDONED if by == EndedBy.CALLER else Disposition.LOST
    if call.remote_joined and call.handed_off:
        return Disposition.TRANSFERRED
    return Disposition.ANSWERED


GOODBYE_MAX = 20.0      # s: the caller is hung up by then even if the goodbye's end is not seen


def _end_call(d: Desk, call: Call, now: float, reason: str | None = None,
              by: EndedBy = EndedBy.SERVICE, goodbye: str | None = None) -> list[Command]:
    """End every leg. The caller's channel is hung up exactly once: a second hang-up racing the
    first would replace its cause (and the SIP code the other side sees)."""
    d.calls.pop(call.caller, None)
    call.state = ENDED
    if call.agent_at is not None and not call.recovered:
        d.talk_avg = 0.8 * d.talk_avg + 0.2 * max(0.0, now - call.agent_at)
    cmds: list[Command] = [CallEnded(call, now, by, disposition(call, reason, by)),
                           _live(LiveEvent.CALL_ENDED, call, call.agent)]
    cmds += _withdraw_offers(d, call, now)
    for leg in (call.agent_leg, call.remote_leg):
        if leg:
            d.legs.pop(leg, None)
            cmds.append(HangUp(leg))
    _release(d, call.agent, now)
    if call.prompt:
        # Playbacks queue on a channel: the goodbye would wait for the rest of the menu.
        cmds.append(StopPlay(call.prompt))
        call.prompt = None
    if goodbye:
        # Said to the caller first; the app hangs up when the playback ends (its id says so).
        cmds += [Play(call.caller, (goodbye,), f"{GOODBYE}{call.caller}"),
                 HangUp(call.caller, after=GOODBYE_MAX)]
    else:
        cmds.append(HangUp(call.caller, reason=reason))
    if call.bridge:
        cmds.append(DeleteBridge(call.bridge))
    return cmds + _dispatch(d, now)


def _withdraw_offers(d: Desk, call: Call, now: float, reason: str | None = None) -> list[Command]:
    """Stop ringing an emergency's other agents."""
    cmds: list[Command] = []
    for leg, agent in call.offers.items():
        d.legs.pop(leg, None)
        _release(d, agent, now)
        cmds.append(HangUp(leg, reason=reason))
    call.offers.clear()
    return cmds


def _offer_gone(d: Desk, call: Call, leg: str, cause: int, now: float) -> list[Command]:
    """One of an emergency's other ringing phones stopped (no answer, busy, declined)."""
    agent = call.offers.pop(leg)
    d.legs.pop(leg, None)
    _release(d, agent, now)
    return [_clog(call, "agent did not take the emergency", agent=agent, cause=cause)]


def _agent_leg_gone(d: Desk, call: Call, leg: str, cause: int, now: float) -> list[Command]:
    """The agent's leg ended (the desk has already forgotten the leg)."""
    agent = call.agent
    _release(d, agent, now)
    call.agent = call.agent_leg = None
    if call.whispered and call.state == RINGING:
        # Gone during (or right after) the whisper: the next agent hears it too.
        call.whispered = False
        if call.prompt and call.prompt.endswith(f"-{WHISPER}"):
            call.prompt = None
    if call.state == RINGING and call.offers:
        # An emergency still rings other phones: one of them is the agent leg now.
        call.agent_leg, call.agent = call.offers.popitem()
        return [_clog(call, "agent did not take the emergency", agent=agent, cause=cause)]
    if call.state == CONNECTED:
        if call.remote_leg:
            call.handed_off = True
            return [CallNote(call),
                    _clog(call, "agent left; caller stays with the other platform", agent=agent)]
        return [_clog(call, "agent hung up", agent=agent)] + \
            _end_call(d, call, now, by=EndedBy.AGENT)
    if call.state == TRANSFERRING:
        return []
    if call.transferred_in and cause == CAUSE_REJECTED and not call.emergency:
        return [_clog(call, "agent declined the transferred call", agent=agent)] + \
            _end_call(d, call, now, reason="rejected")
    call.state = WAITING
    return [_clog(call, "agent did not answer", agent=agent, cause=cause)] + _dispatch(d, now)


def _remote_leg_gone(d: Desk, call: Call, now: float) -> list[Command]:
    call.remote_leg = None
    if call.agent_leg and call.state == CONNECTED:
        return [_clog(call, "other platform left; back to two parties")]
    return [_clog(call, "other platform hung up")] + _end_call(d, call, now, by=EndedBy.REMOTE)


def _adopt_remote(d: Desk, call: Call, leg: str, transfer_id: str | None) -> None:
    call.remote_leg = leg
    call.remote_joined = True
    call.handed_off = call.handed_off or call.agent_leg is None
    call.state = CONNECTED
    call.transfer_id = transfer_id
    d.legs[leg] = (call.caller, REMOTE)


# --- the hotline's events --------------------------------------------------------------------

def _arrived(d: Desk, now: float, a: Arrival) -> list[Command]:
    known = d.calls.get(a.caller)
    if known is not None and known.recovered:
        # The StasisStart of a caller this instance already found in the channel list when it
        # (re)connected (the event was queued behind the list): one caller, one call. Taken as
        # a new arrival it was offered again, which cut the agent already ringing.
        steps: list[Command] = ([] if a.role_set
                                else [SetVar(known.caller, "HOTLINE_ROLE", "caller")])
        if not known.answered and not known.transferred_in:
            steps.append(Answer(known.caller))
            known.answered = True
        return [_clog(known, "arrival of a call recovered already: the same call"),
                *([Attempt(tuple(steps), known.caller, only_gone=True)] if steps else [])]
    call = Call(caller=a.caller, number=a.number, call_id=a.call_id, arrived=now,
                state=TRANSFERRING if a.hold else WAITING,
                headers={k: v for k, v in a.headers.items() if k in HEADERS and v})
    d.calls[call.caller] = call
    steps: list[Command] = []
    if not a.role_set:
        steps.append(SetVar(call.caller, "HOTLINE_ROLE", "caller"))
    if call.transferred_in:
        steps.append(_clog(call, "transferred caller arrived", caller=call.number,
                           origin=call.headers.get(sip.ORIGIN),
                           transfer_id=call.headers[sip.TRANSFER_ID]))
        steps.append(SetVar(call.caller, USERFIELD, userfield(call)))
        if call.emergency:
            steps.append(_clog(call, "emergency: first in line, every free agent rings",
                               transfer_id=call.headers[sip.TRANSFER_ID]))
        elif not free_agents(d, a.listed):
            steps.append(_clog(call, "no free agent: transfer refused as busy",
                               transfer_id=call.headers[sip.TRANSFER_ID]))
            # The call is over whatever the steps say: a caller gone already is gone.
            return [Attempt(tuple(steps), call.caller, only_gone=True)] + \
                _end_call(d, call, now, reason="busy")
        steps.append(Ringback(call.caller))
        call.ringing = True
    else:
        steps += [_clog(call, "caller arrived", caller=call.number), Answer(call.caller)]
        call.answered = True
    carry = ([CarryMatter(matter_id, call.call_id)]
             if MATTER_ID_RE.fullmatch(matter_id := call.headers.get(sip.MATTER_ID, "")) else [])
    return [CallNote(call), *carry, Attempt(tuple(steps), call.caller, then=Ev.OFFER,
                                            failed=Ev.CALLER_GONE, only_gone=True)]


def _adopt(d: Desk, now: float, a: Adoption) -> list[Command]:
    """A call the centre's own Queue() bridged, handed over by a key: bridge caller and agent
    again and own the call from now on, exactly as if it had been delivered here."""
    call = Call(caller=a.caller, number=a.number, call_id=a.call_id,
                arrived=now - max(0.0, a.waited_s or 0.0), state=CONNECTED, answered=True,
                agent=a.agent, agent_leg=a.leg, agent_since=now, queued=True)
    if a.answered_s is not None:
        call.agent_at = max(call.arrived, now - max(0.0, a.answered_s))
    d.calls[call.caller] = call
    d.legs[a.leg] = (call.caller, AGENT)
    d.reserved.add(a.agent)
    steps = [SetVar(call.caller, "HOTLINE_ROLE", "caller")]
    steps += [SetVar(a.leg, name, value) for name, value in (
        ("PJSIP_TRANSFER_HANDLING()", "ari-only"), ("HOTLINE_ROLE", AGENT),
        ("HOTLINE_CALLER", call.caller), ("HOTLINE_AGENT", a.agent))]
    steps.append(CreateBridge(f"call-{call.call_id}"))
    d.pending_keys[call.caller] = a.action
    return [Attempt(tuple(steps), call.caller, a.leg, then=Ev.ADOPT_BRIDGE_READY,
                    failed=Ev.ADOPT_FAILED, probe=(a.leg, call.caller))]


def _channel_gone(d: Desk, now: float, g: Gone) -> list[Command]:
    if g.channel in d.calls:
        return step(d, Ev.CALLER_GONE, now, Done(g.channel))
    owner = d.legs.pop(g.channel, None)
    if owner is None:
        return []
    kind = Ev.AGENT_LEG_GONE if owner[1] == AGENT else Ev.REMOTE_LEG_GONE
    return step(d, kind, now, LegGone(owner[0], g.channel, g.cause))


def _offer(d: Desk, now: float, detail=None) -> list[Command]:
    return _dispatch(d, now)


def _tick(d: Desk, now: float, detail: Tick) -> list[Command]:
    for call in d.calls.values():
        if call.state == WAITING and call.tried and (call.holding or call.transferred_in) and \
                now - call.held_since >= d.no_agent_retry:
            call.tried.clear()
    return _check_surge(d, now) + _dispatch(d, now) + _offer_menus(d, now) + \
        _announce_positions(d, now)


def _offer_menus(d: Desk, now: float) -> list[Command]:
    """During a surge, each caller holding longer than ``menu_after`` hears the menu, once."""
    plan = d.surge_plan
    if plan is None or not d.surge or plan.menu_after is None or not plan.menu:
        return []
    cmds: list[Command] = []
    for call in d.calls.values():
        since = waiting_since(call)
        # Over music, or over the place-in-line announcement (the menu matters more).
        quiet = call.holding or (call.prompt or "").endswith(f"-{POSITION[0]}")
        if call.state != WAITING or not quiet or call.menu_offered or \
                call.transferred_in or since is None or now - since < plan.menu_after:
            continue
        call.menu_offered = True
        cmds += [_clog(call, "self-service menu offered")] + _play(call, plan.menu)
    return cmds


def _play(call: Call, *prompts: str) -> list[Command]:
    """Music on hold gives way to prompts (one playback); PROMPT_DONE brings it back."""
    cmds: list[Command] = []
    if call.holding:
        cmds.append(StopMOH(call.caller))
        call.holding = False
    if call.prompt:
        cmds.append(StopPlay(call.prompt))
    call.prompt = f"{PROMPT}{call.caller}-{prompts[0]}"
    return cmds + [Play(call.caller, prompts, call.prompt)]


# The prompts of the place-in-line announcement: "您前面还有" <n> "位来电，预计等待" <m> "分钟。",
# numbers said from digit prompts (num-0 ... num-10).
POSITION = ("queue-ahead", "queue-people", "queue-minutes")
POSITION_PROMPTS = (*POSITION, *(f"num-{n}" for n in range(11)))     # all it may need


def say_number(n: int) -> tuple[str, ...]:
    """A number from 0 to 99 in Mandarin, as digit prompts: 十 (num-10) joins the tens."""
    n = max(0, min(99, n))
    tens, units = divmod(n, 10)
    if n <= 10:
        return (f"num-{n}",)
    head = ("num-10",) if tens == 1 else (f"num-{tens}", "num-10")
    return head + ((f"num-{units}",) if units else ())


def line_position(d: Desk, call: Call) -> int:
    """How many callers are served before this one (emergencies first, then by arrival)."""
    def key(c: Call) -> tuple:
        return (not c.emergency, c.arrived)
    return sum(1 for c in d.calls.values()
               if c is not call and c.state in (WAITING, RINGING) and key(c) < key(call))


def expected_wait_min(d: Desk, ahead: int) -> int:
    """Minutes until an agent, roughly: the callers ahead and this one, each taking the average
    talk time, shared by the agents who are not logged off."""
    seats = max(1, len(d.agents) - len(d.offline))
    return max(1, round((ahead + 1) * d.talk_avg / seats / 60))


def _announce_positions(d: Desk, now: float) -> list[Command]:
    """During a surge, each holding caller hears its place in line and the expected wait when
    it starts holding and every ``position_every`` s (never over another prompt)."""
    plan = d.surge_plan
    if plan is None or not d.surge or plan.position_every is None:
        return []
    cmds: list[Command] = []
    for call in d.calls.values():
        if call.state != WAITING or not call.holding or call.transferred_in or call.prompt:
            continue
        if call.position_at is not None and now - call.position_at < plan.position_every:
            continue
        call.position_at = now
        ahead = line_position(d, call)
        minutes = expected_wait_min(d, ahead)
        cmds += [_clog(call, "place in line announced", ahead=ahead, expected_min=minutes)] + \
            _play(call, POSITION[0], *say_number(ahead), POSITION[1], *say_number(minutes),
                  POSITION[2])
    return cmds


def _caller_key(d: Desk, call: Call, now: float, k: CallerKey) -> list[Command]:
    plan = d.surge_plan
    if plan is None or not call.menu_offered or call.callback:
        return []                    # the caller's keys do nothing outside the menu
    if k.digit == plan.callback_key:
        call.callback = True
        return [_clog(call, "call-back requested", caller=call.number)] + \
            _end_call(d, call, now, by=EndedBy.CALLER, goodbye=plan.callback_done)
    answer = plan.answers.get(k.digit)
    if answer is None:
        return []
    return [_clog(call, "self-service answer", key=k.digit)] + _play(call, answer)


def _prompt_done(d: Desk, call: Call, now: float, p: PromptDone) -> list[Command]:
    if p.playback != call.prompt:
        return []                    # one we stopped, or replaced by another
    call.prompt = None
    if p.playback.endswith(f"-{WHISPER}"):
        # The whisper ended: now the caller and the agent who answered meet.
        return _connect_agent(d, call, call.agent_leg) if call.agent_leg else []
    return _hold(d, call, now)


def _check_surge(d: Desk, now: float) -> list[Command]:
    """Start the surge plan when too many callers hold for lack of a free agent, or one has
    waited too long; end it once neither has held for ``calm_after`` (so one quiet second does
    not end it). Callers whose agent is ringing do not count: a burst of arrivals with agents
    free is no surge (counting them, 220 agents taking 40 calls a second looked like one)."""
    plan = d.surge_plan
    if plan is None:
        return []
    g = gauges(d, now)
    held = sum(1 for c in d.calls.values() if c.state == WAITING)
    hot = held >= plan.waiting or g.longest_wait_s >= plan.longest_wait
    if not d.surge:
        if not hot:
            return []
        d.surge, d.surge_since, d.calm_since = True, now, None
        return [Surge(True, g.waiting, g.longest_wait_s, plan.overflow),
                Log("surge started: overflow seats join", "warning",
                    {"waiting": g.waiting, "held": held, "longest_wait_s": g.longest_wait_s,
                     "overflow": list(plan.overflow)})]
    if hot:
        d.calm_since = None
        return []
    d.calm_since = d.calm_since if d.calm_since is not None else now
    if now - d.calm_since < plan.calm_after:
        return []
    d.surge = False
    lasted = round(now - d.surge_since, 1)
    return [Surge(False, g.waiting, g.longest_wait_s, plan.overflow, lasted),
            Log("surge ended", "warning", {"lasted_s": lasted})]


def _device_state(d: Desk, now: float, s: DeviceState) -> list[Command]:
    agent = s.name.partition("/")[2]
    if d.agent_free is None or agent not in d.agent_free:
        return []
    was, free = d.agent_free[agent], s.state == "NOT_INUSE"
    d.agent_free[agent] = free
    if s.state in OFFLINE_STATES:
        d.offline.add(agent)
    else:
        d.offline.discard(agent)
    cmds: list[Command] = []
    if free != was:
        cmds.append(Log("agent state", "debug", {"agent": agent, "state": s.state, "free": free}))
    if free and not was:
        cmds += _dispatch(d, now)     # a caller may be waiting for this agent
    return cmds


def _agents_seen(d: Desk, now: float, s: AgentsSeen) -> list[Command]:
    seats = d.watched()
    d.agent_free = None if s.free is None else {a: a in s.free for a in seats}
    d.offline = set() if s.online is None else {a for a in seats if a not in s.online}
    return []


def _agents_listed(d: Desk, now: float, s: AgentsSeen) -> list[Command]:
    # Unanswered (the interpreter logged why): nobody is known to be free.
    return _dispatch(d, now, s.free or frozenset(), True)


def _reconcile(d: Desk, now: float, f: Found) -> list[Command]:
    """Events were missed (or the app restarted): rebuild the view of live calls from the
    channels and bridges that exist, and clean up what cannot go on."""
    live = {c["id"]: c for c in f.channels}
    cmds: list[Command] = []
    for call in list(d.calls.values()):
        if call.caller not in live:
            cmds += _end_call(d, call, now, by=EndedBy.UNSEEN)
        elif call.agent_leg and call.agent_leg not in live:
            for leg in [leg for leg in call.offers if leg not in live]:
                cmds += _offer_gone(d, call, leg, 0, now)
            d.legs.pop(call.agent_leg, None)
            cmds += _agent_leg_gone(d, call, call.agent_leg, 0, now)
        elif call.remote_leg and call.remote_leg not in live:
            d.legs.pop(call.remote_leg, None)
            cmds += _remote_leg_gone(d, call, now)
    bridge_of = {ch: b for b in f.bridges for ch in b.get("channels", [])}
    for ch in f.channels:
        role = (ch.get("channelvars") or {}).get("HOTLINE_ROLE")
        if role == "caller" and ch["id"] not in d.calls:
            cmds += _found_caller(d, ch, live, bridge_of.get(ch["id"]), f.headers, now,
                                  f.known.get(ch["id"]))
    for ch in f.channels:
        vars_ = ch.get("channelvars") or {}
        if vars_.get("HOTLINE_ROLE") != AGENT or ch["id"] in d.legs:
            continue
        call = d.calls.get(vars_.get("HOTLINE_CALLER", ""))
        if call is not None and ch.get("state") != "Up" and \
                (call.state == WAITING or (call.state == RINGING and call.emergency)):
            # Still ringing for a caller we know again: keep it (an emergency's every leg).
            # Asterisk enforces its ring timeout, and its StasisStart arrives when the agent
            # answers.
            agent = vars_.get("HOTLINE_AGENT")
            if call.state == RINGING:
                call.offers[ch["id"]] = agent
            else:
                call.state, call.agent, call.agent_leg = RINGING, agent, ch["id"]
            call.tried.add(agent)
            d.reserved.add(agent)
            d.legs[ch["id"]] = (call.caller, AGENT)
        else:
            # An agent leg nobody owns any more: left over from a call that is gone.
            cmds.append(HangUp(ch["id"]))
    kept = {c.bridge for c in d.calls.values() if c.bridge}
    for b in f.bridges:
        # Empty, or left with channels of no call we keep (an agent whose caller hung up while
        # nobody watched: hung up above): nothing will ever end it otherwise.
        if b.get("name", "").startswith("call-") and b["id"] not in kept and \
                not any(ch in d.calls or ch in d.legs for ch in b.get("channels", [])):
            cmds.append(DeleteBridge(b["id"]))
    return cmds + _dispatch(d, now)


def _found_caller(d: Desk, ch: dict, live: dict, bridge: dict | None, headers: dict,
                  now: float, known: Call | None) -> list[Command]:
    call = Call(caller=ch["id"], number=ch.get("caller", {}).get("number", ""),
                call_id=ch.get("linkedid") or ch["id"], arrived=now,
                answered=ch.get("state") == "Up", headers=dict(headers.get(ch["id"], {})),
                recovered=True)
    d.calls[call.caller] = call
    if bridge is not None:
        call.bridge = bridge["id"]
        for other in bridge.get("channels", []):
            vars_ = (live.get(other, {}).get("channelvars") or {})
            if other == call.caller:
                continue
            if vars_.get("HOTLINE_ROLE") == AGENT:
                call.agent_leg, call.agent = other, vars_.get("HOTLINE_AGENT")
                d.legs[other] = (call.caller, AGENT)
                if call.agent:
                    d.reserved.add(call.agent)
            else:
                call.remote_leg = other
                d.legs[other] = (call.caller, REMOTE)
    if known is not None:
        _merge(call, known)
    if call.remote_leg:
        call.remote_joined = True
        call.handed_off = call.agent_leg is None
    if call.agent_leg:
        _talked(call, now)
    cmds: list[Command] = []
    if call.agent_leg or call.remote_leg:
        call.state = CONNECTED
    elif (ch.get("channelvars") or {}).get(TRANSFER_VAR):
        call.state = TRANSFERRING          # the transfer adapter re-attaches it
        call.transfer_id = ch["channelvars"][TRANSFER_VAR]
        if bridge is not None:
            # Alone in its call with a transfer in flight: a three-way call whose agent left
            # while we were away, now the caller's blind transfer. It waits out of the bridge,
            # as one does (where ringback can reach it); the far agent is bridged to it there.
            call.handed_off = True
            cmds.append(RemoveFromBridge(bridge["id"], call.caller))
    elif bridge is not None:
        # Alone in its call bridge: everyone else hung up while we were away, and a call
        # ends when only the caller is left.
        return [_clog(call, "caller found alone in its call; ending it")] + \
            _end_call(d, call, now, by=EndedBy.UNSEEN)
    return [CallNote(call), _clog(call, "call adopted after reconnect", state=str(call.state))] \
        + cmds


DeskHandler = Callable[[Desk, float, object], list[Command]]

# event -> (detail type, handler)
DESK_EVENTS: dict[Ev, tuple[type | None, DeskHandler]] = {
    Ev.ARRIVED: (Arrival, _arrived),
    Ev.ADOPT: (Adoption, _adopt),
    Ev.CHANNEL_GONE: (Gone, _channel_gone),
    Ev.OFFER: (Done, _offer),
    Ev.TICK: (Tick, _tick),
    Ev.DEVICE_STATE: (DeviceState, _device_state),
    Ev.AGENTS_SEEN: (AgentsSeen, _agents_seen),
    Ev.AGENTS_LISTED: (AgentsSeen, _agents_listed),
    Ev.RECONCILE: (Found, _reconcile),
}


# --- a call's events -------------------------------------------------------------------------

def _caller_gone(d: Desk, call: Call, now: float, detail) -> list[Command]:
    return [_clog(call, "caller hung up", state=str(call.state))] + \
        _end_call(d, call, now, by=EndedBy.CALLER)


def _agent_gone(d: Desk, call: Call, now: float, g: LegGone) -> list[Command]:
    if g.leg in call.offers:
        return _offer_gone(d, call, g.leg, g.cause, now)
    if call.agent_leg != g.leg:
        return []
    return _agent_leg_gone(d, call, g.leg, g.cause, now)


def _remote_gone(d: Desk, call: Call, now: float, g: LegGone) -> list[Command]:
    if call.remote_leg != g.leg:
        return []
    return _remote_leg_gone(d, call, now)


def _stray_answer(d: Desk, now: float, leg: str) -> list[Command]:
    # The caller left (or another agent got there first) while this phone rang.
    d.legs.pop(leg, None)
    return [HangUp(leg)]


def _agent_answered(d: Desk, call: Call, now: float, a: Leg) -> list[Command]:
    cmds: list[Command] = []
    if a.leg in call.offers:
        # The first to answer an emergency takes it: the leg rung first stops ringing.
        first, first_agent = call.agent_leg, call.agent
        call.agent = call.offers.pop(a.leg)
        call.agent_leg = a.leg
        if first:
            call.offers[first] = first_agent
    if call.agent_leg != a.leg:
        return _stray_answer(d, now, a.leg)
    if call.offers:
        cmds += [_clog(call, "emergency taken", agent=call.agent, others=len(call.offers))] + \
            _withdraw_offers(d, call, now, reason="answered_elsewhere")
    whisper = _whisper_of(d, call)
    if whisper and not call.whispered:
        # The agent hears where the call comes from first; the caller, still unanswered,
        # hears ringback on. PROMPT_DONE (the whisper's end) bridges them.
        call.whispered = True
        call.prompt = f"{PROMPT}{call.caller}-{WHISPER}"
        return cmds + [_clog(call, "whisper to the answering agent", agent=call.agent),
                       Play(a.leg, (whisper,), call.prompt)]
    return cmds + _connect_agent(d, call, a.leg)


def _whisper_of(d: Desk, call: Call) -> str | None:
    if not call.transferred_in or not d.whisper:
        return None
    if call.emergency and "emergency" in d.whisper:
        return d.whisper["emergency"]
    return d.whisper.get(call.headers.get(sip.ORIGIN, ""))


def _connect_agent(d: Desk, call: Call, leg: str) -> list[Command]:
    """Answer the caller, quiet it, make the bridge: then AGENT_BRIDGE_READY bridges them."""
    cmds: list[Command] = []
    if call.transferred_in:
        cmds.append(NoteAnsweringAgent(call.headers[sip.TRANSFER_ID], call.agent))
    steps: list[Command] = []
    if not call.answered:
        steps.append(Answer(call.caller))
        call.answered = True
    if call.holding:
        steps.append(StopMOH(call.caller))
        call.holding = False
    if call.ringing:
        steps.append(StopRingback(call.caller))
        call.ringing = False
    if call.bridge is None:
        steps.append(CreateBridge(f"call-{call.call_id}"))
    return cmds + [Attempt(tuple(steps), call.caller, leg, then=Ev.AGENT_BRIDGE_READY,
                           failed=Ev.CONNECT_FAILED, probe=(call.caller, leg))]


def _agent_bridge_ready(d: Desk, call: Call, now: float, done: Done) -> list[Command]:
    if done.bridge:
        call.bridge = done.bridge
    return [Attempt((AddToBridge(call.bridge, (call.caller, done.leg),
                                 absorb_dtmf=not call.keys_cross),), call.caller, done.leg,
                    then=Ev.AGENT_BRIDGED, failed=Ev.CONNECT_FAILED,
                    probe=(call.caller, done.leg))]


def _agent_bridged(d: Desk, call: Call, now: float, done: Done) -> list[Command]:
    call.state = CONNECTED
    call.agent_since = now
    return [_talked(call, now), _live(LiveEvent.AGENT_CONNECTED, call, call.agent),
            _clog(call, "agent connected", agent=call.agent, wait_s=round(now - call.arrived, 3))]


def _connect_failed(d: Desk, call: Call, now: float, f: Failed) -> list[Command]:
    # A leg hung up while we bridged (ARI says 400 "Channel not found" for addChannel).
    if isinstance(f.step, Answer):
        call.answered = False
    caller_there = call.caller in f.alive
    cmds: list[Command] = [_clog(call, "bridging failed", agent=call.agent, error=f.error,
                                 caller_there=caller_there, agent_there=f.leg in f.alive)]
    if caller_there:
        d.legs.pop(f.leg, None)
        cmds.append(HangUp(f.leg))
        if call.agent_leg == f.leg:
            cmds += _agent_leg_gone(d, call, f.leg, 0, now)
        return cmds
    return cmds + _end_call(d, call, now, by=EndedBy.CALLER)


def _ring_failed(d: Desk, call: Call, now: float, f: Failed) -> list[Command]:
    if isinstance(f.step, Ringback):
        call.ringing = False
    if f.leg in call.offers:
        return _offer_gone(d, call, f.leg, 0, now)
    if call.offers:
        # The emergency's other phones ring on: one of them is its agent leg now.
        agent = call.agent
        _release(d, agent, now)
        d.legs.pop(f.leg, None)
        call.agent_leg, call.agent = call.offers.popitem()
        return [_clog(call, "cannot ring agent", "warning", agent=agent, error=f.error)]
    agent = call.agent
    d.legs.pop(f.leg, None)
    _release(d, agent, now)
    call.state, call.agent, call.agent_leg = WAITING, None, None
    return [_clog(call, "cannot ring agent", "warning", agent=agent, error=f.error)]


def _held(d: Desk, call: Call, now: float, done: Done) -> list[Command]:
    call.holding = True
    call.held_since = now
    return [_clog(call, "no free agent, caller holds")]


def _adopt_bridge_ready(d: Desk, call: Call, now: float, done: Done) -> list[Command]:
    call.bridge = done.bridge
    return [Attempt((AddToBridge(call.bridge, (call.caller, done.leg),
                                 absorb_dtmf=not call.keys_cross),), call.caller, done.leg,
                    then=Ev.ADOPTED, failed=Ev.ADOPT_FAILED, probe=(done.leg, call.caller))]


def _adopted(d: Desk, call: Call, now: float, done: Done) -> list[Command]:
    action = d.pending_keys.pop(call.caller, None)
    cmds: list[Command] = [_talked(call, now), _clog(call, "queue call taken over",
                                                     agent=call.agent, caller=call.number)]
    return cmds + ([KeyAction(call.caller, action)] if action else [])


def _adopt_failed(d: Desk, call: Call, now: float, f: Failed) -> list[Command]:
    d.pending_keys.pop(call.caller, None)
    cmds: list[Command] = [_clog(call, "taking over a queue call failed", agent=call.agent,
                                 error=f.error)]
    if f.leg not in f.alive:
        d.legs.pop(f.leg, None)
        if call.agent_leg == f.leg:
            cmds += _agent_leg_gone(d, call, f.leg, 0, now)
    elif call.caller not in f.alive:
        cmds += _caller_gone(d, call, now, None)
    return cmds


def _release_hold(d: Desk, call: Call, now: float, detail) -> list[Command]:
    call.state = WAITING
    return _dispatch(d, now)


def _merge(found: Call, known: Call) -> None:
    """A call found live after a restart takes what its note knew: when it arrived, who talked
    with it, its transfers (this instance saw none of that)."""
    found.arrived = min(found.arrived, known.arrived)
    if known.agent_at is not None:
        found.agent_at = known.agent_at
    found.agents = list(known.agents)
    found.transfers = list(known.transfers)
    found.remote_joined = known.remote_joined
    found.headers = found.headers or dict(known.headers)


def _talked(call: Call, now: float) -> CallNote:
    """An agent of ours is with the caller now."""
    if call.agent_at is None:
        call.agent_at = now
    if call.agent and call.agent not in call.agents:
        call.agents.append(call.agent)
    call.handed_off = False
    return CallNote(call)


def _note_transfer(call: Call, transfer_id: str) -> None:
    call.transfer_id = transfer_id
    if transfer_id not in call.transfers:
        call.transfers.append(transfer_id)


def _transfer_started(d: Desk, call: Call, now: float, n: TransferNote) -> list[Command]:
    _note_transfer(call, n.transfer_id)
    # The channel's own trace of its transfer (a restarted app finds the transfer by it). A
    # caller who hung up this very moment must not stop anything: a failure is only logged.
    trace = (SetVar(call.caller, TRACE_VAR, n.trace),) if n.trace else ()
    return [CallNote(call), Attempt((*trace, SetVar(call.caller, TRANSFER_VAR, n.transfer_id),
                                     SetVar(call.caller, USERFIELD, userfield(call))),
                                    call.caller)]


def _transfer_resumed(d: Desk, call: Call, now: float, n: TransferNote) -> list[Command]:
    _note_transfer(call, n.transfer_id)
    if n.blind and call.state != CONNECTED:
        call.state = TRANSFERRING
    return [CallNote(call)]


def _detach(d: Desk, call: Call, now: float, x: Detach) -> list[Command]:
    """Release the agent from a call that is being transferred away (blind transfer).

    ``grace`` leaves the agent's channel up that long so the phone hangs up itself: after a
    REFER the phone holds a transfer subscription, and tearing its dialog down from our side
    while that subscription is alive is the pattern behind PJSIP's REFER teardown crashes."""
    leg, agent = call.agent_leg, call.agent
    call.state = TRANSFERRING
    call.handed_off = True
    if not leg:
        return [CallNote(call)]
    d.legs.pop(leg, None)
    _release(d, agent, now)
    call.agent = call.agent_leg = None
    cmds: list[Command] = [CallNote(call)]
    if call.bridge:
        cmds.append(RemoveFromBridge(call.bridge, call.caller))
    return cmds + [HangUp(leg, after=x.grace)]


def _ringback_set(d: Desk, call: Call, now: float, t: Tone) -> list[Command]:
    call.ringing = t.on
    return []


def _bridge_made(d: Desk, call: Call, now: float, b: BridgeNote) -> list[Command]:
    call.bridge = b.bridge
    return []


def _remote_joined(d: Desk, call: Call, now: float, r: RemoteJoined) -> list[Command]:
    _adopt_remote(d, call, r.leg, r.transfer_id)
    return [CallNote(call)]


def _drop_agent(d: Desk, call: Call, now: float, detail) -> list[Command]:
    """The agent leaves a three-way call; the caller stays with the other platform."""
    leg, agent = call.agent_leg, call.agent
    if not leg:
        return []
    d.legs.pop(leg, None)
    _release(d, agent, now)
    call.agent = call.agent_leg = None
    call.handed_off = True
    return [CallNote(call), HangUp(leg)]


def _returned(d: Desk, call: Call, now: float, r: Returned) -> list[Command]:
    """A transfer failed: the caller waits for an agent here again, ``prefer`` first."""
    if call.state == CONNECTED and (call.agent_leg or call.remote_leg):
        # Talking to someone still: a transfer carried on after a restart from how it began,
        # whose agent the old process never released (or that had ended already), fails
        # without taking the caller from that party.
        call.transfer_id = None
        return [CallNote(call), _clog(call, "failed transfer leaves the caller with the party "
                                      "it is talking to", prefer=r.prefer)]
    call.state = WAITING
    call.returned_at = now
    call.transfer_id = None
    call.handed_off = False
    call.prefer = r.prefer
    call.tried.clear()
    call.ringing = True          # the transfer left ringback playing
    return [CallNote(call), _clog(call, "caller back to origin", prefer=r.prefer)] + \
        _dispatch(d, now)


def _transfer_ended(d: Desk, call: Call, now: float, r: RemoteJoined) -> list[Command]:
    cmds: list[Command] = []
    if r.leg is not None and call.remote_leg != r.leg:
        _adopt_remote(d, call, r.leg, None)
        cmds.append(CallNote(call))
    call.transfer_id = None
    return cmds + [Attempt((SetVar(call.caller, TRANSFER_VAR, ""),), call.caller)]


CallHandler = Callable[[Desk, Call, float, object], list[Command]]




LIVE = (WAITING, RINGING, CONNECTED, TRANSFERRING)
_ANY = frozenset(CallState)

# Each call event's detail type.
DETAILS: dict[Ev, type | tuple[type, ...]] = {
    Ev.CALLER_GONE: (Done, Failed), Ev.AGENT_LEG_GONE: LegGone, Ev.REMOTE_LEG_GONE: LegGone,
    Ev.AGENT_ANSWERED: Leg, Ev.AGENT_BRIDGE_READY: Done, Ev.AGENT_BRIDGED: Done,
    Ev.CONNECT_FAILED: Failed, Ev.RING_FAILED: Failed, Ev.HELD: Done,
    Ev.ADOPT_BRIDGE_READY: Done, Ev.ADOPTED: Done, Ev.ADOPT_FAILED: Failed,
    Ev.RELEASE_HOLD: CallRef, Ev.TRANSFER_STARTED: TransferNote,
    Ev.TRANSFER_RESUMED: TransferNote, Ev.DETACH: Detach, Ev.RINGBACK_SET: Tone,
    Ev.BRIDGE_MADE: BridgeNote, Ev.REMOTE_JOINED: RemoteJoined, Ev.DROP_AGENT: CallRef,
    Ev.RETURNED: Returned, Ev.TRANSFER_ENDED: RemoteJoined, Ev.CALLER_KEY: CallerKey,
    Ev.PROMPT_DONE: PromptDone,
}

# (state, event) -> (handler, possible next states). The pairs not here are in IGNORED.
TRANSITIONS: dict[tuple[CallState, Ev], Row] = {
    # The caller hangs up (or turned out gone while we answered it): the call ends.
    **{(s, Ev.CALLER_GONE): _row(_caller_gone, ENDED) for s in LIVE},
    # The agent's leg ends: ringing -> next agent (or refused); connected -> ends unless the
    # other platform is there; transferring -> nothing (the transfer has the caller).
    (WAITING, Ev.AGENT_LEG_GONE): _row(_agent_gone, WAITING, RINGING, ENDED),
    (RINGING, Ev.AGENT_LEG_GONE): _row(_agent_gone, RINGING, WAITING, ENDED),
    (CONNECTED, Ev.AGENT_LEG_GONE): _row(_agent_gone, CONNECTED, ENDED),
    (TRANSFERRING, Ev.AGENT_LEG_GONE): _row(_agent_gone, TRANSFERRING),
    **{(s, Ev.REMOTE_LEG_GONE): _row(_remote_gone, s, ENDED) for s in LIVE},
    # An agent answers: answer the caller, quiet it, make the bridge, then bridge them.
    **{(s, Ev.AGENT_ANSWERED): _row(_agent_answered, s) for s in LIVE},
    **{(s, Ev.AGENT_BRIDGE_READY): _row(_agent_bridge_ready, s) for s in LIVE},
    **{(s, Ev.AGENT_BRIDGED): _row(_agent_bridged, CONNECTED) for s in LIVE},
    **{(s, Ev.CONNECT_FAILED): _row(_connect_failed, s, WAITING, RINGING, ENDED) for s in LIVE},
    (RINGING, Ev.RING_FAILED): _row(_ring_failed, WAITING),
    (WAITING, Ev.HELD): _row(_held, WAITING),
    (CONNECTED, Ev.ADOPT_BRIDGE_READY): _row(_adopt_bridge_ready, CONNECTED),
    (CONNECTED, Ev.ADOPTED): _row(_adopted, CONNECTED),
    (CONNECTED, Ev.ADOPT_FAILED): _row(_adopt_failed, CONNECTED, ENDED),
    # The transfer machine's news about the call.
    (TRANSFERRING, Ev.RELEASE_HOLD): _row(_release_hold, WAITING, RINGING),
    **{(s, Ev.TRANSFER_STARTED): _row(_transfer_started, s) for s in LIVE},
    **{(s, Ev.TRANSFER_RESUMED): _row(_transfer_resumed, s, TRANSFERRING) for s in LIVE},
    **{(s, Ev.DETACH): _row(_detach, TRANSFERRING) for s in LIVE},
    **{(s, Ev.RINGBACK_SET): _row(_ringback_set, s) for s in LIVE},
    **{(s, Ev.BRIDGE_MADE): _row(_bridge_made, s) for s in LIVE},
    **{(s, Ev.REMOTE_JOINED): _row(_remote_joined, CONNECTED) for s in LIVE},
    **{(s, Ev.DROP_AGENT): _row(_drop_agent, s) for s in LIVE},
    **{(s, Ev.RETURNED): _row(_returned, s, WAITING, RINGING) for s in LIVE},
    **{(s, Ev.TRANSFER_ENDED): _row(_transfer_ended, s, CONNECTED) for s in LIVE},
    # The self-service menu of a surge (the caller's keys count only there).
    (WAITING, Ev.CALLER_KEY): _row(_caller_key, WAITING, ENDED),
    (RINGING, Ev.CALLER_KEY): _row(_caller_key, RINGING, ENDED),
    (WAITING, Ev.PROMPT_DONE): _row(_prompt_done, WAITING),
    (RINGING, Ev.PROMPT_DONE): _row(_prompt_done, RINGING),
}

# The pairs that change nothing, and why.
IGNORED: dict[tuple[CallState, Ev], str] = {
    **{(ENDED, e): "the call is over" for e in CALL_EVENTS if e != Ev.AGENT_ANSWERED},
    **{(s, Ev.RING_FAILED): "no agent being rung" for s in (WAITING, CONNECTED, TRANSFERRING)},
    **{(s, Ev.HELD): "an agent took the caller meanwhile" for s in
       (RINGING, CONNECTED, TRANSFERRING)},
    **{(s, e): "only an adopted (connected) call is adopted" for s in
       (WAITING, RINGING, TRANSFERRING)
       for e in (Ev.ADOPT_BRIDGE_READY, Ev.ADOPTED, Ev.ADOPT_FAILED)},
    **{(s, Ev.RELEASE_HOLD): "only a screened caller is on hold for a transfer" for s in
       (WAITING, RINGING, CONNECTED)},
    **{(s, Ev.CALLER_KEY): "the caller's keys do nothing once an agent or a transfer has them"
       for s in (CONNECTED, TRANSFERRING)},
    **{(s, Ev.PROMPT_DONE): "an agent or a transfer has the caller now" for s in
       (CONNECTED, TRANSFERRING)},
}
# An agent answering for a call that ended: that leg is hung up (the only ENDED row).
TRANSITIONS[(ENDED, Ev.AGENT_ANSWERED)] = _row(
    lambda d, call, now, a: _stray_answer(d, now, a.leg), ENDED)


def step(d: Desk, event: Ev, now: float, detail: object) -> list[Command]:
    """Apply one event to the desk; returns the commands, in order."""
    if event in DESK_EVENTS:
        kind, handler = DESK_EVENTS[event]
        if not isinstance(detail, kind):
            raise TypeError(f"{event} carries {kind.__name__}, not {type(detail).__name__}")
        return handler(d, now, detail)
    kind = DETAILS[event]
    if not isinstance(detail, kind):
        raise TypeError(f"{event} carries {kind}, not {type(detail).__name__}")
    call = d.calls.get(detail.caller)
    state = call.state if call is not None else ENDED
    if (state, event) in IGNORED:
        return []
    row = TRANSITIONS[(state, event)]
    if call is None:
        call = Call(detail.caller, "", "", now, state=ENDED)    # a stand-in: nothing to change
    cmds = row.handler(d, call, now, detail)
    check_move(row, state, event, call.state)
    return cmds
