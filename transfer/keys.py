"""Agent key collection, pure: digits in (with their arrival time), actions out.

A key is ``*`` or ``#`` followed by digits (config validates that no key is the start of another,
so a key is complete the moment its last digit arrives: no waiting). Digits more than
``inter_digit_timeout`` apart start over. A lead digit (``*``/``#``) always starts a new key, and
stray digits without one are dropped.

RFC 4733 digits sometimes arrive twice (a retransmitted end packet counted as a new digit). A
duplicate would not just add noise: ``*41`` read as ``*441`` completes ``*44``, a different
target. So the same digit again within ``duplicate_window`` of the previous one is dropped; no
one presses a key twice that fast, and phones space generated digits further apart. Times are
the PBX's event timestamps, not arrival times, which queueing can bunch together.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class KeyCollector:
    bindings: dict[str, str]            # key sequence -> action
    inter_digit_timeout: float
    duplicate_window: float = 0.15
    _buffer: dict[str, tuple[str, float]] = field(default_factory=dict)
    _last: dict[str, tuple[str, float]] = field(default_factory=dict)

    def feed(self, channel: str, digit: str, now: float) -> str | None:
        """The action completed by this digit on this channel, if any."""
        last = self._last.get(channel)
        self._last[channel] = (digit, now)
        if last is not None and last[0] == digit and now - last[1] < self.duplicate_window:
            return None
        if digit in "*#":
            self._buffer[channel] = (digit, now)
            return None
        held = self._buffer.get(channel)
        if held is None or now - held[1] > self.inter_digit_timeout:
            self._buffer.pop(channel, None)
            return None
        seq = held[0] + digit
        action = self.bindings.get(seq)
        if action is not None:
            self._buffer.pop(channel, None)
            return action
        if any(k.startswith(seq) for k in self.bindings):
            self._buffer[channel] = (seq, now)
        else:
            self._buffer.pop(channel, None)
        return None

    def forget(self, channel: str) -> None:
        self._buffer.pop(channel, None)
        self._last.pop(channel, None)
