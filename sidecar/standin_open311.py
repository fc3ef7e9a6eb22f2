"""The 12345 work-order system's stand-in: Open311 GeoReport v2, as the specification says
(wiki.open311.org/GeoReport_v2), JSON format, under ``/open311/v2``:

``GET services.json``, ``GET services/{service_code}.json``
    The services (the city's matter catalog, plus ``unclassified``), each with the attributes a
    request may carry (``variable``: the values are free text).
``POST requests.json``
    ``application/x-www-form-urlencoded``: ``api_key`` (required when the stand-in has one),
    ``service_code`` (required, a known service), a location (``lat`` and ``long``, or
    ``address_string``, or ``address_id``), ``description`` (at most 4,000 characters),
    ``first_name``, ``last_name``, ``phone``, ``email``, ``device_id``, ``account_id``,
    ``media_url``, ``attribute[<code>]`` (a service attribute's value; repeated for several).
    200 ``[{"service_request_id", "service_notice", "account_id"}]``.
``GET requests/{service_request_id}.json``
    200 ``[{service_request_id, status, status_notes, service_name, service_code, description,
    agency_responsible, service_notice, requested_datetime, updated_datetime,
    expected_datetime, address, address_id, zipcode, lat, long, media_url}]``.
``GET requests.json``
    ``service_request_id`` (comma-separated; then the others are ignored), ``service_code``,
    ``start_date``, ``end_date`` (W3C date-times; by default the last 90 days), ``status``
    (``open``, ``closed``); at most 1,000, newest first.

Errors are GeoReport's: a JSON array ``[{"code": <HTTP status>, "description": "..."}]``;
403 for a missing or wrong ``api_key``. Statuses are ``open`` and ``closed``. Nothing outside the
specification: no idempotency key and no way to add a note; the platform's own staff close a
request (here the control ``POST /_standin/requests/{id}/close`` with ``{"status_notes"}``).
"""

from __future__ import annotations

import hmac
import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from hotline_link.settings import load_catalog

PREFIX = "/open311/v2"
DESCRIPTION_MAX = 4000
WINDOW_DAYS = 90
LIMIT = 1000
# The attributes the 12345 centre's services define for requests handed over by another
# platform: the handing platform's references, read back by its staff.
ATTRIBUTES = (
    ("transfer_id", "转办编号 Transfer id"), ("work_order_id", "工单引用 Work order reference"),
    ("role", "主办/协办 Owner or linked"), ("channel", "渠道 Channel"),
    ("result", "转办结果 Transfer result"), ("emergency", "紧急 Emergency"),
    ("origin", "来源平台 Origin"), ("target", "目标平台 Target"),
    ("linked_platform", "关联平台 Linked platform"),
    ("linked_ticket_id", "关联单号 Linked ticket"),
    ("initiating_agent", "发起坐席 Initiating agent"),
    ("answering_agent", "接听坐席 Answering agent"),
)
FIELDS = ("service_code", "lat", "long", "address_string", "address_id", "email", "device_id",
          "account_id", "first_name", "last_name", "phone", "description", "media_url")


def error(status: int, description: str) -> web.HTTPException:
    """A GeoReport error: a list of ``{code, description}``, the HTTP status as the code."""
    cls = {400: web.HTTPBadRequest, 403: web.HTTPForbidden, 404: web.HTTPNotFound}[status]
    return cls(text=json.dumps([{"code": status, "description": description}],
                               ensure_ascii=False), content_type="application/json")


