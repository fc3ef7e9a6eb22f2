"""Scoped access to the sidecar's API and its audit trail (R11, R12): the scope matrix walked
with each kind of client against the running sidecar, another centre's records hidden, caller
numbers masked for clients that do not own them, tokens added and revoked without a restart,
every request in the audit trail, and the API over TLS."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import CONFIG, ROOT, _die_with_parent
from contracts.privacy import mask_number, masked
from sidecar import access
from sidecar.access import ROLES, Clients, Scope
from sidecar.api import ROUTES
from test_sidecar import publish, stack, synthetic_record  # noqa: F401  (fixture)

NUMBER = "13800138000"
# The kinds of client a centre has, as the README's scope matrix names them.
KINDS = {"ticket system 12345": ("ticket_system", "12345"),
         "desktop 12345": ("desktop", "12345"),
         "supervisor 12345": ("supervisor", "12345"),
         "supervisor (city)": ("supervisor", None),
         "monitoring": ("monitoring", None),
         "admin": ("admin", None)}


# --- without the lab ------------------------------------------------------------------------------

def test_a_token_works_from_the_next_request_after_add_and_stops_after_revoke(tmp_path):
    path = tmp_path / "clients.json"
    clients = Clients(path, "the-admin-token", ("12345", "110"))
    assert clients.authenticate("Bearer the-admin-token").role == "admin"
    token = access.add(path, "desk-1", "desktop", "12345", ("12345", "110"))
    client = clients.authenticate(f"Bearer {token}")
    assert (client.name, client.hotline, client.scopes) == ("desk-1", "12345", ROLES["desktop"][0])
    assert token not in path.read_text()                       # stored hashed
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    access.revoke(path, "desk-1")
    assert clients.authenticate(f"Bearer {token}") is None
    assert clients.authenticate("Bearer the-admin-token") is not None
    for header in ("", "Bearer", "Bearer ", "Basic " + token, token, "Bearer " + "x" * 600):
        assert clients.authenticate(header) is None


def test_a_broken_clients_file_refuses_its_clients_not_the_admin(tmp_path):
    path = tmp_path / "clients.json"
    clients = Clients(path, "admin-token", ("12345", "110"))
    token = access.add(path, "desk-1", "desktop", "12345", ("12345", "110"))
    assert clients.authenticate(f"Bearer {token}") is not None
    path.write_text(path.read_text()[:-20])                    # an editor saved half of it
    assert clients.authenticate(f"Bearer {token}") is None
    assert clients.authenticate("Bearer admin-token") is not None


@pytest.mark.parametrize("name, role, hotline, problem", [
    ("desk 1", "desktop", "12345", "name"),
    ("desk-1", "clerk", "12345", "role"),
    ("desk-1", "desktop", None, "--hotline"),
    ("desk-1", "desktop", "119", "hotline"),
    ("mon", "monitoring", "12345", "belongs to no hotline"),
])
def test_a_bad_client_is_refused_with_what_is_wrong(tmp_path, name, role, hotline, problem):
    with pytest.raises(access.ClientsFileError, match=re.escape(problem)):
        access.add(tmp_path / "c.json", name, role, hotline, ("12345", "110"))
    assert not (tmp_path / "c.json").exists()


def test_masking_reaches_nested_numbers_and_text_but_not_ids():
    body = {"caller_number": NUMBER, "transfer_id": "5" * 32, "agent": "12345-a1",
            "matter": {"summary": f"回电 {NUMBER}", "caller_name": "张三"},
            "events": [{"caller": "+86" + NUMBER}]}
    out = masked(body)
    assert out["caller_number"] == "138******00" and out["transfer_id"] == "5" * 32
    assert out["matter"]["summary"] == "回电 138******00" and out["agent"] == "12345-a1"
    assert out["matter"]["caller_name"] == "张*"
    assert out["events"][0]["caller"] == mask_number("+86" + NUMBER) != "+86" + NUMBER
    assert body["caller_number"] == NUMBER                     # a copy: the record is untouched


def test_the_readme_scope_matrix_is_the_code():
    """The README's table: one row per route, one column per kind of client, ✓ where allowed."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| Route | Scope |"):].split("\n\n")[0].splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[2:] == list(KINDS)
    rows = {}
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = (cells[1].strip("`"), cells[2:])
    assert set(rows) == {f"{m} {p}" for m, p, _, _ in ROUTES}
    for method, path, scope, _ in ROUTES:
        shown_scope, marks = rows[f"{method} {path}"]
        assert shown_scope == (str(scope) if scope else "none"), path
        assert marks == ["✓" if allowed(kind, scope) else "" for kind in KINDS], path


