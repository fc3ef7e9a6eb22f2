"""Service configuration: embedded defaults -> file -> environment, validated with paths.

Every problem is reported with the dotted path of the key it concerns, all at once, so an
admin fixes a file in one pass::

    hotlines.110.ari.url: not a URL: 'htp//x'
    keys.accept: 'X7' is not a key (expected '*' or '#' and 1-3 digits)

Unknown keys are errors too: a misspelt key silently falling back to its default is the kind of
mistake that surfaces at 3 a.m. on a live hotline.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from contracts.vocab import AlertKind, DecisionAction

ENV_PREFIX = "HOTLINE_LINK__"
HOME_ENV = "HOTLINE_LINK_HOME"
_SOURCE_TREE = Path(__file__).resolve().parent.parent

KEY_RE = re.compile(r"^[*#][0-9]{1,3}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# A dial string is always ours (config), never input; still refuse the characters that would let
# a config value smuggle extra Dial() arguments or channels ("," "&" "(" ")" "$" "{").
DIAL_RE = re.compile(r"^(PJSIP|IAX2|DAHDI|Local)/[A-Za-z0-9_.@+*#/-]+$")
_AGENT_CHANNEL = re.compile(r"^PJSIP/([A-Za-z0-9_.-]+)-[0-9a-f]{8}$")
KEY_NAMES = ("transfer", "three_way", "emergency", "out_of_scope", *DecisionAction)


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists every ``path: message``."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class AriSettings:
    url: str
    username: str
    password: str | None
    app: str
    password_file: Path | None = None

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 8088


@dataclass(frozen=True)
class AmiSettings:
    """Asterisk Manager Interface of a PBX: used only to move a call bridged by the centre's own
    Queue()/Dial() into the ARI application (Redirect with ExtraChannel) when an agent presses a
    transfer key there."""
    host: str
    port: int
    username: str
    secret: str | None
    secret_file: Path | None = None


@dataclass(frozen=True)
class Target:
    id: str
    dial: str
    key: str | None = None      # its own one-key transfer key, besides keys.transfer
    name: str = ""


@dataclass(frozen=True)
class Hotline:
    id: str
    name: str
    agents: tuple[str, ...]
    ari: AriSettings
    targets: dict[str, Target]
    ami: AmiSettings | None = None
    screen_to: str | None = None   # target for callers flagged for malicious harassment (R9)
    emergency_to: str | None = None  # target of the emergency key (R4); none: the key does nothing

    def agent_of_channel(self, name: str) -> str | None:
        """The agent endpoint of a PJSIP channel name (``PJSIP/12345-a1-0000002a``), if it is
        one of this hotline's agents."""
        match = _AGENT_CHANNEL.match(name or "")
        return match.group(1) if match and match.group(1) in self.agents else None


@dataclass(frozen=True)
class Keys:
    transfer: str
    three_way: str
    emergency: str
    out_of_scope: str
    accept: str
    leave: str
    undecided: str
    cancel: str
    inter_digit_timeout: float

    def bindings(self) -> dict[str, str]:
        """Key sequence -> action name."""
        return {getattr(self, name): name for name in KEY_NAMES}


@dataclass(frozen=True)
class Timeouts:
    agent_ring: float
    transfer_ring: float
    no_agent_retry: float


@dataclass(frozen=True)
class LabPbx:
    sip_host: str
    sip_port: int
    rtp_ports: tuple[int, int]


@dataclass(frozen=True)
class LabSettings:
    state_dir: Path
    rootfs: Path
    redis_port: int
    phone_host: str
    pbx: dict[str, LabPbx]
    redis_appendfsync: str = "always"        # always | everysec | no | off (no AOF at all)


@dataclass(frozen=True)
class PlatformApi:
    """One platform's ticket system (outside our product): 12345's work orders, 110's dispatch."""
    url: str
    token: str | None = None


@dataclass(frozen=True)
class Webhook:
    url: str
    events: tuple[str, ...]
    secret: str | None
    secret_file: Path | None = None


@dataclass(frozen=True)
class Deadline:
    """Supervision (督办) of a synced ticket: seconds to report acceptance and the final result;
    an overdue item is alerted once, and again ``escalate`` seconds later if still open."""
    accept: float
    final: float
    escalate: float


WEBHOOK_EVENTS = tuple(AlertKind)


