"""The words the processes exchange. Each is a ``StrEnum``, so a member is the plain string that
goes on the wire (``Result.ACCEPTED == "accepted"``) and a JSON encoder writes it as such.

``config/outcome-record.schema.json`` and ``sidecar/openapi.json`` list the same values for
outside readers; ``tests/test_contracts.py`` fails when they drift apart.
"""

from __future__ import annotations

from enum import StrEnum


class Platform(StrEnum):
    """The two hotlines this product joins (their configuration ids)."""
    GOV = "12345"         # government-service hotline
    POLICE = "110"        # police desk


class PlatformKind(StrEnum):
    """The ticket API a platform speaks (``[sidecar.platforms.<id>] kind``): the sidecar chooses
    how to talk to a platform by its kind, never by its id."""
    OPEN311 = "open311"   # Open311 GeoReport v2 work orders: the 12345 centre's system
    EIDO = "eido"         # NENA EIDO style incidents: the 110 dispatch system
    HTTP = "http"         # any other REST ticket API, by a mapping file (sidecar/mapping.py)


class PlatformRole(StrEnum):
    """What a platform is to the sidecar (``[sidecar.platforms.<id>] role``), whatever its
    ticket API: the dispatch side owns emergencies (R4) and is called in on disputes (R15)."""
    SERVICE = "service"   # the government-service hotline's work orders (12345)
    DISPATCH = "dispatch"  # the police desk's incidents (110)


class Result(StrEnum):
    """How one transfer attempt ended: the outcome record's ``result``."""
    ACCEPTED = "accepted"
    FALLBACK_BUSY = "fallback_busy"
    FALLBACK_NO_ANSWER = "fallback_no_answer"
    FALLBACK_REJECTED = "fallback_rejected"
    FALLBACK_UNREACHABLE = "fallback_unreachable"
    CALLER_ABANDONED = "caller_abandoned"
    CANCELLED = "cancelled"
    OUT_OF_SCOPE_GUIDED = "out_of_scope_guided"
    ACCEPTED_BY_ORIGIN = "accepted_by_origin"
    ACCEPTED_BY_TARGET = "accepted_by_target"
    UNDECIDED_FIRST_RECEIVER = "undecided_first_receiver"


FALLBACK_RESULTS = frozenset(r for r in Result if r.startswith("fallback_"))


class Disposition(StrEnum):
    """How a call offered to a hotline ended: the call record's ``disposition``."""
    ANSWERED = "answered"          # an agent of this hotline talked with the caller
    TRANSFERRED = "transferred"    # the caller was left with the other platform
    ABANDONED = "abandoned"        # the caller hung up before any agent answered
    REFUSED = "refused"            # a transferred caller refused as busy: no agent was free
    LOST = "lost"                  # ended before any agent answered, not by the caller
    CALLBACK = "callback"          # the caller asked to be called back (a surge's menu)


class EndedBy(StrEnum):
    """Whose hang-up ended a call (the call record's ``ended_by``)."""
    CALLER = "caller"
    AGENT = "agent"                # this hotline's agent, the caller's last party
    REMOTE = "remote"              # the other platform's party, the caller's last one
    SERVICE = "service"            # hotline-link ended it (refused, failed, cleaned up)
    UNSEEN = "unseen"              # it ended while no instance of the service was watching
    PBX = "pbx"                    # the PBX's dialplan ended it (a queue call's timeout)


class DeliveredBy(StrEnum):
    """Who gave the call to an agent (the call record's ``delivered_by``)."""
    APPLICATION = "application"    # hotline-link's ARI application
    QUEUE = "queue"                # the centre's own Queue() (hotline-inbound-queue)
    DEGRADED = "degraded"          # the queue, because the application was not connected


class Mode(StrEnum):
    BLIND = "blind"                # one-key transfer (R1)
    THREE_WAY = "three_way"        # caller + both agents (R2)
    EMERGENCY = "emergency"        # three-way to 110 with an immediate alert (R4)
    NONE = "none"                  # an out-of-scope marker: nothing was transferred (R5)


# What the CTI API may ask for (``POST /calls/{id}/transfer``, the command stream).
API_MODES = (Mode.BLIND, Mode.THREE_WAY)
CONFERENCE_MODES = (Mode.THREE_WAY, Mode.EMERGENCY)


