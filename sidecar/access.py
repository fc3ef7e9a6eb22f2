"""Who may call the sidecar's API, and what each client sees (R11, R12).

The 110 desk and the 12345 centre are different organisations that share data: each sees and
changes what is its own. So the API has clients, each with its own bearer token, scopes, and
(except administrators and city-wide readers) the hotline it belongs to:

- a **ticket system** of one platform reports on its own tickets and files online requests;
- the **agent desktops** of one centre tag and transfer their own calls and follow its events;
- a **supervisor** reads (one centre's, or with no hotline the whole city's, numbers masked);
- **monitoring** scrapes ``/metrics``; an **administrator** may do everything, the audit trail
  included.

Clients live in a JSON file outside git (``sidecar.clients_file``; ``hotline-link api-client``
writes it), holding only the SHA-256 of each token: the tokens are 256 random bits, so a fast
hash is as good as a slow one and costs nothing per request. The file is looked at (one
``stat``) on every request, so a client added or revoked counts from the next request on, with no
restart. The configured ``sidecar.token`` stays the lab's and the first administrator's token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Iterable

import structlog

log = structlog.get_logger("access")


class Scope(StrEnum):
    RECORDS_READ = "records:read"          # transfers, chains of transfers
    CALLS_READ = "calls:read"              # call records, matters, KPIs
    CALLS_CONTROL = "calls:control"        # tag a live call, transfer it, follow the command
    EVENTS_READ = "events:read"            # the live event stream
    TICKETS_FEEDBACK = "tickets:feedback"  # report on a ticket of one's own platform
    REQUESTS_CREATE = "requests:create"    # online requests (R10)
    METRICS_READ = "metrics:read"          # Prometheus
    ADMIN = "admin"                        # everything, every caller number, the audit trail


# Role -> (scopes, whether the client must belong to a hotline). A client's scopes come from its
# role; the README's scope matrix is this table (tests/test_access.py holds them together).
ROLES: dict[str, tuple[frozenset[Scope], bool | None]] = {
    "ticket_system": (frozenset({Scope.TICKETS_FEEDBACK, Scope.REQUESTS_CREATE,
                                 Scope.RECORDS_READ}), True),
    "desktop": (frozenset({Scope.CALLS_CONTROL, Scope.CALLS_READ, Scope.EVENTS_READ,
                           Scope.RECORDS_READ}), True),
    "supervisor": (frozenset({Scope.RECORDS_READ, Scope.CALLS_READ, Scope.EVENTS_READ,
                              Scope.METRICS_READ}), None),
    "monitoring": (frozenset({Scope.METRICS_READ}), False),
    "admin": (frozenset(Scope), False),
}
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


@dataclass(frozen=True)
class Client:
    name: str
    role: str
    scopes: frozenset[Scope]
    hotline: str | None            # the centre it belongs to; None: all (admin) or city-wide

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes

    def owns(self, hotlines: Iterable[str | None]) -> bool:
        """Whether what concerns these hotlines is this client's own (caller numbers shown)."""
        return Scope.ADMIN in self.scopes or (self.hotline is not None
                                              and self.hotline in hotlines)

    def sees(self, hotlines: Iterable[str | None]) -> bool:
        """Whether it may read it at all: a centre's clients read their own centre's only."""
        return self.hotline is None or self.owns(hotlines)

    def describe(self) -> str:
        return f"{self.name} ({self.role}{f' of {self.hotline}' if self.hotline else ''})"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ClientsFileError(ValueError):
    pass


