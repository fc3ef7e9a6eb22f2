"""structlog set-up: JSON lines (or console when on a terminal), context variables merged first,
and phone numbers masked wherever they appear in a log event."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from contracts.privacy import NUMBER_FIELDS, mask_number


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
