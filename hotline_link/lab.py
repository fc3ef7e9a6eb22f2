"""The lab: two real Asterisk PBXs (12345 centre, 110 centre) joined by a PJSIP trunk, plus Redis.

Rules this module keeps:

* It starts processes itself and records each one's PID *and* kernel start time in
  ``<state_dir>/state.json``; ``down`` stops exactly those (a PID reused by another program is
  left alone). It never looks processes up by name.
* Asterisk runs natively when the machine has it, otherwise inside the cached Debian-unstable root
  file system (``scripts/bootstrap.sh`` builds it). Each chrooted PBX runs in its own private mount
  namespace: ``/proc`` and the instance's state folder are bind-mounted there, so the mounts
  vanish with the process and nothing is left mounted on the host, even after a SIGKILL.
* Credentials are generated per lab (``<state_dir>/secrets``, mode 0600) and never committed.
* No traffic leaves 127.0.0.0/8: every PBX binds SIP, RTP and HTTP to its own loopback address.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from . import prompts
from .lab_redis import DATA as REDIS_DATA, SentinelRedis, server_argv as redis_server_argv
from .render import Account, render_pbx
from .settings import Hotline, Settings

CHROOT_MOUNT = "/srv/hotline-pbx"
DESCRIPTOR_VERSION = 1

# Caller ID numbers of the lab's citizen phones (test data, not real subscribers).
CITIZEN_NUMBERS = {"12345": "13800138000", "110": "13900139000"}


class LabError(RuntimeError):
    pass


@dataclass
class Proc:
    name: str
    pid: int
    start_ticks: int
    argv: list[str]
    log: str

    def alive(self) -> bool:
        return _start_ticks(self.pid) == self.start_ticks


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) counted after the parenthesised command name, which may hold spaces.
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def spawn(name: str, argv: list[str], log: Path, cwd: Path | None = None) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=cwd, start_new_session=True)
    ticks = None
    for _ in range(100):
        ticks = _start_ticks(proc.pid)
        if ticks is not None:
            break
        time.sleep(0.01)
    if ticks is None:
        raise LabError(f"{name} exited at once; see {log}")
    return Proc(name=name, pid=proc.pid, start_ticks=ticks, argv=argv, log=str(log))


def stop(proc: Proc, timeout: float = 10.0) -> None:
    if not proc.alive():
        return
    os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            return
        _reap(proc.pid)
        time.sleep(0.05)
    if proc.alive():
        os.kill(proc.pid, signal.SIGKILL)
        for _ in range(100):
            _reap(proc.pid)
            if not proc.alive():
                return
            time.sleep(0.05)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _random_secret(nbytes: int = 18) -> str:
    return secrets.token_urlsafe(nbytes)


def _sip_secret(known: str | None = None) -> str:
    """A lab phone's password. SIPp reads a password that starts with "0x" as hex (an AKA key),
    so such a password (1 in 4,096; the load benchmark registers 300 accounts) failed to
    authenticate; one stored by an earlier lab is replaced."""
    value = known
    while not value or value.lower().startswith("0x"):
        value = _random_secret(9)
    return value


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")


def _port_free(host: str, port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class Lab:
    def __init__(self, settings: Settings, config_file: str | None = None):
        if settings.lab is None or settings.sidecar is None:
            # A programming error, not an admin's: the caller loaded the service's sections only.
            raise LabError("the lab needs every section: load the config with "
                           "hotline_link.components.load(..., lab=True)")
        self.settings = settings
        self.config_file = config_file
        self.state_dir = settings.lab.state_dir
        self.state_file = self.state_dir / "state.json"
        self.descriptor_file = self.state_dir.with_suffix(".json")
        self.secrets_dir = self.state_dir / "secrets"
        missing = [h for h in settings.hotlines if h not in settings.lab.pbx]
        if missing:
            raise LabError(f"lab.pbx: no lab PBX for hotline(s) {', '.join(missing)}")
        # Redis as primary, replica and sentinels (lab.redis_sentinel), else one Redis.
        self.sentinel = (SentinelRedis(settings, self.state_dir) if settings.lab.redis_sentinel
                         else None)

    # --- where Asterisk comes from --------------------------------------------------------------
    def asterisk_mode(self) -> str:
        if shutil.which("asterisk"):
            return "native"
        if (self.settings.lab.rootfs / ".hotline-ready").exists():
            return "chroot"
        raise LabError(
            f"no Asterisk: neither `asterisk` on PATH nor a root file system at "
            f"{self.settings.lab.rootfs}; run scripts/bootstrap.sh (make deps) first")

    def _moddir(self, mode: str) -> str:
        base = self.settings.lab.rootfs if mode == "chroot" else Path("/")
        for cand in ("usr/lib/x86_64-linux-gnu/asterisk/modules", "usr/lib/aarch64-linux-gnu/asterisk/modules",
                     "usr/lib/asterisk/modules", "usr/lib64/asterisk/modules"):
            if (base / cand).is_dir():
                return "/" + cand
        raise LabError(f"cannot find Asterisk's module folder under {base}")

    # --- secrets and accounts --------------------------------------------------------------------
    def _secret_file(self, configured: Path | None, default_name: str) -> Path:
        return configured if configured is not None else self.secrets_dir / default_name

    def _ensure_secret(self, path: Path) -> str:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        value = _random_secret()
        _write_secret(path, value)
        return value

    def accounts(self) -> list[Account]:
        store = self.secrets_dir / "sip.json"
        known = json.loads(store.read_text()) if store.exists() else {}
        out = []
        for hid, hotline in self.settings.hotlines.items():
            for i, agent in enumerate(hotline.agents, 1):
                out.append(Account(role="agent", hotline=hid, username=agent,
                                   password=_sip_secret(known.get(agent)),
                                   number=agent, display=f"{hid} agent {i}", context="from-agents"))
            # The surge plan's overflow seats (remote seats in production): phones like the
            # agents', rung only while a surge lasts.
            seats = (*(hotline.surge.overflow if hotline.surge else ()), *hotline.emergency_seats)
            for i, seat in enumerate(seats, 1):
                out.append(Account(role="overflow", hotline=hid, username=seat,
                                   password=_sip_secret(known.get(seat)), number=seat,
                                   display=f"{hid} overflow {i}", context="from-agents"))
            number = CITIZEN_NUMBERS.get(hid, "13700137000")
            user = {"12345": "citizen", "110": "caller"}.get(hid, f"citizen-{hid}")
            out.append(Account(role="citizen", hotline=hid, username=user,
                               password=_sip_secret(known.get(user)), number=number,
                               display="Citizen", context="from-citizens", dials=hid))
        passwords = {a.username: a.password for a in out}
        if passwords != known:
            _write_secret(store, json.dumps(passwords, indent=1))
        return out

    # --- up / down / status --------------------------------------------------------------------
    def _load_state(self) -> list[Proc]:
        if not self.state_file.exists():
            return []
        data = json.loads(self.state_file.read_text())
        return [Proc(**p) for p in data.get("processes", [])]

    def _save_state(self, procs: list[Proc]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"processes": [asdict(p) for p in procs]}, indent=1))
        tmp.replace(self.state_file)

    def status(self) -> dict[str, bool]:
        return {p.name: p.alive() for p in self._load_state()}

    def cores(self, since: float = 0.0) -> list[Path]:
        """Core files the lab's PBXs left when they crashed (newest last), modified after
        ``since`` (a ``time.time()``)."""
        found = [p for p in self.state_dir.glob("pbx-*/run/core*")
                 if p.is_file() and p.stat().st_mtime > since]
        return sorted(found, key=lambda p: p.stat().st_mtime)

    def backtrace(self, core: Path, timeout: float = 60.0) -> str:
        """gdb's backtrace of the thread that crashed (symbols as far as the binaries have them),
        or why there is none."""
        gdb = shutil.which("gdb")
        if gdb is None:
            return "no backtrace: gdb is not installed"
        root = self.settings.lab.rootfs if self.asterisk_mode() == "chroot" else Path("/")
        argv = [gdb, "-batch", "-nx", "-ex", f"set sysroot {root}", "-ex", "bt 25",
                str(root / "usr/sbin/asterisk"), str(core)]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout).stdout
        except subprocess.TimeoutExpired:
            return f"no backtrace: gdb took over {timeout:.0f}s"
        return "\n".join(line for line in out.splitlines() if line.startswith(("#", "Program")))

    def up(self, timeout: float = 60.0) -> dict:
        procs = self._load_state()
        if procs and all(p.alive() for p in procs):
            return self.descriptor()
        if procs:
            # Something died: restart cleanly rather than patch a half-lab.
            self.down()
        mode = self.asterisk_mode()
        moddir = self._moddir(mode)
        self._check_ports()
        accounts = self.accounts()
        self._ensure_secret(self._secret_file(self.settings.sidecar.token_file, "api-token"))
        for i, hook in enumerate(self.settings.sidecar.webhooks):
            self._ensure_secret(self._secret_file(hook.secret_file, f"webhook-{i}"))
        for api in self.settings.sidecar.platforms.values():
            if api.token_file is not None:
                self._ensure_secret(api.token_file)
        started: list[Proc] = []
        try:
            # A new lab starts with an empty Redis; only a restart (``start_one``) reloads it.
            shutil.rmtree(self.state_dir / "redis", ignore_errors=True)
            if self.sentinel is not None:
                for proc in self.sentinel.start_all(spawn):
                    started.append(proc)
                    self._save_state(started)
            else:
                started.append(self._start_redis())
                self._save_state(started)
            for hid, hotline in self.settings.hotlines.items():
                started.append(self._start_pbx(hotline, accounts, mode, moddir))
                self._save_state(started)
            for pid in self.settings.sidecar.platforms:
                started.append(self._start_standin(pid))
                self._save_state(started)
            if self.sentinel is None:
                self._wait_redis(timeout)
            for hotline in self.settings.hotlines.values():
                self._wait_ari(hotline, timeout)
            for pid in self.settings.sidecar.platforms:
                self._wait_standin(pid, timeout)
        except BaseException:
            for p in reversed(started):
                stop(p)
            self.state_file.unlink(missing_ok=True)
            raise
        desc = self.descriptor(accounts)
        tmp = self.descriptor_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(desc, fh, indent=2)
        tmp.replace(self.descriptor_file)
        return desc

    def down(self) -> list[str]:
        stopped = []
        for p in reversed(self._load_state()):
            if p.alive():
                stop(p)
                stopped.append(f"{p.name} (pid {p.pid})")
        self.state_file.unlink(missing_ok=True)
        self.descriptor_file.unlink(missing_ok=True)
        return stopped

    def stop_one(self, name: str) -> str:
        """Stop one recorded process (a PBX or redis), keeping its record for ``start_one``.
        Under Sentinel, ``redis-primary`` / ``redis-replica`` name the data node that is that
        now."""
        if self.sentinel is not None:
            name = self.sentinel.resolve(name)
        procs = {p.name: p for p in self._load_state()}
        if name not in procs:
            raise LabError(f"no process {name!r} in this lab ({', '.join(procs)})")
        stop(procs[name])
        return f"{name} (pid {procs[name].pid})"

    def process(self, name: str) -> Proc:
        """A recorded process by name (under Sentinel also ``redis-primary``/``redis-replica``,
        asked of the sentinels now): for fault cases that signal it themselves."""
        if self.sentinel is not None:
            name = self.sentinel.resolve(name)
        procs = {p.name: p for p in self._load_state()}
        if name not in procs:
            raise LabError(f"no process {name!r} in this lab ({', '.join(procs)})")
        return procs[name]

    def start_one(self, name: str, timeout: float = 60.0) -> str:
        """Start a stopped PBX or redis again, with the same configuration and state folder."""
        procs = self._load_state()
        if self.sentinel is not None and name in ("redis-primary", "redis-replica"):
            # The node that was stopped: the one data node not running.
            name = next((p.name for p in procs if p.name in REDIS_DATA and not p.alive()), name)
        index = next((i for i, p in enumerate(procs) if p.name == name), None)
        if index is None:
            raise LabError(f"no process {name!r} in this lab")
        if procs[index].alive():
            return f"{name} already running (pid {procs[index].pid})"
        if name in REDIS_DATA and self.sentinel is not None:
            procs[index], ready = self.sentinel.restart_data(spawn, name)
            self._save_state(procs)
            try:
                ready()
            except RuntimeError as exc:      # lab_redis.SentinelLabError
                raise LabError(f"{name} (pid {procs[index].pid}) started but: {exc}") from None
        elif name.startswith("sentinel-") and self.sentinel is not None:
            procs[index] = self.sentinel.start_sentinel(spawn, int(name.rsplit("-", 1)[1]))
            self._save_state(procs)
        elif name == "redis":
            procs[index] = self._start_redis()
            self._save_state(procs)
            self._wait_redis(timeout)
        elif name.startswith("standin-"):
            pid = name.removeprefix("standin-")
            procs[index] = self._start_standin(pid)
            self._save_state(procs)
            self._wait_standin(pid, timeout)
        else:
            hid = name.removeprefix("asterisk-")
            hotline = self.settings.hotlines[hid]
            mode = self.asterisk_mode()
            procs[index] = self._start_pbx(hotline, self.accounts(), mode, self._moddir(mode))
            self._save_state(procs)
            self._wait_ari(hotline, timeout)
        return f"{name} (pid {procs[index].pid})"

    def _check_ports(self) -> None:
        busy = []
        lab = self.settings.lab
        if self.sentinel is not None:
            busy += self.sentinel.busy_ports(_port_free)
        elif not _port_free("127.0.0.1", lab.redis_port, socket.SOCK_STREAM):
            busy.append(f"redis 127.0.0.1:{lab.redis_port}")
        for hid, hotline in self.settings.hotlines.items():
            pbx = lab.pbx[hid]
            if not _port_free(pbx.sip_host, pbx.sip_port, socket.SOCK_DGRAM):
                busy.append(f"SIP {pbx.sip_host}:{pbx.sip_port}/udp")
            host, port = hotline.ari.host_port
            if not _port_free(host, port, socket.SOCK_STREAM):
                busy.append(f"ARI {host}:{port}")
            if hotline.ami and not _port_free(hotline.ami.host, hotline.ami.port, socket.SOCK_STREAM):
                busy.append(f"AMI {hotline.ami.host}:{hotline.ami.port}")
        for pid in self.settings.sidecar.platforms:
            host, port = self._standin_address(pid)
            if not _port_free(host, port, socket.SOCK_STREAM):
                busy.append(f"stand-in {pid} {host}:{port}")
        if busy:
            raise LabError("ports in use: " + ", ".join(busy)
                           + " (another lab still running? `hotline-link lab down`)")

    def _start_redis(self) -> Proc:
        rdir = self.state_dir / "redis"
        rdir.mkdir(parents=True, exist_ok=True)
        # (``lab stop redis`` / ``start redis`` reload its AOF.)
        try:
            argv = redis_server_argv(self.settings.lab.redis_appendfsync,
                                     self.settings.lab.redis_port, rdir)
        except FileNotFoundError as exc:
            raise LabError(str(exc)) from None
        return spawn("redis", argv, rdir / "redis.log")

    def _standin_address(self, pid: str) -> tuple[str, int]:
        parts = urlsplit(self.settings.sidecar.platforms[pid].url)
        return parts.hostname or "127.0.0.1", parts.port or 80

    def _start_standin(self, pid: str) -> Proc:
        """The lab's stand-in for a platform's ticket system (outside our product)."""
        host, port = self._standin_address(pid)
        argv = [sys.executable, "-m", "sidecar.standins",
                "--kind", str(self.settings.sidecar.platforms[pid].kind),
                "--listen", f"{host}:{port}"]
        token_file = self.settings.sidecar.platforms[pid].token_file
        if token_file is not None:
            argv += ["--api-token-file", str(token_file)]
        hooks = self.settings.sidecar.webhooks
        if hooks:
            argv += ["--webhook-secret-file",
                     str(self._secret_file(hooks[0].secret_file, "webhook-0"))]
        return spawn(f"standin-{pid}", argv, self.state_dir / "standins" / f"{pid}.log",
                     cwd=self.settings.home)

    def _wait_standin(self, pid: str, timeout: float) -> None:
        host, port = self._standin_address(pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{host}:{port}/_standin/stats", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise LabError(f"stand-in {pid} not ready on {host}:{port}")

    def _wait_redis(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.settings.lab.redis_port), 0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise LabError("redis did not answer PING")

    def instance_dir(self, hid: str) -> Path:
        return self.state_dir / f"pbx-{hid}"

    def _start_pbx(self, hotline: Hotline, accounts: list[Account], mode: str, moddir: str) -> Proc:
        inst = self.instance_dir(hotline.id)
        # spool/recording (ARI bridge recordings) and log/cdr-custom (the CDR): Asterisk creates
        # neither.
        for sub in ("etc", "db", "spool/recording", "run", "log/cdr-custom"):
            (inst / sub).mkdir(parents=True, exist_ok=True)
        self._data_dir(inst / "data", mode)
        ari_password = self._ensure_secret(
            self._secret_file(hotline.ari.password_file, f"ari-{hotline.id}"))
        root = CHROOT_MOUNT if mode == "chroot" else str(inst)
        ami_secret = (self._ensure_secret(self._secret_file(hotline.ami.secret_file,
                                                            f"ami-{hotline.id}"))
                      if hotline.ami else None)
        render_pbx(self.settings, hotline, accounts, ari_password, ami_secret, inst / "etc",
                   root=root, moddir=moddir)
        log = inst / "log" / "console.log"
        # A crash's core is kept under its time: the next crash would write over "core".
        core = inst / "run" / "core"
        if core.exists():
            stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(core.stat().st_mtime))
            core.rename(core.with_name(f"core-{stamp}"))
        # -g: a PBX that crashes leaves a core in its run/ folder (``Lab.cores``); a crash of the
        # lab's PBX is a finding, not something to restart quietly.
        if mode == "native":
            argv = [shutil.which("asterisk"), "-f", "-g", "-C", str(inst / "etc" / "asterisk.conf")]
            cwd: Path | None = inst / "run"
        else:
            rootfs = self.settings.lab.rootfs
            (rootfs / CHROOT_MOUNT.lstrip("/")).mkdir(parents=True, exist_ok=True)
            script = ('mount --bind /proc "$1/proc" && mount --bind "$2" "$1$3" && '
                      'exec chroot "$1" sh -c \'cd "$0/run" && '
                      'exec /usr/sbin/asterisk -f -g -C "$0/etc/asterisk.conf"\' "$3"')
            cwd = None
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                    str(rootfs), str(inst.resolve()), CHROOT_MOUNT]
        return spawn(f"asterisk-{hotline.id}", argv, log, cwd=cwd)

    def _data_dir(self, data: Path, mode: str) -> None:
        """The PBX's astdatadir: every entry of Asterisk's own (as the PBX sees it: inside the
        root file system when chrooted) linked in, sounds folder by folder, and the prompts of
        [prompts] synthesized into sounds/hotline-link (hotline_link.prompts)."""
        shared = Path("/usr/share/asterisk")
        seen = (self.settings.lab.rootfs / "usr/share/asterisk") if mode == "chroot" else shared
        for top in [seen, seen / "sounds"]:
            if not top.is_dir():
                continue
            here = data if top == seen else data / "sounds"
            here.mkdir(parents=True, exist_ok=True)
            for entry in top.iterdir():
                if entry.name == "sounds" and top == seen:
                    continue
                link = here / entry.name
                # Absolute links to where the PBX sees them: inside the chroot they resolve there.
                target = shared / entry.relative_to(seen)
                if not link.is_symlink() or Path(os.readlink(link)) != target:
                    if link.is_symlink() or link.exists():
                        link.unlink()
                    link.symlink_to(target)
        prompts.build(self.settings.prompts, data / "sounds")

    def ari_auth(self, hotline: Hotline) -> str:
        pw = self._secret_file(hotline.ari.password_file, f"ari-{hotline.id}").read_text().strip()
        token = base64.b64encode(f"{hotline.ari.username}:{pw}".encode()).decode()
        return f"Basic {token}"

    def _wait_ari(self, hotline: Hotline, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = hotline.ari.url.rstrip("/") + "/ari/endpoints/PJSIP"
        proc = {p.name: p for p in self._load_state()}[f"asterisk-{hotline.id}"]
        last = "no answer"
        while time.monotonic() < deadline:
            if not proc.alive():
                raise LabError(f"asterisk {hotline.id} exited during start; see {proc.log}")
            req = urllib.request.Request(url, headers={"Authorization": self.ari_auth(hotline)})
            try:
                with urllib.request.urlopen(req, timeout=1) as resp:
                    if resp.status == 200 and json.load(resp):
                        return
            except (OSError, urllib.error.URLError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise LabError(f"ARI of {hotline.id} not ready after {timeout:.0f}s: {last}; "
                       f"see {proc.log}")

    def cli(self, hid: str, command: str) -> str:
        """Run an Asterisk CLI command on one PBX (inside its mount namespace when chrooted)."""
        proc = {p.name: p for p in self._load_state()}.get(f"asterisk-{hid}")
        if proc is None or not proc.alive():
            raise LabError(f"PBX {hid} is not running")
        if self.asterisk_mode() == "native":
            argv = ["asterisk", "-C", str(self.instance_dir(hid) / "etc" / "asterisk.conf"), "-rx", command]
        else:
            argv = ["nsenter", "--target", str(proc.pid), "--mount", "chroot",
                    str(self.settings.lab.rootfs), "/usr/sbin/asterisk", "-C",
                    f"{CHROOT_MOUNT}/etc/asterisk.conf", "-rx", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout

    # --- the descriptor ------------------------------------------------------------------------
    def descriptor(self, accounts: list[Account] | None = None) -> dict:
        """What tests, the demo and outside tools need to use the lab (schema in README)."""
        accounts = accounts or self.accounts()
        s = self.settings
        procs = {p.name: p for p in self._load_state()}
        pbx = {}
        for hid, hotline in s.hotlines.items():
            lp = s.lab.pbx[hid]
            pbx[hid] = {
                "name": hotline.name,
                "sip": {"host": lp.sip_host, "port": lp.sip_port, "transport": "udp"},
                "ari": {"url": hotline.ari.url, "username": hotline.ari.username,
                        "password_file": str(self._secret_file(hotline.ari.password_file,
                                                               f"ari-{hid}")),
                        "app": hotline.ari.app},
                "pid": procs[f"asterisk-{hid}"].pid if f"asterisk-{hid}" in procs else None,
                "log": str(self.instance_dir(hid) / "log"),
            }
        acc = []
        for a in accounts:
            lp = s.lab.pbx[a.hotline]
            acc.append({
                "role": a.role, "hotline": a.hotline, "username": a.username,
                "password": a.password, "number": a.number,
                "registrar": f"sip:{lp.sip_host}:{lp.sip_port}",
                "uri": f"sip:{a.username}@{lp.sip_host}:{lp.sip_port}", "dials": a.dials,
            })
        return {
            "version": DESCRIPTOR_VERSION,
            "state_dir": str(self.state_dir),
            "config_file": self.config_file,
            "phone_host": s.lab.phone_host,
            "pbx": pbx,
            "accounts": acc,
            "keys": {seq: action for seq, action in s.keys.bindings().items()},
            "target_keys": {hid: {seq: action.partition(":")[2]
                                  for seq, action in s.key_bindings(hid).items()
                                  if action.startswith("transfer:")}
                            for hid in s.hotlines},
            # Under Sentinel: the primary now, the sentinels, the master name and every process.
            "redis": (self.sentinel.descriptor(procs) if self.sentinel is not None else
                      {"url": f"redis://127.0.0.1:{s.lab.redis_port}/0",
                       "pid": procs["redis"].pid if "redis" in procs else None}),
            "services": {"sidecar": f"http://{s.sidecar.listen[0]}:{s.sidecar.listen[1]}",
                         **{f"standin-{pid}": api.url for pid, api in s.sidecar.platforms.items()}},
        }
