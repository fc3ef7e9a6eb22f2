"""Event handling without I/O: a recorded ARI event stream replayed through the app's dispatcher
(``HotlineApp.handle``: the adapters, both state machines and the interpreter), on one core.

Recording (``python -m bench.events record``, the bench lab must be up) runs the service in this
process with three taps: every input of each app's dispatcher (ARI events, key timers, ticks),
every ARI REST answer, and ``uuid.uuid4`` made deterministic so that the ids the app makes up
(agent legs, transfer ids) come out the same when replayed. Meanwhile the lab's phones make
one-key transfers both ways and three-way calls. The result is ``bench/data/ari-events.jsonl.gz``.

Replaying (``python -m bench.events``, no lab needed) builds both apps again with the recorded
REST answers instead of Asterisk, a Redis that accepts and forgets, and an outcome sink that
counts; it feeds the recording through ``handle`` in its original order, many times over, and
reports events per second and the profile's top entries. Target (issue 7): >= 20,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gzip
import io
import itertools
import json
import logging
import pstats
import sys
import threading
import time
import uuid
from collections import defaultdict, deque
from pathlib import Path

import structlog

from ari_app import app as app_mod
from ari_app.client import _BY_STATUS, AriClient, AriHttpError, AriUnavailable
from hotline_link import settings as settings_mod

ROOT = Path(__file__).resolve().parent.parent
RECORDING = ROOT / "bench" / "data" / "ari-events.jsonl.gz"
TARGET = 20_000


@contextlib.contextmanager
def _deterministic_uuid4():
    """Ids the same in every round while inside; the real ``uuid.uuid4`` back after, for the
    rest of the process (a test session goes on to make ids that must not collide)."""
    counter = itertools.count(1)
    real = uuid.uuid4
    uuid.uuid4 = lambda: uuid.UUID(int=next(counter))
    try:
        yield
    finally:
        uuid.uuid4 = real


# --- recording --------------------------------------------------------------------------------

def record(config: Path, calls: int) -> Path:
    from bench.stack import Stack
    from hotline_link import service

    settings = settings_mod.load(config)
    desc = Stack.descriptor_of(config)
    log: list[dict] = []
    lock = threading.Lock()
    ids = _deterministic_uuid4()
    ids.__enter__()

    real_handle, real_request = app_mod.HotlineApp.handle, AriClient.request

    async def handle(self, event):
        if event.get("type") != app_mod.COMMAND:
            with lock:
                log.append({"k": "in", "h": self.hotline.id, "e": event})
        return await real_handle(self, event)

    async def request(self, method, path, *, params=None, json_body=None):
        status, body = 599, None                 # 599: Asterisk could not be reached
        try:
            body = await real_request(self, method, path, params=params, json_body=json_body)
            status = 200
            return body
        except AriHttpError as exc:
            status, body = exc.status, exc.message
            raise
        finally:
            with lock:
                log.append({"k": "rest", "app": self.app, "m": method, "p": path, "s": status,
                            "b": body})

    app_mod.HotlineApp.handle, AriClient.request = handle, request
    loop = asyncio.new_event_loop()
    job = loop.create_task(service.serve(settings))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    stack = Stack(config, desc)            # only for the phones: the service runs here
    try:
        stack.wait_until(stack.ari_connected, "in-process service")
        phones = stack.phones()
        for i in range(calls):
            three_way = i % 4 == 3
            caller, number, origin, target = ((phones.citizen, "12345", "12345", "110")
                                              if i % 2 == 0 else
                                              (phones.caller, "110", "110", "12345"))
            call = caller.dial(number)
            agent, leg = phones.ringing_agent(origin)
            leg.accept()
            leg.hears(call)
            leg.send_dtmf("*2" if three_way else "*1")
            far_agent, far_leg = phones.ringing_agent(target, timeout=8)
            far_leg.accept()
            call.hears(far_leg)
            if three_way:
                far_leg.send_dtmf("*7")
                # The target took the matter: the first agent leaves. Hanging up before that
                # records a caller who abandoned instead (and the replay test expects the take).
                leg.wait_ended(8)
                call.hears(far_leg)
            phones.lib.hang_up_all()
            stack.wait_quiet()
    finally:
        stack.close_phones()
        loop.call_soon_threadsafe(job.cancel)
        time.sleep(1.0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        ids.__exit__(None, None, None)
    RECORDING.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(RECORDING, "wt") as out:
        for item in log:
            out.write(json.dumps(item, ensure_ascii=False) + "\n")
    return RECORDING


# --- replay -----------------------------------------------------------------------------------

class _Forgetful:
    """A Redis that accepts every command and keeps nothing (pipelines too); a SET NX (the
    per-call transfer lock) succeeds, as it does for the only process there is."""

    ANSWERS = {"smembers": set(), "set": True, "hgetall": {}}

    def __getattr__(self, name):
        async def command(*args, **kwargs):
            return self.ANSWERS.get(name)
        return command

    def pipeline(self, *args, **kwargs):
        return _ForgetfulPipe()


class _ForgetfulPipe:
    """Each queued command answers as ``_Forgetful`` would, in order."""

    def __init__(self):
        self.queued: list[str] = []

    def __getattr__(self, name):
        def queue(*args, **kwargs):
            self.queued.append(name)
            return self
        return queue

    async def execute(self):
        return [_Forgetful.ANSWERS.get(name) for name in self.queued]


class _CountingSink:
    def __init__(self):
        self.records = 0
        self.last: list[dict] = []

    async def emit(self, record: dict) -> None:
        self.records += 1
        self.last.append(record)


def _load() -> list[dict]:
    with gzip.open(RECORDING, "rt") as f:
        return [json.loads(line) for line in f]


def without_announcements(settings):
    """The settings with no target announcing itself: the recorded stream predates caller
    announcements, so a replay that played them would make requests the recording never
    answered."""
    import dataclasses
    hotlines = {hid: dataclasses.replace(h, targets={
        tid: dataclasses.replace(t, announce=None) for tid, t in h.targets.items()})
        for hid, h in settings.hotlines.items()}
    return dataclasses.replace(settings, hotlines=hotlines)


class Replay:
    def __init__(self, settings, items: list[dict]):
        self.settings = without_announcements(settings)
        self.inputs = [(i["h"], i["e"]) for i in items if i["k"] == "in"]
        self.answers: dict[tuple, list] = defaultdict(list)
        for i in items:
            if i["k"] == "rest":
                self.answers[(i["app"], i["m"], i["p"])].append((i["s"], i["b"]))
        self.unanswered = 0
        self.requests = 0

    def _apps(self):
        sink = _CountingSink()
        apps = {}
        pending = {key: deque(v) for key, v in self.answers.items()}
        replay = self

        async def request(client, method, path, *, params=None, json_body=None):
            replay.requests += 1
            queue = pending.get((client.app, method, path))
            if not queue:
                replay.unanswered += 1
                return {"id": path.rsplit("/", 1)[-1]}
            # The last answer stands for any later identical request (a poll repeated more
            # often in this round than in the recording).
            status, body = queue.popleft() if len(queue) > 1 else queue[0]
            if status == 599:
                raise AriUnavailable(f"{method} {path}: recorded as unreachable")
            if status >= 400:
                raise _BY_STATUS.get(status, AriHttpError)(status, method, path, str(body))
            return body

        for hid, hotline in self.settings.hotlines.items():
            app = app_mod.HotlineApp(self.settings, hotline, _Forgetful(), sink, _CountingSink())
            app.ari.request = request.__get__(app.ari)
            apps[hid] = app
        return apps, sink

    async def once(self) -> int:
        with _deterministic_uuid4():
            self.requests = 0                 # ARI requests the apps made in this round
            apps, sink = self._apps()
            self.sink = sink
            for hid, event in self.inputs:
                await apps[hid].handle(event)
            for app in apps.values():          # deferred hang-ups and timers of this round
                await app.interpreter.calls.flush()      # the writers behind the calls (call
                await app.transfers.states.flush()       # notes, transfer states), counted here
                for task in list(app.interpreter.later):
                    task.cancel()
                for handle in app.interpreter.timers.values():
                    handle.cancel()
            return sink.records


async def _measure(replay: Replay, seconds: float) -> tuple[int, float, int]:
    rounds, started = 0, time.perf_counter()
    records = 0
    while time.perf_counter() - started < seconds:
        records = await replay.once()
        rounds += 1
    return rounds, time.perf_counter() - started, records


@contextlib.contextmanager
def quiet_logs():
    """Logging is I/O too: the replay runs with the service's loggers silent."""
    old = structlog.get_config()
    logging.disable(logging.CRITICAL)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    try:
        yield
    finally:
        structlog.configure(**old)
        logging.disable(logging.NOTSET)


