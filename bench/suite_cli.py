"""``python -m bench suite``: every scenario against every server, then the benchmarks page."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

import psutil

from bench.external import Other, parse_others, placement, reachable
from bench.machine import load_average, machine_facts
from bench.page import Record, write_page
from bench.plan import FULL, QUICK
from bench.procs import parse_cores, pin, raise_fd_limit
from bench.suite import OWN, Suite


class SuiteTimeout(Exception):
    """The suite exceeded --max-seconds."""


def add_suite_parser(scenarios: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `suite`."""
    suite = scenarios.add_parser(
        "suite",
        help="every scenario against every server variant; writes docs/benchmarks.md",
    )
    add = suite.add_argument
    add("--out-doc", type=Path, default=Path("docs/benchmarks.md"), help="the page to write")
    add("--quick", action="store_true", help="tiny sizes and short windows, to check the harness")
    add("--server-core", type=int, default=0, help="core for every server and redis-server")
    add("--pin", default="1", help="cores for the load generator (default 1)")
    add("--max-seconds", type=float, default=900.0, help="stop the whole suite after this")
    add("--dir", type=Path, help="where server logs and data files go (default: a temp dir)")
    add(
        "--other",
        action="append",
        default=[],
        metavar="NAME=URL[@PID]",
        help="also measure a server you run (any implementation of the protocol), side by "
        "side with serve; with its PID, its CPU and memory too (repeatable)",
    )
    add(
        "--other-paths",
        action="append",
        default=[],
        metavar="NAME=EVENTS,PUBLISH",
        help="that server's subscribe and publish paths under its URL (default /events,/publish)",
    )
    add("--only", help=f"only these of the suite's own variants (of {','.join(OWN)})")


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise SuiteTimeout("the suite exceeded --max-seconds")


def _stop_on_signals() -> None:
    """On SIGINT or SIGTERM: pass SIGINT on to every process the suite started, then unwind
    (so each server is stopped and each worker reaped on the way out)."""
    owner = os.getpid()

    def interrupt(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:  # a forked child: behave as if no handler were set
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        for child in psutil.Process().children(recursive=True):
            try:
                child.send_signal(signal.SIGINT)
            except psutil.Error:
                continue
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def main_suite(args: argparse.Namespace) -> int:
    """Run the suite and write the page; 1 if any check failed, 2 if anything could not run."""
    try:
        cores = parse_cores(args.pin)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server_core: int = args.server_core
    if server_core not in os.sched_getaffinity(0) or server_core in cores:
        print(
            f"error: --server-core {server_core} must be an available core, not one of --pin",
            file=sys.stderr,
        )
        return 2
    try:
        only = _only(args.only)
        others = _others(args.other, args.other_paths, server_core, cores)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    load_before = load_average()
    facts = machine_facts(server_core)
    pin(cores)
    raise_fd_limit(64)
    _stop_on_signals()
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(max(1, int(args.max_seconds)))
    plan = QUICK if args.quick else FULL
    try:
        with tempfile.TemporaryDirectory(prefix="longpoll-suite-", dir=args.dir) as workdir:
            suite = Suite(plan, server_core, cores, Path(workdir), _show, only, tuple(others))
            outcomes = suite.run()
        elapsed = time.monotonic() - started
        record = Record(
            outcomes=outcomes,
            variants=suite.variants,
            plan=plan,
            quick=args.quick,
            facts=facts,
            server_core=server_core,
            cores=cores,
            load_before=load_before,
            load_after=load_average(),
            elapsed_s=elapsed,
            others=tuple(other.label for other in others),
        )
        written = write_page(record, args.out_doc)
    except (SuiteTimeout, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        signal.alarm(0)
    print("\n".join(f"wrote {path}" for path in written))
    problems = [f"{o.label} {o.scenario}" for o in outcomes if o.failed]
    if problems:
        print("failed: " + ", ".join(problems), file=sys.stderr)
    print(f"suite took {elapsed:.0f} s")
    if any(o.error for o in outcomes):
        return 2
    return 1 if problems else 0


def _only(given: str | None) -> frozenset[str]:
    """`--only`'s variants (default: every one)."""
    if given is None:
        return frozenset(OWN)
    only = frozenset(filter(None, given.split(",")))
    if unknown := only - set(OWN):
        raise ValueError(f"--only: no variant {', '.join(sorted(unknown))} (of {', '.join(OWN)})")
    return only


def _others(
    specs: list[str], paths: list[str], server_core: int, cores: tuple[int, ...]
) -> list[Other]:
    """The servers given with `--other`, each answering on its URL; a warning for each one
    that does not run on the server core alone."""
    others = parse_others(specs, paths, OWN)
    for other in others:
        try:
            reachable(other)
        except OSError as exc:
            raise OSError(f"--other {other.label}: nothing answers at {other.url} ({exc})") from exc
        pinned, where = placement(other, server_core, cores)
        if not pinned:
            print(
                f"warning: --other {other.label}: {where}; the suite does not start, stop "
                "or pin it: it is measured as found",
                file=sys.stderr,
            )
    return others


def _show(text: str) -> None:
    print(text, flush=True)
