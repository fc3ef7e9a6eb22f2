"""The processes a benchmark drives on a lab that is already up: the service, optionally the
sidecar, and the lab's SIP phones (the test suite's pjsua2 helpers). Started as in production,
each its own process, and stopped again on exit."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from hotline_link import components, lab as lab_mod

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


class Stack:
    def __init__(self, config: Path, descriptor: dict, *, sidecar: bool = False,
                 service: bool = True):
        self.config = Path(config)
        self.descriptor = descriptor
        self.settings = self.settings_of(config)
        self.with_sidecar = sidecar
        self.with_service = service
        self.procs: dict[str, subprocess.Popen] = {}
        self.state = Path(descriptor["state_dir"])
        self._softphones = None
        self._phones = None

    @staticmethod
    def settings_of(config: Path):
        return components.load(Path(config))

    @staticmethod
    def descriptor_of(config: Path) -> dict:
        handle = lab_mod.Lab(components.load(Path(config), secrets=False))
        return json.loads(handle.descriptor_file.read_text())

    # --- processes ----------------------------------------------------------------------------
    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.state / f"bench-{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "hotline_link.cli", "-c", str(self.config),
                                 *args], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log)
        self.procs[name] = proc
        return proc

    def ari_connected(self) -> bool:
        for pbx in self.descriptor["pbx"].values():
            ari = pbx["ari"]
            password = Path(ari["password_file"]).read_text().strip()
            auth = base64.b64encode(f"{ari['username']}:{password}".encode()).decode()
            req = urllib.request.Request(f"{ari['url'].rstrip('/')}/ari/applications/{ari['app']}",
                                         headers={"Authorization": f"Basic {auth}"})
            try:
                urllib.request.urlopen(req, timeout=2).read()
            except (urllib.error.URLError, OSError):
                return False
        return True

    def wait_until(self, cond, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"{what}: not ready (exited: {dead}); see {self.state}/bench-*.log")
            time.sleep(0.05)

    def __enter__(self) -> "Stack":
        if self.with_service:
            self._spawn("service", "run")
            self.wait_until(self.ari_connected, "service")
        if self.with_sidecar:
            self._spawn("sidecar", "sidecar")
            host, port = self.settings.sidecar.listen

            def healthy() -> bool:
                try:
                    urllib.request.urlopen(f"http://{host}:{port}/health", timeout=1).read()
                    return True
                except OSError:
                    return False
            self.wait_until(healthy, "sidecar")
        return self

    def close_phones(self) -> None:
        if self._softphones is not None:
            self._softphones.close()
            self._softphones = self._phones = None

    def __exit__(self, *exc) -> None:
        self.close_phones()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    # --- phones and the PBXs ------------------------------------------------------------------
    def phones(self):
        """The lab's phones by role (``tests/conftest.Phones``), registered."""
        if self._phones is None:
            from conftest import Lab, Phones
            from phones import Softphones

            self._softphones = Softphones(host=self.descriptor["phone_host"])
            self._lab = Lab(self.descriptor)
            self._phones = Phones(self._softphones, self._lab)
        return self._phones

    def wait_quiet(self, timeout: float = 10.0) -> None:
        """Until neither PBX has a channel or bridge left: the next run starts clean."""
        self._softphones.wait_for(lambda: not self._lab.leftovers(), timeout,
                                  "both PBXs to be idle")


def run_alone(run) -> int:
    """``python -m bench.<name>``: one benchmark's ``run`` on the bench lab (already up), its
    result written to bench/results/ like ``make bench`` writes it."""
    from bench.results import write_result

    config = ROOT / "bench" / "lab.toml"
    print(write_result(run(config, Stack.descriptor_of(config))))
    return 0
