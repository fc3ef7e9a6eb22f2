"""How the sidecar talks to each kind of ticket system (``[sidecar.platforms.<id>] kind``).

Every adapter creates a work order's ticket exactly once, however often it is asked (a retry,
a record read again after a kill -9), and relays a note to a ticket where its API has a way:

- ``open311``: Open311 GeoReport v2 as specified. ``POST requests.json`` form-encoded with the
  platform's ``api_key``; GeoReport has no idempotency key, so before each first ``POST`` the
  sidecar records in Redis that it is about to send (``TICKET_SENT``), and any later attempt
  for the same work order first looks on the platform for the request it may have made: by
  ``GET requests.json`` over the time since it was recorded, for the one whose description ends
  with the work order's reference (GeoReport returns no attributes, the reference is also sent
  as ``attribute[work_order_id]``). GeoReport has no way to add a note: ``note`` says so and the
  sidecar keeps it on its own side (the transfer's trail).
- ``eido``: NENA EIDO 1.0 documents (NENA-STA-021) put whole at ``/EIDO/{IncidentId}``; the
  incident id is the work order's, so a repeat updates the same incident (``EidoApi``).
- ``http``: whatever REST API the platform's mapping file describes (``sidecar.mapping``):
  exactly once as for Open311 (recorded before sending, looked for by the mapping's ``find``),
  notes and statuses where the mapping has ``note`` and ``get`` (``HttpApi``).

A create that failed before anything was sent (the connection refused) leaves no record behind:
the next attempt sends without looking first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import aiohttp
import redis.asyncio as aioredis
import structlog

from contracts.names import TICKET_SENT, TICKET_SENT_TTL
from contracts.vocab import PlatformKind

from .mapping import Call, flatten
from .settings import PlatformApi
from .workorder import (OPEN311_DESCRIPTION_MAX, UNCLASSIFIED, eido_incident_id, eido_note,
                        from_open311_response, ticket_lines, ticket_title, to_eido, to_open311)

OPEN311_PREFIX = "/open311/v2"
EIDO_PATH, EIDO_MEDIA = "/EIDO/{}", "application/emergency.eido+json"
log = structlog.get_logger("adapters")
# How far before the recorded send time a request of ours may carry (clocks differ) and after.
CLOCK_SKEW = timedelta(minutes=5)


class TicketError(Exception):
    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class TicketApi:
    """One platform's ticket system, as its ``kind`` speaks. ``takes_notes``: a note can be
    written to a ticket; ``read_for_status``: the platform does not report on its tickets by
    itself (``POST /feedback``), so the sidecar reads their statuses (``statuses``)."""
    takes_notes = True
    read_for_status = False

    def __init__(self, session: aiohttp.ClientSession, platform: str, api: PlatformApi,
                 timeout: float, redis: aioredis.Redis):
        self.session = session
        self.platform = platform
        self.kind = api.kind
        self.role = api.role
        self.base = api.url.rstrip("/")
        self.token = api.token
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.redis = redis

    def known_id(self, wo: dict) -> str | None:
        """The id the work order's ticket will have, where it is known before it exists."""
        return None

    async def create(self, wo: dict, redelivered: bool) -> str:
        raise NotImplementedError

    async def note(self, ticket_id: str, key: str, note: dict, redelivered: bool = False
                   ) -> bool:
        """Relay ``note`` to the ticket once (``key``); False: this API has no way to."""
        raise NotImplementedError

    async def statuses(self, ticket_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
        """Each ticket's status on the platform, in its own words, and its latest note."""
        raise NotImplementedError(f"{self.kind} tickets are reported on, not read")

    async def _request(self, method: str, path: str, what: str, **kw) -> object:
        """The JSON answer; TicketError (permanent for a 4xx but 408/429) otherwise. A 404 on a
        GET is None. A request refused before it was sent raises ``NotSent``."""
        try:
            async with self.session.request(method, self.base + path, timeout=self.timeout,
                                            **kw) as resp:
                text = await resp.text()
                if method == "GET" and resp.status == 404:
                    return None
                if resp.status >= 500 or resp.status in (408, 429):
                    raise TicketError(f"{self.platform}: {what} HTTP {resp.status}")
                if resp.status >= 400:
                    raise TicketError(f"{self.platform}: {what} HTTP {resp.status}: "
                                      f"{text[:300]}", permanent=True)
                return json.loads(text) if text else None
        except aiohttp.ClientConnectorError as exc:
            raise NotSent(f"{self.platform}: {what} {exc!r}") from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise TicketError(f"{self.platform}: {what} {exc!r}") from None
        except ValueError as exc:
            raise TicketError(f"{self.platform}: {what}: not JSON ({exc})") from None

    async def _create_once(self, ref: str, send, find) -> str:
        """``await send()`` once for work order ``ref`` on an API with no idempotency key: the
        attempt is recorded in Redis first; a later attempt (a retry, a record read again after
        a kill -9) first asks ``await find(sent_at)`` for what the earlier one may have made."""
        key = TICKET_SENT.format(f"{self.platform}:{ref}")
        try:
            first = await self.redis.set(key, _w3c(datetime.now(timezone.utc)), nx=True,
                                         ex=TICKET_SENT_TTL)
            sent_at = None if first else (await self.redis.get(key) or b"").decode()
        except (aioredis.RedisError, OSError) as exc:
            # Not recorded, not sent: a request the sidecar cannot look for again is never made.
            raise TicketError(f"{self.platform}: cannot record the request before sending it: "
                              f"{exc}") from None
        if sent_at is not None:
            found = await find(sent_at)
            if found:
                return found
        try:
            return await send()
        except NotSent:
            # Nothing reached the platform: the next attempt need not look for it.
            with contextlib.suppress(aioredis.RedisError, OSError):
                await self.redis.delete(key)
            raise


class NotSent(TicketError):
    """The request never left (the platform refused the connection)."""


def note_text(note: dict) -> str:
    """A relayed note as one line of text: what was said, the status, who said it."""
    text = note.get("note") or ""
    if note.get("status"):
        text = f"{text} (status: {note['status']})".strip()
    if note.get("source"):
        text = f"{text} — {note['source']}"
    return text


def make(session: aiohttp.ClientSession, platform: str, api: PlatformApi, timeout: float,
         redis: aioredis.Redis) -> TicketApi:
    cls = {PlatformKind.OPEN311: Open311Api, PlatformKind.EIDO: EidoApi,
           PlatformKind.HTTP: HttpApi}[api.kind]
    return cls(session, platform, api, timeout, redis)


# --- Open311 GeoReport v2 ---------------------------------------------------------------------

def open311_form(wo: dict, api_key: str | None) -> list[tuple[str, str]]:
    """The form of a GeoReport v2 ``POST requests.json`` for a work order."""
    body = to_open311(wo)
    ref = f"\n[hotline-link {wo['work_order_id']}]"
    description = body["description"][:OPEN311_DESCRIPTION_MAX - len(ref)] + ref
    form = [("api_key", api_key)] if api_key else []
    form += [("service_code", body["service_code"] or UNCLASSIFIED),
             ("description", description)]
    for name in ("lat", "long", "address_string", "first_name", "last_name", "phone"):
        if body.get(name) is not None:
            form.append((name, str(body[name])))
    if body.get("lat") is None and not body.get("address_string"):
        # GeoReport requires a location; a phone call may come without one.
        form.append(("address_string", "未提供地址 (no address given)"))
    form += [(f"attribute[{k}]", str(v)) for k, v in body["attribute"].items()]
    return form


def _w3c(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds")


class Open311Api(TicketApi):
    # GeoReport v2 can neither be written to nor call out: its statuses are read.
    takes_notes = False
    read_for_status = True

    async def create(self, wo: dict, redelivered: bool) -> str:
        form = open311_form(wo, self.token)

        async def send() -> str:
            answer = await self._request("POST", f"{OPEN311_PREFIX}/requests.json", "create",
                                         data=form)
            try:
                return from_open311_response(answer)
            except ValueError as exc:
                raise TicketError(f"{self.platform}: {exc}", permanent=True) from None

        ref = wo["work_order_id"]
        return await self._create_once(
            ref, send, lambda sent_at: self.find(ref, dict(form)["service_code"], sent_at))

    async def find(self, ref: str, service_code: str, sent_at: str) -> str | None:
        """The service request an earlier attempt made for ``ref``, if the platform has it."""
        try:
            since = datetime.fromisoformat(sent_at)
        except ValueError:
            since = datetime.now(timezone.utc) - timedelta(days=1)
        found = await self._request("GET", f"{OPEN311_PREFIX}/requests.json", "lookup", params={
            "service_code": service_code, "start_date": _w3c(since - CLOCK_SKEW),
            "end_date": _w3c(datetime.now(timezone.utc) + CLOCK_SKEW)})
        marker = f"[hotline-link {ref}]"
        for item in found if isinstance(found, list) else []:
            if isinstance(item, dict) and (item.get("description") or "").endswith(marker):
                return str(item.get("service_request_id"))
        return None

    async def note(self, ticket_id: str, key: str, note: dict, redelivered: bool = False
                   ) -> bool:
        return False

    async def statuses(self, ticket_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
        """Each request's GeoReport status (open, closed) and status_notes, 100 at a time."""
        out = {}
        for i in range(0, len(ticket_ids), 100):
            found = await self._request("GET", f"{OPEN311_PREFIX}/requests.json", "status",
                                        params={"service_request_id": ",".join(
                                            ticket_ids[i:i + 100])})
            out.update({str(r.get("service_request_id")): (r.get("status"), r.get("status_notes"))
                        for r in found or [] if isinstance(r, dict)})
        return out


# --- NENA EIDO ----------------------------------------------------------------------------------

class EidoApi(TicketApi):
    """The dispatch system takes whole NENA EIDO 1.0 documents at ``/EIDO/{IncidentId}``. The
    incident's id is the work order's (``eido_incident_id``), so delivering it again updates the
    same incident: exactly once without an idempotency key. A note is the incident's current
    EIDO with one more ``notesComponent``, whose ``$id`` comes from the note's key: already
    there, it is not added again."""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _path(self, incident_id: str) -> str:
        return EIDO_PATH.format(quote(incident_id, safe=":"))

    async def _get(self, incident_id: str) -> dict | None:
        found = await self._request("GET", self._path(incident_id), "lookup",
                                    headers={**self.headers, "Accept": EIDO_MEDIA})
        if found is not None and not isinstance(found, dict):
            raise TicketError(f"{self.platform}: lookup: not an EIDO", permanent=True)
        return found

    async def _put(self, doc: dict) -> None:
        await self._request("PUT", self._path(doc["$id"]), "deliver",
                            data=json.dumps(doc, ensure_ascii=False).encode(),
                            headers={**self.headers, "Content-Type": EIDO_MEDIA})

    def known_id(self, wo: dict) -> str | None:
        return eido_incident_id(wo)

    async def create(self, wo: dict, redelivered: bool) -> str:
        doc = to_eido(wo)
        if not (redelivered and await self._get(doc["$id"]) is not None):
            await self._put(doc)
        return doc["$id"]

    async def note(self, ticket_id: str, key: str, note: dict, redelivered: bool = False
                   ) -> bool:
        doc = await self._get(ticket_id)
        if doc is None:
            raise TicketError(f"{self.platform}: no incident {ticket_id}", permanent=True)
        note_id = f"{ticket_id}:note:{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        if any(n.get("$id") == note_id for n in doc.get("notesComponent") or []):
            return True
        await self._put(eido_note(doc, note_id, note_text(note)))
        return True


# --- any other REST ticket API, by its mapping file ----------------------------------------------

def work_order_fields(wo: dict) -> dict:
    """What a mapping's create and find templates may use of a work order."""
    return {**flatten(wo), "ref": wo["work_order_id"], "title": ticket_title(wo),
            "text": "\n".join(ticket_lines(wo))}


class HttpApi(TicketApi):
    """The ticket API a mapping file describes (``sidecar.mapping``). Statuses are read where
    the mapping says how (``get``); the platform's own calls (``POST /feedback``) count too."""

    def __init__(self, session: aiohttp.ClientSession, platform: str, api: PlatformApi,
                 timeout: float, redis: aioredis.Redis):
        super().__init__(session, platform, api, timeout, redis)
        self.mapping = api.mapping
        self.takes_notes = self.mapping.note is not None
        self.read_for_status = self.mapping.get is not None
        # Status reads at once: a round asks for up to a thousand tickets, one request each.
        self._reads = asyncio.Semaphore(8)

    async def _call(self, call: Call, fields: dict, what: str) -> object:
        req = call.build({**fields, "token": self.token})
        return await self._request(req.pop("method"), req.pop("path"), what, **req)

    async def create(self, wo: dict, redelivered: bool) -> str:
        fields = work_order_fields(wo)

        async def send() -> str:
            answer = await self._call(self.mapping.create, fields, "create")
            try:
                return self.mapping.ticket_id(answer)
            except ValueError as exc:
                raise TicketError(f"{self.platform}: {exc}", permanent=True) from None

        async def find(sent_at: str) -> str | None:
            if self.mapping.find is None:
                raise TicketError(
                    f"{self.platform}: a create for {wo['work_order_id']} was sent at "
                    f"{sent_at} and its answer lost; the mapping ({self.mapping.source.name}) "
                    "has no find to look for it, so it is not sent again (check the platform "
                    "and re-drive the dead letter)", permanent=True)
            answer = await self._call(self.mapping.find, fields, "lookup")
            try:
                found = self.mapping.matches(answer or {})
            except ValueError as exc:
                raise TicketError(f"{self.platform}: {exc}", permanent=True) from None
            if len(found) > 1:
                log.warning("several tickets carry one work order; the first is kept",
                            platform=self.platform, work_order_id=wo["work_order_id"],
                            tickets=found)
            return found[0] if found else None

        return await self._create_once(wo["work_order_id"], send, find)

    async def note(self, ticket_id: str, key: str, note: dict, redelivered: bool = False
                   ) -> bool:
        if self.mapping.note is None:
            return False
        await self._call(self.mapping.note, {
            "ticket_id": ticket_id, "note.text": note_text(note), "note.status": note.get("status"),
            "note.source": note.get("source"), "note.key": key}, "note")
        return True

    async def statuses(self, ticket_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
        async def one(ticket_id: str) -> tuple[str, tuple[str | None, str | None] | None]:
            async with self._reads:
                doc = await self._call(self.mapping.get, {"ticket_id": ticket_id}, "status")
            return ticket_id, None if doc is None else self.mapping.status_of(doc)
        found = await asyncio.gather(*(one(t) for t in ticket_ids))
        return {t: s for t, s in found if s is not None}
