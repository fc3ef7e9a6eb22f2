"""The sidecar under faults (``make chaos``): kill -9 at random moments, and ticket systems that
answer 5xx or hang, all during one burst of outcome records. Afterwards every record is one ticket
on each platform, nothing was sent twice, nothing is pending and nothing was dead-lettered."""

from __future__ import annotations

import os
import random

import pytest

from contracts.names import OUTCOMES, OUTCOMES_DEAD, OUTCOMES_GROUP
from test_sidecar import STANDINS, _http, publish, stack, synthetic_record  # noqa: F401 - fixture

pytestmark = [pytest.mark.chaos, pytest.mark.lab]

BURST = int(os.environ.get("CHAOS_SIDECAR_BURST", "3000"))


@pytest.mark.timeout(900)
def test_kill_9_and_failing_platforms_during_a_burst(stack):  # noqa: F811 - the fixture
    rng = random.Random(7)
    records = [synthetic_record() for _ in range(BURST)]
    tids = {r["transfer_id"] for r in records}
    before = {pid: stack.stats(pid) for pid in STANDINS}
    dead_before = stack.redis.xlen(OUTCOMES_DEAD.key)
    publish(stack.redis, records)

    def mine(pid: str) -> list[str]:
        """The work order references (``<transfer id>:<platform>``) of this burst's tickets."""
        created = _http("GET", stack.base(pid) + "/_standin/created")[1]
        return [key for key, _at in created if key.rsplit(":", 1)[0] in tids]

    def synced(pid: str) -> int:
        # Only this burst's: records other chaos cases left in the stream are synced too.
        return len(mine(pid))

    # Faults at growing points of the burst: kills, errors and hangs, on either platform.
    for share in sorted(rng.sample(range(5, 95), 6)):
        stack.wait(lambda: synced("110") >= BURST * share // 100, 120, f"{share}% synced")
        fault = rng.choice(["kill", "error", "timeout"])
        if fault == "kill":
            stack.sidecar.kill()
            stack.sidecar.start()
        else:
            stack.fail(rng.choice(list(STANDINS)), fault, 3 if fault == "timeout" else 15)

    stack.wait(lambda: all(synced(pid) >= BURST for pid in STANDINS), 300, "the whole burst")
    for pid in STANDINS:
        stack.fail(pid, "none")
        keys = mine(pid)
        assert len(keys) == len(set(keys)) == BURST, f"{pid}: not one ticket per record"
        assert stack.stats(pid)["duplicates"] == before[pid]["duplicates"], f"{pid}: sent twice"
    # A record is acknowledged just after its last ticket exists (same handler, next step), so
    # the last few may still be pending the moment the last ticket shows: wait, don't race.
    stack.wait(lambda: stack.redis.xpending(OUTCOMES.key, OUTCOMES_GROUP)["pending"] == 0, 10,
               "every record acknowledged")
    dead = [(f[b"transfer_id"].decode(), f[b"reason"].decode())
            for _, f in stack.redis.xrange(OUTCOMES_DEAD.key)][dead_before:]
    assert not dead, f"dead-lettered: {dead[:5]}"
