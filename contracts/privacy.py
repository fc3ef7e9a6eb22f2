"""Caller numbers are personal data: how they are masked, once, for the logs and for the API's
clients that do not own a record.

The first 3 and the last 2 digits stay, enough to tell calls apart in an incident review; agent
extensions (short numbers) and ids stay readable.
"""

from __future__ import annotations

import re
from typing import Any

_NUMBER_RE = re.compile(r"(?<![\w.])(\+?\d{3})(\d{2,})(\d{2})(?![\w.])")

# Fields that hold a phone number, in log events, records, matters and events.
NUMBER_FIELDS = frozenset({"caller", "caller_number", "number", "callerid", "from", "to",
                           "phone", "callback_number"})
# Free text an agent or a citizen typed, where a number may be written out.
TEXT_FIELDS = frozenset({"summary", "description", "note", "text"})
# A person's name: the surname stays (张*, as on a Chinese receipt).
NAME_FIELDS = frozenset({"caller_name"})


def mask_number(value: str) -> str:
    return _NUMBER_RE.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), value)


def mask_name(value: str) -> str:
    return value[:1] + "*" * (len(value) - 1)


def masked(value: Any) -> Any:
    """A copy of a JSON value with the numbers in its number and text fields, and the names in
    its name fields, masked at any depth (a record's matter, an event's transfer)."""
    if isinstance(value, dict):
        return {k: (mask_name(v) if k in NAME_FIELDS else mask_number(v))
                if isinstance(v, str) and (k in NUMBER_FIELDS or k in TEXT_FIELDS
                                           or k in NAME_FIELDS)
                else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value
