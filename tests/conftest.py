"""Fixtures for tests against the real lab: two Asterisk PBXs, Redis, the service, SIP phones.

The lab (``tests/lab.toml``: its own loopback addresses and ports, short timeouts) is brought up
once per session; the service runs as a separate process, as in production, so tests can kill
and restart it. After every test that placed calls, all phones hang up and both PBXs must return
to no channels and no bridges: a leak fails the test that caused it.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from contracts.names import CALLS, OUTCOMES

ROOT = Path(__file__).resolve().parent.parent
# Another lab config (its own addresses and ports, e.g. the chaos suite's) lets a second suite run
# beside this one on the same machine.
CONFIG = Path(os.environ.get("HOTLINE_TEST_LAB", ROOT / "tests" / "lab.toml")).resolve()
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_configure(config) -> None:
    from bench.chaos_result import ChaosResult

    # A whole ``make chaos`` run writes bench/results/chaos.json and the README's table.
    config.pluginmanager.register(ChaosResult(), "hotline-chaos-result")


_SESSION_STARTED = time.time()


@pytest.fixture(scope="session", autouse=True)
def _embeddings_remembered():
    """The recommender's tests read tens of thousands of descriptions: their sentence embeddings
    come from the cache outside the repository (the same encoder's numbers, kept by text) where
    an earlier run left them, and what this run embeds is kept for the next."""
    from hotline_link import embedding

    embedding.remember()
    yield
    embedding.forget()


def _pbx_cores():
    from hotline_link import components, lab as lab_mod

    handle = lab_mod.Lab(components.load(CONFIG, secrets=False))
    return handle, handle.cores(since=_SESSION_STARTED)


def pytest_sessionfinish(session, exitstatus) -> None:
    """A lab PBX that crashed fails the run even where no test saw it (the next test's lab heals
    it quietly): a crash under our commands is a dropped call on a real hotline."""
    if exitstatus == 0 and _pbx_cores()[1]:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter) -> None:
    handle, cores = _pbx_cores()
    if cores:
        terminalreporter.section("a lab PBX crashed", red=True)
        for core in cores:
            terminalreporter.write_line(f"{core}\n{handle.backtrace(core)}")


def pytest_ignore_collect(collection_path, config):
    """A chaos file that needs a lab of its own (``bench.chaos_result.LAB_OF``) is collected
    only in the run on that lab, not skipped in the others. Named on the command line it is
    collected anyway, and says which lab it needs."""
    from bench.chaos_result import LAB_OF

    need = LAB_OF.get(collection_path.name)
    if need is not None and collection_path.parent.name == "chaos" and CONFIG.name != need:
        return True
    return None


def service_settings():
    """The service's settings of the lab under test (no secrets)."""
    from hotline_link.settings import load

    return load(CONFIG, secrets=False)


def cli(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "hotline_link.cli", "-c", str(CONFIG), *args],
                          cwd=ROOT, capture_output=True, text=True, **kw)
    # Failing, say why: the command's own output, not only its exit code.
    assert not check or done.returncode == 0, \
        f"hotline-link {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr[-2000:]}"
    return done


