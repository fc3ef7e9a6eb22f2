"""The FastAGI server: ``agi://<host>:<port>/<hotline>/<command>[,args]``.

Served on the service's event loop (``asyncio.start_server``): a session lasts milliseconds and
waits only on Asterisk, Redis or AMI, each under a deadline. Commands (``COMMANDS``):

``key,<action>``   on the agent's channel, from a features.conf applicationmap key on a call the
                   centre's Queue()/Dial() bridged: hands caller and agent to the ARI
                   application (AMI Redirect into ``hotline-adopt``), which performs <action>
                   exactly as for a call it delivered. Sets HOTLINE_KEY_STATUS (ok | refused).
``route,<text>``   sets HOTLINE_ROUTE_PLATFORM / _CATEGORY / _EMERGENCY / _CONFIDENCE / _REASON
                   from the recommender for a matter code or free text (R14), and tags the call
                   with that matter (HOTLINE_ROUTE_MATTER: its id) unless its desktop already
                   did: the category and the words travel with a later transfer.
``screen``         sets HOTLINE_SCREEN to "harassment" when the caller's number is in the
                   harassment set and the hotline has ``screen_to`` (R9), else to "".
``record,<entry>,<linkedid>,<arrived>,<answered>,<ended>,<agent>,<agent channel>,<hangup
source>,<queue status>,<transfer id>,<origin>``
                   from the hangup handler of a call the centre's Queue() delivered (or the
                   queue in degraded mode, ``extensions.conf`` [hotline-queue-record]): its call
                   record, through the same spool and stream as the application's. Sets nothing.

Nothing that arrives here (arguments, caller ID, variables) is used as a dial string or a
dialplan location: the hotline and action must be configured ones, channel names must look like
channel names, and the Redirect goes to the fixed ``hotline-adopt`` context.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Awaitable, Callable

import redis.asyncio as aioredis
import structlog
from asterisk.agi import AGIException, AGIHangup
from redis import exceptions as redis_errors

from contracts.names import CALL_MATTER, MATTER, MATTER_TTL
from contracts.privacy import mask_number
from hotline_link.outcomes import RecordSink
from hotline_link.recommender import Recommender
from hotline_link.render import features
from hotline_link.settings import Hotline, Settings
from transfer.callrecord import from_queue_fields
from transfer import matter as matters
from transfer.catalog import Catalog

from .ami import ADOPT_CONTEXT, CHANNEL_RE, Ami, AmiError
from .session import MAX_LINE, Session

log = structlog.get_logger("agi")

MAX_TEXT = 500
# A whole session: Asterisk answers each command at once; Redis and AMI have shorter deadlines
# of their own. Past it the session is dropped and the dialplan goes on (AGISTATUS=FAILURE).
SESSION_TIMEOUT = 10.0


class Refused(Exception):
    """A request this server will not act on; the message says why (logged, and given to the
    dialplan in a status variable)."""


Command = Callable[["AgiServer", Session, Hotline, object], Awaitable[None]]


class AgiServer:
    def __init__(self, settings: Settings, catalog: Catalog, redis: aioredis.Redis,
                 app_ready: Callable[[str], bool] = lambda _hid: True,
                 records: RecordSink | None = None, recommender: Recommender | None = None):
        self.settings = settings
        self.catalog = catalog
        # Answers by the catalog's rules until (unless) its model is loaded.
        self.recommender = recommender or Recommender(catalog)
        self.redis = redis
        self.records = records          # call records of queue calls (``record``)
        self.app_ready = app_ready
        self.actions = {hid: {f.action for f in features(settings, hid)}
                        for hid in settings.hotlines}
        self.ami = {hid: Ami(h.ami) for hid, h in settings.hotlines.items() if h.ami}
        self.active = 0               # AGI sessions being served now (logged with each command)
        self._server: asyncio.Server | None = None

    async def start(self) -> tuple[str, int]:
        host, port = self.settings.agi.listen
        self._server = await asyncio.start_server(self._serve, host, port, backlog=128,
                                                  limit=MAX_LINE, reuse_address=True)
        bound = self._server.sockets[0].getsockname()[:2]
        log.info("fastagi listening", listen=f"{bound[0]}:{bound[1]}")
        return bound

    async def keep_trying(self, every: float = 1.0) -> None:
        """Start, retrying while the address is taken: a process that was killed -9 leaves
        its sessions' sockets on the port for a while, and the ARI applications (the callers)
        must not wait for FastAGI (the keys of queue calls, which degrade to no key)."""
        while True:
            try:
                await self.start()
                return
            except OSError as exc:
                log.error("fastagi cannot listen yet; retrying", error=str(exc),
                          listen="%s:%s" % self.settings.agi.listen)
                await asyncio.sleep(every)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for ami in self.ami.values():
            await ami.close()

    # --- commands -------------------------------------------------------------------------------
    async def cmd_screen(self, agi: Session, hotline: Hotline, clog) -> None:
        number = agi.env.get("agi_callerid", "")
        verdict = ""
        if number.isdigit() or (number.startswith("+") and number[1:].isdigit()):
            try:
                flagged = bool(await self.redis.sismember(
                    self.settings.screening.harassment_set, number))
            except (redis_errors.RedisError, OSError) as exc:
                # Unscreened beats unanswered: the call goes on as a normal call.
                clog.warning("screening skipped: redis unavailable", error=str(exc))
                flagged = False
            if flagged and hotline.screen_to:
                verdict = "harassment"
                clog.info("caller flagged for harassment", caller=mask_number(number),
                          route_to=hotline.screen_to)
            elif flagged:
                clog.info("caller flagged for harassment; this hotline has no screen_to",
                          caller=mask_number(number))
        await agi.set("HOTLINE_SCREEN", verdict)

    async def cmd_route(self, agi: Session, hotline: Hotline, clog) -> None:
        text = ",".join(agi.args).strip()[:MAX_TEXT]
        code = text if text in self.catalog.by_code else None
        # In a worker thread: reading a description takes tens of milliseconds (its embedding),
        # which this loop owes to the other calls it serves.
        rec = await asyncio.to_thread(self.recommender.recommend, code=code,
                                      text=None if code else text)
        matter_id = ""
        if rec.category or rec.emergency:
            matter_id = await self._tag(agi, hotline, rec, "" if code else text, clog)
        await agi.set("HOTLINE_ROUTE_PLATFORM", rec.platform or "")
        await agi.set("HOTLINE_ROUTE_CATEGORY", rec.category or "")
        await agi.set("HOTLINE_ROUTE_EMERGENCY", "1" if rec.emergency else "0")
        await agi.set("HOTLINE_ROUTE_CONFIDENCE",
                      "" if rec.confidence is None else f"{rec.confidence:.2f}")
        await agi.set("HOTLINE_ROUTE_MATTER", matter_id)
        await agi.set("HOTLINE_ROUTE_UNSURE", rec.unsure)
        await agi.set("HOTLINE_ROUTE_REASON", rec.reason)
        clog.info("route", platform=rec.platform, category=rec.category, emergency=rec.emergency,
                  confidence=rec.confidence, method=rec.method, matter_id=matter_id or None)

    async def _tag(self, agi: Session, hotline: Hotline, rec, summary: str, clog) -> str:
        """The call's matter from the IVR's answer, unless one is tagged already (a desktop's
        tag is a person's word and wins). Best effort: the call goes on untagged on failure."""
        call_id = await agi.get("CHANNEL(linkedid)") or agi.env.get("agi_uniqueid", "")
        matter, problems = matters.parse(
            {"category": rec.category, "summary": summary[:matters.LIMITS["summary"]],
             "emergency": rec.emergency, "agent": "ivr"},
            call_id=call_id, hotline=hotline.id, hotlines=tuple(self.settings.hotlines),
            catalog=self.catalog)
        if matter is None or not call_id:
            clog.warning("route: call not tagged", problems=problems, call_id=call_id or None)
            return ""
        text = json.dumps(matter, ensure_ascii=False)
        try:
            # Under its id first: a call tagged with an id always finds the matter behind it.
            await self.redis.set(MATTER.format(matter["matter_id"]), text, ex=MATTER_TTL)
            if not await self.redis.set(CALL_MATTER.format(call_id), text, nx=True, ex=MATTER_TTL):
                return ""
        except (redis_errors.RedisError, OSError) as exc:
            clog.warning("route: call not tagged, redis unavailable", error=str(exc))
            return ""
        return matter["matter_id"]

    async def cmd_key(self, agi: Session, hotline: Hotline, clog) -> None:
        try:
            await self._hand_over(agi, hotline, clog)
        except Refused as exc:
            clog.warning("key refused", reason=str(exc))
            await agi.set("HOTLINE_KEY_STATUS", f"refused: {exc}")
            return
        await agi.set("HOTLINE_KEY_STATUS", "ok")

    async def _hand_over(self, agi: Session, hotline: Hotline, clog) -> None:
        action = agi.args[0] if agi.args else ""
        if action not in self.actions[hotline.id]:
            raise Refused(f"unknown action {action!r}")
        agent_channel = agi.env.get("agi_channel", "")
        agent = hotline.agent_of_channel(agent_channel)
        if agent is None:
            raise Refused(f"{agent_channel!r} is not an agent of {hotline.id}")
        peer = await agi.get("BRIDGEPEER")
        if not CHANNEL_RE.match(peer):
            raise Refused(f"no caller bridged with the agent (BRIDGEPEER={peer!r})")
        ami = self.ami.get(hotline.id)
        if ami is None:
            raise Refused(f"hotlines.{hotline.id}.ami is not configured")
        if not self.app_ready(hotline.id):
            raise Refused("the ARI application is not connected; the call stays as it is")
        await agi.set("HOTLINE_ADOPT", action)
        await agi.set("HOTLINE_PEER", peer)
        try:
            await ami.redirect_pair(agent_channel, peer, ADOPT_CONTEXT, "agent", "caller")
        except AmiError as exc:
            raise Refused(str(exc)) from None
        clog.info("call handed to the application", action=action, agent=agent)

    async def cmd_record(self, agi: Session, hotline: Hotline, clog) -> None:
        if self.records is None:
            clog.warning("queue call not recorded: this server keeps no call records")
            return
        rec = from_queue_fields(list(agi.args), hotline.id, now=time.time(),
                                call_id=agi.env.get("agi_uniqueid", ""),
                                caller_number=agi.env.get("agi_callerid", ""))
        agent = rec["agents"][0] if rec["agents"] else None
        if agent and agent not in hotline.agents:
            clog.warning("queue call answered by a member that is not an agent of the hotline",
                         member=agent)
        await self.records.emit(rec)
        clog.info("queue call recorded", disposition=rec["disposition"],
                  delivered_by=rec["delivered_by"], agent=agent, ended_by=rec["ended_by"])

    # The request's path names the command; only these are served.
    COMMANDS: dict[str, Command] = {"key": cmd_key, "route": cmd_route, "screen": cmd_screen,
                                    "record": cmd_record}

    # --- sessions -------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = time.monotonic()
        clog = log
        try:
            async with asyncio.timeout(SESSION_TIMEOUT):
                agi = await Session(reader, writer).start()
                script = agi.env.get("agi_network_script", "")
                hotline_id, _, command = script.partition("/")
                clog = log.bind(hotline=hotline_id, command=command)
                hotline = self.settings.hotlines.get(hotline_id)
                handler = self.COMMANDS.get(command)
                if hotline is None or handler is None:
                    clog.warning("unknown AGI request", script=script)
                    await agi.set("HOTLINE_AGI_ERROR", f"unknown request {script!r}")
                    return
                # The call's linkedid: the call_id the application's logs and records use.
                clog = clog.bind(call_id=await agi.get_full("${CHANNEL(linkedid)}")
                                 or agi.env.get("agi_uniqueid"))
                self.active += 1
                try:
                    await handler(self, agi, hotline, clog.bind(active_sessions=self.active))
                finally:
                    self.active -= 1
                clog.debug("agi done", ms=round((time.monotonic() - started) * 1000, 1))
        except AGIHangup as exc:
            clog.info("channel hung up during AGI", detail=str(exc))
        except TimeoutError:
            clog.warning("AGI session timed out", seconds=SESSION_TIMEOUT)
        except (AGIException, OSError) as exc:
            clog.warning("AGI session failed", error=repr(exc))
        finally:
            writer.close()
