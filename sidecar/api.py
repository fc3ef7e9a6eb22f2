"""The sidecar's HTTP API for CTI integrators, supervisors and the platforms' ticket systems.

Every route except ``/health`` and ``/openapi.json`` needs ``Authorization: Bearer <token>`` of
a client (``sidecar/access.py``) that has the route's scope (``ROUTES``: the README's scope
matrix); what concerns another centre is hidden from a centre's clients, and caller numbers are
masked for clients that do not own the record. Every request is in the audit trail
(``sidecar/audit.py``). Errors are JSON ``{"error": "..."}`` with a 4xx status. The contract is
``sidecar/openapi.json``, served at ``/openapi.json``.

- ``GET /transfers``: query by time range, platform, result, category, caller; ``format=csv``
  exports (R12).
- ``GET /transfers/{id}``: one transfer's record, tickets and trail of events.
- ``POST /transfers``: an online request (R10) becomes the same synced pair of tickets; the
  response names both. Idempotent by ``request_id``.
- ``POST /feedback``: a platform reports acceptance, progress or the final result of one of its
  tickets; the sidecar relays it to the other platform's linked ticket (R11).
- ``GET /calls``: call records (every call offered to a hotline) by arrival, filtered by hotline,
  disposition, caller, agent; ``format=csv``. ``GET /calls/{call_id}``: one call's record and the
  outcome of each transfer made from it.
- ``GET /kpis``: each hotline's call KPIs over 15 min, 1 h and 24 h (also in ``/metrics``).
- ``POST /calls/{call_id}/transfer``, ``GET /commands/{id}``: a transfer for a live call.
- ``POST /calls/{call_id}/action``: what an agent's key does (``contracts.vocab.KEY_ACTIONS``),
  from the agent screen's buttons; the far agent's decisions in a three-way call too.
- ``GET /catalog``, ``GET /recommendation?text=``: the matter categories, and the recommender's
  suggestion for what an agent types.
- ``GET /events``: the live event stream for desktops (``sidecar.events``).
- ``GET /audit``: the audit trail (administrators); ``format=csv`` exports the whole range.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import structlog
from aiohttp import web

from contracts.names import (CALL_INDEX, CALL_MATTER, CALL_RECORD, CHAIN, COMMAND_RESULTS,
                             COMMANDS, INDEX, LIVE, MATTER, MATTER_TTL, OVERDUE, RECORD, TRAIL)
from contracts.privacy import mask_number, masked
from contracts.vocab import API_MODES, KEY_ACTIONS, DeliveredBy, Disposition, EndedBy, Mode
from hotline_link.config import project_home
from hotline_link.redisconn import NO_WAIT, Durable, NotReplicated
from hotline_link.recommender import Recommender
from transfer import matter as matters
from transfer.analysis import summarize
from transfer.catalog import Catalog

from . import trail
from .access import Client, Clients, Scope
from .adapters import TicketError
from .analysis import current_warnings
from .settings import AnalysisSettings
from .audit import Audit
from .calls import kpis
from .events import EventStream, is_stream_id
from .feedback import STATUSES as FEEDBACK_STATUSES, Feedback, NoLink
from .sync import Syncer
from .workorder import NEEDS_CLASSIFICATION, online_work_orders

log = structlog.get_logger("api")

SPEC = Path(__file__).with_name("openapi.json")
MAX_ROWS = 10000
ANALYSIS_SPAN_DAYS = 31
ANALYSIS_MAX_RECORDS = 200_000
SCAN_CHUNK = 500
MAX_SCAN = 50_000
CSV_FIELDS = ("transfer_id", "ended", "origin", "target", "mode", "trigger", "result", "category",
              "emergency", "caller_number", "initiating_agent", "answering_agent")
# ...then ``ticket_<platform id>`` per configured platform (ticket_12345, ticket_110 by default).
CALL_CSV_FIELDS = ("call_id", "hotline", "delivered_by", "caller_number", "arrived_at",
                   "answered_at", "ended_at",
                   "disposition", "ended_by", "wait_ms", "talk_ms", "duration_ms", "agents",
                   "transfers", "recovered")
DISPOSITIONS = tuple(str(d) for d in Disposition)
ENDED_BY = tuple(str(e) for e in EndedBy)
DELIVERED_BY = tuple(str(d) for d in DeliveredBy)
AUDIT_CSV_FIELDS = ("id", "at", "client", "role", "hotline", "remote", "method", "path", "query",
                    "scope", "status", "outcome", "ms", "resource")

# Every route: (method, path, the scope a client needs, handler). No scope: no token needed.
# The README's scope matrix is this table with access.ROLES; tests/test_access.py walks it.
ROUTES = (
    ("GET", "/health", None, "health"),
    ("GET", "/openapi.json", None, "openapi"),
    ("GET", "/transfers", Scope.RECORDS_READ, "query"),
    ("GET", "/transfers/{transfer_id}", Scope.RECORDS_READ, "one"),
    ("GET", "/chains/{chain_id}", Scope.RECORDS_READ, "chain"),
    ("POST", "/transfers", Scope.REQUESTS_CREATE, "online"),
    ("POST", "/feedback", Scope.TICKETS_FEEDBACK, "feedback"),
    ("GET", "/calls", Scope.CALLS_READ, "calls"),
    ("GET", "/calls/{call_id}", Scope.CALLS_READ, "call"),
    ("GET", "/kpis", Scope.CALLS_READ, "kpis"),
    ("GET", "/calls/{call_id}/matter", Scope.CALLS_READ, "call_matter"),
    ("GET", "/matters/{matter_id}", Scope.CALLS_READ, "matter"),
    ("GET", "/catalog", Scope.CALLS_READ, "catalog_list"),
    ("GET", "/recommendation", Scope.CALLS_READ, "recommendation"),
    ("POST", "/calls/{call_id}/transfer", Scope.CALLS_CONTROL, "call_transfer"),
    ("POST", "/calls/{call_id}/action", Scope.CALLS_CONTROL, "call_action"),
    ("PUT", "/calls/{call_id}/matter", Scope.CALLS_CONTROL, "put_matter"),
    ("GET", "/commands/{command_id}", Scope.CALLS_CONTROL, "command"),
    ("GET", "/events", Scope.EVENTS_READ, "events"),
    ("GET", "/metrics", Scope.METRICS_READ, "metrics"),
    ("GET", "/audit", Scope.ADMIN, "audit_trail"),
    ("GET", "/overdue", Scope.RECORDS_READ, "overdue"),
    ("GET", "/analysis", Scope.RECORDS_READ, "analysis"),
    # The pages (sidecar/web): they hold no data; what they show comes from the API above,
    # with the token the person gives the page.
    ("GET", "/board", None, "page"),
    ("GET", "/report", None, "page"),
    ("GET", "/agent", None, "page"),
    ("GET", "/ui/{name}", None, "asset"),
)
WEB = Path(__file__).resolve().parent / "web"
PAGES = {"/board": "board.html", "/report": "report.html", "/agent": "agent.html"}
ASSETS = {"common.js": "text/javascript", "board.js": "text/javascript",
          "report.js": "text/javascript", "agent.js": "text/javascript", "style.css": "text/css",
          "echarts.min.js": "text/javascript"}
# Fetched at set-up (scripts/vendor-echarts.sh), not kept in the repository.
VENDOR = project_home() / "var" / "vendor"
# The pages load nothing from elsewhere and run no inline script.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                           "frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
SCOPES = {(method, path): scope for method, path, scope, _ in ROUTES}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Api:
    def __init__(self, redis: aioredis.Redis, syncer: Syncer, catalog: Catalog, clients: Clients,
                 hotlines: tuple[str, ...], durable: Durable | None = None,
                 answer_rate_target: float | None = None, recommender: Recommender | None = None,
                 *, audit: Audit, analysis_settings: AnalysisSettings):
        self.redis = redis
        self.analysis_settings = analysis_settings
        # Answers by the catalog's rules until (unless) its model is loaded.
        self.recommender = recommender or Recommender(catalog)
        self.answer_rate_target = answer_rate_target
        self.durable = durable or NO_WAIT
        self.syncer = syncer
        self.platforms = syncer.platforms
        self.csv_fields = (*CSV_FIELDS, *(f"ticket_{p}" for p in self.platforms))
        self.catalog = catalog
        self.clients = clients
        self.feedback_loop = Feedback(redis, syncer, self.durable)
        self.audit = audit
        self.hotlines = hotlines
        self.events = EventStream(redis, hotlines)

    def app(self, health) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=256 * 1024)
        handlers = {"health": health, "events": self.events.handle}
        for method, path, _scope, name in ROUTES:
            app.router.add_route(method, path, handlers.get(name) or getattr(self, name))
        app.on_shutdown.append(self.events.on_shutdown)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        started = time.perf_counter()
        resource = request.match_info.route.resource
        key = (request.method, resource.canonical if resource is not None else None)
        if key in SCOPES and SCOPES[key] is None:
            return await _answer(request, handler)
        scope = SCOPES.get(key)
        client = self.clients.authenticate(request.headers.get("Authorization", ""))
        if client is None:
            response = _error(401, "missing or wrong bearer token")
        elif scope is not None and not client.allows(scope):
            response = _error(403, f"client {client.describe()} lacks the scope {scope}")
        else:
            request["client"] = client
            # A stream's entry is written once it is open (EventStream calls this), not when
            # it ends hours later.
            request["opened"] = lambda status: self._audit(request, client, scope, status,
                                                           started)
            try:
                response = await _answer(request, handler)
            except Exception:
                await self._audit(request, client, scope, 500, started)
                raise
            if request.get("audited"):
                return response
        await self._audit(request, client, scope, response.status, started)
        return response

    async def _audit(self, request: web.Request, client: Client | None, scope, status: int,
                     started: float) -> None:
        request["audited"] = True
        await self.audit.record(self.audit.entry(request, client, scope and str(scope), status,
                                                 started))

    # --- live calls: a transfer started from a desktop (executed by the ARI app) ------------------------
    async def call_transfer(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        hotline, target = body.get("hotline"), body.get("target")
        mode = body.get("mode", Mode.BLIND)
        if refused := self._refused_command(request, body, "mode", mode, API_MODES):
            return refused
        call_id = request.match_info["call_id"]
        # The desktop may send the matter with the transfer: stored for the call first, in the
        # same round trip, so the transfer the command starts carries it.
        matter = body.get("matter")
        if matter is not None:
            if not isinstance(matter, dict):
                return _error(400, "matter must be an object (as for PUT /calls/{call_id}/matter)")
            stored = await self._matter_of(call_id, matter, hotline)
            if isinstance(stored, web.Response):
                return stored
            matter = stored[0]
        command = {"id": uuid.uuid4().hex, "call_id": call_id, "mode": mode, "target": target}
        return await self._queue(hotline, command, matter)

    async def call_action(self, request: web.Request) -> web.Response:
        """An agent's key, as a button: the hotline's ARI app does what the key would."""
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        hotline, action, target = body.get("hotline"), body.get("action"), body.get("target")
        if refused := self._refused_command(request, body, "action", action, KEY_ACTIONS):
            return refused
        unknown = sorted(set(body) - {"hotline", "action", "target"})
        if unknown:
            return _error(400, f"{', '.join(unknown)}: unknown field(s); an action has hotline, "
                               "action, target")
        command = {"id": uuid.uuid4().hex, "call_id": request.match_info["call_id"],
                   "action": action, "target": target}
        return await self._queue(hotline, command, None)

    def _refused_command(self, request: web.Request, body: dict, name: str, value,
                         allowed: tuple[str, ...]) -> web.Response | None:
        """Why a command for a live call is refused, if it is: its hotline (one of the client's
        own), its ``name`` (one of ``allowed``), its target."""
        hotline, target = body.get("hotline"), body.get("target")
        if hotline not in self.hotlines:
            return _error(400, f"hotline must be one of {', '.join(self.hotlines)}")
        if refused := _not_its_call(request, hotline):
            return refused
        if value not in allowed:
            return _error(400, f"{name} must be one of {', '.join(allowed)}")
        if target is not None and (not isinstance(target, str) or not target):
            return _error(400, "target must be a target id (e.g. 110, 119, province)")
        return None

    async def _queue(self, hotline: str, command: dict, matter: dict | None) -> web.Response:
        command_id = command["id"]
        # Queued means a replica has it too: a command lost in a failover would never run,
        # and the desktop would not know to send it again.
        pipe = self.redis.pipeline(transaction=False)
        if matter is not None:
            self._keep_matter(pipe, command["call_id"], matter)
        pipe.xadd(COMMANDS.of(hotline), COMMANDS.entry(command), **COMMANDS.trim())
        self.durable.add_wait(pipe)
        try:
            self.durable.check(await pipe.execute())
        except NotReplicated as exc:
            log.warning("command not confirmed by a replica", command_id=command_id,
                        error=str(exc))
            return web.json_response(
                {"command_id": command_id, "status": "unconfirmed",
                 "error": "Redis has the command but no replica confirmed it: it may run, or be "
                          f"lost in a failover; GET /commands/{command_id} says which"},
                status=503)
        return web.json_response({"command_id": command_id, "status": "queued",
                                  **({"matter_id": matter["matter_id"]} if matter else {})},
                                 status=202)

    async def catalog_list(self, request: web.Request) -> web.Response:
        """The matter categories a desktop's form offers (the annex's catalog)."""
        return web.json_response({"categories": [
            {"code": c.code, "name": c.name, "platform": c.platform, "gloss": c.gloss,
             "also_notify_departments": c.also_notify_departments}
            for c in self.catalog.categories]})

    async def recommendation(self, request: web.Request) -> web.Response:
        """What the recommender makes of a description, as the agent types it: the platform,
        the category, whether it sounds like an emergency, and why."""
        text = request.query.get("text", "").strip()
        if not text or len(text) > matters.LIMITS["summary"]:
            return _error(400, f"text: the description, 1 to {matters.LIMITS['summary']} "
                               "characters")
        # In a worker thread, as every reading of a description: its embedding takes tens of
        # milliseconds the event loop owes to other requests.
        rec = await asyncio.to_thread(self.recommender.recommend, text=text)
        category = self.catalog.by_code.get(rec.category or "")
        return web.json_response({
            "platform": rec.platform, "category": rec.category,
            "category_name": category.name if category else None,
            "emergency": rec.emergency, "emergency_why": rec.emergency_why,
            "reason": rec.reason, "confidence": rec.confidence, "method": rec.method,
            "notify_departments": rec.notify_departments, "read_as": rec.read_as,
            "unsure": rec.unsure or None,
            "alternatives": [{"label": a.label, "platform": a.platform,
                              "probability": round(a.probability, 4)}
                             for a in rec.alternatives]})

    async def put_matter(self, request: web.Request) -> web.Response:
        """The desktop tags the call it is on with its matter (or corrects it): stored under
        the call (read when the call is transferred) and under the matter's id (read by the
        receiving side), replacing the call's previous matter but keeping its id."""
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        call_id = request.match_info["call_id"]
        if body.get("hotline") in self.hotlines and (
                refused := _not_its_call(request, body["hotline"])):
            return refused
        stored = await self._matter_of(call_id, body, body.get("hotline"))
        if isinstance(stored, web.Response):
            return stored
        matter, previous = stored
        pipe = self.redis.pipeline(transaction=False)
        self._keep_matter(pipe, call_id, matter)
        self.durable.add_wait(pipe)
        try:
            self.durable.check(await pipe.execute())
        except NotReplicated as exc:
            log.warning("matter not confirmed by a replica", call_id=call_id, error=str(exc))
            return _error(503, "Redis has the matter but no replica confirmed it: send it again")
        return web.json_response(matter, status=200 if previous else 201)

    async def _matter_of(self, call_id: str, body: dict,
                         hotline) -> tuple[dict, dict | None] | web.Response:
        """The matter to store for ``call_id`` from a desktop's ``body`` (keeping the id of the
        call's previous matter), with that previous one; or a 400 naming every problem."""
        try:
            previous = json.loads(await self.redis.get(CALL_MATTER.format(call_id)) or "null")
        except ValueError:
            previous = None                     # unreadable: replaced, under a new id
        matter, problems = matters.parse(body, call_id=call_id, hotline=hotline,
                                         hotlines=self.hotlines, catalog=self.catalog,
                                         previous=previous)
        if matter is None:
            return _error(400, "; ".join(problems))
        return matter, previous

    @staticmethod
    def _keep_matter(pipe, call_id: str, matter: dict) -> None:
        text = json.dumps(matter, ensure_ascii=False)
        pipe.set(CALL_MATTER.format(call_id), text, ex=MATTER_TTL)
        pipe.set(MATTER.format(matter["matter_id"]), text, ex=MATTER_TTL)

    async def call_matter(self, request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        return await self._stored(request, CALL_MATTER.format(call_id),
                                  f"no matter tagged on call {call_id!r}")

    async def matter(self, request: web.Request) -> web.Response:
        matter_id = request.match_info["matter_id"]
        return await self._stored(request, MATTER.format(matter_id), f"no matter {matter_id!r}")

    async def _stored(self, request: web.Request, key: str, missing: str) -> web.Response:
        """The matter kept at ``key``, or 404 saying what is ``missing``. A matter travels with
        its call to the other centre: every centre's clients read it whole, a city-wide reader
        with the caller's number and name masked."""
        raw = await self.redis.get(key)
        if raw is None:
            return _error(404, missing)
        return _shown(request, self.hotlines, json.loads(raw))

    async def command(self, request: web.Request) -> web.Response:
        raw = await self.redis.hget(COMMAND_RESULTS, request.match_info["command_id"])
        if raw is None:
            return web.json_response({"status": "pending"}, status=200)
        return web.json_response(json.loads(raw))

    async def metrics(self, _request: web.Request) -> web.Response:
        if self.syncer.supervisor is not None:
            self.syncer.metrics.overdue_items.set(await self.syncer.supervisor.overdue_items())
        now = time.time()
        for hotline in self.hotlines:
            self.syncer.metrics.set_kpis(hotline, await kpis(self.redis, hotline, now))
        resp = web.Response(body=self.syncer.metrics.render())
        resp.content_type = "text/plain"
        resp.charset = "utf-8"
        return resp

    async def openapi(self, _request: web.Request) -> web.Response:
        return web.Response(text=SPEC.read_text(), content_type="application/json")

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=(WEB / PAGES[request.path]).read_bytes(),
                            content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSETS:
            return _error(404, f"no page asset {name!r}")
        path = (VENDOR if name == "echarts.min.js" else WEB) / name
        try:
            body = path.read_bytes()
        except FileNotFoundError:
            return _error(404, f"{name} is not installed here: run scripts/vendor-echarts.sh "
                               "(the pages then show their figures as tables only)")
        return web.Response(body=body, content_type=ASSETS[name], charset="utf-8",
                            headers={**PAGE_HEADERS, "Cache-Control": "max-age=3600"}
                            if path.parent == VENDOR else PAGE_HEADERS)

    async def analysis(self, request: web.Request) -> web.StreamResponse:
        """Joint analysis (R13) of the transfers and online requests recorded between ``from``
        and ``to`` (default: the last 7 days; at most ``ANALYSIS_SPAN_DAYS``): counts by the
        dimensions of ``by``, hotspots by area, repeat callers, emergencies, the dispute
        matters, and the categories rising above their baseline now. ``format=csv``: the
        counts."""
        q = request.query
        now = time.time()
        try:
            since = _time(q.get("from"), now - 7 * 86400)
            until = _time(q.get("to"), now)
        except ValueError as exc:
            return _error(400, str(exc))
        if not since < until or until - since > ANALYSIS_SPAN_DAYS * 86400:
            return _error(400, f"from must be before to, at most {ANALYSIS_SPAN_DAYS} days apart")
        by = tuple(d for d in (q.get("by") or "category").split(",") if d)
        top = q.get("top", "20")
        if not top.isdigit() or not 0 < int(top) <= 1000:
            return _error(400, "top must be an integer 1..1000")
        if q.get("format", "json") not in ("json", "csv"):
            return _error(400, "format must be json or csv")
        client: Client = request["client"]
        tids = await self.redis.zrangebyscore(INDEX, since, until, start=0,
                                              num=ANALYSIS_MAX_RECORDS + 1)
        truncated = len(tids) > ANALYSIS_MAX_RECORDS
        records = []
        for i in range(0, min(len(tids), ANALYSIS_MAX_RECORDS), 1000):
            page = tids[i:i + 1000]
            for raw in await self.redis.mget([RECORD.format(t.decode()) for t in page]):
                if raw and client.sees(_parties(record := json.loads(raw)["record"])):
                    records.append(record)
        try:
            figures = summarize(records, by, self.analysis_settings.timezone,
                                frozenset(self.syncer.disputes), int(top))
        except ValueError as exc:
            return _error(400, str(exc))
        if q.get("format") == "csv":
            resp = await _csv_download(request, (*by, "count"), "analysis.csv")
            await _csv_rows(resp, (*by, "count"), figures.counts)
            await resp.write_eof()
            return resp
        if not client.owns(self.hotlines):
            for row in figures.repeat_callers:
                row["caller_number"] = mask_number(row["caller_number"])
        warnings = await current_warnings(self.redis, self.analysis_settings, now)
        return web.json_response({
            "from": datetime.fromtimestamp(since, timezone.utc).isoformat(),
            "to": datetime.fromtimestamp(until, timezone.utc).isoformat(),
            "timezone": str(self.analysis_settings.timezone), "by": list(by),
            "records": figures.records, "truncated": truncated, "counts": figures.counts,
            "hotspots": figures.hotspots, "repeat_callers": figures.repeat_callers,
            "emergencies": figures.emergencies, "disputes": figures.disputes,
            "warnings": [w.to_dict() for w in warnings],
            "names": {c.code: c.name for c in self.catalog.categories}})

    async def overdue(self, request: web.Request) -> web.Response:
        """The work orders overdue now (督办), by platform and stage: those whose platform has
        not reported acceptance or the final result in time (``sidecar.deadlines``)."""
        client: Client = request["client"]
        items = []
        for member in sorted(m.decode() for m in await self.redis.smembers(OVERDUE)):
            platform, ticket, stage = member.split("|", 2)
            if client.sees((platform,)):
                items.append({"platform": platform, "ticket_id": ticket, "stage": stage})
        by_stage: dict[str, dict[str, int]] = {}
        for item in items:
            counts = by_stage.setdefault(item["platform"], {})
            counts[item["stage"]] = counts.get(item["stage"], 0) + 1
        return web.json_response({"count": len(items), "by_platform": by_stage,
                                  "items": items[:MAX_ROWS]})

    # --- query -------------------------------------------------------------------------------------
    async def _listing(self, request: web.Request, index: str, record_key: str, match,
                       name: str, csv_fields, csv_row) -> web.StreamResponse:
        """``GET /transfers`` and ``GET /calls``: one page of an index (a sorted set of ids by
        time; each id's JSON at ``record_key``) filtered by ``match(item, query)`` as JSON
        ``{count, <name>, next}``; or with ``format=csv`` the whole range, page after page,
        as one CSV download."""
        q = request.query
        span = _span(q)
        if isinstance(span, web.Response):
            return span
        since, until, limit = span
        fmt = q.get("format", "json")
        if fmt not in ("json", "csv"):
            return _error(400, "format must be json or csv")
        try:
            after = _cursor(q.get("cursor"))
        except ValueError:
            return _error(400, "cursor must be the 'next' value of an earlier page")

        def scan(after, n: int):
            return self._scan(index, record_key, lambda item: match(item, q), since, until,
                              after, n)

        if fmt == "json":
            rows, last = await scan(after, limit)
            return web.json_response({"count": len(rows), name: rows,
                                      "next": None if last is None else f"{last[0]!r}:{last[1]}"})
        resp = await _csv_download(request, csv_fields, f"{name}.csv")
        while True:
            rows, after = await scan(after, limit)
            await _csv_rows(resp, csv_fields, map(csv_row, rows))
            if after is None:
                break
        await resp.write_eof()
        return resp

    async def _scan(self, index: str, record_key: str, match, since: float, until: float,
                    after: tuple[float, str] | None, limit: int):
        """Up to ``limit`` matching items after the position ``after``: (items, the position to
        go on from, or None at the range's end)."""
        rows, scanned, end, last = [], 0, False, after
        lo = since if after is None else max(since, after[0])
        hi = until if until != float("inf") else "+inf"
        # Scan the time index in chunks and filter each, until a page is full, the range ends or
        # one page's scan budget is spent: a filter that matches little neither ends a page early
        # nor makes one request read the whole index. The position is in the index (time, then
        # id), so records synced meanwhile never shift a page.
        skip = 0
        while len(rows) < limit and not end and scanned < MAX_SCAN:
            got = await self.redis.zrangebyscore(index, lo, hi, withscores=True, start=skip,
                                                 num=SCAN_CHUNK)
            end = len(got) < SCAN_CHUNK
            chunk = [(t.decode(), score) for t, score in got
                     if last is None or (score, t.decode()) > last]
            if not chunk:
                skip += len(got)      # a run of one timestamp longer than a chunk
                continue
            skip = 0
            raws = await self.redis.mget([record_key.format(t) for t, _ in chunk])
            for (rid, score), raw in zip(chunk, raws):
                scanned += 1
                last = (score, rid)
                item = None if raw is None else match(json.loads(raw))
                if item is not None:
                    rows.append(item)
                    if len(rows) >= limit:
                        break
            lo = last[0]
        return rows, None if (end and len(rows) < limit) or last is None else last

    async def query(self, request: web.Request) -> web.StreamResponse:
        platform = request.query.get("platform")
        if platform is not None and platform not in self.platforms:
            return _error(400, f"platform must be {' or '.join(self.platforms)}")
        client: Client = request["client"]
        if refused := self._number_filter(request, client):
            return refused

        def match(item: dict, q) -> dict | None:
            parties = _parties(item["record"])
            if not client.sees(parties) or _matching(item, q, platform) is None:
                return None
            return item if client.owns(parties) else masked(item)

        return await self._listing(
            request, INDEX, RECORD, match, "transfers", self.csv_fields,
            lambda item: {**{k: item["record"].get(k) for k in CSV_FIELDS if k in item["record"]},
                          "ended": (item["record"].get("timestamps") or {}).get("ended"),
                          **{f"ticket_{p}": item["tickets"].get(p) for p in self.platforms}})

    def _number_filter(self, request: web.Request, client: Client) -> web.Response | None:
        """A caller's number as a filter tells whether that number called: only for clients
        that see the numbers of what they read."""
        if request.query.get("caller") and not client.owns(self.hotlines):
            return _error(403, f"client {client.describe()} sees caller numbers masked: it "
                               "cannot filter by one")
        return None

    async def kpis(self, request: web.Request) -> web.Response:
        """Each hotline's call KPIs over 15 min, 1 h and 24 h (by arrival), and the target."""
        hotline = request.query.get("hotline")
        if hotline is not None and hotline not in self.hotlines:
            return _error(400, f"hotline must be {' or '.join(self.hotlines)}")
        now = time.time()
        chosen = [hotline] if hotline else list(self.hotlines)
        out = {h: await kpis(self.redis, h, now) for h in chosen}
        # The acting service instance's gauges of this second (None: no instance is acting).
        live = {h: json.loads(raw) if raw else None
                for h, raw in zip(chosen, await self.redis.mget([LIVE.format(h) for h in chosen]))}
        return web.json_response({"at": datetime.fromtimestamp(now, timezone.utc).isoformat(),
                                  "answer_rate_target": self.answer_rate_target,
                                  "hotlines": out, "live": live})

    async def calls(self, request: web.Request) -> web.StreamResponse:
        """Call records (one per call offered to a hotline) by arrival time, filtered by
        hotline, disposition, caller or agent."""
        q = request.query
        if q.get("hotline") is not None and q["hotline"] not in self.hotlines:
            return _error(400, f"hotline must be {' or '.join(self.hotlines)}")
        if q.get("disposition") is not None and q["disposition"] not in DISPOSITIONS:
            return _error(400, f"disposition must be one of {', '.join(DISPOSITIONS)}")
        for name, allowed in (("ended_by", ENDED_BY), ("delivered_by", DELIVERED_BY)):
            if q.get(name) is not None and q[name] not in allowed:
                return _error(400, f"{name} must be one of {', '.join(allowed)}")
        client: Client = request["client"]
        if refused := self._number_filter(request, client):
            return refused

        def match(rec: dict, q) -> dict | None:
            parties = (rec.get("hotline"),)
            if not client.sees(parties) or _call_matching(rec, q) is None:
                return None
            return rec if client.owns(parties) else masked(rec)

        return await self._listing(
            request, CALL_INDEX, CALL_RECORD, match, "calls", CALL_CSV_FIELDS,
            lambda rec: {**{k: rec.get(k) for k in CALL_CSV_FIELDS},
                         "agents": " ".join(rec.get("agents", [])),
                         "transfers": " ".join(rec.get("transfers", []))})

    async def call(self, request: web.Request) -> web.Response:
        """One call's record, with the outcome of each transfer made from it."""
        call_id = request.match_info["call_id"]
        raw = await self.redis.get(CALL_RECORD.format(call_id))
        if raw is None:
            return _error(404, f"no call {call_id!r}")
        record = json.loads(raw)
        parties = (record.get("hotline"),)
        if refused := _not_its_own(request, parties, f"call {call_id}"):
            return refused
        tids = record.get("transfers", [])
        found = await self.redis.mget([RECORD.format(t) for t in tids]) if tids else []
        transfers = []
        for tid, item in zip(tids, found):
            rec = json.loads(item)["record"] if item else None
            transfers.append({"transfer_id": tid, "synced": item is not None,
                              **({k: rec.get(k) for k in ("mode", "target", "result")}
                                 if rec else {})})
        return _shown(request, parties, {**record, "transfer_outcomes": transfers})

    async def one(self, request: web.Request) -> web.Response:
        tid = request.match_info["transfer_id"]
        raw = await self.redis.get(RECORD.format(tid))
        if raw is None:
            return _error(404, f"no transfer {tid!r}")
        item = json.loads(raw)
        parties = _parties(item["record"])
        if refused := _not_its_own(request, parties, f"transfer {tid}"):
            return refused
        stored = await self.redis.lrange(TRAIL.format(tid), 0, -1)
        return _shown(request, parties, {**item, "trail": trail.steps(item["record"], stored)})

    async def chain(self, request: web.Request) -> web.Response:
        """R6: every hop of a chained transfer (110 -> 12345 -> provincial 12345) in order, each
        with its result and tickets; a centre's clients see the hops that concern it."""
        chain_id = request.match_info["chain_id"]
        hops = await self.redis.hgetall(CHAIN.format(chain_id))
        if not hops:
            return _error(404, f"no chain {chain_id!r}")
        client: Client = request["client"]
        ordered = sorted(((int(h), t.decode()) for h, t in hops.items()), key=lambda ht: ht[0])
        found = await self.redis.mget([RECORD.format(t) for _, t in ordered])
        out = []
        for (hop, tid), raw in zip(ordered, found):
            item = json.loads(raw) if raw else {}
            rec = item.get("record", {})
            if rec and not client.sees(_parties(rec)):
                continue
            out.append({"hop": hop, "transfer_id": tid, "origin": rec.get("origin"),
                        "target": rec.get("target"), "result": rec.get("result"),
                        "matter_id": (rec.get("matter") or {}).get("matter_id"),
                        "tickets": item.get("tickets", {})})
        if not out:
            return _error(403, f"no hop of chain {chain_id} concerns {client.hotline}: client "
                               f"{client.describe()} reads its own centre's only")
        return web.json_response({"chain_id": chain_id, "hops": out})

    # --- the audit trail ------------------------------------------------------------------------
    async def audit_trail(self, request: web.Request) -> web.StreamResponse:
        """The audit trail by time, filtered by client, outcome, method, path prefix, status;
        ``format=csv`` exports the whole range."""
        q = request.query
        span = _span(q)
        if isinstance(span, web.Response):
            return span
        since, until, limit = span
        cursor = q.get("cursor")
        if cursor is not None and not is_stream_id(cursor):
            return _error(400, "cursor must be the 'next' value of an earlier page")
        if q.get("format", "json") == "json":
            rows, last = await self.audit.query(request, since, until, cursor, limit)
            return web.json_response({"count": len(rows), "entries": rows, "next": last})
        if q["format"] != "csv":
            return _error(400, "format must be json or csv")
        resp = await _csv_download(request, AUDIT_CSV_FIELDS, "audit.csv")
        while True:
            rows, cursor = await self.audit.query(request, since, until, cursor, limit)
            await _csv_rows(resp, AUDIT_CSV_FIELDS, rows)
            if cursor is None:
                break
        await resp.write_eof()
        return resp

    # --- online requests (R10) ---------------------------------------------------------------------
    async def online(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        if body.get("channel") != "online":
            return _error(400, "channel must be 'online' (calls are transferred by phone)")
        try:
            orders = await asyncio.to_thread(online_work_orders, body, self.catalog,
                                             self.recommender.recommend, self.platforms)
        except (ValueError, TypeError, KeyError) as exc:
            return _error(422 if isinstance(exc, ValueError) else 400, str(exc))
        try:
            tickets = await self.syncer.sync_orders(orders)
        except TicketError as exc:
            return _error(502 if not exc.permanent else 422, f"ticket system: {exc}")
        record = {"transfer_id": orders[0]["transfer_id"], "channel": "online",
                  "origin": "online", "target": orders[0]["platform"],
                  "result": "online_request", "category": orders[0]["category"],
                  "emergency": orders[0]["emergency"], "caller_number": body.get("caller_number"),
                  "timestamps": {"requested": orders[0]["requested_at"]}}
        pipe = self.redis.pipeline(transaction=True)
        self.syncer.remember(pipe, record, tickets)
        await pipe.execute()
        # Not placed by the recommender: with the receiving platform, for a person to classify.
        classified = not orders[0]["description"].startswith(NEEDS_CLASSIFICATION)
        return web.json_response({"transfer_id": record["transfer_id"],
                                  "owner": orders[0]["platform"], "tickets": tickets,
                                  "classified": classified}, status=201)

    # --- closed loop (R11) ---------------------------------------------------------------------------
    async def feedback(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        platform, ticket, status = body.get("platform"), body.get("ticket_id"), body.get("status")
        note = body.get("note")
        if platform not in self.platforms:
            return _error(400, f"platform must be {' or '.join(self.platforms)}")
        client: Client = request["client"]
        if not client.owns((platform,)):
            return _error(403, f"client {client.describe()} reports on {client.hotline}'s "
                               f"tickets only, not {platform}'s")
        if not isinstance(ticket, str) or not ticket:
            return _error(400, "ticket_id must be a non-empty string")
        if status not in FEEDBACK_STATUSES:
            return _error(400, f"status must be one of {', '.join(FEEDBACK_STATUSES)}")
        if note is not None and not isinstance(note, str):
            return _error(400, "note must be a string")
        # R15: a 12345 handling unit that finds a dispute escalating calls in the police desk, so
        # an escalation comes from the platform that is not the police desk (Platforms.dispatch).
        police = self.platforms.dispatch
        if status == "escalating" and platform == police:
            return _error(400, f"only a {self.platforms.other(police)} ticket can be reported "
                               f"escalating (its handling unit calls in {police})")
        key = body.get("feedback_id") or f"{platform}:{ticket}:{status}"
        try:
            relayed = await self.feedback_loop.report(platform, ticket, status, note, key,
                                                      client.name)
        except NoLink as exc:
            return _error(404, str(exc))
        except TicketError as exc:
            return _error(502, f"relay failed: {exc}")
        return web.json_response({"relayed_to": relayed}, status=202)


async def _answer(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(exc.status, exc.reason)
        raise


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return _error(400, "body is not valid JSON")
    if not isinstance(body, dict):
        return _error(400, "body must be a JSON object")
    return body


async def _csv_download(request: web.Request, fields, filename: str) -> web.StreamResponse:
    resp = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f"attachment; filename={filename}"})
    await resp.prepare(request)
    await _csv_rows(resp, fields, None)
    return resp


async def _csv_rows(resp: web.StreamResponse, fields, rows) -> None:
    """Write ``rows`` (None: the header line) to a CSV download."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    if rows is None:
        writer.writeheader()
    else:
        writer.writerows(rows)
    await resp.write(out.getvalue().encode())


def _parties(record: dict) -> tuple:
    """The hotlines a transfer record concerns: where the call came from and went to."""
    return record.get("origin"), record.get("target")


def _not_its_own(request: web.Request, parties, what: str) -> web.Response | None:
    client: Client = request["client"]
    if client.sees(parties):
        return None
    return _error(403, f"{what} concerns {' and '.join(p for p in parties if p)}: client "
                       f"{client.describe()} reads its own centre's only")


def _not_its_call(request: web.Request, hotline) -> web.Response | None:
    client: Client = request["client"]
    if client.owns((hotline,)):
        return None
    return _error(403, f"client {client.describe()} acts on {client.hotline}'s calls only, "
                       f"not {hotline}'s" if client.hotline else
                       f"client {client.describe()} acts on no centre's calls")


def _shown(request: web.Request, parties, body: dict) -> web.Response:
    """``body`` as this request's client may see it: caller numbers masked unless it is its own."""
    client: Client = request["client"]
    return web.json_response(body if client.owns(parties) else masked(body))


def _call_matching(rec: dict, q) -> dict | None:
    if any(q.get(k) is not None and str(rec.get(k)) != q[k]
           for k in ("hotline", "disposition", "ended_by")):
        return None
    # Records from before delivered_by existed were all the application's.
    if q.get("delivered_by") and q["delivered_by"] != rec.get("delivered_by", "application"):
        return None
    if q.get("caller") and q["caller"] != rec.get("caller_number"):
        return None
    if q.get("agent") and q["agent"] not in rec.get("agents", []):
        return None
    return rec


def _matching(item: dict, q, platform: str | None) -> dict | None:
    rec = item["record"]
    if platform and platform not in (rec.get("origin"), rec.get("target")):
        return None
    if any(q.get(k) is not None and str(rec.get(k)) != q[k]
           for k in ("result", "category", "origin", "target")):
        return None
    if q.get("caller") and q["caller"] != rec.get("caller_number"):
        return None
    return item


def _span(q) -> tuple[float, float, int] | web.Response:
    """The ``from``, ``to`` and ``limit`` of a listing, or the 400 naming the bad one."""
    try:
        since = _time(q.get("from"), 0.0)
        until = _time(q.get("to"), float("inf"))
    except ValueError as exc:
        return _error(400, str(exc))
    limit = q.get("limit", "1000")
    if not limit.isdigit() or not 0 < int(limit) <= MAX_ROWS:
        return _error(400, f"limit must be an integer 1..{MAX_ROWS}")
    return since, until, int(limit)


def _cursor(value: str | None) -> tuple[float, str] | None:
    if value is None:
        return None
    score, sep, tid = value.partition(":")
    if not sep or not tid or not math.isfinite(float(score)):
        raise ValueError(value)
    return float(score), tid


def _time(value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time or unix seconds: {value!r}") from None


