"""The service's configuration: [service], [redis], [keys], [timeouts], [hotlines], [agi],
[screening] and [ha], parsed into ``Settings``.

The layers and the problem report are the loader's (``hotline_link.config``); the sidecar's
section is parsed in ``sidecar.settings``, the lab's in ``hotline_link.lab_settings``. ``load``
gives the service's settings and, for a process that asks for them (``also=``), the other
components' sections as ``settings.sidecar`` and ``settings.lab``. Every default is in
``config/hotline-link.toml``; a parser here requires the keys it reads.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from contracts.vocab import KEY_ACTIONS
from transfer.delivery import POSITION_PROMPTS, SurgePlan

from . import config
from .redisconn import RedisSettings
# Importable from here as before: the loader's names that callers of this module use.
from .config import (ENV_PREFIX, HOME_ENV, NAME_RE, ConfigError, Section,  # noqa: F401
                     Validator, defaults_file, project_home, read_toml)

KEY_RE = re.compile(r"^[*#][0-9]{1,3}$")
# A dial string is always ours (config), never input; still refuse the characters that would let
# a config value smuggle extra Dial() arguments or channels ("," "&" "(" ")" "$" "{").
DIAL_RE = re.compile(r"^(PJSIP|IAX2|DAHDI|Local)/[A-Za-z0-9_.@+*#/-]+$")
_AGENT_CHANNEL = re.compile(r"^PJSIP/([A-Za-z0-9_.-]+)-[0-9a-f]{8}$")
TABLES = ("service", "redis", "keys", "timeouts", "hotlines", "agi", "screening", "ha", "prompts")


REST_TRANSPORTS = ("auto", "http")


@dataclass(frozen=True)
class AriSettings:
    url: str
    username: str
    password: str | None
    app: str
    # "auto": REST over the event WebSocket when Asterisk answers there, else HTTP; "http": never
    rest_transport: str
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
    # The prompt (a [prompts] name) a caller hears before a blind transfer here; None: none.
    announce: str | None = None


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
    # The surge plan (R8), as the delivery machine takes it; none: no surge handling.
    surge: SurgePlan | None = None
    # R4: seats (a supervisor's, an overflow desk's) an emergency nobody took is offered to as
    # well once it has waited ``emergency_seats_after`` seconds.
    emergency_seats: tuple[str, ...] = ()
    emergency_seats_after: float = 0.0
    # The whisper: origin hotline id (or "emergency") -> the prompt the answering agent hears
    # before a transferred caller is bridged. Empty: none.
    whisper: dict[str, str] = field(default_factory=dict)

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
        return {getattr(self, name): name for name in KEY_ACTIONS}


@dataclass(frozen=True)
class Timeouts:
    agent_ring: float
    transfer_ring: float
    no_agent_retry: float
    emergency_ring: float


@dataclass(frozen=True)
class AgiSettings:
    listen: tuple[str, int]         # this process's FastAGI address
    # Every instance's FastAGI address, in the order the dialplan tries them (one: ``listen``).
    servers: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class HaSettings:
    """Hot standby (双机热备): several service processes with one configuration, one active.

    ``instance`` None: this process is the only one and holds no lease. Otherwise it holds the
    lease (``hotline_link.lease``) to act, and stands by while another does."""
    instance: str | None
    lease_ttl: float
    # Instance name -> its FastAGI address (None: ``agi.listen``); empty: names not listed.
    instances: dict[str, tuple[str, int] | None] = field(default_factory=dict)
    # Instance name -> its own /metrics and /health address, where it has one (instances on one
    # host cannot share ``service.http``).
    http: dict[str, tuple[str, int]] = field(default_factory=dict)


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
    # This process's /metrics and /health address (hotline_link.observe); None: not served.
    http: tuple[str, int] | None
    keys: Keys
    timeouts: Timeouts
    hotlines: dict[str, Hotline]
    agi: AgiSettings
    screening: ScreeningSettings
    ha: HaSettings
    prompts: dict[str, str] = field(default_factory=dict)   # [prompts]: name -> text
    sources: tuple[str, ...] = field(default=())
    # Other components' sections, filled only for a process that asked for them (``load(...,
    # also=...)``): the sidecar's (``sidecar.settings.SidecarSettings``) and the lab's
    # (``hotline_link.lab_settings.LabSettings``). Typed loosely on purpose: naming their classes
    # here would make the service import the sidecar.
    sidecar: Any = None
    lab: Any = None
    # [redis] whole (the URL or Sentinel, and what a durable write waits for): what
    # ``hotline_link.redisconn.connect`` takes. ``redis_url`` above is its ``url``.
    redis: RedisSettings | None = None

    def key_bindings(self, hotline_id: str) -> dict[str, str]:
        """Key sequence -> action for agents of this hotline: the global keys, plus
        ``transfer:<target>`` for every target with a key of its own."""
        bindings = self.keys.bindings()
        for tid, t in self.hotlines[hotline_id].targets.items():
            if t.key:
                bindings[t.key] = f"transfer:{tid}"
        return bindings


def load(path: str | os.PathLike | None = None, *, env: Mapping[str, str] | None = None,
         secrets: bool = True, also: Sequence[Section] = (), lab: bool = False) -> Settings:
    """The service's settings, plus the sections of ``also`` (each fills the attribute named
    after its component). ``lab``: the lab's section is required (its defaults are layered in
    even when the file has no [lab]); pass the lab's section in ``also`` with it."""
    loaded = config.load(path, [SECTION, *also], env=env, secrets=secrets,
                         require=("lab",) if lab else ())
    others = {s.component: loaded.sections.get(s.component) for s in also}
    return dataclasses.replace(loaded.sections["service"], sources=loaded.sources, **others)


