"""``GET /events``: a live stream for agent desktops and wallboards (server-sent events).

Three Redis streams are merged: the ARI apps' live call events (``hotline:events``:
``agent_ringing`` is the screen-pop on the receiving agent, ``agent_connected``, ``call_ended``,
``command_result`` for what the API asked of a live call), the outcome records
(``outcome``) and the alerts (``alert``). Every SSE message is ``event: <type>`` and
``data: <JSON>``; its ``id`` is a cursor over all three streams, so a desktop that reconnects
with ``Last-Event-ID`` (browsers' EventSource do this by themselves) misses nothing that is
still in Redis. Beside them, ``hotline_status``: a hotline's live gauges (the acting service
instance's, ``contracts.names.LIVE``: callers waiting, the longest wait, agents free, busy and
offline, transfers going and three-way calls, the surge plan) when they change, and every
``STATUS_EVERY`` s at least; ``live`` is null while no instance acts. It has no ``id``: only the
newest matters, and it comes again. Filters: ``hotline`` (events of that hotline, or transfers
from or to it), ``agent`` (events that name that agent), ``types`` (comma-separated). A
centre's clients get their own centre's events only; caller numbers are masked in the events
a client does not own. ``since`` (Unix time, within the last hour) replays what came since then,
for a screen opened during a call.

The stream ends when the sidecar shuts down: each read blocks for at most a second and then
looks at the shutdown flag, so an open stream never holds a stopping sidecar.
"""

from __future__ import annotations

import asyncio
import json
import math
import time

import redis.asyncio as aioredis
from aiohttp import web

from contracts.names import ALERTS, EVENTS, LIVE, OUTCOMES
from contracts.privacy import masked
from contracts.vocab import LiveEvent

from .access import Client


# cursor letter -> (stream, field holding the JSON body, SSE event type or None: the body's)
SOURCES = {"e": (EVENTS.key, EVENTS.field.encode(), None),
           "o": (OUTCOMES.key, OUTCOMES.field.encode(), LiveEvent.OUTCOME),
           "a": (ALERTS.key, ALERTS.field.encode(), LiveEvent.ALERT)}
TYPES = tuple(LiveEvent)
BLOCK_MS = 1000
KEEPALIVE_S = 15.0
STATUS_EVERY = 10.0
MAX_SINCE_S = 3600


def parse_cursor(value: str) -> dict[str, str]:
    """``e=<id>,o=<id>,a=<id>`` -> {letter: stream id}; ValueError names what is wrong."""
    cursor = {}
    for part in value.split(","):
        letter, sep, entry = part.partition("=")
        if not sep or letter not in SOURCES or not is_stream_id(entry):
            raise ValueError(f"Last-Event-ID is not a cursor of this stream: {value[:100]!r}")
        cursor[letter] = entry
    return cursor


def is_stream_id(value: str) -> bool:
    ms, sep, seq = value.partition("-")
    return bool(sep) and ms.isdigit() and seq.isdigit() and len(value) < 42


def parties(body: dict) -> tuple:
    """The hotlines an event concerns."""
    return body.get("hotline"), body.get("origin"), body.get("target")


def matches(body: dict, hotline: str | None, agent: str | None) -> bool:
    if hotline is not None and hotline not in parties(body):
        return False
    if agent is not None and agent not in (body.get("agent"), body.get("initiating_agent"),
                                           body.get("answering_agent")):
        return False
    return True


