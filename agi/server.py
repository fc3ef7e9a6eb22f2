"""The FastAGI server: ``agi://<host>:<port>/<hotline>/<command>[,args]``.

One process, one thread per AGI session (pyst2 is blocking I/O; a session lasts milliseconds).
Commands:

``key,<action>``   on the agent's channel, from a features.conf applicationmap key on a call the
                   centre's Queue()/Dial() bridged: hands caller and agent to the ARI
                   application (AMI Redirect into ``hotline-adopt``), which performs <action>
                   exactly as for a call it delivered. Sets HOTLINE_KEY_STATUS (ok | refused).
``route,<text>``   sets HOTLINE_ROUTE_PLATFORM / _CATEGORY / _EMERGENCY / _REASON from the matter
                   catalog for a matter code or free text (R14).
``screen``         sets HOTLINE_SCREEN to "harassment" when the caller's number is in the
                   harassment set and the hotline has ``screen_to`` (R9), else to "".

Nothing that arrives here (arguments, caller ID, variables) is used as a dial string or a
dialplan location: the hotline and action must be configured ones, channel names must look like
channel names, and the Redirect goes to the fixed ``hotline-adopt`` context.
"""

from __future__ import annotations

import re
import socketserver
import threading
import time
from typing import Callable

import redis
import structlog
from asterisk.agi import AGIException, AGIHangup

from hotline_link.logs import mask_number
from hotline_link.render import features
from hotline_link.settings import Hotline, Settings
from transfer.catalog import Catalog, recommend

from .ami import Ami, AmiError
from .session import Session

log = structlog.get_logger("agi")

ADOPT_CONTEXT = "hotline-adopt"
CHANNEL_RE = re.compile(r"^[A-Za-z0-9]+/[A-Za-z0-9_.@+:-]+(;[12])?$")
MAX_TEXT = 500


class Refused(Exception):
    """A request this server will not act on; the message says why (logged, and given to the
    dialplan in a status variable)."""


class AgiServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, settings: Settings, catalog: Catalog,
                 app_ready: Callable[[str], bool] = lambda _hid: True):
        self.settings = settings
        self.catalog = catalog
        self.app_ready = app_ready
        self.actions = {hid: {f.action for f in features(settings, hid)}
                        for hid in settings.hotlines}
        self.ami = {hid: Ami(h.ami) for hid, h in settings.hotlines.items() if h.ami}
        self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=0.5,
                                          socket_connect_timeout=0.5)
        self.active = 0               # AGI sessions being served now (logged with each command)
        self._count_lock = threading.Lock()
        super().__init__(settings.agi.listen, _Handler)

    def server_close(self) -> None:
        super().server_close()
        self.redis.close()

    # --- commands -------------------------------------------------------------------------------
    def cmd_screen(self, agi: Session, hotline: Hotline, clog) -> None:
        number = agi.env.get("agi_callerid", "")
        verdict = ""
        if number.isdigit() or (number.startswith("+") and number[1:].isdigit()):
            try:
                flagged = bool(self.redis.sismember(self.settings.screening.harassment_set, number))
            except redis.RedisError as exc:
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
        agi.set("HOTLINE_SCREEN", verdict)

    def cmd_route(self, agi: Session, hotline: Hotline, clog) -> None:
        text = ",".join(agi.args).strip()[:MAX_TEXT]
        code = text if text in self.catalog.by_code else None
        rec = recommend(self.catalog, code=code, text=None if code else text)
        agi.set("HOTLINE_ROUTE_PLATFORM", rec.platform or "")
        agi.set("HOTLINE_ROUTE_CATEGORY", rec.category or "")
        agi.set("HOTLINE_ROUTE_EMERGENCY", "1" if rec.emergency else "0")
        agi.set("HOTLINE_ROUTE_REASON", rec.reason)
        clog.info("route", platform=rec.platform, category=rec.category, emergency=rec.emergency)

    def cmd_key(self, agi: Session, hotline: Hotline, clog) -> None:
        try:
            self._hand_over(agi, hotline, clog)
        except Refused as exc:
            clog.warning("key refused", reason=str(exc))
            agi.set("HOTLINE_KEY_STATUS", f"refused: {exc}")
            return
        agi.set("HOTLINE_KEY_STATUS", "ok")

    def _hand_over(self, agi: Session, hotline: Hotline, clog) -> None:
        action = agi.args[0] if agi.args else ""
        if action not in self.actions[hotline.id]:
            raise Refused(f"unknown action {action!r}")
        agent_channel = agi.env.get("agi_channel", "")
        agent = hotline.agent_of_channel(agent_channel)
        if agent is None:
            raise Refused(f"{agent_channel!r} is not an agent of {hotline.id}")
        peer = agi.get("BRIDGEPEER")
        if not CHANNEL_RE.match(peer):
            raise Refused(f"no caller bridged with the agent (BRIDGEPEER={peer!r})")
        ami = self.ami.get(hotline.id)
        if ami is None:
            raise Refused(f"hotlines.{hotline.id}.ami is not configured")
        if not self.app_ready(hotline.id):
            raise Refused("the ARI application is not connected; the call stays as it is")
        agi.set("HOTLINE_ADOPT", action)
        agi.set("HOTLINE_PEER", peer)
        try:
            ami.redirect_pair(agent_channel, peer, ADOPT_CONTEXT, "agent", "caller")
        except AmiError as exc:
            raise Refused(str(exc)) from None
        clog.info("call handed to the application", action=action, agent=agent)


class _Handler(socketserver.StreamRequestHandler):
    server: AgiServer

    def handle(self) -> None:
        srv = self.server
        self.connection.settimeout(10)
        stream = self.connection.makefile("rw", encoding="utf-8", errors="replace", newline="\n")
        started = time.monotonic()
        clog = log
        try:
            agi = Session(stream, stream)
            script = agi.env.get("agi_network_script", "")
            hotline_id, _, command = script.partition("/")
            clog = log.bind(hotline=hotline_id, command=command)
            hotline = srv.settings.hotlines.get(hotline_id)
            handler = getattr(srv, f"cmd_{command}", None) if command.isidentifier() else None
            if hotline is None or handler is None:
                clog.warning("unknown AGI request", script=script)
                agi.set("HOTLINE_AGI_ERROR", f"unknown request {script!r}")
                return
            # The call's linkedid: the call_id the application's logs and records use.
            clog = clog.bind(call_id=agi.get_full_variable("${CHANNEL(linkedid)}")
                             or agi.env.get("agi_uniqueid"))
            with srv._count_lock:
                srv.active += 1
                active = srv.active
            try:
                handler(agi, hotline, clog.bind(active_sessions=active))
            finally:
                with srv._count_lock:
                    srv.active -= 1
            clog.debug("agi done", ms=round((time.monotonic() - started) * 1000, 1))
        except AGIHangup as exc:
            clog.info("channel hung up during AGI", detail=str(exc))
        except (AGIException, OSError) as exc:
            clog.warning("AGI session failed", error=repr(exc))
        finally:
            try:
                stream.close()
            except OSError:
                pass


def serve_in_thread(server: AgiServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="fastagi", daemon=True)
    thread.start()
    log.info("fastagi listening", listen=f"{server.server_address[0]}:{server.server_address[1]}")
    return thread