def parse(v: Validator, root: Mapping[str, Any]) -> Settings:
    svc = v.table(root.get("service", {}), "service",
                  {"log_level", "log_format", "spool_dir", "instance", "http"})
    spool_dir = v.string(svc, "service", "spool_dir")
    http_raw = v.get(svc, "service", "http")       # "": no endpoint
    http = v.host_port(svc, "service", "http") if http_raw not in (None, "") else None
    log_level = v.choice(svc, "service", "log_level", ("debug", "info", "warning", "error"))
    log_format = v.choice(svc, "service", "log_format", ("json", "console", "auto"))
    red = v.table(root.get("redis", {}), "redis",
                  {"url", "sentinels", "master_name", "durable_replicas", "durable_wait_ms"})
    redis_url = v.url(red, "redis", "url", ("redis", "rediss", "unix"))
    redis = _redis(v, red, redis_url)
    keys = _keys(v, v.table(root.get("keys", {}), "keys", {*KEY_ACTIONS, "inter_digit_timeout"}))
    tmo = v.table(root.get("timeouts", {}), "timeouts",
                  {"agent_ring", "transfer_ring", "no_agent_retry", "emergency_ring"})
    timeouts = Timeouts(
        agent_ring=v.number(tmo, "timeouts", "agent_ring", 1, 600),
        transfer_ring=v.number(tmo, "timeouts", "transfer_ring", 1, 600),
        no_agent_retry=v.number(tmo, "timeouts", "no_agent_retry", 0.1, 60),
        emergency_ring=v.number(tmo, "timeouts", "emergency_ring", 1, 3600),
    )
    prompts = _prompts(v, root.get("prompts", {}))
    hotlines = _hotlines(v, root.get("hotlines", {}), prompts)
    _target_keys(v, keys, hotlines)
    ha = _ha(v, svc, root.get("ha", {}))
    agi_node = v.table(root.get("agi", {}), "agi", {"listen"})
    listen = v.host_port(agi_node, "agi", "listen")
    own = ha.instances.get(ha.instance) if ha.instance else None
    listed = tuple(a or listen for a in ha.instances.values())
    agi = AgiSettings(listen=own or listen, servers=listed or (own or listen,))
    http = ha.http.get(ha.instance, http) if ha.instance else http
    scr = v.table(root.get("screening", {}), "screening", {"harassment_set"})
    screening = ScreeningSettings(harassment_set=v.string(scr, "screening", "harassment_set"))
    return Settings(
        home=v.home, log_level=log_level, log_format=log_format,
        spool_dir=v.path(spool_dir) if spool_dir else None, redis_url=redis_url, http=http,
        keys=keys, timeouts=timeouts, hotlines=hotlines, agi=agi, screening=screening, ha=ha,
        prompts=prompts,
        redis=redis,
    )


# WAIT must return before the service's Redis socket timeout (0.5 s, hotline_link.service), or
# the wait itself would be taken for a dead Redis.
DURABLE_WAIT_MAX_MS = 400


