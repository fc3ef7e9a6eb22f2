"""The platforms' ticket-system stand-ins: the documented API, idempotency, failure injection,
auth, and the signed-webhook receiver. Each test runs its own server on 127.0.0.1, port 0."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator

from sidecar.signing import SIGNATURE_HEADER, sign
from sidecar.standins import StandIn, make_app

MakeClient = Callable[..., Awaitable[TestClient]]

WEBHOOK_SECRET = b"subscriber-secret"

GEOREPORT_FORM = {
    "service_code": "public_facilities",
    "description": "路灯不亮 (street light out) since Monday",
    "phone": "13800138000",
    "first_name": "明",
    "last_name": "李",
    "lat": "31.2304",
    "long": "121.4737",
    "address_string": "人民路 12 号",
    "attribute[transfer_id]": "t-42",
    "attribute[work_order_id]": "t-42:12345",
}

@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[TestClient] = []

    async def make(kind: str, **kw) -> TestClient:
        client = TestClient(TestServer(make_app(kind, **kw), host="127.0.0.1", port=0))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def standin(client: TestClient) -> StandIn:
    return client.server.app["standin"]


async def post(client: TestClient, path: str, body: object, **headers: str
               ) -> tuple[int, object]:
    async with client.post(path, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def get(client: TestClient, path: str, **headers: str) -> tuple[int, object]:
    async with client.get(path, headers=headers) as resp:
        return resp.status, await resp.json()


# --- 12345: Open311 GeoReport v2 ----------------------------------------------------------------

SCHEMAS = Path(__file__).parent / "schemas" / "georeport-v2"
EIDO_SCHEMA = Draft202012Validator(
    json.loads((Path(__file__).parent / "schemas" / "eido" / "eido-1.0.json").read_text()),
    format_checker=Draft202012Validator.FORMAT_CHECKER)


def georeport(name: str, value: object) -> None:
    """``value`` follows the GeoReport v2 schema ``name`` (tests/schemas/georeport-v2)."""
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(value)


async def submit(client: TestClient, form: dict) -> tuple[int, object]:
    async with client.post("/open311/v2/requests.json", data=form) as resp:
        return resp.status, await resp.json()


async def test_12345_takes_a_georeport_service_request_and_shows_it(make_client):
    client = await make_client("open311", api_token="the-key")
    form = {**GEOREPORT_FORM, "api_key": "the-key"}
    georeport("post-service-request", form)
    status, body = await submit(client, form)
    assert status == 200
    georeport("post-service-request-response", body)
    assert body[0]["service_request_id"] == "WO-000001" and body[0]["service_notice"]

    status, shown = await get(client, "/open311/v2/requests/WO-000001.json")
    assert status == 200
    georeport("service-requests", shown)
    [one] = shown
    assert (one["status"], one["service_code"], one["description"], one["address"],
            one["lat"], one["long"]) == ("open", "public_facilities", GEOREPORT_FORM["description"],
                                         "人民路 12 号", 31.2304, 121.4737)
    # The attributes are the platform's to keep; GeoReport's GET does not return them.
    _, [ticket] = await get(client, "/_standin/tickets")
    assert ticket["body"]["attribute"] == {"transfer_id": "t-42", "work_order_id": "t-42:12345"}
    _, created = await get(client, "/_standin/created")
    assert created == [["t-42:12345", ticket["created_at"]]]


async def test_12345_lists_requests_by_id_time_code_and_status(make_client):
    client = await make_client("open311")
    for code in ("public_facilities", "city_environment", "public_facilities"):
        assert (await submit(client, {**GEOREPORT_FORM, "service_code": code}))[0] == 200
    async with client.post("/_standin/requests/WO-000002/close",
                           json={"status_notes": "已处理"}) as resp:
        assert resp.status == 200
    _, listed = await get(client,
                          "/open311/v2/requests.json?service_request_id=WO-000003,WO-000002")
    georeport("service-requests", listed)
    assert [(r["service_request_id"], r["status"], r["status_notes"]) for r in listed] == [
        ("WO-000003", "open", None), ("WO-000002", "closed", "已处理")]
    _, listed = await get(client, "/open311/v2/requests.json?service_code=public_facilities")
    assert [r["service_request_id"] for r in listed] == ["WO-000003", "WO-000001"]
    _, listed = await get(client, "/open311/v2/requests.json?status=closed")
    assert [r["service_request_id"] for r in listed] == ["WO-000002"]
    future = "2099-01-01T00:00:00Z"
    assert await get(client, f"/open311/v2/requests.json?start_date={future}") == (200, [])
    status, errors = await get(client, "/open311/v2/requests.json?start_date=monday")
    assert status == 400 and "start_date" in errors[0]["description"]
    georeport("errors", errors)


async def test_12345_lists_its_services_and_their_attributes(make_client):
    client = await make_client("open311")
    _, services = await get(client, "/open311/v2/services.json")
    georeport("services", services)
    assert {"public_facilities", "unclassified"} <= {s["service_code"] for s in services}
    _, definition = await get(client, "/open311/v2/services/public_facilities.json")
    assert {"transfer_id", "work_order_id"} <= {a["code"] for a in definition["attributes"]}
    assert (await get(client, "/open311/v2/services/nope.json"))[0] == 404


@pytest.mark.parametrize(("change", "status", "error"), [
    ({"service_code": None}, 400, "service_code is required"),
    ({"service_code": "nope"}, 404, "service_code nope"),
    ({"lat": None, "long": None, "address_string": None}, 400, "a location is required"),
    ({"long": None, "address_string": None}, 400, "lat and long go together"),
    ({"lat": "north"}, 400, "lat must be a number"),
    ({"description": "长" * 4001}, 400, "longer than 4000"),
    ({"attribute[colour]": "red"}, 400, "no attribute colour"),
    ({"api_key": None}, 403, "api_key"),
    ({"api_key": "wrong"}, 403, "api_key"),
])
async def test_12345_refuses_what_georeport_does_not_allow(make_client, change, status, error):
    client = await make_client("open311", api_token="the-key")
    form = {k: v for k, v in {**GEOREPORT_FORM, "api_key": "the-key", **change}.items()
            if v is not None}
    got, body = await submit(client, form)
    assert got == status and error in body[0]["description"], body
    georeport("errors", body)
    assert standin(client).georeport.requests == {}


async def test_12345_takes_only_a_form(make_client):
    client = await make_client("open311")
    async with client.post("/open311/v2/requests.json", json=dict(GEOREPORT_FORM)) as resp:
        assert resp.status == 400
        georeport("errors", await resp.json())


async def test_12345_counts_a_work_order_sent_twice_as_a_duplicate(make_client):
    """GeoReport has no idempotency key: the stand-in creates what it is sent, and counts a
    second request carrying one work order reference, so a test sees a client that resent."""
    client = await make_client("open311")
    assert [(await submit(client, GEOREPORT_FORM))[0] for _ in range(2)] == [200, 200]
    assert standin(client).stats()["duplicates"] == 1
    assert standin(client).stats()["tickets"] == 2


async def test_12345_unknown_request_is_a_georeport_404(make_client):
    client = await make_client("open311")
    status, body = await get(client, "/open311/v2/requests/WO-000009.json")
    assert status == 404
    georeport("errors", body)


# --- 110: NENA EIDO ---------------------------------------------------------------------------

def eido_doc(**change) -> dict:
    """A small EIDO 1.0 document with the parts STA-021 requires, an incident and a note."""
    now = "2026-12-04T10:00:00.000+08:00"
    agency = "12345.agency.example.gov.cn"
    pro = {"lastUpdateTimeStamp": now, "updatedByAgencyReference": {"$ref": agency}}
    doc = {"$id": INCIDENT, **pro, "eidoVersion": "1.0",
           "issuingElementIdentification": "sidecar.example.gov.cn",
           "agencyComponent": [{"$id": agency, **pro,
                                "agencyRoleDescriptionRegistryText": ["CallReceiving"],
                                "agencyType": ["psap"]}],
           "incidentComponent": {"$id": "incident-1", **pro,
                                 "incidentTypeCommonRegistryText": "public_order",
                                 "internalIncidentId": "t-42:110",
                                 "notesReference": [{"$ref": "note-1"}]},
           "notesComponent": [{"$id": "note-1", **pro,
                               "notesActionComments": "<p>楼下装修噪音</p>"}]}
    return {**doc, **change}


INCIDENT = "urn:emergency:uid:incidentid:a56e556d871:example.gov.cn"
EIDO_PATH = f"/EIDO/{INCIDENT}"


async def put(client: TestClient, doc: object, path: str = EIDO_PATH,
              content_type: str = "application/emergency.eido+json", **headers: str):
    async with client.put(path, data=json.dumps(doc), headers={
            "Content-Type": content_type, **headers}) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_110_takes_an_eido_and_keeps_the_latest_of_each_incident(make_client):
    client = await make_client("eido")
    doc = eido_doc()
    EIDO_SCHEMA.validate(doc)
    assert await put(client, doc) == (201, doc)
    assert await put(client, doc) == (200, doc)             # the same again: nothing changes
    later = eido_doc(lastUpdateTimeStamp="2026-12-04T10:05:00.000+08:00")
    assert (await put(client, later))[0] == 200             # an update: the whole new EIDO
    async with client.get(EIDO_PATH) as resp:
        assert resp.status == 200 and resp.content_type == "application/emergency.eido+json"
        assert await resp.json(content_type=None) == later
    stats = standin(client).stats()
    assert (stats["tickets"], stats["duplicates"], stats["updates"]) == (1, 1, 1)
    _, created = await get(client, "/_standin/created")
    assert created == [["t-42:110", standin(client).desk.incidents[INCIDENT]["created_at"]]]


@pytest.mark.parametrize(("change", "problem"), [
    ({"eidoVersion": None}, "eidoVersion is required"),
    ({"eidoVersion": "0.9"}, "eidoVersion must be 1.0"),
    ({"agencyComponent": []}, "agencyComponent is required"),
    ({"lastUpdateTimeStamp": "yesterday"}, "lastUpdateTimeStamp must be an RFC 3339"),
    ({"incidentComponent": {"$id": "incident-1"}}, "incidentComponent.lastUpdateTimeStamp"),
    ({"notesComponent": {"$id": "n"}}, "notesComponent must be a list of objects"),
    ({"notesComponent": []}, "names 'note-1', which no component"),
    ({"$id": "urn:emergency:uid:incidentid:other:example.gov.cn"}, "is not the incident"),
])
async def test_110_refuses_an_eido_without_its_required_parts(make_client, change, problem):
    client = await make_client("eido")
    doc = {k: v for k, v in eido_doc(**change).items() if v is not None}
    status, body = await put(client, doc)
    assert status == 400 and problem in body["detail"], body
    assert body["status"] == 400 and body["type"] == "about:blank"
    assert standin(client).desk.incidents == {}


async def test_110_takes_only_an_eido_media_type_and_answers_404_for_an_unknown_incident(
        make_client):
    client = await make_client("eido")
    assert (await put(client, eido_doc(), content_type="text/plain"))[0] == 415
    async with client.get(EIDO_PATH) as resp:
        assert resp.status == 404 and resp.content_type == "application/problem+json"


async def test_110_dispatchers_change_the_status_and_add_a_note(make_client):
    client = await make_client("eido")
    await put(client, eido_doc())
    status, doc = await post(client, f"/_standin/incidents/{INCIDENT}/status",
                             {"status": "Closed", "note": "警员已处置"})
    assert status == 200
    EIDO_SCHEMA.validate(doc)
    assert doc["incidentComponent"]["incidentStatusInternalText"] == ["Closed"]
    assert doc["notesComponent"][-1]["notesActionComments"] == "<p>警员已处置</p>"
    assert {"$ref": doc["notesComponent"][-1]["$id"]} in doc["incidentComponent"]["notesReference"]


async def test_concurrent_deliveries_of_one_incident_make_one(make_client):
    client = await make_client("eido")
    answers = await asyncio.gather(*(put(client, eido_doc()) for _ in range(8)))
    assert sorted(status for status, _ in answers) == [200] * 7 + [201]
    assert standin(client).stats()["tickets"] == 1


# --- failure injection ------------------------------------------------------------------------

async def test_error_mode_fails_count_requests_then_recovers(make_client):
    client = await make_client("open311")
    assert await post(client, "/_standin/fail", {"mode": "error", "count": 2}) == (
        200, {"mode": "error", "count": 2})
    for _ in range(2):
        status, body = await submit(client, GEOREPORT_FORM)
        assert (status, body) == (503, {"error": "injected failure (error)"})
    assert standin(client).georeport.requests == {}
    assert (await submit(client, GEOREPORT_FORM))[0] == 200
    _, stats = await get(client, "/_standin/stats")
    assert (stats["failed"], stats["tickets"], stats["duplicates"], stats["requests"]) == (
        2, 1, 0, 3)


async def test_error_mode_without_count_lasts_until_none(make_client):
    client = await make_client("eido")
    await put(client, eido_doc())
    await post(client, "/_standin/fail", {"mode": "error", "count": None})
    for _ in range(5):
        assert (await get(client, EIDO_PATH))[0] == 503
        assert (await put(client, eido_doc(eidoVersion="1.0")))[0] == 503
    await post(client, "/_standin/fail", {"mode": "none"})
    assert (await get(client, EIDO_PATH))[0] == 200
    assert standin(client).stats()["failed"] == 10


async def test_timeout_mode_holds_the_answer_until_the_client_gives_up(make_client):
    client = await make_client("open311")
    await post(client, "/_standin/fail", {"mode": "timeout", "count": 1})
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await client.post("/open311/v2/requests.json", data=GEOREPORT_FORM,
                          timeout=aiohttp.ClientTimeout(total=0.3))
    assert time.monotonic() - started < 5
    assert standin(client).stats()["failed"] == 1
    assert standin(client).georeport.requests == {}
    # The one failure is used up; the platform answers again.
    assert (await submit(client, GEOREPORT_FORM))[0] == 200


async def test_stopping_the_server_cuts_a_stalled_answer_short():
    # A plain AppRunner (as a demo or another test would run it): unlike TestServer it does not
    # cancel handlers, so without the shutdown hook cleanup would wait out the 30 s.
    runner = web.AppRunner(make_app("eido"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    standin = runner.app["standin"]
    standin.fail_mode, standin.fail_left = "timeout", 1
    async with aiohttp.ClientSession() as session:
        stalled = asyncio.create_task(session.put(
            f"http://{host}:{port}{EIDO_PATH}", data=json.dumps(eido_doc()),
            headers={"Content-Type": "application/emergency.eido+json"}))
        while standin.failed == 0:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await runner.cleanup()
        assert time.monotonic() - started < 5
        async with await stalled as resp:
            assert resp.status == 503
    assert standin.desk.incidents == {}


@pytest.mark.parametrize("body", [
    {"mode": "explode"}, {"mode": "error", "count": 0}, {"mode": "error", "count": "2"},
    {"mode": "error", "count": True},
])
async def test_fail_control_rejects_bad_settings(make_client, body):
    client = await make_client("open311")
    status, answer = await post(client, "/_standin/fail", body)
    assert status == 400 and answer["error"]
    assert standin(client).fail_mode == "none"


# --- auth -------------------------------------------------------------------------------------

async def test_api_token_is_required_on_the_ticket_api_only(make_client):
    client = await make_client("eido", api_token="s3cret-token")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
        status, body = await put(client, eido_doc(), **headers)
        assert status == 401 and body["error"]
    assert (await get(client, EIDO_PATH))[0] == 401
    assert standin(client).desk.incidents == {}
    assert (await put(client, eido_doc(), Authorization="Bearer s3cret-token"))[0] == 201
    assert (await get(client, EIDO_PATH, Authorization="Bearer s3cret-token"))[0] == 200
    assert (await get(client, "/_standin/stats"))[0] == 200          # the controls need none


# --- webhook receiver -------------------------------------------------------------------------

async def deliver(client: TestClient, raw: bytes, header: str | None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers[SIGNATURE_HEADER] = header
    async with client.post("/_standin/webhook", data=raw, headers=headers) as resp:
        return resp.status, await resp.read()


async def test_webhook_receiver_stores_a_validly_signed_alert(make_client):
    client = await make_client("eido", webhook_secret=WEBHOOK_SECRET)
    event = {"type": "emergency", "transfer_id": "t-9", "note": "燃气泄漏"}
    raw = json.dumps(event, ensure_ascii=False).encode()
    before = time.time()
    assert await deliver(client, raw, sign(WEBHOOK_SECRET, raw)) == (204, b"")

    _, stored = await get(client, "/_standin/webhooks")
    assert [w["event"] for w in stored] == [event]
    assert before <= stored[0]["received_at"] <= time.time()
    assert standin(client).stats()["webhooks"] == 1


async def test_webhook_receiver_rejects_forged_stale_and_unsigned_alerts(make_client):
    client = await make_client("open311", webhook_secret=WEBHOOK_SECRET)
    raw = b'{"type":"emergency","transfer_id":"t-9"}'
    cases = [
        (sign(b"attacker-secret", raw), "does not match"),
        (sign(WEBHOOK_SECRET, raw.replace(b"t-9", b"t-8")), "does not match"),
        (sign(WEBHOOK_SECRET, raw, now=time.time() - 600), "stale"),
        (sign(WEBHOOK_SECRET, raw, now=time.time() + 600), "future"),
        (None, "missing"),
        ("v1=abc", "malformed"),
    ]
    for header, reason in cases:
        status, answer = await deliver(client, raw, header)
        assert status == 401
        assert reason in json.loads(answer)["error"]
    stats = standin(client).stats()
    assert (stats["webhooks"], stats["webhooks_rejected"]) == (0, len(cases))
    assert (await get(client, "/_standin/webhooks"))[1] == []


async def test_webhook_receiver_without_a_secret_accepts_nothing(make_client):
    client = await make_client("open311")
    raw = b'{"type":"ping"}'
    status, answer = await deliver(client, raw, sign(WEBHOOK_SECRET, raw))
    assert status == 401 and "no webhook secret" in json.loads(answer)["error"]


def test_a_stand_in_is_of_a_kind_not_a_platform_id():
    with pytest.raises(ValueError, match="kind must be one of open311, eido, http, got '12345'"):
        StandIn("12345")


# --- the provincial system (kind http): Zammad's REST API v1 -----------------------------------

ZAMMAD_TICKET = {"title": "路灯不亮 [hotline-link t-7:12345]", "group": "Users",
                 "customer_id": "guess:hotline-link@hotline-link.invalid",
                 "article": {"subject": "路灯不亮", "body": "人民路 12 号路灯不亮", "type": "phone"}}


async def zammad(client: TestClient, method: str, path: str, body: object = None,
                 token: str | None = "zt") -> tuple[int, object]:
    headers = {"Authorization": f"Token token={token}"} if token else {}
    async with client.request(method, path, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_zammad_makes_a_ticket_finds_it_by_title_and_takes_notes(make_client):
    client = await make_client("http", api_token="zt")
    status, made = await zammad(client, "POST", "/api/v1/tickets?expand=true", ZAMMAD_TICKET)
    assert status == 201 and made["state"] == "new" and made["group"] == "Users"
    assert made["customer"] == "hotline-link@hotline-link.invalid" and made["article_count"] == 1
    status, found = await zammad(client, "GET", "/api/v1/tickets/search?query="
                                 + '%20title:"[hotline-link%20t-7:12345]"')
    assert status == 200 and found["tickets"] == [made["id"]] and found["tickets_count"] == 1
    status, none = await zammad(client, "GET", "/api/v1/tickets/search?query="
                                + 'title:"[hotline-link%20t-8:12345]"')
    assert none["tickets"] == []
    status, _ = await zammad(client, "POST", "/api/v1/ticket_articles",
                             {"ticket_id": made["id"], "body": "110 已出警", "type": "note"})
    assert status == 201
    status, articles = await zammad(client, "GET", f"/api/v1/ticket_articles/by_ticket/{made['id']}")
    assert [a["body"] for a in articles] == ["人民路 12 号路灯不亮", "110 已出警"]
    status, closed = await zammad(client, "PUT", f"/api/v1/tickets/{made['id']}",
                                  {"state": "closed"})
    assert status == 200 and closed["state_id"] == 4 and "state" not in closed
    status, shown = await zammad(client, "GET", f"/api/v1/tickets/{made['id']}?expand=true")
    assert shown["state"] == "closed"
    status, listed = await zammad(client, "GET", "/api/v1/tickets/search?expand=true&query="
                                  + "state.name:closed%20AND%20路灯")
    assert [t["id"] for t in listed] == [made["id"]]


@pytest.mark.parametrize("change, error", [
    ({"title": ""}, "Need at least title"),
    ({"group": "Sales"}, "No lookup value found for 'group': \"Sales\""),
    ({"customer_id": None}, "Need at least customer or customer_id"),
    ({"customer_id": None, "customer": "nobody@x"}, "No lookup value found for 'customer'"),
    ({"article": {"subject": "no body"}}, "Need at least article"),
    ({"state": "solved"}, "No lookup value found for 'state'"),
])
async def test_zammad_refuses_what_its_api_does_not_allow(make_client, change, error):
    client = await make_client("http", api_token="zt")
    status, answer = await zammad(client, "POST", "/api/v1/tickets", {**ZAMMAD_TICKET, **change})
    assert status == 422 and error in answer["error"]
    assert standin(client).stats()["tickets"] == 0


async def test_zammad_needs_its_token_and_answers_404_for_an_unknown_ticket(make_client):
    client = await make_client("http", api_token="zt")
    assert (await zammad(client, "POST", "/api/v1/tickets", ZAMMAD_TICKET, token=None))[0] == 401
    assert (await zammad(client, "POST", "/api/v1/tickets", ZAMMAD_TICKET, token="x"))[0] == 401
    async with client.get("/api/v1/tickets/1", headers={"Authorization": "Bearer zt"}) as resp:
        assert resp.status == 404 and "Couldn't find Ticket" in (await resp.json())["error"]
    status, _ = await zammad(client, "GET", "/api/v1/tickets/search?query=colour:red")
    assert status == 422
    # Two tickets with one title: the same work order made twice, which the tests count.
    for _ in range(2):
        assert (await zammad(client, "POST", "/api/v1/tickets", ZAMMAD_TICKET))[0] == 201
    assert standin(client).stats()["duplicates"] == 1
    async with client.get("/_standin/created") as resp:
        assert [ref for ref, _ in await resp.json()] == ["t-7:12345", "t-7:12345"]
