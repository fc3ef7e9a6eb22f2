"""ARI client: REST over aiohttp, events over one WebSocket with reconnect and backoff.

Exceptions (lower-level aiohttp errors are mapped here, at the boundary)::

    AriError
    ├── AriUnavailable        connection refused/reset, timeout: Asterisk is down or unreachable
    └── AriHttpError          Asterisk answered with a 4xx/5xx (status, method, path, message)
        ├── AriNotFound       404: the channel/bridge is gone (usually a hang-up raced us)
        ├── AriConflict       409: wrong state (e.g. channel not in Stasis)
        └── AriUnprocessable  422: a referenced resource does not exist (e.g. endpoint)

ARI does not replay events missed while the WebSocket was down, so ``events()`` yields a
synthetic ``{"type": "HotlineConnected"}`` event after every (re)connect: the app reconciles its
state from ``GET /channels`` and ``GET /bridges`` when it sees it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from typing import Any, AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import structlog

log = structlog.get_logger("ari")

CONNECTED = "HotlineConnected"


class AriError(Exception):
    pass


class AriUnavailable(AriError):
    pass


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
                 request_timeout: float = 5.0, backoff_max: float = 5.0):
        self.base = url.rstrip("/") + "/ari"
        self.app = app
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}"}
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._backoff_max = backoff_max
        self.connected = False          # the event WebSocket is up: the app is registered
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "AriClient":
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, *, params: dict | None = None,
                      json_body: Any = None) -> Any:
        assert self._session is not None, "use AriClient as an async context manager"
        clean = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        try:
            async with self._session.request(method, self.base + path, params=clean,
                                             json=json_body) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    try:
                        message = json.loads(text).get("message", text)
                    except (ValueError, AttributeError):
                        message = text
                    raise _BY_STATUS.get(resp.status, AriHttpError)(resp.status, method, path,
                                                                     message)
                return json.loads(text) if text else None
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            raise AriUnavailable(f"{method} {path}: {exc!r}") from exc

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
            try:
                async with self._session.ws_connect(self._ws_url(), heartbeat=10,
                                                    timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
                    attempt = 0
                    log.info("ari connected", app=self.app)
                    self.connected = True
                    try:
                        yield {"type": CONNECTED}
                        async for msg in ws:
                            if msg.type == aiohttp.WSMsgType.TEXT:
                                try:
                                    yield json.loads(msg.data)
                                except ValueError:
                                    log.warning("ari event not JSON", data=msg.data[:200])
                            elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                                break
                    finally:
                        self.connected = False
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                log.warning("ari connect failed", app=self.app, error=repr(exc), attempt=attempt)
            delay = random.uniform(0, min(self._backoff_max, 0.2 * 2 ** attempt))
            attempt += 1
            await asyncio.sleep(delay)


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
