"""Call records: one per call offered to a hotline, whatever became of it (R8's counts: offered,
answered, abandoned, how long callers waited). Pure: the delivery machine says when a call ends
and how (``delivery.CallEnded``); this turns its ``Call`` into the record
(``config/call-record.schema.json``) and back from the note kept while the call is live.

Times: the machine counts in monotonic seconds; ``offset`` (wall clock minus monotonic clock,
taken by the caller) turns them into the wall-clock times a record carries.

The note (``OPEN_CALLS``, written by the adapter whenever the call's facts change) is what lets
a call that ends while no instance watches (killed, a takeover) still be counted once, by the
instance that finds it gone, and lets one that is still live keep its arrival time and agents.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from contracts import sip
from contracts.vocab import DeliveredBy, Disposition, EndedBy

from .delivery import Call, CallState

SCHEMA = 1


def _iso(mono: float | None, offset: float) -> str | None:
    if mono is None:
        return None
    return datetime.fromtimestamp(mono + offset, timezone.utc).isoformat(timespec="milliseconds")


def _ms(a: float | None, b: float | None) -> int | None:
    return None if a is None or b is None else max(0, round((b - a) * 1000))


def note(call: Call, hotline: str, offset: float) -> dict:
    """What is known of a live call, for ``OPEN_CALLS``."""
    h = call.headers
    return {
        "schema": SCHEMA, "call_id": call.call_id, "hotline": hotline, "caller": call.caller,
        "caller_number": call.number,
        "arrived_at": _iso(call.arrived, offset), "answered_at": _iso(call.agent_at, offset),
        "agents": list(call.agents), "transfers": list(call.transfers),
        "transfer_in": ({"transfer_id": h[sip.TRANSFER_ID], "origin": h.get(sip.ORIGIN)}
                        if call.transferred_in else None),
        "remote_joined": call.remote_joined, "handed_off": call.handed_off,
        "queued": call.queued, "recovered": call.recovered,
    }


def _mono(iso: str | None, offset: float) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso).timestamp() - offset


def from_note(n: dict, offset: float) -> Call:
    """The call a note describes (for a record, or to carry its facts into a found call)."""
    transfer_in = n.get("transfer_in") or {}
    headers = ({sip.TRANSFER_ID: transfer_in["transfer_id"], sip.ORIGIN: transfer_in.get("origin")}
               if transfer_in.get("transfer_id") else {})
    return Call(caller=n["caller"], number=n.get("caller_number", ""), call_id=n["call_id"],
                arrived=_mono(n["arrived_at"], offset), state=CallState.ENDED,
                headers={k: v for k, v in headers.items() if v},
                agent_at=_mono(n.get("answered_at"), offset), agents=list(n.get("agents", [])),
                transfers=list(n.get("transfers", [])),
                remote_joined=bool(n.get("remote_joined")), handed_off=bool(n.get("handed_off")),
                queued=bool(n.get("queued")), recovered=bool(n.get("recovered")))


def record(call: Call, hotline: str, ended: float, ended_by: EndedBy,
           disposition: Disposition, offset: float) -> dict:
    """The call record of a call that ended."""
    out = note(call, hotline, offset)
    for internal in ("caller", "remote_joined", "handed_off", "queued"):
        del out[internal]
    waited_until = call.agent_at if call.agent_at is not None else ended
    out.update({
        "delivered_by": str(DeliveredBy.QUEUE if call.queued else DeliveredBy.APPLICATION),
        "ended_at": _iso(ended, offset), "ended_by": str(ended_by),
        "disposition": str(disposition),
        "wait_ms": _ms(call.arrived, waited_until),
        "talk_ms": _ms(call.agent_at, ended),
        "duration_ms": _ms(call.arrived, ended),
    })
    return out


# QUEUESTATUS values with which Queue() turned a caller away without ringing anyone.
QUEUE_REFUSALS = frozenset({"JOINEMPTY", "JOINUNAVAIL", "FULL", "LEAVEEMPTY", "LEAVEUNAVAIL"})


# What the dialplan's hangup handler knows of a queue call, in this order, comma-separated
# (``HOTLINE_RECORD`` in extensions.conf [hotline-queue-record]): the FastAGI "record" command's
# arguments, and the CDR userfield of a call no service took (``UNRECORDED``).
QUEUE_FIELDS = ("entry", "linkedid", "arrived", "answered", "ended", "agent", "ended_by",
                "queue_status", "transfer_id", "origin", "caller")
# The CDR userfield of a queue call whose record no FastAGI server took: the hotline, then the
# fields above ("hotline-link:unrecorded;hotline=110;record=queue,..."); ``hotline-link calls
# reconcile`` records them from the PBX's CDR.
UNRECORDED = "hotline-link:unrecorded"


def epoch(text: str) -> float | None:
    """A dialplan time (``${STRFTIME(,,%s.%3q)}``); None when empty or not a time."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def from_queue_fields(fields: list[str], hotline: str, *, now: float, call_id: str = "",
                      caller_number: str = "") -> dict:
    """``from_queue`` from the hangup handler's fields (``QUEUE_FIELDS``; missing ones empty).
    ``call_id`` and ``caller_number`` stand in where the fields lack them; ``now`` (epoch) for an
    end time the dialplan did not give."""
    f = dict(zip(QUEUE_FIELDS, [*fields, *[""] * len(QUEUE_FIELDS)]))
    ended = epoch(f["ended"]) or now
    # The dialplan names the caller or the agent; anything else, the PBX ended it.
    ended_by = EndedBy(f["ended_by"]) if f["ended_by"] in (EndedBy.CALLER, EndedBy.AGENT) \
        else EndedBy.PBX
    return from_queue(
        call_id=f["linkedid"] or call_id, hotline=hotline,
        caller_number=f["caller"] or caller_number,
        delivered_by=DeliveredBy.QUEUE if f["entry"] == "queue" else DeliveredBy.DEGRADED,
        arrived=epoch(f["arrived"]) or ended, answered=epoch(f["answered"]), ended=ended,
        agent=f["agent"] or None, ended_by=ended_by, queue_status=f["queue_status"],
        transfer_in={"transfer_id": f["transfer_id"], "origin": f["origin"] or None}
        if f["transfer_id"] else None)


