"""Availability under our own failures (``make chaos``; scaled down in ``make chaos-quick``): the
service killed and kept down, the sidecar killed and kept down, Redis killed -9 and restarted,
Redis restarted empty. The invariants of the ``phones`` and ``outcomes`` fixtures hold after each:
no caller dropped, no channel or bridge left, every outcome once; every work order once."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

import test_transfer
from conftest import CONFIG, cli
from contracts.names import OUTCOMES
from test_degraded import degraded_connect
from test_sidecar import STANDINS, publish, stack, synthetic_record  # noqa: F401 - fixture

pytestmark = [pytest.mark.chaos, pytest.mark.lab]

SERVICE_DOWN_S = float(os.environ.get("CHAOS_SERVICE_DOWN_S", "30"))
SIDECAR_TRANSFERS = int(os.environ.get("CHAOS_SIDECAR_TRANSFERS", "10"))
REDIS_BURST = int(os.environ.get("CHAOS_REDIS_BURST", "2000"))


def one_transfer(phones, lab) -> str:
    """A 12345 -> 110 one-key transfer, answered and heard; returns its transfer id."""
    call, agent, far_agent, far_leg = test_transfer.transfer_by_key(
        phones, phones.citizen, "12345", "12345", "110")
    tid = far_leg.header("X-Hotline-Transfer-Id")
    far_leg.accept()
    call.hears(far_leg)
    phones.lib.hang_up_all()
    phones.lib.wait_for(lambda: not lab.leftovers(), 10, "both PBXs idle")
    return tid


def tickets_once(stack, tids: set[str], timeout: float = 60) -> None:
    """Every transfer in ``tids`` has exactly one ticket on each platform."""
    def keys(pid):
        created = stack.wait(lambda: _created(stack, pid), 5, "the stand-in's list")
        return [k for k, _ in created if k.rsplit(":", 1)[0] in tids]
    stack.wait(lambda: all(len(set(keys(pid))) == len(tids) for pid in STANDINS), timeout,
               f"tickets for all {len(tids)} transfers")
    for pid in STANDINS:
        got = keys(pid)
        assert len(got) == len(set(got)) == len(tids), f"{pid}: not one ticket per transfer"


def _created(stack, pid):
    from test_sidecar import _http
    return _http("GET", stack.base(pid) + "/_standin/created")[1]


def _redis_pid() -> int:
    from hotline_link import components, lab as lab_mod
    handle = lab_mod.Lab(components.load(CONFIG, secrets=False))
    return next(p.pid for p in handle._load_state() if p.name == "redis")


def start_redis(lab) -> None:
    """``lab start redis``, and the descriptor the later cases read made to match."""
    cli("lab", "start", "redis")
    lab.descriptor["redis"]["pid"] = _redis_pid()


@pytest.mark.timeout(max(300, SERVICE_DOWN_S * 8))
def test_service_killed_and_kept_down_while_calls_arrive(phones, outcomes, service, lab):
    """kill -9 of the service, down for CHAOS_SERVICE_DOWN_S while calls arrive at both hotlines
    and over the trunk: every caller reaches an agent and they hear each other. After the
    restart, a one-key transfer works."""
    routes = [(phones.citizen, "12345", "12345"), (phones.caller, "110", "110"),
              (phones.citizen, "110", "110")]
    service.kill()
    served = 0
    try:
        until = time.monotonic() + SERVICE_DOWN_S
        while time.monotonic() < until or served < len(routes):
            caller, number, hotline = routes[served % len(routes)]
            call, agent, leg = degraded_connect(phones, caller, number, hotline)
            assert agent in phones.agents[hotline]
            phones.lib.hang_up_all()
            phones.lib.wait_for(lambda: not lab.leftovers(), 10, "both PBXs idle")
            served += 1
    finally:
        service.start()
    assert outcomes.since_mark() == []
    one_transfer(phones, lab)
    [rec] = outcomes.wait(phones.lib)
    assert rec["result"] == "accepted"


@pytest.mark.timeout(600)
def test_sidecar_killed_and_kept_down_during_transfers(stack, phones, outcomes, lab):
    """Calls and keys do not need the sidecar: with it killed, transfers work and are
    recorded; once it is back, every work order is created once."""
    stack.sidecar.kill()
    try:
        tids = {one_transfer(phones, lab) for _ in range(SIDECAR_TRANSFERS)}
        records = outcomes.wait(phones.lib, count=len(tids))
        assert {r["transfer_id"] for r in records} == tids
    finally:
        stack.sidecar.start()
    tickets_once(stack, tids)


@pytest.mark.timeout(600)
def test_redis_kill_9_and_restart_during_transfers_and_a_burst(stack, phones, outcomes, lab):
    """Redis killed -9 while the sidecar works through a burst and a transfer is under way, and
    started again from its AOF: nothing acknowledged is lost, nothing is done twice."""
    records = [synthetic_record() for _ in range(REDIS_BURST)]
    burst = {r["transfer_id"] for r in records}
    publish(stack.redis, records)
    call, agent, leg = test_transfer.connect(phones, phones.citizen, "12345", "12345")
    os.kill(_redis_pid(), 9)
    try:
        leg.send_dtmf("*1")                      # the transfer goes on without Redis
        leg.wait_ended(5)
        far_agent, far_leg = phones.ringing_agent("110", timeout=8)
        tid = far_leg.header("X-Hotline-Transfer-Id")
        far_leg.accept()
        call.hears(far_leg)
    finally:
        time.sleep(0.5)
        start_redis(lab)
    phones.lib.hang_up_all()
    # The stream also holds the burst: the transfer's own record, exactly once.
    mine = lambda: [r for r in outcomes.since_mark() if r["transfer_id"] == tid]  # noqa: E731
    phones.lib.wait_for(mine, 20, "the transfer's record")
    [rec] = mine()
    assert rec["result"] == "accepted"
    tickets_once(stack, burst | {tid}, timeout=300)
    assert stack.sidecar.proc.poll() is None, "the sidecar died with Redis"


@pytest.mark.timeout(600)
def test_redis_restarted_empty(stack, phones, outcomes, lab, service):
    """Redis comes back without its data (as after a failover to a replica that lacked the last
    writes): service and sidecar stay up, recreate their streams and groups, keep serving calls,
    and raise an alert that names what could not be recovered."""
    tickets_once(stack, {one_transfer(phones, lab)})     # the sidecar has read the stream
    os.kill(_redis_pid(), 9)
    time.sleep(0.5)
    shutil.rmtree(Path(lab.descriptor["state_dir"]) / "redis" / "appendonlydir",
                  ignore_errors=True)
    start_redis(lab)
    alert = stack.wait(lambda: next((w["event"] for w in stack.webhooks()
                                     if w["event"]["event"] == "redis_data_lost"
                                     and w["event"]["data"]["stream"] == OUTCOMES.key),
                                    None), 30, "the redis_data_lost alert")
    assert alert["data"]["missing_keys"] and alert["data"]["not_recoverable"]
    assert service.proc.poll() is None and stack.sidecar.proc.poll() is None
    outcomes.mark = "0"                                  # the stream is new
    tid = one_transfer(phones, lab)
    [rec] = outcomes.wait(phones.lib, timeout=20)
    assert rec["transfer_id"] == tid
    tickets_once(stack, {tid})
