"""The lab itself: descriptor schema, recorded processes, and a clean `down`."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import jsonschema
import pytest

from conftest import CONFIG, ROOT, cli

pytestmark = pytest.mark.lab


def test_descriptor_matches_the_documented_schema(lab):
    schema = json.loads((ROOT / "config" / "lab-descriptor.schema.json").read_text())
    jsonschema.validate(lab.descriptor, schema)
    roles = sorted((a["role"], a["hotline"]) for a in lab.descriptor["accounts"])
    assert roles == [("agent", "110"), ("agent", "110"), ("agent", "12345"), ("agent", "12345"),
                     ("citizen", "110"), ("citizen", "12345"), ("overflow", "110"),
                     ("overflow", "12345")]
    dials = {a["hotline"]: a["dials"] for a in lab.descriptor["accounts"] if a["role"] == "citizen"}
    assert dials == {"12345": "12345", "110": "110"}


def test_descriptor_and_secrets_are_private(lab):
    desc = Path(lab.descriptor["state_dir"]).with_suffix(".json")
    assert desc.stat().st_mode & 0o077 == 0
    for pbx in lab.descriptor["pbx"].values():
        assert Path(pbx["ari"]["password_file"]).stat().st_mode & 0o077 == 0


def test_every_service_binds_to_loopback_only(lab):
    for pbx in lab.descriptor["pbx"].values():
        assert pbx["sip"]["host"].startswith("127.")
        assert pbx["ari"]["url"].startswith("http://127.")
    assert lab.descriptor["redis"]["url"].startswith("redis://127.")
    assert lab.descriptor["phone_host"].startswith("127.")
    assert all(url.startswith("http://127.") for url in lab.descriptor["services"].values())


def test_recorded_processes_are_running_and_pbx_mounts_are_private(lab):
    state = json.loads((Path(lab.descriptor["state_dir"]) / "state.json").read_text())
    names = {p["name"] for p in state["processes"]}
    redis = lab.descriptor["redis"]
    # Under Sentinel: two data nodes and a sentinel per redis.sentinels entry, all recorded.
    redis_names = (set(redis["processes"]) if "sentinels" in redis else {"redis"})
    if "sentinels" in redis:
        assert redis_names == {"redis-a", "redis-b",
                               *(f"sentinel-{i}" for i in range(1, len(redis["sentinels"]) + 1))}
        assert {p["name"]: p["pid"] for p in state["processes"] if p["name"] in redis_names} == {
            name: p["pid"] for name, p in redis["processes"].items()}
    assert names == {*redis_names, "asterisk-12345", "asterisk-110", "standin-12345",
                     "standin-110"}
    for p in state["processes"]:
        assert Path(f"/proc/{p['pid']}").exists()
    # The chroot's bind mounts live in each PBX's own mount namespace, not on the host.
    assert "hotline-pbx" not in Path("/proc/self/mounts").read_text()
    for p in state["processes"]:
        if p["name"].startswith("asterisk-"):
            assert "hotline-pbx" in Path(f"/proc/{p['pid']}/mounts").read_text(), p["name"]



def test_a_crashed_pbx_leaves_a_core_with_a_backtrace(phones, lab):
    from conftest import pbx_back
    from hotline_link import components, lab as lab_mod

    handle = lab_mod.Lab(components.load(CONFIG, secrets=False))
    started = time.time()
    [pbx] = [p for p in handle._load_state() if p.name == "asterisk-110"]
    os.kill(pbx.pid, signal.SIGSEGV)
    # The core file appears as the kernel starts writing it; the process is gone once it is done.
    phones.lib.wait_for(lambda: not pbx.alive() and handle.cores(since=started), 60,
                        "the crashed PBX's core, written")
    [core] = handle.cores(since=started)
    assert core.parent.parent.name == "pbx-110"
    status = cli("lab", "status", check=False)
    assert status.returncode == 1 and "asterisk-110: DEAD" in status.stdout
    assert f"core of a crashed PBX: {core}" in status.stdout
    cores = cli("lab", "cores")
    assert str(core) in cores.stdout and "SIGSEGV" in cores.stdout, cores.stdout
    # Started again, the PBX keeps the core under its time; removed here, where the crash was
    # made on purpose, so that the session does not count it as a real one.
    cli("lab", "start", "asterisk-110")
    [kept] = handle.cores(since=started)
    assert kept.name.startswith("core-") and kept.parent == core.parent
    kept.unlink()
    assert cli("lab", "status").returncode == 0
    # Back as before for the tests after this one: a PBX that crashed may have lost its
    # registrations (what it had not yet written to its database), so its phones register again.
    for phone in phones.all():
        if phone.account["hotline"] == "110":
            phone.reregister()
    pbx_back(phones, lab, "110")
