"""The sidecar's configuration: the [sidecar] section, parsed into ``SidecarSettings``.

The loader (``hotline_link.config``) does the layers and the problem report; the defaults are in
``config/hotline-link.toml``. The sidecar process reads the service's sections too (Redis, the
hotlines, logging): ``load`` asks for both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contracts.vocab import AlertKind, PlatformKind, PlatformRole
from hotline_link import settings as service_settings
from hotline_link.config import NAME_RE, Section, Validator

from . import mapping
from .mapping import TicketMapping

WEBHOOK_EVENTS = tuple(AlertKind)


# The role a platform of a standard's kind plays unless its table says: an EIDO system is a
# dispatch centre's, GeoReport is a city's service requests. An ``http`` platform names its role.
DEFAULT_ROLE = {PlatformKind.OPEN311: PlatformRole.SERVICE,
                PlatformKind.EIDO: PlatformRole.DISPATCH}


@dataclass(frozen=True)
class PlatformApi:
    """One platform's ticket system (outside our product): 12345's work orders, 110's dispatch.
    ``kind`` is the API it speaks, and so how the sidecar talks to it; ``role`` what the
    platform is to the transfers (``PlatformRole``); ``mapping`` the requests of an ``http``
    one (``sidecar.mapping``)."""
    url: str
    kind: PlatformKind
    role: PlatformRole | None = None
    token: str | None = None               # bearer token; on Open311 the api_key
    token_file: Path | None = None
    mapping: TicketMapping | None = None


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


@dataclass(frozen=True)
class KpiSettings:
    """How calls are counted (``[sidecar.kpi]``): seconds within which an abandoned call is a
    short abandon, the service level's answer time, and the answer rate to alert under."""
    short_abandon: float
    service_level: float
    answer_rate_target: float


@dataclass(frozen=True)
class AnalysisSettings:
    """Joint analysis (``[sidecar.analysis]``): the centres' time zone for days and hours, and
    the early warning's period, significance and least count."""
    timezone: ZoneInfo
    warn_every: float
    warn_p: float
    warn_min: int


@dataclass(frozen=True)
class Tls:
    """The API over HTTPS: a PEM certificate (chain) and its key."""
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class SidecarSettings:
    listen: tuple[str, int]
    token: str | None                      # the first administrator's (and the lab's) token
    token_file: Path | None
    clients_file: Path                     # the API's other clients (sidecar/access.py)
    status_poll: float                     # seconds between reads of supervised tickets' status
    audit_retention_days: float
    tls: Tls | None
    consumer: str
    retry_for: float
    request_timeout: float
    concurrency: int                       # outcome records synced at once
    platforms: dict[str, PlatformApi]
    webhooks: tuple[Webhook, ...]
    deadlines: dict[str, Deadline]         # "default" and per category
    # R15: matters that are leads on threats to social stability, and disputes 110 passes to
    # 12345 for joint mediation (matter codes of the catalog).
    stability: tuple[str, ...]
    disputes: tuple[str, ...]
    kpi: KpiSettings | None
    analysis: AnalysisSettings | None

    def deadline(self, category: str | None) -> Deadline:
        return self.deadlines.get(category or "", self.deadlines["default"])


def parse(v: Validator, root: Mapping[str, Any]) -> SidecarSettings:
    node = v.table(root.get("sidecar", {}), "sidecar",
                   {"listen", "token_file", "token_env", "consumer", "retry_for",
                    "request_timeout", "platforms", "webhooks", "deadlines", "signals",
                    "concurrency", "kpi", "clients_file", "audit_retention_days", "tls",
                    "status_poll", "analysis"})
    signals = _signals(v, node)
    return SidecarSettings(
        listen=v.host_port(node, "sidecar", "listen"),
        token=v.secret(node, "sidecar", "token"),
        token_file=v.secret_path(node, "token"),
        clients_file=_path(v, node, "clients_file"),
        status_poll=v.number(node, "sidecar", "status_poll", 0.2, 86400),
        audit_retention_days=v.number(node, "sidecar", "audit_retention_days", 1, 36500),
        tls=_tls(v, node),
        consumer=v.string(node, "sidecar", "consumer", NAME_RE, "a consumer name"),
        retry_for=v.number(node, "sidecar", "retry_for", 0.1, 86400),
        request_timeout=v.number(node, "sidecar", "request_timeout", 0.1, 120),
        concurrency=v.number(node, "sidecar", "concurrency", 1, 1024, integer=True),
        platforms=_platforms(v, node, v.hotline_ids(root)),
        webhooks=_webhooks(v, node),
        deadlines=_deadlines(v, node),
        stability=signals.get("stability"), disputes=signals.get("disputes"),
        kpi=_kpi(v, node), analysis=_analysis(v, node))


