"""The one interpreter: the commands of both machines (``transfer.delivery`` and
``transfer.machine``) become ARI requests here, and what those requests answer becomes the
machines' next events.

Following one key press, e.g. an agent's ``*1``: ``app.py`` receives ``ChannelDtmfReceived`` and
its handler (``_HANDLERS``) passes it to ``transfers.py``, which turns the digits into an action
and starts a transfer; ``transfer.machine.start`` returns commands (``ReleaseAgent``,
``Ringback``, ``Originate``, ``StartTimer``); ``apply_transfer`` below carries each out: a
command that concerns the caller's call is news for the delivery machine (``ReleaseAgent`` ->
its ``DETACH`` event, whose commands ``RemoveFromBridge``/``HangUp`` come back here), the others
are ARI requests (``POST /channels/{id}/ring``, ``POST /channels`` ...). A failed request that
matters is the machine's next event (``TARGET_FAILED``, a delivery ``Attempt``'s ``failed``).

Neither machine's state is written here: the interpreter reads ``Desk``/``Call``/``Transfer`` and
feeds events. Requests outside an ``Attempt`` (or a transfer command's own failure event) are
clean-up or best effort, e.g. hanging up a leg that may be gone already: their failures are
swallowed.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Awaitable, Callable

import structlog

from contracts.vocab import AlertKind, Trigger
from hotline_link import prompts
from transfer import delivery as dm
from transfer import machine as m

from .client import AriClient, AriConflict, AriError, AriNotFound

if TYPE_CHECKING:
    from .calls import CallBook
    from .transfers import Transfers

dlog = structlog.get_logger("delivery")
tlog = structlog.get_logger("transfer")

TIMER = "HotlineTimer"
REFER_HANGUP_GRACE = 2.0                     # a REFERring phone hangs up itself within this


ANNOUNCE = "announce-"


def announcement_id(t: m.Transfer) -> str:
    return f"{ANNOUNCE}{t.transfer_id}"


async def agents_on_pbx(ari: AriClient) -> dm.AgentsSeen:
    """The PJSIP endpoints that are registered (``online``) and those of them with no channel
    (``free``), as the PBX lists them."""
    endpoints = await ari.get("/endpoints/PJSIP")
    online = [e for e in endpoints if e.get("state") == "online"]
    return dm.AgentsSeen(free=frozenset(e["resource"] for e in online if not e.get("channel_ids")),
                         online=frozenset(e["resource"] for e in online))


class Interpreter:
    def __init__(self, ari: AriClient, hotline_id: str, desk: dm.Desk,
                 post: Callable[[dict], None],
                 publish: Callable[[str, dict], Awaitable[None]], calls: CallBook):
        self.ari = ari
        self.desk = desk
        self.calls = calls
        self.post = post                               # put an event on the app's queue
        self.publish = publish                         # a live event for desktops
        self.transfers: Transfers | None = None        # set by the transfer adapter
        self.timers: dict[str, asyncio.TimerHandle] = {}   # transfer id -> its ring timer
        self.later: set[asyncio.Task] = set()          # deferred hang-ups (HangUp.after)
        self.hotline_id = hotline_id
        self.log = dlog.bind(hotline=hotline_id)
        self.tlog = tlog.bind(hotline=hotline_id)

    # --- the delivery machine ---------------------------------------------------------------
    async def deliver(self, event: dm.Ev, detail: object) -> None:
        await self.run_delivery(dm.step(self.desk, event, time.monotonic(), detail))

    async def run_delivery(self, cmds: list[dm.Command]) -> None:
        for cmd in cmds:
            kind = type(cmd)
            if kind is dm.Log:
                getattr(self.log, cmd.level)(cmd.message, **cmd.fields)
            elif kind is dm.Attempt:
                await self._attempt(cmd)
            else:
                await self._delivery_request(cmd)

    async def _attempt(self, a: dm.Attempt) -> None:
        bridge = None
        catch = AriNotFound if a.only_gone else AriError
        for cmd in a.steps:
            if type(cmd) is dm.Log:
                getattr(self.log, cmd.level)(cmd.message, **cmd.fields)
                continue
            try:
                made = await self._delivery_request(cmd)
            except catch as exc:
                if a.failed is None:
                    self.log.info("request failed", request=type(cmd).__name__,
                                  call_id=self.desk.calls[a.caller].call_id
                                  if a.caller in self.desk.calls else None, error=str(exc))
                    return
                alive = frozenset([ch for ch in a.probe if await self.ari.channel_exists(ch)])
                await self.deliver(a.failed, dm.Failed(a.caller, a.leg, cmd, str(exc), alive))
                return
            if isinstance(cmd, dm.CreateBridge):
                bridge = made
        if a.then is not None:
            await self.deliver(a.then, dm.Done(a.caller, a.leg, bridge))

    async def _delivery_request(self, cmd: dm.Command) -> str | None:
        # By type, not a match over every kind: this runs for every command of every call.
        run = self._requests.get(type(cmd))
        if run is None:
            raise TypeError(f"not a delivery command: {cmd!r}")
        return await run(self, cmd)

    async def _set_var(self, cmd: dm.SetVar) -> None:
        # In the body: a transfer's trace (TRACE_VAR, its matter's text in it) may be
        # kilobytes, too long for a URL's query.
        await self.ari.post(f"/channels/{cmd.channel}/variable",
                            json_body={"variable": cmd.name, "value": cmd.value})

    async def _answer(self, cmd: dm.Answer) -> None:
        await self.ari.post(f"/channels/{cmd.channel}/answer")

    async def _ringback(self, cmd: dm.Ringback) -> None:
        await self.ari.post(f"/channels/{cmd.channel}/ring")

    async def _stop_ringback(self, cmd: dm.StopRingback) -> None:
        await self.ari.delete_quietly(f"/channels/{cmd.channel}/ring")

    async def _start_moh(self, cmd: dm.StartMOH) -> None:
        await self.ari.post(f"/channels/{cmd.channel}/moh", mohClass="default")

    async def _stop_moh(self, cmd: dm.StopMOH) -> None:
        await self.ari.delete_quietly(f"/channels/{cmd.channel}/moh")

    async def _ring_agent(self, cmd: dm.RingAgent) -> None:
        await self.ari.post(
            "/channels", json_body={"variables": cmd.variables}, endpoint=f"PJSIP/{cmd.agent}",
            app=self.ari.app, appArgs=f"agent,{cmd.caller}", callerId=cmd.caller_number,
            timeout=cmd.timeout, channelId=cmd.leg, originator=cmd.caller)

    async def _create_bridge(self, cmd: dm.CreateBridge) -> str:
        bridge = await self.ari.post("/bridges", type="mixing,dtmf_events", name=cmd.name)
        return bridge["id"]

    async def _add_to_bridge(self, cmd: dm.AddToBridge) -> None:
        await self.ari.post(f"/bridges/{cmd.bridge}/addChannel", channel=list(cmd.channels),
                            **({"absorbDTMF": "true"} if cmd.absorb_dtmf else {}))

    async def _remove_from_bridge(self, cmd: dm.RemoveFromBridge) -> None:
        try:
            await self.ari.post(f"/bridges/{cmd.bridge}/removeChannel", channel=cmd.channel)
        except AriError:
            pass

    async def _delete_bridge(self, cmd: dm.DeleteBridge) -> None:
        await self.ari.delete_quietly(f"/bridges/{cmd.bridge}")

    async def _hang_up(self, cmd: dm.HangUp) -> None:
        if cmd.after > 0:
            task = asyncio.create_task(self._hang_up_later(cmd.channel, cmd.after))
            self.later.add(task)
            task.add_done_callback(self.later.discard)
        else:
            await self.ari.delete_quietly(f"/channels/{cmd.channel}", reason=cmd.reason)

    async def _list_agents(self, cmd: dm.ListAgents) -> None:
        try:
            seen = await agents_on_pbx(self.ari)
        except AriError as exc:
            self.log.warning("cannot list agents", error=str(exc))
            seen = dm.AgentsSeen(None)
        await self.deliver(dm.Ev.AGENTS_LISTED, seen)

    async def _note_answering_agent(self, cmd: dm.NoteAnsweringAgent) -> None:
        await self.transfers.note_answering_agent(cmd.transfer_id, cmd.agent)

    async def _carry_matter(self, cmd: dm.CarryMatter) -> None:
        await self.transfers.carry_matter(cmd.matter_id, cmd.call_id)

    async def _key_action(self, cmd: dm.KeyAction) -> None:
        call = self.desk.calls.get(cmd.caller)
        if call is not None:
            await self.transfers.on_action(call, cmd.action)

    async def _call_note(self, cmd: dm.CallNote) -> None:
        self.calls.note(cmd.call)

    async def _call_ended(self, cmd: dm.CallEnded) -> None:
        await self.calls.ended(cmd)

    async def _publish(self, cmd: dm.Publish) -> None:
        await self.publish(cmd.kind, cmd.fields)

    async def _play(self, cmd: dm.Play) -> None:
        media = ",".join(prompts.media(name) for name in cmd.prompts)
        try:
            await self.ari.post(f"/channels/{cmd.channel}/play/{cmd.playback}", media=media)
        except AriError as exc:
            # No prompt is worth a silent caller: say it ended, so music comes back.
            self.log.warning("cannot play a prompt", prompts=list(cmd.prompts), error=str(exc))
            self.post({"type": "PlaybackFinished", "playback": {"id": cmd.playback}})

    async def _stop_play(self, cmd: dm.StopPlay) -> None:
        await self.ari.delete_quietly(f"/playbacks/{cmd.playback}")

    async def _surge(self, cmd: dm.Surge) -> None:
        await self.transfers.raise_alert({
            "kind": str(AlertKind.SURGE), "hotline": self.hotline_id,
            "state": "started" if cmd.on else "ended", "waiting": cmd.waiting,
            "longest_wait_s": cmd.longest_wait_s, "overflow": list(cmd.overflow),
            "lasted_s": cmd.lasted_s})

    async def _log(self, cmd: dm.Log) -> None:
        getattr(self.log, cmd.level)(cmd.message, **cmd.fields)

    _requests = {
        dm.SetVar: _set_var, dm.Answer: _answer, dm.Ringback: _ringback,
        dm.StopRingback: _stop_ringback, dm.StartMOH: _start_moh, dm.StopMOH: _stop_moh,
        dm.RingAgent: _ring_agent, dm.CreateBridge: _create_bridge,
        dm.AddToBridge: _add_to_bridge, dm.RemoveFromBridge: _remove_from_bridge,
        dm.DeleteBridge: _delete_bridge, dm.HangUp: _hang_up, dm.ListAgents: _list_agents,
        dm.NoteAnsweringAgent: _note_answering_agent, dm.KeyAction: _key_action,
        dm.CarryMatter: _carry_matter,
        dm.Publish: _publish, dm.Log: _log, dm.CallNote: _call_note,
        dm.CallEnded: _call_ended, dm.Surge: _surge, dm.Play: _play, dm.StopPlay: _stop_play,
    }

    async def _hang_up_later(self, leg: str, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.ari.delete_quietly(f"/channels/{leg}")

    # --- the transfer machine ---------------------------------------------------------------
    async def step_transfer(self, t: m.Transfer, ev: m.Ev, detail: m.Detail | None = None) -> None:
        await self.apply_transfer(t, m.step(t, ev, time.time(), detail))

    async def apply_transfer(self, t: m.Transfer, cmds: list[m.Command]) -> None:
        for cmd in cmds:
            await self._transfer_command(t, cmd)
        if t.state != m.State.DONE:
            self.transfers.persist(t)

    async def _transfer_command(self, t: m.Transfer, cmd: m.Command) -> None:
        caller = t.caller
        match cmd:
            case m.ReleaseAgent():
                if caller in self.desk.calls:
                    grace = REFER_HANGUP_GRACE if t.trigger == Trigger.REFER else 0.0
                    await self.deliver(dm.Ev.DETACH, dm.Detach(caller, grace))
            case m.Ringback(channel=ch, on=on, announce=announce):
                if on and announce:
                    # The prompt alone: ringback follows when it ends (``announced``), unless
                    # the target answered first. (A media list with the ringing tone after it
                    # cannot be stopped as one: a stop only moves it on to the next item, and a
                    # queued second playback was seen to start after its stop.)
                    await self._quietly(self.ari.post(f"/channels/{ch}/play/{announcement_id(t)}",
                                                      media=prompts.media(announce)))
                elif on:
                    await self._quietly(self.ari.post(f"/channels/{ch}/ring"))
                else:
                    if t.announce:
                        await self.ari.delete_quietly(f"/playbacks/{announcement_id(t)}")
                    await self.ari.delete_quietly(f"/channels/{ch}/ring")
                if caller in self.desk.calls:
                    await self.deliver(dm.Ev.RINGBACK_SET, dm.Tone(caller, on))
            case m.Originate():
                await self._originate(t, cmd)
            case m.Bridge():
                await self._bridge(t)
            case m.HangUp(channel=ch):
                self.transfers.forget_leg(ch)
                await self.ari.delete_quietly(f"/channels/{ch}")
            case m.StartTimer(name=name, deadline=deadline):
                loop = asyncio.get_running_loop()
                delay = max(0.0, deadline - time.time())
                # A reconcile after an ARI reconnect re-arms the ring timer of a process that
                # still has one: two would both fire.
                old = self.timers.pop(t.transfer_id, None)
                if old is not None:
                    old.cancel()
                self.timers[t.transfer_id] = loop.call_later(
                    delay, self.post, {"type": TIMER, "transfer_id": t.transfer_id, "name": name})
            case m.CancelTimer():
                handle = self.timers.pop(t.transfer_id, None)
                if handle is not None:
                    handle.cancel()
            case m.ReturnToOrigin(prefer_agent=prefer):
                if caller in self.desk.calls:
                    await self.deliver(dm.Ev.RETURNED, dm.Returned(caller, prefer))
            case m.Alert(kind=kind):
                await self.transfers.alert(t, kind)
            case m.DropAgent():
                if caller in self.desk.calls:
                    await self.deliver(dm.Ev.DROP_AGENT, dm.CallRef(caller))
            case m.StartRecording(name=name):
                await self._start_recording(t, name)
            case m.StopRecording(name=name):
                await self._quietly(self.ari.post(f"/recordings/live/{name}/stop"))
            case m.Notify(channel=ch, sound=sound):
                await self._quietly(self.ari.post(f"/channels/{ch}/play", media=f"sound:{sound}"))
            case m.Record():
                await self.transfers.finish(t)
            case _:
                raise TypeError(f"not a transfer command: {cmd!r}")

    async def _originate(self, t: m.Transfer, cmd: m.Originate) -> None:
        variables = {f"PJSIP_HEADER(add,{k})": v for k, v in cmd.headers.items()}
        variables.update({"HOTLINE_ROLE": "target", "HOTLINE_CALLER": t.caller,
                          dm.TRANSFER_VAR: t.transfer_id})
        self.transfers.note_leg(cmd.leg, t.transfer_id)
        try:
            # Asterisk's own dial timeout stays behind ours: the ring timer decides.
            await self.ari.post(
                "/channels", json_body={"variables": variables}, endpoint=cmd.dial,
                app=self.ari.app, appArgs=f"target,{t.transfer_id}", callerId=cmd.caller_number,
                timeout=int(cmd.timeout) + 5, channelId=cmd.leg, originator=t.caller)
        except AriError as exc:
            self.tlog.warning("cannot dial the target", transfer_id=t.transfer_id, error=str(exc))
            self.transfers.forget_leg(cmd.leg)
            await self.step_transfer(t, m.Ev.TARGET_FAILED, m.TargetFailed("unreachable", str(exc)))

    async def _bridge(self, t: m.Transfer) -> None:
        call = self.desk.calls.get(t.caller)
        if call is None:
            await self.step_transfer(t, m.Ev.BRIDGE_FAILED, m.BridgeFailed("caller"))
            return
        try:
            if call.bridge is None:
                bridge = await self.ari.post("/bridges", type="mixing,dtmf_events",
                                             name=f"call-{call.call_id}")
                await self.deliver(dm.Ev.BRIDGE_MADE, dm.BridgeNote(call.caller, bridge["id"]))
            current = set((await self.ari.get(f"/bridges/{call.bridge}")).get("channels", []))
            if t.caller not in current:
                await self.ari.post(f"/bridges/{call.bridge}/addChannel", channel=t.caller)
            if t.target_leg not in current:
                # The far agent's keys are for the app (the decision keys), not for the caller
                # and our agent: passed on, a digit whose end never came (the key hangs up the
                # far leg at once) left both their streams sending it, so they heard nothing.
                await self.ari.post(f"/bridges/{call.bridge}/addChannel", channel=t.target_leg,
                                    absorbDTMF="true")
        except AriError as exc:
            caller_there = await self.ari.channel_exists(t.caller)
            self.tlog.info("transfer bridging failed", transfer_id=t.transfer_id, error=str(exc),
                          caller_there=caller_there)
            await self.step_transfer(t, m.Ev.BRIDGE_FAILED,
                                     m.BridgeFailed("target" if caller_there else "caller"))
            return
        await self.step_transfer(t, m.Ev.BRIDGED)
        if t.state == m.State.CONFERENCE:
            # Three parties: the target leg is part of the call now; the attempt stays open
            # (its transfer id kept on the call) until the agents decide.
            await self.deliver(dm.Ev.REMOTE_JOINED,
                               dm.RemoteJoined(call.caller, t.target_leg, t.transfer_id))

    async def _start_recording(self, t: m.Transfer, name: str) -> None:
        """Record the three-way part on the bridge; a failure is noted, never blocks the call."""
        call = self.desk.calls.get(t.caller)
        try:
            if call is None or call.bridge is None:
                raise AriError("no bridge to record")
            await self.ari.post(f"/bridges/{call.bridge}/record", name=name, format="wav",
                                ifExists="overwrite")
        except AriConflict as exc:
            # Live already (a live one cannot be overwritten): the instance before this one
            # began it on this bridge before it stopped, and it goes on. Anything else failed.
            live = await self.live_recording(name)
            if live is None or live.get("target_uri") != f"bridge:{call.bridge}":
                await self._recording_failed(t, exc)
        except AriError as exc:
            await self._recording_failed(t, exc)

    async def live_recording(self, name: str) -> dict | None:
        """The recording ``name`` while it records (ARI's LiveRecording), or None."""
        try:
            live = await self.ari.get(f"/recordings/live/{name}")
        except AriError:
            return None
        return live if live.get("state") in ("queued", "recording", "paused") else None

    async def _recording_failed(self, t: m.Transfer, exc: AriError) -> None:
        self.tlog.error("recording failed; the call goes on", transfer_id=t.transfer_id,
                        error=str(exc))
        await self.step_transfer(t, m.Ev.RECORDING_FAILED, m.RecordingFailed(str(exc)))

    async def _quietly(self, coro) -> None:
        try:
            await coro
        except AriError:
            pass