class EventStream:
    def __init__(self, redis: aioredis.Redis, hotlines: tuple[str, ...] = ()):
        self.redis = redis
        self.hotlines = hotlines
        self.closing = asyncio.Event()

    async def _statuses(self, resp: web.StreamResponse, chosen: list[str],
                        sent: dict[str, tuple[float, object]]) -> None:
        """Each chosen hotline's gauges, where they changed since ``sent`` (or are old)."""
        now = asyncio.get_running_loop().time()
        raws = await self.redis.mget([LIVE.format(h) for h in chosen])
        for h, raw in zip(chosen, raws):
            try:
                live = json.loads(raw) if raw else None
            except ValueError:
                live = None
            same = {k: v for k, v in live.items() if k != "at"} if live else None
            last_at, last = sent.get(h, (None, ...))
            if same == last and last_at is not None and now - last_at < STATUS_EVERY:
                continue
            sent[h] = (now, same)
            data = json.dumps({"hotline": h, "live": live}, ensure_ascii=False)
            await resp.write(f"event: {LiveEvent.HOTLINE_STATUS}\ndata: {data}\n\n".encode())

    async def on_shutdown(self, _app: web.Application) -> None:
        self.closing.set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        types = set(q["types"].split(",")) if q.get("types") else set(TYPES)
        if unknown := types - set(TYPES):
            return _bad(f"unknown event types: {', '.join(sorted(unknown))} "
                        f"(known: {', '.join(TYPES)})")
        hotline, agent = q.get("hotline"), q.get("agent")
        client: Client = request["client"]
        if client.hotline is not None and not client.owns((hotline or client.hotline,)):
            return web.json_response({"error": f"client {client.describe()} follows "
                                               f"{client.hotline}'s events only"}, status=403)
        # A centre's desktops and supervisors follow their own centre.
        hotline = hotline or client.hotline
        if last := request.headers.get("Last-Event-ID"):
            try:
                cursor = parse_cursor(last)
            except ValueError as exc:
                return _bad(str(exc))
        elif q.get("since"):
            # A screen opened (or reloaded) during a call catches up on it: every stream from
            # that moment on (stream ids are Redis's milliseconds).
            try:
                since = float(q["since"])
            except ValueError:
                since = math.nan
            if not time.time() - since <= MAX_SINCE_S:       # NaN too
                return _bad(f"since: a Unix time (seconds) within the last {MAX_SINCE_S} s")
            # A desk PC's clock ahead of ours: from now.
            since = min(since, time.time())
            cursor = {letter: f"{int(since * 1000)}-0" for letter in SOURCES}
        else:
            cursor = {}
        # Start at what is newest now (not "$" in every read: an entry written between two
        # reads would be missed).
        for letter, (stream, _field, _kind) in SOURCES.items():
            if letter not in cursor:
                newest = await self.redis.xrevrange(stream, count=1)
                cursor[letter] = newest[0][0].decode() if newest else "0-0"

        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        await request["opened"](200)
        await resp.write(b": connected\n\n")
        letters = {stream: letter for letter, (stream, _f, _k) in SOURCES.items()}
        idle = 0.0
        status_of = ([h for h in self.hotlines if hotline in (None, h)]
                     if LiveEvent.HOTLINE_STATUS in types else [])
        sent: dict[str, tuple[float, object]] = {}
        loop = asyncio.get_running_loop()
        next_status = 0.0
        try:
            while not self.closing.is_set():
                # The gauges are written once a second: looked at no oftener, however busy.
                if status_of and loop.time() >= next_status:
                    next_status = loop.time() + BLOCK_MS / 1000
                    await self._statuses(resp, status_of, sent)
                got = await self.redis.xread({SOURCES[x][0]: cursor[x] for x in SOURCES},
                                             block=BLOCK_MS, count=100)
                if not got:
                    idle += BLOCK_MS / 1000
                    if idle >= KEEPALIVE_S:
                        # A comment line: keeps proxies from closing a quiet stream and tells us
                        # when the desktop has gone.
                        await resp.write(b": keepalive\n\n")
                        idle = 0.0
                    continue
                idle = 0.0
                for stream, entries in got:
                    letter = letters[stream.decode()]
                    _stream, field, kind = SOURCES[letter]
                    for entry_id, fields in entries:
                        cursor[letter] = entry_id.decode()
                        try:
                            body = json.loads(fields[field])
                        except (KeyError, ValueError):
                            continue
                        etype = kind or body.get("type")
                        if etype not in types or not matches(body, hotline, agent):
                            continue
                        if not client.owns(parties(body)):
                            body = masked(body)
                        ident = ",".join(f"{x}={cursor[x]}" for x in SOURCES)
                        data = json.dumps(body, ensure_ascii=False)
                        await resp.write(f"id: {ident}\nevent: {etype}\ndata: {data}\n\n".encode())
        except ConnectionResetError:
            # The desktop went away: nothing to finish.
            return resp
        await resp.write_eof()
        return resp


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)
