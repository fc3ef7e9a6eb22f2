"""Unified work orders from outcome records and online requests, and their ticket-system bodies."""

from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from contracts.vocab import PlatformKind, PlatformRole
from hotline_link.settings import load_catalog
from sidecar import settings as sidecar_settings
from sidecar.standin_eido import problems as eido_problems
from sidecar.workorder import (NEEDS_CLASSIFICATION, Platforms, eido_incident_id, eido_note,
                               from_open311_response,
                               online_work_orders,
                               owner_platform, to_eido, to_open311, work_orders)
from sidecar.adapters import open311_form
from transfer.catalog import recommend

CONFIG = Path(__file__).resolve().parent.parent / "config"
CATALOG = load_catalog()


def RULES(code=None, text=None):
    """The recommender without its model (the catalog's terms): work orders, not
    classification, are what these tests are about."""
    return recommend(CATALOG, code=code, text=text)

# The platforms as configured by default: 12345 speaks Open311, 110 is the EIDO dispatch system.
DEFAULT_APIS = sidecar_settings.load(env={}, secrets=False).sidecar.platforms
PLATFORMS = Platforms({pid: api.role for pid, api in DEFAULT_APIS.items()})
WORK_ORDER = Draft202012Validator(json.loads((CONFIG / "work-order.schema.json").read_text()))
OUTCOME = Draft202012Validator(json.loads((CONFIG / "outcome-record.schema.json").read_text()))

CALLER = "13800138000"
TID = "5b0f6c1e9a7d4c2b8e3f0a1b2c3d4e5f"


def make_record(mode: str = "blind", origin: str = "12345", target: str | None = "110",
                result: str = "accepted", **over) -> dict:
    """A record shaped like ``TransferApp.record()`` builds it."""
    conference = mode in ("three_way", "emergency")
    timestamps = {"requested": "2024-05-06T08:15:02.120+00:00"}
    if mode != "none":
        timestamps |= {"dialing": "2024-05-06T08:15:02.180+00:00",
                       "ringing": "2024-05-06T08:15:02.900+00:00"}
    if result not in ("fallback_busy", "fallback_no_answer", "fallback_rejected",
                      "fallback_unreachable", "out_of_scope_guided"):
        timestamps |= {"answered": "2024-05-06T08:15:06.400+00:00",
                       "bridged": "2024-05-06T08:15:06.450+00:00"}
        if conference:
            timestamps["conference"] = "2024-05-06T08:15:06.450+00:00"
    timestamps["ended"] = "2024-05-06T08:16:30.000+00:00" if mode != "none" \
        else timestamps["requested"]
    record = {
        "schema": 1,
        "transfer_id": TID,
        "call_id": "1714983300.42",
        "mode": mode,
        "trigger": "dtmf" if mode != "none" else "screen",
        "origin": origin,
        "target": target,
        "initiating_agent": "1001",
        "answering_agent": "2001" if "answered" in timestamps else None,
        "caller_number": CALLER,
        "category": "public_order",
        "emergency": mode == "emergency",
        "result": result,
        "detail": "target leg ended: cause 17 User busy" if result == "fallback_busy" else None,
        "decided_by": ({"side": "target", "agent": "2001", "how": "key", "action": "accept"}
                       if conference and result.startswith(("accepted", "undecided")) else None),
        "recording": f"threeway-{TID}" if "conference" in timestamps else None,
        "timestamps": timestamps,
        "durations_ms": {"to_answer": 4280 if "answered" in timestamps else None,
                         "ringing": 3500, "consult": 83550 if conference else None,
                         "total": 87880},
    }
    return record | over


