"""Unified work orders, and their mapping to the two platforms' ticket systems. Pure: no I/O.

Format (``config/work-order.schema.json``): one work order is one ticket-to-be on one platform,
identified by ``<transfer_id>:<platform>``, which is also the idempotency key for creating it.

The platforms are configuration (``[sidecar.platforms.<id>]``, ids "12345" and "110" by default),
passed in as ``Platforms``: their ids and roles (``service``: the 12345 centre's work orders;
``dispatch``: the 110 desk's incidents).

Owner and linked: every outcome record (and every online request) gives two work orders. The
owner's goes to the platform that handles the matter; the linked one goes to the other platform,
so that it holds a record of what happened (R3: the first receiver handles and syncs to the
other). Who owns (``owner_platform``):

- blind ``accepted``: the target, if the target is a platform; any other target (119, province)
  is outside both ticket systems, so the origin keeps the record as owner;
- ``fallback_*``, ``cancelled``, ``caller_abandoned``, ``out_of_scope_guided``: the origin;
- three-way ``accepted_by_origin``: the origin; ``accepted_by_target``: the target (same rule for
  an external target as above); ``undecided_first_receiver``: the origin, the first receiver;
- emergency mode ``accepted_by_target``: the police desk, the platform of role ``dispatch``;
- online requests: the platform the catalog recommends (R4: an emergency goes to 110).

Mappings, chosen by the platform's kind (``sidecar.adapters``; kind ``http`` renders the work
order through the platform's mapping file, ``sidecar.mapping``, with ``ticket_title`` and
``ticket_lines``):

- ``to_open311``: the fields of an Open311 GeoReport v2 "POST Service Request" (the 12345
  work-order system; form-encoded by the adapter); what GeoReport has no field for travels in
  ``attribute``. ``from_open311_response``
  reads ``service_request_id`` from the response list.
- ``to_eido``: a NENA EIDO 1.0 document (NENA-STA-021) for the 110 dispatch system: the
  prologue on every component, the incident (its ``$id`` made from the work order: the same
  work order always names the same incident), the call, the caller as a NIEM person, the place
  (text and a PIDF-LO point), the agencies on both sides, and a note with the description and
  our references; ``eido_note`` adds a note to an incident's EIDO.

``sidecar.adapters`` sends them, each as its kind's API says.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from contracts.vocab import PlatformRole
from transfer.catalog import Catalog, Recommendation

UNCLASSIFIED = "unclassified"
# The domain in the EIDO identifiers this sidecar issues (incident, components, agencies).
EIDO_DOMAIN = "hotline-link.invalid"
ONLINE = "online"
ONLINE_RESULT = "online_request"
CALLBACK_RESULT = "callback_requested"
# How an online request the recommender could not place starts its description (and so its
# tickets): a person at the receiving platform classifies it.
NEEDS_CLASSIFICATION = "【待人工分类 needs classification】"
REQUEST_ID = re.compile(r"[!-~]{1,128}")
# GeoReport v2 limits a request's description to 4,000 characters.
OPEN311_DESCRIPTION_MAX = 4000
NUMBER_REDACTED = "[caller number]"

ORIGIN_KEEPS = frozenset({
    "fallback_busy", "fallback_no_answer", "fallback_rejected", "fallback_unreachable",
    "cancelled", "caller_abandoned", "out_of_scope_guided",
    "accepted_by_origin", "undecided_first_receiver",
})
TARGET_TAKES = frozenset({"accepted", "accepted_by_target"})

MODE_TEXT = {
    "blind": "One-key transfer",
    "three_way": "Three-way call",
    "emergency": "Emergency three-way call",
    "none": "Out-of-scope call",
}

RecommendFn = Callable[..., Recommendation]


@dataclass(frozen=True)
class Platforms:
    """The configured platforms (``[sidecar.platforms]``): id -> its role. Exactly one of each
    role: every transfer gives a ticket on both (the owner's and the linked one on "the other"
    platform), which needs two, and each role has its part below. Which ticket API a platform
    speaks (its kind) is the adapter's business, not the work order's."""
    roles: Mapping[str, PlatformRole]

    def __post_init__(self) -> None:
        if sorted(self.roles.values()) != sorted(PlatformRole):
            raise ValueError(f"platforms: expected one of each role ({', '.join(PlatformRole)}), "
                             f"got {dict(self.roles)!r}")

    def __contains__(self, platform: object) -> bool:
        # Asked with whatever a request or record holds: a JSON object or list is no platform
        # (and must not raise as an unhashable key would).
        return isinstance(platform, str) and platform in self.roles

    def __iter__(self) -> Iterator[str]:
        return iter(self.roles)

    def other(self, platform: str) -> str:
        return next(pid for pid in self.roles if pid != platform)

    @property
    def dispatch(self) -> str:
        """The police desk (110): it owns emergencies (R4) and is called in on disputes (R15).
        """
        return next(pid for pid, r in self.roles.items() if r == PlatformRole.DISPATCH)


def owner_platform(record: dict, platforms: Platforms) -> str:
    """The platform that handles the matter of an outcome record."""
    origin = record.get("origin")
    if origin not in platforms:
        raise ValueError(f"outcome record: origin {origin!r} is not a platform "
                         f"({', '.join(platforms)})")
    result = record.get("result")
    if result in ORIGIN_KEEPS:
        return origin
    if result in TARGET_TAKES:
        if record.get("mode") == "emergency":
            return platforms.dispatch
        target = record.get("target")
        return target if target in platforms else origin
    raise ValueError(f"outcome record: unknown result {result!r}")


def work_orders(record: dict, catalog: Catalog, platforms: Platforms,
                previous_tickets: Mapping[str, str] | None = None) -> list[dict]:
    """The owner's work order and the linked one, from an outcome record. ``previous_tickets``:
    the tickets of the hop before this one in a chained transfer (R6), named in both."""
    owner = owner_platform(record, platforms)
    category = record.get("category")
    number = record["caller_number"]
    stamps = record["timestamps"]
    # What the desktop tagged the call with (config/matter.schema.json), when it did.
    matter = record.get("matter") or {}
    where = matter.get("location") or {}
    fields = {
        "transfer_id": record["transfer_id"],
        "channel": "phone",
        "origin": record["origin"],
        "target": record.get("target"),
        "result": record["result"],
        "category": category,
        "category_name": _category_name(catalog, category),
        "emergency": bool(record.get("emergency")),
        "caller": {"number": number, "name": matter.get("caller_name") or None},
        "description": _redact(_record_description(record, catalog, previous_tickets), number),
        "location": {"address": matter.get("address") or None, "lat": where.get("lat"),
                     "lon": where.get("lon")},
        "agents": {"initiating": record.get("initiating_agent"),
                   "answering": record.get("answering_agent")},
        "requested_at": stamps["requested"],
        "ended_at": stamps.get("ended"),
    }
    return _pair(fields, owner, platforms)


def online_work_orders(request: dict, catalog: Catalog, recommend_fn: RecommendFn,
                       platforms: Platforms) -> list[dict]:
    """The owner's work order and the linked one, from a request filed online.

    The platform comes from ``recommend_fn(code=, text=)`` (the recommender) with the request's
    category code, if any, and its description: the description can still make it an emergency,
    which goes to 110 whatever the category (R4). A request the recommender cannot place is not
    refused: it goes to the platform whose online channel took it (``platform``; 12345's by
    default), marked for a person to classify, with the recommender's reason and alternatives.
    """
    request_id = _required_text(request, "request_id")
    if not REQUEST_ID.fullmatch(request_id):
        # It names both tickets and their idempotency keys (HTTP headers): visible ASCII only.
        raise ValueError("online request: request_id must be 1-128 visible ASCII characters "
                         "(letters, digits, punctuation; no spaces or control characters)")
    number = _required_text(request, "caller_number")
    description = request.get("description") or ""
    if not isinstance(description, str):
        raise ValueError("online request: description must be a string")
    code = request.get("category") or None
    if code is not None and (not isinstance(code, str) or code not in catalog.by_code):
        raise ValueError(f"online request {request_id}: category {code!r} is not a matter code "
                         "of the catalog (leave it out to have the description classified)")
    received_by = request.get("platform") or platforms.other(platforms.dispatch)
    if received_by not in platforms:
        raise ValueError(f"online request {request_id}: platform must be one of "
                         f"{', '.join(platforms)}")
    rec = recommend_fn(code=code, text=description)
    if rec.platform not in platforms:
        alternatives = ", ".join(f"{a.label} {a.probability:.2f}" for a in rec.alternatives)
        description = (f"{NEEDS_CLASSIFICATION}{rec.reason}"
                       + (f"（可能：{alternatives}）" if alternatives else "") + "\n" + description)
        rec = Recommendation(received_by, None, False, rec.reason)
    category = rec.category or code
    fields = {
        "transfer_id": request_id,
        "channel": ONLINE,
        "origin": ONLINE,
        "target": rec.platform,
        "result": ONLINE_RESULT,
        "category": category,
        "category_name": _category_name(catalog, category),
        "emergency": rec.emergency,
        "caller": {"number": number, "name": _optional_text(request, "caller_name")},
        "description": _redact(description, number),
        "location": {"address": _optional_text(request, "address"),
                     "lat": _coordinate(request, "lat", 90),
                     "lon": _coordinate(request, "lon", 180)},
        "agents": {"initiating": None, "answering": None},
        "requested_at": _optional_text(request, "requested_at") or _now_iso(),
        "ended_at": None,
    }
    return _pair(fields, rec.platform, platforms)


def to_open311(wo: dict) -> dict:
    """An Open311 GeoReport v2 "POST Service Request" body for the 12345 work-order system."""
    body: dict[str, Any] = {
        "service_code": wo["category"] or UNCLASSIFIED,
        "description": wo["description"][:OPEN311_DESCRIPTION_MAX],
    }
    location = wo["location"]
    # A latitude without its longitude places nothing: send both or neither.
    if location["lat"] is not None and location["lon"] is not None:
        body["lat"] = location["lat"]
        body["long"] = location["lon"]
    if location["address"]:
        body["address_string"] = location["address"]
    body["phone"] = wo["caller"]["number"]
    name = (wo["caller"]["name"] or "").strip()
    if name:
        first, last = _split_name(name)
        body["first_name"] = first
        if last:
            body["last_name"] = last
    attributes = {
        "transfer_id": wo["transfer_id"],
        "work_order_id": wo["work_order_id"],
        "role": wo["role"],
        "channel": wo["channel"],
        "result": wo["result"],
        "emergency": "true" if wo["emergency"] else "false",
        "origin": wo["origin"],
        "target": wo["target"],
        "linked_platform": wo["linked"]["platform"],
        "linked_ticket_id": wo["linked"]["ticket_id"],
        "initiating_agent": wo["agents"]["initiating"],
        "answering_agent": wo["agents"]["answering"],
    }
    # GeoReport attribute values are strings: an unknown value is left out, not sent as null.
    body["attribute"] = {k: v for k, v in attributes.items() if v is not None}
    return body


def from_open311_response(body: object) -> str:
    """The ``service_request_id`` of a GeoReport v2 response: a list with one object."""
    if not isinstance(body, list) or not body or not all(isinstance(x, dict) for x in body):
        raise ValueError("Open311 response: expected a list of objects")
    errors = [x for x in body if "code" in x and "description" in x]
    if errors:
        raise ValueError("Open311 response: error " + "; ".join(
            f"{x['code']}: {x['description']}" for x in errors))
    if len(body) != 1:
        raise ValueError(f"Open311 response: expected one service request, got {len(body)}")
    item = body[0]
    sid = item.get("service_request_id")
    if isinstance(sid, int) and not isinstance(sid, bool):
        return str(sid)
    if isinstance(sid, str) and sid:
        return sid
    if item.get("token"):
        raise ValueError("Open311 response: only a token, the service request id is not "
                         "assigned yet")
    raise ValueError("Open311 response: no service_request_id")


def ticket_lines(wo: dict) -> list[str]:
    """A ticket's body: the description, then our references (transfer, the linked ticket)."""
    lines = [wo["description"], "",
             f"转办编号 transfer {wo['transfer_id']} · {wo['origin']} → {wo['target'] or '-'} · "
             f"{wo['result']} · {'主办 owner' if wo['role'] == 'owner' else '协办 linked'}"]
    if wo["linked"]["platform"]:
        lines.append(f"关联 linked {wo['linked']['platform']} "
                     f"{wo['linked']['ticket_id'] or '(pending)'}")
    return lines


