"""Stand-ins for the ticket systems of the 12345 centre and the 110 desk.

Those systems belong to the platforms, not to this product; the sidecar only talks to their
documented ticket API. These stand-ins implement that API in memory, for the tests and the local
demo, plus a few ``/_standin/...`` controls a test uses to inspect them and to make them fail.
A stand-in is of one kind, the API it speaks (``[sidecar.platforms.<id>] kind``): ``open311``
(the 12345 work-order system), ``eido`` (the 110 dispatch system) or ``http`` (a provincial
system the sidecar reaches through a mapping file; this one speaks Zammad's REST API)::

    python -m sidecar.standins --kind open311 --listen 127.0.0.1:8491 \\
        [--webhook-secret-file F] [--api-token-file F]

Documented ticket APIs
======================

12345 work-order system (kind ``open311``)
------------------------------------------

Open311 GeoReport v2 as the specification defines it, with nothing added:
``sidecar/standin_open311.py`` lists its resources. The stand-in's token is GeoReport's
``api_key`` parameter of a ``POST``.

110 dispatch system (kind ``eido``)
-----------------------------------

NENA EIDO 1.0 documents, one per incident, at NENA's EIDO resource (``PUT`` and
``GET /EIDO/{IncidentId}``): ``sidecar/standin_eido.py``. With an API token configured, every
request needs ``Authorization: Bearer <token>``, else 401.

Provincial ticket system (kind ``http``)
---------------------------------------

Zammad's REST API v1, the part a ticket integration uses: ``sidecar/standin_zammad.py``. With
an API token configured, every request needs ``Authorization: Token token=<token>``.

Stand-in controls (no token needed)
===================================

``GET /_standin/stats``
    ``{"tickets", "duplicates", "requests", "failed", "notes", "webhooks", "webhooks_rejected"}``;
    ``requests`` counts every ticket-API request, whatever its answer.
``POST /_standin/fail`` ``{"mode": "error" | "timeout" | "none", "count": n | null}``
    The next ``n`` ticket-API requests (null: until mode ``none``) store nothing and answer 503 --
    at once (``error``) or after 30 s (``timeout``: the client is meant to give up first).
``GET /_standin/tickets``
    Every stored ticket: ``{"id", "body", "status", "created_at"}`` (Open311: the request's
    fields with its ``attribute`` values; EIDO: the incident's current document; Zammad: the
    expanded ticket with its ``articles``).
``POST /_standin/requests/{id}/close`` ``{"status_notes": ...}``
    Open311: the centre's staff close a service request (GeoReport has no write for it).
``POST /_standin/incidents/{IncidentId}/status`` ``{"status", "note"}``
    EIDO: the dispatchers change an incident's status and add a note.
``GET /_standin/created``
    ``[[work order reference, created_at], ...]`` for every ticket (the ``work_order_id``
    attribute; the incident's ``internalIncidentId``; the ``[hotline-link <ref>]`` a Zammad
    ticket's title ends with): the compact form benchmarks read.
``POST /_standin/webhook``
    A subscriber to the sidecar's alerts: checks ``X-Hotline-Signature`` (``sidecar.signing``);
    204 and stored if valid, else 401 ``{"error": ...}``.
``GET /_standin/webhooks``
    The stored alerts: ``[{"event": <JSON body>, "received_at": <unix time>}]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hmac
import json
import re
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from contracts.vocab import PlatformKind
from sidecar.signing import SIGNATURE_HEADER, SignatureError, verify
from sidecar.standin_eido import DispatchDesk
from sidecar.standin_open311 import GeoReport
from sidecar.standin_zammad import Zammad

KINDS = tuple(PlatformKind)
FAIL_MODES = ("error", "timeout", "none")
TIMEOUT_DELAY = 30.0
CONTROL_PREFIX = "/_standin/"
# The reference the sidecar's Zammad mapping ends a ticket's title with (for /_standin/created).
REF = re.compile(r"\[hotline-link ([^\]]+)\]$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(cls: type[web.HTTPException], message: str, **kw: Any) -> web.HTTPException:
    return cls(text=json.dumps({"error": message}), content_type="application/json", **kw)


def _object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise _error(web.HTTPBadRequest, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _error(web.HTTPBadRequest, "body must be a JSON object")
    return body


class StandIn:
    """One platform's ticket system, in memory: the API of its kind (``georeport`` or
    ``desk``), the failures a test injects, and the webhook receiver."""

    def __init__(self, kind: str, *, webhook_secret: bytes | None = None,
                 api_token: str | None = None):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.kind = PlatformKind(kind)
        self.webhook_secret = webhook_secret
        self.api_token = api_token
        self.webhooks: list[dict[str, Any]] = []
        self.requests = 0
        self.failed = 0
        self.webhooks_rejected = 0
        self.fail_mode = "none"
        self.fail_left: int | None = None
        # Open311: GeoReport v2 (its api_key is the stand-in's token); EIDO: the dispatch desk.
        self.georeport = GeoReport(api_token) if self.kind == PlatformKind.OPEN311 else None
        self.desk = DispatchDesk() if self.kind == PlatformKind.EIDO else None
        self.zammad = Zammad(api_token) if self.kind == PlatformKind.HTTP else None
        self._closing = asyncio.Event()

    def stats(self) -> dict[str, int]:
        common = {"requests": self.requests, "failed": self.failed,
                  "webhooks": len(self.webhooks), "webhooks_rejected": self.webhooks_rejected}
        if self.georeport is not None:
            return {"tickets": len(self.georeport.requests),
                    "duplicates": self.georeport.duplicates, "updates": 0, **common}
        if self.zammad is not None:
            return {"tickets": len(self.zammad.tickets), "duplicates": self.zammad.duplicates,
                    "updates": self.zammad.notes, **common}
        return {"tickets": len(self.desk.incidents), "duplicates": self.desk.duplicates,
                "updates": self.desk.updates, **common}

    # --- gate: auth and injected failures, for the ticket API only ---------------------------

    def authorized(self, header: str | None) -> bool:
        if self.api_token is None:
            return True
        return header is not None and hmac.compare_digest(
            header.encode(), f"Bearer {self.api_token}".encode())

    def take_failure(self) -> str | None:
        """The failure this request must suffer, if any; uses up one of the counted ones."""
        if self.fail_mode == "none":
            return None
        mode = self.fail_mode
        if self.fail_left is not None:
            self.fail_left -= 1
            if self.fail_left == 0:
                self.fail_mode, self.fail_left = "none", None
        self.failed += 1
        return mode

    async def stall(self) -> None:
        # Cut short when the app shuts down, so stopping a test server does not wait for it.
        try:
            await asyncio.wait_for(self._closing.wait(), TIMEOUT_DELAY)
        except TimeoutError:
            pass

    async def close(self, app: web.Application) -> None:
        self._closing.set()

    # --- stand-in controls -------------------------------------------------------------------

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def set_failure(self, request: web.Request) -> web.Response:
        body = _object(await request.read())
        mode, count = body.get("mode"), body.get("count")
        if mode not in FAIL_MODES:
            raise _error(web.HTTPBadRequest, f"mode must be one of {', '.join(FAIL_MODES)}")
        if count is not None and (type(count) is not int or count < 1):
            raise _error(web.HTTPBadRequest, "count must be a positive integer or null")
        self.fail_mode = mode
        self.fail_left = None if mode == "none" else count
        return web.json_response({"mode": self.fail_mode, "count": self.fail_left})

    async def list_tickets(self, request: web.Request) -> web.Response:
        if self.georeport is not None:
            return web.json_response([
                {"id": r["id"], "created_at": r["created_at"],
                 "body": {**r["body"], "attribute": r["attribute"]}, "status": r["status"],
                 "status_notes": r["status_notes"]}
                for r in self.georeport.requests.values()])
        if self.zammad is not None:
            return web.json_response(self.zammad.listing())
        return web.json_response([
            {"id": iid, "created_at": i["created_at"], "body": i["doc"], "status": i["status"]}
            for iid, i in self.desk.incidents.items()])

    async def list_created(self, request: web.Request) -> web.Response:
        """Each ticket's work order reference and creation time (for the benchmarks)."""
        if self.georeport is not None:
            return web.json_response([[r["attribute"].get("work_order_id"), r["created_at"]]
                                      for r in self.georeport.requests.values()])
        if self.zammad is not None:
            return web.json_response([
                [m[1] if (m := REF.search(t["title"])) else None, t["_created"]]
                for t in self.zammad.tickets.values()])
        return web.json_response([
            [i["doc"].get("incidentComponent", {}).get("internalIncidentId"), i["created_at"]]
            for i in self.desk.incidents.values()])

    async def receive_webhook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            if self.webhook_secret is None:
                raise SignatureError("this stand-in has no webhook secret configured")
            verify(self.webhook_secret, request.headers.get(SIGNATURE_HEADER), raw)
            event = json.loads(raw)
        except SignatureError as exc:
            self.webhooks_rejected += 1
            return web.json_response({"error": str(exc)}, status=401)
        except ValueError:
            self.webhooks_rejected += 1
            return web.json_response({"error": "body is not valid JSON"}, status=400)
        self.webhooks.append({"event": event, "received_at": time.time()})
        return web.Response(status=204)

    async def list_webhooks(self, request: web.Request) -> web.Response:
        return web.json_response(self.webhooks)


