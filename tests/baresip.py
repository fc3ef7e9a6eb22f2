"""baresip (Debian's baresip-core) as a second, independent SIP stack for agents' phones.

pjsua2 is the lab's main phone; a desk phone is not pjsua2, and what one stack forgives another
does not (issue 18: RFC 4733 events the caller received, a REFER left pending). baresip is driven
non-interactively through its ``ctrl_tcp`` module: netstring-framed JSON commands
(``{"command": "dial", "params": "sip:...", "token": "7"}``) answered by ``{"response": true,
"ok": ..., "data": ..., "token": "7"}``, and events (``{"event": true, "type": "CALL_ESTABLISHED",
...}``) on the same connection.

Each phone gets its own config folder, SIP port, RTP range and control port, all on 127.0.0.1
(``net_interface 127.0.0.1``: ``lo`` fails). It plays a WAV of its own tone as its microphone
(``aufile``) and records what it receives (``sndfile``: one ``-dec.wav`` per call), so a test can
prove audio both ways. The process is started here, its PID kept, and only that PID is stopped.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import threading
import time
import wave
from array import array
from pathlib import Path

MODULES = "/usr/lib/baresip/modules"
HOST = "127.0.0.1"
RATE = 8000


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def free_sip_port() -> int:
    """A port free for SIP over UDP and TCP, with the next one free for TLS: baresip binds all
    three, and a port the kernel gives for TCP may be some phone's UDP socket already."""
    while True:
        port = free_port()
        try:
            for kind, p in ((socket.SOCK_DGRAM, port), (socket.SOCK_STREAM, port + 1)):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind((HOST, p))
            return port
        except OSError:
            continue