OWNER_CASES = [
    # (mode, origin, target, result, owner)
    ("blind", "12345", "110", "accepted", "110"),
    ("blind", "110", "12345", "accepted", "12345"),
    ("blind", "12345", "119", "accepted", "12345"),
    ("blind", "110", "province", "accepted", "110"),
    ("blind", "12345", "110", "fallback_busy", "12345"),
    ("blind", "12345", "110", "fallback_no_answer", "12345"),
    ("blind", "110", "12345", "fallback_rejected", "110"),
    ("blind", "110", "12345", "fallback_unreachable", "110"),
    ("blind", "12345", "110", "caller_abandoned", "12345"),
    ("none", "110", None, "out_of_scope_guided", "110"),
    ("three_way", "12345", "110", "cancelled", "12345"),
    ("three_way", "12345", "110", "accepted_by_origin", "12345"),
    ("three_way", "110", "12345", "accepted_by_origin", "110"),
    ("three_way", "12345", "110", "accepted_by_target", "110"),
    ("three_way", "110", "12345", "accepted_by_target", "12345"),
    ("three_way", "12345", "province", "accepted_by_target", "12345"),
    ("three_way", "12345", "110", "undecided_first_receiver", "12345"),
    ("three_way", "110", "12345", "undecided_first_receiver", "110"),
    ("emergency", "12345", "110", "accepted_by_target", "110"),
    ("emergency", "12345", "110", "accepted_by_origin", "12345"),
    ("emergency", "12345", "110", "fallback_no_answer", "12345"),
]


def test_the_record_fixtures_are_valid_outcome_records():
    for mode, origin, target, result, _ in OWNER_CASES:
        OUTCOME.validate(make_record(mode, origin, target, result))


@pytest.mark.parametrize("mode,origin,target,result,owner", OWNER_CASES)
def test_owner_platform(mode, origin, target, result, owner):
    assert owner_platform(make_record(mode, origin, target, result), PLATFORMS) == owner


def test_owner_platform_rejects_an_unknown_result_or_origin():
    with pytest.raises(ValueError, match="unknown result"):
        owner_platform(make_record(result="transferred"), PLATFORMS)
    with pytest.raises(ValueError, match="origin"):
        owner_platform(make_record(origin="119"), PLATFORMS)


