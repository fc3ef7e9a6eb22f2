"""A ticket API described by a mapping file, for platforms of kind ``http``: the provincial
工单/警单 systems and any other REST ticket system that is neither Open311 nor EIDO. An integrator
writes the file; nothing is coded. Pure: no I/O but reading the file in ``load``.

The file is TOML with one table per request the sidecar makes (``config/ticket-mappings/`` has
a complete one, for Zammad's REST API)::

    [request]                       # sent with every request
    headers = { Authorization = "Token token={token}" }

    [create]                        # required: make the work order's ticket
    method = "POST"
    path = "/api/v1/tickets"
    encoding = "json"               # or "form" (application/x-www-form-urlencoded)
    id = "/id"                      # where the answer holds the new ticket's id
    [create.body]                   # the body, a template (tables, arrays, values)
    title = "{title}"

    [find]                          # a ticket an earlier attempt may have made, by reference
    method = "GET"
    path = "/api/v1/tickets/search"
    query = { query = "title:\\"{ref}\\"" }
    ids = "/tickets"                # the list of matches; ``id`` inside a match (default: it)

    [note]                          # optional: add a note to a ticket (``ticket_id``, ``note.*``)
    [get]                           # optional: read a ticket (``ticket_id``)
    status = "/state"               # its status, in the platform's words
    notes = "/note"                 # optional: its latest note
    closed = ["closed", "merged"]   # the statuses that mean the matter is closed

Templates: ``{name}`` in a string is replaced by the field's text; a string that is only
``{name}`` takes the field's JSON value (a number stays a number, nothing stays null); ``{{``
and ``}}`` are literal braces. In a path a field is percent-encoded. Answers are read with JSON
Pointers (RFC 6901). The fields are the unified work order's (``config/work-order.schema.json``,
dotted for nested ones: ``caller.number``, ``location.lat``) and ``ref`` (the work order's
reference, ``work_order_id``), ``title`` (one line, for a ticket's subject), ``text`` (the
description with our references, for a ticket's body); the note's ``ticket_id``, ``note.text``,
``note.status``, ``note.source``, ``note.key``; ``token``, the platform's secret, everywhere.

Without a ``find`` there is no way to look for a ticket again: a create is then only retried
when it surely did not arrive (a connection refused), never after a timeout.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)\}")
METHODS = ("GET", "POST", "PUT", "PATCH")
ENCODINGS = ("json", "form")
# The fields every request may use, and those of each request beyond the work order's.
COMMON = frozenset({"token"})
DERIVED = frozenset({"ref", "title", "text"})
NOTE_FIELDS = frozenset({"ticket_id", "note.text", "note.status", "note.source", "note.key"})
TICKET_FIELDS = frozenset({"ticket_id"})
SECTIONS = {"request", "create", "find", "note", "get"}
REQUEST_KEYS = {"method", "path", "encoding", "body", "query", "headers"}
ANSWER_KEYS = {"create": {"id"}, "find": {"ids", "id"}, "note": set(),
               "get": {"status", "notes", "closed"}}


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file, the place and why."""


def work_order_fields(schema: Mapping) -> frozenset[str]:
    """The dotted names of a work order's values, from its JSON Schema's properties."""
    out: set[str] = set()

    def walk(props: Mapping, prefix: str) -> None:
        for name, spec in props.items():
            if isinstance(spec, Mapping) and isinstance(spec.get("properties"), Mapping):
                walk(spec["properties"], f"{prefix}{name}.")
            else:
                out.add(prefix + name)
    walk(schema.get("properties", {}), "")
    return frozenset(out)


def flatten(value: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in value.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def render(template: Any, fields: Mapping[str, Any], quote_text: bool = False) -> Any:
    """``template`` with its fields filled in (see the module's doc)."""
    if isinstance(template, str):
        whole = PLACEHOLDER.fullmatch(template)
        if whole and whole[1] and not quote_text:
            return fields.get(whole[1])

        def fill(m: re.Match) -> str:
            if m[1] is None:
                return m[0][0]
            text = text_of(fields.get(m[1]))
            return quote(text, safe="") if quote_text else text
        return PLACEHOLDER.sub(fill, template)
    if isinstance(template, Mapping):
        return {k: render(v, fields, quote_text) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, fields, quote_text) for v in template]
    return template


