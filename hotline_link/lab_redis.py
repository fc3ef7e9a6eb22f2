"""The lab's Redis under Sentinel (``[lab] redis_sentinel = true``): two data nodes and a sentinel
per entry of ``[redis] sentinels``, all on loopback, each a process the lab records and stops by
PID (``hotline_link.lab``).

Processes:

``redis-a``        ``lab.redis_port``: the primary when the lab comes up
``redis-b``        ``lab.redis_replica_port``: its replica
``sentinel-<n>``   one per ``redis.sentinels`` entry, monitoring ``redis.master_name``, quorum 2

Which data node is the primary changes with every failover, so the lab asks the sentinels
(``primary``) and takes two names that follow it: ``redis-primary`` and ``redis-replica``
(``hotline-link lab stop redis-primary`` stops whichever is the primary now). A data node started
again joins as a replica of the current primary (it reloads its AOF, then the primary's copy
replaces it), as an operator would bring back a failed primary; only a node that Sentinel still
names the primary (stopped and started before a failover) starts as a primary again.

Both data nodes keep an AOF as the plain lab's Redis does (``lab.redis_appendfsync``).
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import redis

DATA = ("redis-a", "redis-b")
ALIASES = ("redis-primary", "redis-replica")
QUORUM = 2
# A primary that has not answered for a second is down (subjectively); with a quorum agreeing it
# is failed over. Short, for the lab's fault cases; production uses more (README).
DOWN_AFTER_MS = 1000
# How long one failover attempt may take before another sentinel tries again (and the time
# replicas get to follow the new primary).
FAILOVER_TIMEOUT_MS = 5000


def server_argv(appendfsync: str, port: int, folder: Path) -> list[str]:
    """A lab redis-server on loopback, in the foreground: AOF in the lab's own folder (what
    Redis acknowledged survives its restart and kill -9), no RDB snapshots beside it."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise FileNotFoundError("redis-server not found; run scripts/bootstrap.sh (make deps)")
    persist = (["--appendonly", "no"] if appendfsync == "off" else
               ["--appendonly", "yes", "--appendfsync", appendfsync])
    return [exe, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder), "--save", "",
            *persist, "--daemonize", "no", "--protected-mode", "yes", "--logfile", ""]


class SentinelLabError(RuntimeError):
    pass


