"""The delivery adapter: ARI events about callers and agents -> the delivery machine's events.

The rules (who gets the caller, what waits, what rings, what is bridged, when the call ends)
are ``transfer.delivery``'s; this module only gathers the facts an event needs from the PBX (a
trunk call's ``X-Hotline-*`` headers, which agents are free after a connect, what exists after a
reconnect) and hands the event to the interpreter (``ari_app.interpreter``), which steps the
machine and carries out its commands. It never writes a ``Call``.
"""

from __future__ import annotations

import time

import structlog

from contracts import sip
from contracts.sip import HEADERS
from hotline_link.settings import Hotline
from transfer import delivery as dm
from transfer.callrecord import epoch
from transfer.delivery import Call

from .client import AriClient, AriError
from .interpreter import Interpreter, agents_on_pbx

log = structlog.get_logger("delivery")


class Delivery:
    def __init__(self, ari: AriClient, hotline: Hotline, desk: dm.Desk, interp: Interpreter):
        self.ari = ari
        self.hotline = hotline
        self.desk = desk
        self.interp = interp
        self.log = log.bind(hotline=hotline.id)

    @property
    def calls(self) -> dict[str, Call]:
        return self.desk.calls

    async def caller_arrived(self, channel: dict, *, hold: bool = False,
                             headers: dict[str, str] | None = None) -> Call | None:
        """A caller entered the application. ``hold``: answer, but give them to no agent yet (a
        screened caller about to be transferred; see ``release_hold``). ``headers``: the
        X-Hotline-* headers of a trunk call as the dialplan passed them; read from the channel
        when it did not. Returns the call, or None when it ended at once (refused, gone)."""
        caller = channel["id"]
        found: dict[str, str] = {}
        if channel.get("name", "").startswith(dm.TRUNK_PREFIX):
            found = ({k: v for k, v in headers.items() if k in HEADERS and v}
                     if headers is not None else await self._read_headers(caller))
        listed = None
        if sip.TRANSFER_ID in found and self.desk.agent_free is None:
            # Whether anyone can take a transferred caller decides whether to refuse it.
            listed = (await agents_on_pbx(self.ari)).free
        await self.interp.deliver(dm.Ev.ARRIVED, dm.Arrival(
            caller=caller, number=channel.get("caller", {}).get("number", ""),
            call_id=channel.get("linkedid") or caller, headers=found,
            role_set=(channel.get("channelvars") or {}).get("HOTLINE_ROLE") == "caller",
            hold=hold, listed=listed))
        return self.desk.calls.get(caller)

    async def release_hold(self, call: Call) -> None:
        await self.interp.deliver(dm.Ev.RELEASE_HOLD, dm.CallRef(call.caller))

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
        await self.interp.deliver(dm.Ev.AGENT_ANSWERED, dm.Leg(caller_id, channel["id"]))

    async def channel_gone(self, channel_id: str, cause: int = 0) -> None:
        await self.interp.deliver(dm.Ev.CHANNEL_GONE, dm.Gone(channel_id, cause))

    async def tick(self) -> None:
        """Periodic: callers on hold get another round of agents."""
        await self.interp.deliver(dm.Ev.TICK, dm.Tick())

    async def device_state(self, name: str, state: str) -> None:
        """A ``DeviceStateChanged`` of an agent's phone."""
        await self.interp.deliver(dm.Ev.DEVICE_STATE, dm.DeviceState(name, state))

    async def adopt_bridged(self, caller: dict, leg: dict, agent: str, action: str) -> None:
        """A call the centre's own Queue() bridged, handed over by the AGI ``key`` command: the
        machine bridges caller and agent again, owns the call from now on, and then runs the
        key's ``action`` on it. Nobody is stranded when one side left during the hand-over: a
        caller alone waits for the next agent here, an agent alone is released."""
        queue = caller.get("channelvars") or {}
        now = time.time()

        def ago(var: str) -> float | None:
            at = epoch(queue.get(var) or "")
            return None if at is None else now - at

        await self.interp.deliver(dm.Ev.ADOPT, dm.Adoption(
            caller=caller["id"], number=caller.get("caller", {}).get("number", ""),
            call_id=caller.get("linkedid") or caller["id"], leg=leg["id"], agent=agent,
            action=action, waited_s=ago("HOTLINE_ARRIVED"), answered_s=ago("HOTLINE_ANSWERED")))

    async def watch_agents(self) -> None:
        """After each (re)connect: subscribe to the agents' device states, then take one look at
        their endpoints. From then on a delivery needs no request to know who is free; listing
        every PJSIP endpoint per delivery was the largest share of the app's CPU under load.
        Device state, not endpoint, subscriptions: an endpoint subscription also forwards every
        event of the agent's channels, which the app already receives once."""
        sources = [f"deviceState:PJSIP/{a}" for a in self.desk.watched()]
        try:
            await self.ari.post(f"/applications/{self.ari.app}/subscription",
                                json_body={"eventSource": sources})
            seen = await agents_on_pbx(self.ari)
        except AriError as exc:
            self.log.warning("cannot watch agents' states; asking the PBX at each delivery",
                             error=str(exc))
            seen = dm.AgentsSeen(None)
        await self.interp.deliver(dm.Ev.AGENTS_SEEN, seen)

    async def reconcile(self, channels: list[dict], bridges: list[dict]) -> None:
        """Events were missed (or the app restarted): the machine rebuilds its view of live
        calls from the channels and bridges that exist; here, the headers of trunk callers it
        does not know yet."""
        headers = {}
        for ch in channels:
            if (ch.get("channelvars") or {}).get("HOTLINE_ROLE") == "caller" and \
                    ch["id"] not in self.desk.calls and \
                    ch.get("name", "").startswith(dm.TRUNK_PREFIX):
                headers[ch["id"]] = await self._read_headers(ch["id"])
        callers = {ch["id"] for ch in channels
                   if (ch.get("channelvars") or {}).get("HOTLINE_ROLE") == "caller"}
        known = await self.interp.calls.reconcile(callers, self.desk)
        await self.interp.deliver(dm.Ev.RECONCILE,
                                  dm.Found(tuple(channels), tuple(bridges), headers, known))
