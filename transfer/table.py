"""What both machines' transition tables are made of (``machine.py``: a transfer;
``delivery.py``: a call on its way to an agent).

A row names the handler of one (state, event) pair and the states the handler may leave its
subject in. The tables are data, so the tests enumerate them; ``step`` in each machine checks
every move against its row, so a handler that strays is a bug found at once, not a state no
table describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True, slots=True)
class Row:
    handler: Callable[..., list]
    next: frozenset


def row(handler: Callable[..., list], *next_states) -> Row:
    return Row(handler, frozenset(next_states))


class IllegalTransition(Exception):
    """A handler left its subject in a state its row does not declare: a bug in that machine."""


def check_move(row: Row, before, event, after) -> None:
    if after not in row.next:
        raise IllegalTransition(f"{before} --{event}--> {after}: not in the table")
