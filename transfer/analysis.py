"""Joint analysis of the matters both centres handled (R13): how many of what, where, who calls
again and again, and which matters rise above their own baseline (early warning). Pure: the
sidecar reads the records and the hourly counters, this says what they show.

Early warning: for each matter category, the count of the last 24 hours is compared with the
same category's previous ``BASELINE_DAYS`` days. Counts of independent calls in an interval are
Poisson; a rolling mean + k·σ misfires on the small counts most categories have (a category seen
0, 0, 1, 0, 0, 0, 0 times has σ ≈ 0.35, and any 2 would be "6 σ"). So: with λ the baseline's daily
mean (at least ``LAMBDA_FLOOR``, a category never seen before is not certain to stay at zero),
a category warns when P(X ≥ observed | λ) < ``p`` and the observed count is at least
``min_count``: rare enough to be unlikely by chance, and enough calls to be worth a look.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo

BASELINE_DAYS = 7
LAMBDA_FLOOR = 0.5
UNCLASSIFIED = "unclassified"
DIMENSIONS = ("category", "day", "hour", "origin", "target", "direction", "result", "channel")
# Where an address names its area: the text up to a road, street, lane, village, estate or
# community (the house number and flat after it are the caller's own, not the area's).
AREA = re.compile(r"^(.*?(?:大道|路|街|巷|胡同|村|小区|社区|花园|新村|苑|里|弄))")


def poisson_tail(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam)."""
    if k <= 0:
        return 1.0
    if k > lam:
        # Summed upwards from k: the tiny tails the warning is about, without 1 - (almost 1).
        term = math.exp(k * math.log(lam) - lam - math.lgamma(k + 1)) if lam > 0 else 0.0
        tail, i = 0.0, k
        while term > tail * 1e-17 and term > 0:
            tail += term
            i += 1
            term *= lam / i
        return min(1.0, tail)
    term = math.exp(-lam)
    below = term
    for i in range(1, k):
        term *= lam / i
        below += term
    return max(0.0, 1.0 - below)


@dataclass(frozen=True)
class EarlyWarning:
    category: str
    observed: int                 # in the last 24 h
    baseline: float               # daily mean over the baseline days
    p: float                      # P(X >= observed) under the baseline

    def to_dict(self) -> dict:
        return {"category": self.category, "observed": self.observed,
                "baseline_per_day": round(self.baseline, 3), "p": float(f"{self.p:.3g}")}


def warnings(hourly: Mapping[int, Mapping[str, int]], now_hour: int, p: float = 1e-3,
             min_count: int = 5) -> list[EarlyWarning]:
    """The categories rising above their baseline. ``hourly``: hour since the epoch -> category
    -> count (the sidecar's counters); ``now_hour``: the current hour, counted in the last day."""
    recent: Counter = Counter()
    before: Counter = Counter()
    for hour, counts in hourly.items():
        age = now_hour - hour
        if 0 <= age < 24:
            recent.update(counts)
        elif 24 <= age < 24 * (BASELINE_DAYS + 1):
            before.update(counts)
    out = []
    for category, observed in recent.items():
        # More records nobody classified is a matter for the recommender, not a hotspot.
        if observed < min_count or category == UNCLASSIFIED:
            continue
        lam = max(before.get(category, 0) / BASELINE_DAYS, LAMBDA_FLOOR)
        tail = poisson_tail(observed, lam)
        if tail < p:
            out.append(EarlyWarning(category, observed, lam, tail))
    return sorted(out, key=lambda w: w.p)


def when(record: Mapping) -> datetime:
    stamps = record.get("timestamps") or {}
    text = stamps.get("ended") or stamps.get("requested") or ""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return datetime.fromtimestamp(0, timezone.utc)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def facts(record: Mapping, tz: tzinfo) -> dict[str, str]:
    """One record's value of each dimension (days and hours in the centres' time zone)."""
    local = when(record).astimezone(tz)
    origin, target = record.get("origin") or "-", record.get("target") or "-"
    return {"category": record.get("category") or UNCLASSIFIED,
            "day": local.strftime("%Y-%m-%d"), "hour": local.strftime("%H"),
            "origin": origin, "target": target, "direction": f"{origin}→{target}",
            "result": record.get("result") or "-",
            "channel": "online" if origin == "online" else "phone"}


def area(address: str | None) -> str | None:
    """The area an address names (its text up to the road, street or estate), or None."""
    text = re.sub(r"\s+", "", address or "")
    if not text:
        return None
    m = AREA.match(text)
    return m[1] if m else text[:12]


@dataclass
class Figures:
    """What a set of records shows (``summarize``)."""
    records: int
    counts: list[dict]            # {<dimension>: value, ..., "count": n}, largest first
    hotspots: list[dict]          # {"area", "count", "categories": {code: n}}
    repeat_callers: list[dict]    # {"caller_number", "count", "categories": {code: n}}
    emergencies: int
    disputes: list[dict]          # records of the dispute categories: who passed what to whom


def summarize(records: Iterable[Mapping], by: tuple[str, ...], tz: tzinfo,
              disputes: frozenset[str] = frozenset(), top: int = 20,
              repeat_min: int = 3) -> Figures:
    for dim in by:
        if dim not in DIMENSIONS:
            raise ValueError(f"by: {dim!r} is not one of {', '.join(DIMENSIONS)}")
    counts: Counter = Counter()
    areas: dict[str, Counter] = {}
    callers: dict[str, Counter] = {}
    emergencies = 0
    dispute_rows = []
    n = 0
    for record in records:
        n += 1
        f = facts(record, tz)
        counts[tuple(f[d] for d in by)] += 1
        matter = record.get("matter") or {}
        if (a := area(matter.get("address"))) is not None:
            areas.setdefault(a, Counter())[f["category"]] += 1
        number = record.get("caller_number")
        if number:
            callers.setdefault(number, Counter())[f["category"]] += 1
        emergencies += bool(record.get("emergency"))
        if f["category"] in disputes:
            dispute_rows.append({"transfer_id": record.get("transfer_id"),
                                 "category": f["category"], "direction": f["direction"],
                                 "result": f["result"], "at": when(record).isoformat()})
    rows = [{**dict(zip(by, key)), "count": c}
            for key, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    hot = sorted(areas.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:top]
    again = sorted(((num, c) for num, c in callers.items() if sum(c.values()) >= repeat_min),
                   key=lambda kv: (-sum(kv[1].values()), kv[0]))[:top]
    return Figures(
        records=n, counts=rows,
        hotspots=[{"area": a, "count": sum(c.values()), "categories": dict(c.most_common())}
                  for a, c in hot],
        repeat_callers=[{"caller_number": num, "count": sum(c.values()),
                         "categories": dict(c.most_common())} for num, c in again],
        emergencies=emergencies, disputes=dispute_rows[-top * 5:])
