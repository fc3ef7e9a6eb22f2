"""Call records, the sidecar's side: every record of ``hotline:calls`` (one per call offered to a
hotline, written by the service) is kept for queries (``GET /calls``) and linked with the
transfers made from the call (their ids are in the record; each transfer's outcome record names
the call by ``call_id``).

Storing is idempotent (SET, ZADD by arrival) and acknowledged in the same transaction, so a record
read again after a crash or a failover changes nothing. A record that is not one (no call id, no
arrival) goes to the dead-letter stream with the reason, like an outcome record.
"""

from __future__ import annotations

import json
from datetime import datetime

import redis.asyncio as aioredis
import structlog

from contracts.names import CALL_INDEX, CALL_RECORD, CALLS, CALLS_GROUP, OUTCOMES_DEAD
from hotline_link.redisconn import NO_WAIT, Durable, NotReplicated

from .sync import consume

log = structlog.get_logger("calls")


def _arrival(record: dict) -> float:
    call_id = record["call_id"]
    if not isinstance(call_id, str) or not call_id:
        raise ValueError("call_id must be a non-empty string")
    return datetime.fromisoformat(record["arrived_at"]).timestamp()


class CallStore:
    def __init__(self, redis: aioredis.Redis, consumer: str, durable: Durable = NO_WAIT):
        self.redis = redis
        self.consumer = consumer
        self.durable = durable
        self.stored = 0

    async def run(self) -> None:
        # A new group starts at the beginning: every call ever recorded is counted.
        await consume(self.redis, CALLS.key, CALLS_GROUP, self.consumer, "0", self.handle,
                      durable=self.durable)

    async def handle(self, entry_id: bytes, fields: dict, _redelivered: bool = False) -> None:
        pipe = self.redis.pipeline(transaction=True)
        try:
            record = CALLS.payload(fields)
            arrived = _arrival(record)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raw = fields.get(CALLS.field.encode(), b"").decode(errors="replace")
            log.error("call record dead-lettered", entry=entry_id, reason=str(exc))
            pipe.xadd(OUTCOMES_DEAD.key, {"entry": entry_id, "stream": CALLS.key,
                                          "reason": f"not a valid call record: {exc}",
                                          OUTCOMES_DEAD.field: raw})
        else:
            call_id = record["call_id"]
            pipe.set(CALL_RECORD.format(call_id), json.dumps(record, ensure_ascii=False))
            pipe.zadd(CALL_INDEX, {call_id: arrived})
        pipe.xack(CALLS.key, CALLS_GROUP, entry_id)
        await pipe.execute()
        try:
            await self.durable.confirm(self.redis)
        except NotReplicated as exc:
            log.warning("call record stored before a replica confirmed it", entry=entry_id,
                        error=str(exc))
        self.stored += 1
