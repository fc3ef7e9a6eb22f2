"""One FastAGI session on the service's event loop, with pyst2 doing the AGI protocol.

pyst2's ``AGI`` was written for AGI scripts that Asterisk starts as processes, on blocking
stdin/stdout: its constructor installs a SIGHUP handler and it writes a trace of every exchange
to stderr. What it does well is the protocol itself: reading the environment, quoting and
formatting a command, and parsing a result line (codes 200/510/520, ``result=`` and its data).
So the socket is read and written here with asyncio, and every complete exchange goes through
pyst2's own methods over in-memory buffers: a session is non-blocking without a second copy of
the protocol.

Over FastAGI Asterisk reports a hang-up by writing ``HANGUP`` on the socket, between results,
unless the channel has ``AGISIGHUP=no``; then commands on the dead channel answer ``511``. Both,
and a closed socket, become pyst2's ``AGIHangup`` here, so a command has one thing to catch.
"""

from __future__ import annotations

import asyncio
import io
import re

from asterisk.agi import AGI, AGIHangup, AGIResultHangup, AGISIGHUPHangup, AGIUnknownError

# What may go into a variable value: AGI quotes values with '"' and ends commands at a newline.
_UNSAFE = re.compile(r'["\\\r\n\x00-\x1f]')
MAX_LINE = 64 * 1024


class _Codec(AGI):
    """pyst2's protocol methods over buffers the session fills and empties."""

    def __init__(self):
        # Deliberately not AGI.__init__ (see the module docstring).
        self.stdin = io.StringIO()
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()      # pyst2's trace; replaced per exchange, never read
        self._got_sighup = False
        self.env: dict[str, str] = {}

    def feed(self, text: str) -> None:
        self.stdin = io.StringIO(text)
        self.stderr = io.StringIO()

    def take_output(self) -> str:
        out, self.stdout = self.stdout.getvalue(), io.StringIO()
        return out


class Session:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.codec = _Codec()
        self.hung_up = False

    @property
    def env(self) -> dict[str, str]:
        return self.codec.env

    @property
    def args(self) -> list[str]:
        count = sum(1 for k in self.env if k.startswith("agi_arg_"))
        return [self.env[f"agi_arg_{i}"] for i in range(1, count + 1)]

    async def start(self) -> Session:
        """Read the ``agi_*`` environment Asterisk sends first."""
        lines = []
        while True:
            line = await self._line()
            lines.append(line)
            if not line.strip():
                break
        self.codec.feed("".join(lines))
        self.codec._get_agi_env()
        return self

    async def execute(self, command: str, *args) -> dict:
        if self.hung_up:
            raise AGISIGHUPHangup("channel hung up (HANGUP from Asterisk)")
        self.codec.send_command(command, *args)
        self.writer.write(self.codec.take_output().encode())
        await self.writer.drain()
        first = await self._line()
        lines = [first]
        if first.startswith("520-"):         # usage text, ended by a "520 ..." line
            while not lines[-1].startswith("520 "):
                lines.append(await self._line())
        self.codec.feed("".join(lines))
        try:
            return self.codec.get_result()
        except AGIUnknownError as exc:
            code = exc.args[0] if exc.args else None
            if code == 511:
                raise AGIHangup("channel hung up (511 on a dead channel)") from None
            raise

    async def set(self, name: str, value: object) -> None:
        value = _UNSAFE.sub("", str(value))[:1000]
        await self.execute("SET VARIABLE", self.codec._quote(name), self.codec._quote(value))

    async def get(self, name: str) -> str:
        return await self._value("GET VARIABLE", name)

    async def get_full(self, expression: str) -> str:
        return await self._value("GET FULL VARIABLE", expression)

    async def _value(self, command: str, name: str) -> str:
        try:
            return (await self.execute(command, self.codec._quote(name)))["result"][1]
        except AGIResultHangup:
            # pyst2 reads a value of "hangup" as a hang-up; its get_variable returns it as is.
            return "hangup"

    async def _line(self) -> str:
        """The next line from Asterisk, its asynchronous ``HANGUP`` notices taken out."""
        while True:
            try:
                raw = await self.reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                raise AGIHangup("Asterisk closed the AGI connection") from None
            except asyncio.LimitOverrunError:
                raise AGIHangup(f"AGI line longer than {MAX_LINE} bytes") from None
            line = raw.decode("utf-8", "replace")
            if line.strip() == "HANGUP":
                self.hung_up = True
                continue
            return line
