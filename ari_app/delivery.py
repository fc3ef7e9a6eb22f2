"""Agent delivery: a caller that enters ``Stasis(<app>,inbound)`` is connected to a free agent.

Rules:

* A caller is answered at once and hears ringback while an agent rings, music on hold while no
  agent is free. Callers are served in arrival order.
* A *transferred* caller (an inbound trunk call carrying ``X-Hotline-Transfer-Id``) is not answered
  until one of our agents answers: the platform that transferred it must see busy, no answer or
  rejection as such, and falls back on its side (R3). With no free agent at all it is refused as
  busy; an agent declining it (603) rejects the transfer; otherwise agents are tried in turn until
  the other side gives up. The agent's phone gets the ``X-Hotline-*`` headers.
* A free agent is one of the hotline's agents that is registered (endpoint online), has no channel
  on the PBX and is not being rung by us (known from the phones' device states, which the app
  watches); the one idle longest is chosen, except that a caller handed back after a failed
  transfer tries the agent who transferred it first.
* An agent who does not answer within ``timeouts.agent_ring`` (or is busy, or rejects) is skipped
  and the next free agent is tried; when every free agent was tried, the caller holds and the
  round starts again after ``timeouts.no_agent_retry``.
* Caller and agent meet in a ``mixing,dtmf_events`` bridge (DTMF events carry the agents' keys).
  A call has at most one local agent leg and one remote leg (the other platform, after a transfer).
  The call ends, every leg hung up and the bridge destroyed, when the caller hangs up or when no
  party but the caller is left. Nothing is left behind on the PBX.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import structlog

from contracts import sip
from contracts.sip import HEADERS
from contracts.vocab import LiveEvent
from hotline_link.settings import Hotline, Timeouts

from .client import AriClient, AriError, AriNotFound

log = structlog.get_logger("delivery")

WAITING, RINGING, CONNECTED, TRANSFERRING = "waiting", "ringing", "connected", "transferring"
AGENT, REMOTE = "agent", "remote"
# ISDN causes of a leg that ended (ChannelDestroyed.cause).
CAUSE_BUSY, CAUSE_REJECTED = 17, 21


@dataclass
class Call:
    caller: str                 # caller's channel id
    number: str                 # caller's number (personal data: masked in logs)
    call_id: str                # Asterisk linkedid, stable across every leg of the call
    arrived: float
    state: str = WAITING
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

    @property
    def transferred_in(self) -> bool:
        return sip.TRANSFER_ID in self.headers


class Delivery:
    def __init__(self, ari: AriClient, hotline: Hotline, timeouts: Timeouts):
        self.ari = ari
        self.hotline = hotline
        self.timeouts = timeouts
        self.calls: dict[str, Call] = {}                 # by caller channel id
        self.legs: dict[str, tuple[str, str]] = {}       # leg id -> (caller channel id, role)
        self.reserved: set[str] = set()                  # agents we ring or have connected
        self.idle_since: dict[str, float] = {}           # agent -> when their last call ended
        # Agent -> free (registered, no call) as the PBX last said, kept current by device-state
        # events; None until the first look after a (re)connect: then each delivery asks the PBX.
        self.agent_free: dict[str, bool] | None = None
        self.on_answered_transfer = None                 # async (transfer_id, agent) -> None
        self.on_event = None                             # async (kind, fields) -> None: desktops
        self._later: set[asyncio.Task] = set()           # deferred hang-ups (see detach_agent)
        self.log = log.bind(hotline=hotline.id)

    async def _event(self, kind: str, call: Call, agent: str | None) -> None:
        if self.on_event is None:
            return
        h = call.headers
        transfer = ({"transfer_id": h[sip.TRANSFER_ID], "origin": h.get(sip.ORIGIN),
                     "category": h.get(sip.CATEGORY), "emergency": h.get(sip.EMERGENCY) == "1"}
                    if call.transferred_in else None)
        await self.on_event(kind, {"agent": agent, "call_id": call.call_id,
                                   "caller_number": call.number, "transfer": transfer})

    # --- lookups used by the transfer adapter -------------------------------------------------
    def call_of_agent_leg(self, leg: str) -> Call | None:
        owner = self.legs.get(leg)
        if owner is None or owner[1] != AGENT:
            return None
        call = self.calls.get(owner[0])
        return call if call is not None and call.agent_leg == leg else None

    # --- events ---------------------------------------------------------------------------------
    async def caller_arrived(self, channel: dict, *, hold: bool = False,
                             headers: dict[str, str] | None = None) -> Call | None:
        """A caller entered the application. ``hold``: answer, but give them to no agent yet (a
        screened caller about to be transferred; see ``release_hold``). ``headers``: the
        X-Hotline-* headers of a trunk call as the dialplan passed them; read from the channel
        when it did not."""
        number = channel.get("caller", {}).get("number", "")
        call = Call(caller=channel["id"], number=number,
                    call_id=channel.get("linkedid") or channel["id"], arrived=time.monotonic(),
                    state=TRANSFERRING if hold else WAITING)
        self.calls[call.caller] = call
        clog = self.log.bind(call_id=call.call_id)
        try:
            if channel.get("name", "").startswith("PJSIP/trunk-"):
                call.headers = ({k: v for k, v in headers.items() if k in HEADERS and v}
                                if headers is not None else await self._read_headers(call.caller))
            if (channel.get("channelvars") or {}).get("HOTLINE_ROLE") != "caller":
                await self.ari.post(f"/channels/{call.caller}/variable", variable="HOTLINE_ROLE",
                                    value="caller")
            if call.transferred_in:
                clog = clog.bind(transfer_id=call.headers[sip.TRANSFER_ID])
                clog.info("transferred caller arrived", caller=number,
                          origin=call.headers.get(sip.ORIGIN))
                if not await self.free_agents():
                    clog.info("no free agent: transfer refused as busy")
                    await self._refuse(call, "busy")
                    return None
                await self.ari.post(f"/channels/{call.caller}/ring")
                call.ringing = True
            else:
                clog.info("caller arrived", caller=number)
                await self.ari.post(f"/channels/{call.caller}/answer")
                call.answered = True
        except AriNotFound:
            await self.caller_gone(call.caller)
            return None
        await self.dispatch()
        return call

    async def release_hold(self, call: Call) -> None:
        call.state = WAITING
        await self.dispatch()

    async def _read_headers(self, channel_id: str) -> dict[str, str]:
        headers = {}
        for name in HEADERS:
            try:
                value = (await self.ari.get(f"/channels/{channel_id}/variable",
                                            variable=f"PJSIP_HEADER(read,{name})")).get("value")
            except AriError:
                value = None
            if value:
                headers[name] = value
        return headers

    async def agent_answered(self, channel: dict, caller_id: str) -> None:
        leg = channel["id"]
        call = self.calls.get(caller_id)
        if call is None or call.agent_leg != leg:
            # The caller left (or another agent got there first) while this phone rang.
            self.legs.pop(leg, None)
            await self.ari.delete_quietly(f"/channels/{leg}")
            return
        clog = self.log.bind(call_id=call.call_id, agent=call.agent)
        try:
            if call.transferred_in and self.on_answered_transfer is not None:
                await self.on_answered_transfer(call.headers[sip.TRANSFER_ID], call.agent)
            if not call.answered:
                await self.ari.post(f"/channels/{call.caller}/answer")
                call.answered = True
            await self._quiet_caller(call)
            if call.bridge is None:
                bridge = await self.ari.post("/bridges", type="mixing,dtmf_events",
                                             name=f"call-{call.call_id}")
                call.bridge = bridge["id"]
            await self.ari.post(f"/bridges/{call.bridge}/addChannel",
                                channel=[call.caller, leg])
        except AriError as exc:
            # A leg hung up while we bridged (ARI says 400 "Channel not found" for addChannel).
            caller_there, leg_there = await self.ari.channel_exists(call.caller), await self.ari.channel_exists(leg)
            clog.info("bridging failed", error=str(exc), caller_there=caller_there,
                      agent_there=leg_there)
            if caller_there:
                await self.ari.delete_quietly(f"/channels/{leg}")
                await self.agent_leg_gone(leg, cause=0)
            else:
                await self.end_call(call)
            return
        call.state = CONNECTED
        call.agent_since = time.monotonic()
        await self._event(LiveEvent.AGENT_CONNECTED, call, call.agent)
        clog.info("agent connected", wait_s=round(time.monotonic() - call.arrived, 3))

    async def channel_gone(self, channel_id: str, cause: int = 0) -> None:
        if channel_id in self.calls:
            await self.caller_gone(channel_id)
            return
        owner = self.legs.get(channel_id)
        if owner is None:
            return
        if owner[1] == AGENT:
            await self.agent_leg_gone(channel_id, cause)
        else:
            await self.remote_leg_gone(channel_id)

    async def caller_gone(self, caller_id: str) -> None:
        call = self.calls.get(caller_id)
        if call is None:
            return
        self.log.info("caller hung up", call_id=call.call_id, state=call.state)
        await self.end_call(call)

    async def agent_leg_gone(self, leg: str, cause: int = 0) -> None:
        owner = self.legs.pop(leg, None)
        call = self.calls.get(owner[0]) if owner else None
        if call is None or call.agent_leg != leg:
            return
        agent = call.agent
        self._release(agent)
        call.agent = call.agent_leg = None
        clog = self.log.bind(call_id=call.call_id, agent=agent)
        if call.state == CONNECTED:
            if call.remote_leg:
                clog.info("agent left; caller stays with the other platform")
                return
            clog.info("agent hung up")
            await self.end_call(call)
            return
        if call.state == TRANSFERRING:
            return
        if call.transferred_in and cause == CAUSE_REJECTED:
            clog.info("agent declined the transferred call")
            await self._refuse(call, "rejected")
            return
        clog.info("agent did not answer", cause=cause)
        call.state = WAITING
        await self.dispatch()

    async def remote_leg_gone(self, leg: str) -> None:
        owner = self.legs.pop(leg, None)
        call = self.calls.get(owner[0]) if owner else None
        if call is None or call.remote_leg != leg:
            return
        call.remote_leg = None
        if call.agent_leg and call.state == CONNECTED:
            self.log.info("other platform left; back to two parties", call_id=call.call_id)
            return
        self.log.info("other platform hung up", call_id=call.call_id)
        await self.end_call(call)

    async def tick(self) -> None:
        """Periodic: callers on hold get another round of agents."""
        now = time.monotonic()
        for call in self.calls.values():
            if call.state == WAITING and call.tried and \
                    (call.holding or call.transferred_in) and \
                    now - call.held_since >= self.timeouts.no_agent_retry:
                call.tried.clear()
        await self.dispatch()

    # --- the transfer adapter's hooks ---------------------------------------------------------
    async def detach_agent(self, call: Call, *, grace: float = 0.0) -> None:
        """Release the agent from a call that is being transferred away (blind transfer).

        ``grace`` leaves the agent's channel up that long so the phone hangs up itself: after a
        REFER the phone holds a transfer subscription, and tearing its dialog down from our side
        while that subscription is alive is the pattern behind PJSIP's REFER teardown crashes."""
        leg, agent = call.agent_leg, call.agent
        call.state = TRANSFERRING
        if leg:
            self.legs.pop(leg, None)
            self._release(agent)
            call.agent = call.agent_leg = None
            if call.bridge:
                try:
                    await self.ari.post(f"/bridges/{call.bridge}/removeChannel",
                                        channel=call.caller)
                except AriError:
                    pass
            if grace > 0:
                task = asyncio.create_task(self._hang_up_later(leg, grace))
                self._later.add(task)
                task.add_done_callback(self._later.discard)
            else:
                await self.ari.delete_quietly(f"/channels/{leg}")

    async def _hang_up_later(self, leg: str, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.ari.delete_quietly(f"/channels/{leg}")

    async def drop_agent(self, call: Call) -> None:
        """The agent leaves a three-way call; the caller stays with the other platform."""
        leg, agent = call.agent_leg, call.agent
        if leg:
            self.legs.pop(leg, None)
            self._release(agent)
            call.agent = call.agent_leg = None
            await self.ari.delete_quietly(f"/channels/{leg}")

    async def adopt_bridged(self, caller: dict, leg: dict, agent: str) -> Call | None:
        """A call the centre's own Queue() bridged, handed over by the AGI ``key`` command: bridge
        caller and agent again and own the call from now on, exactly as if we had delivered it.
        Returns None when one side left during the hand-over (then nobody is stranded: a caller
        alone waits for the next agent here, an agent alone is released)."""
        now = time.monotonic()
        call = Call(caller=caller["id"], number=caller.get("caller", {}).get("number", ""),
                    call_id=caller.get("linkedid") or caller["id"], arrived=now,
                    state=CONNECTED, answered=True, agent=agent, agent_leg=leg["id"],
                    agent_since=now)
        self.calls[call.caller] = call
        self.legs[leg["id"]] = (call.caller, AGENT)
        self.reserved.add(agent)
        clog = self.log.bind(call_id=call.call_id, agent=agent)
        try:
            await self.ari.post(f"/channels/{call.caller}/variable", variable="HOTLINE_ROLE",
                                value="caller")
            for name, value in (("PJSIP_TRANSFER_HANDLING()", "ari-only"),
                                ("HOTLINE_ROLE", AGENT), ("HOTLINE_CALLER", call.caller),
                                ("HOTLINE_AGENT", agent)):
                await self.ari.post(f"/channels/{leg['id']}/variable", variable=name, value=value)
            bridge = await self.ari.post("/bridges", type="mixing,dtmf_events",
                                         name=f"call-{call.call_id}")
            call.bridge = bridge["id"]
            await self.ari.post(f"/bridges/{call.bridge}/addChannel", channel=[call.caller, leg["id"]])
        except AriError as exc:
            clog.info("taking over a queue call failed", error=str(exc))
            if not await self.ari.channel_exists(leg["id"]):
                await self.agent_leg_gone(leg["id"], cause=0)
            elif not await self.ari.channel_exists(call.caller):
                await self.caller_gone(call.caller)
            return None
        clog.info("queue call taken over", caller=call.number)
        return call

    def adopt_remote(self, call: Call, leg: str) -> None:
        """The other platform answered a transfer of this call: its leg is part of the call."""
        call.remote_leg = leg
        call.state = CONNECTED
        call.transfer_id = None
        self.legs[leg] = (call.caller, REMOTE)

    async def return_to_origin(self, call: Call, prefer: str | None) -> None:
        """A transfer failed: the caller waits for an agent here again, ``prefer`` first."""
        call.state = WAITING
        call.transfer_id = None
        call.prefer = prefer
        call.tried.clear()
        call.ringing = True          # the transfer left ringback playing
        self.log.info("caller back to origin", call_id=call.call_id, prefer=prefer)
        await self.dispatch()

    # --- actions --------------------------------------------------------------------------------
    async def dispatch(self) -> None:
        """Offer free agents to waiting callers, oldest caller first."""
        waiting = sorted((c for c in self.calls.values() if c.state == WAITING),
                         key=lambda c: c.arrived)
        if not waiting:
            return
        try:
            free = await self.free_agents()
        except AriError as exc:
            self.log.warning("cannot list agents", error=str(exc))
            free = []
        for call in waiting:
            choices = [a for a in free if a not in call.tried]
            if call.prefer in choices:
                choices.remove(call.prefer)
                choices.insert(0, call.prefer)
            if not choices:
                await self._hold(call)
                continue
            free.remove(choices[0])
            await self._ring_agent(call, choices[0])

    async def watch_agents(self) -> None:
        """After each (re)connect: subscribe to the agents' device states, then take one look at
        their endpoints. From then on a delivery needs no request to know who is free; listing
        every PJSIP endpoint per delivery was the largest share of the app's CPU under load.
        Device state, not endpoint, subscriptions: an endpoint subscription also forwards every
        event of the agent's channels, which the app already receives once."""
        self.agent_free = None
        sources = [f"deviceState:PJSIP/{a}" for a in self.hotline.agents]
        try:
            await self.ari.post(f"/applications/{self.ari.app}/subscription",
                                json_body={"eventSource": sources})
            free = await self._free_on_pbx()
        except AriError as exc:
            self.log.warning("cannot watch agents' states; asking the PBX at each delivery",
                             error=str(exc))
            return
        self.agent_free = {a: a in free for a in self.hotline.agents}

    async def _free_on_pbx(self) -> set[str]:
        """The PJSIP endpoints that are registered and have no channel, as the PBX lists them."""
        endpoints = await self.ari.get("/endpoints/PJSIP")
        return {e["resource"] for e in endpoints
                if e.get("state") == "online" and not e.get("channel_ids")}

    def device_state(self, name: str, state: str) -> bool:
        """A ``DeviceStateChanged`` of an agent's phone; True when it has just become free."""
        agent = name.partition("/")[2]
        if self.agent_free is None or agent not in self.agent_free:
            return False
        was, now = self.agent_free[agent], state == "NOT_INUSE"
        self.agent_free[agent] = now
        if now != was:
            self.log.debug("agent state", agent=agent, state=state, free=now)
        return now and not was

    async def free_agents(self) -> list[str]:
        if self.agent_free is not None:
            online = {a for a, free in self.agent_free.items() if free}
        else:
            online = await self._free_on_pbx()
        free = [a for a in self.hotline.agents if a in online and a not in self.reserved]
        # Never-used agents first (idle since 0), then the longest idle; ties keep config order.
        return sorted(free, key=lambda a: self.idle_since.get(a, 0.0))

    async def _ring_agent(self, call: Call, agent: str) -> None:
        leg = f"{call.call_id}-{agent}-{uuid.uuid4().hex[:8]}"
        call.tried.add(agent)
        call.state, call.agent, call.agent_leg = RINGING, agent, leg
        self.reserved.add(agent)
        self.legs[leg] = (call.caller, AGENT)
        clog = self.log.bind(call_id=call.call_id, agent=agent)
        variables = {
            # The phone's own transfer key (REFER) becomes a ChannelTransfer event for us.
            "PJSIP_TRANSFER_HANDLING()": "ari-only",
            "HOTLINE_ROLE": AGENT, "HOTLINE_CALLER": call.caller, "HOTLINE_AGENT": agent,
        }
        for name, value in call.headers.items():
            variables[f"PJSIP_HEADER(add,{name})"] = value
        try:
            if call.holding:
                await self.ari.delete_quietly(f"/channels/{call.caller}/moh")
                call.holding = False
            if not call.ringing:
                await self.ari.post(f"/channels/{call.caller}/ring")
                call.ringing = True
            await self.ari.post(
                "/channels", json_body={"variables": variables}, endpoint=f"PJSIP/{agent}",
                app=self.ari.app, appArgs=f"agent,{call.caller}", callerId=call.number,
                timeout=max(1, round(self.timeouts.agent_ring)), channelId=leg,
                originator=call.caller)
        except AriError as exc:
            clog.warning("cannot ring agent", error=str(exc))
            self.legs.pop(leg, None)
            self._release(agent)
            call.state, call.agent, call.agent_leg = WAITING, None, None
            return
        clog.info("ringing agent")
        # The screen-pop: the agent's desktop learns who rings, and why, before they answer.
        await self._event(LiveEvent.AGENT_RINGING, call, agent)

    async def _hold(self, call: Call) -> None:
        if call.transferred_in:
            # Not answered: keep the other platform hearing ringback while agents free up.
            call.held_since = call.held_since or time.monotonic()
            return
        if call.holding:
            return
        if call.ringing:
            await self.ari.delete_quietly(f"/channels/{call.caller}/ring")
            call.ringing = False
        try:
            await self.ari.post(f"/channels/{call.caller}/moh", mohClass="default")
        except AriNotFound:
            return
        call.holding = True
        call.held_since = time.monotonic()
        self.log.info("no free agent, caller holds", call_id=call.call_id)

    async def _quiet_caller(self, call: Call) -> None:
        if call.holding:
            await self.ari.delete_quietly(f"/channels/{call.caller}/moh")
            call.holding = False
        if call.ringing:
            await self.ari.delete_quietly(f"/channels/{call.caller}/ring")
            call.ringing = False

    async def _refuse(self, call: Call, reason: str) -> None:
        """Refuse an unanswered transferred call (busy -> SIP 486, rejected -> SIP 403)."""
        await self.end_call(call, reason=reason)

    async def end_call(self, call: Call, reason: str | None = None) -> None:
        """End every leg. The caller's channel is hung up exactly once: a second DELETE
        racing the first would replace its cause (and the SIP code the other side sees)."""
        self.calls.pop(call.caller, None)
        for leg in (call.agent_leg, call.remote_leg):
            if leg:
                self.legs.pop(leg, None)
                await self.ari.delete_quietly(f"/channels/{leg}")
        self._release(call.agent)
        await self.ari.delete_quietly(f"/channels/{call.caller}", reason=reason)
        if call.bridge:
            await self.ari.delete_quietly(f"/bridges/{call.bridge}")
        await self.dispatch()

    def _release(self, agent: str | None) -> None:
        if agent is not None and agent in self.reserved:
            self.reserved.discard(agent)
            self.idle_since[agent] = time.monotonic()

    # --- after a (re)connect ----------------------------------------------------------------------
    async def reconcile(self, channels: list[dict], bridges: list[dict]) -> None:
        """Events were missed (or the app restarted): rebuild the view of live calls from the
        channels and bridges that exist, and clean up what cannot go on."""
        live = {c["id"]: c for c in channels}
        for call in list(self.calls.values()):
            if call.caller not in live:
                await self.end_call(call)
            elif call.agent_leg and call.agent_leg not in live:
                await self.agent_leg_gone(call.agent_leg)
            elif call.remote_leg and call.remote_leg not in live:
                await self.remote_leg_gone(call.remote_leg)
        bridge_of = {ch: b for b in bridges for ch in b.get("channels", [])}
        for ch in channels:
            role = (ch.get("channelvars") or {}).get("HOTLINE_ROLE")
            if role == "caller" and ch["id"] not in self.calls:
                await self._adopt(ch, live, bridge_of.get(ch["id"]))
        for ch in channels:
            vars_ = ch.get("channelvars") or {}
            if vars_.get("HOTLINE_ROLE") != AGENT or ch["id"] in self.legs:
                continue
            call = self.calls.get(vars_.get("HOTLINE_CALLER", ""))
            if call is not None and call.state == WAITING and ch.get("state") != "Up":
                # Still ringing for a caller we know again: keep it. Asterisk enforces its ring
                # timeout, and its StasisStart arrives when the agent answers.
                call.state, call.agent, call.agent_leg = RINGING, vars_.get("HOTLINE_AGENT"), ch["id"]
                call.tried.add(call.agent)
                self.reserved.add(call.agent)
                self.legs[ch["id"]] = (call.caller, AGENT)
            else:
                # An agent leg nobody owns any more: left over from a call that is gone.
                await self.ari.delete_quietly(f"/channels/{ch['id']}")
        for b in bridges:
            if b.get("name", "").startswith("call-") and not b.get("channels"):
                await self.ari.delete_quietly(f"/bridges/{b['id']}")
        await self.dispatch()

    async def _adopt(self, ch: dict, live: dict, bridge: dict | None) -> None:
        call = Call(caller=ch["id"], number=ch.get("caller", {}).get("number", ""),
                    call_id=ch.get("linkedid") or ch["id"], arrived=time.monotonic(),
                    answered=ch.get("state") == "Up")
        self.calls[call.caller] = call
        if ch.get("name", "").startswith("PJSIP/trunk-"):
            call.headers = await self._read_headers(call.caller)
        if bridge is not None:
            call.bridge = bridge["id"]
            for other in bridge.get("channels", []):
                vars_ = (live.get(other, {}).get("channelvars") or {})
                if other == call.caller:
                    continue
                if vars_.get("HOTLINE_ROLE") == AGENT:
                    call.agent_leg, call.agent = other, vars_.get("HOTLINE_AGENT")
                    self.legs[other] = (call.caller, AGENT)
                    if call.agent:
                        self.reserved.add(call.agent)
                else:
                    call.remote_leg = other
                    self.legs[other] = (call.caller, REMOTE)
        if call.agent_leg or call.remote_leg:
            call.state = CONNECTED
        elif bridge is not None:
            # Alone in its call bridge: everyone else hung up while we were away, and a call
            # ends when only the caller is left.
            self.log.info("caller found alone in its call; ending it", call_id=call.call_id)
            await self.end_call(call)
            return
        elif (ch.get("channelvars") or {}).get("HOTLINE_TRANSFER"):
            call.state = TRANSFERRING          # the transfer adapter re-attaches it
            call.transfer_id = ch["channelvars"]["HOTLINE_TRANSFER"]
        self.log.info("call adopted after reconnect", call_id=call.call_id, state=call.state)
