"""The supervisors' wallboard under load (issue 20): how live it stays, and what serving it costs
the sidecar.

The sidecar runs as its own process on the bench lab. For ``SECONDS`` s, ``RATE`` transfers a
second end (outcome records appended as the service appends them) while both hotlines' gauges
change every second as the service writes them with ``CALLS`` calls in progress (half on each
hotline, some waiting, some in three-way calls). First with no screen open, then with one real
wallboard in headless Chromium and ``EXTRA_SCREENS`` more wall screens reading the same stream
(``GET /events``, as the page asks for it). Figures: from a record's append (its Redis entry id)
to the Chromium page having it (the page's own first-seen time), p50/p99, target p99 <= 1 s; the
same to the other screens' streams; every record reached every screen; and the sidecar's CPU
with the screens open against without them.

    python -m bench --only board       # or: python -m bench.board (the bench lab must be up)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
import uuid
from pathlib import Path

import aiohttp
import redis

from bench.procs import cpu_seconds
from bench.results import percentiles
from bench.sidecar import _record
from bench.stack import Stack, run_alone
from contracts.names import LIVE, LIVE_TTL, OUTCOMES
from sidecar import access

RATE = 20
SECONDS = 60
CALLS = 200
EXTRA_SCREENS = 9
TARGET_P99_MS = 1000


def _feed(r: redis.Redis, hotlines: list[str], stop: threading.Event,
          appended: dict[str, int]) -> None:
    """RATE records a second and each hotline's gauges every second, until ``stop``."""
    period = 1.0 / RATE
    next_at = time.monotonic()
    tick = 0
    while not stop.is_set():
        rec = _record()
        entry = r.xadd(OUTCOMES.key, {"transfer_id": rec["transfer_id"],
                                      OUTCOMES.field: json.dumps(rec)})
        appended[rec["transfer_id"]] = int(entry.decode().split("-")[0])
        tick += 1
        if tick % RATE == 0:
            for i, h in enumerate(hotlines):
                calls = CALLS // len(hotlines)
                r.set(LIVE.format(h), json.dumps({
                    "ari_connected": True, "waiting": (tick // RATE + i) % 12,
                    "longest_wait_s": float((tick // RATE) % 40), "calls": calls,
                    "agents_free": 3, "agents_busy": calls - 12, "agents_offline": 1,
                    "surge": False, "transfers": RATE, "three_way": (tick // RATE) % 7,
                    "at": time.time()}), ex=LIVE_TTL)
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))


async def _screen(base: str, token: str, seen: dict[str, int], stop: threading.Event) -> None:
    """One wall screen's stream: when each outcome arrived (epoch ms)."""
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(f"{base}/events?types=outcome,alert,hotline_status",
                               headers=headers) as resp:
            event = None
            while not stop.is_set():
                try:
                    line = await asyncio.wait_for(resp.content.readline(), 1.0)
                except asyncio.TimeoutError:
                    continue
                text = line.decode().rstrip("\n")
                if text.startswith("event: "):
                    event = text[7:]
                elif text.startswith("data: ") and event == "outcome":
                    tid = json.loads(text[6:])["transfer_id"]
                    seen.setdefault(tid, int(time.time() * 1000))


def _phase(r: redis.Redis, hotlines: list[str], pid: int, seconds: float, browser=None,
           base: str = "", token: str = "") -> dict:
    appended: dict[str, int] = {}
    stop = threading.Event()
    screens: list[dict[str, int]] = [{} for _ in range(EXTRA_SCREENS if browser else 0)]
    halt = threading.Event()

    async def read_all() -> None:
        await asyncio.gather(*(_screen(base, token, s, halt) for s in screens))
    readers = threading.Thread(target=lambda: asyncio.run(read_all()), daemon=True)
    if screens:
        readers.start()
        time.sleep(1.0)
    cpu0 = cpu_seconds(pid)
    t0 = time.monotonic()
    feeder = threading.Thread(target=_feed, args=(r, hotlines, stop, appended), daemon=True)
    feeder.start()
    page: dict[str, int] = {}
    while time.monotonic() - t0 < seconds:
        if browser is not None:
            # The page keeps every transfer of the last hour with when it first had it.
            for tid, seen in _seen(browser):
                page.setdefault(tid, seen)
        time.sleep(0.5)
    stop.set()
    feeder.join(5)
    time.sleep(2.0)                                 # the last records reach the screens
    if browser is not None:
        for tid, seen in _seen(browser):
            page.setdefault(tid, seen)
    wall = time.monotonic() - t0
    cpu = cpu_seconds(pid) - cpu0
    if screens:
        halt.set()
        readers.join(5)
    out = {"records": len(appended), "seconds": round(wall, 1),
           "sidecar_cores": round(cpu / wall, 3)}
    if browser is not None:
        out["page_ms"] = percentiles([page[t] - at for t, at in appended.items() if t in page])
        out["page_missed"] = len([t for t in appended if t not in page])
        latencies = [s[t] - at for s in screens for t, at in appended.items() if t in s]
        out["streams_ms"] = percentiles(latencies)
        out["streams_missed"] = sum(len([t for t in appended if t not in s]) for s in screens)
    return out


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1920,1080", "--disable-gpu"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def _open_board(browser, base: str, token: str) -> None:
    browser.get(f"{base}/board#token={token}")
    deadline = time.monotonic() + 20
    while not browser.execute_script(
            "return document.getElementById('connection').dataset.state === 'live'"):
        if time.monotonic() > deadline:
            raise RuntimeError("the wallboard did not go live")
        time.sleep(0.1)


def _seen(browser) -> list[list]:
    """What the page has: [transfer id, when it first had it (epoch ms)] per transfer."""
    return browser.execute_script(
        "return [...state.transfers.values()].map(r => [r.transfer_id, r.seen])")


class Watch:
    """A wallboard in Chromium, with the sidecar serving it, while something else makes the
    traffic: ``bench/load.py``'s real calls and transfers. ``figures()``: from each outcome record
    the service appended meanwhile (its Redis entry id) to the page having it, the records it
    never had, and the sidecar's CPU (syncing those records' tickets and serving the page)."""

    def __init__(self, config: Path, descriptor: dict):
        self.config, self.descriptor = config, descriptor
        self.settings = Stack.settings_of(config)
        self.name = f"bench-watch-{uuid.uuid4().hex[:6]}"
        self.page: dict[str, int] = {}
        self.halt = threading.Event()

    def __enter__(self) -> "Watch":
        host, port = self.settings.sidecar.listen
        clients = self.settings.sidecar.clients_file
        with contextlib.ExitStack() as undo:            # what is up so far, if the rest fails
            token = access.add(clients, self.name, "supervisor", None, self.settings.hotlines)
            undo.callback(access.revoke, clients, self.name)
            stack = undo.enter_context(Stack(self.config, self.descriptor, sidecar=True,
                                             service=False))
            self.browser = _browser()
            undo.callback(self.browser.quit)
            _open_board(self.browser, f"http://{host}:{port}", token)
            self.redis = redis.Redis.from_url(self.descriptor["redis"]["url"])
            undo.callback(self.redis.close)
            newest = self.redis.xrevrange(OUTCOMES.key, count=1)
            self.mark = newest[0][0].decode() if newest else "0-0"
            self.pid = stack.procs["sidecar"].pid
            self.cpu0, self.t0 = cpu_seconds(self.pid), time.monotonic()
            self.poller = threading.Thread(target=self._poll, daemon=True)
            self.poller.start()
            undo.callback(self.halt.set)
            self._undo = undo.pop_all()
        return self

    def _poll(self) -> None:
        while not self.halt.wait(0.5):
            for tid, seen in _seen(self.browser):
                self.page.setdefault(tid, seen)

    def figures(self) -> dict:
        time.sleep(2.0)                             # the last records reach the screen
        self.halt.set()
        self.poller.join(10)
        for tid, seen in _seen(self.browser):
            self.page.setdefault(tid, seen)
        wall = time.monotonic() - self.t0
        appended = {OUTCOMES.payload(f)["transfer_id"]: int(i.decode().split("-")[0])
                    for i, f in self.redis.xrange(OUTCOMES.key, min=f"({self.mark}")}
        return {"records": len(appended),
                "page_ms": percentiles([self.page[t] - at for t, at in appended.items()
                                        if t in self.page]),
                "page_missed": len([t for t in appended if t not in self.page]),
                "sidecar_cores": round((cpu_seconds(self.pid) - self.cpu0) / wall, 3),
                "console": [e["message"] for e in self.browser.get_log("browser")
                            if e["level"] == "SEVERE"]}

    def __exit__(self, *exc) -> None:
        self._undo.__exit__(*exc)


def run(config: Path, lab_descriptor: dict) -> dict:
    r = redis.Redis.from_url(lab_descriptor["redis"]["url"])
    settings = Stack.settings_of(config)
    hotlines = list(settings.hotlines)
    host, port = settings.sidecar.listen
    base = f"http://{host}:{port}"
    name = f"bench-board-{uuid.uuid4().hex[:6]}"
    token = access.add(settings.sidecar.clients_file, name, "supervisor", None,
                       settings.hotlines)
    try:
        with Stack(config, lab_descriptor, sidecar=True, service=False) as stack:
            pid = stack.procs["sidecar"].pid
            quiet = _phase(r, hotlines, pid, SECONDS / 2)
            browser = _browser()
            try:
                _open_board(browser, base, token)
                watched = _phase(r, hotlines, pid, SECONDS, browser, base, token)
                errors = [e["message"] for e in browser.get_log("browser")
                          if e["level"] == "SEVERE"]
            finally:
                browser.quit()
    finally:
        access.revoke(settings.sidecar.clients_file, name)
        r.close()
    page, streams = watched["page_ms"], watched["streams_ms"]
    extra = round(watched["sidecar_cores"] - quiet["sidecar_cores"], 3)
    figures = [
        {"name": f"wallboard in Chromium: record to screen p50 / p99 ({RATE} transfers/s, "
                 f"{CALLS} calls' gauges)", "value": f"{page['p50']} / {page['p99']}",
         "unit": "ms", "target": f"p99 <= {TARGET_P99_MS}",
         "met": page["p99"] is not None and page["p99"] <= TARGET_P99_MS},
        {"name": "records the wallboard never had", "value": watched["page_missed"],
         "unit": "records", "target": "0", "met": watched["page_missed"] == 0},
        {"name": f"{EXTRA_SCREENS} more screens' streams: record to client p50 / p99",
         "value": f"{streams['p50']} / {streams['p99']}", "unit": "ms",
         "target": f"p99 <= {TARGET_P99_MS}",
         "met": streams["p99"] is not None and streams["p99"] <= TARGET_P99_MS},
        {"name": "records a stream never had", "value": watched["streams_missed"],
         "unit": "records", "target": "0", "met": watched["streams_missed"] == 0},
        {"name": f"sidecar CPU serving {EXTRA_SCREENS + 1} wallboards (over syncing the same "
                 "records with none)", "value": extra, "unit": "cores", "target": None,
         "met": None},
        {"name": "console errors on the wallboard", "value": len(errors), "unit": "errors",
         "target": "0", "met": not errors},
    ]
    return {"benchmark": "board", "command": "python -m bench --only board", "figures": figures,
            "details": {"without_screens": quiet, "with_screens": watched, "rate": RATE,
                        "calls": CALLS, "screens": EXTRA_SCREENS + 1, "console": errors}}


if __name__ == "__main__":
    sys.exit(run_alone(run))
