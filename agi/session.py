"""pyst2's AGI class, made fit for a threaded FastAGI server.

pyst2 was written for AGI scripts that Asterisk starts as processes: its constructor installs a
SIGHUP handler (only the main thread may do that, and over FastAGI a hang-up never arrives as a
signal) and it writes a trace of every exchange to stderr. Over FastAGI Asterisk reports a
hang-up by writing ``HANGUP`` on the socket, between results, unless the channel has
``AGISIGHUP=no``; then commands on the dead channel answer ``511``. Both, and a closed socket,
become pyst2's ``AGIHangup`` here, so a handler has one thing to catch.
"""

from __future__ import annotations

import io
import re

from asterisk.agi import AGI, AGIHangup, AGISIGHUPHangup, AGIUnknownError

# What may go into a variable value: AGI quotes values with '"' and ends commands at a newline.
_UNSAFE = re.compile(r'["\\\r\n\x00-\x1f]')


class _Lines:
    """The socket's lines with Asterisk's asynchronous ``HANGUP`` notices taken out."""

    def __init__(self, stream: io.TextIOBase):
        self.stream = stream
        self.hung_up = False

    def readline(self) -> str:
        while True:
            line = self.stream.readline()
            if not line:
                # EOF. (pyst2 itself would fail parsing the empty line with a ValueError.)
                raise AGIHangup("Asterisk closed the AGI connection")
            if line.strip() == "HANGUP":
                self.hung_up = True
                continue
            return line


class Session(AGI):
    def __init__(self, rfile: io.TextIOBase, wfile: io.TextIOBase):
        # Deliberately not AGI.__init__ (see the module docstring).
        self._lines = _Lines(rfile)
        self.stdin = self._lines
        self.stdout = wfile
        self.stderr = io.StringIO()     # pyst2's trace; replaced per command, never read
        self._got_sighup = False
        self.env: dict[str, str] = {}
        self._get_agi_env()

    @property
    def args(self) -> list[str]:
        count = sum(1 for k in self.env if k.startswith("agi_arg_"))
        return [self.env[f"agi_arg_{i}"] for i in range(1, count + 1)]

    def test_hangup(self) -> None:
        self.stderr = io.StringIO()
        if self._lines.hung_up:
            raise AGISIGHUPHangup("channel hung up (HANGUP from Asterisk)")

    def get_result(self, stdin=None):
        try:
            return super().get_result()
        except AGIUnknownError as exc:
            code = exc.args[0] if exc.args else None
            if code == 511:
                raise AGIHangup("channel hung up (511 on a dead channel)") from None
            raise

    def set(self, name: str, value: object) -> None:
        self.set_variable(name, _UNSAFE.sub("", str(value))[:1000])

    def get(self, name: str) -> str:
        return self.get_variable(name) or ""
