"""Config fuzz, all of it: every key of the embedded defaults with every wrong kind of value (and
an unknown key in every table); each refused with a message naming the key. ``make test`` runs a
random sample of the same (``tests/test_config_fuzz.py``)."""

from __future__ import annotations

import pytest

from test_config_fuzz import ENV_PREFIX, LEAVES, WRONG, _kind, check

pytestmark = pytest.mark.chaos

CASES = [(".".join(path), lit) for path, value in LEAVES for lit in WRONG[_kind(value)]]
CASES += [(".".join(path) + ".bogus", "1") for path, value in LEAVES if isinstance(value, dict)]


@pytest.mark.parametrize("path, literal", CASES)
def test_wrong_value_is_refused_naming_its_key(path, literal):
    env = {ENV_PREFIX + "__".join(p.upper() for p in path.split(".")): literal}
    check(path, env)