@web.middleware
async def _gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    standin: StandIn = request.app["standin"]
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    standin.requests += 1
    # GeoReport's key is the api_key parameter of a POST (checked there), not a bearer token.
    if standin.zammad is not None:
        if not standin.zammad.authorized(request.headers.get("Authorization")):
            raise _error(web.HTTPUnauthorized, "authentication failed")
    elif standin.georeport is None and not standin.authorized(
            request.headers.get("Authorization")):
        raise _error(web.HTTPUnauthorized, "missing or wrong bearer token",
                     headers={"WWW-Authenticate": "Bearer"})
    mode = standin.take_failure()
    if mode == "timeout":
        await standin.stall()
    if mode is not None:
        raise _error(web.HTTPServiceUnavailable, f"injected failure ({mode})")
    return await handler(request)


def make_app(kind: str, *, webhook_secret: bytes | None = None,
             api_token: str | None = None) -> web.Application:
    standin = StandIn(kind, webhook_secret=webhook_secret, api_token=api_token)
    app = web.Application(middlewares=[_gate])
    with warnings.catch_warnings():
        # app["standin"] is the stand-in's documented handle for tests; a str key is the point.
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["standin"] = standin
    app.on_shutdown.append(standin.close)
    if standin.georeport is not None:
        standin.georeport.routes(app)
        app.router.add_post(CONTROL_PREFIX + "requests/{id}/close", standin.georeport.close)
    elif standin.zammad is not None:
        standin.zammad.routes(app)
    else:
        standin.desk.routes(app)
        app.router.add_post(CONTROL_PREFIX + "incidents/{id}/status", standin.desk.set_status)
    app.router.add_get(CONTROL_PREFIX + "stats", standin.get_stats)
    app.router.add_post(CONTROL_PREFIX + "fail", standin.set_failure)
    app.router.add_get(CONTROL_PREFIX + "tickets", standin.list_tickets)
    app.router.add_get(CONTROL_PREFIX + "created", standin.list_created)
    app.router.add_post(CONTROL_PREFIX + "webhook", standin.receive_webhook)
    app.router.add_get(CONTROL_PREFIX + "webhooks", standin.list_webhooks)
    return app


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected host:port, got {value!r}")
    return host, int(port)


