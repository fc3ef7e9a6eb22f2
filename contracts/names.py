"""Every Redis name hotline-link uses, and what each stream carries.

Writers and readers of a stream take its name, payload field and trim length from here, so two
writers of one stream cannot disagree (as the ARI app's untrimmed and the sidecar's trimmed alert
writes once did).

Payloads: ``config/stream-payloads.schema.json`` (alert, command, command result, live event) and
``config/outcome-record.schema.json`` (outcome record), ``config/call-record.schema.json`` (call
record).

    stream                      writer(s)                   reader(s)               field
    hotline:outcomes            service (outcome sink)      sidecar (group sidecar) record
    hotline:calls               service (call sink)         sidecar (group sidecar) record
    hotline:outcomes:dead       sidecar                     admins                  record
    hotline:alerts              service, sidecar            sidecar (sidecar-alerts), SSE  alert
    hotline:commands:<hotline>  sidecar API                 service (one per hotline) command
    hotline:events              service                     sidecar SSE             event
    hotline:audit               sidecar API                 admins (GET /audit)     entry
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Stream:
    """A stream: its key (``{}`` where a hotline id goes), the field holding the JSON payload,
    and the approximate length it is trimmed to on every append. None: never trimmed, because
    losing an unread entry loses a record; a trimmed stream keeps far more than its consumers
    ever lag behind (the alerts outbox: 100,000 against a few per transfer)."""
    key: str
    field: str
    maxlen: int | None = None

    def of(self, hotline: str) -> str:
        return self.key.format(hotline)

    def trim(self) -> dict:
        """The trim arguments for ``XADD``."""
        return {"maxlen": self.maxlen, "approximate": True} if self.maxlen else {}

    def entry(self, payload: dict, **extra: str) -> dict:
        """The fields of an entry carrying ``payload`` (``extra``: plain fields beside it)."""
        return {**extra, self.field: json.dumps(payload, ensure_ascii=False)}

    def payload(self, fields: dict) -> dict:
        """The payload of an entry as redis-py returns it (bytes keys); KeyError or ValueError
        when the entry does not carry one."""
        return json.loads(fields[self.field.encode()])


# --- streams --------------------------------------------------------------------------------------
OUTCOMES = Stream("hotline:outcomes", "record")
OUTCOMES_DEAD = Stream("hotline:outcomes:dead", "record")
CALLS = Stream("hotline:calls", "record")
ALERTS = Stream("hotline:alerts", "alert", maxlen=100_000)
COMMANDS = Stream("hotline:commands:{}", "command", maxlen=10_000)
EVENTS = Stream("hotline:events", "event", maxlen=10_000)
# Every API request: appended only, never edited; trimmed by age (sidecar.audit_retention_days).
AUDIT = Stream("hotline:audit", "entry")

# --- consumer groups ------------------------------------------------------------------------------
OUTCOMES_GROUP = "sidecar"
CALLS_GROUP = "sidecar"
ALERTS_GROUP = "sidecar-alerts"
GROUPS = {OUTCOMES.key: OUTCOMES_GROUP, CALLS.key: CALLS_GROUP, ALERTS.key: ALERTS_GROUP}

# --- keys shared across processes -----------------------------------------------------------------
COMMAND_RESULTS = "hotline:command-results"     # hash: command id -> JSON result (service writes)
OUTCOME_CLAIM = "hotline:outcome:{}"            # per transfer id: its record reached the stream
CALL_CLAIM = "hotline:call:{}"                  # per call id: its record reached the stream

# Hot standby: which service instance acts (string: its name, with the lease's TTL), and what
# each instance last said of itself (hash: name -> JSON {state, pid, host, since, seen}). The
# sidecar's /health and `hotline-link status` read them.
SERVICE_LEASE = "hotline:service:lease"
SERVICE_INSTANCES = "hotline:service:instances"

# --- the service's own keys -----------------------------------------------------------------------
TRANSFER_STATE = "hotline:transfer:{}"          # per transfer id: the machine's state (JSON)
ACTIVE_TRANSFERS = "hotline:transfers:{}"       # set per origin hotline: active transfer ids
CALL_LOCK = "hotline:lock:call:{}"              # per call id: one transfer at a time
# The matter a desktop tagged a call with (JSON, config/matter.schema.json), under the call's id
# (what the service reads when the call is transferred) and under the matter's own id (what the
# receiving side's screen-pop and tickets look it up by): the same JSON, written together.
CALL_MATTER = "hotline:matter:call:{}"
MATTER = "hotline:matter:{}"
MATTER_TTL = 7 * 24 * 3600                      # far longer than any call it is tagged on
TRANSFER_ANSWERED = "hotline:transfer-answered"  # hash: transfer id -> far agent who answered
# Hash per hotline: call id -> what is known of a live call (JSON), so that a call that ends while
# no instance watches (killed, taking over) still gets its record from the next one.
OPEN_CALLS = "hotline:calls:open:{}"
# Hash per hotline: the active instance's live gauges (transfer.delivery.Gauges' fields, the
# transfers it started still going and how many of them are three-way, and "at", epoch seconds), written every LIVE_PERIOD s and expiring after LIVE_TTL: absent when no instance
# is acting. The sidecar's /kpis shows them beside the windows.
LIVE = "hotline:live:{}"
LIVE_PERIOD, LIVE_TTL = 1.0, 5

# --- the sidecar's own keys -----------------------------------------------------------------------
TICKETS = "hotline:sidecar:tickets"             # hash: work order id -> ticket id
TRAIL = "hotline:sidecar:trail:{}"              # list per transfer: its events, oldest first
RECORD = "hotline:sidecar:record:{}"            # per transfer: the record and its tickets (JSON)
INDEX = "hotline:sidecar:index"                 # sorted set: transfer id by time (for queries)
LINKS = "hotline:sidecar:links"                 # hash: "<platform>:<ticket>" -> "<platform>:<ticket>"
DEADLINES = "hotline:sidecar:deadlines"         # sorted set: "<platform>|<ticket>|<stage>|<level>"
OVERDUE = "hotline:sidecar:overdue"             # set: "<platform>|<ticket>|<stage>" alerted
TICKET_TRANSFER = "hotline:sidecar:ticket-transfer"  # hash: "<platform>|<ticket>" -> transfer
CALL_RECORD = "hotline:sidecar:call:{}"         # per call id: its call record (JSON)
CHAIN = "hotline:sidecar:chain:{}"              # per chain id (R6): hash hop -> transfer id
CALL_INDEX = "hotline:sidecar:calls"            # sorted set: call id by arrival (for queries)
# Per "<hotline>:<hour since the epoch>": hash "<minute since the epoch>:<counter>" -> count, the
# KPI counters of the calls that arrived then (transfer/kpi.py); kept a little over a day.
CALL_STATS = "hotline:sidecar:callstats:{}"
# Per "<platform>:<work order id>": the sidecar is about to create that ticket (W3C time), written
# before the request on an API with no idempotency key (Open311, most http mappings): a later
# attempt looks for the ticket first (sidecar/adapters.py). Kept far longer than any retry.
TICKET_SENT = "hotline:sidecar:ticket:sent:{}"
TICKET_SENT_TTL = 7 * 24 * 3600
# Per hour since the epoch: hash matter category -> records of that hour (every transfer and
# online request, counted once when it is first recorded): the early warning's counts (R13).
MATTER_STATS = "hotline:sidecar:matterstats:{}"
MATTER_STATS_TTL = 9 * 24 * 3600
ALERTED = "hotline:sidecar:alerted:{}"          # per "<alert kind>:<hotline>": raised lately (TTL)
