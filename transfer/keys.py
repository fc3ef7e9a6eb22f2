"""Agent key collection, pure: digits in (with their arrival time), actions out.

A key is ``*`` or ``#`` followed by digits (config validates that no key is the start of another,
so a key is complete the moment its last digit arrives: no waiting). Digits more than
``inter_digit_timeout`` apart start over. A lead digit (``*``/``#``) always starts a new key, and
stray digits without one are dropped, which also absorbs the duplicated digits RFC 4733 events
sometimes produce.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class KeyCollector:
    bindings: dict[str, str]            # key sequence -> action
    inter_digit_timeout: float
    _buffer: dict[str, tuple[str, float]] = field(default_factory=dict)

    def feed(self, channel: str, digit: str, now: float) -> str | None:
        """The action completed by this digit on this channel, if any."""
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
