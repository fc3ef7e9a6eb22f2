"""A process told to stop stops: ``until_signal`` cancels its jobs on SIGTERM, and with
``stop_within`` exits anyway when a job loses the cancellation (the sidecar once went on serving
for ten minutes after its SIGTERM, beside the sidecar that replaced it)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT

JOB = """
import asyncio, sys
from hotline_link.service import until_signal

async def job(swallow):
    print("ready", flush=True)
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if not swallow:
                print("cleaned up", flush=True)
                raise

within = float(sys.argv[2]) if len(sys.argv) > 2 else None
asyncio.run(until_signal(job(sys.argv[1] == "swallow"), stop_within=within))
print("stopped", flush=True)
"""


def _start(*args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", JOB, *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _stop(proc: subprocess.Popen, wait: float) -> tuple[int | None, float, str]:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=wait)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - started, ""
    return proc.returncode, time.monotonic() - started, out


def test_a_job_that_cleans_up_stops_at_once():
    code, _, out = _stop(_start("clean", "5"), 10)
    assert code == 0 and out.split() == ["cleaned", "up", "stopped"], out


@pytest.mark.parametrize("within", [1.0])
def test_a_job_that_loses_its_stop_is_ended_by_the_deadline(within):
    code, took, out = _stop(_start("swallow", str(within)), 10)
    assert code == 1, out
    assert within <= took < within + 4
    assert "not stopped within the deadline" in out and "stopped\n" not in out


def test_without_a_deadline_a_lost_stop_would_leave_the_process_running():
    proc = _start("swallow")
    try:
        code, _, _ = _stop(proc, 2)
        assert code is None and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
