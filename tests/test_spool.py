"""The record spool on its own (no Redis): what waits there for the stream."""

from __future__ import annotations

import asyncio
import json

import structlog

from hotline_link.outcomes import RecordSink


def test_a_second_record_of_one_attempt_does_not_overwrite_the_first_while_both_wait(tmp_path):
    """A restart that carried on an attempt already recorded (its record still spooled, Redis
    away) records it again: the first record stands, as the stream's claim keeps it there."""
    sink = RecordSink(redis=None, spool_dir=tmp_path)
    asyncio.run(sink.keep({"transfer_id": "T1", "result": "accepted_by_origin"}))
    with structlog.testing.capture_logs() as logs:
        asyncio.run(sink.keep({"transfer_id": "T1", "result": "fallback_unreachable"}))
    assert [(e["event"], e["result"]) for e in logs] == [
        ("outcome already spooled; kept the first", "fallback_unreachable")]
    [path] = tmp_path.glob("*.json")
    assert json.loads(path.read_text())["result"] == "accepted_by_origin"
    assert sink.spooled() == 1
