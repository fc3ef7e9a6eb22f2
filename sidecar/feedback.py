"""The closed loop (R11): a platform's report on one of its tickets (accepted, in progress,
closed, or a dispute escalating) relayed to the linked ticket on the other platform, kept in the
transfer's trail, and clearing the supervision deadlines it answers.

A report comes from ``POST /feedback`` (a platform's ticket system calls the API: the 110
dispatch system does) or from the status watch, which reads the statuses of the supervised
tickets on the platforms that cannot call out (GeoReport v2 has no callbacks): a ticket found
closed there is reported closed, once.
"""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as aioredis
import structlog

from contracts.names import DEADLINES, LINKS
from contracts.vocab import AlertKind
from hotline_link.redisconn import Durable, NotReplicated

from . import trail
from .adapters import TicketApi, TicketError
from .alerts import enqueue
from .sync import Syncer, ticket_transfer

log = structlog.get_logger("feedback")

STATUSES = ("accepted", "in_progress", "closed", "escalating")
# What a platform's own status says when its ticket is finished (GeoReport v2: "closed").
CLOSED = frozenset({"closed"})


# Deadlines read per round of the status watch (a ticket has up to four: two stages, two levels).
WATCH_BATCH = 1000


class NoLink(LookupError):
    pass


class Feedback:
    def __init__(self, redis: aioredis.Redis, syncer: Syncer, durable: Durable):
        self.redis = redis
        self.syncer = syncer
        self.durable = durable
        self._next = 0                   # where the status watch's next round starts

    async def report(self, platform: str, ticket: str, status: str, note: str | None,
                     key: str, by: str) -> dict:
        """Relay a report; the linked ticket and whether its platform took it. NoLink for a
        ticket the sidecar did not sync; TicketError if the other platform failed."""
        linked = await self.redis.hget(LINKS, f"{platform}:{ticket}")
        if linked is None:
            raise NoLink(f"no synced ticket {platform}:{ticket}")
        other, other_ticket = linked.decode().split(":", 1)
        escalating = status == "escalating"
        # An escalating dispute asks 110 to reopen its linked ticket: from now on it is 110's
        # matter too (its deadlines start in _escalate).
        delivered = await self.syncer.clients[other].note(other_ticket, f"feedback:{key}", {
            "status": "open" if escalating else status,
            "source": f"platform {platform} ticket {ticket}",
            "note": note or (f"dispute escalating: {platform} calls in {other}" if escalating
                             else f"{platform} reports {status}")})
        # GeoReport v2 (Open311) has no way to write to a request: there the report stays on
        # this side, in the transfer's trail and GET /transfers/{id}.
        relayed = {"platform": other, "ticket_id": other_ticket, "delivered": delivered}
        about = (await ticket_transfer(self.redis, platform, ticket)
                 or {"transfer_id": None, "category": None})
        if about.get("transfer_id"):
            await trail.add(self.redis, about["transfer_id"], "feedback", platform=platform,
                            ticket_id=ticket, status=status, note=note, feedback_id=key,
                            client=by, relayed_to=relayed)
        supervisor = self.syncer.supervisor
        if escalating:
            await self._escalate(platform, ticket, other, other_ticket, note, about)
        elif supervisor is not None:
            await supervisor.feedback(platform, ticket, status)
        return relayed

    async def _escalate(self, platform: str, ticket: str, other: str, other_ticket: str,
                        note: str | None, about: dict) -> None:
        """R15: a 12345 handling unit finds a dispute escalating and calls in 110."""
        supervisor = self.syncer.supervisor
        pipe = self.redis.pipeline(transaction=True)
        enqueue(pipe, AlertKind.DISPUTE, {**about, "stage": "escalating", "note": note,
                                          "tickets": {platform: ticket, other: other_ticket}})
        if supervisor is not None and about["transfer_id"]:
            # 110 must now accept and finish its ticket in time, like any synced owner.
            supervisor.schedule(pipe, about["category"], other, other_ticket)
        await pipe.execute()
        try:
            await self.durable.confirm(self.redis)
        except NotReplicated as exc:
            # The alert waits in the outbox all the same; its forwarder waits for the replica.
            log.warning("escalation not yet confirmed by a replica", error=str(exc))

    async def watch(self, clients: dict[str, TicketApi], every: float) -> None:
        """Every ``every`` seconds, the statuses of the supervised tickets (those with a
        deadline still open), read off their platforms: one found closed is reported closed."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.check(clients)
            except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                log.warning("redis unavailable; statuses read again later", error=str(exc))

    async def check(self, clients: dict[str, TicketApi]) -> int:
        """One round: the next ``WATCH_BATCH`` deadlines of the supervised set (a round robin
        over it, so a round's cost does not grow with the number of open tickets; with N open
        deadlines a ticket is read every N / WATCH_BATCH rounds)."""
        members = await self.redis.zrange(DEADLINES, self._next, self._next + WATCH_BATCH - 1)
        self._next = 0 if len(members) < WATCH_BATCH else self._next + WATCH_BATCH
        supervised: dict[str, set[str]] = {}
        for member in members:
            platform, ticket, _stage, _level = member.decode().split("|")
            supervised.setdefault(platform, set()).add(ticket)
        closed = 0
        for platform, tickets in supervised.items():
            client = clients.get(platform)
            if client is None or not client.read_for_status:
                continue
            try:
                statuses = await client.statuses(sorted(tickets))
            except TicketError as exc:
                log.info("statuses not read; again later", platform=platform, error=str(exc))
                continue
            for ticket, (status, notes) in statuses.items():
                if (status or "").lower() not in CLOSED:
                    continue
                with contextlib.suppress(NoLink):
                    try:
                        await self.report(platform, ticket, "closed", notes,
                                          f"{platform}:{ticket}:closed", "status watch")
                        closed += 1
                    except TicketError as exc:
                        log.info("closed ticket not relayed yet", platform=platform,
                                 ticket=ticket, error=str(exc))
        return closed
