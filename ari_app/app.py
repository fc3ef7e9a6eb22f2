"""One running ARI application per PBX: reads events, serialises them, routes them to handlers.

Events are handled one at a time, in order, per PBX: a call's events (answer, DTMF, hang-up)
must not overtake each other, and one queue is the simplest way to guarantee it. Timers and
ticks are events on the same queue.

The path of every event, in one pass: ``handle`` looks the event type up in ``_HANDLERS`` (filled
by ``@_on``; the ARI event filter ``HANDLED`` is derived from it) -> the handler passes it to an
adapter, ``delivery.py`` (callers and agents) or ``transfers.py`` (keys, transfers), which turns
it into an event of a pure machine, ``transfer.delivery`` or ``transfer.machine`` -> the machine
returns commands -> ``interpreter.py`` turns them into ARI requests, and what those answer into
the machines' next events.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime
from typing import Awaitable, Callable, Protocol

import redis.asyncio as aioredis
import structlog

from contracts.names import COMMAND_RESULTS, COMMANDS, EVENTS
from contracts.vocab import API_MODES, KEY_ACTIONS, CommandStatus, LiveEvent, Mode, Trigger
from hotline_link.outcomes import OutcomeSink, RecordSink
from hotline_link.render import features
from hotline_link.settings import Hotline, Settings
from transfer import delivery as dm
from transfer import stranded

from .calls import CallBook
from .client import CONNECTED, TRANSPORT_EVENTS, AppReplaced, AriClient, AriError, AriFenced
from .delivery import Delivery
from .interpreter import ANNOUNCE, TIMER, Interpreter
from .transfers import Transfers

log = structlog.get_logger("app")

TICK = "HotlineTick"
STOP = "HotlineStop"    # the event reader ended for good: {"error": AppReplaced | AriFenced}
COMMAND = "HotlineCommand"
ADOPT = "HotlineAdopt"  # transfers read from Redis after the reconnect could not: {"transfers"}
# Hot standby: seconds between the listings that find callers stuck in a stopped instance's
# FastAGI (a screening step takes milliseconds; one still there after this is not being served).
RESCUE_SETTLE = 1.0


class Manager(Protocol):
    """The PBX's manager interface (agi.ami.Ami), where the service has one for a hotline: it
    reaches channels that are in no Stasis application."""

    async def redirect(self, channel: str, context: str, exten: str, priority: int) -> None: ...

    async def hand_over(self, agent_channel: str, action: str) -> str: ...

CLEANUP_WAIT = 2.0      # seconds the application's background tasks get to end when it stops
ADOPT_WAIT = 5.0        # seconds to wait for the second channel of a queue call handed over
# Events of our own, put on the same queue as the PBX's (never asked of Asterisk).
OWN_EVENTS = (TIMER, COMMAND, TICK, CONNECTED, ADOPT)

# Event type -> HotlineApp handler: the dispatch table, filled by @_on below. The ARI event
# filter is derived from it (HANDLED), so what the app asks Asterisk for and what it acts on
# cannot drift apart.
_HANDLERS: dict[str, Callable[["HotlineApp", dict], Awaitable[None]]] = {}


def _on(*kinds: str):
    def register(handler):
        for kind in kinds:
            assert kind not in _HANDLERS, f"two handlers for {kind}"
            _HANDLERS[kind] = handler
        return handler
    return register


def _event_time(event: dict) -> float:
    """The PBX's timestamp of an event, in seconds (falls back to now)."""
    # fromisoformat reads Asterisk's "2026-12-03T12:55:16.083+0000" (Python 3.11) at a tenth of
    # strptime's cost, which was 7 % of the no-I/O replay.
    try:
        return datetime.fromisoformat(event["timestamp"]).timestamp()
    except (KeyError, ValueError, TypeError):
        return time.time()


