"""The server under test, seen from outside: publish, stats, process metrics."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.http import BlockingConnection, HTTPError, fetch, get_request, post_json_request
from bench.target import Target


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


def publish(target: Target, path: str, category: str, data: object, timeout_s: float) -> Published:
    """POST one event; the clock starts after connecting, just before the write."""
    raw = post_json_request(target, path, json.dumps({"category": category, "data": data}).encode())
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
        response = fetch(stats, get_request(stats, stats.base_path), timeout_s)
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


class ServerProcess:
    """CPU and memory of a server process and its descendants (workers)."""

    def __init__(self, pid: int) -> None:
        try:
            self._proc = psutil.Process(pid)
        except psutil.Error as exc:
            raise ValueError(f"--server-pid {pid}: {exc}") from exc

    def _tree(self) -> list[psutil.Process]:
        procs = [self._proc]
        with contextlib.suppress(psutil.Error):
            procs += self._proc.children(recursive=True)
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


_LISTENING = re.compile(r"listening on (http://\S+)")


@dataclass
class ServedVariant:
    """A running `longpoll serve` for one variant."""

    process: subprocess.Popen[bytes]
    url: str
    command: list[str]


@contextlib.contextmanager
def serve_variant(flags: list[str], core: int, log: Path) -> Iterator[ServedVariant]:
    """`longpoll serve --port 0 FLAGS` pinned to `core`; stopped with SIGTERM at the end."""
    command = [sys.executable, "-m", "longpoll.cli", "serve", "--port", "0", *flags]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.sched_setaffinity(0, {core}),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            match = _LISTENING.search(log.read_text(errors="replace"))
            if match:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("longpoll serve did not start:\n" + log.read_text())
            time.sleep(0.05)
        yield ServedVariant(process, match.group(1), ["taskset", "-c", str(core), *command])
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
