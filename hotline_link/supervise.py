"""``hotline-link run --lab``: the service and the sidecar as two processes, each restarted when it
exits, so that a crash, hang or bug in one never stops the other (a sidecar that dies leaves calls
and keys alone; a service that dies leaves the callers to degraded mode until it is back).

A child that exits is started again after a backoff that grows while it keeps failing fast
(1 s, 2 s, 4 s … 30 s) and resets once it has run for a minute; each exit is logged with its code
or signal. SIGINT/SIGTERM stop both children (SIGTERM, then SIGKILL after 10 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time

import structlog

log = structlog.get_logger("supervise")

BACKOFF_MAX = 30.0
HEALTHY_AFTER = 60.0


def _why(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


async def _keep_running(name: str, argv: list[str]) -> None:
    backoff = 1.0
    while True:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL)
        log.info("child started", child=name, pid=proc.pid)
        try:
            code = await proc.wait()
        except asyncio.CancelledError:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()
            raise
        ran = time.monotonic() - started
        if ran >= HEALTHY_AFTER:
            backoff = 1.0
        log.error("child stopped; restarting", child=name, pid=proc.pid, why=_why(code),
                  ran_s=round(ran, 1), restart_in_s=backoff)
        await asyncio.sleep(backoff)
        backoff = min(BACKOFF_MAX, backoff * 2)


def children(config: str | None, instances: list[str] = ()) -> dict[str, list[str]]:
    """One service process, or one per hot-standby instance (``ha.instances``), and the sidecar."""
    base = [sys.executable, "-m", "hotline_link.cli", *(["-c", config] if config else [])]
    services = ({f"service-{name}": [*base, "run", "--instance", name] for name in instances}
                or {"service": [*base, "run"]})
    return {**services, "sidecar": [*base, "sidecar"]}


async def supervise(config: str | None, instances: list[str] = ()) -> None:
    """Run until cancelled (the caller's signal handling cancels it)."""
    tasks = [asyncio.create_task(_keep_running(name, argv), name=name)
             for name, argv in children(config, instances).items()]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
