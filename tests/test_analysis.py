"""Joint analysis (R13): the pure figures and the early warning (transfer/analysis.py), then
GET /analysis and the early_warning alert on the test lab's sidecar."""

from __future__ import annotations

import time
import urllib.request
import uuid
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from test_sidecar import stack  # noqa: F401 - fixture
from transfer import analysis
from transfer.analysis import area, poisson_tail, summarize, warnings

SHANGHAI = ZoneInfo("Asia/Shanghai")


def record(category=None, origin="12345", target="110", result="accepted", at=None,
           number="13800138000", address=None, emergency=False):
    at = at or datetime.now(timezone.utc)
    return {"transfer_id": uuid.uuid4().hex, "origin": origin, "target": target,
            "result": result, "category": category, "caller_number": number,
            "emergency": emergency, "matter": {"address": address} if address else None,
            "timestamps": {"requested": at.isoformat(), "ended": at.isoformat()}}


def test_the_poisson_tail_is_right():
    assert poisson_tail(0, 3.0) == 1.0
    assert poisson_tail(1, 2.0) == pytest.approx(1 - 0.1353352832, abs=1e-9)
    # P(X >= 8 | 0.5) for a category seen about once in two days: a handful is rare.
    assert poisson_tail(8, 0.5) == pytest.approx(6.2197e-8, rel=1e-4, abs=0)
    assert poisson_tail(30, 0.5) == pytest.approx(2.1645e-42, rel=1e-3, abs=0)
    assert poisson_tail(3, 0.0) == 0.0
    assert poisson_tail(12, 10.0) == pytest.approx(0.3032, abs=1e-3)


def test_a_category_far_above_its_own_baseline_warns_and_the_usual_does_not():
    now = 500_000
    hourly = {}
    for day in range(1, 8):                 # the 7 days before: 10 a day of roads, 0 of gas
        hourly[now - 24 * day] = {"road_traffic": 10}
    hourly[now] = {"road_traffic": 12, "utilities_incident": 9, "landscaping": 3,
                   "unclassified": 400}
    found = warnings(hourly, now)
    assert [w.category for w in found] == ["utilities_incident"]
    [w] = found
    assert (w.observed, w.baseline) == (9, analysis.LAMBDA_FLOOR) and w.p < 1e-3
    # 3 is below the least count; 12 against a mean of 10 is ordinary; nobody classifying is
    # no matter of its own.
    hourly[now]["road_traffic"] = 25                 # 2.5 times its mean: P ~ 2e-5
    assert {w.category for w in warnings(hourly, now)} == {"utilities_incident", "road_traffic"}
    # Hours older than the baseline do not count.
    assert warnings({now - 24 * 9: {"x": 50}}, now) == []


def test_figures_by_dimension_area_and_repeat_caller():
    day = datetime(2026, 12, 3, 17, 30, tzinfo=timezone.utc)     # 01:30 on the 4th in Shanghai
    recs = [record("public_facilities", address="人民路12号3栋", at=day),
            record("public_facilities", address="人民路 88 号", at=day, number="13900139000"),
            record("consumer_rights", origin="110", target="12345", address="建设小区5幢",
                   at=day),
            record("road_traffic", at=day, emergency=True, number="13900139000"),
            record(None, origin="online", target="12345", at=day, number="13900139000")]
    figures = summarize(recs, ("category", "day", "direction"), SHANGHAI,
                        disputes=frozenset({"consumer_rights"}), repeat_min=3)
    assert figures.records == 5 and figures.emergencies == 1
    assert figures.counts[0] == {"category": "public_facilities", "day": "2026-12-04",
                                 "direction": "12345→110", "count": 2}
    assert {"category": "unclassified", "day": "2026-12-04", "direction": "online→12345",
            "count": 1} in figures.counts
    assert figures.hotspots[0] == {"area": "人民路", "count": 2,
                                   "categories": {"public_facilities": 2}}
    assert figures.repeat_callers == [{"caller_number": "13900139000", "count": 3, "categories": {
        "public_facilities": 1, "road_traffic": 1, "unclassified": 1}}]
    assert [d["direction"] for d in figures.disputes] == ["110→12345"]
    hours = summarize(recs, ("hour", "channel"), SHANGHAI)
    assert {"hour": "01", "channel": "online", "count": 1} in hours.counts
    with pytest.raises(ValueError, match="'weekday' is not one of"):
        summarize(recs, ("weekday",), SHANGHAI)
    assert area("  ") is None and area("解放大道1号") == "解放大道" and area("某处") == "某处"


# --- on the lab ---------------------------------------------------------------------------------

@pytest.mark.lab
def test_the_analysis_api_and_an_early_warning_from_records(stack):  # noqa: F811
    from test_sidecar import publish_matters

    caller = f"1390000{uuid.uuid4().int % 10000:04d}"
    # 7 of a category the lab never sees otherwise: far above its baseline.
    publish_matters(stack, ["landscaping"] * 7, caller, "行道树倒伏", "绿化路")
    status, figures = stack.api("GET", f"/analysis?by=category,direction&from="
                                       f"{time.time() - 3600}&top=50")
    assert status == 200, figures
    row = next(r for r in figures["counts"] if r["category"] == "landscaping")
    assert row == {"category": "landscaping", "direction": "110→12345", "count": 7}
    assert {"area": "绿化路", "count": 7, "categories": {"landscaping": 7}} in figures["hotspots"]
    assert any(r["caller_number"] == caller and r["count"] == 7
               for r in figures["repeat_callers"])
    # The early warning: raised once (the sidecar looks every second in the test lab).
    alerts = stack.wait(lambda: [w["event"]["data"] for w in stack.webhooks()
                                 if w["event"]["event"] == "early_warning"
                                 and w["event"]["data"]["category"] == "landscaping"], 15,
                        "the early_warning alert")
    assert alerts[0]["observed"] >= 7 and alerts[0]["p"] < 1e-3
    assert any(w["category"] == "landscaping" for w in figures["warnings"]) or \
        any(w["category"] == "landscaping"
            for w in stack.api("GET", "/analysis")[1]["warnings"])
    time.sleep(2.5)
    assert len([w for w in stack.webhooks() if w["event"]["event"] == "early_warning"
                and w["event"]["data"]["category"] == "landscaping"]) == 1
    # The counts as CSV; a bad dimension named.
    host, port = stack.settings.sidecar.listen
    auth = {"Authorization": f"Bearer {stack.settings.sidecar.token}"}
    req = urllib.request.Request(f"http://{host}:{port}/analysis?by=category&format=csv",
                                 headers=auth)
    with urllib.request.urlopen(req, timeout=10) as resp:
        lines = resp.read().decode().splitlines()
    assert lines[0] == "category,count" and any(line.startswith("landscaping,") for line in lines)
    status, body = stack.api("GET", "/analysis?by=weekday")
    assert status == 400 and "'weekday' is not one of" in body["error"]
    status, body = stack.api("GET", f"/analysis?from={time.time() - 40 * 86400}")
    assert status == 400 and "31 days" in body["error"]
