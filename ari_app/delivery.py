"""Agent delivery: a caller that enters ``Stasis(<app>,inbound)`` is connected to a free agent.

Rules:

* The caller is answered at once and hears ringback while an agent rings, music on hold while no
  agent is free. Callers are served in arrival order.
* A free agent is one of the hotline's configured agents that is registered (endpoint online),
  has no channel on the PBX and is not being rung by us; the one idle longest is chosen.
* An agent who does not answer within ``timeouts.agent_ring`` (or is busy, or rejects) is skipped
  and the next free agent is tried; when every free agent was tried, the caller holds and the
  round starts again after ``timeouts.no_agent_retry``.
* When the agent answers, caller and agent meet in a ``mixing,dtmf_events`` bridge (DTMF events
  are what the transfer keys are built on). Whoever hangs up first ends the call: every other leg
  is hung up and the bridge destroyed. Nothing is left behind on the PBX.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import structlog

from hotline_link.settings import Hotline, Timeouts

from .client import AriClient, AriError, AriNotFound

log = structlog.get_logger("delivery")

WAITING, RINGING, CONNECTED = "waiting", "ringing", "connected"


@dataclass
class Call:
    caller: str                 # caller's channel id
    number: str                 # caller's number (personal data: masked in logs)
    call_id: str                # Asterisk linkedid, stable across every leg of the call
    arrived: float
    state: str = WAITING
    agent: str | None = None    # endpoint name of the agent rung or connected
    agent_leg: str | None = None
    bridge: str | None = None
    tried: set[str] = field(default_factory=set)
    holding: bool = False       # music on hold playing
    ringing: bool = False       # ringback playing
    held_since: float = 0.0


class Delivery:
    def __init__(self, ari: AriClient, hotline: Hotline, timeouts: Timeouts):
        self.ari = ari
        self.hotline = hotline
        self.timeouts = timeouts
        self.calls: dict[str, Call] = {}         # by caller channel id
        self.legs: dict[str, str] = {}           # agent channel id -> caller channel id
        self.reserved: set[str] = set()          # agents we are ringing or have connected
        self.idle_since: dict[str, float] = {}   # agent -> when their last call ended
        self.log = log.bind(hotline=hotline.id)

    # --- events ---------------------------------------------------------------------------------
    async def caller_arrived(self, channel: dict) -> None:
        number = channel.get("caller", {}).get("number", "")
        call = Call(caller=channel["id"], number=number,
                    call_id=channel.get("linkedid") or channel["id"], arrived=time.monotonic())
        self.calls[call.caller] = call
        self.log.info("caller arrived", call_id=call.call_id, caller=number)
        try:
            await self.ari.post(f"/channels/{call.caller}/answer")
        except AriNotFound:
            await self.caller_gone(call.caller)
            return
        await self.dispatch()

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
            bridge = await self.ari.post("/bridges", type="mixing,dtmf_events",
                                         name=f"call-{call.call_id}")
            call.bridge = bridge["id"]
            await self._quiet_caller(call)
            await self.ari.post(f"/bridges/{call.bridge}/addChannel",
                                channel=[call.caller, leg])
        except AriError as exc:
            # A leg hung up while we bridged (ARI says 400 "Channel not found" for addChannel).
            caller_there, leg_there = await self._exists(call.caller), await self._exists(leg)
            clog.info("bridging failed", error=str(exc), caller_there=caller_there,
                      agent_there=leg_there)
            if caller_there:
                await self.ari.delete_quietly(f"/bridges/{call.bridge}")
                call.bridge = None
                await self.ari.delete_quietly(f"/channels/{leg}")
                await self.agent_leg_gone(leg)
            else:
                await self.end_call(call)
            return
        call.state = CONNECTED
        clog.info("agent connected", wait_s=round(time.monotonic() - call.arrived, 3))

    async def channel_gone(self, channel_id: str) -> None:
        if channel_id in self.calls:
            await self.caller_gone(channel_id)
        elif channel_id in self.legs:
            await self.agent_leg_gone(channel_id)

    async def caller_gone(self, caller_id: str) -> None:
        call = self.calls.get(caller_id)
        if call is None:
            return
        self.log.info("caller hung up", call_id=call.call_id, state=call.state)
        await self.end_call(call)

    async def agent_leg_gone(self, leg: str) -> None:
        caller_id = self.legs.pop(leg, None)
        call = self.calls.get(caller_id) if caller_id else None
        if call is None or call.agent_leg != leg:
            return
        agent = call.agent
        self._release(agent)
        call.agent = call.agent_leg = None
        if call.state == CONNECTED:
            self.log.info("agent hung up", call_id=call.call_id, agent=agent)
            await self.end_call(call)
            return
        self.log.info("agent did not answer", call_id=call.call_id, agent=agent)
        call.state = WAITING
        await self.dispatch()

    async def tick(self) -> None:
        """Periodic: callers on hold get another round of agents."""
        now = time.monotonic()
        for call in self.calls.values():
            if call.state == WAITING and call.holding and call.tried and \
                    now - call.held_since >= self.timeouts.no_agent_retry:
                call.tried.clear()
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
            choice = next((a for a in free if a not in call.tried), None)
            if choice is None:
                await self._hold(call)
                continue
            free.remove(choice)
            await self._ring_agent(call, choice)

    async def free_agents(self) -> list[str]:
        endpoints = await self.ari.get("/endpoints/PJSIP")
        online = {e["resource"] for e in endpoints
                  if e.get("state") == "online" and not e.get("channel_ids")}
        free = [a for a in self.hotline.agents if a in online and a not in self.reserved]
        # Never-used agents first (idle since 0), then the longest idle; ties keep config order.
        return sorted(free, key=lambda a: self.idle_since.get(a, 0.0))

    async def _ring_agent(self, call: Call, agent: str) -> None:
        leg = f"{call.call_id}-{agent}-{uuid.uuid4().hex[:8]}"
        call.tried.add(agent)
        call.state, call.agent, call.agent_leg = RINGING, agent, leg
        self.reserved.add(agent)
        self.legs[leg] = call.caller
        clog = self.log.bind(call_id=call.call_id, agent=agent)
        try:
            if call.holding:
                await self.ari.delete_quietly(f"/channels/{call.caller}/moh")
                call.holding = False
            if not call.ringing:
                await self.ari.post(f"/channels/{call.caller}/ring")
                call.ringing = True
            await self.ari.post(
                "/channels", endpoint=f"PJSIP/{agent}", app=self.ari.app,
                appArgs=f"agent,{call.caller}", callerId=call.number,
                timeout=max(1, round(self.timeouts.agent_ring)), channelId=leg,
                originator=call.caller)
        except AriError as exc:
            clog.warning("cannot ring agent", error=str(exc))
            self.legs.pop(leg, None)
            self._release(agent)
            call.state, call.agent, call.agent_leg = WAITING, None, None
            return
        clog.info("ringing agent")

    async def _hold(self, call: Call) -> None:
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

    async def end_call(self, call: Call) -> None:
        self.calls.pop(call.caller, None)
        if call.agent_leg:
            self.legs.pop(call.agent_leg, None)
            await self.ari.delete_quietly(f"/channels/{call.agent_leg}")
        self._release(call.agent)
        await self.ari.delete_quietly(f"/channels/{call.caller}")
        if call.bridge:
            await self.ari.delete_quietly(f"/bridges/{call.bridge}")
        await self.dispatch()

    async def _exists(self, channel_id: str) -> bool:
        try:
            await self.ari.get(f"/channels/{channel_id}")
            return True
        except AriNotFound:
            return False

    def _release(self, agent: str | None) -> None:
        if agent is not None and agent in self.reserved:
            self.reserved.discard(agent)
            self.idle_since[agent] = time.monotonic()

    async def reconcile(self) -> None:
        """After a (re)connect: forget calls whose channels are gone (events were missed)."""
        try:
            live = {c["id"] for c in await self.ari.get("/channels")}
        except AriError as exc:
            self.log.warning("reconcile failed", error=str(exc))
            return
        for call in list(self.calls.values()):
            if call.caller not in live:
                await self.end_call(call)
            elif call.agent_leg and call.agent_leg not in live:
                await self.agent_leg_gone(call.agent_leg)