def _redis(v: Validator, node: Mapping, url: str | None) -> RedisSettings:
    raw = v.get(node, "redis", "sentinels")
    sentinels = []
    if not isinstance(raw, list):
        if raw is not None:
            v.problems.append(f"redis.sentinels: expected a list of host:port, got {raw!r}")
    else:
        for i, item in enumerate(raw):
            host, sep, port = item.rpartition(":") if isinstance(item, str) else ("", "", "")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                v.problems.append(f"redis.sentinels[{i}]: expected host:port, got {item!r}")
            else:
                sentinels.append((host, int(port)))
        if len(set(sentinels)) != len(sentinels):
            v.problems.append("redis.sentinels: the same sentinel listed twice")
    master_name = v.string(node, "redis", "master_name", NAME_RE, "a Sentinel master name")
    replicas = v.number(node, "redis", "durable_replicas", 0, 5, integer=True)
    wait_ms = v.number(node, "redis", "durable_wait_ms", 1, DURABLE_WAIT_MAX_MS, integer=True)
    if replicas and not sentinels:
        # Without Sentinel nothing fails over to a replica, so waiting for one buys nothing and
        # costs a round trip per write (and stalls every write when the replica is away).
        v.problems.append(f"redis.durable_replicas: {replicas} needs redis.sentinels (without "
                          "Sentinel no replica ever takes over; use 0)")
    if url and sentinels and url.startswith("unix"):
        v.problems.append("redis.url: a unix socket cannot be combined with redis.sentinels "
                          "(Sentinel names a host and port)")
    return RedisSettings(url=url, sentinels=tuple(sentinels), master_name=master_name,
                         durable_replicas=replicas, durable_wait_ms=wait_ms)


def _ha(v: Validator, svc: Mapping, node: Any) -> HaSettings:
    node = v.table(node, "ha", {"lease_ttl", "instances"})
    instances: dict[str, tuple[str, int] | None] = {}
    http: dict[str, tuple[str, int]] = {}
    listed = v.table(node.get("instances", {}), "ha.instances", None)
    for name, inst in listed.items():
        path = f"ha.instances.{name}"
        if not NAME_RE.match(name):
            v.problems.append(f"{path}: {name!r} is not a valid instance name")
            continue
        inst = v.table(inst, path, {"agi", "http"})
        instances[name] = v.host_port(inst, path, "agi") if v.optional(inst, "agi") else None
        if v.optional(inst, "http") and (addr := v.host_port(inst, path, "http")):
            http[name] = addr
    instance = (v.string(svc, "service", "instance", NAME_RE, "an instance name")
                if v.optional(svc, "instance") else None)
    if instance and instances and instance not in instances:
        v.problems.append(f"service.instance: {instance!r} is not one of ha.instances "
                          f"({', '.join(instances)})")
    return HaSettings(instance=instance, lease_ttl=v.number(node, "ha", "lease_ttl", 1, 60),
                      instances=instances, http=http)


SECTION = Section("service", TABLES, parse)


def _keys(v: Validator, node: Mapping) -> Keys:
    values = {}
    for name in KEY_ACTIONS:
        values[name] = v.string(node, "keys", name, KEY_RE,
                                "a key (expected '*' or '#' and 1-3 digits)")
    seen: dict[str, str] = {}
    for name, key in values.items():
        if key is None:
            continue
        for other_key, other in seen.items():
            if key.startswith(other_key) or other_key.startswith(key):
                v.problems.append(
                    f"keys.{name}: {key!r} collides with keys.{other} ({other_key!r}); "
                    "one key may not be the start of another")
        seen[key] = name
    idt = v.number(node, "keys", "inter_digit_timeout", 0.2, 10)
    return Keys(**values, inter_digit_timeout=idt)


PROMPT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def _prompts(v: Validator, node: Any) -> dict[str, str]:
    """Prompt name -> its text (zh-CN first): what the lab synthesizes, and what an admin
    records under ``hotline-link/<name>`` for production."""
    out = {}
    for name, text in v.table(node, "prompts", None).items():
        if not PROMPT_NAME_RE.match(name):
            v.problems.append(f"prompts.{name}: not a valid prompt name (lower-case letters, "
                              "digits, '-' and '_')")
        elif not isinstance(text, str) or not text.strip():
            v.problems.append(f"prompts.{name}: expected the prompt's text")
        else:
            out[name] = text.strip()
    return out