# --- the schema and the work orders ---------------------------------------------------------------
def test_the_schema_is_valid_and_every_property_is_described():
    schema = json.loads((CONFIG / "work-order.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False

    def walk(node: dict, path: str) -> None:
        for name, sub in node.get("properties", {}).items():
            assert sub.get("description"), f"{path}.{name} has no description"
            walk(sub, f"{path}.{name}")

    walk(schema, "$")
    assert set(schema["required"]) == set(schema["properties"])


@pytest.mark.parametrize("mode,origin,target,result,owner", OWNER_CASES)
def test_work_orders_are_owner_then_linked_and_valid(mode, origin, target, result, owner):
    record = make_record(mode, origin, target, result)
    first, second = work_orders(record, CATALOG, PLATFORMS)
    other = "110" if owner == "12345" else "12345"
    for wo in (first, second):
        WORK_ORDER.validate(wo)
        assert wo["work_order_id"] == f"{TID}:{wo['platform']}"
        assert wo["linked"]["ticket_id"] is None
        assert (wo["channel"], wo["origin"], wo["target"], wo["result"]) == \
            ("phone", origin, target, result)
        assert wo["caller"] == {"number": CALLER, "name": None}
        assert wo["agents"] == {"initiating": "1001", "answering": record["answering_agent"]}
        assert wo["requested_at"] == record["timestamps"]["requested"]
        assert wo["ended_at"] == record["timestamps"]["ended"]
        assert CALLER not in wo["description"]
    assert (first["platform"], first["role"], first["linked"]["platform"]) == \
        (owner, "owner", other)
    assert (second["platform"], second["role"], second["linked"]["platform"]) == \
        (other, "linked", owner)


def test_work_orders_carry_the_category_and_a_factual_description():
    record = make_record("three_way", "12345", "110", "accepted_by_target",
                         category="public_facilities")
    owner, linked = work_orders(record, CATALOG, PLATFORMS)
    assert owner["category"] == "public_facilities"
    assert owner["category_name"] == "公共设施类"
    assert owner["description"] == linked["description"]
    assert owner["description"] == ("Three-way call from 12345 to 110: accepted_by_target. "
                                    "Matter: 公共设施类 (public facilities). "
                                    "Initiating agent: 1001.")


def test_work_orders_carry_the_tagged_matter_and_hide_the_number_in_its_summary():
    matter = {"schema": 1, "matter_id": "a" * 32, "call_id": "1714983300.42",
              "category": "public_order", "summary": f"来电 {CALLER} 称楼下有人争执",
              "address": "解放路 12 号", "location": {"lat": 30.25, "lon": 120.17},
              "caller_name": "王先生", "emergency": False,
              "updated_at": "2024-05-06T08:15:01.000+00:00",
              "updated_by": {"hotline": "12345", "agent": "1001"}}
    owner, linked = work_orders(make_record(matter=matter), CATALOG, PLATFORMS)
    for wo in (owner, linked):
        assert wo["caller"] == {"number": CALLER, "name": "王先生"}
        assert wo["location"] == {"address": "解放路 12 号", "lat": 30.25, "lon": 120.17}
        assert "称楼下有人争执" in wo["description"] and CALLER not in wo["description"]
    no_matter, _ = work_orders(make_record(matter=None), CATALOG, PLATFORMS)
    assert no_matter["location"] == {"address": None, "lat": None, "lon": None}


def test_description_of_an_emergency_and_of_an_out_of_scope_marker():
    em, _ = work_orders(make_record("emergency", result="accepted_by_target"), CATALOG, PLATFORMS)
    assert em["description"].startswith("Emergency three-way call from 12345 to 110: "
                                        "accepted_by_target. Emergency. Matter: 社会治安类")
    assert em["emergency"] is True
    marker, _ = work_orders(make_record("none", "110", None, "out_of_scope_guided",
                                        category=None), CATALOG, PLATFORMS)
    assert marker["description"] == ("Out-of-scope call at 110: out_of_scope_guided. "
                                     "Initiating agent: 1001.")
    assert marker["category"] is None and marker["category_name"] is None


def test_a_chained_hop_names_the_chain_and_the_tickets_of_the_hop_before():
    record = make_record(target="province", chain={"id": "T0", "hop": 2, "previous": "T0"})
    OUTCOME.validate(record)
    owner, linked = work_orders(record, CATALOG, PLATFORMS, {"12345": "SR-1", "110": "JD-1"})
    for wo in (owner, linked):
        assert wo["description"].endswith(
            "转接链 Chain T0, hop 2: continues transfer T0 (tickets 12345 SR-1, 110 JD-1).")
    # The hop before not synced (yet): named by its transfer id alone.
    alone, _ = work_orders(record, CATALOG, PLATFORMS)
    assert alone["description"].endswith("continues transfer T0.")
    first, _ = work_orders(make_record(chain={"id": TID, "hop": 1, "previous": None}),
                           CATALOG, PLATFORMS)
    assert "Chain" not in first["description"]


def test_an_unknown_category_keeps_its_code_without_a_name():
    owner, _ = work_orders(make_record(category="retired_code"), CATALOG, PLATFORMS)
    WORK_ORDER.validate(owner)
    assert (owner["category"], owner["category_name"]) == ("retired_code", None)
    assert "Matter: retired_code." in owner["description"]


def test_the_schema_rejects_a_platform_that_is_not_an_id():
    # Platform ids are configuration, so the schema checks their form; that a pair links each
    # to the other platform, never to itself, is checked on the pairs themselves (above).
    owner, _ = work_orders(make_record(), CATALOG, PLATFORMS)
    assert WORK_ORDER.is_valid(owner)
    assert not WORK_ORDER.is_valid(owner | {"platform": "no such/id"})
    assert not WORK_ORDER.is_valid(owner | {"work_order_id": f"{TID}:"})
    owner["linked"]["platform"] = ""
    assert not WORK_ORDER.is_valid(owner)


def test_the_two_work_orders_do_not_share_nested_objects():
    owner, linked = work_orders(make_record(), CATALOG, PLATFORMS)
    owner["location"]["address"] = "changed"
    assert linked["location"]["address"] is None


# --- online requests --------------------------------------------------------------------------
def online(**over) -> dict:
    return {"request_id": "web-20240506-0007", "description": "路灯故障，整条街都黑了",
            "caller_number": CALLER, "requested_at": "2024-05-06T09:00:00.000+00:00"} | over


def test_online_request_with_a_category():
    owner, linked = online_work_orders(online(category="public_facilities", caller_name="张伟",
                                              address="济源市济水大街 18 号", lat=35.09,
                                              lon=112.59), CATALOG, RULES, PLATFORMS)
    for wo in (owner, linked):
        WORK_ORDER.validate(wo)
        assert (wo["channel"], wo["result"], wo["origin"], wo["target"]) == \
            ("online", "online_request", "online", "12345")
        assert wo["transfer_id"] == "web-20240506-0007"
        assert wo["caller"] == {"number": CALLER, "name": "张伟"}
        assert wo["location"] == {"address": "济源市济水大街 18 号", "lat": 35.09, "lon": 112.59}
        assert wo["agents"] == {"initiating": None, "answering": None}
        assert (wo["requested_at"], wo["ended_at"]) == ("2024-05-06T09:00:00.000+00:00", None)
    assert (owner["platform"], owner["role"], owner["category_name"]) == \
        ("12345", "owner", "公共设施类")
    assert (linked["platform"], linked["role"]) == ("110", "linked")
    assert owner["work_order_id"] == "web-20240506-0007:12345"


def test_online_request_without_a_category_is_classified_from_its_description():
    # An animal attack over and done (a bite now is an emergency, as "狗把我儿子咬了" is).
    owner, linked = online_work_orders(
        online(description="A dog bit my son in the park last week, the owner won't pay for his "
                           "vaccine"),
        CATALOG, RULES, PLATFORMS)
    WORK_ORDER.validate(owner)
    assert (owner["platform"], owner["target"], owner["category"]) == ("110", "110", "public_order")
    assert owner["emergency"] is False
    assert linked["platform"] == "12345"


def test_online_request_without_a_category_asks_the_recommender_with_the_description():
    calls = []

    def fake(code=None, text=None):
        calls.append((code, text))
        return RULES(code=code, text=text)

    online_work_orders(online(), CATALOG, fake, PLATFORMS)
    assert calls == [(None, "路灯故障，整条街都黑了")]


def test_an_emergency_description_overrides_the_chosen_category():
    owner, _ = online_work_orders(online(category="public_facilities",
                                         description="井盖缺失，有人掉下去受伤了"),
                                  CATALOG, RULES, PLATFORMS)
    WORK_ORDER.validate(owner)
    assert (owner["platform"], owner["category"], owner["emergency"]) == \
        ("110", "public_facilities", True)


def test_online_request_nobody_can_place_goes_to_the_receiving_platform_to_classify():
    for over, received_by in (({}, "12345"), ({"platform": "110"}, "110")):
        owner, linked = online_work_orders(online(description="hello, is anyone there?", **over),
                                           CATALOG, RULES, PLATFORMS)
        WORK_ORDER.validate(owner)
        assert (owner["platform"], owner["target"], owner["category"]) == \
            (received_by, received_by, None)
        assert owner["description"].startswith(NEEDS_CLASSIFICATION)
        assert owner["description"].endswith("\nhello, is anyone there?")
        assert linked["platform"] != received_by


def test_online_request_ids_name_http_headers_so_they_are_visible_ascii():
    for bad in ("web 7", "web\x10-7", "网上-7", "x" * 129):
        with pytest.raises(ValueError, match="request_id must be 1-128 visible ASCII"):
            online_work_orders(online(request_id=bad), CATALOG, RULES, PLATFORMS)


def test_online_request_with_an_unknown_code_or_platform_is_refused_by_name():
    with pytest.raises(ValueError, match="category 'no_such_code' is not a matter code"):
        online_work_orders(online(category="no_such_code"), CATALOG, RULES, PLATFORMS)
    with pytest.raises(ValueError, match="platform must be one of"):
        online_work_orders(online(platform="119"), CATALOG, RULES, PLATFORMS)


def test_online_request_hides_the_caller_number_in_its_description():
    owner, linked = online_work_orders(online(description=f"路灯故障，请回电 {CALLER}"),
                                       CATALOG, RULES, PLATFORMS)
    for wo in (owner, linked):
        assert CALLER not in wo["description"]
        assert wo["description"] == "路灯故障，请回电 [caller number]"
        assert wo["caller"]["number"] == CALLER
        assert CALLER not in to_open311(wo)["description"]
        assert CALLER not in to_eido(wo)["notesComponent"][0]["notesActionComments"]


def test_online_request_without_a_time_gets_the_current_one():
    owner, _ = online_work_orders(online(requested_at=None), CATALOG, RULES, PLATFORMS)
    WORK_ORDER.validate(owner)
    assert datetime.fromisoformat(owner["requested_at"]).tzinfo is not None


@pytest.mark.parametrize("over,field", [({"request_id": ""}, "request_id"),
                                        ({"caller_number": None}, "caller_number"),
                                        ({"lat": 135.0}, "lat"),
                                        ({"lon": "112.5"}, "lon")])
def test_online_request_with_bad_fields_raises(over, field):
    with pytest.raises(ValueError, match=field):
        online_work_orders(online(**over), CATALOG, RULES, PLATFORMS)


# --- Open311 ----------------------------------------------------------------------------------
def test_open311_body_of_an_owner_work_order_from_a_call():
    record = make_record("blind", "110", "12345", "accepted", category="public_facilities")
    owner, _ = work_orders(record, CATALOG, PLATFORMS)
    body = to_open311(owner)
    assert body == {
        "service_code": "public_facilities",
        "description": owner["description"],
        "phone": CALLER,
        "attribute": {
            "transfer_id": TID, "work_order_id": f"{TID}:12345", "role": "owner",
            "channel": "phone", "result": "accepted", "emergency": "false",
            "origin": "110", "target": "12345", "linked_platform": "110",
            "initiating_agent": "1001", "answering_agent": "2001",
        },
    }


def test_open311_body_of_a_linked_work_order_with_the_other_ticket_known():
    _, linked = work_orders(make_record("emergency", result="accepted_by_target"), CATALOG, PLATFORMS)
    assert linked["platform"] == "12345"
    linked["linked"]["ticket_id"] = "JY110-20240506-0042"
    body = to_open311(linked)
    attrs = body["attribute"]
    assert (attrs["role"], attrs["emergency"], attrs["linked_platform"]) == \
        ("linked", "true", "110")
    assert attrs["linked_ticket_id"] == "JY110-20240506-0042"
    assert not {"lat", "long", "address_string", "first_name", "last_name"} & set(body)


def test_open311_leaves_out_unknown_attributes():
    marker, _ = work_orders(make_record("none", "12345", None, "out_of_scope_guided",
                                        category=None), CATALOG, PLATFORMS)
    body = to_open311(marker)
    assert body["service_code"] == "unclassified"
    assert not {"target", "answering_agent", "linked_ticket_id"} & set(body["attribute"])


def test_open311_body_with_location_and_a_name_without_spaces():
    owner, _ = online_work_orders(online(caller_name="欧阳娜娜", address="济源市济水大街 18 号",
                                         lat=35.09, lon=112.59), CATALOG, RULES, PLATFORMS)
    body = to_open311(owner)
    assert (body["lat"], body["long"], body["address_string"]) == \
        (35.09, 112.59, "济源市济水大街 18 号")
    assert body["first_name"] == "欧阳娜娜" and "last_name" not in body
    assert body["attribute"]["origin"] == "online"
    assert body["attribute"]["result"] == "online_request"


def test_open311_splits_a_name_with_spaces_and_needs_both_coordinates():
    owner, _ = online_work_orders(online(caller_name="Mary Ann Smith", lat=35.09),
                                  CATALOG, RULES, PLATFORMS)
    body = to_open311(owner)
    assert (body["first_name"], body["last_name"]) == ("Mary Ann", "Smith")
    assert not {"lat", "long", "address_string"} & set(body)


def test_open311_caps_the_description_at_the_georeport_limit():
    owner, _ = online_work_orders(online(description="路灯故障" + "。" * 5000),
                                  CATALOG, RULES, PLATFORMS)
    assert len(to_open311(owner)["description"]) == 4000


@pytest.mark.parametrize("body,expected", [
    ([{"service_request_id": "638344", "service_notice": "Thank you", "account_id": None}],
     "638344"),
    ([{"service_request_id": 638344}], "638344"),
])
def test_open311_response_gives_the_service_request_id(body, expected):
    assert from_open311_response(body) == expected


@pytest.mark.parametrize("body,message", [
    ([{"token": "12345-abc"}], "only a token"),
    ([{"code": 400, "description": "service_code not found"}], "service_code not found"),
    ([{"service_request_id": "1"}, {"service_request_id": "2"}], "one service request"),
    ([{"service_request_id": ""}], "no service_request_id"),
    ([{"service_request_id": True}], "no service_request_id"),
    ([], "list of objects"),
    ({"service_request_id": "638344"}, "list of objects"),
    (["638344"], "list of objects"),
    (None, "list of objects"),
])
def test_open311_response_rejects_anything_else(body, message):
    with pytest.raises(ValueError, match=message):
        from_open311_response(body)


# --- EIDO -------------------------------------------------------------------------------------
EIDO_SCHEMA = Draft202012Validator(
    json.loads((CONFIG.parent / "tests" / "schemas" / "eido" / "eido-1.0.json").read_text()),
    format_checker=Draft202012Validator.FORMAT_CHECKER)


def eido(wo: dict) -> dict:
    """``to_eido(wo)``, checked against the EIDO 1.0 schema and for references that resolve."""
    doc = to_eido(wo)
    EIDO_SCHEMA.validate(doc)
    assert eido_problems(doc) == []
    return doc


def test_eido_incident_of_an_owner_work_order_from_a_call():
    owner, _ = work_orders(make_record("three_way", "12345", "110", "accepted_by_target"),
                           CATALOG, PLATFORMS)
    assert owner["platform"] == "110"
    doc = eido(owner)
    assert doc["$id"] == eido_incident_id(owner) and doc["$id"].startswith(
        "urn:emergency:uid:incidentid:")
    assert doc["eidoVersion"] == "1.0"
    incident = doc["incidentComponent"]
    assert (incident["incidentTypeCommonRegistryText"], incident["incidentStatusInternalText"],
            incident["internalIncidentId"]) == ("public_order", ["Open"], f"{TID}:110")
    [call] = doc["callComponent"]
    assert (call["direction"], call["callStartTimestamp"], call["callStateRegistryText"],
            call["priorityIdentifier"]) == ("incoming", "2024-05-06T08:15:02.120+00:00",
                                            "callAnswered", "normal")
    [person] = doc["personComponent"]
    assert person["personIncidentRoleRegistryText"] == ["Caller"]
    assert person["ncPersonComponent"]["ContactInformation"]["ContactTelephoneNumber"][
        "FullTelephoneNumber"]["TelephoneNumberFullID"] == CALLER
    issuer, desk = doc["agencyComponent"]
    assert doc["updatedByAgencyReference"] == {"$ref": issuer["$id"]}
    assert (issuer["incidentOwningAgencyIndicator"], desk["incidentOwningAgencyIndicator"]) == \
        (False, True)
    [note] = doc["notesComponent"]
    assert html.escape(owner["description"]) in note["notesActionComments"]
    assert TID in note["notesActionComments"]


def test_eido_status_follows_role_and_emergency():
    owner, _ = work_orders(make_record("emergency", result="accepted_by_target"), CATALOG, PLATFORMS)
    doc = eido(owner)
    assert doc["incidentComponent"]["incidentStatusInternalText"] == ["Dispatched"]
    assert doc["callComponent"][0]["priorityIdentifier"] == "highest"
    assert doc["callComponent"][0]["standardPrimaryCallType"] == "emergency"
    _, linked = work_orders(make_record("blind", "110", "12345", "accepted"), CATALOG, PLATFORMS)
    assert linked["platform"] == "110"
    doc = eido(linked)
    assert doc["incidentComponent"]["incidentStatusInternalText"] == ["Informational"]
    assert doc["agencyComponent"][1]["incidentOwningAgencyIndicator"] is False


def test_eido_incident_with_location_name_and_the_other_ticket():
    _, linked = online_work_orders(online(caller_name="张伟", address="济源市济水大街 18 号",
                                          lat=35.09, lon=112.6),
                                   CATALOG, RULES, PLATFORMS)
    assert linked["platform"] == "110"
    linked["linked"]["ticket_id"] = "638344"
    doc = eido(linked)
    [place] = doc["locationComponent"]
    assert place["locationDescriptionText"] == "济源市济水大街 18 号"
    assert "<gml:pos>35.09 112.6</gml:pos>" in place["locationByValue"]
    assert doc["incidentComponent"]["locationReference"] == [{"$ref": place["$id"]}]
    assert doc["personComponent"][0]["ncPersonComponent"]["PersonName"] == {
        "PersonFullName": "张伟"}
    assert "callComponent" not in doc                     # an online request: no call
    assert "638344" in doc["notesComponent"][0]["notesActionComments"]


def test_eido_incident_without_location_has_no_location_component():
    owner, _ = online_work_orders(online(description="有人持刀抢劫"), CATALOG, RULES, PLATFORMS)
    doc = eido(owner)
    assert "locationComponent" not in doc
    assert doc["incidentComponent"]["incidentTypeCommonRegistryText"] == "unclassified"
    assert doc["incidentComponent"]["incidentStatusInternalText"] == ["Dispatched"]


def test_one_work_order_names_one_incident_and_a_note_is_a_new_eido_of_it():
    owner, linked = work_orders(make_record("blind", "110", "12345", "accepted"), CATALOG,
                                PLATFORMS)
    assert to_eido(linked)["$id"] == to_eido(linked, "2030-01-01T00:00:00.000+00:00")["$id"]
    other = work_orders(make_record("blind", "110", "12345", "accepted", transfer_id="t-2"),
                        CATALOG, PLATFORMS)[1]
    assert to_eido(other)["$id"] != to_eido(linked)["$id"]
    doc = eido(linked)
    noted = eido_note(doc, f"{doc['$id']}:note:1", "12345 reports <closed> & done")
    EIDO_SCHEMA.validate(noted)
    assert eido_problems(noted) == []
    assert noted["$id"] == doc["$id"] and len(noted["notesComponent"]) == 2
    assert noted["notesComponent"][1]["notesActionComments"] == \
        "<p>12345 reports &lt;closed&gt; &amp; done</p>"
    assert {"$ref": f"{doc['$id']}:note:1"} in noted["incidentComponent"]["notesReference"]


# --- the Open311 form ---------------------------------------------------------------------------
def test_the_open311_form_is_georeport_with_the_reference_the_sidecar_looks_for():
    owner, linked = work_orders(make_record(), CATALOG, PLATFORMS)      # linked: 12345 (Open311)
    form = open311_form(linked, "the-key")
    fields = dict(form)
    assert form[0] == ("api_key", "the-key") and fields["service_code"] == to_open311(linked)[
        "service_code"]
    assert fields["description"].endswith(f"\n[hotline-link {linked['work_order_id']}]")
    assert fields["attribute[work_order_id]"] == linked["work_order_id"]
    assert all(isinstance(v, str) for _, v in form)                    # a form holds text
    # GeoReport needs a location: a call without an address says so instead.
    assert fields["address_string"] == "未提供地址 (no address given)" and "lat" not in fields
    georeport_form = Draft202012Validator(json.loads(
        (CONFIG.parent / "tests" / "schemas" / "georeport-v2" / "post-service-request.json")
        .read_text()))
    matter = {"matter_id": "m-1", "category": "public_facilities", "summary": "路灯不亮",
              "address": "人民路 12 号", "location": {"lat": 31.2, "lon": 121.4},
              "caller_name": "李明", "emergency": False}
    for record in (make_record(), make_record("three_way", "110", "12345", "accepted_by_target"),
                   make_record(matter=matter), make_record(caller_number=None)):
        for wo in work_orders(record, CATALOG, PLATFORMS):
            if DEFAULT_APIS[wo["platform"]].kind == PlatformKind.OPEN311:
                georeport_form.validate(dict(open311_form(wo, "the-key")))
    long = {**linked, "description": "很" * 5000}
    assert len(dict(open311_form(long, None))["description"]) == 4000
    assert "api_key" not in dict(open311_form(linked, None))


def test_platform_ids_are_configuration_and_the_police_desk_is_the_dispatch_role():
    # Other ids, same roles: the police desk (owner of an emergency) is the dispatch platform
    # and "the other platform" is whichever is configured beside it.
    renamed = Platforms({"gov": PlatformRole.SERVICE, "police": PlatformRole.DISPATCH})
    record = make_record("emergency", "gov", "police", "accepted_by_target")
    assert owner_platform(record, renamed) == "police"
    owner, linked = work_orders(record, CATALOG, renamed)
    assert (owner["platform"], linked["platform"], linked["linked"]["platform"]) == (
        "police", "gov", "police")
    assert owner["work_order_id"].endswith(":police")
    with pytest.raises(ValueError, match="origin '12345' is not a platform"):
        owner_platform(make_record(), renamed)
    # Found by the API fuzz: a JSON object where a platform id belongs is no platform.
    assert {} not in renamed and ["police"] not in renamed and "police" in renamed
    with pytest.raises(ValueError, match="origin"):
        owner_platform(make_record(origin={"x": 1}), renamed)
    with pytest.raises(ValueError, match="one of each role"):
        Platforms({"a": PlatformRole.DISPATCH, "b": PlatformRole.DISPATCH})


def test_a_call_back_request_is_one_work_order_on_the_hotlines_own_platform():
    from sidecar.workorder import callback_work_order

    record = {"call_id": "pbx12345-1.7", "hotline": "12345", "caller_number": CALLER,
              "arrived_at": "2024-05-06T08:15:00.000+00:00",
              "ended_at": "2024-05-06T08:15:40.000+00:00", "wait_ms": 40000,
              "disposition": "callback"}
    wo = callback_work_order(record)
    WORK_ORDER.validate(wo)
    assert (wo["work_order_id"], wo["platform"], wo["role"], wo["result"]) == \
        ("callback:pbx12345-1.7", "12345", "owner", "callback_requested")
    assert wo["linked"] == {"platform": None, "ticket_id": None}
    assert "40" in wo["description"] and CALLER in wo["description"]
    body = to_open311(wo)
    assert body["phone"] == CALLER and body["attribute"]["result"] == "callback_requested"
    assert "linked_platform" not in body["attribute"]
    assert "关联" not in eido(wo)["notesComponent"][0]["notesActionComments"]
