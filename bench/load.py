"""Benchmark 2: load. L concurrent caller<->agent calls with transfers 12345 -> 110 at a steady rate.

SIPp plays every party (pjsua2's wheel allows 4 calls per process): one instance places the
citizens' calls to 12345 and keeps ``level`` of them up; one instance answers for all 12345
agents (registered with its address) and stays until the application releases them; one
answers for all 110 agents and hangs up after ``TARGET_HOLD_MS``, which ends the transferred
call and lets SIPp place a new one. Transfers are started the way a desktop starts them (the
sidecar's ``POST /calls/{call_id}/transfer`` writes the same command to the same Redis stream;
the benchmark writes it directly, so it needs no sidecar) on calls bridged with a 12345 agent.

The bench lab has two agents per hotline, so the run uses a variant of the given lab config
with many agent accounts (same addresses and ports, its own state directory): it takes the
given lab down, brings the variant up, and restores the given lab at the end.

Measured per level: transfers started and their outcome records (each must appear exactly
once), transfer set-up (command written -> the app's ``ringing`` timestamp of the record: the
far agent's phone is ringing), callers left alone at the end (stranded), the service's CPU
(utime+stime of its process tree per second) and RSS, the CPU of every process on the call
path (both PBXs, SIPp, Redis, the app) and the machine's idle cores.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bench.durability import fsync_policy  # noqa: E402
from bench import profile as profiling  # noqa: E402
from bench.procs import CpuMeter, cpu_seconds, lab_processes, tree  # noqa: E402
from contracts.names import CALLS, COMMAND_RESULTS, COMMANDS, OUTCOMES  # noqa: E402
from transfer import kpi  # noqa: E402
from bench.latency import QUIET_ENV, main, percentile  # noqa: E402
from bench.stack import Stack  # noqa: E402
from conftest import Service  # noqa: E402

SIPP_DIR = Path(__file__).resolve().parent / "sipp"
# How long a 110 agent talks before hanging up. Long enough that the 12345 side has bridged the
# caller first: at 500 ms, under load, the far agent was sometimes gone before the app bridged
# (recorded correctly as a fallback, but then the benchmark measures its own hang-ups).
TARGET_HOLD_MS = 1500
# A caller alone (no agent, no far party) this long during the run counts as stranded: agents
# answer at once in this benchmark, so the longest legitimate wait is a transfer's set-up.
ALONE_LIMIT_S = 10.0
PAGE = os.sysconf("SC_PAGE_SIZE")


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hotline_link.cli", "-c", str(config), *args],
                          cwd=ROOT, capture_output=True, text=True)


def load_config(config: Path, agents_12345: int, agents_110: int) -> Path:
    """The given lab config with many agents and its own state directory."""
    text = config.read_text()
    state = re.search(r'^state_dir\s*=\s*"([^"]+)"', text, re.M).group(1)
    text = text.replace(state, f"{state}-load")
    text += "\n# Added by bench/load.py: agent accounts for the load run.\n"
    for hid, count in (("12345", agents_12345), ("110", agents_110)):
        names = ", ".join(f'"{hid}-a{i}"' for i in range(1, count + 1))
        text += f"[hotlines.{hid}]\nagents = [{names}]\n"
    out = ROOT / f"{state}-load.toml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def variant_up(config: Path, agents_12345: int, agents_110: int, what: str) -> Path:
    """``load_config``'s variant of the given lab, up in its place (the given lab goes down;
    bring it back with ``_cli(config, "lab", "up")``)."""
    variant = load_config(config, agents_12345=agents_12345, agents_110=agents_110)
    _cli(config, "lab", "down")
    _cli(variant, "lab", "down")
    up = _cli(variant, "lab", "up")
    if up.returncode != 0:
        raise RuntimeError(f"{what} lab up failed: {up.stdout}\n{up.stderr}")
    return variant


def start_on(variant: Path, workdir: Path) -> tuple:
    """On a variant lab: its handle, the phones' host, the service (started) and SIPp."""
    from conftest import Lab

    lab = Lab(Stack.descriptor_of(variant))
    service = Service(lab, variant, "bench-service.log", log_level="info")
    service.start()
    return lab, lab.descriptor["phone_host"], service, Sipp(workdir)


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Sipp:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.pids: list[int] = []      # -bg daemons, not our children

    def scenario(self, name: str, hold_ms: int, target: str = "", codec: str = "PCMU",
                 audio: Path | None = None) -> Path:
        """``codec``: the only one offered or answered (PCMU or PCMA); ``audio``: a file of raw
        samples in that codec, streamed as RTP for the whole call (else no RTP is sent)."""
        pt = {"PCMU": 0, "PCMA": 8}[codec]
        media = (f'  <nop><action><exec rtp_stream="{audio},-1,{pt}"/></action></nop>'
                 if audio else "")
        text = ((SIPP_DIR / f"{name}.xml.in").read_text().replace("@HOLD_MS@", str(hold_ms))
                .replace("@TALK_MS@", str(hold_ms)).replace("@TARGET@", target)
                .replace("@PT@", str(pt)).replace("@CODEC@", codec).replace("@MEDIA@", media))
        path = self.workdir / f"{name}-{hold_ms}-{codec}{'-rtp' if audio else ''}.xml"
        path.write_text(text)
        return path

    def accounts_csv(self, accounts: list[dict], name: str) -> Path:
        path = self.workdir / f"{name}.csv"
        # SIPp takes a whole [authentication ...] from a field, not fields inside one.
        path.write_text("SEQUENTIAL\n" + "".join(
            f"{a['username']};[authentication username={a['username']} password={a['password']}]\n"
            for a in accounts))
        return path

    def argv(self, remote: str, host: str, port: int, *more: str) -> list[str]:
        # -aa: answer OPTIONS with 200 (the PBX qualifies the agents' contacts; an agent that
        # does not answer is UNAVAILABLE and never rung), and INFO, NOTIFY, UPDATE alike.
        return ["sipp", remote, "-i", host, "-p", str(port), "-mi", host, "-aa",
                "-mp", str(free_udp_port(host)), "-bg", "-nostdin", "-trace_err",
                "-error_file", str(self.workdir / f"err-{port}.log"), *more,
                # BENCH_SIPP_TRACE=1 keeps every SIP message (debugging; slows SIPp down).
                *(["-trace_msg", "-message_file", str(self.workdir / f"msg-{port}.log")]
                  if os.environ.get("BENCH_SIPP_TRACE") else [])]

    def register(self, remote: str, host: str, port: int, accounts: list[dict], name: str) -> None:
        csv = self.accounts_csv(accounts, name)
        argv = ["sipp", remote, "-i", host, "-p", str(port), "-sf", str(SIPP_DIR / "register.xml"),
                "-inf", str(csv), "-m", str(len(accounts)), "-r", "50", "-timeout", "60s",
                "-timeout_error", "-nostdin"]
        done = subprocess.run(argv, cwd=self.workdir, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"registering {name} failed ({done.returncode}): {done.stderr[-500:]}")

    def start(self, argv: list[str]) -> int:
        # -bg forks: the parent prints the daemon's pid and exits.
        out = subprocess.run(argv, cwd=self.workdir, capture_output=True, text=True)
        match = re.search(r"PID=\[(\d+)\]", out.stdout + out.stderr)
        if not match:
            raise RuntimeError(f"sipp did not start: {out.stdout[-300:]} {out.stderr[-300:]}")
        pid = int(match.group(1))
        self.pids.append(pid)
        return pid

    def stop(self, pid: int, graceful: float = 0.0) -> None:
        try:
            if graceful:
                os.kill(pid, signal.SIGUSR1)     # SIPp: stop placing calls, end when calls end
                deadline = time.monotonic() + graceful
                while time.monotonic() < deadline and _alive(pid):
                    time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for pid in self.pids:
            self.stop(pid)
        self.pids.clear()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours is not running any more either.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def cpu_rss(pid: int) -> tuple[float, int]:
    """CPU seconds used so far and resident bytes, over the service's process tree."""
    rss = 0
    for p in tree(pid):
        try:
            rss += int(Path(f"/proc/{p}/stat").read_text().rsplit(") ", 1)[1].split()[21]) * PAGE
        except (FileNotFoundError, IndexError):
            pass
    return cpu_seconds(pid), rss