@dataclass(frozen=True)
class SidecarSettings:
    listen: tuple[str, int]
    token: str | None
    token_file: Path | None = None
    consumer: str = "sidecar-1"
    retry_for: float = 300.0
    request_timeout: float = 5.0
    concurrency: int = 32                  # outcome records synced at once
    platforms: dict[str, PlatformApi] = field(default_factory=dict)
    webhooks: tuple[Webhook, ...] = ()
    deadlines: dict[str, Deadline] = field(default_factory=dict)   # "default" and per category
    # R15: matters that are leads on threats to social stability, and disputes 110 passes to
    # 12345 for joint mediation (matter codes of the catalog).
    stability: tuple[str, ...] = ("stability_leads",)
    disputes: tuple[str, ...] = ("consumer_rights", "market_supervision")

    def deadline(self, category: str | None) -> Deadline:
        return self.deadlines.get(category or "", self.deadlines["default"])


@dataclass(frozen=True)
class AgiSettings:
    listen: tuple[str, int]


@dataclass(frozen=True)
class ScreeningSettings:
    harassment_set: str             # Redis set of caller numbers flagged for harassment


@dataclass(frozen=True)
class Settings:
    home: Path
    log_level: str
    log_format: str
    spool_dir: Path
    redis_url: str
    keys: Keys
    timeouts: Timeouts
    hotlines: dict[str, Hotline]
    sidecar: SidecarSettings
    lab: LabSettings
    agi: AgiSettings
    screening: ScreeningSettings
    sources: tuple[str, ...] = field(default=())

    def key_bindings(self, hotline_id: str) -> dict[str, str]:
        """Key sequence -> action for agents of this hotline: the global keys, plus
        ``transfer:<target>`` for every target with a key of its own."""
        bindings = self.keys.bindings()
        for tid, t in self.hotlines[hotline_id].targets.items():
            if t.key:
                bindings[t.key] = f"transfer:{tid}"
        return bindings


def project_home() -> Path:
    """Where config/ and dialplan/ live: $HOTLINE_LINK_HOME (set in the Docker image), else the
    source tree this package runs from."""
    return Path(os.environ.get(HOME_ENV) or _SOURCE_TREE).resolve()


def defaults_file() -> Path:
    return project_home() / "config" / "hotline-link.toml"