class Trigger(StrEnum):
    DTMF = "dtmf"                  # an agent's key
    REFER = "refer"                # the phone's transfer button
    API = "api"                    # the CTI API
    SCREEN = "screen"              # the dialplan's screening flagged the caller (R9)


class DecisionAction(StrEnum):
    """What an agent decides in a three-way call (keys ``*7 *8 *9 *0`` by default)."""
    ACCEPT = "accept"              # my platform takes it
    LEAVE = "leave"                # I leave: the other platform takes it
    UNDECIDED = "undecided"        # the first receiver takes it and syncs (R3)
    CANCEL = "cancel"              # the other agent leaves: back to two parties


# What an agent's key does (the ``[keys]`` of the configuration name them), and so what an agent
# screen's buttons may ask for (``POST /calls/{id}/action``, the command stream); plus
# ``transfer:<target>`` for a target with a key of its own.
KEY_ACTIONS = ("transfer", "three_way", "emergency", "out_of_scope", *map(str, DecisionAction))


class Side(StrEnum):
    ORIGIN = "origin"
    TARGET = "target"
    CALLER = "caller"


class DecidedHow(StrEnum):
    KEY = "key"
    HANGUP = "hangup"


class AlertKind(StrEnum):
    """Alerts (stream ``hotline:alerts``, then the webhooks that subscribe to them)."""
    EMERGENCY = "emergency"                  # service: a *3 started (R4)
    TRANSFER_FAILED = "transfer_failed"      # sidecar: a fallback_* outcome
    DEAD_LETTER = "dead_letter"              # sidecar: a record it gave up on
    OVERDUE = "overdue"                      # sidecar: a ticket past its supervision deadline
    DISPUTE = "dispute"                      # sidecar: R15 dispute signals
    STABILITY_LEAD = "stability_lead"        # sidecar: R15 stability matters
    REDIS_DATA_LOST = "redis_data_lost"      # service or sidecar: a stream or group vanished
    ANSWER_RATE_LOW = "answer_rate_low"      # sidecar: a hotline's 1 h answer rate under target
    SURGE = "surge"                          # service: a hotline's surge plan started or ended
    EARLY_WARNING = "early_warning"          # sidecar: a matter category above its baseline (R13)


class LiveEvent(StrEnum):
    """Live events for agent desktops (stream ``hotline:events`` and the SSE ``GET /events``)."""
    AGENT_RINGING = "agent_ringing"          # the screen-pop on the receiving agent
    AGENT_CONNECTED = "agent_connected"
    COMMAND_RESULT = "command_result"
    OUTCOME = "outcome"                      # an outcome record, as the sidecar reads it
    ALERT = "alert"                          # an alert, as the sidecar reads it
    # A hotline's live gauges (waiting callers, agents...) when they change: no cursor, the
    # newest is all that matters (contracts.names.LIVE).
    HOTLINE_STATUS = "hotline_status"
    # A call of the hotline ended (its agent, if any, is free of it): the agent screen clears.
    CALL_ENDED = "call_ended"


class CommandStatus(StrEnum):
    STARTED = "started"            # a transfer began (its id)
    DONE = "done"                  # an action that starts no transfer of this side was taken
    REFUSED = "refused"            # nothing was done (the reason)


class Unsure(StrEnum):
    """Why a recommendation names no platform (the IVR's ``HOTLINE_ROUTE_UNSURE``, the API's
    ``unsure``), for a dialplan or a desktop to act on; the reason says it in words. The
    dialplan's own ``unavailable`` (the recommender did not answer) is no answer of its."""
    NO_INPUT = "no_input"                  # neither a code nor a description
    UNKNOWN_CODE = "unknown_code"          # a matter code the catalog does not have
    NO_MATCH = "no_match"                  # no model, and no catalog term in the words
    UNKNOWN_WORDS = "unknown_words"        # the words are mostly unknown to the model
    NOTHING_TO_PLACE = "nothing_to_place"  # "喂喂你好", "我要投诉": nothing to place yet
    PLATFORM = "platform"                  # the model is not sure which platform
    LANGUAGE = "language"                  # not Chinese, half the words or fewer known to
    #                                        it: an emergency cannot be ruled out (an
    #                                        interpreter's queue), whatever else made it unsure
