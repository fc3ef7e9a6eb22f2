"""A transfer's trail (``GET /transfers/{id}``): every step, from the key press to the last
word on its tickets, oldest first.

The call's own steps come from the outcome record the service wrote (its ``timestamps``:
requested, dialing, ringing, answered, bridged, conference, ended); the sidecar's are kept in the
list ``hotline:sidecar:trail:<transfer id>``, each written in the same Redis transaction as the
change it reports where there is one: a failed ticket request that will be retried, the tickets
created, each alert raised, a dead letter, each feedback relayed (and an escalation), each
overdue stage of supervision.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from contracts.names import TRAIL

CALL_STEPS = ("requested", "dialing", "ringing", "answered", "bridged", "conference", "ended")
# What each call step adds from the record.
_CALL_DETAIL = {"requested": ("mode", "trigger", "initiating_agent", "target"),
                "answered": ("answering_agent",),
                "ended": ("result", "detail", "decided_by")}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def entry(event: str, **fields) -> str:
    return json.dumps({"event": event, "at": now(), "by": "sidecar", **fields},
                      ensure_ascii=False)


def add(pipe, transfer_id: str, event: str, **fields) -> None:
    """Queue a step on ``pipe`` (a pipeline or the client itself)."""
    return pipe.rpush(TRAIL.format(transfer_id), entry(event, **fields))


def steps(record: dict, stored: list[bytes]) -> list[dict]:
    """The call's steps from its record and the sidecar's stored ones, in time order."""
    out = []
    stamps = record.get("timestamps") or {}
    for name in CALL_STEPS:
        if stamps.get(name):
            out.append({"event": name, "at": stamps[name], "by": "service",
                        **{k: record.get(k) for k in _CALL_DETAIL.get(name, ())}})
    for raw in stored:
        step = json.loads(raw)
        if isinstance(step.get("at"), (int, float)):        # written before steps had ISO times
            step["at"] = datetime.fromtimestamp(step["at"], timezone.utc).isoformat(
                timespec="milliseconds")
        step.setdefault("by", "sidecar")
        out.append(step)
    # Stable: a call step and the sidecar's step of the same millisecond keep their order.
    return sorted(out, key=lambda s: _when(s["at"]))


def _when(at: str) -> float:
    try:
        return datetime.fromisoformat(at).timestamp()
    except (TypeError, ValueError):
        return float("inf")
