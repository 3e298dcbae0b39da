"""The servers under test: starting them pinned to one core (`longpoll serve`, stock
uvicorn, granian) and stopping them; servers the user runs (`--other`); their CPU and
memory; and the coordinator's own requests to them (publish, waiting subscribers)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.credentials import ACCESS_ENV, NO_CREDENTIALS, Credentials
from bench.http import (
    BlockingConnection,
    HTTPError,
    Server,
    ServerPid,
    Target,
    fetch,
    parse_target,
    request,
)

START_TIMEOUT_S = 20.0
ATTEMPTS = 3  # ports tried: a free port may be taken before the server binds it
GRANIAN_FLAGS = [
    "--interface", "asgi", "--loop", "uvloop", "--http", "1", "--backpressure", "20000",
    "--backlog", "20000", "--no-ws", "--factory",
]  # fmt: skip
UVICORN_FLAGS = [
    "--loop", "uvloop", "--http", "httptools", "--ws", "none", "--no-access-log",
    "--log-level", "warning",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Published:
    """When the publish was sent (`t0_ns`) and its reply."""

    t0_ns: int
    status: int
    ack_ms: float


def publish(server: Server, category: str, data: object, timeout_s: float) -> Published:
    """POST one event; the clock starts after connecting, just before the write."""
    raw = server.publish(category, data)
    conn = BlockingConnection(server.target, timeout_s)
    try:
        t0 = time.monotonic_ns()
        status = conn.request(raw).status
        return Published(t0, status, (time.monotonic_ns() - t0) / 1e6)
    finally:
        conn.close()


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
        return Settled(settle_s, None, True)
    seen: int | None = None
    while time.monotonic() - start < timeout_s:
        seen = read_waiting(stats, 5.0)
        if seen is not None and seen >= want:
            return Settled(time.monotonic() - start, seen, True)
        time.sleep(0.05)
    return Settled(time.monotonic() - start, seen, False)


class ServerProcess:
    """CPU and memory of server processes and their descendants (workers)."""

    def __init__(self, pid: ServerPid) -> None:
        try:
            self._procs = [psutil.Process(p) for p in ((pid,) if isinstance(pid, int) else pid)]
        except psutil.Error as exc:
            raise ValueError(f"--server-pid {pid}: {exc}") from exc

    def _sum(self, read: Callable[[psutil.Process], float]) -> float:
        """`read` summed over the process tree (gone processes count 0)."""
        procs, total = list(self._procs), 0.0
        for proc in self._procs:
            with contextlib.suppress(psutil.Error):
                procs += proc.children(recursive=True)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                total += read(proc)
        return total

    def rss_bytes(self) -> float:
        """Resident set size summed over the process tree."""
        return self._sum(lambda proc: proc.memory_info().rss)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds summed over the process tree."""
        return self._sum(lambda proc: sum(proc.cpu_times()[:2]))


def _busy_seconds(core: int) -> float:
    """CPU seconds `core` gave to processes, or lost to a hypervisor, since boot."""
    times = psutil.cpu_times(percpu=True)[core]
    return float(times.user + times.nice + times.system + getattr(times, "steal", 0.0))


class CoreWatch:
    """What share of the server's core went to anything but the server, from creation on."""

    def __init__(self, core: int, server: ServerPid) -> None:
        self._core, self._server = core, ServerProcess(server)
        self._start = (time.monotonic(), _busy_seconds(core), self._server.cpu_seconds())

    def others(self) -> float:
        """The core's time taken by other processes (or a hypervisor's steal), as a share
        of the time since creation; interrupt work is left out, as it serves the server too."""
        began, busy, own = self._start
        used = (_busy_seconds(self._core) - busy) - (self._server.cpu_seconds() - own)
        return max(0.0, used / max(1e-9, time.monotonic() - began))


