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
        # Call-centre KPIs (transfer/kpi.py), read from Redis at each scrape: the same figures
        # whichever sidecar is asked.
        self.calls = Gauge("hotline_calls", "Calls that arrived in the window, by hotline, window "
                           "and kind (offered, answered, abandoned, abandoned_short, transferred, "
                           "refused, lost)", ["hotline", "window", "kind"], registry=r)
        self.call_rates = Gauge("hotline_call_rate", "Answer rate (接通率), the same without short "
                                "abandons, and service level, by hotline and window",
                                ["hotline", "window", "rate"], registry=r)
        self.call_wait = Gauge("hotline_call_wait_seconds", "Answered callers' wait: mean, and the "
                               "histogram bound 90 % stayed under", ["hotline", "window", "stat"],
                               registry=r)

    RATES = ("answer_rate", "answer_rate_excluding_short_abandons", "service_level")
    KINDS = ("offered", "answered", "abandoned", "abandoned_short", "transferred", "refused",
             "lost", "callback")

    def set_kpis(self, hotline: str, windows: dict[str, dict]) -> None:
        for window, k in windows.items():
            for kind in self.KINDS:
                self.calls.labels(hotline, window, kind).set(k[kind])
            for rate in self.RATES:
                self.call_rates.labels(hotline, window, rate).set(
                    k[rate] if k[rate] is not None else float("nan"))
            for stat, key in (("mean", "mean_wait_s"), ("p90_at_most", "p90_wait_s_at_most")):
                self.call_wait.labels(hotline, window, stat).set(
                    k[key] if k[key] is not None else float("nan"))

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