def run(config: Path | None = None, lab_descriptor: dict | None = None,
        seconds: float = 5.0) -> dict:
    with quiet_logs():
        return _run(config, seconds)


def _run(config: Path | None, seconds: float) -> dict:
    settings = settings_mod.load(config or ROOT / "bench" / "lab.toml", secrets=False)
    replay = Replay(settings, _load())
    loop = asyncio.new_event_loop()
    loop.run_until_complete(replay.once())                 # warm up
    rounds, elapsed, records = loop.run_until_complete(_measure(replay, seconds))
    per_second = rounds * len(replay.inputs) / elapsed
    profiler = cProfile.Profile()
    profiler.enable()
    loop.run_until_complete(_measure(replay, 1.0))
    profiler.disable()
    loop.close()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(15)
    top = [line.strip() for line in text.getvalue().splitlines()
           if line.strip() and line.strip()[0].isdigit()][:15]
    return {
        "benchmark": "events", "command": "make bench",
        "figures": [
            {"name": "ARI events handled per second, one core, no I/O", "value": round(per_second),
             "unit": "events/s", "target": f">= {TARGET}", "met": per_second >= TARGET},
            # The stream is what Asterisk sends the app: only the event types it acts on (its
            # event filter). Per recorded call is the figure that compares across filters.
            {"name": "recorded calls (one transfer each) handled per second, one core, no I/O",
             "value": round(rounds * records / elapsed), "unit": "calls/s", "target": None,
             "met": None},
            # Each is an HTTP round trip to Asterisk: in the load benchmark most of the app's
            # CPU per call goes to them, not to handling events.
            {"name": "ARI requests per recorded call (both PBXs' apps)",
             "value": round(replay.requests / max(1, records), 1), "unit": "requests",
             "target": None, "met": None},
        ],
        "details": {"recording": str(RECORDING.relative_to(ROOT)),
                    "events_per_round": len(replay.inputs), "rounds": rounds,
                    "seconds": round(elapsed, 2), "outcome_records_per_round": records,
                    "rest_calls_not_in_recording": replay.unanswered,
                    "profile_top_by_own_time": top},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.events")
    parser.add_argument("action", nargs="?", choices=("replay", "record"), default="replay")
    parser.add_argument("--config", type=Path, default=ROOT / "bench" / "lab.toml")
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.action == "record":
        print(record(args.config, args.calls))
        return 0
    from bench.results import write_result

    result = run(args.config, None, args.seconds)
    write_result(result)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