def load(path: str | os.PathLike | None = None, *, env: Mapping[str, str] | None = None,
         secrets: bool = True) -> Settings:
    """Load and validate. ``secrets=False`` skips reading password/token files (the lab uses it
    before it has generated them)."""
    env = os.environ if env is None else env
    sources = [str(defaults_file())]
    raw = _read_toml(defaults_file())
    if path is not None:
        sources.append(str(path))
        try:
            overlay = _read_toml(Path(path))
        except FileNotFoundError:
            raise ConfigError([f"{path}: no such file"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
        raw = _merge(raw, overlay)
    env_overlay, problems = _env_overlay(env)
    if env_overlay:
        sources.append("environment")
        raw = _merge(raw, env_overlay)
    if problems:
        raise ConfigError(problems)
    return _Validator(raw, project_home(), env, secrets).settings(tuple(sources))


def _read_toml(path: Path) -> dict:
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def _merge(base: dict, overlay: Mapping) -> dict:
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_overlay(env: Mapping[str, str]) -> tuple[dict, list[str]]:
    overlay: dict = {}
    problems = []
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if not all(parts):
            problems.append(f"{name}: empty part in the key path")
            continue
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        node = overlay
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return overlay, problems


class _Validator:
    """Walks the merged dict once, collecting every problem with its path."""

    def __init__(self, raw: dict, home: Path, env: Mapping[str, str], secrets: bool):
        self.raw = raw
        self.home = home
        self.env = env
        self.secrets = secrets
        self.problems: list[str] = []

    # --- primitives -------------------------------------------------------------------------
    def _get(self, node: Mapping, path: str, key: str, default: Any = ...) -> Any:
        if not isinstance(node, Mapping):
            return None
        if key not in node:
            if default is ...:
                self.problems.append(f"{path}.{key}: missing")
                return None
            return default
        return node[key]

    def _table(self, node: Any, path: str, allowed: set[str] | None) -> Mapping:
        if not isinstance(node, Mapping):
            self.problems.append(f"{path}: expected a table, got {type(node).__name__}")
            return {}
        if allowed is not None:
            for key in node:
                if key not in allowed:
                    self.problems.append(f"{path}.{key}: unknown key")
        return node

    def string(self, node: Mapping, path: str, key: str, pattern: re.Pattern | None = None,
               what: str = "", default: Any = ...) -> str | None:
        value = self._get(node, path, key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.problems.append(f"{path}.{key}: expected a non-empty string, got {value!r}")
            return None
        if pattern is not None and not pattern.match(value):
            self.problems.append(f"{path}.{key}: {value!r} is not {what}")
            return None
        return value

    def choice(self, node: Mapping, path: str, key: str, options: tuple[str, ...]) -> str | None:
        value = self._get(node, path, key)
        if value not in options:
            self.problems.append(f"{path}.{key}: {value!r} is not one of {', '.join(options)}")
            return None
        return value

    def number(self, node: Mapping, path: str, key: str, lo: float, hi: float,
               integer: bool = False) -> Any:
        value = self._get(node, path, key)
        ok_type = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_type):
            kind = "an integer" if integer else "a number"
            self.problems.append(f"{path}.{key}: expected {kind}, got {value!r}")
            return None
        if not lo <= value <= hi:
            self.problems.append(f"{path}.{key}: {value!r} is out of range [{lo}, {hi}]")
            return None
        return value

    def url(self, node: Mapping, path: str, key: str, schemes: tuple[str, ...]) -> str | None:
        value = self._get(node, path, key)
        if value is None:
            return None
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme not in schemes or not parts.netloc:
            self.problems.append(f"{path}.{key}: not a URL ({'/'.join(schemes)}): {value!r}")
            return None
        try:
            parts.port
        except ValueError:
            self.problems.append(f"{path}.{key}: bad port in {value!r}")
            return None
        return value

    def host_port(self, node: Mapping, path: str, key: str) -> tuple[str, int] | None:
        value = self.string(node, path, key)
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            self.problems.append(f"{path}.{key}: expected host:port, got {value!r}")
            return None
        return host, int(port)

    def names(self, node: Mapping, path: str, key: str) -> tuple[str, ...]:
        value = self._get(node, path, key)
        if not isinstance(value, list) or not value:
            self.problems.append(f"{path}.{key}: expected a non-empty list of names")
            return ()
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not NAME_RE.match(item):
                self.problems.append(f"{path}.{key}[{i}]: {item!r} is not an endpoint name")
            else:
                out.append(item)
        if len(set(out)) != len(out):
            self.problems.append(f"{path}.{key}: duplicate names")
        return tuple(out)

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.home / p

    def secret_path(self, node: Mapping, what: str) -> Path | None:
        value = node.get(f"{what}_file") if isinstance(node, Mapping) else None
        return self.path(value) if isinstance(value, str) and value else None

    def secret(self, node: Mapping, path: str, what: str) -> str | None:
        """``<what>_file`` or ``<what>_env``; exactly one must be set."""
        file_key, env_key = f"{what}_file", f"{what}_env"
        has_file, has_env = file_key in node, env_key in node
        if has_file == has_env:
            self.problems.append(f"{path}: set exactly one of {file_key}, {env_key}")
            return None
        # The reference is checked even when the secret itself is not read (the lab before it
        # generated its secrets): a wrong reference must not wait for the day it is used.
        name = self.string(node, path, env_key if has_env else file_key)
        if name is None or not self.secrets:
            return None
        if has_env:
            value = self.env.get(name)
            if not value:
                self.problems.append(f"{path}.{env_key}: environment variable {name} is not set")
            return value or None
        try:
            value = self.path(name).read_text().strip()
        except OSError as exc:
            self.problems.append(f"{path}.{file_key}: cannot read {name}: {exc.strerror}")
            return None
        if not value:
            self.problems.append(f"{path}.{file_key}: {name} is empty")
        return value or None

    # --- sections ---------------------------------------------------------------------------
    def settings(self, sources: tuple[str, ...]) -> Settings:
        root = self._table(self.raw, "(root)",
                           {"service", "redis", "keys", "timeouts", "hotlines", "sidecar", "lab",
                            "agi", "screening"})
        svc = self._table(root.get("service", {}), "service",
                          {"log_level", "log_format", "spool_dir"})
        spool_dir = self.string(svc, "service", "spool_dir")
        log_level = self.choice(svc, "service", "log_level", ("debug", "info", "warning", "error"))
        log_format = self.choice(svc, "service", "log_format", ("json", "console", "auto"))
        red = self._table(root.get("redis", {}), "redis", {"url"})
        redis_url = self.url(red, "redis", "url", ("redis", "rediss", "unix"))
        keys = self._keys(self._table(root.get("keys", {}), "keys", {*KEY_NAMES, "inter_digit_timeout"}))
        tmo = self._table(root.get("timeouts", {}), "timeouts",
                          {"agent_ring", "transfer_ring", "no_agent_retry"})
        timeouts = Timeouts(
            agent_ring=self.number(tmo, "timeouts", "agent_ring", 1, 600),
            transfer_ring=self.number(tmo, "timeouts", "transfer_ring", 1, 600),
            no_agent_retry=self.number(tmo, "timeouts", "no_agent_retry", 0.1, 60),
        )
        hotlines = self._hotlines(root.get("hotlines", {}))
        self._target_keys(keys, hotlines)
        sidecar = self._sidecar(self._table(
            root.get("sidecar", {}), "sidecar",
            {"listen", "token_file", "token_env", "consumer", "retry_for", "request_timeout",
             "platforms", "webhooks", "deadlines", "signals", "concurrency"}), hotlines)
        lab = self._lab(root.get("lab", {}), hotlines)
        agi_node = self._table(root.get("agi", {}), "agi", {"listen"})
        agi = AgiSettings(listen=self.host_port(agi_node, "agi", "listen"))
        scr = self._table(root.get("screening", {}), "screening", {"harassment_set"})
        screening = ScreeningSettings(harassment_set=self.string(scr, "screening", "harassment_set"))
        if self.problems:
            raise ConfigError(self.problems)
        return Settings(
            home=self.home, log_level=log_level, log_format=log_format,
            spool_dir=self.path(spool_dir or "var/spool"), redis_url=redis_url,
            keys=keys, timeouts=timeouts, hotlines=hotlines, sidecar=sidecar, lab=lab,
            agi=agi, screening=screening, sources=sources,
        )

    def _keys(self, node: Mapping) -> Keys:
        values = {}
        for name in KEY_NAMES:
            values[name] = self.string(node, "keys", name, KEY_RE,
                                       "a key (expected '*' or '#' and 1-3 digits)")
        seen: dict[str, str] = {}
        for name, key in values.items():
            if key is None:
                continue
            for other_key, other in seen.items():
                if key.startswith(other_key) or other_key.startswith(key):
                    self.problems.append(
                        f"keys.{name}: {key!r} collides with keys.{other} ({other_key!r}); "
                        "one key may not be the start of another")
            seen[key] = name
        idt = self.number(node, "keys", "inter_digit_timeout", 0.2, 10)
        return Keys(**values, inter_digit_timeout=idt)

    def _hotlines(self, node: Any) -> dict[str, Hotline]:
        node = self._table(node, "hotlines", None)
        if not node:
            self.problems.append("hotlines: at least one hotline is required")
        out = {}
        for hid, h in node.items():
            path = f"hotlines.{hid}"
            if not NAME_RE.match(hid):
                self.problems.append(f"{path}: {hid!r} is not a valid hotline id")
            h = self._table(h, path, {"name", "agents", "ari", "targets", "ami", "screen_to", "emergency_to"})
            ari_node = self._table(h.get("ari", {}), f"{path}.ari",
                                   {"url", "username", "password_file", "password_env", "app"})
            ari = AriSettings(
                url=self.url(ari_node, f"{path}.ari", "url", ("http", "https")),
                username=self.string(ari_node, f"{path}.ari", "username"),
                password=self.secret(ari_node, f"{path}.ari", "password"),
                app=self.string(ari_node, f"{path}.ari", "app", NAME_RE, "an application name"),
                password_file=self.secret_path(ari_node, "password"),
            )
            targets = {}
            for tid, t in self._table(h.get("targets", {}), f"{path}.targets", None).items():
                tpath = f"{path}.targets.{tid}"
                if not NAME_RE.match(tid):
                    self.problems.append(f"{tpath}: {tid!r} is not a valid target id")
                t = self._table(t, tpath, {"dial", "key", "name"})
                dial = self.string(t, tpath, "dial", DIAL_RE,
                                   "a dial string (TECH/resource, no ',', '&', '$' or spaces)")
                key = self.string(t, tpath, "key", KEY_RE,
                                  "a key (expected '*' or '#' and 1-3 digits)", default=None)
                targets[tid] = Target(id=tid, dial=dial, key=key,
                                      name=self.string(t, tpath, "name", default=tid))
            screen_to = self.string(h, path, "screen_to", default=None)
            if screen_to is not None and screen_to not in targets:
                self.problems.append(f"{path}.screen_to: {screen_to!r} is not a target of {hid}")
            emergency_to = self.string(h, path, "emergency_to", default=None)
            if emergency_to is not None and emergency_to not in targets:
                self.problems.append(f"{path}.emergency_to: {emergency_to!r} is not a target of "
                                     f"{hid}")
            out[hid] = Hotline(id=hid, name=self.string(h, path, "name", default=hid),
                               agents=self.names(h, path, "agents"), ari=ari, targets=targets,
                               ami=self._ami(h.get("ami"), f"{path}.ami"), screen_to=screen_to,
                               emergency_to=emergency_to)
        apps = [h.ari.app for h in out.values() if h.ari.app]
        if len(set(apps)) != len(apps):
            self.problems.append("hotlines: two hotlines share one ari.app name")
        for hid, h in out.items():
            for tid in h.targets:
                if tid == hid:
                    self.problems.append(f"hotlines.{hid}.targets.{tid}: a hotline cannot target itself")
        return out

    def _ami(self, node: Any, path: str) -> AmiSettings | None:
        if node is None:
            return None
        node = self._table(node, path, {"host", "username", "secret_file", "secret_env"})
        hp = self.host_port(node, path, "host") or ("", 0)
        return AmiSettings(host=hp[0], port=hp[1], username=self.string(node, path, "username"),
                           secret=self.secret(node, path, "secret"),
                           secret_file=self.secret_path(node, "secret"))

    def _target_keys(self, keys: Keys, hotlines: dict[str, "Hotline"]) -> None:
        global_keys = {getattr(keys, n): f"keys.{n}" for n in KEY_NAMES if getattr(keys, n)}
        for hid, h in hotlines.items():
            seen = dict(global_keys)
            for tid, t in h.targets.items():
                if not t.key:
                    continue
                for other_key, where in seen.items():
                    if t.key.startswith(other_key) or other_key.startswith(t.key):
                        self.problems.append(f"hotlines.{hid}.targets.{tid}.key: {t.key!r} "
                                             f"collides with {where} ({other_key!r})")
                seen[t.key] = f"hotlines.{hid}.targets.{tid}.key"

    def _sidecar(self, node: Mapping, hotlines: dict[str, Hotline]) -> SidecarSettings:
        listen = self.host_port(node, "sidecar", "listen")
        platforms = {}
        for pid, p in self._table(node.get("platforms", {}), "sidecar.platforms", None).items():
            path = f"sidecar.platforms.{pid}"
            if pid not in hotlines:
                self.problems.append(f"{path}: no hotline {pid!r} is configured")
            p = self._table(p, path, {"url", "token_file", "token_env"})
            token = (self.secret(p, path, "token")
                     if "token_file" in p or "token_env" in p else None)
            platforms[pid] = PlatformApi(url=self.url(p, path, "url", ("http", "https")), token=token)
        hooks = []
        raw_hooks = node.get("webhooks", [])
        if not isinstance(raw_hooks, list):
            self.problems.append("sidecar.webhooks: expected an array of tables")
            raw_hooks = []
        for i, h in enumerate(raw_hooks):
            path = f"sidecar.webhooks[{i}]"
            h = self._table(h, path, {"url", "events", "secret_file", "secret_env"})
            events = h.get("events", [])
            if not isinstance(events, list) or not events or any(e not in WEBHOOK_EVENTS for e in events):
                self.problems.append(f"{path}.events: expected a non-empty list of "
                                     f"{', '.join(WEBHOOK_EVENTS)}, got {events!r}")
                events = []
            hooks.append(Webhook(url=self.url(h, path, "url", ("http", "https")),
                                 events=tuple(events), secret=self.secret(h, path, "secret"),
                                 secret_file=self.secret_path(h, "secret")))
        return SidecarSettings(
            listen=listen, token=self.secret(node, "sidecar", "token"),
            token_file=self.secret_path(node, "token"),
            consumer=self.string(node, "sidecar", "consumer", NAME_RE, "a consumer name",
                                 default="sidecar-1"),
            retry_for=self.number(node, "sidecar", "retry_for", 0.1, 86400)
            if "retry_for" in node else 300.0,
            request_timeout=self.number(node, "sidecar", "request_timeout", 0.1, 120)
            if "request_timeout" in node else 5.0,
            concurrency=self.number(node, "sidecar", "concurrency", 1, 1024, integer=True) or 32
            if "concurrency" in node else 32,
            platforms=platforms, webhooks=tuple(hooks), deadlines=self._deadlines(node),
            **self._signals(node))

    def _signals(self, node: Mapping) -> dict[str, tuple[str, ...]]:
        table = self._table(node.get("signals", {}), "sidecar.signals", {"stability", "disputes"})
        out = {}
        for name in ("stability", "disputes"):
            if name not in table:
                continue
            codes = table[name]
            if not isinstance(codes, list) or any(not isinstance(c, str) or not NAME_RE.match(c)
                                                  for c in codes):
                self.problems.append(f"sidecar.signals.{name}: expected a list of matter codes, "
                                     f"got {codes!r}")
                continue
            out[name] = tuple(codes)
        return out

    def _deadlines(self, node: Mapping) -> dict[str, Deadline]:
        out = {}
        table = self._table(node.get("deadlines", {}), "sidecar.deadlines", None)
        for name, d in table.items():
            path = f"sidecar.deadlines.{name}"
            d = self._table(d, path, {"accept", "final", "escalate"})
            out[name] = Deadline(accept=self.number(d, path, "accept", 0.1, 30 * 86400),
                                 final=self.number(d, path, "final", 0.1, 365 * 86400),
                                 escalate=self.number(d, path, "escalate", 0.1, 30 * 86400))
        if "default" not in out:
            self.problems.append("sidecar.deadlines.default: missing")
        return out

    def _lab(self, node: Any, hotlines: dict[str, Hotline]) -> LabSettings:
        node = self._table(node, "lab", {"state_dir", "rootfs", "redis_port", "phone_host", "pbx",
                                         "redis_appendfsync"})
        pbx = {}
        for hid, p in self._table(node.get("pbx", {}), "lab.pbx", None).items():
            path = f"lab.pbx.{hid}"
            if hid not in hotlines:
                self.problems.append(f"{path}: no hotline {hid!r} is configured")
            p = self._table(p, path, {"sip", "rtp_ports"})
            sip = self.host_port(p, path, "sip")
            rtp = p.get("rtp_ports")
            if (not isinstance(rtp, list) or len(rtp) != 2
                    or not all(isinstance(x, int) and 1024 <= x < 65536 for x in rtp)
                    or rtp[0] >= rtp[1]):
                self.problems.append(f"{path}.rtp_ports: expected [low, high] ports, got {rtp!r}")
                rtp = [0, 0]
            if sip:
                pbx[hid] = LabPbx(sip_host=sip[0], sip_port=sip[1], rtp_ports=(rtp[0], rtp[1]))
        state_dir = self.string(node, "lab", "state_dir")
        rootfs = self.string(node, "lab", "rootfs")
        return LabSettings(
            state_dir=self.path(state_dir or "var/lab"),
            rootfs=Path(rootfs or "/"),
            redis_port=self.number(node, "lab", "redis_port", 1024, 65535, integer=True),
            phone_host=self.string(node, "lab", "phone_host"),
            pbx=pbx,
            redis_appendfsync=self.choice(node, "lab", "redis_appendfsync",
                                          ("always", "everysec", "no", "off")),
        )


def load_catalog(path: str | os.PathLike | None = None):
    """The matter catalog (``config/matter-catalog.toml`` unless given), parsed and validated."""
    from transfer.catalog import CatalogError, parse

    path = Path(path) if path is not None else project_home() / "config" / "matter-catalog.toml"
    try:
        data = _read_toml(path)
    except FileNotFoundError:
        raise CatalogError([f"{path}: no such file"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError([f"{path}: not valid TOML: {exc}"]) from None
    return parse(data)
