"""Where the app's CPU goes under load: py-spy samples the running service (on-CPU samples
only, not the time it waits in epoll), and the stacks are sorted into the layers a transferred
call goes through.

A sample counts for every layer its stack passes through (inclusive), so the shares do not add up
to 100 %: a log line written while an ARI event is handled counts for both. ``leaf`` is the
function that was on the CPU (self time), by share of samples.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

CALL_RECORDS = "call records (ari_app/calls.py, transfer/callrecord.py)"
SINK = "records sink, outcomes and call records (hotline_link/outcomes.py)"
# Layer -> what one of a stack's frames contains; py-spy writes a frame as
# "Class.function (package/module.py:line)".
LAYERS = {
    "ARI REST requests (ari_app/client.py)": ("AriClient.request (", "AriClient._ws_request ("),
    "ARI events in (WebSocket read, JSON)": ("AriClient.events (",),
    "Redis client (redis.asyncio)": ("(redis/",),
    "logging (structlog)": ("(structlog/",),
    "event handlers (ari_app/)": ("(ari_app/app.py", "(ari_app/delivery.py",
                                  "(ari_app/transfers.py", "(ari_app/interpreter.py"),
    "state machines (transfer/)": ("(transfer/",),
    SINK: ("(hotline_link/outcomes.py",),
    CALL_RECORDS: ("(ari_app/calls.py", "(transfer/callrecord.py"),
    "FastAGI (agi/)": ("(agi/",),
    "asyncio event loop itself": ("(asyncio/base_events.py", "(asyncio/events.py",
                                  "(selectors.py"),
}


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen | None:
    """Sample ``pid`` and its children for ``seconds`` in the background (None: no py-spy)."""
    tool = py_spy()
    if tool is None:
        return None
    return subprocess.Popen([tool, "record", "--pid", str(pid), "--subprocesses",
                             "--duration", str(max(1, int(seconds))), "--rate", "250",
                             "--format", "raw", "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen | None, out: Path) -> dict | None:
    if proc is None:
        return {"error": "py-spy is not installed (pip install py-spy)"}
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return {"error": "py-spy did not finish"}
    if not out.exists():
        return {"error": f"py-spy wrote nothing: {err.strip()[-300:]}"}
    return summarize(out.read_text())


def summarize(raw: str) -> dict:
    """Collapsed stacks (``frame;frame;... count`` per line, outermost first) -> shares."""
    total = 0
    layers: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        leaves[_short(frames[-1])] += n
        for layer, marks in LAYERS.items():
            if any(mark in frame for frame in frames for mark in marks):
                layers[layer] += n
    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "layers_inclusive": {k: round(v / total, 3) for k, v in layers.most_common()},
        "top_leaf_functions": [{"function": k, "share": round(v / total, 3)}
                               for k, v in leaves.most_common(15)],
    }


def _short(frame: str) -> str:
    """``Class.function (module.py)``: the line number taken off, so one function is one row."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name