@dataclass
class ServedVariant:
    """A running server for one variant, the command that reproduces it, and the tokens
    its clients must send; `pid` None when unknown (a server the user runs)."""

    pid: int | None
    url: str
    command: list[str]
    credentials: Credentials = NO_CREDENTIALS
    paths: tuple[str, str] = ("/events", "/publish")  # subscribe and publish, under `url`
    counts_waiters: bool = True  # `url`/stats answers `waiting_subscribers`
    pinned: bool = True  # alone on the server core: what else used that core is measured
    note: str = ""  # how it ran, where the command does not say

    def server(self, pid: ServerPid | None = None, counts: bool = True) -> Server:
        """How the scenarios reach it (`pid`: the processes to measure, default its own); they
        ask its /stats for the waiting subscribers only if it answers that and `counts`."""
        stats = parse_target(self.url + "/stats") if counts and self.counts_waiters else None
        target = parse_target(self.url)
        return Server(target, *self.paths, stats, pid or self.pid, self.credentials)

    @property
    def shown(self) -> str:
        """How it ran, for the page."""
        return self.note or shlex.join(self.command)


def free_port() -> int:
    """A loopback port that was free a moment ago (another process may take it first)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(core: int) -> Callable[[], None]:
    """A `preexec_fn`: the child runs on `core` only (as `taskset -c CORE` would) and gets
    SIGTERM when the process that started it dies, so no server outlives a killed harness."""

    def setup() -> None:
        os.sched_setaffinity(0, {core})
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return setup


def stop(process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it is still running after `timeout_s`; reaps it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _start(
    command: list[str], core: int, log: Path, credentials: Credentials = NO_CREDENTIALS
) -> subprocess.Popen[bytes]:
    """`command` pinned to `core`, output to `log`; access control only from `credentials`
    (none inherited from this process's environment)."""
    env = {k: v for k, v in os.environ.items() if k not in ACCESS_ENV}
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=pinned(core),
            env={**env, "PYTHONUNBUFFERED": "1", **credentials.env()},
        )


@contextlib.contextmanager
def serve_variant(
    flags: list[str], core: int, log: Path, credentials: Credentials = NO_CREDENTIALS
) -> Iterator[ServedVariant]:
    """`longpoll serve --port 0 FLAGS` pinned to `core`, with `credentials`' publish token
    and subscribe secret in its environment; stopped with SIGTERM at the end."""
    command = [sys.executable, "-m", "longpoll.cli", "serve", "--port", "0", *flags]
    process = _start(command, core, log, credentials)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (
            match := re.search(r"listening on (http://\S+)", log.read_text(errors="replace"))
        ):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("longpoll serve did not start:\n" + log.read_text())
            time.sleep(0.05)
        shown = [*credentials.shown(), "taskset", "-c", str(core), "longpoll", *command[3:]]
        yield ServedVariant(process.pid, match.group(1), shown, credentials)
    finally:
        stop(process)


def serve_granian(app: str, core: int, log: Path) -> AbstractContextManager[ServedVariant]:
    """granian serving the ASGI factory `app` (``module:function``); see `serve_asgi`."""
    return serve_asgi("granian", [*GRANIAN_FLAGS, app], core, log)


def serve_uvicorn(
    app: str, core: int, log: Path, *flags: str
) -> AbstractContextManager[ServedVariant]:
    """Stock uvicorn serving the ASGI app `app` (``module:attribute``; a factory with the
    flag ``--factory``), with uvloop and httptools and `flags`; see `serve_asgi`."""
    return serve_asgi("uvicorn", [*UVICORN_FLAGS, *flags, app], core, log)


@contextlib.contextmanager
def serve_asgi(server: str, args: list[str], core: int, log: Path) -> Iterator[ServedVariant]:
    """`python -m SERVER ARGS --host 127.0.0.1 --port P` on a free port, pinned to `core`;
    ready once its `/stats` answers; stopped with SIGTERM at the end."""
    for _ in range(ATTEMPTS):
        port = free_port()
        full = [*args, "--host", "127.0.0.1", "--port", str(port)]
        process = _start([sys.executable, "-m", server, *full], core, log)
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + START_TIMEOUT_S
        try:
            while process.poll() is None:  # exited: the port was taken, try another
                if read_waiting(parse_target(url + "/stats"), 1.0) is not None:
                    command = ["taskset", "-c", str(core), server, *full]
                    yield ServedVariant(process.pid, url, command)
                    return
                if time.monotonic() > deadline:
                    late = f"within {START_TIMEOUT_S:.0f} s"
                    raise RuntimeError(f"{server} did not answer on {url} {late}")
                time.sleep(0.05)
        finally:
            stop(process)
    raise RuntimeError(f"{server} did not start ({ATTEMPTS} ports tried):\n" + log.read_text())


