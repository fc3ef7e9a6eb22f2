"""The matter a call is about (R1–R3): what the agent's desktop tags a live call with, so that it
travels with every transfer (headers, screen-pop, outcome record, both tickets) and the receiving
agent need not ask the caller again. Pure: ``parse`` checks a desktop's body against the catalog
and gives the stored matter (``config/matter.schema.json``) or every problem, each naming its
field.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from .catalog import Catalog

SCHEMA = 1
LIMITS = {"summary": 500, "address": 200, "caller_name": 50, "agent": 64}
FIELDS = ("category", "summary", "address", "location", "caller_name", "emergency", "agent")


def parse(body: dict, *, call_id: str, hotline: str, hotlines: tuple[str, ...],
          catalog: Catalog, previous: dict | None = None,
          now: datetime | None = None) -> tuple[dict | None, list[str]]:
    """(the matter to store, []) or (None, problems). A matter replaces the previous one of the
    call whole, keeping its id (the id the other side already has)."""
    problems = []
    if hotline not in hotlines:
        problems.append(f"hotline: must be one of {', '.join(hotlines)}")
    unknown = sorted(set(body) - set(FIELDS) - {"hotline"})
    if unknown:
        problems.append(f"{', '.join(unknown)}: unknown field(s); a matter has "
                        f"{', '.join(FIELDS)}")
    category = body.get("category")
    if category is not None and (not isinstance(category, str) or category not in catalog.by_code):
        problems.append(f"category: {category!r} is not a matter code of the catalog "
                        f"(hotline-link check-catalog lists them)")
    for name, limit in LIMITS.items():
        value = body.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > limit
                                  or any(c in value for c in "\r\n\0")):
            problems.append(f"{name}: text of at most {limit} characters on one line")
    location = body.get("location")
    if location is not None and not _valid_location(location):
        problems.append("location: {\"lat\": -90..90, \"lon\": -180..180} (WGS 84 degrees)")
    emergency = body.get("emergency", False)
    if not isinstance(emergency, bool):
        problems.append("emergency: true or false")
    if problems:
        return None, problems
    when = (now or datetime.now(timezone.utc)).isoformat(timespec="milliseconds")
    matter = {
        "schema": SCHEMA,
        "matter_id": (previous or {}).get("matter_id") or uuid.uuid4().hex,
        "call_id": call_id,
        "category": category,
        "summary": body.get("summary") or "",
        "address": body.get("address") or "",
        "location": ({"lat": float(location["lat"]), "lon": float(location["lon"])}
                     if location is not None else None),
        "caller_name": body.get("caller_name") or "",
        "emergency": emergency,
        "updated_at": when,
        "updated_by": {"hotline": hotline, "agent": body.get("agent")},
    }
    return matter, []


def _valid_location(location) -> bool:
    if not isinstance(location, dict) or set(location) != {"lat", "lon"}:
        return False
    lat, lon = location["lat"], location["lon"]
    return (all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lat, lon))
            and -90 <= lat <= 90 and -180 <= lon <= 180)
