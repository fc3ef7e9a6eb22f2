"""The one-key transfer adapter: ARI events -> the transfer machine's events.

The logic lives in ``transfer.machine``; this module only translates, persists and records. The
machine's commands are carried out by ``ari_app.interpreter`` (which turns the ones that concern
the caller's call into events of the delivery machine, ``transfer.delivery``).

* Triggers: an agent's key (DTMF collected per agent leg; the caller's keys are never looked at),
  the agent phone's own transfer button (SIP REFER, arriving as ``ChannelTransfer`` because agent
  legs are created with ``PJSIP_TRANSFER_HANDLING()=ari-only``), and later the CTI API.
* One call, one transfer: a call with a transfer in progress ignores further triggers (in memory,
  and across processes with a Redis ``SET NX`` lock on the call id when Redis is up).
* Every transfer's state is written to Redis after each step, so that after a restart
  ``reconcile`` can finish or fall back what was in flight (the machine's RESTARTED event).
  Redis being down never blocks a call: writes are best effort; the outcome record itself is
  spooled to disk first (``hotline_link.outcomes``) and reaches the stream exactly once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from contracts import sip
from contracts.names import (ACTIVE_TRANSFERS, ALERTS, CALL_LOCK, CALL_MATTER, MATTER,
                             OUTCOME_CLAIM, TRANSFER_ANSWERED, TRANSFER_STATE)
from contracts.vocab import CONFERENCE_MODES, CommandStatus, Mode, Trigger
from hotline_link.outcomes import OutcomeSink
from hotline_link.settings import Hotline, Settings
from transfer import delivery as dm
from transfer import machine as m
from transfer.delivery import CAUSE_BUSY, CAUSE_REJECTED, Call
from transfer.keys import KeyCollector

from .client import AriClient, AriError, AriNotFound
from .interpreter import Interpreter
from .writebehind import LatestWriter

log = structlog.get_logger("transfer")

REDIS_TIMEOUT = 0.5
REDIS_BACKOFF = 5.0                          # after a failure, skip Redis for this long
HARASSMENT_CATEGORY = "hotline_harassment"  # the annex's category for R9


@dataclass(frozen=True)
class _Gone:
    """A finished transfer's state, to be removed (with the call's lock)."""
    call_id: str


def failure_kind(cause: int) -> str:
    """ISDN cause of a target leg that never answered -> the machine's failure kind."""
    if cause == CAUSE_BUSY:
        return "busy"
    if cause in (CAUSE_REJECTED, 16):
        # 16 (normal clearing) before answer: the far side hung up the offer, i.e. declined it.
        return "rejected"
    if cause == 19:
        return "no_answer"
    return "unreachable"


def _refused(reason: str) -> dict:
    return {"status": CommandStatus.REFUSED, "reason": reason}


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