def others(
    specs: list[str], paths: list[str], taken: Collection[str], core: int, cores: Collection[int]
) -> dict[str, ServedVariant]:
    """The servers given with `--other NAME=URL[@PID]` (and `--other-paths
    NAME=EVENTS,PUBLISH`), as the suite's scenarios see a server, by name; ValueError for a
    bad one, OSError if nothing answers at its URL. The suite does not start, stop or pin
    them, nor ask them for their waiting subscribers: each is measured as found."""
    found: dict[str, tuple[str, int | None, tuple[str, str]]] = {}
    for spec in specs:
        name, _, rest = spec.partition("=")
        url, at, pid = rest.rpartition("@")
        if not (at and pid.isdigit()):
            url, pid = rest, ""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or not url:
            raise ValueError(f"--other {spec!r}: expected NAME=URL or NAME=URL@PID")
        if name in taken or name in found:
            raise ValueError(f"--other {spec!r}: the name {name!r} is taken")
        try:
            parse_target(url)
        except ValueError as exc:
            raise ValueError(f"--other {spec!r}: {exc}") from exc
        if pid and not psutil.pid_exists(int(pid)):
            raise ValueError(f"--other {spec!r}: no process {pid}")
        found[name] = (url.rstrip("/"), int(pid) if pid else None, ("/events", "/publish"))
    for spec in paths:
        name, _, given = spec.partition("=")
        events, _, publish_path = given.partition(",")
        if name not in found:
            raise ValueError(f"--other-paths {spec!r}: no --other named {name!r}")
        if not (events.startswith("/") and publish_path.startswith("/")):
            raise ValueError(f"--other-paths {spec!r}: expected NAME=/EVENTS,/PUBLISH")
        found[name] = (*found[name][:2], (events, publish_path))
    return {name: _attach(name, *other, core, cores) for name, other in found.items()}


def _attach(
    name: str, url: str, pid: int | None, paths: tuple[str, str], core: int, cores: Collection[int]
) -> ServedVariant:
    """A server the user runs, checked to answer; a warning unless it is alone on `core`."""
    target = parse_target(url)
    try:
        socket.create_connection((target.host, target.port), timeout=5.0).close()
    except OSError as exc:
        raise OSError(f"--other {name}: nothing answers at {url} ({exc})") from exc
    alone, where, command = False, "no pid given: its CPU, memory and cores are unknown", []
    if pid is not None:
        with contextlib.suppress(psutil.Error):
            command = psutil.Process(pid).cmdline()
        try:
            allowed = set(psutil.Process(pid).cpu_affinity() or ())
        except psutil.Error as exc:
            where = f"pid {pid}, cores unknown ({exc})"
        else:
            alone, listed = allowed == {core}, ",".join(map(str, sorted(allowed)))
            shared = ", the load generator's among them" if allowed & set(cores) else ""
            where = (
                f"pid {pid}, pinned to the server core {core}"
                if alone
                else (f"pid {pid}, not pinned: allowed on cores {listed}{shared}")
            )
    if not alone:
        print(
            f"warning: --other {name}: {where}; the suite does not start, stop or pin it: "
            "it is measured as found",
            file=sys.stderr,
        )
    handlers = " and ".join(f"`{path}`" for path in paths)
    shown_command = f"`{shlex.join(command)}` at " if command else ""
    note = f"{shown_command}{url} ({handlers}; {where}), run by the user and measured as found"
    return ServedVariant(pid, url, [], paths=paths, counts_waiters=False, pinned=alone, note=note)