def ticket_title(wo: dict) -> str:
    """One line for a ticket's subject: urgency, the matter, where from, and our reference
    (a ticket system that searches titles finds the work order's ticket by it)."""
    matter = wo["category_name"] or "待分类 unclassified"
    urgent = "【紧急】" if wo["emergency"] else ""
    return (f"{urgent}{matter} · {wo['origin']}→{wo['target'] or '-'} "
            f"[hotline-link {wo['work_order_id']}]")


def eido_incident_id(wo: dict) -> str:
    """The work order's Incident Tracking Identifier (the EIDO's top-level ``$id``): assigned by
    the issuing side, so the same work order always names the same incident, and sending it
    again updates that incident instead of making a second one."""
    digest = hashlib.sha256(wo["work_order_id"].encode()).hexdigest()[:32]
    return f"urn:emergency:uid:incidentid:{digest}:{EIDO_DOMAIN}"


def _agency(platform: str | None) -> str:
    return f"{platform}.agency.{EIDO_DOMAIN}"


def to_eido(wo: dict, now: str | None = None) -> dict:
    """A NENA EIDO 1.0 document (NENA-STA-021, ``NENA911/EIDO-JSON``) for the 110 dispatch
    system: the prologue on every component, components listed flat and linked by
    ``{"$ref": <$id>}``, the incident's ``$id`` its tracking identifier. Registry values
    (incident type, status) are those of this deployment: the matter code as the type, our
    status as internal text; the STA-021 registries are not ours to guess."""
    now = now or _now_iso()
    iid = eido_incident_id(wo)
    key = iid.split(":")[4]
    # The issuing side: the platform that hands the matter over (a call-back: the platform's own).
    other = wo["origin"] if wo["origin"] != wo["platform"] else wo["target"]
    issuer = _agency(other or wo["platform"])
    receiver = _agency(wo["platform"])
    owner = wo["role"] == "owner"

    def component(kind: str, **fields) -> dict:
        return {"$id": f"urn:emergency:uid:{kind}:{key}:{EIDO_DOMAIN}",
                "lastUpdateTimeStamp": now, "updatedByAgencyReference": {"$ref": issuer},
                **fields}

    status = "Dispatched" if owner and wo["emergency"] else "Open" if owner else "Informational"
    person = component("personid", personIncidentRoleRegistryText=["Caller"],
                       ncPersonComponent=_nc_person(wo["caller"]))
    note = component("noteid", notesActionComments=_html(ticket_lines(wo)))
    incident = component(
        "incident", incidentTypeCommonRegistryText=wo["category"] or UNCLASSIFIED,
        incidentStatusInternalText=[status], internalIncidentId=wo["work_order_id"],
        personReference=[{"$ref": person["$id"]}], notesReference=[{"$ref": note["$id"]}])
    if wo["category_name"]:
        incident["incidentTypeInternalText"] = wo["category_name"]
    doc: dict[str, Any] = {
        "$id": iid, "lastUpdateTimeStamp": now, "updatedByAgencyReference": {"$ref": issuer},
        "eidoVersion": "1.0", "issuingElementIdentification": f"sidecar.{EIDO_DOMAIN}",
        "incidentComponent": incident,
        "agencyComponent": [
            {"$id": issuer, "lastUpdateTimeStamp": now,
             "updatedByAgencyReference": {"$ref": issuer},
             "agencyRoleDescriptionRegistryText": ["CallReceiving"], "agencyType": ["psap"],
             "incidentOwningAgencyIndicator": not owner},
            {"$id": receiver, "lastUpdateTimeStamp": now,
             "updatedByAgencyReference": {"$ref": issuer},
             "agencyRoleDescriptionRegistryText": ["Dispatch"], "agencyType": ["police"],
             "incidentOwningAgencyIndicator": owner}],
        "personComponent": [person], "notesComponent": [note],
    }
    if wo["channel"] == "phone":
        doc["callComponent"] = [component(
            "callid", callStateRegistryText="callAnswered" if wo["result"].startswith(
                "accepted") else "callEnded",
            standardPrimaryCallType="emergency" if wo["emergency"] else "non-emergency",
            direction="incoming", callStartTimestamp=wo["requested_at"],
            priorityIdentifier="highest" if wo["emergency"] else "normal",
            personReference=[{"$ref": person["$id"]}])]
    location = wo["location"]
    if location["address"] or (location["lat"] is not None and location["lon"] is not None):
        place = component("locationid", locationTypeDescriptionRegistryText="Caller")
        if location["address"]:
            place["locationDescriptionText"] = location["address"]
        if location["lat"] is not None and location["lon"] is not None:
            place["locationByValue"] = _pidf_lo(location["lat"], location["lon"], now)
        doc["locationComponent"] = [place]
        incident["locationReference"] = [{"$ref": place["$id"]}]
    return doc