def test_the_api_contract_names_each_routes_scope_and_its_403():
    spec = json.loads((ROOT / "sidecar" / "openapi.json").read_text())
    assert {(m, p) for p, ops in spec["paths"].items() for m in ops} == {
        (m.lower(), p) for m, p, _, _ in ROUTES}
    for method, path, scope, _ in ROUTES:
        op = spec["paths"][path][method.lower()]
        if scope is None:
            assert op["security"] == [], path
        else:
            assert op["x-scope"] == scope and {"401", "403"} <= set(op["responses"]), path


def allowed(kind: str, scope: Scope | None) -> bool:
    scopes = ROLES[KINDS[kind][0]][0]
    return scope is None or Scope.ADMIN in scopes or scope in scopes


# --- against the running sidecar ------------------------------------------------------------------

def _cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "hotline_link.cli", "-c", str(CONFIG),
                          "api-client", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _request(base: str, method: str, path: str, token: str | None, body=None,
             context: ssl.SSLContext | None = None, raw: bool = False):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=5, context=context)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    with resp:
        if path.startswith("/events"):
            return resp.status, resp.readline()       # the stream opened: enough
        payload = resp.read()
        return resp.status, payload.decode() if raw else (json.loads(payload) if payload and
                                                          "json" in resp.headers.get(
                                                              "Content-Type", "") else payload)


@pytest.fixture(scope="module")
def api(stack):  # noqa: F811
    """Clients of every kind, added while the sidecar runs; the clients file removed after."""
    path = stack.settings.sidecar.clients_file
    path.unlink(missing_ok=True)
    host, port = stack.settings.sidecar.listen
    run = uuid.uuid4().hex[:6]
    tokens = {}
    for kind, (role, hotline) in KINDS.items():
        if role == "admin":
            tokens[kind] = stack.settings.sidecar.token
            continue
        name = f"{role.replace('_', '-')}-{hotline or 'city'}-{run}"
        tokens[kind] = _cli("add", name, "--role", role, *(["--hotline", hotline] if hotline
                                                            else []))
    tokens["desktop 110"] = _cli("add", f"desktop-110-{run}", "--role", "desktop",
                                 "--hotline", "110")
    tokens["ticket system 110"] = _cli("add", f"ticket-system-110-{run}", "--role",
                                       "ticket_system", "--hotline", "110")

    def call(kind: str | None, method: str, path: str, body=None, **kw):
        return _request(f"http://{host}:{port}", method, path, tokens.get(kind), body, **kw)

    call.tokens, call.run, call.stack = tokens, run, stack
    call.probe_path = lambda route: PROBES.get(route, route).split("?")[0]
    yield call
    path.unlink(missing_ok=True)


# A request per route that passes the scope check and then stops at its own validation or finds
# nothing: what each client may do is seen in 403 or not, and nothing real is changed.
PROBES = {
    "/transfers/{transfer_id}": "/transfers/nope",
    "/chains/{chain_id}": "/chains/nope",
    "/calls/{call_id}": "/calls/nope",
    "/calls/{call_id}/matter": "/calls/nope/matter",
    "/matters/{matter_id}": "/matters/nope",
    "/calls/{call_id}/transfer": "/calls/nope/transfer",
    "/calls/{call_id}/action": "/calls/nope/action",
    "/commands/{command_id}": "/commands/nope",
    "/events": "/events?types=alert",
    "/ui/{name}": "/ui/board.js",
}
BODIES = {
    ("POST", "/transfers"): {"channel": "phone"},
    ("POST", "/feedback"): {"platform": "12345", "ticket_id": "none", "status": "bogus"},
    ("POST", "/calls/{call_id}/transfer"): {"hotline": "12345", "mode": "bogus"},
    ("POST", "/calls/{call_id}/action"): {"hotline": "12345", "action": "bogus"},
    ("PUT", "/calls/{call_id}/matter"): {"hotline": "12345", "category": 5},
}