class HotlineApp:
    def __init__(self, settings: Settings, hotline: Hotline, redis: aioredis.Redis,
                 sink: OutcomeSink, call_sink: RecordSink,
                 guard: Callable[[], bool] | None = None, manager: Manager | None = None,
                 fence: tuple[str, str] | None = None):
        """``guard``/``fence``: hot standby, the lease by this process's clock / the lease's
        key and this process's token (what is written behind the calls is fenced by it)."""
        self.settings = settings
        self.manager = manager
        self.hotline = hotline
        self.ari = AriClient(hotline.ari.url, hotline.ari.username, hotline.ari.password or "",
                             hotline.ari.app, rest_over_ws=hotline.ari.rest_transport == "auto",
                             guard=guard)
        self.queue: asyncio.Queue[dict] = asyncio.Queue()
        self.redis = redis
        # The delivery machine's state; only transfer.delivery.step writes it.
        self.desk = dm.Desk(agents=tuple(hotline.agents), agent_ring=settings.timeouts.agent_ring,
                            no_agent_retry=settings.timeouts.no_agent_retry,
                            new_id=lambda: uuid.uuid4().hex,
                            surge_plan=hotline.surge,
                            emergency_seats=tuple(hotline.emergency_seats),
                            emergency_after=hotline.emergency_seats_after,
                            whisper=dict(hotline.whisper))
        self.interpreter = Interpreter(self.ari, hotline.id, self.desk, self.queue.put_nowait,
                                       self.publish,
                                       CallBook(redis, call_sink, hotline.id, self.ari.allowed,
                                                fence))
        self.delivery = Delivery(self.ari, hotline, self.desk, self.interpreter)
        self.transfers = Transfers(self.ari, self.interpreter, settings, hotline, redis, sink,
                                   fence)
        # Queue calls being handed over by the AGI "key" command, by the caller channel's name:
        # {"caller": channel, "agent": channel, "action": str, "since": monotonic}
        self.adopting: dict[str, dict] = {}
        self.key_actions = {f.action for f in features(settings, hotline.id)}
        self.log = log.bind(hotline=hotline.id)
        self._rescue: asyncio.Task | None = None
        self._reread: asyncio.Task | None = None

    async def run(self) -> None:
        async with self.ari:
            reader = asyncio.create_task(self._read())
            ticker = asyncio.create_task(self._tick())
            commands = asyncio.create_task(self._commands(), name=f"commands-{self.hotline.id}")
            notes = asyncio.create_task(self.interpreter.calls.run(),
                                        name=f"call-notes-{self.hotline.id}")
            states = asyncio.create_task(self.transfers.states.run(),
                                         name=f"transfer-states-{self.hotline.id}")
            try:
                while True:
                    event = await self.queue.get()
                    if event.get("type") == STOP:
                        raise event["error"]
                    if not self.ari.allowed():
                        # Checked per event, not only by the lease's own timer: a process that
                        # wakes from a freeze must not act on what queued up meanwhile.
                        raise AriFenced(f"{self.hotline.id}: this instance no longer holds the lease")
                    try:
                        await self.handle(event)
                    except Exception:
                        # One bad event must not stop the hotline; the call it concerned is
                        # reconciled at the next tick or reconnect.
                        self.log.exception("event handler failed", event_type=event.get("type"))
            finally:
                tasks = (reader, ticker, commands, notes, states,
                         *(t for t in (self._rescue, self._reread) if t is not None))
                for task in tasks:
                    task.cancel()
                # A stop (not a crash) leaves the next instance every state this one had:
                # written now if Redis takes them within the wait (never after a lost lease).
                await self._last_writes()
                # Bounded: a Redis XREAD cancelled after the process was frozen (SIGSTOP) was
                # seen never to finish (redis-py 8.1), and an application that cannot end
                # would keep a hot-standby instance from ever standing by.
                _done, stuck = await asyncio.wait(tasks, timeout=CLEANUP_WAIT)
                if stuck:
                    self.log.warning("background tasks did not end; left behind",
                                     tasks=sorted(t.get_name() for t in stuck))

    async def _last_writes(self) -> None:
        writers = (self.transfers.states, self.interpreter.calls.writer)

        async def write_all() -> None:
            while not all([await w.flush() for w in writers]):
                await asyncio.sleep(0.2)

        # A task waited on, not awaited: a cancelled Redis call may never end (see below), and
        # a second cancellation (a stop signal meanwhile) must reach the caller.
        task = asyncio.create_task(write_all(), name=f"last-writes-{self.hotline.id}")
        await asyncio.wait([task], timeout=CLEANUP_WAIT)
        if not task.done():
            task.cancel()
            self.log.warning("states not written before stopping",
                             waiting=sum(len(w.waiting()) for w in writers))

    async def _read(self) -> None:
        try:
            async for event in self.ari.events():
                self.queue.put_nowait(event)
        except (AppReplaced, AriFenced) as exc:
            self.queue.put_nowait({"type": STOP, "error": exc})

    async def _commands(self) -> None:
        """Transfers requested through the sidecar API (``POST /calls/{call_id}/transfer``).
        Only commands sent while this app runs count: a request for a call is about now."""
        stream = COMMANDS.of(self.hotline.id)
        last = None
        while True:
            try:
                if last is None:
                    # Start after what is there now. Not "$" in every XREAD: a command written
                    # between two reads would be skipped.
                    newest = await self.redis.xrevrange(stream, count=1)
                    last = newest[0][0] if newest else "0-0"
                # Block less than the client's socket timeout (Redis is never on a call's path).
                got = await self.redis.xread({stream: last}, block=400, count=20)
            except Exception as exc:        # noqa: BLE001 - an outage must not end the app
                self.log.debug("command stream unavailable", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            for _stream, entries in got or []:
                for entry_id, fields in entries:
                    last = entry_id
                    self.queue.put_nowait({"type": COMMAND, "fields": fields})

    async def _run_command(self, fields: dict) -> None:
        try:
            cmd = COMMANDS.payload(fields)
            command_id = str(cmd["id"])
        except (KeyError, ValueError, TypeError):
            self.log.warning("unreadable command skipped")
            return
        call = next((c for c in self.delivery.calls.values() if c.call_id == cmd.get("call_id")), None)
        mode, action, target = cmd.get("mode"), cmd.get("action"), cmd.get("target")
        if call is None:
            result = {"status": CommandStatus.REFUSED, "reason": "no such call on this hotline"}
        elif action is not None:
            # A button of the agent screen: what the agent's key would do.
            if action in KEY_ACTIONS:
                result = await self.transfers.on_action(call, action, Trigger.API, target)
            else:
                result = {"status": CommandStatus.REFUSED,
                          "reason": f"action must be one of {', '.join(KEY_ACTIONS)}"}
        elif mode not in API_MODES:
            result = {"status": CommandStatus.REFUSED,
                      "reason": f"mode must be one of {', '.join(API_MODES)}"}
        else:
            result = await self.transfers.on_action(
                call, "three_way" if mode == Mode.THREE_WAY else "transfer", Trigger.API, target)
        self.log.info("api command", command_id=command_id, **result)
        await self.transfers.best_effort(self.redis.hset(COMMAND_RESULTS, command_id,
                                                         json.dumps(result)))
        await self.publish(LiveEvent.COMMAND_RESULT, {"command_id": command_id,
                                              "call_id": cmd.get("call_id"), **result})

    async def publish(self, kind: str, fields: dict) -> None:
        """A live event for desktops. Best effort: Redis is never on a call's path."""
        body = {"type": kind, "hotline": self.hotline.id, "at": time.time(), **fields}
        await self.transfers.best_effort(self.redis.xadd(EVENTS.key, EVENTS.entry(body),
                                                         **EVENTS.trim()))

    async def _tick(self) -> None:
        period = min(1.0, self.settings.timeouts.no_agent_retry)
        while True:
            await asyncio.sleep(period)
            self.queue.put_nowait({"type": TICK})

    async def handle(self, event: dict) -> None:
        handler = _HANDLERS.get(event.get("type"))
        if handler is not None:
            await handler(self, event)

    @_on("StasisStart")
    async def _stasis_start(self, event: dict) -> None:
        args = event.get("args") or []
        channel = event["channel"]
        if args[:1] == ["inbound"]:
            screened = args[1] if len(args) > 1 and args[1] else None
            # From the trunk: the transfer's headers follow as name=value arguments.
            pairs = [a.partition("=") for a in args[2:]]
            headers = {k: v for k, sep, v in pairs if sep} if pairs else None
            call = await self.delivery.caller_arrived(channel, hold=screened is not None,
                                                      headers=headers)
            if call is not None and screened:
                await self.transfers.screened(call, screened)
        elif args[:1] == ["agent"] and len(args) == 2:
            await self.delivery.agent_answered(channel, args[1])
        elif args[:1] == ["target"] and len(args) == 2:
            await self.transfers.target_answered(channel["id"], args[1])
        elif args[:1] == ["adopt"]:
            await self.adopt(channel, args[1:])
        else:
            self.log.warning("unexpected channel in app; hanging up", args=args,
                             channel=channel.get("name"))
            await self.ari.delete_quietly(f"/channels/{channel['id']}")

    @_on("ChannelDtmfReceived")
    async def _dtmf(self, event: dict) -> None:
        self.log.debug("dtmf", channel=event["channel"]["id"], digit=event.get("digit"),
                       at=event.get("timestamp"), duration_ms=event.get("duration_ms"))
        await self.transfers.on_dtmf(event["channel"]["id"], event.get("digit", ""),
                                     _event_time(event))

    @_on("PlaybackFinished")
    async def _playback_finished(self, event: dict) -> None:
        """A prompt to a waiting caller ended (music comes back), or the goodbye after which
        the caller is hung up: by the playback's id (``transfer.delivery`` PROMPT/GOODBYE)."""
        pid = (event.get("playback") or {}).get("id", "")
        if pid.startswith(ANNOUNCE):
            await self.transfers.announced(pid[len(ANNOUNCE):])
        elif pid.startswith(dm.GOODBYE):
            await self.ari.delete_quietly(f"/channels/{pid[len(dm.GOODBYE):]}")
        elif pid.startswith(dm.PROMPT):
            # Whose prompt: the call that is playing it (ids and prompt names hold dashes).
            caller = next((c.caller for c in self.desk.calls.values() if c.prompt == pid), None)
            if caller is not None:
                await self.interpreter.deliver(dm.Ev.PROMPT_DONE, dm.PromptDone(caller, pid))

    @_on("ChannelStateChange")
    async def _state_change(self, event: dict) -> None:
        await self.transfers.target_state(event["channel"])

    @_on("ChannelTransfer")
    async def _refer(self, event: dict) -> None:
        await self.transfers.on_refer(event)

    @_on("StasisEnd", "ChannelDestroyed")
    async def _channel_gone(self, event: dict) -> None:
        channel_id = event["channel"]["id"]
        cause = int(event.get("cause") or 0)
        if not await self.transfers.channel_gone(channel_id, cause, event.get("cause_txt", "")):
            await self.delivery.channel_gone(channel_id, cause)

    @_on("DeviceStateChanged")
    async def _device_state(self, event: dict) -> None:
        device = event.get("device_state") or {}
        await self.delivery.device_state(device.get("name", ""), device.get("state", ""))

    @_on(TIMER)
    async def _timer(self, event: dict) -> None:
        await self.transfers.timer_fired(event["transfer_id"], event["name"])

    @_on(COMMAND)
    async def _command(self, event: dict) -> None:
        await self._run_command(event["fields"])

    @_on(TICK)
    async def _on_tick(self, event: dict) -> None:
        await self.delivery.tick()
        await self._adopt_timeouts()
        if self.transfers.unread and self.ari.connected and (
                self._reread is None or self._reread.done()):
            self._reread = asyncio.create_task(self._read_states(),
                                               name=f"reread-{self.hotline.id}")

    async def _read_states(self) -> None:
        """Off the event queue: a read that waits on Redis must not hold up a call's events."""
        found = await self.transfers.read_states(background=True)
        if found is not None:
            self.queue.put_nowait({"type": ADOPT, "transfers": found})

    @_on(ADOPT)
    async def _adopt_states(self, event: dict) -> None:
        if not self.transfers.unread:
            return
        self.transfers.unread = False
        # Reconciled with the PBX's word; a caller's transfer without a trace and unknown to
        # Redis too is let go now that Redis has answered (``Transfers.from_traces``).
        await self.reconcile(self.transfers.adopt(event["transfers"]))

    @_on(CONNECTED)
    async def _connected(self, event: dict) -> None:
        await self.filter_events()
        await self.announce_agi()
        if self.settings.ha.instance is not None and self.manager is not None:
            if self._rescue is not None:
                self._rescue.cancel()
            self._rescue = asyncio.create_task(self.rescue_stranded(),
                                               name=f"rescue-{self.hotline.id}")
        await self.delivery.watch_agents()
        await self.reconcile()

    async def announce_agi(self) -> None:
        """Hot standby: point the PBX's FastAGI requests (queue keys, screening, routing: the
        dialplan's ${HOTLINE_AGI}) at this instance, the one that now acts. A single instance
        leaves the rendered address alone."""
        host, port = self.settings.agi.listen
        if self.settings.ha.instance is None or host in ("0.0.0.0", "::", ""):
            return
        try:
            await self.ari.post("/asterisk/variable", variable="HOTLINE_AGI",
                                value=f"{host}:{port}")
        except AriError as exc:
            # The keys of queue calls then reach the previous instance, which refuses them.
            self.log.warning("cannot point the PBX's FastAGI at this instance", error=str(exc))

    async def rescue_stranded(self, settle: float = RESCUE_SETTLE, rounds: int = 3) -> None:
        """Hot standby: channels whose FastAGI request is waiting on the instance that stopped
        (it froze with their session open; transfer/stranded.py) are moved on: a caller in a
        screening or routing step to the step's fallback, an agent whose queue-call key is
        stuck (and who hears nothing meanwhile) handed over with that key's action. A few
        listings after the takeover: the last ones catch a request made with the old
        ${HOTLINE_AGI} just before announce_agi() changed it."""
        host, port = self.settings.agi.listen
        own = f"{host}:{port}"
        before: dict[str, stranded.Step] = {}
        for _ in range(rounds + 1):
            try:
                now = stranded.waiting_on_agi(await self.ari.get("/channels"), own)
            except AriError as exc:
                self.log.warning("cannot list channels for stranded requests", error=str(exc))
                return
            for step in stranded.stranded(before, now):
                await self._move_on(step)
            before = now
            await asyncio.sleep(settle)

    async def _move_on(self, step: stranded.Step) -> None:
        slog = self.log.bind(channel_id=step.channel_id, waits_on=step.address,
                             command=step.command)
        try:
            if step.command in stranded.SKIPPABLE:
                await self.manager.redirect(step.name, *step.next())
                slog.warning("caller waiting on a stopped instance's FastAGI moved on to the "
                             "step's fallback", context=step.context, priority=step.priority + 1)
            elif step.argument in self.key_actions and self.hotline.agent_of_channel(step.name):
                await self.manager.hand_over(step.name, step.argument)
                slog.warning("agent's key stuck on a stopped instance's FastAGI carried out "
                             "here", action=step.argument)
        except Exception as exc:                    # noqa: BLE001 - AMI refusal, call gone
            slog.error("a request waiting on a stopped instance could not be moved on",
                       error=str(exc))

    # --- queue calls handed over by the AGI "key" command -------------------------------------------
    async def adopt(self, channel: dict, args: list[str]) -> None:
        """Both channels of a Queue()-bridged call arrive here separately (hotline-adopt context);
        once both are in, the call is ours and the key's action runs as for our own calls."""
        name = channel.get("name", "")
        if args[:1] == ["caller"]:
            entry = self.adopting.setdefault(name, {"since": time.monotonic()})
            entry["caller"] = channel
        elif args[:1] == ["agent"] and len(args) == 3 and args[1] in self.key_actions:
            agent = self.hotline.agent_of_channel(name)
            if agent is None:
                self.log.warning("handed-over channel is not an agent of this hotline", channel=name)
                await self.ari.delete_quietly(f"/channels/{channel['id']}")
                return
            entry = self.adopting.setdefault(args[2], {"since": time.monotonic()})
            entry.update(agent=channel, action=args[1], endpoint=agent)
            name = args[2]
        else:
            self.log.warning("bad hand-over arguments; hanging up", args=args, channel=name)
            await self.ari.delete_quietly(f"/channels/{channel['id']}")
            return
        entry = self.adopting[name]
        if "caller" in entry and "agent" in entry:
            del self.adopting[name]
            # Once the call is ours, the machine has the key's action run on it.
            await self.delivery.adopt_bridged(entry["caller"], entry["agent"],
                                              entry["endpoint"], entry["action"])

    async def _adopt_timeouts(self) -> None:
        now = time.monotonic()
        for name, entry in list(self.adopting.items()):
            if now - entry["since"] < ADOPT_WAIT:
                continue
            del self.adopting[name]
            self.log.warning("hand-over incomplete", caller_in="caller" in entry,
                             agent_in="agent" in entry)
            if "agent" in entry:
                await self.ari.delete_quietly(f"/channels/{entry['agent']['id']}")
            if "caller" in entry:       # never stranded: the caller waits for our next agent
                await self.delivery.caller_arrived(entry["caller"])

    async def filter_events(self) -> None:
        try:
            await self.ari.put(f"/applications/{self.ari.app}/eventFilter",
                               json_body={"allowed": [{"type": t} for t in
                                                      HANDLED + TRANSPORT_EVENTS]})
        except AriError as exc:
            # Without the filter the app only reads more events; it works the same.
            self.log.warning("cannot filter ARI events", error=str(exc))

    async def reconcile(self, adopted: list | None = None) -> None:
        """Rebuild state from what exists on the PBX after a (re)connect. ``adopted``: only
        these transfers, read from Redis after it (``Transfers.read_states``)."""
        try:
            channels = await self.ari.get("/channels")
            bridges = await self.ari.get("/bridges")
        except AriError as exc:
            self.log.warning("reconcile failed", error=str(exc))
            return
        mine = [c for c in channels if (c.get("channelvars") or {}).get("HOTLINE_ROLE")]
        if adopted is None:
            await self.delivery.reconcile(mine, bridges)
        await self.transfers.reconcile(mine, bridges, adopted)


# The ARI events the app acts on: Asterisk sends it only these (the filter set at each connect;
# the rest, ChannelVarset above all, were three quarters of the stream).
HANDLED = tuple(kind for kind in _HANDLERS if kind not in OWN_EVENTS)