def write_tone(path: Path, hz: int, seconds: int = 120) -> Path:
    """A 16-bit mono WAV of a sine at ``hz`` (the phone's microphone)."""
    samples = array("h", (int(8000 * math.sin(2 * math.pi * hz * i / RATE))
                          for i in range(RATE * seconds)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    return path


def _die_with_parent() -> None:
    # If the tests die hard, the phone must not live on, re-registering its seat.
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 15)     # PR_SET_PDEATHSIG, SIGTERM


class BaresipError(AssertionError):
    pass


class Baresip:
    """One baresip phone registered as ``account`` (a lab descriptor account)."""

    def __init__(self, account: dict, workdir: Path, tone_hz: int, rtp_base: int,
                 codecs: str = "PCMA,PCMU"):
        self.account = account
        self.username = account["username"]
        self.dir = workdir / f"baresip-{self.username}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.records = self.dir / "received"
        self.records.mkdir(exist_ok=True)
        self.tone_hz = tone_hz
        self.rtp_base = rtp_base
        self.codecs = codecs
        self.sip_port = self.ctrl_port = 0
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.events: list[dict] = []
        self._responses: dict[str, dict] = {}
        self._token = 0
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    # --- life ------------------------------------------------------------------------------------
    def _write_config(self) -> None:
        domain = self.account["registrar"].removeprefix("sip:")
        tone = write_tone(self.dir / "tone.wav", self.tone_hz)
        self.sip_port, self.ctrl_port = free_sip_port(), free_port()
        # baresip also binds TLS on the SIP port + 1: keep that free too.
        while self.ctrl_port in (self.sip_port, self.sip_port + 1):
            self.ctrl_port = free_port()
        (self.dir / "config").write_text("\n".join([
            "poll_method epoll",
            f"sip_listen {HOST}:{self.sip_port}",
            f"net_interface {HOST}",
            f"rtp_ports {self.rtp_base}-{self.rtp_base + 19}",
            "rtp_stats no",
            f"audio_source aufile,{tone}",
            "audio_player aubridge,nowhere",
            "audio_alert aubridge,nowhere",
            f"snd_path {self.records}",
            f"module_path {MODULES}",
            "module g711.so",
            "module aufile.so",
            "module aubridge.so",
            "module sndfile.so",
            "module ctrl_tcp.so",
            "module_app account.so",
            "module_app menu.so",
            f"ctrl_tcp_listen {HOST}:{self.ctrl_port}",
            "",
        ]))
        (self.dir / "accounts").write_text(
            f"<sip:{self.username}@{domain};transport=udp>;auth_pass={self.account['password']};"
            f"answermode=auto;regint=300;audio_codecs={self.codecs}\n")
        (self.dir / "contacts").write_text("")

    def start(self, timeout: float = 10.0) -> "Baresip":
        """Start, connect and wait for the registration; on any failure the process is stopped
        (a phone left running would keep re-registering its seat and answering its calls)."""
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float, attempts: int = 3) -> "Baresip":
        for attempt in range(1, attempts + 1):
            self._write_config()
            log = open(self.dir / "baresip.log", "ab")
            trace = ["-s"] if os.environ.get("HOTLINE_BARESIP_TRACE") else []
            self.proc = subprocess.Popen(["baresip", "-f", str(self.dir), *trace],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.dir,
                                         preexec_fn=_die_with_parent)
            log.close()                      # the child has its own descriptor
            deadline = time.monotonic() + timeout
            while self.sock is None:
                try:
                    self.sock = socket.create_connection((HOST, self.ctrl_port), timeout=1)
                except OSError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
            if self.sock is not None:
                break
            # It exited (a port taken between our check and its bind) or hung: again, on other
            # ports; the log's end says why, in the error of the last attempt.
            self.stop()
            tail = (self.dir / "baresip.log").read_text(errors="replace")[-1500:]
            if attempt == attempts:
                raise BaresipError(f"baresip for {self.username} did not start in {attempts} "
                                   f"attempts; the end of {self.dir / 'baresip.log'}:\n{tail}")
        self.sock.settimeout(None)
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name=f"baresip-{self.username}")
        self._reader.start()
        # Registered before we connected, its REGISTER_OK event is gone: ask.
        while " OK " not in re.sub(r"\x1b\[[0-9;]*m", " ", self.command("reginfo")):
            if time.monotonic() > deadline:
                raise BaresipError(f"{self.username} did not register; "
                                   f"see {self.dir / 'baresip.log'}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        """Stop this phone's own process (by its PID), politely first."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.sock is not None:
            try:
                self.command("quit", timeout=2)
            except (BaresipError, OSError):
                pass
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(3)
        if self.sock is not None:
            self.sock.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    # --- the control connection ------------------------------------------------------------------
    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while True:
                colon = buf.find(b":")
                if colon < 0:
                    break
                size = int(buf[:colon])
                if len(buf) < colon + 1 + size + 1:
                    break
                msg = json.loads(buf[colon + 1:colon + 1 + size])
                buf = buf[colon + 1 + size + 1:]
                with self._cond:
                    if msg.get("response"):
                        self._responses[str(msg.get("token"))] = msg
                    elif msg.get("event"):
                        msg["at"] = time.monotonic()
                        self.events.append(msg)
                    self._cond.notify_all()

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> str:
        """Run a baresip command; its text answer, or BaresipError if it says it failed."""
        with self._cond:
            self._token += 1
            token = str(self._token)
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self.sock.sendall(b"%d:%s," % (len(body), body))
        with self._cond:
            if not self._cond.wait_for(lambda: token in self._responses, timeout):
                raise BaresipError(f"{self.username}: no answer to {command!r}")
            msg = self._responses.pop(token)
        if not msg.get("ok"):
            raise BaresipError(f"{self.username}: {command} {params!r} failed: {msg.get('data')}")
        return msg.get("data") or ""

    def wait_event(self, kind: str, timeout: float = 10.0, since: int = 0) -> dict:
        """The first event of type ``kind`` from index ``since`` of ``events``."""
        def found():
            return next((e for e in self.events[since:] if e.get("type") == kind), None)
        with self._cond:
            if not self._cond.wait_for(found, timeout):
                seen = [e.get("type") for e in self.events[since:]]
                raise BaresipError(f"{self.username}: no {kind} within {timeout:.0f}s "
                                   f"(events: {seen})")
            return found()

    def event_types(self, since: int = 0) -> list[str]:
        with self._cond:
            return [e.get("type", "") for e in self.events[since:]]

    # --- calls -------------------------------------------------------------------------------
    def send_keys(self, digits: str) -> None:
        """RFC 4733 digits on the current call (baresip cannot send SIP INFO)."""
        for d in digits:
            self.command("sndcode", d)
            time.sleep(0.25)

    def transfer(self, number: str) -> None:
        """The phone's transfer button: a blind transfer by REFER."""
        domain = self.account["registrar"].removeprefix("sip:")
        self.command("transfer", f"sip:{number}@{domain}")

    def hang_up(self) -> None:
        self.command("hangup")

    def received(self) -> list[Path]:
        """The WAV files of audio this phone received, newest last."""
        return sorted(self.records.glob("*-dec.wav"), key=lambda p: p.stat().st_mtime)

    def freeze(self) -> None:
        os.kill(self.pid, 19)       # SIGSTOP: registered, its socket open, answering nothing

    def thaw(self) -> None:
        os.kill(self.pid, 18)       # SIGCONT