def eido_note(doc: dict, note_id: str, text: str, now: str | None = None) -> dict:
    """``doc`` with one more note (its ``$id`` ``note_id``) linked from the incident: an update
    is a whole new EIDO for the same incident."""
    now = now or _now_iso()
    issuer = doc["updatedByAgencyReference"]
    note = {"$id": note_id, "lastUpdateTimeStamp": now, "updatedByAgencyReference": issuer,
            "notesActionComments": _html([text])}
    incident = {**doc["incidentComponent"], "lastUpdateTimeStamp": now}
    incident["notesReference"] = [*incident.get("notesReference", []), {"$ref": note_id}]
    return {**doc, "lastUpdateTimeStamp": now, "incidentComponent": incident,
            "notesComponent": [*doc.get("notesComponent", []), note]}


def eido_note_texts(doc: dict) -> list[str]:
    return [n.get("notesActionComments", "") for n in doc.get("notesComponent") or []]


def _html(lines: list[str]) -> str:
    """Note text as the HTML5 STA-021 asks for: escaped, one paragraph per line."""
    return "".join(f"<p>{html.escape(line)}</p>" for line in lines if line)


def _nc_person(caller: dict) -> dict:
    """The caller as a NIEM ``nc:PersonType``: name and telephone number, where known."""
    person: dict[str, Any] = {}
    if caller.get("name"):
        person["PersonName"] = {"PersonFullName": caller["name"]}
    if caller.get("number"):
        person["ContactInformation"] = {"ContactTelephoneNumber": {
            "FullTelephoneNumber": {"TelephoneNumberFullID": caller["number"]}}}
    return person