def look(ari) -> tuple[set[str], int, set[str]]:
    """One look at the 12345 PBX: the call ids (caller channel ids) of callers bridged with a
    12345 agent; how many callers there are; and the names of callers in no bridge with another
    party (alone)."""
    channels = {c["id"]: c for c in ari.channels()}
    callers = {cid for cid, c in channels.items() if c["name"].startswith("PJSIP/citizen-")}
    eligible, with_someone = set(), set()
    for b in ari.bridges():
        ids = b.get("channels", [])
        if len(ids) >= 2:
            with_someone |= set(ids)
        if len(ids) == 2 and any(channels.get(i, {}).get("name", "").startswith("PJSIP/12345-a")
                                 for i in ids):
            eligible |= {i for i in ids if i in callers}
    alone = {channels[i]["name"] for i in callers - with_someone}
    return {channels[i].get("linkedid") or i for i in eligible}, len(callers), alone


class Alone:
    """How long each caller has been seen alone (in no bridge with another party), looked at
    during a run and not only at its end: agents answer at once here, so a caller alone for
    longer than ALONE_LIMIT_S was left behind."""

    def __init__(self):
        self.since: dict[str, float] = {}
        self.longest: dict[str, float] = {}

    def look(self, alone: set[str], now: float) -> None:
        for name in alone:
            self.longest[name] = max(self.longest.get(name, 0.0),
                                     now - self.since.setdefault(name, now))
        for name in set(self.since) - alone:
            del self.since[name]

    def figures(self) -> dict:
        return {"alone_max_s": round(max(self.longest.values(), default=0.0), 1),
                "alone_too_long": sorted(c for c, t in self.longest.items()
                                         if t > ALONE_LIMIT_S)[:20]}


def stranded(ari) -> list[str]:
    """Callers on the 12345 PBX in no bridge with another party."""
    return sorted(look(ari)[2])


def _ari_requests(config: Path) -> int | None:
    """The ARI requests the service has sent so far, both PBXs (its /metrics; None: unread)."""
    import urllib.request

    from hotline_link.settings import load

    host, port = load(config, secrets=False).http
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    found = re.findall(r"^hotline_ari_requests_total\{[^}]*\} ([0-9.e+]+)$", text, re.M)
    return int(sum(float(v) for v in found)) if found else None