def _secret(parser: argparse.ArgumentParser, path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        value = path.read_text().strip()
    except OSError as exc:
        parser.error(f"cannot read {path}: {exc.strerror}")
    if not value:
        parser.error(f"{path} is empty")
    return value


def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    # Tickets are never deleted: what outlives a young collection is, nearly always, a ticket
    # that stays for good. Frozen, full collections never walk it: with 100,000+ tickets a full
    # collection otherwise paused the stand-in for up to 0.8 s, and that pause of the fake
    # platform showed up in the sidecar benchmark's latency as if it were the sidecar's.
    if phase == "stop" and info["generation"] >= 1:
        gc.freeze()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sidecar.standins",
                                     description="Run a stand-in for a platform's ticket system.")
    parser.add_argument("--kind", choices=KINDS, required=True,
                        help="the ticket API to speak (a platform's [sidecar.platforms.<id>] kind)")
    parser.add_argument("--listen", type=_host_port, required=True, metavar="HOST:PORT")
    parser.add_argument("--webhook-secret-file", type=Path,
                        help="shared secret for signed alerts posted to /_standin/webhook")
    parser.add_argument("--api-token-file", type=Path,
                        help="the ticket API's token: Open311's api_key, EIDO's bearer token, "
                             "Zammad's access token")
    args = parser.parse_args(argv)
    webhook_secret = _secret(parser, args.webhook_secret_file)
    app = make_app(args.kind, api_token=_secret(parser, args.api_token_file),
                   webhook_secret=webhook_secret.encode() if webhook_secret else None)
    host, port = args.listen
    gc.callbacks.append(_freeze_survivors)
    web.run_app(app, host=host, port=port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