def unrecorded(userfield: str) -> tuple[str, list[str]] | None:
    """(hotline, fields) of a CDR userfield written for a queue call no service took; None for
    any other userfield."""
    head, _, rest = userfield.partition(";hotline=")
    if head != UNRECORDED:
        return None
    hotline, sep, record = rest.partition(";record=")
    if not sep or not hotline:
        return None
    return hotline, record.split(",")


def from_queue(*, call_id: str, hotline: str, caller_number: str, delivered_by: DeliveredBy,
               arrived: float, answered: float | None, ended: float, agent: str | None,
               ended_by: EndedBy, queue_status: str, transfer_in: dict | None) -> dict:
    """The record of a call the centre's own Queue() delivered (or the queue in degraded mode),
    from what the dialplan knew when the caller's channel hung up. Times: epoch seconds."""
    if answered is not None:
        disposition = Disposition.ANSWERED
    elif queue_status in QUEUE_REFUSALS and transfer_in:
        disposition = Disposition.REFUSED
    else:
        disposition = Disposition.ABANDONED if ended_by == EndedBy.CALLER else Disposition.LOST
    arrived = min(arrived, ended)
    if answered is not None:
        answered = min(max(answered, arrived), ended)
    return {
        "schema": SCHEMA, "call_id": call_id, "hotline": hotline,
        "delivered_by": str(delivered_by), "caller_number": caller_number,
        "arrived_at": _iso(arrived, 0.0), "answered_at": _iso(answered, 0.0),
        "ended_at": _iso(ended, 0.0),
        "agents": [agent] if agent and answered is not None else [], "transfers": [],
        "transfer_in": transfer_in, "disposition": str(disposition), "ended_by": str(ended_by),
        "wait_ms": _ms(arrived, answered if answered is not None else ended),
        "talk_ms": _ms(answered, ended), "duration_ms": _ms(arrived, ended), "recovered": False,
    }