def _command_counts(redis) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): v["calls"]
            for k, v in redis.info("commandstats").items()}


def redis_pids(procs: dict[str, int]) -> list[int]:
    """Redis's processes: the one server, or under Sentinel both data nodes (the replica's
    work is part of what a durable write costs; the sentinels' is not on the call path)."""
    return [pid for name, pid in procs.items() if name == "redis" or name.startswith("redis-")]


def _sipp_placed(stat_file: Path) -> int | None:
    """The calls SIPp created, from the last row of its statistics file (``-trace_stat``)."""
    try:
        rows = [r for r in stat_file.read_text().splitlines() if r.strip()]
        header = rows[0].split(";")
        return int(rows[-1].split(";")[header.index("TotalCallCreated")])
    except (OSError, IndexError, ValueError):
        return None


def _call_records(redis, mark: str, placed: int | None, tids: set[str],
                  settle: float = 3.0, timeout: float = 60.0) -> dict:
    """The call records written since ``mark``, once no more arrive for ``settle`` seconds: one
    per call SIPp placed at 12345 (their count is also the KPIs' "offered") and one per started
    transfer at 110."""
    deadline = time.monotonic() + timeout
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        records = [CALLS.payload(f) for _, f in redis.xrange(CALLS.key, min=f"({mark}")]
        if len(records) != seen:
            seen, quiet_since = len(records), time.monotonic()
        elif time.monotonic() - quiet_since >= settle:
            break
        time.sleep(0.5)
    ids = [r["call_id"] for r in records]
    origin = [r for r in records if r["hotline"] == "12345"]
    targets = {(r.get("transfer_in") or {}).get("transfer_id") for r in records
               if r["hotline"] == "110"}
    offered = kpi.summary(kpi.window({0: _sum(kpi.contributions(r, THRESHOLDS) for r in origin)},
                                     0, 1))["offered"]
    return {"placed_by_sipp": placed, "records_12345": len(origin),
            "duplicates": len(ids) - len(set(ids)),
            "missing_12345": None if placed is None else placed - len(origin),
            "missing_110": len(tids - targets),
            "kpi_offered": offered,
            "kpi_error": None if placed is None else offered - placed,
            "dispositions": {d: sum(1 for r in records if r["disposition"] == d)
                             for d in sorted({r["disposition"] for r in records})}}


def _sum(dicts) -> dict[str, int]:
    total: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + v
    return total


