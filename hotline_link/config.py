"""The configuration loader: layers, and every problem reported with its path, all at once.

Layers, later wins::

    config/hotline-link.toml   the defaults: every key of every section, and the only place a
                               default value is written
    a section's own defaults   only with that section in use: config/lab.toml for [lab]
    the file given             (--config)
    the environment            HOTLINE_LINK__<PATH>=<TOML value>

Each component parses its own section, next to its code: the service's in
``hotline_link.settings``, the sidecar's in ``sidecar.settings``, the lab's in
``hotline_link.lab_settings``. A process hands the loader the sections it reads (a ``Section``
each); the loader imports none of them, so no component drags another's code in. Every problem
of every section comes back in one ``ConfigError``, so an admin fixes a file in one pass::

    hotlines.110.ari.url: not a URL: 'htp//x'
    keys.accept: 'X7' is not a key (expected '*' or '#' and 1-3 digits)

Unknown keys are errors too: a misspelt key silently taking its default is the kind of mistake
that surfaces at 3 a.m. on a live hotline. A parser asks for every key it reads and the defaults
layer provides it; the keys it may find absent are the optional ones, whose absence means "none"
(``Validator.optional``).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV_PREFIX = "HOTLINE_LINK__"
HOME_ENV = "HOTLINE_LINK_HOME"
_SOURCE_TREE = Path(__file__).resolve().parent.parent

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# The root tables and the component that reads each. A process parses only the sections it uses
# and passes over the others' tables (the service never reads [sidecar]); a table no component
# owns is a mistake in whichever process meets it.
OWNERS = {
    "service": "service", "redis": "service", "keys": "service", "timeouts": "service",
    "hotlines": "service", "agi": "service", "screening": "service", "ha": "service",
    "prompts": "service",
    "sidecar": "sidecar",
    "lab": "lab",
}


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists every ``path: message``."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Section:
    """One component's part of the configuration.

    ``parse(validator, root)`` reads the component's tables from the merged ``root`` and returns
    its settings object; it reports problems to the validator instead of raising. ``defaults``:
    where the component's own defaults file is (a function: it follows $HOTLINE_LINK_HOME at
    load time), layered in (after the service's defaults, before the
    file) only when the section is in use: asked for with ``require``, or written in the file or
    the environment. The lab's section is the one that has it: a production config carries no
    [lab] at all.
    """
    component: str
    tables: tuple[str, ...]
    parse: Callable[["Validator", Mapping[str, Any]], Any]
    defaults: Callable[[], Path] | None = None


@dataclass(frozen=True)
class Loaded:
    sections: dict[str, Any]        # component -> its settings (absent: not in use)
    sources: tuple[str, ...]        # the layers, in order
    home: Path


def project_home() -> Path:
    """Where config/ and dialplan/ live: $HOTLINE_LINK_HOME (set in the Docker image), else the
    source tree this package runs from."""
    return Path(os.environ.get(HOME_ENV) or _SOURCE_TREE).resolve()


def defaults_file() -> Path:
    return project_home() / "config" / "hotline-link.toml"


def load(path: str | os.PathLike | None, sections: Sequence[Section], *,
         env: Mapping[str, str] | None = None, secrets: bool = True,
         require: Iterable[str] = ()) -> Loaded:
    """Layer, then parse ``sections``. ``secrets=False`` skips reading password/token files (the
    lab uses it before it has generated them). ``require``: components whose section must be
    there even if neither the file nor the environment mentions it (the lab, for ``hotline-link
    lab`` on the embedded defaults)."""
    env = os.environ if env is None else env
    require = set(require)
    upper: list[tuple[str, dict]] = []
    if path is not None:
        upper.append((str(path), _read_layer(Path(path))))
    env_overlay, problems = _env_overlay(env)
    if problems:
        raise ConfigError(problems)
    if env_overlay:
        upper.append(("environment", env_overlay))
    layers = [(str(defaults_file()), _read_layer(defaults_file()))]
    in_use = []
    for section in sections:
        mentioned = any(t in layer for _, layer in upper for t in section.tables)
        if section.defaults is None or section.component in require or mentioned:
            in_use.append(section)
            if section.defaults is not None:
                own = section.defaults()
                layers.append((str(own), _read_layer(own)))
    raw: dict = {}
    for _, layer in layers + upper:
        raw = _merge(raw, layer)
    validator = Validator(raw, project_home(), env, secrets)
    root = validator.table(raw, "(root)", set(OWNERS))
    parsed = {s.component: s.parse(validator, root) for s in in_use}
    if validator.problems:
        raise ConfigError(validator.problems)
    return Loaded(parsed, tuple(name for name, _ in layers + upper), validator.home)


def _read_layer(path: Path) -> dict:
    try:
        return read_toml(path)
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def read_toml(path: Path) -> dict:
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


class Validator:
    """The primitives every section parser uses: each reads one key at a path, records a problem
    (with the path) instead of raising, and returns None for a value it refused.

    Every key asked for with ``get`` and its typed readers is required: the defaults layer holds
    a value for each. ``optional`` is for the few keys whose absence is a setting of its own
    ("no key of its own", "no AMI"). ``allowed`` records each table's known keys, so a test can
    hold the defaults file to documenting every one."""

    def __init__(self, raw: dict, home: Path, env: Mapping[str, str], secrets: bool):
        self.raw = raw
        self.home = home
        self.env = env
        self.secrets = secrets
        self.problems: list[str] = []
        self.allowed: dict[str, set[str]] = {}

    def get(self, node: Mapping, path: str, key: str) -> Any:
        if not isinstance(node, Mapping):
            return None
        if key not in node:
            self.problems.append(f"{path}.{key}: missing")
            return None
        return node[key]

    def table(self, node: Any, path: str, allowed: set[str] | None) -> Mapping:
        if not isinstance(node, Mapping):
            self.problems.append(f"{path}: expected a table, got {type(node).__name__}")
            return {}
        if allowed is not None:
            self.allowed[path] = set(allowed)
            for key in node:
                if key not in allowed:
                    self.problems.append(f"{path}.{key}: unknown key")
        return node

    def subtable(self, node: Mapping, path: str, key: str,
                 allowed: set[str] | None) -> Mapping | None:
        """The required table ``key`` of ``node``; None (and the problem recorded) if it is
        missing or not a table."""
        value = self.get(node, path, key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.table(value, f"{path}.{key}", allowed)
            return None
        return self.table(value, f"{path}.{key}", allowed)

    def optional(self, node: Mapping, key: str) -> bool:
        """Whether an optional key is given; its reader is then called as for any other."""
        return isinstance(node, Mapping) and key in node

    def string(self, node: Mapping, path: str, key: str, pattern: re.Pattern | None = None,
               what: str = "") -> str | None:
        value = self.get(node, path, key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.problems.append(f"{path}.{key}: expected a non-empty string, got {value!r}")
            return None
        if pattern is not None and not pattern.match(value):
            self.problems.append(f"{path}.{key}: {value!r} is not {what}")
            return None
        return value

    def choice(self, node: Mapping, path: str, key: str, options: Iterable[str]) -> str | None:
        value = self.get(node, path, key)
        options = tuple(options)
        if value not in options:
            self.problems.append(f"{path}.{key}: {value!r} is not one of {', '.join(options)}")
            return None
        return value

    def number(self, node: Mapping, path: str, key: str, lo: float, hi: float,
               integer: bool = False) -> Any:
        value = self.get(node, path, key)
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
        value = self.get(node, path, key)
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
        value = self.get(node, path, key)
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

    def hotline_ids(self, root: Mapping) -> set[str]:
        """The configured hotline ids, for a section that refers to them (the sidecar's
        platforms, the lab's PBXs); the service's section checks the hotlines themselves."""
        hotlines = root.get("hotlines")
        return set(hotlines) if isinstance(hotlines, Mapping) else set()
