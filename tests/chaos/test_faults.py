"""The fault suite (``make chaos``, its own lab ``tests/chaos/lab.toml``).

Each case keeps the invariants the ``phones`` and ``outcomes`` fixtures check after every test:
no caller dropped by us, no channel or bridge left on either PBX, every outcome recorded once.
Where the suite already has a scenario for a fault (``tests/test_transfer.py``,
``tests/test_three_way.py``), it is run again here, many times: a fault that only bites one
time in ten is found here, not in production. ``CHAOS_ROUNDS`` (default 5) sets how often.
"""

from __future__ import annotations

import os
import random
import signal

import pytest

import test_three_way
import test_transfer
from conftest import cli
from test_delivery import connect
from test_transfer import check_record

pytestmark = [pytest.mark.chaos, pytest.mark.lab]

ROUNDS = int(os.environ.get("CHAOS_ROUNDS", "5"))
REDIS_TRANSFERS = int(os.environ.get("CHAOS_REDIS_TRANSFERS", "100"))
REDIS_OUTAGE_S = float(os.environ.get("CHAOS_REDIS_OUTAGE_S", "30"))
DTMF_RUNS = int(os.environ.get("CHAOS_DTMF_RUNS", "500"))


# --- kill -9 of the ARI app in each transfer state, repeated ----------------------------------

@pytest.mark.parametrize("round_", range(ROUNDS))
def test_kill_9_while_the_target_rings(phones, outcomes, service, round_):
    test_transfer.test_app_killed_while_the_target_rings_completes_after_restart(
        phones, outcomes, service)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_kill_9_once_bridged(phones, outcomes, service, lab, round_):
    test_transfer.test_app_killed_after_the_transfer_keeps_the_call_and_cleans_up_at_hang_up(
        phones, outcomes, service, lab)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_kill_9_in_a_three_way_call(phones, outcomes, service, round_):
    test_three_way.test_app_killed_mid_conference_keeps_three_parties_and_keys_work_after_restart(
        phones, outcomes, service)


# --- PBXs stopped and restarted ----------------------------------------------------------------

@pytest.mark.parametrize("round_", range(ROUNDS))
def test_far_pbx_stopped_during_a_transfer_and_restarted(phones, outcomes, lab, round_):
    test_transfer.test_far_pbx_stopped_falls_back_as_unreachable(phones, outcomes, lab)
    # ... and once it is back (pbx_back: its agents reachable again), transfers to it work again.
    phones.lib.hang_up_all()
    phones.lib.wait_for(lambda: not lab.leftovers(), 10, "both PBXs idle")
    outcomes.reset_mark()
    test_transfer.test_12345_to_110_by_key(phones, outcomes)


def test_near_pbx_restarted_the_app_reconnects_and_works_again(phones, outcomes, lab):
    cli("lab", "stop", "asterisk-12345")
    try:
        assert not lab.ari["12345"].app_connected()
    finally:
        cli("lab", "start", "asterisk-12345")
    # The app reconnects with backoff; phones re-register on their own schedule, so wait for both.
    phones.lib.wait_for(lambda: lab.ari["12345"].app_connected(), 30, "the app to reconnect")
    for p in [phones.citizen, *phones.agents["12345"]]:
        p.reregister()
    call, agent, far_agent, far_leg = test_transfer.transfer_by_key(
        phones, phones.citizen, "12345", "12345", "110")
    far_leg.accept()
    call.hears(far_leg)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted")


# --- Redis away for a while during many transfers ---------------------------------------------

@pytest.mark.timeout(max(600, REDIS_TRANSFERS * 15))
def test_redis_stopped_for_a_while_during_many_transfers(phones, outcomes, lab):
    """Redis hangs (SIGSTOP) for ``CHAOS_REDIS_OUTAGE_S`` while transfers go on back to back:
    every call is served, and after Redis returns every transfer's record is there once."""
    import time

    pid = lab.descriptor["redis"]["pid"]
    done, stopped_at = 0, None
    os.kill(pid, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        while done < REDIS_TRANSFERS:
            if stopped_at is not None and time.monotonic() - stopped_at > REDIS_OUTAGE_S:
                os.kill(pid, signal.SIGCONT)
                stopped_at = None
            call, agent, far_agent, far_leg = test_transfer.transfer_by_key(
                phones, phones.citizen, "12345", "12345", "110")
            far_leg.accept()
            call.hears(far_leg)
            phones.lib.hang_up_all()
            phones.lib.wait_for(lambda: not lab.leftovers(), 10, "both PBXs idle")
            done += 1
    finally:
        os.kill(pid, signal.SIGCONT)
    records = outcomes.wait(phones.lib, count=done, timeout=60)
    ids = [r["transfer_id"] for r in records]
    assert len(ids) == len(set(ids)) == done, "a record was lost or written twice"
    assert all(r["result"] == "accepted" for r in records)


# --- DTMF fuzz ----------------------------------------------------------------------------------

KEYS = "0123456789*#"


def _digits(rng: random.Random) -> str:
    # Mostly plausible key codes (they start with *), sometimes noise.
    if rng.random() < 0.6:
        return "*" + rng.choice("0123456789") + (rng.choice("0123456789") if rng.random() < 0.3 else "")
    return "".join(rng.choice(KEYS) for _ in range(rng.randint(1, 4)))


@pytest.mark.timeout(max(600, DTMF_RUNS * 15))
def test_dtmf_fuzz(phones, outcomes, service, lab):
    """Random keys from the caller, the 12345 agent and whichever 110 agent gets involved, at
    random moments, ``CHAOS_DTMF_RUNS`` calls (seeded): after each call the PBXs are idle, the
    service is alive and connected, and no transfer was recorded twice."""
    rng = random.Random(20261129)
    for run in range(DTMF_RUNS):
        call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
        far_leg = None
        for _ in range(rng.randint(2, 6)):
            who = rng.choice(["caller", "agent", "far"])
            if who == "caller" and not call.ended:
                call.send_dtmf(_digits(rng))
            elif who == "agent" and not leg.ended:
                leg.send_dtmf(_digits(rng))
            elif who == "far":
                ringing = [c for p in phones.agents["110"] for c in p.ringing_calls()]
                if ringing and far_leg is None:
                    far_leg = ringing[0]
                    if rng.random() < 0.7:
                        far_leg.accept()
                    else:
                        far_leg.reject()
                        far_leg = None
                elif far_leg is not None and not far_leg.ended:
                    far_leg.send_dtmf(_digits(rng))
            phones.lib.sleep(rng.uniform(0.05, 0.8))
        phones.lib.hang_up_all()
        phones.lib.wait_for(lambda: not lab.leftovers(), 15, f"both PBXs idle after run {run}")
        assert service.proc.poll() is None, f"the service died in run {run}"
        assert all(a.app_connected() for a in lab.ari.values()), f"ARI app gone in run {run}"
    phones.lib.sleep(1.0)
    records = outcomes.since_mark()
    # The seeded keys start transfers (and out-of-scope marks): a fuzz that recorded nothing
    # checked nothing below.
    assert records, "the DTMF fuzz started no transfer"
    for rec in records:
        check_record(rec)             # the schema: what the sidecar would otherwise dead-letter
    ids = [r["transfer_id"] for r in records]
    assert len(ids) == len(set(ids)), "a transfer was recorded twice"
