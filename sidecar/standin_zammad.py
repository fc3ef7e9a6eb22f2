"""A provincial ticket system's stand-in for platforms of kind ``http``: Zammad's REST API v1
(docs.zammad.org, "API" section), the part a ticket integration uses, with nothing added. The
sidecar reaches it only through a mapping file (``config/ticket-mappings/zammad.toml``).

Authentication: ``Authorization: Token token=<access token>`` (or ``Bearer <token>``); 401
``{"error": "authentication failed"}`` otherwise.

``POST /api/v1/tickets``
    JSON: ``title``, ``group`` (a group's name) or ``group_id``, ``customer`` (an existing
    user's email or login) or ``customer_id`` (an id, or ``guess:<email>`` to make the user),
    ``article`` (``body`` required; ``subject``, ``type``, ``internal``, ``content_type``),
    optional ``state`` / ``state_id``, ``priority`` / ``priority_id``, ``note``. Attributes the
    instance does not define are dropped, as Zammad does. 201: the ticket.
``GET /api/v1/tickets/{id}``, ``PUT /api/v1/tickets/{id}``
    The ticket (404 if none); an update may change ``title``, ``state``, ``priority``,
    ``group``, ``note`` and add an ``article``.
``GET /api/v1/tickets/search``
    ``query`` in Zammad's search syntax, the part this stand-in knows: terms joined by spaces
    or ``AND``, each ``field:value`` or ``field:"a phrase"`` (fields ``title``, ``number``,
    ``state.name``, ``group.name``, ``customer.email``, ``article.body``) or a bare word or
    phrase (in the title or an article's body); ``limit`` (default 10). Answer
    ``{"tickets": [ids], "tickets_count": n, "assets": {"Ticket": {...}}}``, or with
    ``expand=true`` the list of expanded tickets.
``POST /api/v1/ticket_articles``
    JSON ``ticket_id``, ``body`` (required), ``subject``, ``type`` (``note``, ``phone``, ...),
    ``internal``, ``content_type``. 201: the article.
``GET /api/v1/ticket_articles/by_ticket/{ticket_id}``
    The ticket's articles, oldest first.

``?expand=true`` on a ticket's answer adds the names (``state``, ``priority``, ``group``,
``customer``) beside the ids. Errors are Zammad's ``{"error": ..., "error_human": ...}``: 422
for an invalid value, 404 for an unknown record.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

PREFIX = "/api/v1"
# Zammad's seeded states and priorities (their ids as a new instance has them).
STATES = {1: "new", 2: "open", 3: "pending reminder", 4: "closed", 5: "merged",
          7: "pending close"}
PRIORITIES = {1: "1 low", 2: "2 normal", 3: "3 high"}
GROUPS = {1: "Users"}
SEARCH_FIELDS = ("title", "number", "state.name", "group.name", "customer.email",
                 "article.body")
TERM = re.compile(r'(?:([a-z_.]+):)?(?:"((?:[^"\\]|\\.)*)"|(\S+))')


def error(status: int, message: str) -> web.HTTPException:
    cls = {401: web.HTTPUnauthorized, 404: web.HTTPNotFound,
           422: web.HTTPUnprocessableEntity}[status]
    return cls(text=json.dumps({"error": message, "error_human": message}, ensure_ascii=False),
               content_type="application/json")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


def _lookup(table: dict[int, str], body: dict, name: str) -> int | None:
    """The id ``body`` names for ``name`` (by ``<name>_id`` or by ``<name>``'s name)."""
    if body.get(f"{name}_id") is not None:
        value = body[f"{name}_id"]
        if isinstance(value, int) and value in table:
            return value
        raise error(422, f"No lookup value found for '{name}_id': {json.dumps(value)}")
    if body.get(name) is not None:
        for i, n in table.items():
            if n == body[name]:
                return i
        raise error(422, f"No lookup value found for '{name}': {json.dumps(body[name])}")
    return None


class Zammad:
    """The tickets, articles and users of one stand-in instance; its handlers are methods."""

    def __init__(self, token: str | None):
        self.token = token
        self.tickets: dict[int, dict[str, Any]] = {}
        self.articles: dict[int, list[dict[str, Any]]] = {}
        # The customer every new instance has (Zammad's seed), plus those made by "guess:".
        self.users: dict[int, str] = {2: "nicole.braun@zammad.org"}
        self.duplicates = 0            # tickets created with a title seen before
        self.notes = 0
        self._titles: set[str] = set()
        self._article_id = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post(PREFIX + "/tickets", self.create)
        app.router.add_get(PREFIX + "/tickets/search", self.search)
        app.router.add_get(PREFIX + "/tickets/{id}", self.show)
        app.router.add_put(PREFIX + "/tickets/{id}", self.update)
        app.router.add_post(PREFIX + "/ticket_articles", self.add_article)
        app.router.add_get(PREFIX + "/ticket_articles/by_ticket/{id}", self.by_ticket)

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        given = (header or "").removeprefix("Token token=").removeprefix("Bearer ")
        return header is not None and given != header and hmac.compare_digest(
            given.encode(), self.token.encode())

    # --- the resources --------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        body = await _json(request)
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise error(422, "Need at least title")
        group = _lookup(GROUPS, body, "group")
        if group is None:
            raise error(422, "Need at least group or group_id")
        customer = self._customer(body)
        article = body.get("article")
        if not isinstance(article, dict) or not isinstance(article.get("body"), str) \
                or not article["body"]:
            raise error(422, "Need at least article: { body: \"some text\" }")
        now = time.time()
        tid = len(self.tickets) + 1
        ticket = {"id": tid, "number": str(31000 + tid), "title": title.strip(),
                  "group_id": group, "customer_id": customer,
                  "state_id": _lookup(STATES, body, "state") or 1,
                  "priority_id": _lookup(PRIORITIES, body, "priority") or 2,
                  "note": body.get("note") if isinstance(body.get("note"), str) else None,
                  "owner_id": 1, "organization_id": None, "article_count": 0,
                  "created_at": _iso(now), "updated_at": _iso(now), "_created": now}
        if ticket["title"] in self._titles:
            self.duplicates += 1
        self._titles.add(ticket["title"])
        self.tickets[tid] = ticket
        self.articles[tid] = []
        self._article(ticket, article, now)
        return web.json_response(self._public(ticket, _expand(request)), status=201)

    async def show(self, request: web.Request) -> web.Response:
        return web.json_response(self._public(self._ticket(request.match_info["id"]),
                                              _expand(request)))

    async def update(self, request: web.Request) -> web.Response:
        ticket = self._ticket(request.match_info["id"])
        body = await _json(request)
        changes: dict[str, Any] = {}
        for name, table in (("state", STATES), ("priority", PRIORITIES), ("group", GROUPS)):
            found = _lookup(table, body, name)
            if found is not None:
                changes[f"{name}_id"] = found
        if isinstance(body.get("title"), str) and body["title"].strip():
            changes["title"] = body["title"].strip()
        if isinstance(body.get("note"), str):
            changes["note"] = body["note"]
        now = time.time()
        if isinstance(body.get("article"), dict):
            if not body["article"].get("body"):
                raise error(422, "Need at least article: { body: \"some text\" }")
            self._article(ticket, body["article"], now)
        ticket.update(changes, updated_at=_iso(now))
        return web.json_response(self._public(ticket, _expand(request)))

    async def search(self, request: web.Request) -> web.Response:
        query = request.query.get("query", "")
        try:
            limit = int(request.query.get("limit", "10"))
        except ValueError:
            raise error(422, "limit must be a number") from None
        terms = [(m[1], (m[2].replace('\\"', '"') if m[2] is not None else m[3]))
                 for m in TERM.finditer(query) if (m[3] or m[2] is not None) and m[3] != "AND"]
        for field, _ in terms:
            if field is not None and field not in SEARCH_FIELDS:
                raise error(422, f"search: unknown field {field}")
        found = [t for t in reversed(self.tickets.values())
                 if all(self._matches(t, f, v) for f, v in terms)][:max(limit, 0)]
        if _expand(request):
            return web.json_response([self._public(t, True) for t in found])
        return web.json_response({
            "tickets": [t["id"] for t in found], "tickets_count": len(found),
            "assets": {"Ticket": {str(t["id"]): self._public(t, False) for t in found}}})

    async def add_article(self, request: web.Request) -> web.Response:
        body = await _json(request)
        ticket = self._ticket(str(body.get("ticket_id")))
        if not isinstance(body.get("body"), str) or not body["body"]:
            raise error(422, "Need at least body")
        now = time.time()
        article = self._article(ticket, body, now)
        ticket["updated_at"] = _iso(now)
        self.notes += 1
        return web.json_response(article, status=201)

    async def by_ticket(self, request: web.Request) -> web.Response:
        ticket = self._ticket(request.match_info["id"])
        return web.json_response(self.articles[ticket["id"]])

    # --- what the stand-in's controls read ------------------------------------------------

    def listing(self) -> list[dict[str, Any]]:
        return [{"id": str(t["id"]), "created_at": t["_created"], "status": STATES[t["state_id"]],
                 "body": {**self._public(t, True), "articles": self.articles[t["id"]]}}
                for t in self.tickets.values()]

    def set_state(self, ticket_id: str, state: str, note: str | None) -> dict[str, Any]:
        """What an agent does in the web UI: a new state, with an article saying why."""
        ticket = self._ticket(ticket_id)
        ticket["state_id"] = _lookup(STATES, {"state": state}, "state")
        if note:
            self._article(ticket, {"body": note, "type": "note", "internal": False}, time.time())
        return self._public(ticket, True)

    # --- helpers ----------------------------------------------------------------------------

    def _customer(self, body: dict) -> int:
        value = body.get("customer_id")
        if isinstance(value, str) and value.startswith("guess:"):
            email = value[len("guess:"):]
            if "@" not in email:
                raise error(422, f"Invalid email '{email}'")
            for uid, known in self.users.items():
                if known == email:
                    return uid
            uid = max(self.users) + 1
            self.users[uid] = email
            return uid
        if isinstance(value, int) and value in self.users:
            return value
        if body.get("customer") is not None:
            for uid, known in self.users.items():
                if known == body["customer"]:
                    return uid
            raise error(422, f"No lookup value found for 'customer': "
                             f"{json.dumps(body['customer'])}")
        raise error(422, "Need at least customer or customer_id")

    def _ticket(self, raw: str) -> dict[str, Any]:
        ticket = self.tickets.get(int(raw)) if raw.isdigit() else None
        if ticket is None:
            raise error(404, f"Couldn't find Ticket with 'id'={raw}")
        return ticket

    def _article(self, ticket: dict, body: dict, now: float) -> dict[str, Any]:
        self._article_id += 1
        article = {"id": self._article_id, "ticket_id": ticket["id"],
                   "type": str(body.get("type") or "note"),
                   "sender": str(body.get("sender") or "Agent"),
                   "subject": body.get("subject"), "body": body["body"],
                   "content_type": str(body.get("content_type") or "text/plain"),
                   "internal": bool(body.get("internal", False)), "created_at": _iso(now)}
        self.articles[ticket["id"]].append(article)
        ticket["article_count"] = len(self.articles[ticket["id"]])
        return article

    def _public(self, t: dict, expand: bool) -> dict[str, Any]:
        out = {k: v for k, v in t.items() if not k.startswith("_")}
        if expand:
            out.update(state=STATES[t["state_id"]], priority=PRIORITIES[t["priority_id"]],
                       group=GROUPS[t["group_id"]], customer=self.users[t["customer_id"]])
        return out

    def _matches(self, t: dict, field: str | None, value: str) -> bool:
        value = value.lower()
        bodies = [a["body"].lower() for a in self.articles[t["id"]]]
        if field is None:
            return value in t["title"].lower() or any(value in b for b in bodies)
        if field == "article.body":
            return any(value in b for b in bodies)
        have = {"title": t["title"], "number": t["number"], "state.name": STATES[t["state_id"]],
                "group.name": GROUPS[t["group_id"]],
                "customer.email": self.users[t["customer_id"]]}[field].lower()
        return value in have if field == "title" else value == have


def _expand(request: web.Request) -> bool:
    return request.query.get("expand", "").lower() == "true"


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except ValueError:
        raise error(422, "The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise error(422, "The request body must be a JSON object")
    return body
