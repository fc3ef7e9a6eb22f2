"""Work-order sync: every outcome record becomes linked tickets on both platforms, exactly once.

The outcome stream (``hotline:outcomes``) is read with a consumer group; an entry is acknowledged
only after both platforms accepted their ticket, so a sidecar killed at any moment finds its
unacknowledged entries again (it reads its own pending list first on start). Exactly once rests
on three things:

1. each create is made once on the platform by its adapter (``sidecar.adapters``): an EIDO
   names its incident by the work order, so a repeat updates the same incident; on Open311,
   which has no idempotency key, the request is recorded before it is sent and looked for on
   the platform before any later attempt;
2. the ticket ids are written to Redis (``hotline:sidecar:tickets``) in the same transaction
   that acknowledges the entry, so a record synced once is not sent again (one read of both ids
   at the start, one transaction at the end: the Redis round trips per record are two);
3. an entry delivered again (it was pending when the last sidecar died) first asks the platform
   whether its create or note was already done: the crash may have fallen after a create and
   before step 2, and then nothing is re-sent;
4. entries are independent (one per transfer): new ones are handled up to
   ``sidecar.concurrency`` at a time, each acknowledged on its own; the backlog of a restart is
   handled one at a time.

Failures: a timeout, a connection error or a 5xx is retried with exponential backoff and full
jitter for up to ``sidecar.retry_for`` seconds; a 4xx (the platform refuses the content), a record
that is not a valid outcome, or a failure that outlasts the retry window parks the entry in the
dead-letter stream ``hotline:outcomes:dead`` with the reason, acknowledges it, and raises a
``dead_letter`` alert. Failed transfers (every ``fallback_*``) raise ``transfer_failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from datetime import datetime

import redis.asyncio as aioredis
import structlog

from contracts.names import (CHAIN, INDEX, LINKS, MATTER_STATS, MATTER_STATS_TTL, OUTCOMES,
                             OUTCOMES_DEAD, OUTCOMES_GROUP, RECORD, TICKET_TRANSFER, TICKETS)
from contracts.vocab import FALLBACK_RESULTS, AlertKind
from hotline_link.redisconn import NO_WAIT, Durable, NotReplicated
from transfer.analysis import UNCLASSIFIED
from transfer.catalog import Catalog

from . import trail
from .adapters import TicketApi, TicketError
from .alerts import enqueue
from .metrics import Metrics
from .workorder import Platforms, callback_work_order, work_orders

log = structlog.get_logger("sync")
RECORD_FIELD = OUTCOMES.field.encode()

BACKOFF_BASE = 0.1
BACKOFF_CAP = 5.0

async def ensure_group(redis: aioredis.Redis, stream: str, group: str, start: str) -> bool:
    """Create ``group`` on ``stream`` (and the stream) if missing; True if it had to be made.
    Waits for Redis rather than failing: a sidecar started while Redis is away starts late."""
    while True:
        try:
            await redis.xgroup_create(stream, group, id=start, mkstream=True)
            return True
        except aioredis.ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            raise
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            log.warning("redis unavailable; waiting to create the consumer group",
                        stream=stream, group=group, error=str(exc))
            await asyncio.sleep(1.0)


# Keys whose absence after a group vanished says Redis lost its data, not only the group.
DURABLE_KEYS = (TICKETS, INDEX, LINKS)
# KEYS: the record index, its hour's matter counters; ARGV: the score, the transfer id, the
# category, the counters' TTL. A record is counted in its hour once: remembered again (read
# again after a crash, an online request repeated), it only keeps its place in the index.
INDEX_ONCE = """
if redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  redis.call('EXPIRE', KEYS[2], ARGV[4])
else
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
end
return 0
"""


async def group_lost(redis: aioredis.Redis, stream: str, group: str,
                     last: bytes | None) -> None:
    """The consumer group (or the whole stream) is gone: a Redis restarted without its data, a
    failover to a replica that lacked the last writes, or a hand that deleted it. Recreate it
    after the last entry this consumer saw (entries added since have later ids, so none is
    skipped and nothing already handled comes back; a consumer that saw none starts at the
    beginning of what is there now), and say what could not be recovered."""
    since = last.decode() if last else "0"
    await ensure_group(redis, stream, group, since)
    missing = [k for k in DURABLE_KEYS if not await redis.exists(k)]
    lost = [f"entries of {stream} not yet read by {group} before the loss, and those pending "
            f"on other consumers (after {since})"]
    if missing:
        lost.append("the sidecar's ticket index (" + ", ".join(missing) + "): queries, "
                    "feedback relay and supervision of tickets created before the loss")
    log.error("consumer group vanished; recreated", stream=stream, group=group, since=since,
              redis_data_lost=bool(missing))
    pipe = redis.pipeline(transaction=False)
    enqueue(pipe, AlertKind.REDIS_DATA_LOST, {"stream": stream, "group": group, "recreated_at": since,
                                      "missing_keys": missing, "not_recoverable": lost})
    await pipe.execute()


async def consume(redis: aioredis.Redis, stream: str, group: str, consumer: str, start: str,
                  handle, concurrency: int = 1, reclaim_after: float | None = None,
                  durable: Durable = NO_WAIT) -> None:
    """Read ``stream`` as ``consumer`` of ``group`` forever, calling
    ``await handle(id, fields, redelivered)`` per entry (the handler acknowledges). The group is
    created at ``start`` if new; the consumer's own unacknowledged entries (from before a crash)
    come first, with ``redelivered`` true, one at a time. New entries are handled up to
    ``concurrency`` at once: each is independent of the others and acknowledged on its own.

    ``reclaim_after``: an entry left unacknowledged that long (its handler failed unexpectedly,
    or the consumer that read it died and never came back) is claimed (XAUTOCLAIM) and handled
    again as redelivered, without waiting for a restart. It must exceed the longest a handler
    can take, so that an entry still being worked on is not taken from under its handler.

    Under Sentinel (``durable``: replicas to wait for), entries read are handed out once a replica
    has them and their delivery to this consumer: an entry read from a primary that then dies
    before its replica had it would come back from the promoted replica (or vanish) after it was
    handled. One WAIT per batch, and after it the batch goes on regardless (a replica away must
    not stop the work orders; the harm needs a failover in that moment too). When Redis fails
    (restart or failover), this consumer's own pending entries are read again once it is back
    (those not in hand now): the acknowledgements of the last moments may not have survived."""
    await ensure_group(redis, stream, group, start)
    slots = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task] = set()
    in_hand: set[bytes] = set()

    async def in_turn(entry_id: bytes, fields: dict, redelivered: bool) -> None:
        try:
            await handle(entry_id, fields, redelivered)
        except Exception:                  # noqa: BLE001 - it stays pending: reclaimed later
            log.exception("entry handler failed; left pending", stream=stream, entry=entry_id)

    async def one(entry_id: bytes, fields: dict) -> None:
        try:
            await in_turn(entry_id, fields, False)
        finally:
            in_hand.discard(entry_id)
            slots.release()

    async def reclaim() -> None:
        cursor = "0-0"
        while True:
            cursor, entries, *_ = await redis.xautoclaim(
                stream, group, consumer, min_idle_time=int(reclaim_after * 1000),
                start_id=cursor, count=100)
            for entry_id, fields in entries:
                if entry_id in in_hand or not fields:
                    continue
                log.warning("reclaimed an entry left unacknowledged", stream=stream,
                            entry=entry_id)
                await in_turn(entry_id, fields, True)
            if cursor in (b"0-0", "0-0"):
                return

    # The backlog (our own pending entries) is read from a cursor, so one that fails again is
    # passed over (left to ``reclaim``) instead of being read back forever.
    backlog: bytes | str | None = "0"
    last: bytes | None = None              # the newest entry read: where a lost group restarts
    next_reclaim = time.monotonic() + (reclaim_after or 0.0)
    while True:
        try:
            if reclaim_after and backlog is None and time.monotonic() >= next_reclaim:
                next_reclaim = time.monotonic() + reclaim_after / 2
                await reclaim()
            got = await redis.xreadgroup(group, consumer, {stream: backlog or ">"}, count=100,
                                         block=None if backlog else 1000)
            if got and got[0][1]:
                try:
                    await durable.confirm(redis)
                except NotReplicated as exc:
                    log.warning("entries handed out before a replica confirmed them",
                                stream=stream, entries=len(got[0][1]), error=str(exc))
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            log.warning("redis unavailable; retrying", stream=stream, error=str(exc))
            backlog = "0"
            await asyncio.sleep(1.0)
            continue
        except aioredis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                log.error("stream read refused; retrying", stream=stream, error=str(exc))
                await asyncio.sleep(1.0)
                continue
            try:
                await group_lost(redis, stream, group, last)
            except aioredis.RedisError as again:
                log.warning("cannot recreate the consumer group yet", stream=stream,
                            error=str(again))
                await asyncio.sleep(1.0)
            backlog = None
            continue
        entries = got[0][1] if got else []
        if backlog and not entries:
            backlog = None
            continue
        for entry_id, fields in entries:
            last = entry_id
            if backlog:
                backlog = entry_id
                if entry_id in in_hand:
                    continue                   # being handled now (read again after an outage)
            if backlog or concurrency == 1:
                await in_turn(entry_id, fields, backlog is not None)
                continue
            await slots.acquire()
            in_hand.add(entry_id)
            task = asyncio.create_task(one(entry_id, fields))
            running.add(task)
            task.add_done_callback(running.discard)


async def ticket_transfer(redis: aioredis.Redis, platform: str, ticket: str) -> dict | None:
    """The transfer id and category a synced ticket belongs to (``Syncer.remember`` writes it
    for both tickets of a pair)."""
    raw = await redis.hget(TICKET_TRANSFER, f"{platform}|{ticket}")
    return json.loads(raw) if raw else None


class Syncer:
    def __init__(self, redis: aioredis.Redis, clients: dict[str, TicketApi],
                 catalog: Catalog, consumer: str, retry_for: float,
                 metrics: Metrics | None = None, *, stability: tuple[str, ...] = (),
                 disputes: tuple[str, ...] = (), concurrency: int = 1,
                 request_timeout: float = 5.0, durable: Durable = NO_WAIT,
                 elsewhere: frozenset[str] = frozenset()):
        self.redis = redis
        # Centres of the service whose tickets are kept in a system this sidecar does not speak
        # to (the provincial 12345, R6): their transfers are recorded and chained, without tickets.
        self.elsewhere = elsewhere
        self.durable = durable
        self.clients = clients
        self.platforms = Platforms({pid: c.role for pid, c in clients.items()})
        self.catalog = catalog
        self.consumer = consumer
        self.retry_for = retry_for
        self.synced = 0
        self.retries = 0
        self.dead = 0
        self.metrics = metrics or Metrics()
        self.supervisor = None            # set by the service: deadlines for synced tickets
        self.stability, self.disputes = frozenset(stability), frozenset(disputes)
        self.concurrency = concurrency
        # Longer than one entry can take: the whole retry window, plus one last attempt begun
        # just inside it (at most six requests: lookup and create of both tickets, lookup and
        # note), plus slack.
        self.reclaim_after = retry_for + 6 * request_timeout + 30.0

    async def run(self) -> None:
        # A new group starts at the beginning: every record ever written gets its tickets.
        await consume(self.redis, OUTCOMES.key, OUTCOMES_GROUP, self.consumer, "0", self.handle,
                      self.concurrency, reclaim_after=self.reclaim_after, durable=self.durable)

    async def handle(self, entry_id: bytes, fields: dict, redelivered: bool = False) -> None:
        started = time.monotonic()
        try:
            record = json.loads(fields[RECORD_FIELD])
            if record.get("origin") in self.elsewhere and record.get("transfer_id"):
                await self._record_only(entry_id, record)
                return
            previous = await self._previous_tickets(record)
            orders = work_orders(record, self.catalog, self.platforms, previous)
        except (KeyError, ValueError, TypeError) as exc:
            await self._dead_letter(entry_id, fields.get(RECORD_FIELD, b"").decode(errors="replace"),
                                    None, f"not a valid outcome record: {exc}")
            return
        tid = record["transfer_id"]
        clog = log.bind(transfer_id=tid, call_id=record.get("call_id"), hotline=record.get("origin"))
        deadline = time.monotonic() + self.retry_for
        attempt = 0
        made: dict[str, str] = {}       # work order id -> ticket, kept across retries
        while True:
            try:
                tickets = await self.sync_orders(orders, redelivered, made)
                break
            except TicketError as exc:
                if exc.permanent or time.monotonic() >= deadline:
                    await self._dead_letter(entry_id, json.dumps(record), tid, str(exc), made)
                    return
                self.retries += 1
                self.metrics.retries.inc()
                delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt))
                attempt += 1
                clog.info("ticket create failed; retrying", error=str(exc), attempt=attempt,
                          delay_s=round(delay, 3))
                with contextlib.suppress(aioredis.RedisError, OSError):
                    await trail.add(self.redis, tid, "ticket_retry", error=str(exc),
                                    attempt=attempt, made=dict(made))
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        pipe = self.redis.pipeline(transaction=True)
        self.remember(pipe, record, tickets)
        self._alerts(pipe, record, tickets)
        pipe.xack(OUTCOMES.key, OUTCOMES_GROUP, entry_id)
        if not await self._settle(pipe, entry_id, clog):
            # The transaction is not in Redis (it failed, or was lost with a primary): again,
            # as a redelivery (tickets are looked up before anything is created).
            await self.handle(entry_id, fields, True)
            return
        self.synced += 1
        self.metrics.record_synced(record, time.monotonic() - started)
        clog.info("work orders synced", tickets=tickets, result=record.get("result"))

    async def _record_only(self, entry_id: bytes, record: dict) -> None:
        """A transfer made at a centre whose tickets are kept elsewhere: queryable and in its
        chain like any other, with no tickets from here (and no dead letter: nothing failed)."""
        clog = log.bind(transfer_id=record["transfer_id"], call_id=record.get("call_id"),
                        hotline=record.get("origin"))
        pipe = self.redis.pipeline(transaction=True)
        self.remember(pipe, record, {})
        self._alerts(pipe, record, {})
        pipe.xack(OUTCOMES.key, OUTCOMES_GROUP, entry_id)
        if not await self._settle(pipe, entry_id, clog):
            await self._record_only(entry_id, record)
            return
        clog.info("recorded without tickets: this centre's tickets are kept elsewhere")

    async def _previous_tickets(self, record: dict) -> dict[str, str]:
        """R6: the tickets of the hop a chained transfer continues, if they were made already
        (the hop before ended first, so they nearly always are)."""
        chain = record.get("chain")
        previous = chain.get("previous") if isinstance(chain, dict) else None
        if not isinstance(previous, str) or not previous:
            return {}
        try:
            raw = await self.redis.get(RECORD.format(previous))
            return json.loads(raw).get("tickets", {}) if raw else {}
        except (aioredis.RedisError, OSError, ValueError, AttributeError):
            return {}                 # the link is a courtesy: the tickets are made without it

    async def _settle(self, pipe, entry_id: bytes, clog) -> bool:
        """Run ``pipe`` (the transaction that acknowledges ``entry_id``) and wait until it is
        safe: True once Redis has it, and a replica confirmed it where ``durable`` asks for one;
        False if it turned out not to be there (the entry is pending again: EXEC never ran, or
        ran on a primary that died before its replica had it). While Redis is away or no replica
        confirms, this waits: the record is not synced until then."""
        try:
            await pipe.execute()
            applied = True
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            clog.warning("work orders made; their transaction's fate unknown", error=str(exc))
            applied = False                # or it ran and the answer was lost: see below
        while True:
            if applied:
                try:
                    await self.durable.confirm(self.redis)
                    return True
                except (NotReplicated, aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                    clog.warning("work orders made; waiting for a replica to confirm",
                                 error=str(exc))
            await asyncio.sleep(1.0)
            try:
                pending = await self.redis.xpending_range(OUTCOMES.key, OUTCOMES_GROUP,
                                                          entry_id, entry_id, 1)
            except (aioredis.ConnectionError, aioredis.TimeoutError):
                continue
            if pending:
                return False
            applied = True                 # acknowledged in Redis: now a replica must have it

    def _alerts(self, pipe, record: dict, tickets: dict[str, str]) -> None:
        about = {k: record.get(k) for k in ("transfer_id", "call_id", "origin", "target", "result",
                                            "category")}
        about["tickets"] = tickets
        if record.get("result") in FALLBACK_RESULTS:
            enqueue(pipe, AlertKind.TRANSFER_FAILED, {**about, "detail": record.get("detail")})
        category = record.get("category")
        if category is None:
            return
        # R15. A stability lead is alerted whatever became of the transfer: a lead that did not
        # reach 110 by phone needs 110's attention all the more.
        if category in self.stability:
            enqueue(pipe, AlertKind.STABILITY_LEAD, about)
        # The disputes 110 passes to 12345 for joint mediation: from the police desk (the
        # dispatch platform, see Platforms.dispatch) to the other platform.
        police = self.platforms.dispatch
        if (category in self.disputes and record.get("origin") == police
                and record.get("target") == self.platforms.other(police)):
            enqueue(pipe, AlertKind.DISPUTE, {**about, "stage": "mediation"})

    def remember(self, pipe, record: dict, tickets: dict[str, str]) -> None:
        """What the query API, the trail, the feedback relay and supervision read later.
        ``tickets`` lists the owner's ticket first."""
        tid = record["transfer_id"]
        when = record.get("timestamps", {}).get("ended") or record.get("timestamps", {}).get("requested")
        try:
            score = datetime.fromisoformat(when).timestamp() if when else time.time()
        except ValueError:
            score = time.time()
        pipe.set(RECORD.format(tid), json.dumps({"record": record, "tickets": tickets}))
        chain = record.get("chain")
        if isinstance(chain, dict) and chain.get("id"):
            pipe.hset(CHAIN.format(chain["id"]), str(chain.get("hop", 1)), tid)
        pipe.eval(INDEX_ONCE, 2, INDEX, MATTER_STATS.format(int(score // 3600)), score, tid,
                  record.get("category") or UNCLASSIFIED, MATTER_STATS_TTL)
        trail.add(pipe, tid, "tickets_created" if tickets else "recorded_without_tickets",
                  tickets=tickets)
        if not tickets:
            return                        # recorded only (see _record_only)
        a, b = (f"{p}:{t}" for p, t in tickets.items())
        pipe.hset(LINKS, mapping={a: b, b: a})
        pipe.hset(TICKETS, mapping={f"{tid}:{p}": t for p, t in tickets.items()})
        # Which transfer a ticket belongs to, for feedback on either ticket of the pair.
        about = json.dumps({"transfer_id": tid, "category": record.get("category")})
        pipe.hset(TICKET_TRANSFER, mapping={f"{p}|{t}": about for p, t in tickets.items()})
        if self.supervisor is not None:
            owner, ticket = next(iter(tickets.items()))
            self.supervisor.schedule(pipe, record.get("category"), owner, ticket)

    async def sync_orders(self, orders: list[dict], redelivered: bool = False,
                          made: dict[str, str] | None = None) -> dict[str, str]:
        """Create (or find again) both tickets of a pair, each naming the other. Where one
        ticket's id is known before it exists (an EIDO names its incident), the other is made
        first, naming it, and then that one, naming the other: two requests. Otherwise the
        second made carries the first's id and the first learns the second's by a note: the
        owner's is made first, unless its system takes no note (Open311) and the other's does.
        ``made`` holds the tickets known so far (filled from Redis on the first call); the
        caller stores them with ``remember``. The owner's ticket comes first in the answer."""
        made = {} if made is None else made
        if not made:
            ids = [wo["work_order_id"] for wo in orders]
            made.update((k, v.decode()) for k, v in zip(ids, await self.redis.hmget(TICKETS, ids))
                        if v)
        owner, linked = orders
        known = {wo["work_order_id"]: self.clients[wo["platform"]].known_id(wo) for wo in orders}
        if known[linked["work_order_id"]] or known[owner["work_order_id"]]:
            later = linked if known[linked["work_order_id"]] else owner
            sooner = owner if later is linked else linked
            sooner["linked"]["ticket_id"] = known[later["work_order_id"]]
            later["linked"]["ticket_id"] = await self._create(sooner, made, redelivered)
            await self._create(later, made, redelivered)
        else:
            first, second = ((linked, owner) if not self.clients[owner["platform"]].takes_notes
                             and self.clients[linked["platform"]].takes_notes else (owner, linked))
            first_ticket = await self._create(first, made, redelivered)
            second["linked"]["ticket_id"] = first_ticket
            second_ticket = await self._create(second, made, redelivered)
            client = self.clients[first["platform"]]
            if client.takes_notes:
                await client.note(
                    first_ticket, f"{first['work_order_id']}:linked",
                    {"status": None, "note": f"linked {second['platform']} ticket {second_ticket}",
                     "source": "hotline-link", "linked_ticket_id": second_ticket}, redelivered)
        return {owner["platform"]: made[owner["work_order_id"]],
                linked["platform"]: made[linked["work_order_id"]]}

    async def callback_ticket(self, record: dict, redelivered: bool) -> str:
        """The ticket of a call-back request (a call record with disposition ``callback``), on
        the hotline's own platform; once, however often the record is read."""
        wo = callback_work_order(record)
        wid = wo["work_order_id"]
        known = await self.redis.hget(TICKETS, wid)
        if known:
            return known.decode()
        if wo["platform"] not in self.clients:
            raise TicketError(f"no ticket system for hotline {wo['platform']!r}", permanent=True)
        ticket = await self._create(wo, {}, redelivered)
        await self.redis.hset(TICKETS, wid, ticket)
        try:
            await self.durable.confirm(self.redis)
        except NotReplicated as exc:
            log.warning("call-back ticket noted before a replica confirmed it", error=str(exc))
        log.info("call-back work order created", call_id=record["call_id"],
                 platform=wo["platform"], ticket_id=ticket)
        return ticket

    async def _create(self, wo: dict, made: dict[str, str], redelivered: bool) -> str:
        wid = wo["work_order_id"]
        if wid not in made:
            made[wid] = await self.clients[wo["platform"]].create(wo, redelivered)
        return made[wid]

    async def _dead_letter(self, entry_id: bytes, record: str, tid: str | None, reason: str,
                           made: dict[str, str] | None = None) -> None:
        log.error("work order dead-lettered", transfer_id=tid, reason=reason)
        pipe = self.redis.pipeline(transaction=True)
        if made:
            # A ticket created before the failure is not created again when the entry is re-driven.
            pipe.hset(TICKETS, mapping=made)
        pipe.xadd(OUTCOMES_DEAD.key, {"entry": entry_id, "transfer_id": tid or "", "reason": reason,
                                      OUTCOMES_DEAD.field: record})
        if tid:
            trail.add(pipe, tid, "dead_lettered", reason=reason, made=dict(made or {}))
        enqueue(pipe, AlertKind.DEAD_LETTER, {"transfer_id": tid, "reason": reason, "stream": OUTCOMES_DEAD.key})
        pipe.xack(OUTCOMES.key, OUTCOMES_GROUP, entry_id)
        await pipe.execute()
        try:
            await self.durable.confirm(self.redis)
        except NotReplicated as exc:
            log.warning("dead letter not yet confirmed by a replica", transfer_id=tid,
                        error=str(exc))
        self.dead += 1
        self.metrics.dead_letters.inc()
