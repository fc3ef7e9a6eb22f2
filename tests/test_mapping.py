"""The http adapter's mapping files (sidecar/mapping.py): templates, JSON Pointers, and the
shipped Zammad mapping filled in from a real work order. Pure: no lab."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar import mapping
from sidecar.mapping import pointer, render

ROOT = Path(__file__).resolve().parent.parent
FIELDS = mapping.work_order_fields(
    json.loads((ROOT / "config" / "work-order.schema.json").read_text()))


def test_a_template_keeps_a_lone_fields_json_value_and_fills_text_elsewhere():
    fields = {"location.lat": 31.23, "emergency": True, "caller.name": None, "ref": "t:1"}
    assert render({"lat": "{location.lat}", "urgent": "{emergency}", "name": "{caller.name}",
                   "line": "ref {ref}, urgent {emergency}, name {caller.name}.",
                   "list": ["{ref}", 3], "braces": "{{ref}} is {ref}"}, fields) == {
        "lat": 31.23, "urgent": True, "name": None, "line": "ref t:1, urgent true, name .",
        "list": ["t:1", 3], "braces": "{ref} is t:1"}
    # In a path every field is text, percent-encoded: an id cannot reach another resource.
    assert render("/tickets/{ref}/x", {"ref": "a/../b c"}, quote_text=True) == \
        "/tickets/a%2F..%2Fb%20c/x"


def test_json_pointers_follow_rfc_6901():
    doc = {"a": [{"id": 7}], "a/b": 1, "m~n": 2, "": 3}
    assert pointer(doc, "") is doc
    assert pointer(doc, "/a/0/id") == 7
    assert pointer(doc, "/a~1b") == 1 and pointer(doc, "/m~0n") == 2 and pointer(doc, "/") == 3
    assert pointer(doc, "/a/1") is mapping._MISSING
    assert pointer(doc, "/a/01") is mapping._MISSING
    assert pointer(doc, "/x/y") is mapping._MISSING


def test_the_zammad_mapping_makes_a_ticket_from_a_work_order():
    from hotline_link.settings import load_catalog
    from sidecar.adapters import work_order_fields
    from sidecar.workorder import Platforms, work_orders

    zammad = mapping.load(ROOT / "config" / "ticket-mappings" / "zammad.toml", FIELDS)
    record = {
        "schema": 1, "transfer_id": "t1", "call_id": "c1", "mode": "blind", "trigger": "dtmf",
        "origin": "110", "target": "12345", "initiating_agent": "110-a1",
        "answering_agent": "12345-a1", "caller_number": "13800138000",
        "category": "public_facilities", "emergency": False, "result": "accepted",
        "detail": None, "decided_by": None, "recording": None,
        "matter": {"summary": "路灯不亮", "address": "人民路 12 号",
                   "location": {"lat": 31.2, "lon": 121.4}, "caller_name": "李明"},
        "timestamps": {"requested": "2026-12-04T08:00:00.000+00:00",
                       "ended": "2026-12-04T08:01:00.000+00:00"},
        "durations_ms": {"to_answer": None, "ringing": None, "consult": None, "total": 0}}
    roles = Platforms({"12345": "service", "110": "dispatch"})
    [wo] = [w for w in work_orders(record, load_catalog(), roles) if w["platform"] == "12345"]
    fields = work_order_fields(wo)
    req = zammad.create.build({**fields, "token": "secret"})
    body = json.loads(req["data"])
    assert (req["method"], req["path"]) == ("POST", "/api/v1/tickets")
    assert req["headers"]["Authorization"] == "Token token=secret"
    assert body["title"].endswith("[hotline-link t1:12345]") and body["group"] == "Users"
    text = body["article"]["body"]
    for part in ("13800138000", "李明", "人民路 12 号", "31.2 121.4", "public_facilities",
                 "转办编号 transfer t1"):
        assert part in text, part
    assert zammad.ticket_id({"id": 42, "title": "x"}) == "42"
    with pytest.raises(ValueError, match="nothing at /id"):
        zammad.ticket_id({"error": "x"})
    find = zammad.find.build({**fields, "token": "secret"})
    assert find["params"]["query"] == 'title:"[hotline-link t1:12345]"'
    assert zammad.matches({"tickets": [42], "tickets_count": 1}) == ["42"]
    assert zammad.status_of({"id": 42, "state": "merged"}) == ("closed", None)
    assert zammad.status_of({"id": 42, "state": "open"}) == ("open", None)


def test_a_form_mapping_leaves_out_what_is_unknown():
    call = mapping.Call(method="POST", path="/r/{ref}", encoding="form",
                        body={"code": "{category}", "lat": "{location.lat}", "k": "{token}"},
                        query={}, headers={})
    req = call.build({"category": "noise", "location.lat": None, "ref": "t:1", "token": "k1"})
    assert req["path"] == "/r/t%3A1" and req["data"] == [("code", "noise"), ("k", "k1")]
