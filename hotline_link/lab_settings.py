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


def defaults_file() -> Path:
    return project_home() / "config" / "lab.toml"


def parse(v: Validator, root: Mapping[str, Any]) -> LabSettings:
    node = v.table(root.get("lab", {}), "lab", {"state_dir", "rootfs", "redis_port",
                                                "phone_host", "pbx", "redis_appendfsync"})
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
    return LabSettings(
        state_dir=v.path(state_dir) if state_dir else None,
        rootfs=Path(rootfs) if rootfs else None,
        redis_port=v.number(node, "lab", "redis_port", 1024, 65535, integer=True),
        phone_host=v.string(node, "lab", "phone_host"),
        pbx=pbx,
        redis_appendfsync=v.choice(node, "lab", "redis_appendfsync", APPENDFSYNC),
    )


SECTION = Section("lab", ("lab",), parse, defaults_file)
