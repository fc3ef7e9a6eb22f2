"""Config fuzz (hypothesis): any key of the embedded defaults (the product's and the lab's) given a
value of the wrong kind, or a key that does not exist, is refused with a message that names the
key.

The mutations come in through the environment layer (``HOTLINE_LINK__A__B=<TOML value>``), the
same way an operator's override would. ``make test`` runs a fixed, derandomized sample; the fault
suite (``make chaos``) runs many more.
"""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from hotline_link import components
from hotline_link import lab_settings
from hotline_link.settings import ConfigError, ENV_PREFIX, defaults_file

DEFAULTS = tomllib.loads(defaults_file().read_text())
LAB_DEFAULTS = tomllib.loads(lab_settings.defaults_file().read_text())


def _leaves(node: dict, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    out = []
    for key, value in node.items():
        if isinstance(value, dict):
            out.append((path + (key,), value))
            out += _leaves(value, path + (key,))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            continue            # arrays of tables ([[sidecar.webhooks]]): no env path into them
        else:
            out.append((path + (key,), value))
    return out


LEAVES = _leaves(DEFAULTS) + _leaves(LAB_DEFAULTS)

# For each kind of default, TOML literals that can never be a valid value of that kind.
WRONG = {
    str: ["7", "[1, 2]", "{ x = 1 }", "true"],
    bool: ['"yes"', "1", "[]"],
    int: ['"fast"', "[1]", "{ x = 1 }", "true"],
    float: ['"fast"', "[1.0]", "{ x = 1 }", "true"],
    list: ["5", "{ x = 1 }", "true"],
    dict: ["5", '"table"', "[1]"],
}


def _kind(value: object) -> type:
    return next(k for k in (bool, int, float, str, list, dict) if isinstance(value, k))


@st.composite
def mutations(draw) -> tuple[str, dict[str, str]]:
    path, value = draw(st.sampled_from(LEAVES))
    if isinstance(value, dict) and draw(st.booleans()):
        key = draw(st.from_regex(r"\A[a-z]{3,12}\Z"))
        if key in value:
            key += "_x"
        # [prompts] takes any name an admin chooses, with its text: a new name is refused only
        # for a value that is not text (found when the sample first drew it).
        literal = draw(st.sampled_from(["1", "[1]"] if path == ("prompts",) else
                                       ["1", '"x"', "[1]"]))
        path = path + (key,)
    else:
        literal = draw(st.sampled_from(WRONG[_kind(value)]))
    return ".".join(path), {ENV_PREFIX + "__".join(p.upper() for p in path): literal}


def check(path: str, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        components.load(env=env, secrets=False, lab=True)
    named = [p for p in info.value.problems if p.startswith(path) or path.startswith(p.split(":")[0])]
    assert named, f"{env} refused, but no problem names {path}: {info.value.problems}"


@hsettings(max_examples=300, derandomize=True, deadline=None,
           suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_every_wrong_value_is_refused_naming_its_key(mutation):
    check(*mutation)
