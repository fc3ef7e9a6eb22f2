"""ARI client: events over one WebSocket with reconnect and backoff; REST requests over that same
WebSocket where Asterisk supports it (ARI "REST over WebSocket", Asterisk 20.14/22.4 and later),
over HTTP otherwise and while the WebSocket is down.

Why the WebSocket: an HTTP request costs the app about 0.4 ms of CPU in aiohttp (request
building, header parsing, the response's own read), and a transferred call takes ~28 of them;
over the open WebSocket a request is one JSON frame each way. Whether Asterisk answers
``RESTRequest`` frames is asked once after each connect (``GET asterisk/ping`` with a short
deadline); an older Asterisk ignores the frame, and the client stays on HTTP.

Exceptions (lower-level aiohttp errors are mapped here, at the boundary)::

    AriError
    ├── AriUnavailable        connection refused/reset, timeout: Asterisk is down or unreachable
    │   └── AriFenced         not sent: this instance may not act (hot standby, lease lost)
    └── AriHttpError          Asterisk answered with a 4xx/5xx (status, method, path, message)
        ├── AriNotFound       404: the channel/bridge is gone (usually a hang-up raced us)
        ├── AriConflict       409: wrong state (e.g. channel not in Stasis)
        └── AriUnprocessable  422: a referenced resource does not exist (e.g. endpoint)

Asterisk gives an application's events to the WebSocket that connected last; the one it replaces
gets ``ApplicationReplaced`` and no events after it, but its REST requests still work (measured
on 22.10; closing it leaves the new one registered). So a replaced client never reconnects on its
own: ``events()`` raises ``AppReplaced`` and the owner decides (a hot-standby instance stands
down). And only a lease-holding instance may send at all: ``guard`` is checked before every
request, so a process that was frozen and wakes past its lease sends nothing.

ARI does not replay events missed while the WebSocket was down, so ``events()`` yields a
synthetic ``{"type": "HotlineConnected"}`` event after every (re)connect: the app reconciles its
state from ``GET /channels`` and ``GET /bridges`` when it sees it.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import random
from typing import Any, AsyncIterator, Callable
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import structlog

log = structlog.get_logger("ari")

CONNECTED = "HotlineConnected"
# Messages on the event WebSocket that carry the client's own traffic, not events: an app that
# filters its events must let them through (REST answers over the WebSocket).
TRANSPORT_EVENTS = ("RESTResponse",)


class AriError(Exception):
    pass


class AriUnavailable(AriError):
    pass


class AriFenced(AriUnavailable):
    pass


class AppReplaced(AriError):
    """Another WebSocket took this application over: its events go there now."""


class AriHttpError(AriError):
    def __init__(self, status: int, method: str, path: str, message: str):
        self.status = status
        self.method = method
        self.path = path
        self.message = message
        super().__init__(f"{method} {path}: {status} {message}")


class AriNotFound(AriHttpError):
    pass


class AriConflict(AriHttpError):
    pass


class AriUnprocessable(AriHttpError):
    pass


_BY_STATUS = {404: AriNotFound, 409: AriConflict, 422: AriUnprocessable}


class AriClient:
    def __init__(self, url: str, username: str, password: str, app: str, *,
                 request_timeout: float = 5.0, backoff_max: float = 5.0,
                 rest_over_ws: bool = True, guard: Callable[[], bool] | None = None):
        self.base = url.rstrip("/") + "/ari"
        self.app = app
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}"}
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._backoff_max = backoff_max
        self.connected = False          # the event WebSocket is up: the app is registered
        self._session: aiohttp.ClientSession | None = None
        self.rest_over_ws = rest_over_ws
        self.guard = guard              # False: this process may not act on the PBX now
        self._ws: aiohttp.ClientWebSocketResponse | None = None   # set once REST over it works
        self._pending: dict[str, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self.transport = "http"         # what requests go over now: http | websocket
        self.requests = 0               # sent to Asterisk, either way (the service's /metrics)

    async def __aenter__(self) -> "AriClient":
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, *, params: dict | None = None,
                      json_body: Any = None) -> Any:
        assert self._session is not None, "use AriClient as an async context manager"
        if not self.allowed():
            raise AriFenced(f"{method} {path}: not sent, this instance does not hold the lease")
        clean = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        self.requests += 1
        ws = self._ws
        if ws is not None and not ws.closed:
            return await self._ws_request(ws, method, path, clean, json_body)
        try:
            async with self._session.request(method, self.base + path, params=clean,
                                             json=json_body) as resp:
                return _answer(resp.status, await resp.text(), method, path)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            raise AriUnavailable(f"{method} {path}: {exc!r}") from exc

    async def _ws_request(self, ws: aiohttp.ClientWebSocketResponse, method: str, path: str,
                          params: dict[str, str], json_body: Any,
                          timeout: float | None = None) -> Any:
        request_id = f"hl-{next(self._ids)}"
        frame: dict[str, Any] = {"type": "RESTRequest", "request_id": request_id,
                                 "method": method, "uri": path.lstrip("/")}
        if params:
            frame["query_strings"] = [{"name": k, "value": v} for k, v in params.items()]
        if json_body is not None:
            frame["content_type"] = "application/json"
            frame["message_body"] = json.dumps(json_body)
        waiter = asyncio.get_running_loop().create_future()
        self._pending[request_id] = waiter
        try:
            await ws.send_str(json.dumps(frame))
            answer = await asyncio.wait_for(waiter, timeout or self._timeout.total)
        except (aiohttp.ClientError, ConnectionError, asyncio.TimeoutError) as exc:
            raise AriUnavailable(f"{method} {path}: {exc!r}") from exc
        finally:
            self._pending.pop(request_id, None)
        return _answer(answer.get("status_code", 500), answer.get("message_body") or "",
                       method, path)

    async def _enable_rest_over_ws(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            await self._ws_request(ws, "GET", "/asterisk/ping", {}, None, timeout=2.0)
        except AriError as exc:
            log.info("ari REST stays on HTTP: no answer over the WebSocket", app=self.app,
                     error=str(exc))
            return
        if not ws.closed:
            self._ws, self.transport = ws, "websocket"
            log.info("ari REST over the WebSocket", app=self.app)

    def allowed(self) -> bool:
        return self.guard is None or self.guard()

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, json_body: Any = None, **params: Any) -> Any:
        return await self.request("POST", path, params=params, json_body=json_body)

    async def put(self, path: str, json_body: Any = None, **params: Any) -> Any:
        return await self.request("PUT", path, params=params, json_body=json_body)

    async def delete(self, path: str, **params: Any) -> Any:
        return await self.request("DELETE", path, params=params)

    async def delete_quietly(self, path: str, **params: Any) -> None:
        """For clean-up: the resource being gone already is the goal, not an error."""
        try:
            await self.delete(path, **params)
        except (AriNotFound, AriConflict, AriUnprocessable):
            pass

    async def channel_exists(self, channel_id: str) -> bool:
        try:
            await self.get(f"/channels/{channel_id}")
            return True
        except AriNotFound:
            return False

    def _ws_url(self) -> str:
        parts = urlsplit(self.base)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path + "/events",
                           f"app={self.app}&subscribeAll=false", ""))

    async def events(self) -> AsyncIterator[dict]:
        """Yield events forever; reconnect with exponential backoff and full jitter."""
        assert self._session is not None
        attempt = 0
        while True:
            if not self.allowed():
                raise AriFenced(f"{self.app}: not connecting, this instance does not hold the lease")
            try:
                async with self._session.ws_connect(self._ws_url(), heartbeat=10,
                                                    timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
                    attempt = 0
                    log.info("ari connected", app=self.app)
                    self.connected = True
                    # The answer comes in on this loop, so the question is asked beside it.
                    probe = (asyncio.create_task(self._enable_rest_over_ws(ws))
                             if self.rest_over_ws else None)
                    try:
                        yield {"type": CONNECTED}
                        async for msg in ws:
                            if msg.type == aiohttp.WSMsgType.TEXT:
                                try:
                                    event = json.loads(msg.data)
                                except ValueError:
                                    log.warning("ari event not JSON", data=msg.data[:200])
                                    continue
                                if event.get("type") == "ApplicationReplaced":
                                    log.error("another process connected to this ARI "
                                              "application; its events go there now",
                                              app=self.app)
                                    raise AppReplaced(self.app)
                                if event.get("type") in TRANSPORT_EVENTS:
                                    waiter = self._pending.get(event.get("request_id"))
                                    if waiter is not None and not waiter.done():
                                        waiter.set_result(event)
                                    continue
                                yield event
                            elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                                break
                    finally:
                        self.connected = False
                        self._ws, self.transport = None, "http"
                        if probe is not None:
                            probe.cancel()
                        # Sent, never answered: whether Asterisk acted on it is unknown, as
                        # with an HTTP connection that broke mid-request.
                        for waiter in self._pending.values():
                            if not waiter.done():
                                waiter.set_exception(AriUnavailable("ARI WebSocket closed"))
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                log.warning("ari connect failed", app=self.app, error=repr(exc), attempt=attempt)
            delay = random.uniform(0, min(self._backoff_max, 0.2 * 2 ** attempt))
            attempt += 1
            await asyncio.sleep(delay)


def _answer(status: int, text: str, method: str, path: str) -> Any:
    if status >= 400:
        try:
            message = json.loads(text).get("message", text)
        except (ValueError, AttributeError):
            message = text
        raise _BY_STATUS.get(status, AriHttpError)(status, method, path, message)
    return json.loads(text) if text else None


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
