"""The cross-process contracts (``contracts/``) agree with the JSON Schemas and the API contract
that outside readers are given, and the payloads our writers build pass those schemas."""

from __future__ import annotations

import json
import tomllib

import jsonschema
import pytest

from conftest import ROOT
from contracts import names, sip, vocab
from sidecar.settings import WEBHOOK_EVENTS

OUTCOME = json.loads((ROOT / "config" / "outcome-record.schema.json").read_text())
PAYLOADS = json.loads((ROOT / "config" / "stream-payloads.schema.json").read_text())
CALL_RECORD = json.loads((ROOT / "config" / "call-record.schema.json").read_text())
OPENAPI = json.loads((ROOT / "sidecar" / "openapi.json").read_text())


def check_payload(kind: str, payload: dict) -> None:
    """``payload`` is a valid ``kind`` (alert, command, command_result, live_event)."""
    schema = {**PAYLOADS, "$ref": f"#/$defs/{kind}"}
    jsonschema.validate(payload, schema, cls=jsonschema.Draft202012Validator)


def values(enum) -> set[str]:
    return {str(m) for m in enum}


def test_vocabularies_are_the_outcome_schemas():
    props = OUTCOME["properties"]
    assert values(vocab.Result) == set(props["result"]["enum"])
    assert values(vocab.Mode) == set(props["mode"]["enum"])
    assert values(vocab.Trigger) == set(props["trigger"]["enum"])
    decided = props["decided_by"]["properties"]
    assert values(vocab.DecisionAction) == set(decided["action"]["enum"])
    assert values(vocab.Side) == set(decided["side"]["enum"])
    assert values(vocab.DecidedHow) == set(decided["how"]["enum"])
    assert vocab.FALLBACK_RESULTS == {r for r in vocab.Result if r.startswith("fallback_")}
    assert set(vocab.CONFERENCE_MODES) | set(vocab.API_MODES) <= set(vocab.Mode)


def test_vocabularies_are_the_call_record_schema():
    props = CALL_RECORD["properties"]
    assert values(vocab.Disposition) == set(props["disposition"]["enum"])
    assert values(vocab.EndedBy) == set(props["ended_by"]["enum"])
    assert values(vocab.DeliveredBy) == set(props["delivered_by"]["enum"])


def test_vocabularies_are_the_stream_payload_schemas_and_the_api():
    defs = PAYLOADS["$defs"]
    assert values(vocab.AlertKind) == set(defs["alert"]["properties"]["kind"]["enum"])
    assert set(WEBHOOK_EVENTS) == values(vocab.AlertKind)
    assert values(vocab.Platform) == set(defs["hotline"]["enum"])
    transfer, action = (c["properties"] for c in defs["command"]["oneOf"])
    assert set(map(str, vocab.API_MODES)) == set(transfer["mode"]["enum"])
    assert set(vocab.KEY_ACTIONS) == set(action["action"]["enum"])
    # The service writes these live events; the sidecar adds outcome and alert from their streams
    # and hotline_status from the live gauges.
    written = set(defs["live_event"]["properties"]["type"]["enum"])
    assert written | {"outcome", "alert", "hotline_status"} == values(vocab.LiveEvent)
    results = {b["properties"]["status"]["const"] for b in defs["command_result"]["oneOf"]}
    assert results == values(vocab.CommandStatus)
    api = OPENAPI["paths"]["/calls/{call_id}/transfer"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["properties"]
    assert set(api["mode"]["enum"]) == set(map(str, vocab.API_MODES))
    assert set(api["hotline"]["enum"]) == values(vocab.Platform)
    status = OPENAPI["paths"]["/commands/{command_id}"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]["properties"]["status"]["enum"]
    assert set(status) == values(vocab.CommandStatus) | {"pending"}
    unsure = OPENAPI["paths"]["/recommendation"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]["properties"]["unsure"]["enum"]
    assert set(unsure) == values(vocab.Unsure) | {None}


@pytest.mark.parametrize("config", ["config/hotline-link.toml", "tests/lab.toml",
                                    "tests/chaos/lab.toml", "bench/lab.toml"])
def test_every_webhook_subscribes_to_known_alerts(config):
    hooks = tomllib.loads((ROOT / config).read_text()).get("sidecar", {}).get("webhooks", [])
    for hook in hooks:
        assert set(hook["events"]) <= values(vocab.AlertKind), hook


def test_stream_and_key_names_are_distinct_and_well_formed():
    streams = [v for v in vars(names).values() if isinstance(v, names.Stream)]
    keys = [v for k, v in vars(names).items()
            if k.isupper() and isinstance(v, str) and not k.endswith("_GROUP")]
    every = [s.key for s in streams] + keys
    assert len(every) == len(set(every)), "a name is used twice"
    assert all(n.startswith("hotline:") and n.count("{}") <= 1 for n in every)
    assert set(names.GROUPS) == {names.OUTCOMES.key, names.CALLS.key, names.ALERTS.key}
    # Streams read by a consumer group are never trimmed: trimming would drop unread entries.
    assert names.OUTCOMES.maxlen is None and names.OUTCOMES.trim() == {}
    assert names.ALERTS.trim() == {"maxlen": names.ALERTS.maxlen, "approximate": True}
    assert names.COMMANDS.of("110") == "hotline:commands:110"


def test_a_payload_crosses_a_stream_unchanged():
    body = {"kind": "emergency", "transfer_id": "t1", "call_id": "c1", "origin": "12345",
            "target": "110", "category": "交通事故", "caller_number": "13800138000",
            "at": "2026-12-02T10:00:00.000+00:00"}
    fields = names.ALERTS.entry(body)
    assert list(fields) == ["alert"]
    raw = {k.encode(): v.encode() for k, v in fields.items()}      # as redis-py returns them
    assert names.ALERTS.payload(raw) == body
    check_payload("alert", body)
    with pytest.raises(KeyError):
        names.ALERTS.payload({b"record": b"{}"})


@pytest.mark.parametrize("kind, payload", [
    ("alert", {"kind": "emergency", "transfer_id": "t"}),                 # fields missing
    ("alert", {"kind": "page_the_mayor"}),
    ("command", {"id": "1", "call_id": "c", "mode": "emergency", "target": None}),
    ("command", {"id": "1", "call_id": "c", "mode": "blind"}),
    ("command_result", {"status": "started"}),
    ("command_result", {"status": "queued", "reason": "x"}),
    ("live_event", {"type": "agent_ringing", "hotline": "110", "at": 1.0}),
    ("live_event", {"type": "agent_connected", "hotline": "119", "at": 1.0, "agent": "a",
                    "call_id": "c", "caller_number": "1", "transfer": None}),
])
def test_the_payload_schemas_refuse_what_no_reader_understands(kind, payload):
    with pytest.raises(jsonschema.ValidationError):
        check_payload(kind, payload)


def test_the_sip_headers_are_the_trunks():
    assert all(h.startswith("X-Hotline-") for h in sip.HEADERS)
    assert len(set(sip.HEADERS)) == len(sip.HEADERS) == 8


def test_the_platform_kinds_are_the_ones_the_work_order_schema_names():
    schema = json.loads((ROOT / "config" / "work-order.schema.json").read_text())
    for kind in vocab.PlatformKind:
        assert f"`{kind}`" in schema["description"], kind
    defaults = tomllib.loads((ROOT / "config" / "hotline-link.toml").read_text())
    kinds = {p["kind"] for p in defaults["sidecar"]["platforms"].values()}
    assert kinds <= values(vocab.PlatformKind)
