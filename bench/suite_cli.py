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

from bench.machine import load_average, machine_facts
from bench.page import Record, write_page
from bench.suite import FULL, QUICK, Suite
from bench.system import parse_cores, pin, raise_fd_limit


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
            suite = Suite(plan, server_core, cores, Path(workdir), show=_show)
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


def _show(text: str) -> None:
    print(text, flush=True)