def _pidf_lo(lat: float, lon: float, now: str) -> str:
    """A PIDF-LO document (RFC 4119, GML point) for a WGS 84 position."""
    return ('<presence xmlns="urn:ietf:params:xml:ns:pidf" '
            'xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" '
            'xmlns:gml="http://www.opengis.net/gml" entity="pres:caller@hotline-link.invalid">'
            '<tuple id="caller"><status><gp:geopriv><gp:location-info><gml:Point '
            'srsName="urn:ogc:def:crs:EPSG::4326">'
            f'<gml:pos>{lat} {lon}</gml:pos></gml:Point></gp:location-info>'
            '<gp:usage-rules/></gp:geopriv></status>'
            f'<timestamp>{html.escape(now)}</timestamp></tuple></presence>')


# --- helpers ----------------------------------------------------------------------------------
def callback_work_order(record: dict) -> dict:
    """The work order of a call-back request (a call record with disposition ``callback``): one
    ticket, on the hotline's own platform, asking an agent to call the caller back. Its id is
    the call's, so a record read twice makes one ticket."""
    hotline, number = record["hotline"], record.get("caller_number") or ""
    waited = round((record.get("wait_ms") or 0) / 1000)
    fields = {
        "transfer_id": record["call_id"], "channel": "phone", "origin": hotline,
        "target": None, "result": CALLBACK_RESULT, "category": None, "category_name": None,
        "emergency": False, "caller": {"number": number, "name": None},
        "description": (f"来电人在话务高峰时请求回电（已等待 {waited} 秒），请尽快回拨 {number}。 "
                        f"Caller asked to be called back during a surge (waited {waited} s): "
                        f"please call {number} back."),
        "location": {"address": None, "lat": None, "lon": None},
        "agents": {"initiating": None, "answering": None},
        "requested_at": record.get("ended_at") or record["arrived_at"], "ended_at": None,
    }
    wo = _work_order(fields, hotline, "owner", None)
    wo["work_order_id"] = f"callback:{record['call_id']}"
    return wo