@pytest.mark.lab
def test_every_route_with_every_kind_of_client_as_the_scope_matrix_says(api):
    since = time.time() - 0.5
    made = []                     # (client kind or None, method, path, status) of each request
    for kind in [*KINDS, None]:
        for method, path, scope, _ in ROUTES:
            status, body = api(kind, method, PROBES.get(path, path), BODIES.get((method, path)))
            made.append((kind, method, path, status))
            if kind is None:
                assert status == (401 if scope else 200), path
            elif allowed(kind, scope):
                assert status not in (401, 403), (kind, method, path, status, body)
            else:
                assert status == 403, (kind, method, path, status, body)
                assert str(scope) in body["error"] and KINDS[kind][0] in body["error"]
    # Every one of them is in the audit trail (the open routes, /health, /openapi.json and the
    # pages, are not: they hold no record), with its client and status, in order.
    status, trail = api("admin", "GET", f"/audit?from={since}&limit=10000")
    audited = [(e["method"], e["path"], e["status"]) for e in trail["entries"]]
    open_routes = {(m, p) for m, p, scope, _ in ROUTES if scope is None}
    expected = [(m, api.probe_path(p), s) for k, m, p, s in made if (m, p) not in open_routes]
    assert audited == expected


@pytest.mark.lab
def test_a_centre_sees_its_own_records_and_city_wide_readers_see_numbers_masked(api):
    ours = synthetic_record(origin="12345", target="110")
    publish(api.stack.redis, [ours])
    tid = ours["transfer_id"]
    api.stack.wait(lambda: api("admin", "GET", f"/transfers/{tid}")[0] == 200, what="synced")
    for kind in ("desktop 12345", "desktop 110", "supervisor 12345", "ticket system 110"):
        status, one = api(kind, "GET", f"/transfers/{tid}")
        assert status == 200 and one["record"]["caller_number"] == NUMBER, kind
    status, one = api("supervisor (city)", "GET", f"/transfers/{tid}")
    assert status == 200 and one["record"]["caller_number"] == "138******00"
    status, body = api("supervisor (city)", "GET", f"/transfers?caller={NUMBER}")
    assert status == 403 and "masked" in body["error"]
    # An online request 12345 takes (R10) is no business of the 110 desk's clients.
    status, online = api("ticket system 12345", "POST", "/transfers", {
        "channel": "online", "request_id": f"req-{api.run}", "caller_number": NUMBER,
        "description": "小区路灯坏了很久没人修", "address": "人民路 1 号"})
    assert status == 201, online
    theirs = online["transfer_id"]
    status, body = api("desktop 110", "GET", f"/transfers/{theirs}")
    assert status == 403 and "reads its own centre's only" in body["error"]
    assert api("desktop 12345", "GET", f"/transfers/{theirs}")[0] == 200
    status, page = api("desktop 110", "GET", "/transfers?limit=10000")
    ids = {t["record"]["transfer_id"] for t in page["transfers"]}
    assert tid in ids and theirs not in ids
    assert all("110" in (t["record"]["origin"], t["record"]["target"]) for t in page["transfers"])


@pytest.mark.lab
def test_a_centre_acts_and_reports_on_its_own_calls_and_tickets_only(api):
    status, body = api("desktop 110", "POST", "/calls/nope/transfer", {"hotline": "12345"})
    assert status == 403 and "110's calls only" in body["error"]
    status, body = api("desktop 110", "PUT", "/calls/nope/matter",
                       {"hotline": "12345", "category": "municipal.streetlight"})
    assert status == 403 and "110's calls only" in body["error"]
    status, body = api("ticket system 110", "POST", "/feedback",
                       {"platform": "12345", "ticket_id": "SR-1", "status": "closed"})
    assert status == 403 and "110's tickets only" in body["error"]
    status, body = api("ticket system 110", "POST", "/feedback",
                       {"platform": "110", "ticket_id": "JD-none", "status": "closed"})
    assert status == 404                                     # its own: on to the ticket lookup
    status, body = api("desktop 110", "GET", "/events?hotline=12345")
    assert status == 403 and "110's events only" in body["error"]


