"""Call-centre KPIs from call records, without Redis: what a record adds, what a window sums."""

from __future__ import annotations

from transfer import kpi

T = kpi.Thresholds(short_abandon=5.0, service_level=20.0)


def rec(disposition: str, wait_s: float, answered: bool | None = None) -> dict:
    answered = disposition in ("answered", "transferred") if answered is None else answered
    return {"disposition": disposition, "wait_ms": int(wait_s * 1000),
            "answered_at": "2026-12-03T10:00:00+00:00" if answered else None}


def add(minutes: dict, minute: int, record: dict) -> None:
    counts = minutes.setdefault(minute, {})
    for name, n in kpi.contributions(record, T).items():
        counts[name] = counts.get(name, 0) + n


def test_a_scripted_mix_gives_the_rates_centres_compute():
    minutes: dict = {}
    for wait in (3, 8, 15, 19, 25, 40, 70, 100):            # 8 answered, 4 within 20 s
        add(minutes, 100, rec("answered", wait))
    add(minutes, 100, rec("transferred", 10))                # answered here, then transferred
    add(minutes, 101, rec("abandoned", 2))                   # a short abandon
    add(minutes, 101, rec("abandoned", 30))
    add(minutes, 101, rec("refused", 0))
    s = kpi.summary(kpi.window(minutes, 101, 15))
    assert (s["offered"], s["answered"], s["abandoned"], s["abandoned_short"]) == (12, 9, 2, 1)
    assert (s["transferred"], s["refused"], s["lost"]) == (1, 1, 0)
    assert s["answer_rate"] == round(9 / 12, 4)
    assert s["answer_rate_excluding_short_abandons"] == round(9 / 11, 4)
    assert s["service_level"] == round(5 / 9, 4)
    assert s["mean_wait_s"] == round((3 + 8 + 15 + 19 + 25 + 40 + 70 + 100 + 10) / 9, 3)
    assert s["p90_wait_s_at_most"] == 120                    # 9th of 9 waited 100 s: <= 120


def test_windows_count_by_arrival_minute():
    minutes: dict = {}
    add(minutes, 1000, rec("answered", 5))                   # 61 minutes before 1061
    add(minutes, 1040, rec("abandoned", 40))
    add(minutes, 1061, rec("answered", 5))
    assert kpi.summary(kpi.window(minutes, 1061, 15))["offered"] == 1
    assert kpi.summary(kpi.window(minutes, 1061, 60))["offered"] == 2
    assert kpi.summary(kpi.window(minutes, 1061, 1440))["offered"] == 3


def test_nothing_offered_says_none_rather_than_zero():
    s = kpi.summary(kpi.window({}, 5, 15))
    assert s["offered"] == 0 and s["answer_rate"] is None and s["p90_wait_s_at_most"] is None


def test_a_wait_beyond_the_histogram_gives_no_invented_percentile():
    minutes: dict = {}
    add(minutes, 1, rec("answered", 900))
    assert kpi.summary(kpi.window(minutes, 1, 15))["p90_wait_s_at_most"] is None
