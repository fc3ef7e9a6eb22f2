"""The FastAGI session adapter over a socket, with Asterisk's side of the wire protocol played by
the test: how hang-ups arrive (a ``HANGUP`` line, ``511`` with AGISIGHUP=no, a closed socket)."""

from __future__ import annotations

import socket
import threading

import pytest
from asterisk.agi import AGIHangup, AGISIGHUPHangup

from agi.session import Session

ENV = "agi_network: yes\nagi_network_script: 12345/route\nagi_channel: Local/1@x-0001;2\n" \
      "agi_arg_1: 噪音扰民\nagi_arg_2: at night\n\n"


def session_with(replies: list[str]):
    """A Session whose peer sends ENV and then one reply per command received."""
    ours, theirs = socket.socketpair()
    seen: list[str] = []

    def asterisk() -> None:
        with theirs, theirs.makefile("rw", encoding="utf-8", newline="\n") as f:
            f.write(ENV)
            f.flush()
            for reply in replies:
                line = f.readline()
                if not line:
                    return
                seen.append(line.strip())
                if reply is None:
                    return              # Asterisk closes the connection
                f.write(reply)
                f.flush()

    thread = threading.Thread(target=asterisk, daemon=True)
    thread.start()
    stream = ours.makefile("rw", encoding="utf-8", newline="\n")
    return Session(stream, stream), seen


def test_env_and_arguments_are_read():
    agi, _ = session_with([])
    assert agi.env["agi_network_script"] == "12345/route"
    assert agi.args == ["噪音扰民", "at night"]


def test_set_strips_what_would_break_the_protocol():
    agi, seen = session_with(["200 result=1\n"])
    agi.set("HOTLINE_ROUTE_REASON", 'a "quoted"\nline\\')
    assert seen == ['SET VARIABLE "HOTLINE_ROUTE_REASON" "a quotedline"']


def test_hangup_line_before_a_result_ends_the_session_at_the_next_command():
    agi, _ = session_with(["HANGUP\n200 result=1\n", "200 result=1\n"])
    agi.set("A", "1")                    # the result after HANGUP is still read correctly
    with pytest.raises(AGISIGHUPHangup):
        agi.set("B", "2")


def test_dead_channel_with_agisighup_no_is_a_hangup():
    agi, _ = session_with(["511 Command Not Permitted on a dead channel or intercept routine\n"])
    with pytest.raises(AGIHangup):
        agi.set("A", "1")


def test_closed_connection_is_a_hangup():
    agi, _ = session_with([None])
    with pytest.raises(AGIHangup):
        agi.get("BRIDGEPEER")