@pytest.mark.lab
def test_csv_exports_page_through_the_whole_range(api):
    records = [synthetic_record(origin="110", target="12345") for _ in range(5)]
    start = time.time() - 1
    publish(api.stack.redis, records)
    for rec in records:
        api.stack.wait(lambda: api("admin", "GET", f"/transfers/{rec['transfer_id']}")[0] == 200,
                       what="synced")
    status, text = api("admin", "GET", f"/transfers?format=csv&limit=2&from={start}&origin=110",
                       raw=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert status == 200 and {r["transfer_id"] for r in rows} >= {
        rec["transfer_id"] for rec in records}
    status, page = api("admin", "GET", f"/transfers?limit=2&from={start}&origin=110")
    assert page["count"] == 2 and page["next"]                # JSON stays a page


@pytest.mark.lab
def test_a_revoked_token_is_refused_at_once_and_every_request_is_in_the_audit_trail(api):
    name = f"desk-revoked-{api.run}"
    token = _cli("add", name, "--role", "desktop", "--hotline", "12345")
    api.tokens["revoking"] = token
    since = time.time() - 1
    assert api("revoking", "GET", "/transfers?limit=1")[0] == 200
    assert api("revoking", "GET", "/audit")[0] == 403
    _cli("revoke", name)
    assert api("revoking", "GET", "/transfers?limit=1")[0] == 401
    status, trail = api("admin", "GET", f"/audit?client={name}&from={since}")
    assert status == 200
    assert [(e["method"], e["path"], e["status"], e["outcome"], e["scope"])
            for e in trail["entries"]] == [
        ("GET", "/transfers", 200, "ok", "records:read"),
        ("GET", "/audit", 403, "refused", "admin")]
    first = trail["entries"][0]
    assert first["role"] == "desktop" and first["hotline"] == "12345"
    assert first["remote"] == "127.0.0.1" and first["query"] == "limit=1"
    # The revoked token's attempt is there too, as an unknown token's.
    status, trail = api("admin", "GET", f"/audit?outcome=unauthenticated&from={since}")
    assert any(e["path"] == "/transfers" and e["query"] == "limit=1" for e in trail["entries"])
    # A caller's number given as a filter is kept masked in the trail.
    api("desktop 12345", "GET", f"/calls?caller={NUMBER}")
    status, trail = api("admin", "GET", f"/audit?path=/calls&from={since}")
    assert any(e["query"] == "caller=138******00" for e in trail["entries"])
    assert NUMBER not in json.dumps(trail)
    # The whole range as CSV, two entries a page.
    status, text = api("admin", "GET", f"/audit?format=csv&limit=2&from={since}", raw=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    status, every = api("admin", "GET", f"/audit?limit=10000&from={since}")
    assert [r["id"] for r in rows] == [e["id"] for e in every["entries"]][:len(rows)]
    assert len(rows) >= every["count"] - 2                   # the two audit reads came after


@pytest.mark.lab
def test_the_api_over_tls_with_a_certificate_from_config(api, tmp_path, monkeypatch):
    cert, key = tmp_path / "api.pem", tmp_path / "api.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    host, port = api.stack.settings.sidecar.listen
    port += 17
    env = {"HOTLINE_LINK__SIDECAR__LISTEN": f"{host}:{port}",
           "HOTLINE_LINK__SIDECAR__CONSUMER": f"sidecar-tls-{api.run}",
           "HOTLINE_LINK__SIDECAR__TLS__CERT_FILE": str(cert),
           "HOTLINE_LINK__SIDECAR__TLS__KEY_FILE": str(key)}
    log = tmp_path / "sidecar-tls.log"
    proc = subprocess.Popen([sys.executable, "-m", "hotline_link.cli", "-c", str(CONFIG),
                             "sidecar"], cwd=ROOT, env={**os.environ, **env},
                            stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    trusted = ssl.create_default_context(cafile=str(cert))
    base = f"https://{host}:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if _request(base, "GET", "/health", None, context=trusted)[0] == 200:
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        status, _ = _request(base, "GET", "/transfers?limit=1", api.tokens["desktop 12345"],
                             context=trusted)
        assert status == 200
        # Plain HTTP on the TLS port gets no answer; an untrusting client refuses the server.
        with pytest.raises(OSError):
            _request(f"http://{host}:{port}", "GET", "/health", None)
        with pytest.raises(ssl.SSLError):
            try:
                _request(base, "GET", "/health", None, context=ssl.create_default_context())
            except urllib.error.URLError as exc:
                raise exc.reason
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_config_names_a_bad_tls_table(tmp_path):
    from hotline_link import components
    from hotline_link.settings import ConfigError

    bad = tmp_path / "bad.toml"
    bad.write_text('[sidecar.tls]\ncert_file = "x.pem"\nkey = "y"\n')
    with pytest.raises(ConfigError) as exc:
        components.load(bad, secrets=False)
    assert any("sidecar.tls" in p for p in exc.value.problems)


def test_clients_file_and_cli_round_trip(tmp_path):
    path = Path(tmp_path / "c.json")
    access.add(path, "mon", "monitoring", None, ("12345", "110"))
    with pytest.raises(access.ClientsFileError, match="exists"):
        access.add(path, "mon", "monitoring", None, ("12345", "110"))
    access.revoke(path, "mon")
    access.add(path, "mon", "monitoring", None, ("12345", "110"))   # a new token, same name
    assert not access.read(path)["clients"]["mon"].get("revoked")