class Clients:
    """The clients the API knows: the configured administrator token and the clients file."""

    def __init__(self, path: Path | None, admin_token: str | None,
                 hotlines: Iterable[str] = ()):
        self.path = path
        self.hotlines = tuple(hotlines)
        self.admin_hash = token_hash(admin_token) if admin_token else None
        self.admin = Client("admin", "admin", ROLES["admin"][0], None)
        self._seen: tuple | None = None
        self._by_hash: dict[str, Client] = {}

    def _fresh(self) -> None:
        """Reload the file when it changed (a write by ``hotline-link api-client`` replaces it,
        so its inode changes even within one mtime tick)."""
        try:
            st = os.stat(self.path) if self.path else None
        except FileNotFoundError:
            st = None
        seen = (st.st_ino, st.st_mtime_ns, st.st_size) if st else None
        if seen == self._seen:
            return
        self._seen = seen
        if st is None:
            self._by_hash = {}
            return
        try:
            self._by_hash = {c["token_sha256"]: client
                             for client, c in _active(read(self.path), self.hotlines)}
            log.info("api clients loaded", file=str(self.path), clients=len(self._by_hash))
        except (OSError, ClientsFileError) as exc:
            # Fail closed: a broken file must not keep a revoked token working.
            self._by_hash = {}
            log.error("api clients file unreadable: only the admin token works", error=str(exc))

    def authenticate(self, header: str) -> Client | None:
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token or len(token) > 512:
            return None
        digest = token_hash(token)
        if self.admin_hash and hmac.compare_digest(digest, self.admin_hash):
            return self.admin
        self._fresh()
        return self._by_hash.get(digest)


def _active(doc: dict, hotlines: tuple[str, ...]):
    for name, c in doc["clients"].items():
        if c.get("revoked"):
            continue
        role = c.get("role")
        if role not in ROLES or not isinstance(c.get("token_sha256"), str):
            raise ClientsFileError(f"client {name!r}: needs a role ({', '.join(ROLES)}) and "
                                   "a token_sha256")
        hotline = c.get("hotline")
        if hotline is not None and hotlines and hotline not in hotlines:
            raise ClientsFileError(f"client {name!r}: no hotline {hotline!r}")
        yield Client(name, role, ROLES[role][0], hotline), c


# --- the clients file (hotline-link api-client) -------------------------------------------------

def read(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"clients": {}}
    except ValueError as exc:
        raise ClientsFileError(f"{path}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("clients"), dict):
        raise ClientsFileError(f"{path}: expected {{\"clients\": {{name: client}}}}")
    return doc


def _write(path: Path, doc: dict) -> None:
    """Replace the file whole (a reader never sees half of it), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(doc, out, ensure_ascii=False, indent=2)
            out.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add(path: Path, name: str, role: str, hotline: str | None,
        hotlines: Iterable[str]) -> str:
    """Add a client and return its token (shown once: only its hash is kept)."""
    hotlines = tuple(hotlines)
    if not name or len(name) > 64 or set(name) - NAME_CHARS:
        raise ClientsFileError("name: 1-64 of a-z 0-9 - _ .")
    if role not in ROLES:
        raise ClientsFileError(f"role: one of {', '.join(ROLES)}")
    needs = ROLES[role][1]
    if needs and hotline is None:
        raise ClientsFileError(f"a {role} belongs to one centre: give --hotline "
                               f"({', '.join(hotlines)})")
    if needs is False and hotline is not None:
        raise ClientsFileError(f"a {role} client belongs to no hotline")
    if hotline is not None and hotline not in hotlines:
        raise ClientsFileError(f"hotline: one of {', '.join(hotlines)}")
    doc = read(path)
    if name in doc["clients"] and not doc["clients"][name].get("revoked"):
        raise ClientsFileError(f"client {name!r} exists: revoke it first to replace its token")
    token = secrets.token_urlsafe(32)
    doc["clients"][name] = {"role": role, "hotline": hotline, "token_sha256": token_hash(token),
                            "created": _now()}
    _write(path, doc)
    return token


def revoke(path: Path, name: str) -> None:
    doc = read(path)
    client = doc["clients"].get(name)
    if client is None:
        raise ClientsFileError(f"no client {name!r}")
    if not client.get("revoked"):
        client["revoked"] = _now()
        _write(path, doc)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
