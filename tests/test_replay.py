"""The recorded ARI stream of the event benchmark (``bench/data/ari-events.jsonl.gz``: real calls on
the lab: one-key transfers both ways and three-way calls) replayed through the app's
dispatcher without Asterisk: the same calls end the same way, every time."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from bench import events
from hotline_link import settings

ROOT = Path(__file__).resolve().parent.parent


def test_replaying_the_recorded_stream_reproduces_its_outcomes():
    real_uuid4 = uuid.uuid4
    replay = events.Replay(settings.load(ROOT / "bench" / "lab.toml", secrets=False),
                           events._load())
    for _ in range(2):
        with events.quiet_logs():
            assert asyncio.run(replay.once()) == 8
        results = [(r["origin"], r["target"], r["mode"], r["result"]) for r in replay.sink.last]
        assert results.count(("12345", "110", "blind", "accepted")) == 4
        assert results.count(("110", "12345", "blind", "accepted")) == 2
        assert sorted(r for r in results if r[2] == "three_way") == [
            ("110", "12345", "three_way", "accepted_by_target"),
            ("110", "12345", "three_way", "accepted_by_target")]
    # Every REST call the app made had its recorded answer: the replay did not drift.
    assert replay.unanswered == 0
    # The replay's ids are the same each round; the session's are random again after it (the
    # tests that follow in this process make transfers and requests whose ids must differ).
    assert uuid.uuid4 is real_uuid4 and uuid.uuid4() != uuid.uuid4()