def _surge(v: Validator, h: Mapping, path: str, agents: tuple[str, ...],
           prompts: dict[str, str]) -> SurgePlan:
    node = v.table(h.get("surge"), path, {"waiting", "longest_wait", "calm_after", "overflow",
                                          "menu_after", "menu", "answers", "callback_key",
                                          "callback_done", "position_every"})
    raw = v.get(node, path, "overflow")
    overflow: tuple[str, ...] = ()
    if not isinstance(raw, list) or not all(isinstance(x, str) and NAME_RE.match(x) for x in raw):
        if raw is not None:
            v.problems.append(f"{path}.overflow: expected a list of PJSIP endpoint names")
    else:
        overflow = tuple(raw)
        for seat in overflow:
            if seat in agents:
                v.problems.append(f"{path}.overflow: {seat!r} is one of the hotline's agents "
                                  "already")
    def prompt(key: str) -> str | None:
        if not v.optional(node, key):
            return None
        name = v.string(node, path, key)
        if name and name not in prompts:
            v.problems.append(f"{path}.{key}: {name!r} is not one of [prompts]")
        return name or None

    menu = prompt("menu")
    if v.optional(node, "position_every"):
        missing = [n for n in POSITION_PROMPTS if n not in prompts]
        if missing:
            v.problems.append(f"{path}.position_every: the place-in-line prompts are missing "
                              f"from [prompts]: {', '.join(missing)}")
    answers: dict[str, str] = {}
    for key, name in v.table(node.get("answers", {}), f"{path}.answers", None).items():
        if not re.fullmatch(r"[0-9]", key):
            v.problems.append(f"{path}.answers: {key!r} is not a key (one digit 0-9)")
        elif not isinstance(name, str) or name not in prompts:
            v.problems.append(f"{path}.answers.{key}: {name!r} is not one of [prompts]")
        else:
            answers[key] = name
    callback_key = (v.string(node, path, "callback_key", re.compile(r"^[0-9]$"), "one digit 0-9")
                    if v.optional(node, "callback_key") else None)
    if callback_key and callback_key in answers:
        v.problems.append(f"{path}.callback_key: {callback_key!r} is also an answer's key")
    return SurgePlan(waiting=v.number(node, path, "waiting", 1, 10_000, integer=True),
                         longest_wait=v.number(node, path, "longest_wait", 1, 3600),
                         calm_after=v.number(node, path, "calm_after", 0, 3600),
                         overflow=overflow,
                         menu_after=(v.number(node, path, "menu_after", 0, 3600)
                                     if v.optional(node, "menu_after") else None),
                         menu=menu, answers=answers, callback_key=callback_key,
                         callback_done=prompt("callback_done"),
                         position_every=(v.number(node, path, "position_every", 5, 3600)
                                         if v.optional(node, "position_every") else None))


def _whisper(v: Validator, h: Mapping, path: str, prompts: dict[str, str]) -> dict[str, str]:
    out = {}
    for origin, name in v.table(h.get("whisper", {}), path, None).items():
        if not isinstance(name, str) or name not in prompts:
            v.problems.append(f"{path}.{origin}: {name!r} is not one of [prompts]")
        else:
            out[origin] = name
    return out


