"""structlog set-up: JSON lines (or console when on a terminal), context variables merged first,
and phone numbers masked wherever they appear in a log event."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

# Caller numbers are personal data: keep the first 3 and last 2 digits, enough to tell calls apart
# in an incident review. Agent extensions (short numbers) stay readable.
_NUMBER_RE = re.compile(r"(?<![\w.])(\+?\d{3})(\d{2,})(\d{2})(?![\w.])")
NUMBER_FIELDS = {"caller", "caller_number", "number", "callerid", "from", "to"}


def mask_number(value: str) -> str:
    return _NUMBER_RE.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), value)


def _mask(_logger: Any, _name: str, event: dict) -> dict:
    for key, value in event.items():
        if isinstance(value, str) and (key in NUMBER_FIELDS or key == "event"):
            event[key] = mask_number(value)
    return event


def configure(level: str = "info", fmt: str = "auto") -> None:
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer = (structlog.dev.ConsoleRenderer() if fmt == "console"
                else structlog.processors.JSONRenderer(ensure_ascii=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _mask,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