class Ari:
    """A small synchronous ARI client for assertions (the service has its own async one)."""

    def __init__(self, pbx: dict):
        ari = pbx["ari"]
        self.url = ari["url"].rstrip("/") + "/ari"
        self.app = ari["app"]
        password = Path(ari["password_file"]).read_text().strip()
        self.auth = "Basic " + base64.b64encode(f"{ari['username']}:{password}".encode()).decode()

    def request(self, method: str, path: str, *, timeout: float = 5, **params) -> object:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        # An empty body, said so: Asterisk waits for the body of a POST without a length.
        req = urllib.request.Request(f"{self.url}{path}{'?' + query if query else ''}",
                                     method=method, headers={"Authorization": self.auth},
                                     data=b"" if method in ("POST", "PUT") else None)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def channels(self) -> list[dict]:
        return self.request("GET", "/channels")

    def variable(self, channel_id: str, name: str) -> str:
        """A channel variable or function, e.g. ``CHANNEL(audionativeformat)``."""
        return self.request("GET", f"/channels/{channel_id}/variable",
                            variable=urllib.parse.quote(name))["value"]

    def bridges(self) -> list[dict]:
        return self.request("GET", "/bridges")

    def endpoint_state(self, name: str) -> str:
        """A PJSIP endpoint's state: "online" once a contact of it answers the PBX's qualify."""
        return self.request("GET", f"/endpoints/PJSIP/{name}")["state"]

    def hang_up(self, channel_id: str) -> None:
        try:
            self.request("DELETE", f"/channels/{channel_id}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:                      # already gone
                raise

    def app_connected(self) -> bool:
        try:
            self.request("GET", f"/applications/{self.app}")
            return True
        except (urllib.error.URLError, OSError):
            return False


class Lab:
    def __init__(self, descriptor: dict):
        self.descriptor = descriptor
        self.ari = {hid: Ari(p) for hid, p in descriptor["pbx"].items()}
        self.accounts = descriptor["accounts"]

    def account(self, role: str, hotline: str, index: int = 0) -> dict:
        return [a for a in self.accounts if a["role"] == role and a["hotline"] == hotline][index]

    def leftovers(self) -> dict[str, list[str]]:
        out = {}
        for hid, ari in self.ari.items():
            names = [c["name"] for c in ari.channels()] + [f"bridge {b['id']}" for b in ari.bridges()]
            if names:
                out[hid] = names
        return out


@pytest.fixture(scope="session")
def lab():
    # A fresh lab per session: nothing a previous (perhaps aborted) run left can leak into this one.
    cli("lab", "down", check=False)
    up = cli("lab", "up", check=False)
    if up.returncode != 0:
        pytest.fail(f"lab up failed:\n{up.stdout}\n{up.stderr}")
    from hotline_link import components, lab as lab_mod

    descriptor_file = lab_mod.Lab(components.load(CONFIG, secrets=False)).descriptor_file
    yield Lab(json.loads(descriptor_file.read_text()))
    cli("lab", "down", check=False)


def _die_with_parent() -> None:
    # If the test process dies hard (a pjsua abort), the service must not outlive it and keep
    # answering calls in the next run's lab under the same application names.
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Service:
    """The hotline-link service as its own process, as in production."""

    def __init__(self, lab: Lab, config: Path = CONFIG, log_name: str = "service.log",
                 log_level: str = "debug", instance: str | None = None):
        # Tests read the debug lines; benchmarks run at the production level ("info"), whose
        # logging cost is the one that counts.
        self.lab = lab
        self.config = config
        self.log_level = log_level
        self.instance = instance          # hot standby: this process's name (run --instance)
        self.log = Path(lab.descriptor["state_dir"]) / log_name
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, connected: bool = True) -> None:
        """``connected``: wait until this process's ARI applications are connected (a
        standby's are not)."""
        out = open(self.log, "ab")
        instance = ["--instance", self.instance] if self.instance else []
        env = {**os.environ, "HOTLINE_LINK__SERVICE__LOG_LEVEL": self.log_level}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hotline_link.cli", "-c", str(self.config), "run", *instance],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
            preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 20
        health = self._health_url()
        while connected and not self._connected(health):
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"service did not connect to ARI; see {self.log}")
            time.sleep(0.05)

    def _health_url(self) -> str | None:
        from hotline_link.settings import load

        settings = load(self.config, secrets=False)
        address = settings.ha.http.get(self.instance) if self.instance else settings.http
        return f"http://{address[0]}:{address[1]}/health" if address else None

    def _connected(self, health_url: str | None) -> bool:
        # Asked of this process, not of Asterisk: just after a kill -9, Asterisk still lists the
        # dead process's WebSocket as the application's for a moment, and a key pressed before
        # the new process subscribes is lost (seen: "started" 22 ms after the kill, the key
        # 1.3 s later, the new process connected 2.5 s after that on a loaded machine).
        if health_url is None:        # no /health configured: Asterisk's word is all there is
            return all(a.app_connected() for a in self.lab.ari.values())
        try:
            with urllib.request.urlopen(health_url, timeout=1) as resp:
                health = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError):
            return False              # not listening yet, or 503: not every PBX connected
        return health.get("ok") is True and health.get("role") != "standby"

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def service(lab):
    svc = Service(lab)
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def softphones(lab):
    from phones import Softphones

    lib = Softphones(host=lab.descriptor["phone_host"],
                     log_level=int(os.environ.get("PJSUA_LOG_LEVEL", "1")))
    yield lib
    lib.close()