def _w3c(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _date(value: str, name: str) -> float:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise error(400, f"{name} must be a W3C date-time, e.g. 2026-12-04T10:00:00+08:00") \
            from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


class GeoReport:
    """The service requests of one stand-in, in memory; its handlers are the methods."""

    def __init__(self, api_key: str | None):
        self.api_key = api_key
        catalog = load_catalog()
        self.services = {c.code: c.name for c in catalog.categories}
        self.services["unclassified"] = "待分类 Unclassified"
        self.requests: dict[str, dict[str, Any]] = {}
        self.duplicates = 0            # requests naming a work order reference seen before
        self._refs: set[str] = set()

    def routes(self, app: web.Application) -> None:
        app.router.add_get(PREFIX + "/services.json", self.list_services)
        app.router.add_get(PREFIX + "/services/{code}.json", self.definition)
        app.router.add_post(PREFIX + "/requests.json", self.create)
        app.router.add_get(PREFIX + "/requests.json", self.query)
        app.router.add_get(PREFIX + "/requests/{id}.json", self.one)

    async def list_services(self, request: web.Request) -> web.Response:
        return web.json_response([
            {"service_code": code, "service_name": name, "description": name,
             "metadata": True, "type": "realtime", "keywords": "", "group": "12345"}
            for code, name in self.services.items()])

    async def definition(self, request: web.Request) -> web.Response:
        code = request.match_info["code"]
        if code not in self.services:
            raise error(404, f"no service {code}")
        return web.json_response({"service_code": code, "attributes": [
            {"variable": True, "code": c, "datatype": "string", "required": False,
             "datatype_description": "", "order": i, "description": d}
            for i, (c, d) in enumerate(ATTRIBUTES, 1)]})

    async def create(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-www-form-urlencoded":
            raise error(400, "a service request is posted as application/x-www-form-urlencoded")
        form = await request.post()
        if self.api_key is not None and not hmac.compare_digest(
                str(form.get("api_key", "")).encode(), self.api_key.encode()):
            raise error(403, "api_key is missing or not valid")
        code = form.get("service_code")
        if not code:
            raise error(400, "service_code is required")
        if code not in self.services:
            raise error(404, f"service_code {code} is not a service of this jurisdiction")
        body: dict[str, Any] = {k: str(form[k]) for k in FIELDS if form.get(k)}
        if ("lat" in body) != ("long" in body):
            raise error(400, "lat and long go together")
        for k in ("lat", "long"):
            if k in body:
                try:
                    body[k] = float(body[k])
                except ValueError:
                    raise error(400, f"{k} must be a number") from None
        if not ("lat" in body or body.get("address_string") or body.get("address_id")):
            raise error(400, "a location is required: lat and long, address_string or "
                             "address_id")
        if len(body.get("description", "")) > DESCRIPTION_MAX:
            raise error(400, f"description is longer than {DESCRIPTION_MAX} characters")
        known = dict(ATTRIBUTES)
        attributes = {}
        for key, value in form.items():
            if key.startswith("attribute[") and key.endswith("]"):
                name = key[len("attribute["):-1]
                if name not in known:
                    raise error(400, f"{key}: the service defines no attribute {name}")
                attributes[name] = str(value)
        ref = attributes.get("work_order_id")
        if ref in self._refs:
            self.duplicates += 1
        if ref:
            self._refs.add(ref)
        sid = f"WO-{len(self.requests) + 1:06d}"
        now = time.time()
        self.requests[sid] = {"id": sid, "body": body, "attribute": attributes,
                              "status": "open", "status_notes": "", "created_at": now,
                              "updated_at": now}
        return web.json_response([{"service_request_id": sid,
                                   "service_notice": "工单已登记，中心将跟进 Registered",
                                   "account_id": None}])

    def _public(self, r: dict) -> dict:
        b = r["body"]
        return {"service_request_id": r["id"], "status": r["status"],
                "status_notes": r["status_notes"] or None,
                "service_name": self.services.get(b["service_code"]),
                "service_code": b["service_code"], "description": b.get("description"),
                "agency_responsible": "12345", "service_notice": None,
                "requested_datetime": _w3c(r["created_at"]),
                "updated_datetime": _w3c(r["updated_at"]), "expected_datetime": None,
                "address": b.get("address_string"), "address_id": b.get("address_id"),
                "zipcode": None, "lat": b.get("lat"), "long": b.get("long"),
                "media_url": b.get("media_url")}

    async def one(self, request: web.Request) -> web.Response:
        r = self.requests.get(request.match_info["id"])
        if r is None:
            raise error(404, f"no service request {request.match_info['id']}")
        return web.json_response([self._public(r)])

    async def query(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("service_request_id"):
            ids = [i.strip() for i in q["service_request_id"].split(",") if i.strip()]
            return web.json_response([self._public(self.requests[i]) for i in ids
                                      if i in self.requests])
        end = _date(q["end_date"], "end_date") if q.get("end_date") else time.time()
        start = (_date(q["start_date"], "start_date") if q.get("start_date")
                 else end - timedelta(days=WINDOW_DAYS).total_seconds())
        status = q.get("status")
        if status is not None and not set(status.split(",")) <= {"open", "closed"}:
            raise error(400, "status must be open or closed")
        codes = set(q["service_code"].split(",")) if q.get("service_code") else None
        found = [r for r in reversed(self.requests.values())
                 if start <= r["created_at"] <= end
                 and (codes is None or r["body"]["service_code"] in codes)
                 and (status is None or r["status"] in status.split(","))]
        return web.json_response([self._public(r) for r in found[:LIMIT]])

    async def close(self, request: web.Request) -> web.Response:
        """The back office closes a request (not part of GeoReport: a stand-in control)."""
        r = self.requests.get(request.match_info["id"])
        if r is None:
            raise error(404, f"no service request {request.match_info['id']}")
        body = await request.json() if request.can_read_body else {}
        r["status"], r["status_notes"] = "closed", str(body.get("status_notes") or "")
        r["updated_at"] = time.time()
        return web.json_response(self._public(r))