# The sidecar's defaults ([sidecar.kpi]); only "offered" is compared here.
THRESHOLDS = kpi.Thresholds(short_abandon=5.0, service_level=20.0)


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def one_level(lab, service: Service, sipp: Sipp, redis, level: int, rate: float, duration: float,
              host: str, remote: str, label: str | None = None, profile: bool = False) -> dict:
    ari = lab.ari["12345"]
    citizen = lab.account("citizen", "12345")
    csv = sipp.accounts_csv([citizen], f"citizen-{level}")
    hold = int((duration + 120) * 1000)
    stat_file = sipp.workdir / f"caller-{level}-{uuid.uuid4().hex[:6]}-stat.csv"
    mark = redis.xrevrange(OUTCOMES.key, count=1)
    mark = mark[0][0].decode() if mark else "0-0"
    cmark = redis.xrevrange(CALLS.key, count=1)
    cmark = cmark[0][0].decode() if cmark else "0-0"
    # SIPp's own count of the calls it placed (its statistics file, every second) is what the
    # call records and the KPIs are held against.
    caller = sipp.start(sipp.argv(remote, host, free_udp_port(host),
                                  "-sf", str(sipp.scenario("caller", hold)), "-inf", str(csv),
                                  "-s", "12345", "-r", str(int(rate * 2)), "-l", str(level),
                                  "-trace_stat", "-stf", str(stat_file), "-fd", "1"))
    # Fill up to the level before timing anything.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        eligible, ncallers, _ = look(ari)
        if len(eligible) >= level * 0.9:
            break
        time.sleep(0.5)
    commands: dict[str, dict] = {}      # command id -> {call_id, at}
    commanded: set[str] = set()
    samples, concurrent = [], []
    cpu0, _ = cpu_rss(service.pid)
    stats0 = _command_counts(redis)
    ari0 = _ari_requests(service.config)
    # Every process on the call path, and what the machine had left: the sidecar is not part
    # of this benchmark (commands go to Redis directly).
    procs = lab_processes(lab.descriptor)
    meter = CpuMeter({"app": [service.pid], "asterisk-12345": [procs["asterisk-12345"]],
                      "asterisk-110": [procs["asterisk-110"]], "redis": redis_pids(procs),
                      "sipp": list(sipp.pids)}).start()
    t_start = time.monotonic()
    last_sample, last_cpu = t_start, cpu0
    # Sampled in the middle of the run, away from the fill and the end.
    spy_out = sipp.workdir / f"py-spy-{level}.txt"
    spy = profiling.start(service.pid, duration * 0.6, spy_out) if profile else None
    queue: list[str] = []
    next_at = t_start
    last_scan = 0.0
    alone_seen = Alone()
    while (now := time.monotonic()) < t_start + duration:
        if now - last_scan >= 0.25:
            eligible, ncallers, alone = look(ari)
            alone_seen.look(alone, now)
            concurrent.append(ncallers)
            queue = [c for c in eligible if c not in commanded]
            last_scan = now
        if now - last_sample >= 1.0:
            cpu, rss = cpu_rss(service.pid)
            samples.append({"cpu_cores": (cpu - last_cpu) / (now - last_sample), "rss": rss})
            last_sample, last_cpu = now, cpu
        if now >= next_at and queue:
            call_id = queue.pop()
            commanded.add(call_id)
            cid = uuid.uuid4().hex
            command = {"id": cid, "call_id": call_id, "mode": "blind", "target": "110"}
            at = time.time()
            redis.xadd(COMMANDS.of("12345"), COMMANDS.entry(command), **COMMANDS.trim())
            commands[cid] = {"call_id": call_id, "at": at}
            next_at += 1 / rate
        elif now >= next_at:
            next_at = now             # no eligible call: the rate fell behind, say so below
        time.sleep(0.005)
    elapsed = time.monotonic() - t_start
    cpu = meter.stop()
    stats1 = _command_counts(redis)
    ari1 = _ari_requests(service.config)
    where = profiling.finish(spy, spy_out) if profile else None
    # The service's and the sidecar-free lab's Redis commands in the window, less the
    # benchmark's own (one XADD per command it wrote; its reads come after the window).
    redis_calls = {c: stats1.get(c, 0) - stats0.get(c, 0) for c in stats1}
    redis_calls["xadd"] = redis_calls.get("xadd", 0) - len(commands)
    redis_calls = {c: n for c, n in sorted(redis_calls.items(), key=lambda kv: -kv[1]) if n > 0}
    # Stop placing calls; transferred calls end when the 110 agents hang up.
    os.kill(caller, signal.SIGUSR1)
    time.sleep(TARGET_HOLD_MS / 1000 + 6)
    left_alone = stranded(ari)
    results = {cid: json.loads(raw) for cid in commands
               if (raw := redis.hget(COMMAND_RESULTS, cid)) is not None}
    records = [OUTCOMES.payload(f) for _, f in redis.xrange(OUTCOMES.key, min=f"({mark}")]
    by_tid: dict[str, list[dict]] = {}
    for rec in records:
        by_tid.setdefault(rec["transfer_id"], []).append(rec)
    started = {cid: r["transfer_id"] for cid, r in results.items() if r.get("status") == "started"}
    lost = [tid for tid in started.values() if tid not in by_tid]
    dup = [tid for tid, recs in by_tid.items() if len(recs) > 1]
    setup_ms, results_count = [], {}
    # Where set-up time goes: the command waiting for the app (stream read, event queue), the
    # app's own work up to the originate, and the PBXs and the far phone up to the ringing.
    phases: dict[str, list[float]] = {"command->requested": [], "requested->dialing": [],
                                      "dialing->ringing": [], "ringing->bridged": [],
                                      # what the native anchor's REFER -> NOTIFY 200 compares to
                                      "command->dialing": []}
    for cid, tid in started.items():
        for rec in by_tid.get(tid, [])[:1]:
            results_count[rec["result"]] = results_count.get(rec["result"], 0) + 1
            t = {k: _ts(v) for k, v in rec["timestamps"].items()}
            t["command"] = commands[cid]["at"]
            if t.get("ringing") is not None:
                setup_ms.append((t["ringing"] - t["command"]) * 1000)
            for phase, values in phases.items():
                a, b = phase.split("->")
                if t.get(a) is not None and t.get(b) is not None:
                    values.append((t[b] - t[a]) * 1000)
    # Every caller still up is hung up by the caller instance; then the PBX must be empty.
    placed = _sipp_placed(stat_file)
    sipp.stop(caller, graceful=0.1)
    # SIPp's callers die without a BYE: the calls still up are ended on the PBX, so that each
    # one ends, and is recorded, before the next level (the app sees its caller hang up).
    for channel in ari.channels():
        ari.hang_up(channel["id"])
    calls = _call_records(redis, cmark, placed, set(started.values()))
    steady = samples[2:] or samples
    return {
        "level": level, "label": label or f"{level} calls", "duration_s": round(elapsed, 1),
        "redis_cores": cpu["cores"]["redis"], "cpu": cpu,
        "commands": len(commands), "rate_per_s": round(len(commands) / elapsed, 2),
        "started": len(started),
        "refused": sum(1 for r in results.values() if r.get("status") != "started"),
        "no_result": len(commands) - len(results),
        "outcome_records": len(records), "lost": len(lost), "duplicates": len(dup),
        "call_records": calls,
        "results": results_count, "stranded": len(left_alone), "stranded_channels": left_alone[:20],
        "concurrent_callers": {"min": min(concurrent, default=0), "max": max(concurrent, default=0),
                               "mean": round(sum(concurrent) / max(1, len(concurrent)), 1)},
        "setup_ms": ({"n": len(setup_ms), "p50": round(percentile(setup_ms, 50), 1),
                      "p99": round(percentile(setup_ms, 99), 1), "max": round(max(setup_ms), 1)}
                     if setup_ms else None),
        "cpu_cores": {"mean": round(sum(s["cpu_cores"] for s in steady) / max(1, len(steady)), 3),
                      "max": round(max((s["cpu_cores"] for s in steady), default=0), 3)},
        "phases_ms": {k: {"p50": round(percentile(v, 50), 1), "p99": round(percentile(v, 99), 1),
                          "max": round(max(v), 1)} for k, v in phases.items() if v},
        **alone_seen.figures(),
        "rss_mb": round(max((s["rss"] for s in samples), default=0) / 2**20, 1),
        "redis_commands": redis_calls,
        "redis_commands_per_transfer": round(sum(redis_calls.values()) / max(1, len(commands)), 1),
        "ari_requests_per_transfer": round((ari1 - ari0) / max(1, len(commands)), 1)
        if ari0 is not None and ari1 is not None else None,
        **({"profile": where} if where else {}),
    }