class Phones:
    """The lab's registered phones by role."""

    def __init__(self, lib, lab: Lab):
        self.lib = lib
        self.citizen = lib.phone(lab.account("citizen", "12345"))   # dials 12345
        self.caller = lib.phone(lab.account("citizen", "110"))      # dials 110
        self.agents = {hid: [lib.phone(a) for a in lab.accounts
                             if a["role"] == "agent" and a["hotline"] == hid]
                       for hid in lab.descriptor["pbx"]}
        # The surge plan's overflow seats (rung only during a surge).
        self.overflow = {hid: [lib.phone(a) for a in lab.accounts
                               if a["role"] == "overflow" and a["hotline"] == hid]
                         for hid in lab.descriptor["pbx"]}

    def all(self):
        return [self.citizen, self.caller, *(p for ps in self.agents.values() for p in ps),
                *(p for ps in self.overflow.values() for p in ps)]

    def every_agent_busy(self, hotline: str = "110") -> list[tuple]:
        """Every agent of ``hotline`` talking with a caller of its own (the caller's phone
        dials it once per agent): ``(call, agent, leg)`` each."""
        caller = self.caller if hotline == "110" else self.citizen
        busy: list[tuple] = []
        for _ in self.agents[hotline]:
            call = caller.dial(hotline)
            agent, leg = self.ringing_agent(hotline, exclude=[b[1] for b in busy])
            leg.accept()
            call.hears(leg)
            busy.append((call, agent, leg))
        return busy

    def ringing_agent(self, hotline: str, timeout: float = 10.0, exclude=()):
        """The first agent of ``hotline`` whose phone rings, and that call."""
        candidates = [p for p in self.agents[hotline] if p not in exclude]
        self.lib.wait_for(lambda: any(p.ringing_calls() for p in candidates), timeout,
                          f"a {hotline} agent to ring")
        phone = next(p for p in candidates if p.ringing_calls())
        return phone, phone.ringing_calls()[0]


@pytest.fixture(scope="session")
def _phones(softphones, lab):
    return Phones(softphones, lab)


def pbx_back(phones, lab: Lab, hid: str) -> None:
    """After a PBX restart: the app connected to it again and its agents' phones answering its
    qualify (a second or two after it starts: until then they are not free, and a transfer to it
    is refused as busy, the caller returning to the transferring agent)."""
    phones.lib.wait_for(lambda: lab.ari[hid].app_connected(), 20, "the app to reconnect")
    phones.lib.wait_for(lambda: all(lab.ari[hid].endpoint_state(a.username) == "online"
                                    for a in phones.agents[hid]), 15, f"{hid}'s agents reachable")


def _heal_lab(lab: Lab) -> None:
    """A lab process that died in an earlier test (a fault test that stopped a PBX and could not
    bring it back) is restarted, so one failure does not cascade into every later test."""
    from hotline_link import components, lab as lab_mod

    handle = lab_mod.Lab(components.load(CONFIG, secrets=False))
    for name, alive in handle.status().items():
        if not alive:
            handle.start_one(name)
            for ari in lab.ari.values():
                deadline = time.monotonic() + 20
                while not ari.app_connected() and time.monotonic() < deadline:
                    time.sleep(0.1)


def recover_dead_phones(phones: Phones, lab: Lab) -> str:
    """A crashed phone cannot hang up: every call is ended on the PBXs instead and the phone
    started again, so only the test it died in fails, not every later one. Says who died."""
    dead = phones.lib.dead()
    if not dead:
        return ""
    deaths = "; ".join(p.death() for p in dead)
    _restart_phones(phones, lab, dead)
    phones.lib.hang_up_all()
    return deaths


