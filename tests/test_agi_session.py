"""The FastAGI session adapter over a loopback socket, with Asterisk's side of the wire protocol
played by the test: how hang-ups arrive (a ``HANGUP`` line, ``511`` with AGISIGHUP=no, a closed
socket), results that pyst2 parses, and many sessions served at once on one event loop."""

from __future__ import annotations

import asyncio

import pytest
from asterisk.agi import AGIHangup, AGISIGHUPHangup, AGIUsageError

from agi.session import Session

ENV = "agi_network: yes\nagi_network_script: 12345/route\nagi_channel: Local/1@x-0001;2\n" \
      "agi_arg_1: 噪音扰民\nagi_arg_2: at night\n\n"


async def exchange(replies: list[str | None], body):
    """Run ``body(session)`` against a peer that sends ENV, then one reply per command it reads
    (None: it closes the connection instead). Returns (body's result, commands the peer saw)."""
    seen: list[str] = []

    async def asterisk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(ENV.encode())
        for reply in replies:
            line = await reader.readline()
            if not line:
                break
            seen.append(line.decode().strip())
            if reply is None:
                break
            writer.write(reply.encode())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(asterisk, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        result = await body(await Session(reader, writer).start())
    finally:
        writer.close()
        server.close()
    return result, seen


def run(replies, body):
    return asyncio.run(exchange(replies, body))


def test_env_and_arguments_are_read():
    async def body(agi):
        return agi.env["agi_network_script"], agi.args
    (script, args), _ = run([], body)
    assert script == "12345/route"
    assert args == ["噪音扰民", "at night"]


def test_set_strips_what_would_break_the_protocol():
    async def body(agi):
        await agi.set("HOTLINE_ROUTE_REASON", 'a "quoted"\nline\\')
    _, seen = run(["200 result=1\n"], body)
    assert seen == ['SET VARIABLE "HOTLINE_ROUTE_REASON" "a quotedline"']


def test_values_are_parsed_by_pyst2():
    async def body(agi):
        return await agi.get("BRIDGEPEER"), await agi.get("UNSET"), await agi.get_full("${X}")
    values, seen = run(["200 result=1 (PJSIP/caller-00000001)\n", "200 result=0\n",
                        "200 result=1 (1733226000.42)\n"], body)
    assert values == ("PJSIP/caller-00000001", "", "1733226000.42")
    assert seen == ['GET VARIABLE "BRIDGEPEER"', 'GET VARIABLE "UNSET"',
                    'GET FULL VARIABLE "${X}"']


def test_usage_error_reads_every_line_of_the_usage_text():
    async def body(agi):
        with pytest.raises(AGIUsageError) as err:
            await agi.execute("GET VARIABLE")
        # The session is still in step: the next result is this command's own.
        return str(err.value), await agi.get("A")
    (usage, value), _ = run(["520-Invalid command syntax.  Proper usage follows:\n"
                             "Usage: GET VARIABLE <variablename>\n520 End of proper usage.\n",
                             "200 result=1 (after)\n"], body)
    assert "Usage: GET VARIABLE" in usage
    assert value == "after"


def test_hangup_line_before_a_result_ends_the_session_at_the_next_command():
    async def body(agi):
        await agi.set("A", "1")           # the result after HANGUP is still read correctly
        with pytest.raises(AGISIGHUPHangup):
            await agi.set("B", "2")
    _, seen = run(["HANGUP\n200 result=1\n", "200 result=1\n"], body)
    assert seen == ['SET VARIABLE "A" "1"']   # nothing more was sent on the dead channel


def test_dead_channel_with_agisighup_no_is_a_hangup():
    async def body(agi):
        with pytest.raises(AGIHangup):
            await agi.set("A", "1")
    run(["511 Command Not Permitted on a dead channel or intercept routine\n"], body)


def test_closed_connection_is_a_hangup():
    async def body(agi):
        with pytest.raises(AGIHangup):
            await agi.get("BRIDGEPEER")
    run([None], body)


def test_sessions_interleave_on_one_loop():
    """Fifty sessions whose peer answers only after every session has sent its command: with
    one session at a time (a blocking server on the loop) this would never finish."""
    count = 50

    async def main():
        arrived = 0
        all_sent = asyncio.Event()

        async def asterisk(reader, writer):
            nonlocal arrived
            writer.write(ENV.encode())
            await reader.readline()
            arrived += 1
            if arrived == count:
                all_sent.set()
            await all_sent.wait()
            writer.write(b"200 result=1 (v)\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(asterisk, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def one():
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                return await (await Session(reader, writer).start()).get("V")
            finally:
                writer.close()
        try:
            async with asyncio.timeout(10):
                return await asyncio.gather(*(one() for _ in range(count)))
        finally:
            server.close()

    assert asyncio.run(main()) == ["v"] * count
