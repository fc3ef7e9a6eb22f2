"""Logs are JSON lines with the call context bound and caller numbers masked."""

from __future__ import annotations

import json

import structlog

from contracts.privacy import mask_number
from hotline_link.logs import configure


def test_mask_keeps_enough_to_tell_calls_apart():
    assert mask_number("13800138000") == "138******00"
    assert mask_number("+8613800138000") == "+861********00"
    assert mask_number("call from 13900139000 to 110") == "call from 139******00 to 110"
    assert mask_number("12345-a1") == "12345-a1"   # agent endpoints stay readable


def test_json_log_line_binds_context_and_masks_the_number(capsys):
    configure("info", "json")
    structlog.contextvars.bind_contextvars(transfer_id="t-1", call_id="c-1", hotline="12345")
    try:
        structlog.get_logger("x").info("caller arrived", caller="13800138000")
    finally:
        structlog.contextvars.clear_contextvars()
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["transfer_id"] == "t-1" and line["call_id"] == "c-1" and line["hotline"] == "12345"
    assert line["caller"] == "138******00"
    assert line["level"] == "info" and line["event"] == "caller arrived"
