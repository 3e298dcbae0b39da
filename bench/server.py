"""The server under test, seen from outside: publish, stats, process metrics."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass

import psutil

from bench.http import BlockingConnection, HTTPError, Target, fetch, request


@dataclass(frozen=True, slots=True)
class Published:
    """When the publish was sent (`t0_ns`) and acknowledged, and the reply."""

    t0_ns: int
    ack_ns: int
    status: int
    body: bytes

    @property
    def ack_ms(self) -> float:
        """Milliseconds from sending the publish to its complete reply."""
        return (self.ack_ns - self.t0_ns) / 1e6


def publish(
    target: Target,
    path: str,
    category: str,
    data: object,
    timeout_s: float,
    token: str | None = None,
) -> Published:
    """POST one event (with `token` as `Authorization: Bearer`); the clock starts after
    connecting, just before the write."""
    body = json.dumps({"category": category, "data": data}).encode()
    raw = request(target, "POST", target.path(path), body, token)
    conn = BlockingConnection(target, timeout_s)
    try:
        t0 = time.monotonic_ns()
        response = conn.request(raw)
        ack = time.monotonic_ns()
    finally:
        conn.close()
    return Published(t0_ns=t0, ack_ns=ack, status=response.status, body=response.body)


def read_waiting(stats: Target, timeout_s: float) -> int | None:
    """`waiting_subscribers` from the stats URL, or None if unavailable."""
    try:
        response = fetch(stats, request(stats, "GET", stats.base_path), timeout_s)
        value = json.loads(response.body).get("waiting_subscribers")
    except (HTTPError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


@dataclass(frozen=True, slots=True)
class Settled:
    """How waiting for the subscribers ended."""

    seconds: float
    waiting_seen: int | None
    reached: bool


def wait_until_waiting(
    stats: Target | None, want: int, settle_s: float, timeout_s: float
) -> Settled:
    """Poll `stats` until `want` subscribers wait (at most `timeout_s`); else sleep `settle_s`."""
    start = time.monotonic()
    if stats is None:
        time.sleep(settle_s)
        return Settled(seconds=settle_s, waiting_seen=None, reached=True)
    seen: int | None = None
    while time.monotonic() - start < timeout_s:
        seen = read_waiting(stats, 5.0)
        if seen is not None and seen >= want:
            return Settled(time.monotonic() - start, seen, True)
        time.sleep(0.05)
    return Settled(time.monotonic() - start, seen, False)


ServerPid = int | tuple[int, ...]  # several: a server and what it needs (e.g. redis-server)


class ServerProcess:
    """CPU and memory of server processes and their descendants (workers)."""

    def __init__(self, pid: ServerPid) -> None:
        try:
            self._procs = [psutil.Process(p) for p in ((pid,) if isinstance(pid, int) else pid)]
        except psutil.Error as exc:
            raise ValueError(f"--server-pid {pid}: {exc}") from exc

    def _tree(self) -> list[psutil.Process]:
        procs = list(self._procs)
        for proc in self._procs:
            with contextlib.suppress(psutil.Error):
                procs += proc.children(recursive=True)
        return procs

    def rss_bytes(self) -> int:
        """Resident set size summed over the process tree."""
        total = 0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def cpu_seconds(self) -> float:
        """User + system CPU seconds summed over the process tree."""
        total = 0.0
        for proc in self._tree():
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total


def _busy_seconds(core: int) -> float:
    """CPU seconds `core` gave to processes, or lost to a hypervisor, since boot."""
    times = psutil.cpu_times(percpu=True)[core]
    return float(times.user + times.nice + times.system + getattr(times, "steal", 0.0))


class CoreWatch:
    """What share of the server's core went to anything but the server, from creation on."""

    def __init__(self, core: int, server: ServerPid) -> None:
        self._core = core
        self._server = ServerProcess(server)
        self._start = (time.monotonic(), _busy_seconds(core), self._server.cpu_seconds())

    def others(self) -> float:
        """The core's time taken by other processes (or a hypervisor's steal), as a share
        of the time since creation; interrupt work is left out, as it serves the server too."""
        began, busy, own = self._start
        used = (_busy_seconds(self._core) - busy) - (self._server.cpu_seconds() - own)
        return max(0.0, used / max(1e-9, time.monotonic() - began))