def _restart_phones(phones: Phones, lab: Lab, which: list) -> None:
    """Every channel ended over ARI (a PBX that does not answer is passed over: a fault test may
    have stopped it), then each phone of ``which`` started again."""
    for ari in lab.ari.values():
        try:
            for channel in ari.channels():
                ari.hang_up(channel["id"])
        except (urllib.error.URLError, OSError):
            pass
    for p in which:
        p.restart()


def hang_up_every_call(phones: Phones, lab: Lab) -> None:
    """Every phone hangs up. A phone whose call will not end (its SIP stack lost track of it) or
    that died meanwhile is started again, its calls ended on the PBXs, so that only this test
    fails: the call would otherwise still ring or hold a slot in every later test. The failure
    names the calls first; a recovery that failed too is added to it, not put in its place."""
    import phones as phones_mod

    try:
        phones.lib.hang_up_all()
        return
    except (phones_mod.Timeout, phones_mod.PhoneDied) as exc:
        stuck = [p for p in phones.lib.phones
                 if p.dead or not p.proc.is_alive() or p.live_calls()]
        calls = ", ".join(repr(c) for p in stuck for c in p.live_calls())
        errors = "; ".join(e for p in stuck for e in p.errors[-3:])
        message = (f"calls that would not end: {calls or '-'} ({exc}; the phones' last errors: "
                   f"{errors or '-'}); they were ended over ARI and their phones started again")
    try:
        _restart_phones(phones, lab, stuck)
        phones.lib.hang_up_all()
        if left := lab.leftovers():
            message += f"; left on the PBXs: {left}"
    except Exception as exc:        # noqa: BLE001 - said beside the first failure, not instead
        message += f"; the recovery failed too: {exc!r}"
    pytest.fail(message)


@pytest.fixture
def phones(_phones, service, lab):
    """Registered phones, the service running; after the test every call ends and the PBXs
    must be back to no channel and no bridge."""
    _heal_lab(lab)
    for p in _phones.lib.dead():
        p.restart()
    for p in _phones.all():
        p.auto_answer = None
    yield _phones
    if deaths := recover_dead_phones(_phones, lab):
        pytest.fail(f"{deaths}: their calls were ended over ARI and the phones started again")
    hang_up_every_call(_phones, lab)
    deadline = time.monotonic() + 5
    while (left := lab.leftovers()) and time.monotonic() < deadline:
        _phones.lib.sleep(0.1)
    assert not left, f"channels or bridges leaked: {left}"


class Outcomes:
    """The outcome stream (or another record stream: ``stream``), read the way the sidecar
    reads it."""

    def __init__(self, url: str, stream: str = OUTCOMES.key):
        import redis

        # Longer than the service's 0.5 s: with appendfsync always, one fsync on a busy CI disk
        # was seen to hold the lab's Redis for half a second, and a reader that gave up then
        # would fail the test, not find a fault.
        self.redis = redis.Redis.from_url(url, socket_timeout=5)
        self.STREAM = stream
        self.mark = "0"

    def reset_mark(self) -> None:
        last = self.redis.xrevrange(self.STREAM, count=1)
        self.mark = last[0][0].decode() if last else "0"

    def since_mark(self) -> list[dict]:
        entries = self.redis.xrange(self.STREAM, min=f"({self.mark}" if self.mark != "0" else "-")
        return [json.loads(fields[b"record"]) for _, fields in entries]

    def wait(self, lib, count: int = 1, timeout: float = 10.0) -> list[dict]:
        lib.wait_for(lambda: len(self.since_mark()) >= count, timeout,
                     f"{count} outcome record(s)")
        lib.sleep(0.3)    # anything extra (a duplicate) would arrive now
        return self.since_mark()


@pytest.fixture
def outcomes(lab, phones):
    out = Outcomes(lab.descriptor["redis"]["url"])
    out.reset_mark()
    return out


@pytest.fixture
def call_records(lab, phones):
    """The call-record stream from now on (records of earlier tests' calls may still arrive:
    the tests pick theirs by caller and arrival)."""
    out = Outcomes(lab.descriptor["redis"]["url"], CALLS.key)
    out.reset_mark()
    return out