def _path(v: Validator, node: Mapping, key: str, where: str = "sidecar") -> Path | None:
    value = v.string(node, where, key)
    return v.path(value) if value else None


def _tls(v: Validator, node: Mapping) -> Tls | None:
    if not v.optional(node, "tls"):
        return None                       # plain HTTP: the default, on loopback
    table = v.subtable(node, "sidecar", "tls", {"cert_file", "key_file"})
    if table is None:
        return None
    cert, key = (_path(v, table, k, "sidecar.tls") for k in ("cert_file", "key_file"))
    return Tls(cert_file=cert, key_file=key) if cert and key else None


def _kpi(v: Validator, node: Mapping) -> KpiSettings | None:
    table = v.subtable(node, "sidecar", "kpi", {"short_abandon", "service_level",
                                                 "answer_rate_target"})
    if table is None:
        return None
    return KpiSettings(short_abandon=v.number(table, "sidecar.kpi", "short_abandon", 0, 600),
                       service_level=v.number(table, "sidecar.kpi", "service_level", 1, 3600),
                       answer_rate_target=v.number(table, "sidecar.kpi", "answer_rate_target",
                                                   0, 1))


def _analysis(v: Validator, node: Mapping) -> AnalysisSettings | None:
    table = v.subtable(node, "sidecar", "analysis", {"timezone", "warn_every", "warn_p",
                                                     "warn_min"})
    if table is None:
        return None
    path = "sidecar.analysis"
    name = v.string(table, path, "timezone")
    zone = None
    if name is not None:
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            v.problems.append(f"{path}.timezone: {name!r} is not an IANA time zone "
                              "(e.g. Asia/Shanghai)")
    return AnalysisSettings(timezone=zone,
                            warn_every=v.number(table, path, "warn_every", 1, 86400),
                            warn_p=v.number(table, path, "warn_p", 1e-12, 0.5),
                            warn_min=v.number(table, path, "warn_min", 1, 100000, integer=True))


SECTION = Section("sidecar", ("sidecar",), parse)


def load(path: str | os.PathLike | None = None, *, env: Mapping[str, str] | None = None,
         secrets: bool = True) -> service_settings.Settings:
    """What the sidecar process reads: the service's sections and its own (``.sidecar``)."""
    return service_settings.load(path, env=env, secrets=secrets, also=(SECTION,))


