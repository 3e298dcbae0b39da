"""Starting the servers under test, each pinned to one core, and stopping them."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from bench.credentials import ACCESS_ENV, NO_CREDENTIALS, Credentials
from bench.http import parse_target
from bench.server import ServerPid, read_waiting
from bench.settings import Server

_PR_SET_PDEATHSIG = 1
START_TIMEOUT_S = 20.0


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
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

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


_LISTENING = re.compile(r"listening on (http://\S+)")


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
        while True:
            match = _LISTENING.search(log.read_text(errors="replace"))
            if match:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("longpoll serve did not start:\n" + log.read_text())
            time.sleep(0.05)
        shown = [*credentials.shown(), "taskset", "-c", str(core), "longpoll", *command[3:]]
        yield ServedVariant(process.pid, match.group(1), shown, credentials)
    finally:
        stop(process)


GRANIAN_FLAGS = [
    "--interface", "asgi", "--loop", "uvloop", "--http", "1", "--backpressure", "20000",
    "--backlog", "20000", "--no-ws", "--factory",
]  # fmt: skip
UVICORN_FLAGS = [
    "--loop", "uvloop", "--http", "httptools", "--ws", "none", "--no-access-log",
    "--log-level", "warning",
]  # fmt: skip
ATTEMPTS = 3  # ports tried: a free port may be taken before the server binds it


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
        url = f"http://127.0.0.1:{port}"
        try:
            if _answers(server, process, url):
                yield ServedVariant(process.pid, url, ["taskset", "-c", str(core), server, *full])
                return
        finally:
            stop(process)
    raise RuntimeError(f"{server} did not start ({ATTEMPTS} ports tried):\n" + log.read_text())


def _answers(server: str, process: subprocess.Popen[bytes], url: str) -> bool:
    """True once `url`/stats answers; False if the process exits first (port taken)."""
    stats = parse_target(url + "/stats")
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if read_waiting(stats, 1.0) is not None:
            return True
        time.sleep(0.05)
    raise RuntimeError(f"{server} did not answer on {url} within {START_TIMEOUT_S:.0f} s")