def _pair(fields: dict, owner: str, platforms: Platforms) -> list[dict]:
    other = platforms.other(owner)
    return [_work_order(fields, owner, "owner", other),
            _work_order(fields, other, "linked", owner)]


def _work_order(fields: dict, platform: str, role: str, linked: str | None) -> dict:
    return {
        "schema": 1,
        "work_order_id": f"{fields['transfer_id']}:{platform}",
        "transfer_id": fields["transfer_id"],
        "platform": platform,
        "role": role,
        "channel": fields["channel"],
        "origin": fields["origin"],
        "target": fields["target"],
        "result": fields["result"],
        "category": fields["category"],
        "category_name": fields["category_name"],
        "emergency": fields["emergency"],
        "caller": dict(fields["caller"]),
        "description": fields["description"],
        "location": dict(fields["location"]),
        "agents": dict(fields["agents"]),
        "linked": {"platform": linked, "ticket_id": None},
        "requested_at": fields["requested_at"],
        "ended_at": fields["ended_at"],
    }


def _category_name(catalog: Catalog, code: str | None) -> str | None:
    category = catalog.by_code.get(code) if code else None
    return category.name if category else None


def _record_description(record: dict, catalog: Catalog,
                        previous_tickets: Mapping[str, str] | None = None) -> str:
    mode = record.get("mode")
    origin, target = record["origin"], record.get("target")
    what = MODE_TEXT.get(mode, f"Mode {mode}")
    where = f"from {origin} to {target}" if target else f"at {origin}"
    parts = [f"{what} {where}: {record['result']}."]
    if record.get("emergency"):
        parts.append("Emergency.")
    code = record.get("category")
    if code:
        category = catalog.by_code.get(code)
        parts.append(f"Matter: {category.name} ({category.gloss})." if category
                     else f"Matter: {code}.")
    summary = (record.get("matter") or {}).get("summary")
    if summary:
        parts.append(f"Summary: {summary}")
    if record.get("initiating_agent"):
        parts.append(f"Initiating agent: {record['initiating_agent']}.")
    chain = record.get("chain") or {}
    if chain.get("previous"):
        earlier = ", ".join(f"{p} {t}" for p, t in (previous_tickets or {}).items())
        parts.append(f"转接链 Chain {chain['id']}, hop {chain['hop']}: continues transfer "
                     f"{chain['previous']}" + (f" (tickets {earlier})." if earlier else "."))
    return " ".join(parts)


def _redact(text: str, number: str) -> str:
    # The number travels in its own field, which both ticket systems protect; a description is
    # shown far more widely (lists, dashboards, the other platform).
    return text.replace(number, NUMBER_REDACTED) if number else text


def _required_text(request: dict, key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"online request: {key} is missing")
    return value


def _optional_text(request: dict, key: str) -> str | None:
    value = request.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"online request: {key} must be a string")
    return value


def _coordinate(request: dict, key: str, limit: float) -> float | None:
    value = request.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not -limit <= value <= limit:
        raise ValueError(f"online request: {key} must be a number between -{limit} and {limit}")
    return float(value)


def _split_name(name: str) -> tuple[str, str | None]:
    """First and last name. A name without spaces (a Chinese name, say) is not split: guessing
    where a surname ends (欧阳, 司马) gets it wrong, so it goes whole into first_name."""
    given, _, family = name.rpartition(" ")
    return (given.strip(), family) if given.strip() else (name, None)


def _now_iso() -> str:
    # The outcome records' timestamp format: UTC, milliseconds.
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
