"""The one AMI action hotline-link needs: Redirect a bridged caller and agent together.

ARI cannot take hold of a channel that is not in a Stasis application, so a call bridged by
the centre's own Queue() reaches the application through the Asterisk Manager Interface:
``Redirect`` with ``ExtraChannel`` moves both parties of a bridge at once, without the bridge
hanging up the one left behind.

One logged-in connection per PBX is shared by every key press on the service's event loop: it
is opened on first use (so a PBX that is down at start costs nothing until a key needs it) and
opened again on the next action after it broke. Actions are matched to their responses by
``ActionID``, so concurrent key presses do not wait for each other; each action has a deadline,
so a PBX that stops answering costs a key press seconds, never a stuck session.

Why not a library: pyst2's ``Manager`` is thread based (two threads per connection), and
panoramisk, the asyncio AMI client, re-sends actions that were waiting when a connection broke
once it is back: a Redirect replayed seconds later would move a call the agent no longer means
(and its ``close()`` schedules a reconnect). Login, one action and its response are a few lines
of the protocol, written out below.
"""

from __future__ import annotations

import asyncio
import itertools
import re

from hotline_link.settings import AmiSettings

TIMEOUT = 3.0
# Where a queue call goes to be handed to the application (extensions.conf [hotline-adopt]).
ADOPT_CONTEXT = "hotline-adopt"
CHANNEL_RE = re.compile(r"^[A-Za-z0-9]+/[A-Za-z0-9_.@+:-]+(;[12])?$")


class AmiError(Exception):
    pass


def _encode(fields: dict[str, str]) -> bytes:
    lines = []
    for key, value in fields.items():
        value = str(value)
        # A CR or LF would end the header and start one of the caller's choosing.
        if "\r" in value or "\n" in value or "\r" in key or "\n" in key:
            raise AmiError(f"AMI field {key!r}: line breaks are not allowed")
        lines.append(f"{key}: {value}\r\n")
    return ("".join(lines) + "\r\n").encode()


class _Connection:
    """One TCP connection, logged in with events off; a reader task hands each response to the
    action that carries its ActionID."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.pending: dict[str, asyncio.Future] = {}
        self.ids = itertools.count(1)
        self.closed = False
        self.task = asyncio.create_task(self._read(), name="ami-reader")

    @classmethod
    async def open(cls, s: AmiSettings) -> _Connection:
        reader, writer = await asyncio.open_connection(s.host, s.port)
        conn = None
        try:
            banner = await reader.readline()
            if not banner.startswith(b"Asterisk Call Manager/"):
                raise AmiError(f"AMI {s.host}:{s.port}: not an Asterisk manager "
                               f"(greeting {banner[:40]!r})")
            conn = cls(reader, writer)
            response = await conn.request({"Action": "Login", "Username": s.username,
                                           "Secret": s.secret or "", "Events": "off"})
            if response.get("Response") != "Success":
                raise AmiError(f"AMI {s.host}:{s.port}: login refused: "
                               f"{response.get('Message')}")
            return conn
        except BaseException:
            # Cancelled by the deadline or refused: nothing half-open is left behind.
            if conn is not None:
                conn.close()
            writer.close()
            raise

    async def request(self, fields: dict[str, str]) -> dict[str, str]:
        if self.closed:
            raise ConnectionError("AMI connection closed")
        action_id = f"hl-{next(self.ids)}"
        future = asyncio.get_running_loop().create_future()
        self.pending[action_id] = future
        try:
            self.writer.write(_encode({**fields, "ActionID": action_id}))
            await self.writer.drain()
            return await future
        finally:
            self.pending.pop(action_id, None)

    async def _read(self) -> None:
        error: BaseException = ConnectionError("AMI connection closed by the PBX")
        try:
            message: dict[str, str] = {}
            while line := await self.reader.readline():
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                if text:
                    key, _, value = text.partition(":")
                    message[key.strip()] = value.strip()
                    continue
                waiting = self.pending.get(message.get("ActionID", ""))
                if waiting is not None and "Response" in message and not waiting.done():
                    waiting.set_result(message)
                message = {}
        except (OSError, asyncio.IncompleteReadError) as exc:
            error = exc
        finally:
            self.closed = True
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(error)
            self.writer.close()

    def close(self) -> None:
        self.closed = True
        self.task.cancel()
        self.writer.close()


class Ami:
    def __init__(self, settings: AmiSettings, *, timeout: float = TIMEOUT):
        self.settings = settings
        self.timeout = timeout
        self._conn: _Connection | None = None
        self._opening = asyncio.Lock()      # one connect at a time; actions never take it

    async def redirect_pair(self, channel: str, extra: str, context: str, exten: str,
                            extra_exten: str) -> None:
        """Send ``channel`` to context/exten and ``extra`` to context/extra_exten, priority 1."""
        await self._action({
            "Action": "Redirect", "Channel": channel, "Context": context, "Exten": exten,
            "Priority": "1", "ExtraChannel": extra, "ExtraContext": context,
            "ExtraExten": extra_exten, "ExtraPriority": "1",
        })

    async def hand_over(self, agent_channel: str, action: str) -> str:
        """What the FastAGI ``key`` command does, from outside the call: the agent's bridged
        caller, found by BRIDGEPEER, and the agent go to the application with ``action``.
        For a key whose AGI session is stuck on a stopped instance (transfer/stranded.py).
        Returns the caller's channel."""
        response = await self._action({"Action": "Getvar", "Channel": agent_channel,
                                       "Variable": "BRIDGEPEER"})
        peer = response.get("Value", "")
        if not CHANNEL_RE.match(peer):
            raise AmiError(f"no caller bridged with {agent_channel} (BRIDGEPEER={peer!r})")
        for name, value in (("HOTLINE_ADOPT", action), ("HOTLINE_PEER", peer)):
            await self._action({"Action": "Setvar", "Channel": agent_channel,
                                "Variable": name, "Value": value})
        await self.redirect_pair(agent_channel, peer, ADOPT_CONTEXT, "agent", "caller")
        return peer

    async def redirect(self, channel: str, context: str, exten: str, priority: int) -> None:
        """Send one channel to a dialplan location (a step left waiting on a stopped instance
        skipped: transfer/stranded.py)."""
        await self._action({"Action": "Redirect", "Channel": channel, "Context": context,
                            "Exten": exten, "Priority": str(priority)})

    async def ping(self) -> None:
        """Connect and log in if need be, and ping: what ``hotline-link doctor`` checks."""
        await self._action({"Action": "Ping"})

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _connection(self) -> _Connection:
        async with self._opening:
            if self._conn is None or self._conn.closed:
                self._conn = await _Connection.open(self.settings)
            return self._conn

    async def _action(self, action: dict[str, str]) -> dict[str, str]:
        s = self.settings
        conn = None
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._connection()
                response = await conn.request(action)
        except AmiError:
            raise
        except (OSError, TimeoutError) as exc:
            # A connection that timed out may be half dead: the next action opens a new one.
            if conn is not None:
                conn.close()
            what = "no answer in time" if isinstance(exc, TimeoutError) else str(exc)
            raise AmiError(f"AMI {s.host}:{s.port}: {what or type(exc).__name__}") from exc
        if response.get("Response") != "Success":
            raise AmiError(f"AMI {action['Action']} refused: {response.get('Message')}")
        return response