class Transfers:
    def __init__(self, ari: AriClient, interp: Interpreter, settings: Settings, hotline: Hotline,
                 redis: aioredis.Redis, sink: OutcomeSink, fence: tuple[str, str] | None = None):
        self.ari = ari
        self.interp = interp
        self.desk = interp.desk               # read only: the delivery machine writes it
        self.settings = settings
        self.hotline = hotline
        self.redis = redis
        self.sink = sink
        self.active: dict[str, m.Transfer] = {}
        self.by_leg: dict[str, str] = {}      # target leg -> transfer id
        self.by_caller: dict[str, str] = {}   # caller channel -> transfer id
        self.keys = KeyCollector(settings.key_bindings(hotline.id),
                                 settings.keys.inter_digit_timeout)
        self._redis_down_until = 0.0
        self.unread = False     # Redis could not give the transfers left in it: ask again
        self.traced: set[str] = set()   # meanwhile learnt from their callers' channels
        # Transfers this process finished lately: a read of Redis taken before their removal
        # was written must not bring them back.
        self.finished: OrderedDict[str, None] = OrderedDict()
        # Each transfer's state for the instance after this one (a restart, a takeover): written
        # behind the call (``writebehind``), so a slow or absent Redis delays it, never skips it.
        self.states = LatestWriter(redis, self._write_state, "transfer states", hotline.id,
                                   ari.allowed, fence)
        self.log = log.bind(hotline=hotline.id)
        interp.transfers = self

    # --- targets ------------------------------------------------------------------------------
    def default_target(self) -> str | None:
        """The other platform: the first target that is itself a configured hotline."""
        return next((t for t in self.hotline.targets if t in self.settings.hotlines), None)

    # --- triggers -----------------------------------------------------------------------------
    async def on_dtmf(self, channel_id: str, digit: str, at: float) -> None:
        call = self.desk.call_of_agent_leg(channel_id)
        if call is None and channel_id in self.desk.calls:
            # A caller's key: it counts only in a surge's self-service menu.
            await self.interp.deliver(dm.Ev.CALLER_KEY, dm.CallerKey(channel_id, digit))
            return
        if call is None:
            # The other platform's agent in a three-way call: their DTMF crosses the trunk and
            # arrives on our target leg, so both agents' keys are decided here, once.
            t = self.active.get(self.by_leg.get(channel_id, ""))
            if t is not None and t.conference:
                action = self.keys.feed(channel_id, digit, at)
                if action in m.DECISIONS:
                    self.log.info("far agent key", transfer_id=t.transfer_id, action=action)
                    await self._step(t, m.Ev.DECISION, m.Decision(action, "target", t.answered_by))
            return                         # the caller's keys, or a leg we do not own
        if call.headers.get(sip.MODE) in m.CONFERENCE_MODES:
            return                         # a three-way call: the origin platform acts on keys
        action = self.keys.feed(channel_id, digit, at)
        if action is not None:
            await self.on_action(call, action)

    async def on_action(self, call: Call, action: str, trigger: str = Trigger.DTMF,
                        target: str | None = None) -> dict:
        """An agent's key, pressed on a call we bridged (DTMF), on a Queue() call the AGI server
        handed over (features.conf), or a button of the agent screen (the API): the same action
        whichever way. What came of it, as a command result (``contracts.vocab.CommandStatus``).
        ``target``: the API's choice of target for a transfer (else the key's own)."""
        clog = self.log.bind(call_id=call.call_id, agent=call.agent)
        clog.info("agent action", action=action, trigger=trigger)
        if call.keys_cross and trigger == Trigger.API:
            # The far agent of the other platform's three-way call: the origin decides. Their
            # keys cross the trunk by themselves; a button's are sent the same way.
            if action not in m.DECISIONS:
                return _refused("in the other platform's three-way call this agent only decides "
                                f"({', '.join(m.DECISIONS)}); the origin platform transfers")
            return await self._relay_decision(call, action)
        active = self.active.get(call.transfer_id or "")
        if action in m.DECISIONS:
            if active is not None and active.conference:
                await self._step(active, m.Ev.DECISION, m.Decision(action, "origin", call.agent))
                return {"status": CommandStatus.DONE, "action": action,
                        "transfer_id": active.transfer_id}
            clog.info("decision outside a three-way call: nothing to decide")
            return _refused("no three-way call on this call to decide")
        if action == "out_of_scope":
            tid = await self.record_out_of_scope(call, trigger=trigger)
            return {"status": CommandStatus.DONE, "action": action, "transfer_id": tid}
        emergency = action == "emergency"
        if emergency:
            if self.hotline.emergency_to is None:
                clog.info("emergency: this hotline has no emergency_to, nothing to escalate to")
                return _refused(f"hotline {self.hotline.id} has no emergency target")
            target, mode = self.hotline.emergency_to, Mode.EMERGENCY
        elif action == "three_way":
            target, mode = target or self.default_target(), Mode.THREE_WAY
        elif action == "transfer" or action.startswith("transfer:"):
            target = action.partition(":")[2] or target or self.default_target()
            mode = Mode.BLIND
        else:
            return _refused(f"no such action {action!r}")
        tid = await self.start(call, target, mode=mode, trigger=trigger, emergency=emergency)
        if tid is None:
            return _refused("call not connected to an agent, a transfer is in progress, or no "
                            f"such target {target!r}")
        return {"status": CommandStatus.STARTED, "transfer_id": tid}

    async def _relay_decision(self, call: Call, action: str) -> dict:
        key = next((k for k, a in self.keys.bindings.items() if a == action), None)
        if key is None:
            return _refused(f"no key is configured for {action}")
        try:
            # Spaced wider than the key collector's duplicate window, as a phone spaces them.
            await self.ari.post(f"/channels/{call.caller}/dtmf", dtmf=key, between=200,
                                duration=120)
        except AriError as exc:
            return _refused(f"the decision could not be sent to the origin platform: {exc}")
        return {"status": CommandStatus.DONE, "action": action,
                "transfer_id": call.headers.get(sip.TRANSFER_ID)}

    async def on_refer(self, event: dict) -> None:
        # The REFERring channel is referred_by.source_channel (ChannelTransfer has no "channel").
        channel = (event.get("referred_by") or {}).get("source_channel") or event.get("channel") or {}
        leg = channel.get("id")
        refer = event.get("refer_to") or {}
        dest = str((refer.get("requested_destination") or {}).get("destination") or "")
        call = self.desk.call_of_agent_leg(leg) if leg else None
        clog = self.log.bind(agent_leg=leg, destination=dest)
        if event.get("state"):
            # Not a REFER: Asterisk echoes each transfer_progress we post as a ChannelTransfer
            # with its state (the REFER itself has none).
            clog.debug("transfer progress reported to the phone", state=event["state"])
            return
        # A refusal gets a final NOTIFY (503) at once, so the phone's transfer ends instead of
        # hanging; the call itself goes on untouched. channel_unavailable, not channel_declined:
        # Asterisk 22.10 was seen to crash on the latter for a live channel.
        if call is None:
            clog.warning("REFER from a channel that is not a connected agent: refused")
            await self._refer_progress(leg, "channel_unavailable")
            return
        if dest not in self.hotline.targets:
            clog.warning("REFER to a destination that is not a transfer target: refused",
                         call_id=call.call_id)
            await self._refer_progress(leg, "channel_unavailable")
            return
        # The agent is released once the attempt starts, so the phone is told the blind transfer
        # is complete (a final NOTIFY that ends its subscription) and hangs up by itself, as a
        # phone does after its own blind transfer; the caller's fate is ours from here on.
        if await self.start(call, dest, mode=Mode.BLIND, trigger=Trigger.REFER):
            await self._refer_progress(leg, "channel_answered")

    async def _refer_progress(self, leg: str | None, state: str) -> None:
        if not leg:
            return
        try:
            await self.ari.post(f"/channels/{leg}/transfer_progress", states=state)
        except AriError as exc:
            self.log.info("transfer_progress not delivered", error=str(exc), state=state)

    # --- starting -------------------------------------------------------------------------------
    async def start(self, call: Call, target: str | None, *, mode: str, trigger: str,
                    emergency: bool = False, category: str | None = None) -> str | None:
        clog = self.log.bind(call_id=call.call_id)
        if target is None or target not in self.hotline.targets:
            clog.warning("no such transfer target", target=target)
            return None
        # A screened caller has no agent yet: it is transferred straight from the wait.
        ready = call.state == "connected" or (trigger == Trigger.SCREEN and call.agent_leg is None)
        if call.transfer_id or not ready or call.caller in self.by_caller:
            clog.info("transfer already in progress or call not connected: ignored",
                      state=call.state)
            return None
        locked, matter = await self._lock(call.call_id)
        if not locked:
            clog.info("another process holds this call's transfer lock: ignored")
            return None
        tagged = matter or {}
        emergency = emergency or bool(tagged.get("emergency"))
        tid = uuid.uuid4().hex
        now = time.time()
        # A call that came in by a transfer continues that transfer's chain (R6).
        chain_id, hop, previous = m.chain_of(call.headers)
        # Requested from the first moment it exists: whatever ends it, even a failure before it
        # starts dialling, its record has the timestamps every record must have.
        t = m.Transfer(
            transfer_id=tid, call_id=call.call_id, hotline=self.hotline.id, target=target,
            dial=self.hotline.targets[target].dial, caller=call.caller,
            caller_number=call.number, agent=call.agent, agent_leg=call.agent_leg, mode=mode,
            trigger=trigger, category=category or tagged.get("category"),
            emergency=emergency, matter=matter, chain_id=chain_id, chain_hop=hop,
            previous_transfer=previous, announce=(self.hotline.targets[target].announce
                      if mode not in CONFERENCE_MODES else None),
            ring_timeout=(self.settings.timeouts.emergency_ring if emergency
                          else self.settings.timeouts.transfer_ring), steps={"requested": now})
        cmds = m.start(t, now)
        # The caller's channel keeps the transfer as it starts: the instance after this one
        # carries it on from there if Redis never took its state (``from_traces``).
        await self.interp.deliver(dm.Ev.TRANSFER_STARTED, dm.TransferNote(
            call.caller, tid, trace=json.dumps(t.to_dict(), separators=(",", ":"))))
        self.active[tid] = t
        self.by_caller[call.caller] = tid
        self.log.info("transfer started", transfer_id=tid, call_id=call.call_id, target=target,
                      mode=mode, trigger=trigger)
        await self.interp.apply_transfer(t, cmds)
        return tid

    async def screened(self, call: Call, verdict: str) -> None:
        """A caller the dialplan's screening flagged (R9: harassment of 12345 is a matter for
        110): transferred to ``screen_to`` before any agent takes it, with the same fallbacks
        (the caller then waits for an agent here) and an outcome record that says why."""
        target = self.hotline.screen_to
        if verdict == "harassment" and target:
            tid = await self.start(call, target, mode=Mode.BLIND, trigger=Trigger.SCREEN,
                                   category=HARASSMENT_CATEGORY)
            if tid is not None:
                return
        self.log.info("screened caller goes to an agent", call_id=call.call_id, verdict=verdict)
        await self.interp.deliver(dm.Ev.RELEASE_HOLD, dm.CallRef(call.caller))

    async def record_out_of_scope(self, call: Call, trigger: str) -> str:
        t = m.out_of_scope(uuid.uuid4().hex, call.call_id, self.hotline.id, call.caller,
                           call.number, call.agent, call.agent_leg, trigger, time.time())
        await self.sink.emit(self.record(t))
        return t.transfer_id

    # --- events -----------------------------------------------------------------------------------
    async def target_answered(self, leg: str, tid: str) -> None:
        t = self.active.get(tid)
        if t is None:
            await self.ari.delete_quietly(f"/channels/{leg}")
            return
        agent = await self.best_effort(self.redis.hget(TRANSFER_ANSWERED, tid))
        await self._step(t, m.Ev.TARGET_ANSWERED, m.Answered(agent.decode() if agent else None))

    async def target_state(self, channel: dict) -> None:
        tid = self.by_leg.get(channel.get("id"))
        if tid and channel.get("state") == "Ringing":
            await self._step(self.active[tid], m.Ev.TARGET_RINGING)

    async def channel_gone(self, channel_id: str, cause: int, cause_txt: str = "") -> bool:
        """Feed a hang-up to the attempt it concerns. True when nobody else must act on it;
        False when delivery also must (the caller, and legs delivery already holds)."""
        t = self.active.get(self.by_leg.get(channel_id, ""))
        if t is not None:
            # In a three-way call the far agent leaving is a cancel, whatever the cause.
            conference = t.state == m.State.CONFERENCE
            await self._step(t, m.Ev.TARGET_FAILED, m.TargetFailed(
                failure_kind(cause), f"target leg ended: cause {cause} {cause_txt}".strip()))
            return not conference                             # delivery: back to two parties
        t = self.active.get(self.by_caller.get(channel_id, ""))
        if t is not None:
            await self._step(t, m.Ev.CALLER_HUNG_UP)
            return False
        call = self.desk.call_of_agent_leg(channel_id)
        t = self.active.get(call.transfer_id or "") if call is not None else None
        if t is not None and t.conference:
            if t.state == m.State.CONFERENCE:
                await self._step(t, m.Ev.AGENT_HUNG_UP)      # the target platform has it
                return False                                  # delivery: caller stays with it
            # Not answered yet: now a blind transfer.
            await self.interp.deliver(dm.Ev.DETACH, dm.Detach(call.caller))
            await self._step(t, m.Ev.AGENT_HUNG_UP)
            return True
        return False

    async def timer_fired(self, tid: str, name: str) -> None:
        self.interp.timers.pop(tid, None)
        t = self.active.get(tid)
        if t is not None and name == "ring":
            await self._step(t, m.Ev.RING_TIMEOUT)

    async def carry_matter(self, matter_id: str, call_id: str) -> None:
        """Far side: this call is about the matter the transfer brought (best effort: without
        it the matter is still readable by id, only not corrected or passed on from here)."""
        await self.best_effort(self.redis.copy(MATTER.format(matter_id),
                                               CALL_MATTER.format(call_id), replace=True))

    async def note_answering_agent(self, tid: str, agent: str | None) -> None:
        """Far side: remember who answered, so the origin can name them in its record."""
        if agent:
            await self.best_effort(self.redis.hset(TRANSFER_ANSWERED, tid, agent))

    # --- the machine ----------------------------------------------------------------------------
    async def _step(self, t: m.Transfer, ev: m.Ev, detail: m.Detail | None = None) -> None:
        await self.interp.step_transfer(t, ev, detail)

    def note_leg(self, leg: str, tid: str) -> None:
        self.by_leg[leg] = tid

    def forget_leg(self, leg: str) -> None:
        self.by_leg.pop(leg, None)

    async def finish(self, t: m.Transfer) -> None:
        """The machine's Record: the attempt is over; the call goes on without it."""
        tid = t.transfer_id
        self.active.pop(tid, None)
        self.by_caller.pop(t.caller, None)
        self.by_leg.pop(t.target_leg, None)         # the ring timer went with CancelTimer
        if t.caller in self.desk.calls:
            # Accepted: the target leg is the call's remote party from now on.
            joined = t.target_leg if t.result in (m.Result.ACCEPTED,
                                                  m.Result.ACCEPTED_BY_TARGET) else None
            await self.interp.deliver(dm.Ev.TRANSFER_ENDED, dm.RemoteJoined(t.caller, joined))
        self.log.info("transfer finished", transfer_id=tid, call_id=t.call_id,
                      result=str(t.result))
        if t.matter and t.conference:
            await self._latest_matter(t)
        await self.sink.emit(self.record(t))
        self.states.put(tid, _Gone(t.call_id))
        self.finished[tid] = None
        if len(self.finished) > 10_000:
            self.finished.popitem(last=False)

    async def _latest_matter(self, t: m.Transfer) -> None:
        """A three-way call's matter as it stands when the call is decided: either agent may
        have corrected it meanwhile (under the same id), and the last correction is recorded."""
        latest = self._matter_of(
            await self.best_effort(self.redis.get(MATTER.format(t.matter["matter_id"]))), t.call_id)
        if latest is not None and latest.get("matter_id") == t.matter["matter_id"]:
            t.matter = latest
            t.category = latest.get("category") or t.category

    def record(self, t: m.Transfer) -> dict:
        """The outcome record (schema: config/outcome-record.schema.json)."""
        s = t.steps

        def ms(a: str, b: str) -> int | None:
            return round((s[b] - s[a]) * 1000) if a in s and b in s else None

        return {
            "schema": 1,
            "transfer_id": t.transfer_id,
            "call_id": t.call_id,
            "mode": t.mode,
            "trigger": t.trigger,
            "origin": t.hotline,
            "target": t.target or None,
            "initiating_agent": t.agent,
            "answering_agent": t.answered_by,
            "caller_number": t.caller_number,
            "category": t.category,
            "emergency": t.emergency,
            "matter": t.matter,
            "chain": t.chain,
            "result": str(t.result),
            "detail": t.detail,
            "decided_by": t.decided_by,
            "recording": t.recording,
            "timestamps": {k: _iso(v) for k, v in s.items()},
            "durations_ms": {
                "to_answer": ms("requested", "answered"),
                "ringing": ms("ringing", "answered") or ms("ringing", "ended"),
                "consult": ms("conference", "ended"),
                "total": ms("requested", "ended"),
            },
        }

    async def alert(self, t: m.Transfer, kind: str) -> None:
        body = {"kind": kind, "transfer_id": t.transfer_id, "call_id": t.call_id,
                "origin": t.hotline, "target": t.target, "category": t.category,
                "caller_number": t.caller_number}
        await self.raise_alert(body)

    async def announced(self, transfer_id: str) -> None:
        """A transfer's announcement ended: the caller hears ringback while the target still
        rings (nothing if it answered, or the transfer ended, meanwhile)."""
        t = self.active.get(transfer_id)
        if t is not None and t.state == m.State.DIALING and not t.agent_stays:
            try:
                await self.ari.post(f"/channels/{t.caller}/ring")
            except AriError as exc:
                self.log.info("no ringback after the announcement", transfer_id=transfer_id,
                              error=str(exc))

    async def raise_alert(self, body: dict) -> None:
        """Into the sidecar's webhook outbox. Best effort: Redis is never on a call's path."""
        body = {**body, "at": _iso(time.time())}
        self.log.warning("alert raised", alert=body["kind"], transfer_id=body.get("transfer_id"))
        await self.best_effort(self.redis.xadd(ALERTS.key, ALERTS.entry(body), **ALERTS.trim()))

    # --- persistence --------------------------------------------------------------------------
    def persist(self, t: m.Transfer) -> None:
        if t.transfer_id in self.traced and self.unread:
            # Carried on from its trace while Redis did not answer: a write that reached Redis
            # before the read would put this process's state where the past it adds is kept.
            return
        self.states.put(t.transfer_id, t)

    def _write_state(self, pipe, tid: str, t: "m.Transfer | _Gone") -> None:
        if isinstance(t, _Gone):
            pipe.delete(TRANSFER_STATE.format(tid), CALL_LOCK.format(t.call_id))
            pipe.srem(ACTIVE_TRANSFERS.format(self.hotline.id), tid)
            pipe.hdel(TRANSFER_ANSWERED, tid)
        else:
            pipe.set(TRANSFER_STATE.format(tid), json.dumps(t.to_dict()))
            pipe.sadd(ACTIVE_TRANSFERS.format(self.hotline.id), tid)

    async def _lock(self, call_id: str) -> tuple[bool, dict | None]:
        """The call's transfer lock, and the matter its desktop tagged it with, in one round
        trip: (locked, matter or None)."""
        if self._lock_waits(call_id):
            # The call's last transfer holds the lock until its removal is written.
            await self.best_effort(self.states.flush())
            if self._lock_waits(call_id):
                # Not written: as with Redis down, the in-memory check is the lock (asking
                # Redis would find the old lock, and the old removal would delete a new one).
                return True, None
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(CALL_LOCK.format(call_id), "1", nx=True, ex=600)
        pipe.get(CALL_MATTER.format(call_id))
        got = await self.best_effort(pipe.execute(), default=None)
        if got is None:
            # Redis down: the in-memory check already stopped a second transfer in this process;
            # the transfer goes ahead without its matter.
            return True, None
        return bool(got[0]), self._matter_of(got[1], call_id)

    def _lock_waits(self, call_id: str) -> bool:
        return any(isinstance(v, _Gone) and v.call_id == call_id
                   for v in self.states.waiting().values())

    def _matter_of(self, raw: bytes | None, call_id: str) -> dict | None:
        """A stored matter (JSON), or None: none stored, or unreadable (the transfer goes on
        without it)."""
        try:
            matter = json.loads(raw) if raw else None
        except ValueError:
            matter = None
        if raw and not isinstance(matter, dict):
            self.log.warning("unreadable matter: the transfer goes without it", call_id=call_id)
            return None
        return matter

    async def best_effort(self, coro, default=None):
        """Best effort with a circuit breaker: an outage costs one timeout, not one per call."""
        if time.monotonic() < self._redis_down_until:
            coro.close()
            return default
        try:
            return await asyncio.wait_for(coro, REDIS_TIMEOUT)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._redis_down_until = time.monotonic() + REDIS_BACKOFF
            self.log.warning("redis unavailable; continuing without it", error=repr(exc))
            return default

    # --- after a (re)connect ----------------------------------------------------------------------
    async def read_states(self, background: bool = False) -> list[m.Transfer] | None:
        """The transfers left in Redis (by the instance before this one, or by this one before
        a reconnect); None when Redis could not give all of them. Reads only. ``background``:
        off the event queue, so past the circuit breaker (which would hold the next try back
        5 s after Redis answers again: a key pressed then was seen to find nothing to decide)."""
        async def read() -> list[m.Transfer]:
            ids = sorted(raw.decode() for raw in
                         await self.redis.smembers(ACTIVE_TRANSFERS.format(self.hotline.id)))
            keys = [TRANSFER_STATE.format(tid) for tid in ids]
            found = await self.redis.mget(keys) if keys else []
            return [m.Transfer.from_dict(json.loads(data)) for data in found if data]
        if not background:
            return await self.best_effort(read(), default=None)
        try:
            return await asyncio.wait_for(read(), REDIS_TIMEOUT)
        except (RedisError, OSError, asyncio.TimeoutError):
            return None

    def adopt(self, found: list[m.Transfer]) -> list[m.Transfer]:
        """Take on those of ``found`` this process does not know: not its own going on, not its
        own finished (their removal may be waiting to be written, or written after ``found``
        was read)."""
        own = {*self.active, *self.states.waiting(), *self.finished}
        for stored in found:
            if stored.transfer_id in self.traced and stored.transfer_id in self.active:
                m.add_history(self.active[stored.transfer_id], stored)
        traced, self.traced = self.traced, set()
        for tid in traced:
            if tid in self.active:
                self.persist(self.active[tid])      # held back until Redis was read: now
        # A call this process has started a transfer on since is its own now (the state found
        # is older than the call's present).
        busy = {t.call_id for t in self.active.values()}
        adopted = [t for t in found if t.transfer_id not in own and t.call_id not in busy]
        for t in adopted:
            self.active[t.transfer_id] = t
            self.by_leg[t.target_leg] = t.transfer_id
            self.by_caller[t.caller] = t.transfer_id
        return adopted

    async def from_traces(self, channels: list[dict]) -> list[m.Transfer]:
        """Transfers the PBX shows that this process does not know from Redis: begun less than
        a Redis stall before the instance before this one was killed (their state never
        written), or any, while Redis does not answer. Each is read from its caller's channel
        (``TRACE_VAR``: the transfer as it began), and the machine carries it on from there
        with what the PBX shows, as it does a state read from Redis; what Redis knew of its
        past is added if Redis answers later (``adopt``)."""
        own = {*self.active, *self.states.waiting(), *self.finished}
        found = []
        for ch in channels:
            vars_ = ch.get("channelvars") or {}
            tid = vars_.get(dm.TRANSFER_VAR)
            if vars_.get("HOTLINE_ROLE") != "caller" or not tid or tid in own:
                continue
            try:
                t = await self._traced(ch["id"], tid)
            except AriError as exc:
                # Read again at the next reconcile; until then the PBX carries the call alone.
                self.log.warning("cannot read a transfer's trace", transfer_id=tid,
                                 error=str(exc))
                continue
            if t is None and self.unread:
                continue                    # Redis, when it answers, may know it
            if t is None or await self.best_effort(self.redis.exists(OUTCOME_CLAIM.format(tid))):
                # Without a trace it cannot be finished; recorded, it is over (only its name on
                # the channel was left behind). Either way the caller must not wait on it.
                legs = [c["id"] for c in channels if (c.get("channelvars") or {}).get(
                    "HOTLINE_ROLE") == "target" and c["channelvars"].get(dm.TRANSFER_VAR) == tid]
                await self._let_go(ch["id"], tid, legs, recorded=t is not None)
                continue
            if t.conference and await self.interp.live_recording(m.recording_of(t)):
                m.found_in_conference(t)
            self.log.warning("transfer learnt from its caller's channel", transfer_id=tid,
                             call_id=t.call_id, redis="unanswered" if self.unread else "lacks it")
            self.active[tid] = t
            self.by_leg[t.target_leg] = tid
            self.by_caller[t.caller] = tid
            if self.unread:
                self.traced.add(tid)        # what Redis knew of its past is added later
            found.append(t)
        return found

    async def _traced(self, caller: str, tid: str) -> m.Transfer | None:
        """The caller's trace of transfer ``tid``; None: it has none (or not of this one).
        Raises AriError when the PBX could not say."""
        try:
            value = (await self.ari.get(f"/channels/{caller}/variable",
                                        variable=dm.TRACE_VAR)).get("value") or ""
        except AriNotFound:
            return None                                 # never set, or the caller is gone
        try:
            t = m.Transfer.from_dict(json.loads(value)) if value else None
        except (ValueError, TypeError) as exc:
            self.log.error("a transfer's trace is unreadable", transfer_id=tid, error=repr(exc))
            return None
        return t if t is not None and t.transfer_id == tid and t.caller == caller else None

    async def _let_go(self, caller: str, tid: str, legs: list[str], recorded: bool) -> None:
        call = self.desk.calls.get(caller)
        if recorded:
            self.log.info("a recorded transfer's name left on its caller's channel: cleared",
                          transfer_id=tid)
        else:
            self.log.error("transfer in progress unknown to Redis and without a trace: it is "
                           "ended, and a caller waiting on it goes back to this hotline",
                           transfer_id=tid)
        for leg in legs:
            if call is None or leg != call.remote_leg:      # not the caller's party now
                await self.ari.delete_quietly(f"/channels/{leg}")
        if call is not None and call.state == dm.TRANSFERRING:
            await self.interp.deliver(dm.Ev.RETURNED, dm.Returned(caller, None))
        await self.interp.deliver(dm.Ev.TRANSFER_ENDED, dm.RemoteJoined(caller, None))

    async def reconcile(self, channels: list[dict], bridges: list[dict],
                        adopted: list[m.Transfer] | None = None) -> None:
        """Finish or fall back every transfer that was in flight while we were away; with
        ``adopted``, only those (read from Redis later: ``read_states``, ``adopt``)."""
        if adopted is None:
            if self.unread or not self.active:
                found = await self.read_states()
                # Redis could not say: the application asks again at each tick, in the
                # background (a restart into a slow Redis must not leave a three-way call deaf
                # to the agents' keys).
                self.unread = found is None
                self.adopt(found or [])
            adopted = list(self.active.values())
        adopted = adopted + await self.from_traces(channels)
        live = {c["id"]: c for c in channels}
        bridge_of = {ch: b["id"] for b in bridges for ch in b.get("channels", [])}
        for t in adopted:
            if t.caller in self.desk.calls:
                await self.interp.deliver(dm.Ev.TRANSFER_RESUMED, dm.TransferNote(
                    t.caller, t.transfer_id, blind=t.mode == Mode.BLIND))
            target = live.get(t.target_leg)
            facts = m.Facts(
                agent_alive=bool(t.agent_leg) and t.agent_leg in live,
                caller_alive=t.caller in live,
                target_alive=target is not None,
                target_up=target is not None and target.get("state") == "Up",
                bridged=(t.caller in bridge_of and bridge_of.get(t.caller)
                         == bridge_of.get(t.target_leg)))
            self.log.info("reconciling transfer", transfer_id=t.transfer_id, state=str(t.state),
                          facts=vars(facts))
            await self._step(t, m.Ev.RESTARTED, facts)
