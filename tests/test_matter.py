"""The matter a desktop tags a call with (transfer/matter.py): what is stored, and every problem
of a bad body named by its field."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import pytest

from transfer import matter
from hotline_link.settings import load_catalog

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "config" / "matter.schema.json").read_text())
CATALOG = load_catalog()
HOTLINES = ("12345", "110")
NOW = datetime(2026, 12, 3, 8, 0, tzinfo=timezone.utc)


def parse(body: dict, previous: dict | None = None):
    return matter.parse(body, call_id="pbx-1.1", hotline=body.get("hotline"), hotlines=HOTLINES,
                        catalog=CATALOG, previous=previous, now=NOW)


def test_a_tagged_matter_is_stored_whole_and_keeps_its_id_when_corrected():
    first, problems = parse({"hotline": "12345", "category": "public_order",
                             "summary": "楼下有人持械争吵", "address": "解放路 12 号",
                             "location": {"lat": 30.25, "lon": 120.17}, "caller_name": "王先生",
                             "emergency": True, "agent": "12345-a1"})
    assert problems == []
    jsonschema.validate(first, SCHEMA, cls=jsonschema.Draft202012Validator,
                        format_checker=jsonschema.FormatChecker())
    assert (first["category"], first["emergency"], first["updated_by"]) == \
        ("public_order", True, {"hotline": "12345", "agent": "12345-a1"})
    corrected, _ = parse({"hotline": "110", "category": "property_safety"}, previous=first)
    assert corrected["matter_id"] == first["matter_id"]
    assert (corrected["summary"], corrected["location"], corrected["emergency"]) == ("", None, False)
    assert corrected["updated_by"] == {"hotline": "110", "agent": None}


@pytest.mark.parametrize("body, field", [
    ({"hotline": "119"}, "hotline"),
    ({"hotline": "12345", "category": "no_such_code"}, "category"),
    ({"hotline": "12345", "category": 7}, "category"),
    ({"hotline": "12345", "summary": "x" * 501}, "summary"),
    ({"hotline": "12345", "address": "a\r\nX-Evil: 1"}, "address"),
    ({"hotline": "12345", "location": {"lat": 91, "lon": 0}}, "location"),
    ({"hotline": "12345", "location": {"lat": float("nan"), "lon": 0}}, "location"),
    ({"hotline": "12345", "location": {"lat": True, "lon": 0}}, "location"),
    ({"hotline": "12345", "location": [30, 120]}, "location"),
    ({"hotline": "12345", "emergency": "yes"}, "emergency"),
    ({"hotline": "12345", "priority": 1}, "priority"),
])
def test_a_bad_matter_is_refused_naming_its_field(body, field):
    got, problems = parse(body)
    assert got is None and any(p.startswith(field) for p in problems), problems
