"""Stand-ins for the ticket systems of the 12345 centre and the 110 desk.

Those systems belong to the platforms, not to this product; the sidecar only talks to their
documented ticket API. These stand-ins implement that API in memory, for the tests and the local
demo, plus a few ``/_standin/...`` controls a test uses to inspect them and to make them fail.
A stand-in is of one kind, the API it speaks (``[sidecar.platforms.<id>] kind``): ``open311``
(the 12345 work-order system) or ``eido`` (the 110 dispatch system)::

    python -m sidecar.standins --kind open311 --listen 127.0.0.1:8491 \\
        [--webhook-secret-file F] [--api-token-file F]

Documented ticket APIs
======================

12345 work-order system (kind ``open311``)
------------------------------------------

Open311 GeoReport v2 as the specification defines it, with nothing added:
``sidecar/standin_open311.py`` lists its resources. The stand-in's token is GeoReport's
``api_key`` parameter of a ``POST``.

110 dispatch system (kind ``eido``: NENA EIDO style)
----------------------------------------------------

* Bodies are JSON; errors answer ``{"error": "<reason>"}``.
* With an API token configured, every request needs ``Authorization: Bearer <token>``, else 401.
* Every POST needs an ``Idempotency-Key`` header (else 400). The first successful answer to a key
  is remembered: repeating the key answers 200 with that same body and changes nothing, so a
  client may retry a POST whose answer it never saw. Failed requests (4xx, 5xx) are not
  remembered; retrying them with the same key is a fresh attempt.
* ``GET`` on a POST path with ``?idempotency_key=K`` answers 200 with the body the first
  successful POST with that key got, or 404 if there was none: a client that lost an answer (it
  crashed in between) finds out whether its request was done without sending it again.
* Statuses: ``open`` (new), ``accepted``, ``in_progress``, ``closed``.
* Notes (``POST .../notes``): ``{"status": ..., "note": ..., "source": ...}``, all optional but
  at least one of status and note; a status moves the ticket to it. 201 ``{"ok": true}``; 404 for
  an unknown ticket.

``POST /eido/v1/incidents``
    An EIDO message: ``eidoMessageIdentifier`` (required, non-empty string) and
    ``incidentComponent`` (required, object); anything else is kept as sent. 201
    ``{"incidentTrackingIdentifier": "JD-000001"}``.
``GET /eido/v1/incidents/{id}``
    200: the stored message plus ``incidentTrackingIdentifier``, ``status`` and ``notes``, or 404.
``POST /eido/v1/incidents/{id}/notes``
    Adds a note, as above.

Stand-in controls (no token needed)
===================================

``GET /_standin/stats``
    ``{"tickets", "duplicates", "requests", "failed", "notes", "webhooks", "webhooks_rejected"}``;
    ``requests`` counts every ticket-API request, whatever its answer.
``POST /_standin/fail`` ``{"mode": "error" | "timeout" | "none", "count": n | null}``
    The next ``n`` ticket-API requests (null: until mode ``none``) store nothing and answer 503 --
    at once (``error``) or after 30 s (``timeout``: the client is meant to give up first).
``GET /_standin/tickets``
    Every stored ticket with its body, Idempotency-Key (None on Open311), status and notes.
``POST /_standin/requests/{id}/close`` ``{"status_notes": ...}``
    Open311: the centre's staff close a service request (GeoReport has no write for it).
``GET /_standin/created``
    ``[[idempotency_key, created_at], ...]`` for every ticket: the compact form benchmarks read.
``POST /_standin/webhook``
    A subscriber to the sidecar's alerts: checks ``X-Hotline-Signature`` (``sidecar.signing``);
    204 and stored if valid, else 401 ``{"error": ...}``.
``GET /_standin/webhooks``
    The stored alerts: ``[{"event": <JSON body>, "received_at": <unix time>}]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import hmac
import json
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from contracts.vocab import PlatformKind
from sidecar.signing import SIGNATURE_HEADER, SignatureError, verify
from sidecar.standin_open311 import GeoReport

KINDS = tuple(PlatformKind)
STATUSES = ("open", "accepted", "in_progress", "closed")
FAIL_MODES = ("error", "timeout", "none")
TIMEOUT_DELAY = 30.0
IDEMPOTENCY_HEADER = "Idempotency-Key"
CONTROL_PREFIX = "/_standin/"

# kind -> (create, show, add note); Open311 is GeoReport's own (standin_open311.py)
_PATHS = {
    PlatformKind.EIDO: ("/eido/v1/incidents", "/eido/v1/incidents/{id}",
                        "/eido/v1/incidents/{id}/notes"),
}
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


def _check_eido(body: dict[str, Any]) -> None:
    ident = body.get("eidoMessageIdentifier")
    if not isinstance(ident, str) or not ident.strip():
        raise _error(web.HTTPBadRequest, "eidoMessageIdentifier is required")
    if not isinstance(body.get("incidentComponent"), dict):
        raise _error(web.HTTPBadRequest, "incidentComponent is required (an object)")


@dataclass
class Ticket:
    id: str
    idempotency_key: str
    body: dict[str, Any]
    created_at: float
    status: str = "open"
    status_notes: str = ""
    # Each note keeps its Idempotency-Key for /_standin/tickets; the ticket API hides it.
    notes: list[dict[str, Any]] = field(default_factory=list)

    def public_notes(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in n.items() if k != "idempotency_key"} for n in self.notes]


class StandIn:
    """One platform's ticket system, in memory; the app's handlers are its methods."""

    def __init__(self, kind: str, *, webhook_secret: bytes | None = None,
                 api_token: str | None = None):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.kind = PlatformKind(kind)
        self.webhook_secret = webhook_secret
        self.api_token = api_token
        self.tickets: dict[str, Ticket] = {}
        self.webhooks: list[dict[str, Any]] = []
        self.requests = 0
        self.duplicates = 0
        self.failed = 0
        self.webhooks_rejected = 0
        self.fail_mode = "none"
        self.fail_left: int | None = None
        # Open311: GeoReport v2 as specified (its api_key is the stand-in's token).
        self.georeport = GeoReport(api_token) if self.kind == PlatformKind.OPEN311 else None
        # (scope, Idempotency-Key) -> the body of the first successful answer
        self._answers: dict[tuple[str, str], Any] = {}
        self._closing = asyncio.Event()

    def stats(self) -> dict[str, int]:
        if self.georeport is not None:
            return {"tickets": len(self.georeport.requests),
                    "duplicates": self.georeport.duplicates, "requests": self.requests,
                    "failed": self.failed, "notes": 0, "webhooks": len(self.webhooks),
                    "webhooks_rejected": self.webhooks_rejected}
        return {
            "tickets": len(self.tickets), "duplicates": self.duplicates,
            "requests": self.requests, "failed": self.failed,
            "notes": sum(len(t.notes) for t in self.tickets.values()),
            "webhooks": len(self.webhooks), "webhooks_rejected": self.webhooks_rejected,
        }

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

    # --- ticket API --------------------------------------------------------------------------

    def _ticket(self, request: web.Request) -> Ticket:
        ticket = self.tickets.get(request.match_info["id"])
        if ticket is None:
            raise _error(web.HTTPNotFound, f"no ticket {request.match_info['id']}")
        return ticket

    @staticmethod
    def _key(request: web.Request) -> str:
        key = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
        if not key:
            raise _error(web.HTTPBadRequest, f"{IDEMPOTENCY_HEADER} header is required")
        return key

    def _replay(self, scope: str, key: str) -> web.Response | None:
        answer = self._answers.get((scope, key))
        if answer is None:
            return None
        self.duplicates += 1
        return web.json_response(answer, status=200)

    def _answer(self, scope: str, key: str, answer: Any) -> web.Response:
        self._answers[(scope, key)] = answer
        return web.json_response(answer, status=201)

    async def create(self, request: web.Request) -> web.Response:
        key = self._key(request)
        raw = await request.read()
        # No await from here on: a concurrent retry with the same key cannot slip in between the
        # replay check and the store, so it can never create a second ticket.
        if (replay := self._replay("create", key)) is not None:
            return replay
        body = _object(raw)
        _check_eido(body)
        ticket_id = f"JD-{len(self.tickets) + 1:06d}"
        self.tickets[ticket_id] = Ticket(ticket_id, key, body, time.time())
        return self._answer("create", key, {"incidentTrackingIdentifier": ticket_id})

    async def lookup(self, request: web.Request) -> web.Response:
        key = request.query.get("idempotency_key", "").strip()
        if not key:
            raise _error(web.HTTPBadRequest, "the idempotency_key query parameter is required")
        scope = f"note:{self._ticket(request).id}" if "id" in request.match_info else "create"
        answer = self._answers.get((scope, key))
        if answer is None:
            raise _error(web.HTTPNotFound, f"no request with Idempotency-Key {key}")
        return web.json_response(answer)

    async def show(self, request: web.Request) -> web.Response:
        t = self._ticket(request)
        return web.json_response({**t.body, "incidentTrackingIdentifier": t.id,
                                  "status": t.status, "notes": t.public_notes()})

    async def add_note(self, request: web.Request) -> web.Response:
        ticket = self._ticket(request)
        key = self._key(request)
        raw = await request.read()
        scope = f"note:{ticket.id}"
        if (replay := self._replay(scope, key)) is not None:
            return replay
        body = _object(raw)
        status, note, source = body.get("status"), body.get("note"), body.get("source")
        if status is not None and status not in STATUSES:
            raise _error(web.HTTPBadRequest, f"status must be one of {', '.join(STATUSES)}")
        for name, value in (("note", note), ("source", source)):
            if value is not None and not isinstance(value, str):
                raise _error(web.HTTPBadRequest, f"{name} must be a string")
        if status is None and not note:
            raise _error(web.HTTPBadRequest, "a note needs a status or a note text")
        ticket.notes.append({"status": status, "note": note, "source": source,
                             "created_at": time.time(), "idempotency_key": key})
        if status is not None:
            ticket.status = status
        if note:
            ticket.status_notes = note
        return self._answer(scope, key, {"ok": True})

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
                {"id": r["id"], "idempotency_key": None, "created_at": r["created_at"],
                 "body": {**r["body"], "attribute": r["attribute"]}, "status": r["status"],
                 "status_notes": r["status_notes"], "notes": []}
                for r in self.georeport.requests.values()])
        return web.json_response([dataclasses.asdict(t) for t in self.tickets.values()])

    async def list_created(self, request: web.Request) -> web.Response:
        """Each ticket's work order reference and creation time (for the benchmarks): the
        Idempotency-Key, or on Open311, which has none, the work_order_id attribute."""
        if self.georeport is not None:
            return web.json_response([[r["attribute"].get("work_order_id"), r["created_at"]]
                                      for r in self.georeport.requests.values()])
        return web.json_response([[t.idempotency_key, t.created_at] for t in self.tickets.values()])

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
    if standin.georeport is None and not standin.authorized(request.headers.get("Authorization")):
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
    else:
        create, show, notes = _PATHS[standin.kind]
        app.router.add_post(create, standin.create)
        app.router.add_get(create, standin.lookup)
        app.router.add_get(show, standin.show)
        app.router.add_post(notes, standin.add_note)
        app.router.add_get(notes, standin.lookup)
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
                        help="require 'Authorization: Bearer <token>' on the ticket API")
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