def names_in(template: Any) -> set[str]:
    if isinstance(template, str):
        return {m[1] for m in PLACEHOLDER.finditer(template) if m[1]}
    if isinstance(template, Mapping):
        return set().union(*(names_in(v) for v in template.values()))
    if isinstance(template, list):
        return set().union(*(names_in(v) for v in template))
    return set()


_MISSING = object()


def pointer(doc: Any, ptr: str) -> Any:
    """The value at JSON Pointer ``ptr`` (RFC 6901) in ``doc``; ``_MISSING`` if there is none."""
    if ptr == "":
        return doc
    for token in ptr[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(doc, Mapping) and token in doc:
            doc = doc[token]
        elif isinstance(doc, list) and token.isdigit() and int(token) < len(doc) and (
                token == "0" or not token.startswith("0")):
            doc = doc[int(token)]
        else:
            return _MISSING
    return doc


def _pointer_ok(value: Any) -> bool:
    return isinstance(value, str) and (value == "" or value.startswith("/"))


@dataclass(frozen=True)
class Call:
    """One request of the mapping: a template for each part."""
    method: str
    path: str
    encoding: str
    body: Any
    query: Mapping[str, Any]
    headers: Mapping[str, str]

    def build(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """aiohttp's ``request`` arguments: method, path (from the base URL), params, and the
        body as ``json`` or ``data``, for ``fields``."""
        out: dict[str, Any] = {"method": self.method,
                               "path": render(self.path, fields, quote_text=True),
                               "headers": {k: text_of(render(v, fields))
                                           for k, v in self.headers.items()}}
        params = {k: text_of(v) for k, v in render(dict(self.query), fields).items()
                  if v is not None}
        if params:
            out["params"] = params
        if self.body is not None:
            body = render(self.body, fields)
            if self.encoding == "form":
                out["data"] = [(k, text_of(v)) for k, v in body.items() if v is not None]
            else:
                out["data"] = json.dumps(body, ensure_ascii=False).encode()
                out["headers"].setdefault("Content-Type", "application/json")
        return out


@dataclass(frozen=True)
class TicketMapping:
    source: Path
    create: Call
    created_id: str                        # JSON Pointer to the new ticket's id
    find: Call | None
    found_ids: str                         # pointer to the list of matches
    found_id: str                          # pointer inside a match
    note: Call | None
    get: Call | None
    status: str
    notes: str | None
    closed: frozenset[str]

    def answer(self, doc: Any, ptr: str, what: str) -> Any:
        value = pointer(doc, ptr)
        if value is _MISSING:
            raise ValueError(f"{what}: the answer has nothing at {ptr or '(the whole)'} "
                             f"({self.source.name})")
        return value

    def ticket_id(self, doc: Any) -> str:
        value = self.answer(doc, self.created_id, "create")
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
            raise ValueError(f"create: the ticket id at {self.created_id} is {value!r}, not an "
                             f"id ({self.source.name})")
        return str(value)

    def matches(self, doc: Any) -> list[str]:
        found = self.answer(doc, self.found_ids, "find")
        if not isinstance(found, list):
            raise ValueError(f"find: {self.found_ids} is not a list ({self.source.name})")
        out = []
        for item in found:
            value = pointer(item, self.found_id)
            if value is not _MISSING and value is not None and not isinstance(value, bool):
                out.append(str(value))
        return out

    def status_of(self, doc: Any) -> tuple[str | None, str | None]:
        """A ticket's status in our words where it is closed ("closed"), else the platform's;
        and its latest note."""
        status = pointer(doc, self.status)
        note = pointer(doc, self.notes) if self.notes is not None else None
        status = None if status is _MISSING or status is None else text_of(status)
        note = None if note is _MISSING or note is None else text_of(note)
        return ("closed" if status is not None and status in self.closed else status), note


def load(path: Path, work_order: frozenset[str]) -> TicketMapping:
    """The mapping in ``path``, checked whole: MappingError names every problem found."""
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise MappingError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{path}: not TOML: {exc}") from None
    problems: list[str] = []
    for key in raw:
        if key not in SECTIONS:
            problems.append(f"{key}: unknown table (expected {', '.join(sorted(SECTIONS))})")
    common = raw.get("request", {})
    if not isinstance(common, Mapping) or set(common) - {"headers"}:
        problems.append("request: expected a table with only headers")
        common = {}
    base_headers = common.get("headers", {})
    if not isinstance(base_headers, Mapping) or not all(
            isinstance(v, str) for v in base_headers.values()):
        problems.append("request.headers: expected a table of strings")
        base_headers = {}
    wo_fields = work_order | DERIVED | COMMON
    allowed = {"create": wo_fields, "find": wo_fields,
               "note": NOTE_FIELDS | COMMON, "get": TICKET_FIELDS | COMMON}
    calls: dict[str, Call | None] = {}
    for name in ("create", "find", "note", "get"):
        node = raw.get(name)
        if node is None:
            if name == "create":
                problems.append("create: missing (how a ticket is made)")
            calls[name] = None
            continue
        calls[name] = _call(name, node, base_headers, allowed[name], problems)
    create, find, get = raw.get("create") or {}, raw.get("find") or {}, raw.get("get") or {}
    for section, node, key, required in (("create", create, "id", True),
                                         ("find", find, "ids", bool(find)),
                                         ("find", find, "id", False),
                                         ("get", get, "status", bool(get)),
                                         ("get", get, "notes", False)):
        value = node.get(key) if isinstance(node, Mapping) else None
        if value is None and not required:
            continue
        if not _pointer_ok(value):
            problems.append(f"{section}.{key}: expected a JSON Pointer (\"\" or \"/...\"), "
                            f"got {value!r}")
    closed = get.get("closed", []) if isinstance(get, Mapping) else []
    if get and (not isinstance(closed, list) or not closed
                or not all(isinstance(c, str) and c for c in closed)):
        problems.append("get.closed: expected a non-empty list of the statuses that mean closed")
        closed = []
    if problems:
        raise MappingError(f"{path}: " + "; ".join(problems))
    return TicketMapping(
        source=path, create=calls["create"], created_id=create["id"], find=calls["find"],
        found_ids=find.get("ids", ""), found_id=find.get("id", ""), note=calls["note"],
        get=calls["get"], status=get.get("status", ""), notes=get.get("notes"),
        closed=frozenset(closed))


def _call(name: str, node: Any, base_headers: Mapping[str, str], allowed: frozenset[str],
          problems: list[str]) -> Call | None:
    if not isinstance(node, Mapping):
        problems.append(f"{name}: expected a table")
        return None
    for key in node:
        if key not in REQUEST_KEYS | ANSWER_KEYS[name]:
            problems.append(f"{name}.{key}: unknown key")
    method = node.get("method")
    if method not in METHODS:
        problems.append(f"{name}.method: {method!r} is not one of {', '.join(METHODS)}")
    path = node.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        problems.append(f"{name}.path: expected a path from the platform's url, starting "
                        f"with /, got {path!r}")
        path = "/"
    encoding = node.get("encoding", "json")
    if encoding not in ENCODINGS:
        problems.append(f"{name}.encoding: {encoding!r} is not one of {', '.join(ENCODINGS)}")
    body, query = node.get("body"), node.get("query", {})
    headers = {**base_headers, **node.get("headers", {})}
    if body is not None and method == "GET":
        problems.append(f"{name}.body: a GET has no body (use query)")
    if encoding == "form" and body is not None and not (
            isinstance(body, Mapping) and all(not isinstance(v, (Mapping, list))
                                              for v in body.values())):
        problems.append(f"{name}.body: a form is a flat table of values")
    if not isinstance(query, Mapping) or any(isinstance(v, (Mapping, list))
                                             for v in query.values()):
        problems.append(f"{name}.query: expected a flat table of values")
        query = {}
    unknown = sorted(names_in([path, body, dict(query), dict(headers)]) - allowed)
    if unknown:
        problems.append(f"{name}: unknown field{'s' if len(unknown) > 1 else ''} "
                        + ", ".join("{" + u + "}" for u in unknown)
                        + f" (known: {', '.join(sorted(allowed))})")
    return Call(method=method or "GET", path=path, encoding=encoding, body=body,
                query=dict(query), headers=dict(headers))
