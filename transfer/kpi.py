"""Call-centre KPIs from call records, as centres count them (R8: 12345's answer rate >= 96 %,
>= 80 % over 24 h in a surge). Pure: what one record adds to its arrival minute's counters, and
what a window's summed counters say.

Counted by arrival minute (a call belongs to the window it arrived in):

* ``offered``: every call offered to the hotline;
* ``answered``: an agent of the hotline talked with the caller (also when the call was then
  transferred: it was answered, 接通, here);
* ``abandoned``: the caller hung up before any agent; ``abandoned_short`` of them within
  ``short_abandon`` seconds (a misdial, a caller who hears the queue and calls back), which
  centres leave out of the answer rate's base;
* ``transferred``, ``refused``, ``lost``, ``callback`` (asked to be called back from a surge's
  menu: a work order, not an abandon): the other dispositions;
* ``answered_in_sl``: answered within ``service_level`` seconds (the service level);
* ``wait_ms``: the answered calls' waits, summed (their mean); ``wait_le_<s>``: answered calls that
  waited at most <s> seconds (a histogram, for the 90th percentile).
"""

from __future__ import annotations

from dataclasses import dataclass

WAIT_BOUNDS_S = (5, 10, 20, 30, 60, 120, 300, 600)
COUNTS = ("offered", "answered", "abandoned", "abandoned_short", "transferred", "refused", "lost",
          "callback",
          "answered_in_sl", "wait_ms", *(f"wait_le_{b}" for b in WAIT_BOUNDS_S))
WINDOWS = {"15m": 15, "1h": 60, "24h": 1440}       # name -> minutes


@dataclass(frozen=True)
class Thresholds:
    short_abandon: float        # seconds
    service_level: float        # seconds


def minute_of(epoch_s: float) -> int:
    return int(epoch_s // 60)


def contributions(record: dict, t: Thresholds) -> dict[str, int]:
    """What one call record adds to its arrival minute's counters."""
    out = {"offered": 1}
    wait_s = (record.get("wait_ms") or 0) / 1000
    disposition = record.get("disposition")
    if record.get("answered_at"):
        out["answered"] = 1
        out["wait_ms"] = int(record.get("wait_ms") or 0)
        if wait_s <= t.service_level:
            out["answered_in_sl"] = 1
        for bound in WAIT_BOUNDS_S:
            if wait_s <= bound:
                out[f"wait_le_{bound}"] = 1
    if disposition == "abandoned":
        out["abandoned"] = 1
        if wait_s <= t.short_abandon:
            out["abandoned_short"] = 1
    elif disposition in ("transferred", "refused", "lost", "callback"):
        out[disposition] = 1
    return out


def window(minutes: dict[int, dict[str, int]], now_minute: int, span: int) -> dict[str, int]:
    """The counters of the ``span`` minutes up to and including ``now_minute``, summed."""
    total = dict.fromkeys(COUNTS, 0)
    for minute, counts in minutes.items():
        if now_minute - span < minute <= now_minute:
            for name, n in counts.items():
                if name in total:
                    total[name] += n
    return total


def summary(c: dict[str, int]) -> dict:
    """The KPIs of summed counters (rates as fractions, None where nothing was offered)."""
    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    answered = c["answered"]
    # The histogram's bound at or under which 90 % of the answered callers waited (None: nothing
    # answered, or beyond the last bound: no figure is invented).
    p90 = next((b for b in WAIT_BOUNDS_S if c[f"wait_le_{b}"] >= 0.9 * answered), None) \
        if answered else None
    return {
        **{k: c[k] for k in ("offered", "answered", "abandoned", "abandoned_short",
                             "transferred", "refused", "lost", "callback")},
        "answer_rate": ratio(answered, c["offered"]),
        "answer_rate_excluding_short_abandons": ratio(answered,
                                                      c["offered"] - c["abandoned_short"]),
        "service_level": ratio(c["answered_in_sl"], answered),
        "mean_wait_s": round(c["wait_ms"] / answered / 1000, 3) if answered else None,
        "p90_wait_s_at_most": p90,
    }


MIN_OFFERED = 20        # fewer calls in the hour say nothing about a rate


def answer_rate_low(k: dict, target: float, min_offered: int = MIN_OFFERED) -> bool:
    """Whether a window's KPIs call for ``answer_rate_low``."""
    return k["offered"] >= min_offered and k["answer_rate"] is not None and \
        k["answer_rate"] < target
