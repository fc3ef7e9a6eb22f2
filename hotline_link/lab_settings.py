"""The lab's configuration: the [lab] section (``hotline_link.lab``), parsed into ``LabSettings``.

The lab is the test and demo topology, not the product: its section and its defaults live in
``config/lab.toml``, which the loader layers in only when the lab is in use (``hotline-link lab``,
``hotline-link run --lab``, or a file or environment that has a [lab] table, as the test, chaos
and bench lab files do). A production config has no [lab].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Section, Validator, project_home

APPENDFSYNC = ("always", "everysec", "no", "off")


@dataclass(frozen=True)
class LabPbx:
    sip_host: str
    sip_port: int
    rtp_ports: tuple[int, int]


@dataclass(frozen=True)
class LabSettings:
    state_dir: Path
    rootfs: Path
    redis_port: int
    phone_host: str
    pbx: dict[str, LabPbx]
    redis_appendfsync: str                 # always | everysec | no | off (no AOF at all)
    # Redis as a primary, a replica and a sentinel per entry of [redis] sentinels
    # (hotline_link.lab_redis) instead of one Redis; the replica listens on redis_replica_port.
    redis_sentinel: bool = False
    redis_replica_port: int | None = None


def defaults_file() -> Path:
    return project_home() / "config" / "lab.toml"


def parse(v: Validator, root: Mapping[str, Any]) -> LabSettings:
    node = v.table(root.get("lab", {}), "lab", {"state_dir", "rootfs", "redis_port",
                                                "phone_host", "pbx", "redis_appendfsync",
                                                "redis_sentinel", "redis_replica_port"})
    hotlines = v.hotline_ids(root)
    pbx = {}
    for hid, p in (v.subtable(node, "lab", "pbx", None) or {}).items():
        path = f"lab.pbx.{hid}"
        if hid not in hotlines:
            v.problems.append(f"{path}: no hotline {hid!r} is configured")
        p = v.table(p, path, {"sip", "rtp_ports"})
        sip = v.host_port(p, path, "sip")
        rtp = v.get(p, path, "rtp_ports")
        if (not isinstance(rtp, list) or len(rtp) != 2
                or not all(isinstance(x, int) and 1024 <= x < 65536 for x in rtp)
                or rtp[0] >= rtp[1]):
            if rtp is not None:
                v.problems.append(f"{path}.rtp_ports: expected [low, high] ports, got {rtp!r}")
            rtp = None
        if sip and rtp:
            pbx[hid] = LabPbx(sip_host=sip[0], sip_port=sip[1], rtp_ports=(rtp[0], rtp[1]))
    state_dir = v.string(node, "lab", "state_dir")
    rootfs = v.string(node, "lab", "rootfs")
    sentinel = v.get(node, "lab", "redis_sentinel")
    if not isinstance(sentinel, bool):
        if sentinel is not None:
            v.problems.append(f"lab.redis_sentinel: expected true or false, got {sentinel!r}")
        sentinel = False
    redis_port = v.number(node, "lab", "redis_port", 1024, 65535, integer=True)
    replica_port = v.number(node, "lab", "redis_replica_port", 1024, 65535, integer=True)
    if sentinel:
        _sentinel_lab(v, root, redis_port, replica_port)
    return LabSettings(
        state_dir=v.path(state_dir) if state_dir else None,
        rootfs=Path(rootfs) if rootfs else None,
        redis_port=redis_port,
        phone_host=v.string(node, "lab", "phone_host"),
        pbx=pbx,
        redis_appendfsync=v.choice(node, "lab", "redis_appendfsync", APPENDFSYNC),
        redis_sentinel=sentinel,
        redis_replica_port=replica_port,
    )


def _sentinel_lab(v: Validator, root: Mapping[str, Any], primary: int | None,
                  replica: int | None) -> None:
    """The lab starts a sentinel on each of [redis] sentinels: they must be on this machine
    (loopback), three at least (quorum 2 of 3: one sentinel down still fails over), and on other
    ports than the two Redis."""
    redis = root.get("redis")
    listed = redis.get("sentinels") if isinstance(redis, Mapping) else None
    if not isinstance(listed, list) or len(listed) < 3:
        v.problems.append("lab.redis_sentinel: needs redis.sentinels with at least three "
                          "127.x.x.x:port entries (the lab starts a sentinel on each; quorum 2)")
        return
    ports = {primary, replica}
    if primary is not None and primary == replica:
        v.problems.append("lab.redis_replica_port: the same port as lab.redis_port")
    for i, item in enumerate(listed):
        host, _, port = item.rpartition(":") if isinstance(item, str) else ("", "", "")
        if not host.startswith("127.") or not port.isdigit():
            v.problems.append(f"lab.redis_sentinel: redis.sentinels[{i}] {item!r} is not a "
                              "127.x.x.x:port the lab can run a sentinel on")
        elif int(port) in ports:
            v.problems.append(f"lab.redis_sentinel: redis.sentinels[{i}] {item!r} takes the "
                              "port of a lab Redis")


SECTION = Section("lab", ("lab",), parse, defaults_file)
