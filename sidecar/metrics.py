"""Prometheus metrics of the sidecar (``GET /metrics``), one registry per process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

ANSWERED = ("accepted", "accepted_by_origin", "accepted_by_target", "undecided_first_receiver")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.transfers = Counter("hotline_transfers", "Outcome records synced, by origin, target and result",
                                 ["origin", "target", "result"], registry=r)
        self.answered = Counter("hotline_transfers_answered", "Transfers the target answered, by origin",
                                ["origin"], registry=r)
        self.attempts = Counter("hotline_transfer_attempts", "Transfer attempts, by origin "
                                "(answer rate = answered / attempts)", ["origin"], registry=r)
        self.sync_seconds = Histogram("hotline_sync_seconds", "Time from reading a record to both "
                                      "tickets created", registry=r,
                                      buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.retries = Counter("hotline_sync_retries", "Ticket API calls retried", registry=r)
        self.dead_letters = Counter("hotline_dead_letters", "Outcome records dead-lettered", registry=r)
        self.overdue = Counter("hotline_overdue", "Overdue alerts raised (督办), by stage and level "
                               "(2: escalation)", ["stage", "level"], registry=r)
        self.overdue_items = Gauge("hotline_overdue_items", "Tickets overdue now: alerted and not "
                                   "yet answered by feedback", registry=r)
        self.alerts = Counter("hotline_alerts", "Alert deliveries by event and outcome",
                              ["event", "outcome"], registry=r)

    def record_synced(self, record: dict, seconds: float) -> None:
        origin, result = str(record.get("origin")), str(record.get("result"))
        self.transfers.labels(origin, str(record.get("target")), result).inc()
        if record.get("mode") != "none":
            self.attempts.labels(origin).inc()
            if result in ANSWERED:
                self.answered.labels(origin).inc()
        self.sync_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
