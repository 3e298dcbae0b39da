"""Command line: ``python -m bench SCENARIO [options]``, ``python -m bench report ...``
or ``python -m bench suite`` (every scenario against every server, then docs/benchmarks.md).

Scenarios: fanout, idle-memory, publish, publish-persist, catchup, stream. Against a
server with access control, set LONGPOLL_PUBLISH_TOKEN and LONGPOLL_SUBSCRIBE_SECRET as it
has them: every publish then sends the token, every subscribe a token signed with the secret.
"""

from __future__ import annotations

import argparse
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from bench import progress
from bench.credentials import Credentials, refused
from bench.fanout import run_fanout
from bench.http import HTTPError, TargetError, parse_target
from bench.memory import run_idle_memory
from bench.options import RunOptions
from bench.procs import WorkerError, parse_cores, pin, raise_fd_limit
from bench.publish_cli import add_publish_parsers, main_publish
from bench.read_cli import add_read_parsers, main_read
from bench.report import fanout_table, memory_table, write_json
from bench.suite_cli import add_suite_parser, main_suite
from bench.summary import write_report


class RunTimeout(Exception):
    """The whole run exceeded --max-seconds."""


def _sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive integers, e.g. 1000,5000")
    return sizes


def _common(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--url", default="http://127.0.0.1:8101", help="server base URL (loopback only)")
    add("--events-path", default="/events", help="subscribe path under the base URL")
    add("--publish-path", default="/publish", help="publish path under the base URL")
    add("--stats-url", help="URL of JSON stats with 'waiting_subscribers' (e.g. .../stats)")
    add("--category", help="category to use (default: a fresh random one)")
    add(
        "--procs",
        type=int,
        help="load-generator worker processes (default: one per --pin core, else 2)",
    )
    add("--pin", help="pin generator processes to these cores, e.g. 1 or 1,2")
    add("--poll-timeout", type=int, default=100, help="subscribe timeout= seconds")
    add("--settle", type=float, default=3.0, help="seconds to wait for waiters without stats")
    add("--settle-timeout", type=float, default=60.0, help="max seconds to poll stats")
    add("--collect-timeout", type=float, default=30.0, help="max seconds to wait for deliveries")
    add("--connect-concurrency", type=int, default=256, help="connects in flight per process")
    add("--connect-timeout", type=float, default=10.0, help="seconds per connect attempt")
    add("--payload-bytes", type=int, default=0, help="padding added to the event data")
    add("--server-pid", type=int, help="server process id (CPU and RSS of its tree)")
    add("--max-seconds", type=float, default=1800.0, help="stop the whole run after this")
    add("--json", type=Path, help="also write the results as JSON to this file")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subcommand per scenario."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (none when not a terminal)"
    )
    scenarios = parser.add_subparsers(dest="scenario", required=True)
    fanout = scenarios.add_parser("fanout", help="one publish to N waiting subscribers")
    _common(fanout)
    fanout.add_argument("--sizes", type=_sizes, default=[1000, 5000, 10000], help="N values")
    fanout.add_argument("--rounds", type=int, default=3, help="rounds per N (default 3)")
    memory = scenarios.add_parser("idle-memory", help="server RSS per waiting subscriber")
    _common(memory)
    memory.add_argument("--waiters", type=int, default=10000, help="waiting subscribers")
    memory.add_argument("--warmup", type=int, default=100, help="warm-up round size (0: none)")
    memory.add_argument("--hold", type=float, default=1.0, help="seconds to hold before RSS")
    add_publish_parsers(scenarios)
    add_read_parsers(scenarios)
    report = scenarios.add_parser(
        "report", help="a Markdown table and PNG plots from result JSON files"
    )
    report.add_argument("files", nargs="+", metavar="[LABEL=]RESULTS.json", help="--json output")
    report.add_argument("--out", type=Path, required=True, help="directory to write into")
    add_suite_parser(scenarios)
    return parser


def options_from(args: argparse.Namespace) -> RunOptions:
    """Validate the common arguments into `RunOptions`."""
    cores = parse_cores(args.pin) if args.pin else None
    procs = args.procs if args.procs is not None else len(cores) if cores else 2
    if procs < 1:
        raise ValueError("--procs must be at least 1")
    if args.poll_timeout < 1:
        raise ValueError("--poll-timeout must be at least 1")
    return RunOptions(
        target=parse_target(args.url),
        events_path=args.events_path,
        publish_path=args.publish_path,
        stats=parse_target(args.stats_url) if args.stats_url else None,
        category=args.category or f"bench-{uuid.uuid4().hex[:8]}",
        procs=procs,
        pin=cores,
        poll_timeout_s=args.poll_timeout,
        settle_s=args.settle,
        settle_timeout_s=args.settle_timeout,
        collect_timeout_s=args.collect_timeout,
        connect_concurrency=args.connect_concurrency,
        connect_timeout_s=args.connect_timeout,
        payload_bytes=args.payload_bytes,
        server_pid=args.server_pid,
        max_seconds=args.max_seconds,
        credentials=Credentials.from_env(),
    )


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise RunTimeout("the run exceeded --max-seconds")


def main(argv: list[str] | None = None) -> int:
    """Run one scenario; exit status 1 if any subscriber missed its event, 2 on failure."""
    args = build_parser().parse_args(argv)
    progress.ENABLED = not args.no_progress
    if args.scenario == "report":
        return _report(args.files, args.out)
    if args.scenario == "suite":
        return main_suite(args)
    if args.scenario in ("publish", "publish-persist"):
        return _bounded(main_publish, args)
    if args.scenario in ("catchup", "stream"):
        return _bounded(main_read, args)
    try:
        opts = options_from(args)
    except (TargetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pin(opts.pin)
    raise_fd_limit(64)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(max(1, int(opts.max_seconds)))
    try:
        print(opts.credentials.note())
        if args.scenario == "fanout":
            fanout = run_fanout(opts, args.sizes, args.rounds)
            print(fanout_table(fanout))
            if args.json:
                write_json(args.json, "fanout", vars(args), fanout)
            if error := refused(fanout):
                print(error, file=sys.stderr)
            return 1 if fanout.failed else 0
        memory = run_idle_memory(opts, args.waiters, args.warmup, args.hold)
        print(memory_table(memory))
        if args.json:
            write_json(args.json, "idle-memory", vars(args), memory)
        if error := refused(memory):
            print(error, file=sys.stderr)
        return 1 if memory.errors or memory.sent < memory.waiters else 0
    except (WorkerError, RunTimeout, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        signal.alarm(0)


def _report(files: list[str], out: Path) -> int:
    try:
        written = write_report(files, out)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(f"wrote {path}" for path in written))
    return 0


def _bounded(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a publish scenario under --max-seconds; exit status 2 when the run fails."""
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(max(1, int(args.max_seconds)))
    try:
        return run(args)
    except (RunTimeout, ValueError, RuntimeError, OSError, HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        signal.alarm(0)


if __name__ == "__main__":
    sys.exit(main())
