"""The 110 dispatch system's stand-in: it takes and keeps NENA EIDO 1.0 documents
(NENA-STA-021, ``NENA911/EIDO-JSON``), one per incident, at the EIDO retrieval resource that
NENA's ``openapi.yaml`` names:

``PUT /EIDO/{IncidentId}``
    An issuing element delivers the whole EIDO of an incident whose tracking identifier (the
    document's ``$id``) is ``IncidentId``: 201 for a new incident, 200 for an update (an update
    is a whole new EIDO of the same incident; the same document again changes nothing). The
    body is ``application/emergency.eido+json`` (or ``application/json``).
``GET /EIDO/{IncidentId}``
    The incident's current EIDO, with what the dispatch side changed since; 404 if unknown.

A document is refused (400) unless it has the parts STA-021 requires: the prologue (``$id``,
``lastUpdateTimeStamp``, ``updatedByAgencyReference``) on it and every component,
``eidoVersion`` 1.0, ``issuingElementIdentification``, at least one ``agencyComponent``, each
component's own required fields, and every ``{"$ref": ...}`` naming a component listed in it.
Errors are RFC 7807 problem details (``application/problem+json``). The dispatchers' own
changes (a status, a note) come from the back office: here the control
``POST /_standin/incidents/{IncidentId}/status`` with ``{"status", "note"}``.

Transport: STA-024 conveys EIDOs over a WebSocket subscription; this stand-in and the sidecar
use plain HTTPS requests on the retrieval resource instead (what the sidecar needs beyond the
standard, it does on its own side).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

PATH = "/EIDO/{id}"
MEDIA = ("application/emergency.eido+json", "application/json")
PROLOGUE = ("$id", "lastUpdateTimeStamp", "updatedByAgencyReference")
# component -> (is a list, its required fields beyond the prologue)
COMPONENTS = {
    "incidentComponent": (False, ("incidentTypeCommonRegistryText",)),
    "notesComponent": (True, ("notesActionComments",)),
    "locationComponent": (True, ("locationTypeDescriptionRegistryText",)),
    "personComponent": (True, ("personIncidentRoleRegistryText",)),
    "callComponent": (True, ("callStateRegistryText", "standardPrimaryCallType", "direction",
                             "callStartTimestamp")),
    "agencyComponent": (True, ("agencyRoleDescriptionRegistryText", "agencyType")),
    "agentComponent": (True, ("agentRoleRegistryText", "agencyReference")),
}


def problem(status: int, detail: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 404: web.HTTPNotFound,
           415: web.HTTPUnsupportedMediaType}[status]
    return cls(text=json.dumps({"type": "about:blank", "title": cls.__name__[4:],
                                "status": status, "detail": detail}, ensure_ascii=False),
               content_type="application/problem+json")


def problems(doc: object) -> list[str]:
    """What keeps ``doc`` from being an EIDO 1.0 document with its required parts."""
    if not isinstance(doc, dict):
        return ["an EIDO is a JSON object"]
    out = [f"{name} is required" for name in ("eidoVersion", "issuingElementIdentification",
                                              "agencyComponent", *PROLOGUE) if not doc.get(name)]
    if doc.get("eidoVersion") not in (None, "1.0"):
        out.append("eidoVersion must be 1.0")
    ids = {doc.get("$id")}
    parts: list[tuple[str, Any]] = []
    for name, (many, required) in COMPONENTS.items():
        value = doc.get(name)
        if value is None:
            continue
        items = value if many else [value]
        if many != isinstance(value, list) or not all(isinstance(i, dict) for i in items):
            out.append(f"{name} must be {'a list of objects' if many else 'an object'}")
            continue
        for i, item in enumerate(items):
            where = f"{name}[{i}]" if many else name
            out += [f"{where}.{f} is required" for f in (*PROLOGUE, *required) if not item.get(f)]
            ids.add(item.get("$id"))
            parts.append((where, item))
    if isinstance(doc.get("lastUpdateTimeStamp"), str) and not _is_time(doc["lastUpdateTimeStamp"]):
        out.append("lastUpdateTimeStamp must be an RFC 3339 date-time")
    for where, ref in _references(doc, ""):
        if ref not in ids:
            out.append(f"{where} names {ref!r}, which no component of this EIDO has as $id")
    return out


def _references(value: Any, where: str):
    if isinstance(value, dict):
        if set(value) == {"$ref"}:
            yield where, value["$ref"]
            return
        for k, v in value.items():
            yield from _references(v, f"{where}.{k}" if where else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _references(v, f"{where}[{i}]")


def _is_time(value: str) -> bool:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


class DispatchDesk:
    """The incidents of one stand-in, in memory; its handlers are the methods."""

    def __init__(self) -> None:
        self.incidents: dict[str, dict[str, Any]] = {}
        self.duplicates = 0              # the same document delivered again
        self.updates = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_put(PATH, self.put)
        app.router.add_get(PATH, self.get)

    async def put(self, request: web.Request) -> web.Response:
        if request.content_type not in MEDIA:
            raise problem(415, f"an EIDO is {MEDIA[0]}")
        try:
            doc = json.loads(await request.read())
        except ValueError:
            raise problem(400, "the body is not JSON") from None
        if found := problems(doc):
            raise problem(400, "; ".join(found))
        iid = request.match_info["id"]
        if doc["$id"] != iid:
            raise problem(400, f"the EIDO's $id {doc['$id']!r} is not the incident {iid!r}")
        known = self.incidents.get(iid)
        if known is None:
            self.incidents[iid] = {"doc": doc, "created_at": time.time(), "status": None}
            return web.json_response(doc, status=201)
        if known["doc"] == doc:
            self.duplicates += 1
        else:
            self.updates += 1
            known["doc"] = doc
        return web.json_response(known["doc"])

    async def get(self, request: web.Request) -> web.Response:
        incident = self.incidents.get(request.match_info["id"])
        if incident is None:
            raise problem(404, f"no incident {request.match_info['id']}")
        return web.json_response(incident["doc"],
                                 content_type="application/emergency.eido+json")

    async def set_status(self, request: web.Request) -> web.Response:
        """The dispatchers change the incident's status and add a note (a stand-in control)."""
        iid = request.match_info["id"]
        incident = self.incidents.get(iid)
        if incident is None:
            raise problem(404, f"no incident {iid}")
        body = await request.json()
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        doc = incident["doc"]
        desk = doc["agencyComponent"][-1]["$id"]
        component = {**doc["incidentComponent"], "lastUpdateTimeStamp": now,
                     "updatedByAgencyReference": {"$ref": desk},
                     "incidentStatusInternalText": [str(body["status"])]}
        doc = {**doc, "lastUpdateTimeStamp": now, "updatedByAgencyReference": {"$ref": desk},
               "incidentComponent": component}
        if body.get("note"):
            note_id = f"{iid}:desk-note:{len(doc.get('notesComponent', [])) + 1}"
            component["notesReference"] = [*component.get("notesReference", []),
                                           {"$ref": note_id}]
            doc["notesComponent"] = [*doc.get("notesComponent", []), {
                "$id": note_id, "lastUpdateTimeStamp": now,
                "updatedByAgencyReference": {"$ref": desk},
                "notesActionComments": f"<p>{body['note']}</p>"}]
        incident["doc"], incident["status"] = doc, str(body["status"])
        return web.json_response(doc)