def _platforms(v: Validator, node: Mapping, hotlines: set[str]) -> dict[str, PlatformApi]:
    out = {}
    table = v.subtable(node, "sidecar", "platforms", None) or {}
    for pid, p in table.items():
        path = f"sidecar.platforms.{pid}"
        if pid not in hotlines:
            v.problems.append(f"{path}: no hotline {pid!r} is configured")
        p = v.table(p, path, {"url", "kind", "role", "mapping", "token_file", "token_env"})
        kind = v.choice(p, path, "kind", PlatformKind)
        kind = PlatformKind(kind) if kind else None
        role = DEFAULT_ROLE.get(kind)
        if v.optional(p, "role"):
            role = v.choice(p, path, "role", PlatformRole)
            role = PlatformRole(role) if role else None
        elif kind == PlatformKind.HTTP:
            v.problems.append(f"{path}.role: missing (a platform of kind http names its role: "
                              f"{' or '.join(PlatformRole)})")
        mapping = None
        if kind == PlatformKind.HTTP:
            mapping = _mapping(v, p, path)
        elif v.optional(p, "mapping"):
            v.problems.append(f"{path}.mapping: only a platform of kind http has a mapping")
        # Optional: a ticket API that needs no token (the lab's stand-ins) is called without one.
        token = (v.secret(p, path, "token")
                 if v.optional(p, "token_file") or v.optional(p, "token_env") else None)
        out[pid] = PlatformApi(url=v.url(p, path, "url", ("http", "https")), kind=kind,
                               role=role, token=token, token_file=v.secret_path(p, "token"),
                               mapping=mapping)
    # A transfer gives a pair of tickets, the owner's and a linked one on the other platform, and
    # an emergency is owned by the dispatch side: that needs exactly one platform of each role.
    roles = sorted(str(p.role) for p in out.values() if p.role)
    if table and len(roles) == len(out) and roles != sorted(map(str, PlatformRole)):
        v.problems.append(f"sidecar.platforms: expected one platform of each role "
                          f"({', '.join(PlatformRole)}), got {', '.join(roles)}")
    return out


def _mapping(v: Validator, p: Mapping, path: str) -> TicketMapping | None:
    """An http platform's mapping file, checked whole when the configuration is."""
    name = v.string(p, path, "mapping")
    if name is None:
        return None
    try:
        return mapping.load(v.path(name), mapping.work_order_fields(json.loads(
            (service_settings.project_home() / "config" / "work-order.schema.json").read_text())))
    except mapping.MappingError as exc:
        v.problems.append(f"{path}.mapping: {exc}")
        return None


def _webhooks(v: Validator, node: Mapping) -> tuple[Webhook, ...]:
    hooks = []
    raw_hooks = v.get(node, "sidecar", "webhooks")
    if not isinstance(raw_hooks, list):
        if raw_hooks is not None:
            v.problems.append("sidecar.webhooks: expected an array of tables")
        raw_hooks = []
    for i, h in enumerate(raw_hooks):
        path = f"sidecar.webhooks[{i}]"
        h = v.table(h, path, {"url", "events", "secret_file", "secret_env"})
        events = v.get(h, path, "events")
        if not isinstance(events, list) or not events or any(e not in WEBHOOK_EVENTS
                                                             for e in events):
            if events is not None:
                v.problems.append(f"{path}.events: expected a non-empty list of "
                                  f"{', '.join(WEBHOOK_EVENTS)}, got {events!r}")
            events = []
        hooks.append(Webhook(url=v.url(h, path, "url", ("http", "https")),
                             events=tuple(events), secret=v.secret(h, path, "secret"),
                             secret_file=v.secret_path(h, "secret")))
    return tuple(hooks)


def _signals(v: Validator, node: Mapping) -> dict[str, tuple[str, ...]]:
    table = v.subtable(node, "sidecar", "signals", {"stability", "disputes"})
    out: dict[str, tuple[str, ...]] = {}
    if table is None:
        return out
    for name in ("stability", "disputes"):
        codes = v.get(table, "sidecar.signals", name)
        if codes is None:
            continue
        if not isinstance(codes, list) or any(not isinstance(c, str) or not NAME_RE.match(c)
                                              for c in codes):
            v.problems.append(f"sidecar.signals.{name}: expected a list of matter codes, "
                              f"got {codes!r}")
            continue
        out[name] = tuple(codes)
    return out


def _deadlines(v: Validator, node: Mapping) -> dict[str, Deadline]:
    out = {}
    table = v.subtable(node, "sidecar", "deadlines", None)
    if table is None:
        return out
    for name, d in table.items():
        path = f"sidecar.deadlines.{name}"
        d = v.table(d, path, {"accept", "final", "escalate"})
        out[name] = Deadline(accept=v.number(d, path, "accept", 0.1, 30 * 86400),
                             final=v.number(d, path, "final", 0.1, 365 * 86400),
                             escalate=v.number(d, path, "escalate", 0.1, 30 * 86400))
    if "default" not in out:
        v.problems.append("sidecar.deadlines.default: missing")
    return out
