"""Servers the user runs, any implementation of the wire protocol, in the suite's comparison.

`--other NAME=URL[@PID]` names one; `--other-paths NAME=EVENTS,PUBLISH` its handlers' paths
under URL (default /events and /publish). The suite neither starts, stops nor pins it, and
does not ask it for its waiting subscribers: each is measured as found.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shlex
import socket
from collections.abc import Collection
from dataclasses import dataclass

import psutil

from bench.http import parse_target
from bench.launch import ServedVariant

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True, slots=True)
class Other:
    """A server the user runs: its label in the page, base URL, pid (to read its CPU and
    memory), and its subscribe and publish paths under the URL."""

    label: str
    url: str
    pid: int | None = None
    paths: tuple[str, str] = ("/events", "/publish")


def parse_others(specs: list[str], paths: list[str], taken: Collection[str]) -> list[Other]:
    """`--other` and `--other-paths` values; ValueError for a bad one, a label in `taken`,
    a host that is not loopback, or a pid of no running process."""
    others: dict[str, Other] = {}
    for spec in specs:
        name, _, rest = spec.partition("=")
        url, at, pid = rest.rpartition("@")
        if not (at and pid.isdigit()):
            url, pid = rest, ""
        if not NAME.fullmatch(name) or not url:
            raise ValueError(f"--other {spec!r}: expected NAME=URL or NAME=URL@PID")
        if name in taken or name in others:
            raise ValueError(f"--other {spec!r}: the name {name!r} is taken")
        try:
            parse_target(url)
        except ValueError as exc:
            raise ValueError(f"--other {spec!r}: {exc}") from exc
        if pid and not psutil.pid_exists(int(pid)):
            raise ValueError(f"--other {spec!r}: no process {pid}")
        others[name] = Other(name, url.rstrip("/"), int(pid) if pid else None)
    for spec in paths:
        name, _, given = spec.partition("=")
        events, _, publish = given.partition(",")
        if name not in others:
            raise ValueError(f"--other-paths {spec!r}: no --other named {name!r}")
        if not (events.startswith("/") and publish.startswith("/")):
            raise ValueError(f"--other-paths {spec!r}: expected NAME=/EVENTS,/PUBLISH")
        others[name] = dataclasses.replace(others[name], paths=(events, publish))
    return list(others.values())


def reachable(other: Other) -> None:
    """Raise OSError unless something accepts connections at `other`'s URL."""
    target = parse_target(other.url)
    with socket.create_connection((target.host, target.port), timeout=5.0):
        pass


def placement(other: Other, server_core: int, cores: Collection[int]) -> tuple[bool, str]:
    """Whether `other` may run on the server core only (as the suite's servers do), and
    where it runs, in words."""
    if other.pid is None:
        return False, "no pid given: its CPU, memory and cores are unknown"
    try:
        allowed = set(psutil.Process(other.pid).cpu_affinity() or ())
    except psutil.Error as exc:
        return False, f"pid {other.pid}, cores unknown ({exc})"
    if allowed == {server_core}:
        return True, f"pid {other.pid}, pinned to the server core {server_core}"
    shared = ", the load generator's among them" if allowed & set(cores) else ""
    shown = ",".join(map(str, sorted(allowed)))
    return False, f"pid {other.pid}, not pinned: allowed on cores {shown}{shared}"


def attach(other: Other, server_core: int, cores: Collection[int]) -> ServedVariant:
    """`other` as the suite's scenarios see a server; it answers no stats, so they wait a
    fixed time for their subscribers."""
    pinned, where = placement(other, server_core, cores)
    command: list[str] = []
    if other.pid is not None:
        with contextlib.suppress(psutil.Error):
            command = psutil.Process(other.pid).cmdline()
    shown = f"`{shlex.join(command)}` at " if command else ""
    paths = " and ".join(f"`{path}`" for path in other.paths)
    note = f"{shown}{other.url} ({paths}; {where}), run by the user and measured as found"
    return ServedVariant(
        other.pid, other.url, [], paths=other.paths, counts_waiters=False, pinned=pinned, note=note
    )
