"""Configuration: layering, and every problem reported with the path of the key concerned."""

from __future__ import annotations

import copy
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from contracts.vocab import PlatformKind
from hotline_link import components, config, lab_settings, settings
from hotline_link.settings import ConfigError
from sidecar import settings as sidecar_settings

ROOT = Path(__file__).resolve().parent.parent


def problems(tmp_path: Path, text: str, env: dict | None = None) -> list[str]:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        components.load(path, env=env or {}, secrets=False)
    return info.value.problems


def test_defaults_load_and_describe_both_hotlines():
    s = components.load(env={}, secrets=False)
    assert set(s.hotlines) == {"12345", "110"}
    assert s.hotlines["12345"].targets["110"].dial == "PJSIP/110@trunk-110"
    assert s.keys.bindings()["*1"] == "transfer"
    assert s.sidecar.listen == ("127.0.0.1", 8480)


def test_file_then_environment_override_the_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[timeouts]\nagent_ring = 7\n[redis]\nurl = "redis://127.0.0.1:1/0"\n')
    s = components.load(path, secrets=False,
                      env={"HOTLINE_LINK__TIMEOUTS__AGENT_RING": "9.5",
                           "HOTLINE_LINK__HOTLINES__110__ARI__URL": "http://10.1.1.1:8088"})
    assert s.timeouts.agent_ring == 9.5
    assert s.redis_url == "redis://127.0.0.1:1/0"
    assert s.hotlines["110"].ari.url == "http://10.1.1.1:8088"
    assert s.sources[-1] == "environment"


def test_the_metrics_address_per_instance_or_none(tmp_path):
    assert components.load(env={}, secrets=False).http == ("127.0.0.1", 9473)
    path = tmp_path / "c.toml"
    path.write_text('[service]\nhttp = ""\n')
    assert components.load(path, env={}, secrets=False).http is None
    path.write_text('[service]\ninstance = "b"\n[ha.instances.a]\nhttp = "127.0.0.1:9001"\n'
                    '[ha.instances.b]\nhttp = "127.0.0.1:9002"\n')
    assert components.load(path, env={}, secrets=False).http == ("127.0.0.1", 9002)
    assert problems(tmp_path, '[service]\nhttp = "9473"\n') == [
        "service.http: expected host:port, got '9473'"]


def test_bad_url_names_the_field(tmp_path):
    assert problems(tmp_path, '[hotlines.110.ari]\nurl = "htp//x"\n') == [
        "hotlines.110.ari.url: not a URL (http/https): 'htp//x'"]


def test_every_problem_is_reported_at_once(tmp_path):
    found = problems(tmp_path, """
[keys]
accept = "X7"
three_way = "*12"
[timeouts]
agent_ring = -1
[hotlines.110]
agents = ["ok", "bad name"]
agnets = []
[hotlines.110.targets.12345]
dial = "PJSIP/12345@trunk,60,tT"
""")
    text = "\n".join(found)
    assert "keys.accept: 'X7' is not a key" in text
    assert ("keys.three_way: '*12' collides with keys.transfer ('*1'); "
            "one key may not be the start of another") in text
    assert "timeouts.agent_ring: -1 is out of range" in text
    assert "hotlines.110.agents[1]: 'bad name' is not an endpoint name" in text
    assert "hotlines.110.agnets: unknown key" in text
    assert "hotlines.110.targets.12345.dial: 'PJSIP/12345@trunk,60,tT' is not a dial string" in text


def test_dispute_signals_are_matter_codes(tmp_path):
    s = components.load(env={}, secrets=False)
    assert (s.sidecar.stability, s.sidecar.disputes) == (
        ("stability_leads",), ("consumer_rights", "market_supervision"))
    found = problems(tmp_path, '[sidecar.signals]\nstability = "stability_leads"\n'
                               'disputes = ["ok", "not a code"]\nescalate = []\n')
    assert found == [
        "sidecar.signals.escalate: unknown key",
        "sidecar.signals.stability: expected a list of matter codes, got 'stability_leads'",
        "sidecar.signals.disputes: expected a list of matter codes, got ['ok', 'not a code']"]


