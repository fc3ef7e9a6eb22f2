"""``hotline-link doctor``: a live self-check of what hotline-link needs from the PBXs and Redis.

Each problem is one line naming what to change; the exit status is 2 when any is found, 0 when
none. Nothing is changed, except that the dialplan and ``channelvars`` check creates one channel (never
dialled) per PBX, in an application of its own (``hotline-doctor``), and deletes it at once.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

import aiohttp
import redis.asyncio as aioredis

from contracts.names import GROUPS

from .persistence import ADVICE, persistence
from .redisconn import connect
from .settings import Settings

# What the ARI app needs on every channel it returns (dialplan/ari.conf.j2).
CHANNELVARS = ("HOTLINE_ROLE", "HOTLINE_CALLER", "HOTLINE_AGENT", "HOTLINE_TRANSFER")
# The degraded-mode entries every Stasis() of the rendered dialplan falls back to.
DEGRADED_ENTRIES = ("inbound", "screened", "trunk", "adopt")
PROBE_APP = "hotline-doctor"


@dataclass
class Report:
    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


async def _ari(session: aiohttp.ClientSession, hotline, report: Report) -> None:
    h, base = hotline.id, hotline.ari.url.rstrip("/") + "/ari"
    auth = aiohttp.BasicAuth(hotline.ari.username, hotline.ari.password or "")

    async def call(method: str, path: str, **params):
        async with session.request(method, base + path, params=params, auth=auth) as resp:
            return resp.status, (await resp.json(content_type=None) if resp.status < 300 else None)

    try:
        status, info = await call("GET", "/asterisk/info")
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        report.problems.append(f"{h}: ARI {hotline.ari.url} unreachable ({exc}): start the PBX "
                               f"or fix hotlines.{h}.ari.url; http.conf must enable the server")
        return
    if status == 401:
        report.problems.append(f"{h}: ARI refused user {hotline.ari.username!r}: make ari.conf and "
                               f"hotlines.{h}.ari.password_file agree")
        return
    if status != 200:
        report.problems.append(f"{h}: ARI answered {status} to /asterisk/info: is res_ari loaded?")
        return
    report.ok.append(f"{h}: ARI reachable (Asterisk {info.get('system', {}).get('version', '?')})")
    status, _ = await call("GET", f"/applications/{hotline.ari.app}")
    if status == 200:
        report.ok.append(f"{h}: application {hotline.ari.app} connected")
    else:
        report.problems.append(f"{h}: application {hotline.ari.app} not connected: calls are in "
                               f"degraded mode; start `hotline-link run`")
    # A created channel lives only while its application is connected, and the service hangs
    # up strangers in its own: the probe gets an application of its own for the moment.
    events = hotline.ari.url.replace("http", "ws", 1).rstrip("/") + "/ari/events"
    try:
        async with session.ws_connect(events, params={"app": PROBE_APP}, auth=auth):
            await _probe(call, hotline, report)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        report.problems.append(f"{h}: dialplan fallback and channelvars not checked: ARI "
                               f"WebSocket refused ({exc})")


async def _probe(call, hotline, report: Report) -> None:
    """The dialplan fallback and ``channelvars``, read on a probe channel: created (never
    dialled) in the application, looked at, deleted. ARI evaluates dialplan functions only on a
    channel, and only a channel shows which channelvars ari.conf exports."""
    h = hotline.id
    status, probe = await call("POST", "/channels/create", endpoint="Local/doctor@hotline-degraded",
                               app=PROBE_APP)
    if status != 200 or not probe:
        report.problems.append(f"{h}: dialplan fallback and channelvars not checked: ARI "
                               f"answered {status} to creating a probe channel")
        return
    try:
        lacking = [v for v in CHANNELVARS if v not in (probe.get("channelvars") or {})]
        if lacking:
            report.problems.append(
                f"{h}: ari.conf channelvars lack {', '.join(lacking)}: set channelvars = "
                f"{','.join(CHANNELVARS)} in [general] (a restarted service cannot find its "
                f"calls again without them)")
        else:
            report.ok.append(f"{h}: ari.conf channelvars set")
        missing = []
        for entry in DEGRADED_ENTRIES:
            status, got = await call("GET", f"/channels/{probe['id']}/variable",
                                     variable=f"DIALPLAN_EXISTS(hotline-degraded,{entry},1)")
            if status != 200:
                report.problems.append(f"{h}: cannot check the dialplan (ARI answered {status} to "
                                       f"DIALPLAN_EXISTS): load func_dialplan.so")
                return
            if got.get("value") != "1":
                missing.append(entry)
        if missing:
            report.problems.append(
                f"{h}: dialplan has no degraded-mode fallback (hotline-degraded,"
                f"{'/'.join(missing)}): a call arriving while the service is down would be hung "
                f"up; render and load extensions.conf (`hotline-link dialplan render`, "
                f"dialplan/README.md)")
        else:
            report.ok.append(f"{h}: dialplan has the degraded-mode fallback")
    finally:
        await call("DELETE", f"/channels/{probe['id']}")


async def _ami(hotline, report: Report) -> None:
    from agi.ami import Ami, AmiError

    h = hotline.id
    if hotline.ami is None:
        report.problems.append(f"{h}: hotlines.{h}.ami is not configured: keys on calls your "
                               f"Queue() delivers (and in degraded mode) cannot reach the app")
        return
    ami = Ami(hotline.ami)
    try:
        await ami.ping()
    except AmiError as exc:
        report.problems.append(f"{h}: AMI {exc}: check manager.conf (enabled, bindaddr, user with "
                               f"write = call) and hotlines.{h}.ami")
        return
    finally:
        await ami.close()
    report.ok.append(f"{h}: AMI {hotline.ami.host}:{hotline.ami.port} login ok")


def _agi(settings: Settings, report: Report) -> None:
    host, port = settings.agi.listen
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        report.problems.append(f"FastAGI {host}:{port} unreachable ({exc.strerror or exc}): the "
                               f"service is not running, or agi.listen differs from features.conf")
        return
    report.ok.append(f"FastAGI {host}:{port} accepting")


async def _redis(settings: Settings, report: Report) -> None:
    rs = settings.redis
    redis = connect(rs, socket_timeout=2, socket_connect_timeout=2)
    try:
        state = await persistence(redis)
        if rs.durable_replicas:
            # Fewer replicas than writes wait for: every outcome record stays in the spool and
            # the sidecar waits, until one is back.
            info = await redis.info("replication")
            have = int(info.get("connected_slaves", 0))
            if have < rs.durable_replicas:
                report.problems.append(
                    f"Redis primary has {have} replica(s), redis.durable_replicas asks "
                    f"{rs.durable_replicas}: outcome records wait in the spool and work orders "
                    f"wait until a replica is back (start it, or lower redis.durable_replicas)")
            else:
                report.ok.append(f"Redis primary has {have} replica(s) (durable writes wait "
                                 f"for {rs.durable_replicas})")
        if state["durable"]:
            report.ok.append(f"Redis persists (AOF, appendfsync {state['appendfsync'] or '?'})")
        else:
            report.problems.append(f"Redis persists nothing (appendonly no): a restart loses "
                                   f"records and alerts; {ADVICE}")
        for stream, group in GROUPS.items():
            try:
                names = [g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
                         for g in await redis.xinfo_groups(stream)]
            except aioredis.ResponseError:
                names = []
            if group in names:
                report.ok.append(f"Redis: consumer group {group} on {stream}")
            else:
                report.problems.append(f"Redis: no consumer group {group} on {stream}: the "
                                       f"sidecar is not running (`hotline-link sidecar`)")
    except (aioredis.RedisError, OSError) as exc:
        report.problems.append(f"Redis {rs.describe()} unreachable ({exc}): start it or fix "
                               f"redis.url" + (", redis.sentinels, redis.master_name"
                                               if rs.sentinels else ""))
    finally:
        await redis.aclose()


async def _guarded(report: Report, what: str, check) -> None:
    """One check; one that breaks in a way it did not foresee is a problem line of its own,
    so the rest still run and the exit status still says "problems" (2), never a crash (1)."""
    try:
        if asyncio.iscoroutine(check):
            await check
        else:
            await asyncio.to_thread(check)
    except Exception as exc:          # noqa: BLE001 - a doctor reports, it does not crash
        report.problems.append(f"{what}: the check itself failed ({type(exc).__name__}: {exc}); "
                               f"run `hotline-link doctor` again, and report it if it repeats")


async def check(settings: Settings) -> Report:
    report = Report()
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(_guarded(report, f"{h.id}: ARI", _ari(session, h, report))
                               for h in settings.hotlines.values()))
    for hotline in settings.hotlines.values():
        await _guarded(report, f"{hotline.id}: AMI", _ami(hotline, report))
    await _guarded(report, "FastAGI", lambda: _agi(settings, report))
    await _guarded(report, "Redis", _redis(settings, report))
    return report