def native_level(lab, sipp: Sipp, level: int, rate: float, duration: float, host: str,
                 remote: str, agents: list[dict], service_pid: int) -> dict:
    """The same load with Asterisk's own blind transfer (the anchor): callers dial
    ``native-<agent>`` (plain Dial(), no application on the 12345 side), the agents send REFER
    to 110 after talking long enough that about ``rate`` transfers a second come out, and the
    110 side delivers the transferred calls as in our runs. Set-up is REFER -> the NOTIFY that
    reports success (SIPp response time "transfer": the caller is taken over and the far party
    is being dialled), to compare with our command -> ``dialing``."""
    ari = lab.ari["12345"]
    # The callers' limit counts calls on both sides: the talk time leaves room for the 110 leg.
    talk_ms = int(max(0.5, level / rate - TARGET_HOLD_MS / 1000 - 0.5) * 1000)
    port = free_udp_port(host)
    sipp.register(remote, host, port, agents, f"native-agents-{level}")
    scenario = sipp.scenario("native-agent", talk_ms, "110")
    sipp_t0 = time.time()              # -trace_rtt stamps samples in ms since SIPp started
    agent_pid = sipp.start(sipp.argv(remote, host, port, "-sf", str(scenario),
                                     "-trace_rtt", "-rtt_freq", "1"))
    citizen = lab.account("citizen", "12345")
    csv = sipp.workdir / f"native-callers-{level}.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(
        f"{citizen['username']};[authentication username={citizen['username']} "
        f"password={citizen['password']}];native-{a['username']}\n" for a in agents))
    caller_sf = sipp.workdir / f"native-caller-{level}.xml"
    caller_sf.write_text(sipp.scenario("caller", int((duration + 120) * 1000)).read_text()
                         .replace("[service]", "[field2]"))
    caller = sipp.start(sipp.argv(remote, host, free_udp_port(host), "-sf", str(caller_sf),
                                  "-inf", str(csv), "-r", str(int(rate * 2)), "-l", str(level)))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and look(ari)[1] < level * 0.9:
        time.sleep(0.5)
    time.sleep(talk_ms / 1000 + 3)       # the first transfers are through: a steady state
    procs = lab_processes(lab.descriptor)
    meter = CpuMeter({"app": [service_pid], "asterisk-12345": [procs["asterisk-12345"]],
                      "asterisk-110": [procs["asterisk-110"]], "redis": redis_pids(procs),
                      "sipp": list(sipp.pids)}).start()
    t0 = time.time()
    concurrent, alone_seen = [], Alone()
    while time.time() < t0 + duration:
        _, ncallers, alone = look(ari)
        now = time.monotonic()
        concurrent.append(ncallers)
        alone_seen.look(alone, now)
        time.sleep(0.25)
    t1 = time.time()
    cpu = meter.stop()
    os.kill(caller, signal.SIGUSR1)
    time.sleep(TARGET_HOLD_MS / 1000 + 6)
    left_alone = stranded(ari)
    sipp.stop(caller, graceful=0.1)
    sipp.stop(agent_pid)
    samples = {"transfer": [], "failed": []}
    # Named after the scenario and SIPp's pid before -bg forked (not the pid it prints).
    for rtt in sipp.workdir.glob(f"{scenario.stem}_*_rtt.csv"):
        for row in rtt.read_text().splitlines()[1:]:
            # Date_ms (since SIPp started);response_time_ms;rtd_no
            cols = row.split(";")
            if (len(cols) == 3 and cols[2] in samples
                    and t0 <= sipp_t0 + float(cols[0]) / 1000 <= t1):
                samples[cols[2]].append(float(cols[1]))
    ok = samples["transfer"]
    return {
        "level": level, "label": f"{level} calls, Asterisk's native blind transfer",
        "duration_s": round(t1 - t0, 1), "talk_ms": talk_ms, "cpu": cpu,
        "transfers": len(ok), "failed": len(samples["failed"]),
        "rate_per_s": round(len(ok) / (t1 - t0), 2),
        "concurrent_callers": {"min": min(concurrent, default=0),
                               "max": max(concurrent, default=0),
                               "mean": round(sum(concurrent) / max(1, len(concurrent)), 1)},
        "setup_to_answer_ms": ({"n": len(ok), "p50": round(percentile(ok, 50), 1),
                                "p99": round(percentile(ok, 99), 1), "max": round(max(ok), 1)}
                               if ok else None),
        "stranded": len(left_alone), "stranded_channels": left_alone[:20],
        **alone_seen.figures(),
    }