class SentinelRedis:
    def __init__(self, settings, state_dir: Path):
        self.settings = settings
        self.dir = state_dir / "redis"
        rs = settings.redis
        self.master = rs.master_name
        self.sentinels = list(rs.sentinels)
        self.ports = {"redis-a": settings.lab.redis_port,
                      "redis-b": settings.lab.redis_replica_port}

    # --- names --------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return [*DATA, *(f"sentinel-{i}" for i in range(1, len(self.sentinels) + 1))]

    def node_of_port(self, port: int) -> str | None:
        return next((n for n, p in self.ports.items() if p == port), None)

    def resolve(self, name: str) -> str:
        """``redis-primary`` / ``redis-replica``: the data node that is that now."""
        if name not in ALIASES:
            return name
        primary = self.primary()
        if primary is None:
            raise SentinelLabError("no sentinel names a primary now")
        node = self.node_of_port(primary[1])
        return node if name == "redis-primary" else next(n for n in DATA if n != node)

    # --- asking Sentinel -----------------------------------------------------------------------
    def _sentinel(self, host: str, port: int) -> redis.Redis:
        return redis.Redis(host=host, port=port, socket_timeout=0.5, socket_connect_timeout=0.5)

    def primary(self) -> tuple[str, int] | None:
        """The primary most reachable sentinels name (None if none answers)."""
        votes: dict[tuple[str, int], int] = {}
        for host, port in self.sentinels:
            try:
                with self._sentinel(host, port) as s:
                    addr = s.execute_command("SENTINEL", "get-master-addr-by-name", self.master)
            except (redis.RedisError, OSError):
                continue
            if addr:
                key = (addr[0].decode(), int(addr[1]))
                votes[key] = votes.get(key, 0) + 1
        return max(votes, key=votes.get) if votes else None

    # --- processes ----------------------------------------------------------------------------
    def busy_ports(self, port_free) -> list[str]:
        busy = [f"redis {n} 127.0.0.1:{p}" for n, p in self.ports.items()
                if not port_free("127.0.0.1", p, socket.SOCK_STREAM)]
        busy += [f"sentinel {h}:{p}" for h, p in self.sentinels
                 if not port_free(h, p, socket.SOCK_STREAM)]
        return busy

    def start_all(self, spawn) -> Iterator:
        """Start every process (``spawn(name, argv, log)`` makes a recorded one), yielding each
        as it starts, so the caller records it at once; returns once the sentinels know the
        primary, its replica and one another."""
        yield self.start_data(spawn, "redis-a", None)
        yield self.start_data(spawn, "redis-b", self.ports["redis-a"])
        self.wait_replicated(60.0)
        for i in range(1, len(self.sentinels) + 1):
            yield self.start_sentinel(spawn, i, fresh=True)
        self.wait_sentinels(60.0)

    def start_data(self, spawn, name: str, replica_of: int | None):
        ddir = self.dir / name
        ddir.mkdir(parents=True, exist_ok=True)
        follow = ["--replicaof", "127.0.0.1", str(replica_of)] if replica_of else []
        # A diskless full sync starts at once (Redis waits 5 s for more replicas by default):
        # a primary brought back as a replica is a replica again within a moment, and until it
        # is, writes that wait for a replica wait.
        try:
            argv = server_argv(self.settings.lab.redis_appendfsync, self.ports[name], ddir)
        except FileNotFoundError as exc:
            raise SentinelLabError(str(exc)) from None
        argv += ["--repl-diskless-sync-delay", "0", *follow]
        return spawn(name, argv, ddir / "redis.log")

    def restart_data(self, spawn, name: str):
        """A data node again: a replica of the current primary, unless it is the primary.
        Returns the process at once and a function that waits until it serves (and, as a
        replica, holds the primary's data): the caller records the process first, so that a
        node that never syncs is still stopped by ``lab down``."""
        primary = self.primary()
        own = self.ports[name]
        replica_of = primary[1] if primary and primary[1] != own else None
        if primary is None:
            # No sentinel answers: take whatever node runs as the primary.
            replica_of = next((p for n, p in self.ports.items() if n != name), None)
        proc = self.start_data(spawn, name, replica_of)

        def ready() -> None:
            self._wait_ping(own, 60.0)
            if replica_of:
                self._wait_link(own, 60.0)
        return proc, ready

    def _wait_link(self, port: int, timeout: float) -> None:
        """The replica on ``port`` holds the primary's data and follows it, unless Sentinel has
        made it the primary meanwhile (a CI run saw the sentinels fail back to it a second after
        it started: with the lab's 1 s down-after, a loaded machine can look like a failed one);
        then it is the one the others follow, and waiting for its link would wait forever."""
        deadline = time.monotonic() + timeout
        with redis.Redis(port=port, socket_timeout=1) as r:
            while True:
                info = r.info("replication")
                if info.get("role") == "master" or info.get("master_link_status") == "up":
                    return
                if time.monotonic() > deadline:
                    raise SentinelLabError(f"the replica on port {port} did not sync")
                time.sleep(0.05)

    def start_sentinel(self, spawn, index: int, fresh: bool = False):
        host, port = self.sentinels[index - 1]
        sdir = self.dir / f"sentinel-{index}"
        sdir.mkdir(parents=True, exist_ok=True)
        conf = sdir / "sentinel.conf"
        if fresh or not conf.exists():
            # Sentinel rewrites this file as it learns (replicas, other sentinels, the current
            # primary); a restarted sentinel reads what it knew.
            conf.write_text("\n".join([
                f"bind {host}", f"port {port}", "daemonize no", f'dir "{sdir}"', 'logfile ""',
                f"sentinel monitor {self.master} 127.0.0.1 {self.ports['redis-a']} {QUORUM}",
                f"sentinel down-after-milliseconds {self.master} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {self.master} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {self.master} 1", ""]))
        exe = shutil.which("redis-sentinel")
        argv = [exe, str(conf)] if exe else [shutil.which("redis-server"), str(conf), "--sentinel"]
        proc = spawn(f"sentinel-{index}", argv, sdir / "sentinel.log")
        if not fresh:
            self._wait_ping(port, 30.0, host)
        return proc

    # --- readiness ----------------------------------------------------------------------------
    def _wait_ping(self, port: int, timeout: float, host: str = "127.0.0.1") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with redis.Redis(host=host, port=port, socket_timeout=0.5) as r:
                    if r.ping():
                        return
            except (redis.RedisError, OSError):
                time.sleep(0.05)
        raise SentinelLabError(f"redis on {host}:{port} did not answer PING")

    def wait_replicated(self, timeout: float) -> None:
        for port in self.ports.values():
            self._wait_ping(port, timeout)
        self._wait_link(self.ports["redis-b"], timeout)

    def wait_sentinels(self, timeout: float) -> None:
        """Every sentinel sees the primary, its replica and the other sentinels: only then can a
        quorum agree that the primary is down and elect one of them to fail it over."""
        deadline = time.monotonic() + timeout
        others = len(self.sentinels) - 1
        last = ""
        while time.monotonic() < deadline:
            ready = 0
            for host, port in self.sentinels:
                try:
                    with self._sentinel(host, port) as s:
                        state = s.sentinel_master(self.master)
                except (redis.RedisError, OSError) as exc:
                    last = str(exc)
                    continue
                if (state.get("num-slaves", 0) >= 1
                        and state.get("num-other-sentinels", 0) >= others):
                    ready += 1
                else:
                    last = (f"{host}:{port} sees {state.get('num-slaves')} replica(s), "
                            f"{state.get('num-other-sentinels')} other sentinel(s)")
            if ready == len(self.sentinels):
                return
            time.sleep(0.1)
        raise SentinelLabError(f"sentinels not ready after {timeout:.0f} s: {last}")

    def descriptor(self, procs: dict) -> dict:
        primary = self.primary()
        port = primary[1] if primary else self.ports["redis-a"]
        node = self.node_of_port(port) or "redis-a"
        return {
            "url": f"redis://127.0.0.1:{port}/0",
            "pid": procs[node].pid if node in procs else None,
            "master_name": self.master,
            "sentinels": [f"{h}:{p}" for h, p in self.sentinels],
            "processes": {name: {"port": (self.ports.get(name)
                                          or self.sentinels[int(name.rsplit("-", 1)[1]) - 1][1]),
                                 "pid": procs[name].pid if name in procs else None,
                                 "role": ("primary" if name == node else
                                          "replica" if name in DATA else "sentinel")}
                          for name in self.names()},
        }
