"""Benchmark: what the codecs the PBX templates allow cost the PBX (issue 18).

    python -m bench --only codecs        (about 3 minutes)

``dialplan/pjsip.conf.j2`` allows G.711 A-law first, then mu-law, and nothing else. Two mixes of
``LEVEL`` concurrent caller <-> agent calls at the 12345 PBX, with RTP both ways for the whole call
(SIPp streams a G.711 file on every leg, 50 packets a second each way):
- **A-law <-> A-law**: a caller and an agent on China's codec: Asterisk relays, it translates
  nothing (what the templates make of a Chinese network);
- **mu-law caller <-> A-law agent**: a phone that has only mu-law: every frame is translated,
  both ways (the price of still allowing mu-law).
Measured in the steady middle of each mix: the 12345 PBX's CPU in cores, per call, and the
difference, which is what translation costs. A sample call's formats are read from the PBX
(native, read, write), so each mix is what it claims to be.
"""

from __future__ import annotations

import audioop
import math
import tempfile
import time
from pathlib import Path

from bench.load import Sipp, _cli, _pbx_sip, free_udp_port, start_on, variant_up
from bench.procs import CpuMeter, lab_processes

LEVEL = 40
FILL_S = 10.0          # calls placed at 10/s, then a pause before measuring
MEASURE_S = 30.0
# (caller's codec, agent's codec), each twice, alternating: the spread is the noise.
MIXES = (("PCMA", "PCMA"), ("PCMU", "PCMA")) * 2
FORMAT = {"PCMA": "alaw", "PCMU": "ulaw"}


def g711_file(workdir: Path, codec: str, seconds: int = 10) -> Path:
    """A tone with a slow warble (not silence: no codec gets an easy frame) as raw G.711."""
    rate = 8000
    pcm = b"".join(int(6000 * math.sin(2 * math.pi * (700 + 300 * math.sin(i / 4000)) * i / rate))
                   .to_bytes(2, "little", signed=True) for i in range(rate * seconds))
    raw = audioop.lin2alaw(pcm, 2) if codec == "PCMA" else audioop.lin2ulaw(pcm, 2)
    path = workdir / f"tone.{codec.lower()}"
    path.write_bytes(raw)
    return path


def one_mix(lab, sipp: Sipp, host: str, remote: str, caller_codec: str, agent_codec: str,
            audio: dict[str, Path]) -> dict:
    from conftest import Ari

    ari: Ari = lab.ari["12345"]
    agents = [a for a in lab.accounts if a["role"] == "agent" and a["hotline"] == "12345"]
    port = free_udp_port(host)
    sipp.register(remote, host, port, agents, f"agents-{agent_codec}-{caller_codec}")
    hold_ms = int((FILL_S + MEASURE_S + 30) * 1000)
    agent = sipp.start(sipp.argv(remote, host, port, "-sf", str(sipp.scenario(
        "agent", hold_ms, codec=agent_codec, audio=audio[agent_codec]))))
    citizen = lab.account("citizen", "12345")
    csv = sipp.accounts_csv([citizen], f"citizen-{caller_codec}")
    caller = sipp.start(sipp.argv(remote, host, free_udp_port(host), "-sf", str(sipp.scenario(
        "caller", hold_ms, codec=caller_codec, audio=audio[caller_codec])),
        "-inf", str(csv), "-s", "12345", "-r", "10", "-l", str(LEVEL), "-m", str(LEVEL)))
    try:
        deadline = time.monotonic() + 60
        while True:
            bridged = [b for b in ari.bridges() if len(b.get("channels", [])) == 2]
            if len(bridged) >= LEVEL:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(bridged)} of {LEVEL} calls bridged")
            time.sleep(0.5)
        time.sleep(3)                                   # past the last set-ups
        sample = bridged[0]["channels"]
        formats = {ch: {kind: ari.variable(ch, f"CHANNEL(audio{kind}format)").strip("()")
                        for kind in ("native", "read", "write")} for ch in sample}
        natives = sorted(f["native"] for f in formats.values())
        want = sorted((FORMAT[caller_codec], FORMAT[agent_codec]))
        if natives != want:
            raise RuntimeError(f"a sample call's formats are {formats}, not {want}")
        procs = lab_processes(lab.descriptor)
        meter = CpuMeter({"asterisk-12345": [procs["asterisk-12345"]],
                          "sipp": [agent, caller]}).start()
        time.sleep(MEASURE_S)
        cpu = meter.stop()
        still = len([b for b in ari.bridges() if len(b.get("channels", [])) == 2])
        if still < LEVEL:
            raise RuntimeError(f"calls ended during the measurement ({still} of {LEVEL} left)")
        pbx = cpu["cores"]["asterisk-12345"]
        return {"caller": caller_codec, "agent": agent_codec, "calls": LEVEL,
                "translated": formats[sample[0]]["native"] != formats[sample[1]]["native"],
                "sample_formats": formats, "pbx_cores": pbx,
                "pbx_us_per_call_second": round(1e6 * pbx / LEVEL),
                "sipp_cores": cpu["cores"]["sipp"],
                "machine_idle_cores": cpu["machine_idle_cores"]}
    finally:
        sipp.stop(caller)
        sipp.stop(agent)
        deadline = time.monotonic() + 20
        while ari.channels() and time.monotonic() < deadline:
            time.sleep(0.5)
        for ch in ari.channels():
            ari.hang_up(ch["id"])


def run(config: Path, lab_descriptor: dict | None = None) -> dict:
    variant = variant_up(config, LEVEL + 10, 2, "codec")
    workdir = Path(tempfile.mkdtemp(prefix="bench-codecs-"))
    service = sipp = None
    mixes = []
    try:
        lab, host, service, sipp = start_on(variant, workdir)
        audio = {c: g711_file(workdir, c) for c in ("PCMA", "PCMU")}
        for caller_codec, agent_codec in MIXES:
            mixes.append(one_mix(lab, sipp, host, _pbx_sip(variant, "12345"), caller_codec,
                                 agent_codec, audio))
            time.sleep(2)
    finally:
        if sipp is not None:
            sipp.stop_all()
        if service is not None:
            service.stop()
        _cli(variant, "lab", "down")
        _cli(config, "lab", "up")
    same = [m["pbx_us_per_call_second"] for m in mixes if not m["translated"]]
    mixed = [m["pbx_us_per_call_second"] for m in mixes if m["translated"]]
    figures = [
        {"name": f"PBX CPU per call, A-law <-> A-law, RTP both ways ({LEVEL} calls; two runs)",
         "value": " / ".join(map(str, same)), "unit": "us CPU per call-second",
         "target": None, "met": None},
        {"name": f"PBX CPU per call, mu-law caller <-> A-law agent, translated ({LEVEL} calls; "
                 "two runs)",
         "value": " / ".join(map(str, mixed)), "unit": "us CPU per call-second",
         "target": None, "met": None},
        {"name": "what A-law <-> mu-law translation adds per call (mean of the runs)",
         "value": round(sum(mixed) / len(mixed) - sum(same) / len(same)),
         "unit": "us CPU per call-second", "target": None, "met": None},
    ]
    return {"benchmark": "codecs", "figures": figures,
            "details": {"level": LEVEL, "measure_s": MEASURE_S, "mixes": mixes}}