def run(config: Path, lab_descriptor: dict, levels=(50, 100, 200), rate: float = 20.0,
        duration: float = 60.0, fsync_off_run: bool = True, quiet_run: bool = True,
        ours: bool = True, native: bool = True, board_run: bool = True) -> dict:
    import redis as redis_mod

    top = max(levels)
    variant = variant_up(config, top + 20, 100, "load")
    levels_out, native_out, failures = [], [], []
    service = sipp = None
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    try:
        lab, host, service, sipp = start_on(variant, workdir)
        rds = redis_mod.Redis.from_url(lab.descriptor["redis"]["url"], socket_timeout=5)
        agents = {hid: [a for a in lab.accounts if a["role"] == "agent" and a["hotline"] == hid]
                  for hid in ("12345", "110")}
        answering = {}
        for hid, hold in (("12345", 3_600_000), ("110", TARGET_HOLD_MS)):
            pbx_sip = _pbx_sip(variant, hid)
            port = free_udp_port(host)
            sipp.register(pbx_sip, host, port, agents[hid], f"agents-{hid}")
            answering[hid] = sipp.start(sipp.argv(pbx_sip, host, port, "-sf",
                                                  str(sipp.scenario("agent", hold))))
        for level in levels if ours else ():
            try:
                levels_out.append(one_level(lab, service, sipp, rds, level, rate, duration, host,
                                             _pbx_sip(variant, "12345"), profile=level == top))
            except Exception as exc:  # a level that fails is reported; the next may still run
                failures.append(f"level {level}: {type(exc).__name__}: {exc}")
            time.sleep(3)
        # What durable Redis costs on the call path: the top level again with no AOF at all
        # (the levels above ran on the lab's setting, appendfsync always).
        if fsync_off_run and ours:
            try:
                with fsync_policy(rds, "off"):
                    levels_out.append(one_level(lab, service, sipp, rds, top, rate, duration,
                                                host, _pbx_sip(variant, "12345"),
                                                label=f"{top} calls, Redis without AOF"))
            except Exception as exc:
                failures.append(f"level {top} without AOF: {type(exc).__name__}: {exc}")
        # The supervisors' wallboard (issue 20) during the top level: the sidecar syncing the
        # real transfers' tickets and serving a wallboard in Chromium, which must stay live.
        # Before the announcement's run, which restarts the service: a freshly started service
        # ran its first top level slower (5-18 transfers/s against 20), with or without it.
        if board_run and ours:
            from bench.board import Watch

            try:
                with Watch(variant, lab.descriptor) as watch:
                    lv = one_level(lab, service, sipp, rds, top, rate, duration, host,
                                   _pbx_sip(variant, "12345"), label=f"{top} calls, {BOARD_LABEL}")
                    lv["board"] = watch.figures()
                levels_out.append(lv)
            except Exception as exc:
                failures.append(f"level {top} {BOARD_LABEL}: {type(exc).__name__}: {exc}")
        # What the caller announcement costs under load: the top level again with the 12345->110
        # announcement off (the service restarted with it off, then back as configured).
        if quiet_run and ours:
            service.stop()
            os.environ[QUIET_ENV] = ""
            try:
                service.start()
                levels_out.append(one_level(lab, service, sipp, rds, top, rate, duration, host,
                                            _pbx_sip(variant, "12345"),
                                            label=f"{top} calls, {QUIET_LABEL}"))
            except Exception as exc:
                failures.append(f"level {top} {QUIET_LABEL}: {type(exc).__name__}: {exc}")
            finally:
                del os.environ[QUIET_ENV]
                service.stop()
                service.start()
        # The anchor: the 12345 agents re-register at instances that transfer by REFER.
        if native:
            sipp.stop(answering["12345"])
            for level in levels:
                try:
                    native_out.append(native_level(lab, sipp, level, rate, duration, host,
                                                   _pbx_sip(variant, "12345"), agents["12345"],
                                                   service.pid))
                except Exception as exc:
                    failures.append(f"native level {level}: {type(exc).__name__}: {exc}")
                time.sleep(3)
    finally:
        if sipp:
            sipp.stop_all()
        if service:
            service.stop()
        _cli(variant, "lab", "down")
        _cli(config, "lab", "up")

    figures = []
    for lv in levels_out:
        at_top = lv["level"] == top and lv["label"] == f"{top} calls"
        s = lv["setup_ms"] or {}
        name = lv["label"]
        figures += [
            {"name": f"{name}: stranded callers (during the run + at its end)",
             "value": len(lv["alone_too_long"]) + lv["stranded"], "unit": "", "target": "0",
             "met": not lv["alone_too_long"] and lv["stranded"] == 0},
            {"name": f"{name}: lost + duplicate outcome records",
             "value": lv["lost"] + lv["duplicates"], "unit": "", "target": "0",
             "met": lv["lost"] + lv["duplicates"] == 0},
            {"name": f"{name}: call records missing + duplicated (12345 calls SIPp placed, "
                     f"110 calls transferred)",
             "value": _records_off(lv["call_records"]), "unit": "", "target": "0",
             "met": _records_off(lv["call_records"]) == 0},
            {"name": f"{name}: KPI offered calls minus the calls SIPp placed",
             "value": lv["call_records"]["kpi_error"], "unit": "", "target": "0",
             "met": lv["call_records"]["kpi_error"] == 0},
            {"name": f"{name}: transfers per second", "value": lv["rate_per_s"],
             "unit": "/s", "target": f">= {rate:g}", "met": lv["rate_per_s"] >= rate * 0.95},
            {"name": f"{name}: transfer set-up p99", "value": s.get("p99"),
             "unit": "ms", "target": "<= 250", "met": s.get("p99") is not None and s["p99"] <= 250},
            {"name": f"{name}: app CPU (mean)", "value": lv["cpu_cores"]["mean"],
             "unit": "cores", "target": "<= 0.5" if at_top else None,
             "met": lv["cpu_cores"]["mean"] <= 0.5 if at_top else None},
            {"name": f"{name}: app RSS (max)", "value": lv["rss_mb"], "unit": "MB",
             "target": "<= 150" if at_top else None,
             "met": lv["rss_mb"] <= 150 if at_top else None},
            {"name": f"{name}: Redis CPU (mean)", "value": lv["redis_cores"], "unit": "cores",
             "target": None, "met": None},
            {"name": f"{name}: Redis commands per transferred call (the app's)",
             "value": lv["redis_commands_per_transfer"], "unit": "", "target": None, "met": None},
            {"name": f"{name}: ARI requests per transferred call (both PBXs)",
             "value": lv.get("ari_requests_per_transfer"), "unit": "", "target": None,
             "met": None},
            # The app's CPU per transfer it handled, each call's share of the mean (the aim is
            # 5 ms; the no-I/O replay needs ~1 ms, so the rest is I/O and the asyncio loop).
            {"name": f"{name}: app CPU per transferred call",
             "value": round(lv["cpu"]["cores"]["app"] / lv["rate_per_s"] * 1000, 1)
             if lv["rate_per_s"] else None, "unit": "ms", "target": None, "met": None},
            {"name": f"{name}: both PBXs' CPU", "unit": "cores", "target": None, "met": None,
             "value": round(lv["cpu"]["cores"]["asterisk-12345"]
                            + lv["cpu"]["cores"]["asterisk-110"], 3)},
            {"name": f"{name}: SIPp CPU (every caller and agent)", "unit": "cores",
             "value": lv["cpu"]["cores"]["sipp"], "target": None, "met": None},
            {"name": f"{name}: machine idle", "unit": f"of {lv['cpu']['cpus']} cores",
             "value": lv["cpu"]["machine_idle_cores"], "target": None, "met": None},
        ]
    for lv in levels_out:
        layers = (lv.get("profile") or {}).get("layers_inclusive", {})
        for layer, share in layers.items():
            figures.append({"name": f"{lv['label']}: app CPU in {layer} (py-spy, inclusive)",
                            "value": round(share * 100, 1), "unit": "%", "target": None,
                            "met": None})
        # What call records cost per transferred call: their share of the app's CPU (building
        # them, the live notes, handing them to the sink) and the sink's share in proportion to
        # the records it carried (a transferred call leaves one outcome and two call records).
        if layers and lv["rate_per_s"]:
            per_call = lv["cpu"]["cores"]["app"] / lv["rate_per_s"] * 1000
            share = layers.get(profiling.CALL_RECORDS, 0) + layers.get(profiling.SINK, 0) * 2 / 3
            figures.append({"name": f"{lv['label']}: call records' part of the app CPU per "
                                    f"transferred call (py-spy)",
                            "value": round(share * per_call, 2), "unit": "ms", "target": None,
                            "met": None})
    figures += board_figures(levels_out)
    figures += announcement_figures(levels_out, top)
    figures += native_figures(levels_out, native_out)
    return {"benchmark": "load", "command": "make bench", "figures": figures,
            "details": {"levels": levels_out, "native_levels": native_out, "failures": failures, "rate_per_s": rate,
                        "duration_s": duration, "target_hold_ms": TARGET_HOLD_MS,
                        "method": __doc__.strip()}}