def test_secret_must_come_from_exactly_one_place(tmp_path):
    found = problems(tmp_path, '[hotlines.110.ari]\npassword_env = "X"\n')
    assert found == ["hotlines.110.ari: set exactly one of password_file, password_env"]


def test_secret_reference_of_the_wrong_type_is_refused_before_it_is_read(tmp_path):
    # Found by the config fuzz: with secrets not read yet (the lab's first start), a token_file
    # of 7 went through.
    assert problems(tmp_path, "[sidecar]\ntoken_file = 7\n") == [
        "sidecar.token_file: expected a non-empty string, got 7"]


def test_missing_secret_file_is_named(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[hotlines.110.ari]\npassword_file = "/nonexistent/pw"\n')
    with pytest.raises(ConfigError) as info:
        components.load(path, env={}, secrets=True)
    assert any(p.startswith("hotlines.110.ari.password_file: cannot read /nonexistent/pw")
               for p in info.value.problems)


def test_not_toml_is_refused(tmp_path):
    assert problems(tmp_path, "this is = not [toml")[0].startswith(f"{tmp_path}/c.toml: not valid TOML")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hotline_link.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_check_config_cli_names_the_field_and_fails(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[hotlines.110.ari]\nurl = "not a url"\n')
    result = _run("check-config", "--no-secrets", str(bad))
    assert result.returncode == 2
    assert "hotlines.110.ari.url: not a URL" in result.stderr


def test_service_refuses_to_start_on_an_invalid_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[keys]\ntransfer = \"1\"\n")
    result = _run("-c", str(bad), "run")
    assert result.returncode == 2
    assert "config error: keys.transfer: '1' is not a key" in result.stderr


def test_check_config_accepts_the_test_lab_file():
    result = _run("check-config", "--no-secrets", "tests/lab.toml")
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_target_keys_must_not_collide_with_agent_keys(tmp_path):
    found = problems(tmp_path, '[hotlines.12345.targets.119]\ndial = "PJSIP/119@t"\nkey = "*1"\n')
    assert found == ["hotlines.12345.targets.119.key: '*1' collides with keys.transfer ('*1')"]


def test_target_keys_become_transfer_actions_for_their_hotline():
    s = components.load(env={}, secrets=False)
    assert s.key_bindings("12345")["*41"] == "transfer:province"
    assert s.key_bindings("110")["*42"] == "transfer:119"
    assert "*41" not in s.key_bindings("110")
    # The emergency key escalates 12345 to 110; the 110 desk has nothing above it.
    assert (s.hotlines["12345"].emergency_to, s.hotlines["110"].emergency_to) == ("110", None)


def test_screening_target_and_ami_are_checked(tmp_path):
    found = problems(tmp_path, """
[hotlines.12345]
screen_to = "nowhere"
[hotlines.110]
emergency_to = "province"
[hotlines.110.ami]
host = "no-port"
username = "u"
[agi]
listen = "127.0.0.1"
""")
    assert found == [
        "hotlines.12345.screen_to: 'nowhere' is not a target of 12345",
        "hotlines.110.emergency_to: 'province' is not a target of 110",
        "hotlines.110.ami.host: expected host:port, got 'no-port'",
        "agi.listen: expected host:port, got '127.0.0.1'",
    ]


def _lab_config_with_its_own_secrets(tmp_path: Path) -> str:
    """tests/lab.toml with its secrets in tmp_path: rendering must not depend on a lab having
    generated them first."""
    secrets = tmp_path / "lab" / "secrets"
    secrets.mkdir(parents=True)
    for name in ("ari-12345", "ari-110", "ami-12345", "ami-110", "api-token", "webhook"):
        (secrets / name).write_text("render-test-secret\n")
    config = tmp_path / "lab.toml"
    config.write_text((ROOT / "tests" / "lab.toml").read_text().replace(
        "var/test-lab", str(tmp_path / "lab")))
    return str(config)


def test_dialplan_render_writes_keys_and_targets_from_the_config(tmp_path):
    result = _run("-c", _lab_config_with_its_own_secrets(tmp_path), "dialplan", "render",
                  "--out", str(tmp_path / "out"), "--hotline", "12345")
    assert result.returncode == 0, result.stderr
    features = (tmp_path / "out" / "12345" / "features.conf").read_text()
    assert "hotline_transfer => *1,self/callee,AGI(agi://${HOTLINE_AGI}/12345/key,transfer)" in features
    assert "hotline_transfer_province => *41," in features
    assert "*7" not in features                       # decision keys only exist in the app's bridge
    extensions = (tmp_path / "out" / "12345" / "extensions.conf").read_text()
    assert "Dial(PJSIP/110@trunk-110,60)" in extensions
    assert "HOTLINE_AGI=127.0.0.1:4574" in extensions
    assert "lab-" not in extensions and "from-citizens" not in extensions
    assert "member => PJSIP/12345-a1" in (tmp_path / "out" / "12345" / "queues.conf").read_text()
    assert oct((tmp_path / "out" / "12345" / "manager.conf").stat().st_mode & 0o777) == "0o600"
    assert not (tmp_path / "out" / "110").exists()


def test_dialplan_render_names_an_unknown_hotline(tmp_path):
    result = _run("-c", _lab_config_with_its_own_secrets(tmp_path), "dialplan", "render",
                  "--out", str(tmp_path / "out"), "--hotline", "119")
    assert result.returncode == 2
    assert "no such hotline: 119" in result.stderr


# --- one loader, a section per component ----------------------------------------------------------
def _parse_every_section(raw: dict) -> list[str]:
    """Every section parser over ``raw`` as the loader would run them; the problems found."""
    v = config.Validator(raw, ROOT, {}, secrets=False)
    root = v.table(raw, "(root)", set(config.OWNERS))
    for section in (settings.SECTION, *components.ALL):
        section.parse(v, root)
    return v.problems


DEFAULTS = tomllib.loads(settings.defaults_file().read_text())
LAB_DEFAULTS = tomllib.loads(lab_settings.defaults_file().read_text())
# Keys a parser reads only if given, because their absence is a setting of its own ("no key of its
# own", "no AMI", "no token", "shown by its id"); and secrets, given as one of _file or _env.
OPTIONAL = {"name", "key", "screen_to", "emergency_to", "ami", "token_file", "token_env",
            "instance", "instances", "announce", "surge", "menu_after", "menu", "callback_key",
            "callback_done", "answers", "emergency_seats", "emergency_seats_after", "whisper",
            "position_every", "tls", "role", "mapping"}
SECRET_PAIRS = (("password_file", "password_env"), ("secret_file", "secret_env"),
                ("token_file", "token_env"))


def _node(raw: dict, path: str):
    node = raw
    for part in path.split("."):
        name, _, index = part.partition("[")
        node = node[name]
        if index:
            node = node[int(index.rstrip("]"))]
    return node


def test_the_defaults_files_document_every_key_the_parsers_know():
    raw = config._merge(DEFAULTS, LAB_DEFAULTS)
    v = config.Validator(raw, ROOT, {}, secrets=False)
    root = v.table(raw, "(root)", set(config.OWNERS))
    for section in (settings.SECTION, *components.ALL):
        section.parse(v, root)
    assert v.problems == []
    undocumented = []
    for path, allowed in v.allowed.items():
        given = set(raw) if path == "(root)" else set(_node(raw, path))
        for pair in SECRET_PAIRS:
            if given & set(pair):
                allowed = allowed - set(pair)
        undocumented += [f"{path}.{k}" for k in sorted(allowed - given - OPTIONAL)]
    assert undocumented == []
    assert set(config.OWNERS) == {t for s in (settings.SECTION, *components.ALL) for t in s.tables}


def _scalar_leaves(node: dict, path: tuple[str, ...] = ()):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _scalar_leaves(value, path + (key,))
        elif not (isinstance(value, list) and value and isinstance(value[0], dict)):
            yield path + (key,)


def _without(raw: dict, path: tuple[str, ...]) -> dict:
    out = copy.deepcopy(raw)
    node = out
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return out


# [prompts] is a table of names an admin chooses, as the hotlines' targets are: none is required.
REQUIRED = [p for p in _scalar_leaves(config._merge(DEFAULTS, LAB_DEFAULTS))
            if p[-1] not in OPTIONAL and p[0] != "prompts" and "answers" not in p]


@pytest.mark.parametrize("path", REQUIRED, ids=".".join)
def test_no_parser_has_a_default_of_its_own(path):
    # The defaults live in the TOML only: take a key out of the defaults, and the parser that
    # reads it says it is missing instead of filling in a value of its own.
    found = _parse_every_section(_without(config._merge(DEFAULTS, LAB_DEFAULTS), path))
    dotted = ".".join(path)
    assert any(p.startswith(dotted) or dotted.startswith(p.split(":")[0]) for p in found), found


def test_a_production_config_has_no_lab_and_loads_cleanly(tmp_path):
    assert "lab" not in DEFAULTS
    s = components.load(env={}, secrets=False)
    assert s.lab is None and s.sidecar is not None
    assert not any(src.endswith("lab.toml") for src in s.sources)
    path = tmp_path / "prod.toml"
    path.write_text('[redis]\nurl = "redis://10.0.0.9:6379/0"\n')
    result = _run("check-config", "--no-secrets", str(path))
    assert result.returncode == 0, result.stderr
    assert "sections: service, sidecar;" in result.stdout and "[lab]" not in result.stdout


def test_a_lab_table_brings_in_the_lab_defaults_under_it(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[lab]\nredis_port = 7000\n")
    s = components.load(path, env={}, secrets=False)
    assert s.lab.redis_port == 7000
    assert s.lab.phone_host == "127.0.0.1" and set(s.lab.pbx) == {"12345", "110"}
    assert s.sources[1] == str(lab_settings.defaults_file()) and s.sources[2] == str(path)
    # The lab's commands want it even when nothing mentions it: `make run` on the defaults.
    assert components.load(env={}, secrets=False, lab=True).lab.redis_port == 6390


def test_a_lab_table_in_a_production_file_is_checked_and_named(tmp_path):
    assert problems(tmp_path, '[lab]\nredis_port = "x"\nrootfss = "/"\n') == [
        "lab.rootfss: unknown key", "lab.redis_port: expected an integer, got 'x'"]
    path = tmp_path / "prod.toml"
    path.write_text("[lab]\nredis_port = 7000\n")
    result = _run("check-config", "--no-secrets", str(path))
    assert result.returncode == 0, result.stderr
    assert "note: has a [lab] table: the test lab's section" in result.stdout


def test_each_process_reads_only_its_own_sections(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[sidecar]\nretry_for = "soon"\n[lab]\nredis_port = "x"\n')
    # The service neither reads nor refuses the sidecar's or the lab's section...
    s = settings.load(path, env={}, secrets=False)
    assert (s.sidecar, s.lab) == (None, None)
    # ...the sidecar reads its own and not the lab's...
    with pytest.raises(ConfigError) as info:
        sidecar_settings.load(path, env={}, secrets=False)
    assert info.value.problems == ["sidecar.retry_for: expected a number, got 'soon'"]
    # ...and a table that no component owns is refused by every one of them.
    path.write_text("[sidcar]\nretry_for = 1\n")
    with pytest.raises(ConfigError) as info:
        settings.load(path, env={}, secrets=False)
    assert info.value.problems == ["(root).sidcar: unknown key"]


def test_the_sidecar_process_loads_with_its_platforms_kinds():
    s = sidecar_settings.load(env={}, secrets=False)
    assert {pid: api.kind for pid, api in s.sidecar.platforms.items()} == {
        "12345": PlatformKind.OPEN311, "110": PlatformKind.EIDO}
    assert s.lab is None


def test_platform_kinds_and_roles_are_checked(tmp_path):
    assert problems(tmp_path, '[sidecar.platforms.110]\nkind = "json"\n') == [
        "sidecar.platforms.110.kind: 'json' is not one of open311, eido, http"]
    assert problems(tmp_path, '[sidecar.platforms.110]\nkind = "open311"\n') == [
        "sidecar.platforms: expected one platform of each role (service, dispatch), "
        "got service, service"]
    # A kind of its own says nothing of the role: an http platform names it.
    assert problems(tmp_path, '[sidecar.platforms.110]\nkind = "http"\n'
                    'mapping = "config/ticket-mappings/zammad.toml"\n') == [
        "sidecar.platforms.110.role: missing (a platform of kind http names its role: "
        "service or dispatch)"]
    assert problems(tmp_path, '[sidecar.platforms.110]\nkind = "http"\nrole = "dispatch"\n') == [
        "sidecar.platforms.110.mapping: missing"]
    assert problems(tmp_path, '[sidecar.platforms.110]\nmapping = "x.toml"\n') == [
        "sidecar.platforms.110.mapping: only a platform of kind http has a mapping"]
    ok = tmp_path / "ok.toml"
    ok.write_text('[sidecar.platforms.110]\nkind = "http"\nrole = "dispatch"\n'
                  'mapping = "config/ticket-mappings/zammad.toml"\n')
    api = components.load(ok, env={}, secrets=False).sidecar.platforms["110"]
    assert (api.kind, api.role, api.mapping.source.name) == ("http", "dispatch", "zammad.toml")


def test_a_mapping_file_is_checked_whole_and_its_problems_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('''
[create]
method = "DELETE"
path = "api/tickets"
id = "id"
body = { title = "{titel}", who = "{caller.number}", at = "{ticket_id}" }
[get]
method = "GET"
path = "/t/{ticket_id}"
body = { x = 1 }
status = "/state"
[notes]
''')
    cfg = (f'[sidecar.platforms.110]\nkind = "http"\nrole = "dispatch"\n'
           f'mapping = "{bad}"\n')
    [problem] = problems(tmp_path, cfg)
    assert problem.startswith(f"sidecar.platforms.110.mapping: {bad}: ")
    for part in ("notes: unknown table", "create.method: 'DELETE' is not one of",
                 "create.path: expected a path from the platform's url, starting with /",
                 "create: unknown fields {ticket_id}, {titel} (known: ",
                 "get.body: a GET has no body", "create.id: expected a JSON Pointer",
                 "get.closed: expected a non-empty list"):
        assert part in problem, part
    missing = '[sidecar.platforms.110]\nkind = "http"\nrole = "dispatch"\nmapping = "nope.toml"\n'
    [problem] = problems(tmp_path, missing)
    assert problem.endswith("nope.toml: cannot read: No such file or directory")


def test_rest_transport_is_auto_by_default_and_only_auto_or_http(tmp_path):
    s = components.load(env={}, secrets=False)
    assert {h.ari.rest_transport for h in s.hotlines.values()} == {"auto"}
    s = components.load(env={"HOTLINE_LINK__HOTLINES__110__ARI__REST_TRANSPORT": "http"},
                        secrets=False)
    assert s.hotlines["110"].ari.rest_transport == "http"
    assert problems(tmp_path, '[hotlines.12345.ari]\nrest_transport = "websocket"\n') == [
        "hotlines.12345.ari.rest_transport: 'websocket' is not one of auto, http"]


def test_redis_sentinel_keys_are_checked_and_named(tmp_path):
    found = problems(tmp_path, """
[redis]
sentinels = ["127.0.0.1:26379", "nohost", "127.0.0.1:26379", 5]
master_name = "bad name"
durable_replicas = 9
durable_wait_ms = 5000
""")
    assert found == [
        "redis.sentinels[1]: expected host:port, got 'nohost'",
        "redis.sentinels[3]: expected host:port, got 5",
        "redis.sentinels: the same sentinel listed twice",
        "redis.master_name: 'bad name' is not a Sentinel master name",
        "redis.durable_replicas: 9 is out of range [0, 5]",
        "redis.durable_wait_ms: 5000 is out of range [1, 400]",
    ]


def test_durable_replicas_need_sentinel(tmp_path):
    assert problems(tmp_path, "[redis]\ndurable_replicas = 1\n") == [
        "redis.durable_replicas: 1 needs redis.sentinels (without Sentinel no replica ever "
        "takes over; use 0)"]


def test_redis_is_plain_by_default_and_sentinel_when_listed(tmp_path):
    rs = components.load(env={}, secrets=False).redis
    assert (rs.sentinels, rs.durable_replicas, rs.durable.replicas) == ((), 0, 0)
    path = tmp_path / "c.toml"
    path.write_text('[redis]\nsentinels = ["10.0.0.1:26379", "10.0.0.2:26379"]\n'
                    'master_name = "hl"\ndurable_replicas = 1\ndurable_wait_ms = 50\n')
    rs = components.load(path, env={}, secrets=False).redis
    assert rs.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379))
    assert (rs.master_name, rs.durable.replicas, rs.durable.wait_ms) == ("hl", 1, 50)


def test_a_sentinel_lab_needs_three_loopback_sentinels(tmp_path):
    found = problems(tmp_path, """
[redis]
sentinels = ["127.0.0.1:26379", "10.0.0.2:26379"]
[lab]
redis_sentinel = true
""")
    assert found == ["lab.redis_sentinel: needs redis.sentinels with at least three "
                     "127.x.x.x:port entries (the lab starts a sentinel on each; quorum 2)"]
    found = problems(tmp_path, """
[redis]
sentinels = ["127.0.0.1:26379", "10.0.0.2:26379", "127.0.0.1:6390"]
[lab]
redis_sentinel = "yes"
""")
    assert found == ["lab.redis_sentinel: expected true or false, got 'yes'"]
    found = problems(tmp_path, """
[redis]
sentinels = ["127.0.0.1:26379", "10.0.0.2:26379", "127.0.0.1:6390"]
[lab]
redis_sentinel = true
""")
    assert found == [
        "lab.redis_sentinel: redis.sentinels[1] '10.0.0.2:26379' is not a 127.x.x.x:port the "
        "lab can run a sentinel on",
        "lab.redis_sentinel: redis.sentinels[2] '127.0.0.1:6390' takes the port of a lab Redis"]


def test_an_announcement_must_name_a_prompt(tmp_path):
    assert problems(tmp_path, '[hotlines.12345.targets.110]\nannounce = "to-nowhere"\n') == [
        "hotlines.12345.targets.110.announce: 'to-nowhere' is not one of [prompts]"]
    assert problems(tmp_path, '[prompts]\n"Bad Name" = "x"\n') == [
        "prompts.Bad Name: not a valid prompt name (lower-case letters, digits, '-' and '_')"]


def test_the_surge_menu_names_prompts_and_one_digit_keys(tmp_path):
    assert problems(tmp_path, '[hotlines.12345.surge]\nmenu = "nope"\ncallback_key = "1"\n'
                              '[hotlines.12345.surge.answers]\n12 = "faq-hours"\n') == [
        "hotlines.12345.surge.menu: 'nope' is not one of [prompts]",
        "hotlines.12345.surge.answers: '12' is not a key (one digit 0-9)",
        "hotlines.12345.surge.callback_key: '1' is also an answer's key"]
