"""Alerts over HTTP: signed webhooks to the configured subscribers.

Every delivery is a JSON body ``{"id", "event", "at", "data"}`` signed with the subscriber's secret
(``sidecar.signing``: ``X-Hotline-Signature: t=<unix>,v1=<hmac>``, verify it as documented
there) and retried with exponential backoff and full jitter until it is accepted (2xx) or the
attempts run out (then it is logged as lost: an alert is a notification, the record it is
about stays in Redis). Deliveries run in the background so a slow subscriber never delays the
work-order sync or another subscriber.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from datetime import datetime, timezone

import aiohttp
import structlog

from contracts.names import ALERTS
from . import trail
from .metrics import Metrics
from .settings import Webhook
from .signing import SIGNATURE_HEADER, sign

log = structlog.get_logger("alerts")

def enqueue(pipe, event: str, data: dict) -> None:
    """Put an alert in the outbox: the alert stream the ARI app also writes to, which the
    sidecar's forwarder delivers from and acknowledges only once delivered. Added in the same
    Redis transaction as the change it is about, an alert is neither lost nor raised twice by
    a crash in between. An alert about a transfer is a step of its trail, in the same step."""
    pipe.xadd(ALERTS.key, ALERTS.entry({"kind": event, **data}), **ALERTS.trim())
    if data.get("transfer_id"):
        trail.add(pipe, data["transfer_id"], "alert", kind=str(event),
                  **{k: data[k] for k in ("stage", "reason") if data.get(k)})

ATTEMPTS = 6
BACKOFF_BASE = 0.2
BACKOFF_CAP = 10.0


class Alerts:
    def __init__(self, session: aiohttp.ClientSession, webhooks: tuple[Webhook, ...],
                 timeout: float = 5.0, metrics: Metrics | None = None):
        self.session = session
        self.webhooks = webhooks
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.sent = 0
        self.failed = 0
        self.metrics = metrics or Metrics()
        self._tasks: set[asyncio.Task] = set()

    def raise_(self, event: str, data: dict, alert_id: str | None = None) -> str:
        """Queue ``event`` for every subscriber that wants it; returns the alert id."""
        alert_id = alert_id or uuid.uuid4().hex
        self.deliver(event, data, alert_id)
        return alert_id

    def deliver(self, event: str, data: dict, alert_id: str) -> list[asyncio.Task]:
        """Like ``raise_``, returning the delivery tasks: a caller that must not forget the alert
        until it is out (the alert stream's acknowledgement) awaits them. A stable ``alert_id``
        lets subscribers drop a repeat after a crash."""
        body = json.dumps({"id": alert_id, "event": event,
                           "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                           "data": data}, ensure_ascii=False).encode()
        tasks = []
        for hook in self.webhooks:
            if event in hook.events:
                task = asyncio.create_task(self._deliver(hook, event, alert_id, body))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                tasks.append(task)
        return tasks

    async def drain(self, timeout: float = 5.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def _deliver(self, hook: Webhook, event: str, alert_id: str, body: bytes) -> None:
        secret = (hook.secret or "").encode()
        clog = log.bind(alert_id=alert_id, alert_event=event, url=hook.url)
        for attempt in range(ATTEMPTS):
            headers = {"Content-Type": "application/json",
                       SIGNATURE_HEADER: sign(secret, body, time.time())}
            try:
                async with self.session.post(hook.url, data=body, headers=headers,
                                             timeout=self.timeout) as resp:
                    if 200 <= resp.status < 300:
                        self.sent += 1
                        self.metrics.alerts.labels(event, "delivered").inc()
                        clog.info("alert delivered", attempt=attempt + 1)
                        return
                    clog.warning("alert refused", status=resp.status, attempt=attempt + 1)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                clog.warning("alert delivery failed", error=repr(exc), attempt=attempt + 1)
            await asyncio.sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt)))
        self.failed += 1
        self.metrics.alerts.labels(event, "lost").inc()
        clog.error("alert lost after retries", attempts=ATTEMPTS)