def _hotlines(v: Validator, node: Any, prompts: dict[str, str]) -> dict[str, Hotline]:
    node = v.table(node, "hotlines", None)
    if not node:
        v.problems.append("hotlines: at least one hotline is required")
    out = {}
    for hid, h in node.items():
        path = f"hotlines.{hid}"
        if not NAME_RE.match(hid):
            v.problems.append(f"{path}: {hid!r} is not a valid hotline id")
        h = v.table(h, path, {"name", "agents", "ari", "targets", "ami", "screen_to",
                              "emergency_to", "surge", "emergency_seats",
                              "emergency_seats_after", "whisper"})
        ari_node = v.table(h.get("ari", {}), f"{path}.ari",
                           {"url", "username", "password_file", "password_env", "app",
                            "rest_transport"})
        ari = AriSettings(
            url=v.url(ari_node, f"{path}.ari", "url", ("http", "https")),
            username=v.string(ari_node, f"{path}.ari", "username"),
            password=v.secret(ari_node, f"{path}.ari", "password"),
            app=v.string(ari_node, f"{path}.ari", "app", NAME_RE, "an application name"),
            rest_transport=v.choice(ari_node, f"{path}.ari", "rest_transport", REST_TRANSPORTS),
            password_file=v.secret_path(ari_node, "password"),
        )
        targets = {}
        for tid, t in v.table(h.get("targets", {}), f"{path}.targets", None).items():
            tpath = f"{path}.targets.{tid}"
            if not NAME_RE.match(tid):
                v.problems.append(f"{tpath}: {tid!r} is not a valid target id")
            t = v.table(t, tpath, {"dial", "key", "name", "announce"})
            dial = v.string(t, tpath, "dial", DIAL_RE,
                            "a dial string (TECH/resource, no ',', '&', '$' or spaces)")
            # Optional: a target without a key of its own is reached by keys.transfer (the other
            # platform) or the phone's transfer button only.
            key = (v.string(t, tpath, "key", KEY_RE, "a key (expected '*' or '#' and 1-3 digits)")
                   if v.optional(t, "key") else None)
            # "" switches an announcement off (as leaving it out does), e.g. from the environment.
            announce = (v.string(t, tpath, "announce")
                        if v.optional(t, "announce") and t["announce"] != "" else None)
            if announce and announce not in prompts:
                v.problems.append(f"{tpath}.announce: {announce!r} is not one of [prompts]")
            targets[tid] = Target(id=tid, dial=dial, key=key, name=_name(v, t, tpath, tid),
                                  announce=announce or None)
        screen_to = v.string(h, path, "screen_to") if v.optional(h, "screen_to") else None
        if screen_to is not None and screen_to not in targets:
            v.problems.append(f"{path}.screen_to: {screen_to!r} is not a target of {hid}")
        emergency_to = v.string(h, path, "emergency_to") if v.optional(h, "emergency_to") else None
        if emergency_to is not None and emergency_to not in targets:
            v.problems.append(f"{path}.emergency_to: {emergency_to!r} is not a target of {hid}")
        agents = v.names(h, path, "agents")
        surge = (_surge(v, h, f"{path}.surge", agents, prompts) if v.optional(h, "surge")
                 else None)
        seats: tuple[str, ...] = ()
        seats_after = 0.0
        if v.optional(h, "emergency_seats"):
            seats = v.names(h, path, "emergency_seats")
            seats_after = v.number(h, path, "emergency_seats_after", 0, 3600)
            for seat in seats:
                if seat in agents or (surge and seat in surge.overflow):
                    v.problems.append(f"{path}.emergency_seats: {seat!r} is an agent or an "
                                      "overflow seat of the hotline already")
        out[hid] = Hotline(id=hid, name=_name(v, h, path, hid),
                           agents=agents, ari=ari, targets=targets,
                           ami=_ami(v, h, f"{path}.ami"), screen_to=screen_to,
                           emergency_to=emergency_to, surge=surge, emergency_seats=seats,
                           emergency_seats_after=seats_after,
                           whisper=_whisper(v, h, f"{path}.whisper", prompts))
    apps = [h.ari.app for h in out.values() if h.ari.app]
    if len(set(apps)) != len(apps):
        v.problems.append("hotlines: two hotlines share one ari.app name")
    for hid, h in out.items():
        for tid in h.targets:
            if tid == hid:
                v.problems.append(f"hotlines.{hid}.targets.{tid}: a hotline cannot target itself")
    return out


def _name(v: Validator, node: Mapping, path: str, ident: str) -> str | None:
    # A hotline or target an operator adds need not be given a display name: it is then shown
    # by its id, which is what a name-less table is called everywhere else too.
    return v.string(node, path, "name") if v.optional(node, "name") else ident


def _ami(v: Validator, hotline: Mapping, path: str) -> AmiSettings | None:
    # Optional: without [ami], keys work only on calls the application delivered itself.
    if not v.optional(hotline, "ami"):
        return None
    node = v.table(hotline["ami"], path, {"host", "username", "secret_file", "secret_env"})
    hp = v.host_port(node, path, "host") or (None, None)
    return AmiSettings(host=hp[0], port=hp[1], username=v.string(node, path, "username"),
                       secret=v.secret(node, path, "secret"),
                       secret_file=v.secret_path(node, "secret"))


def _target_keys(v: Validator, keys: Keys, hotlines: dict[str, Hotline]) -> None:
    global_keys = {getattr(keys, n): f"keys.{n}" for n in KEY_ACTIONS if getattr(keys, n)}
    for hid, h in hotlines.items():
        seen = dict(global_keys)
        for tid, t in h.targets.items():
            if not t.key:
                continue
            for other_key, where in seen.items():
                if t.key.startswith(other_key) or other_key.startswith(t.key):
                    v.problems.append(f"hotlines.{hid}.targets.{tid}.key: {t.key!r} "
                                      f"collides with {where} ({other_key!r})")
            seen[t.key] = f"hotlines.{hid}.targets.{tid}.key"


def load_catalog(path: str | os.PathLike | None = None):
    """The matter catalog (``config/matter-catalog.toml`` unless given), parsed and validated."""
    from transfer.catalog import CatalogError, parse as parse_catalog

    path = Path(path) if path is not None else project_home() / "config" / "matter-catalog.toml"
    try:
        data = read_toml(path)
    except FileNotFoundError:
        raise CatalogError([f"{path}: no such file"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError([f"{path}: not valid TOML: {exc}"]) from None
    return parse_catalog(data)