def board_figures(levels: list[dict]) -> list[dict]:
    """The wallboard during real calls (``bench.board.Watch``): how live it stayed, what the
    sidecar spent."""
    out = []
    for lv in levels:
        board = lv.get("board")
        if board is None:
            continue
        page, name = board["page_ms"], lv["label"]
        out += [
            {"name": f"{name}: record to screen p50 / p99 (wallboard in Chromium)",
             "value": f"{page['p50']} / {page['p99']}", "unit": "ms", "target": "p99 <= 1000",
             "met": page["p99"] is not None and page["p99"] <= 1000},
            {"name": f"{name}: records the wallboard never had", "value": board["page_missed"],
             "unit": f"of {board['records']}", "target": "0", "met": board["page_missed"] == 0},
            {"name": f"{name}: sidecar CPU (syncing every record's tickets and serving the "
                     "wallboard)", "value": board["sidecar_cores"], "unit": "cores",
             "target": None, "met": None},
            {"name": f"{name}: console errors on the wallboard", "value": len(board["console"]),
             "unit": "errors", "target": "0", "met": not board["console"]},
        ]
    return out


def _per_transfer_ms(cores: float, rate: float) -> float | None:
    return round(cores / rate * 1000, 1) if rate else None


def _records_off(c: dict) -> int | None:
    if c["missing_12345"] is None:
        return None
    return abs(c["missing_12345"]) + c["missing_110"] + c["duplicates"]


QUIET_LABEL = "caller announcement off"
BOARD_LABEL = "wallboard open (sidecar and Chromium)"


