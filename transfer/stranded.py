"""Callers and agents left waiting on an instance that stopped: what a takeover does for them.

A FastAGI session has no deadline in Asterisk. A channel whose AGI reached an instance that then
froze (SIGSTOP, a hung host: the kernel still accepts the connection) waits there until it
thaws, or forever. Two kinds, both seen in the ARI channel list (``dialplan.app_name`` "AGI", or
"TryExec" around it, with the request's address in ``app_data``):

* a dialplan step (``screen``, ``route``): every such step is written so that the next priority
  handles "no answer" (its fallback when the service is down), so the channel is sent there;
* a queue call's key (``key,<action>``, features.conf) on the agent's bridged channel, which
  meanwhile hears nothing (measured: the agent is out of the bridge's audio while the AGI runs).
  Skipping to a "next priority" would take the agent out of the call; instead the new active
  instance does what the key asked, as the AGI server would have: hands the pair over.

The new active instance lists the channels a settle time apart; a channel found in the same
request on another instance's address both times is stranded. One merely passing through is
not; one waiting on this instance's own address is being served.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# agi://<host:port>/<hotline>/<command>[,<argument>]
AGI_REQUEST = re.compile(r"agi://([^/,)\s]+)/[^/,)\s]+/([a-z]+)(?:,([^,)\s]*))?")
SKIPPABLE = frozenset({"screen", "route"})
KEY = "key"


@dataclass(frozen=True)
class Step:
    """Where a channel waits: its dialplan location and the AGI request it waits on."""
    channel_id: str
    name: str
    context: str
    exten: str
    priority: int
    address: str
    command: str
    argument: str

    def next(self) -> tuple[str, str, int]:
        return self.context, self.exten, self.priority + 1


def waiting_on_agi(channels: list[dict], own: str) -> dict[str, Step]:
    """The channels (ARI channel objects) in an AGI request of ours (a skippable step or a key)
    to an address other than ``own``, by channel id."""
    out = {}
    for ch in channels:
        plan = ch.get("dialplan") or {}
        if plan.get("app_name") not in ("AGI", "TryExec"):
            continue
        match = AGI_REQUEST.search(plan.get("app_data") or "")
        if match is None or match.group(1) == own:
            continue
        command = match.group(2)
        if command not in SKIPPABLE and not (command == KEY and match.group(3)):
            continue
        try:
            priority = int(plan["priority"])
        except (KeyError, TypeError, ValueError):
            continue
        out[ch["id"]] = Step(ch["id"], ch.get("name", ""), plan.get("context", ""),
                             plan.get("exten", ""), priority, match.group(1), command,
                             match.group(3) or "")
    return out


def stranded(before: dict[str, Step], now: dict[str, Step]) -> list[Step]:
    """Channels in the same request at both listings."""
    return [step for cid, step in now.items() if before.get(cid) == step]
