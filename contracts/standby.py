"""What the service's hot-standby keys say (``SERVICE_LEASE``, ``SERVICE_INSTANCES``), read the
same way by ``hotline-link status`` and the sidecar's ``/health``."""

from __future__ import annotations

import json


def holder_name(token: bytes | str | None) -> str | None:
    """The instance name in a lease token ``<instance>/<pid>/<random>`` (None: nobody)."""
    if token is None:
        return None
    if isinstance(token, bytes):
        token = token.decode(errors="replace")
    return token.split("/", 1)[0]


def view(token: bytes | str | None, entries: dict, now: float) -> dict:
    """``{"active": name | None, "instances": {name: {..., "stale": bool}}}``. An instance that
    has not written for three lease TTLs is stale: dead, frozen or cut off from Redis."""
    instances = {}
    for name, raw in sorted(entries.items()):
        name = name.decode() if isinstance(name, bytes) else name
        try:
            entry = json.loads(raw)
        except (TypeError, ValueError):
            continue
        entry["stale"] = now - float(entry.get("seen", 0)) > 3 * float(entry.get("lease_ttl", 5))
        instances[name] = entry
    return {"active": holder_name(token), "instances": instances}