def announcement_figures(levels: list[dict], top: int) -> list[dict]:
    """The top level with the announcement (as configured) minus the same level without it."""
    by = {lv["label"]: lv for lv in levels}
    on, off = by.get(f"{top} calls"), by.get(f"{top} calls, {QUIET_LABEL}")
    if on is None or off is None or not on["rate_per_s"] or not off["rate_per_s"]:
        return []

    def per_call(lv: dict, *procs: str) -> float:
        return sum(lv["cpu"]["cores"][p] for p in procs) / lv["rate_per_s"] * 1000

    name = f"{top} calls: the caller announcement adds"
    pbxs = ("asterisk-12345", "asterisk-110")
    p99 = [(lv["setup_ms"] or {}).get("p99") for lv in (on, off)]
    return [
        {"name": f"{name} app CPU per transferred call", "unit": "ms", "target": None,
         "met": None, "value": round(per_call(on, "app") - per_call(off, "app"), 1)},
        {"name": f"{name} both PBXs' CPU per transferred call", "unit": "ms", "target": None,
         "met": None, "value": round(per_call(on, *pbxs) - per_call(off, *pbxs), 1)},
        {"name": f"{name} ARI requests per transferred call", "unit": "", "target": None,
         "met": None, "value": round(on["ari_requests_per_transfer"]
                                     - off["ari_requests_per_transfer"], 1)
         if on.get("ari_requests_per_transfer") is not None
         and off.get("ari_requests_per_transfer") is not None else None},
        {"name": f"{name} transfer set-up p99", "unit": "ms", "target": None, "met": None,
         "value": round(p99[0] - p99[1], 1) if None not in p99 else None},
    ]


def native_figures(ours: list[dict], native: list[dict]) -> list[dict]:
    """The anchor's own figures, and ours as multiples of them at the same level: CPU per
    transferred call (both PBXs; the app and both PBXs) and the transfer's hand-over time (ours:
    command -> far leg dialling; native: REFER -> NOTIFY 200). Ratios hold across machines where
    absolute figures do not."""
    figures = []
    by_level = {lv["level"]: lv for lv in ours if lv["label"] == f"{lv['level']} calls"}
    for nv in native:
        name, cores = nv["label"], nv["cpu"]["cores"]
        pbx = cores["asterisk-12345"] + cores["asterisk-110"]
        s = nv["setup_to_answer_ms"] or {}
        figures += [
            {"name": f"{name}: transfers per second", "value": nv["rate_per_s"], "unit": "/s",
             "target": None, "met": None},
            {"name": f"{name}: REFER -> transfer done p99", "value": s.get("p99"), "unit": "ms",
             "target": None, "met": None},
            {"name": f"{name}: both PBXs' CPU per transferred call", "unit": "ms",
             "value": _per_transfer_ms(pbx, nv["rate_per_s"]), "target": None, "met": None},
            {"name": f"{name}: stranded callers + failed transfers", "unit": "",
             "value": nv["stranded"] + len(nv["alone_too_long"]) + nv["failed"], "target": "0",
             "met": nv["stranded"] + len(nv["alone_too_long"]) + nv["failed"] == 0},
        ]
        lv = by_level.get(nv["level"])
        if lv is None or not lv["rate_per_s"] or not nv["rate_per_s"]:
            continue
        oc = lv["cpu"]["cores"]
        ours_pbx = _per_transfer_ms(oc["asterisk-12345"] + oc["asterisk-110"], lv["rate_per_s"])
        ours_all = _per_transfer_ms(oc["app"] + oc["asterisk-12345"] + oc["asterisk-110"],
                                    lv["rate_per_s"])
        native_pbx = _per_transfer_ms(pbx, nv["rate_per_s"])
        native_all = _per_transfer_ms(pbx + cores["app"], nv["rate_per_s"])
        hand_over = (lv["phases_ms"].get("command->dialing") or {}).get("p99")
        label = f"{nv['level']} calls, ours / native"
        figures += [
            {"name": f"{label}: both PBXs' CPU per transferred call", "unit": "x",
             "value": round(ours_pbx / native_pbx, 2) if native_pbx else None,
             "target": None, "met": None},
            {"name": f"{label}: app + both PBXs' CPU per transferred call", "unit": "x",
             "value": round(ours_all / native_all, 2) if native_all else None,
             "target": None, "met": None},
            {"name": f"{label}: hand-over p99 (command -> dialing / REFER -> done)", "unit": "x",
             "value": round(hand_over / s["p99"], 2) if hand_over and s.get("p99") else None,
             "target": None, "met": None},
        ]
    return figures


def _pbx_sip(config: Path, hid: str) -> str:
    from hotline_link import components

    pbx = components.load(config, secrets=False).lab.pbx[hid]
    return f"{pbx.sip_host}:{pbx.sip_port}"


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="bench load (restarts the lab as its variant)")
    parser.add_argument("--config", type=Path, default=ROOT / "bench" / "lab.toml")
    parser.add_argument("--levels", default="50,100,200")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--only", choices=("ours", "native", "board"),
                        help="one of the two kinds of run (default: both); board: our levels "
                             "and the top one again with the wallboard open")
    a = parser.parse_args()
    levels = tuple(int(x) for x in a.levels.split(","))
    sys.argv = [sys.argv[0], "--config", str(a.config)]
    board = a.only == "board"
    main("load", lambda config, desc: run(config, desc, levels=levels, rate=a.rate,
                                          duration=a.duration, ours=a.only != "native",
                                          native=a.only is None, fsync_off_run=not board,
                                          quiet_run=not board),
         descriptor=False)
