"""Command line: ``python -m bench SCENARIO [options]`` (one scenario against one server),
``python -m bench suite`` (every scenario against every server, then docs/benchmarks.md)
or ``python -m bench report ...``. Against a server with access control, set
LONGPOLL_PUBLISH_TOKEN and LONGPOLL_SUBSCRIBE_SECRET as it has them: every publish then
sends the token, every subscribe a token signed with the secret.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from bench import progress
from bench.credentials import Credentials, refused
from bench.http import HTTPError, Server, parse_target
from bench.page import Record, load_average, machine_facts, write_page
from bench.procs import parse_cores, pin, raise_fd_limit
from bench.report import write_json, write_report
from bench.servers import others, serve_variant
from bench.settings import SCENARIOS
from bench.suite import FULL, OWN, QUICK, RUNNERS, Suite


class RunTimeout(Exception):
    """The whole run exceeded --max-seconds."""


def _server_options(add: Callable[..., Any], takes: str) -> None:
    """The options that say where the server is (`takes`: which of the optional ones)."""
    add("--url", default="http://127.0.0.1:8101", help="server base URL (loopback only)")
    if "events" in takes:
        add("--events-path", default="/events", help="subscribe path under the base URL")
    add("--publish-path", default="/publish", help="publish path under the base URL")
    if "stats" in takes:
        add("--stats-url", help="URL of JSON stats with 'waiting_subscribers' (e.g. .../stats)")
    add("--server-pid", type=int, help="server process id (CPU and RSS of its tree)")
    if "start" in takes:
        start = "start a fresh `longpoll serve --port 0` on this core instead of using --url"
        add("--server-core", type=int, help=start)
        add("--serve-flags", default="", help="flags for that server, e.g. '--ttl 60'")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one subcommand per scenario, and `report` and `suite`."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (none when not a terminal)"
    )
    commands = parser.add_subparsers(dest="scenario", required=True)
    for name, settings in SCENARIOS.items():
        doc = (settings.__doc__ or "").splitlines()[0]
        add = commands.add_parser(name, help=doc, description=doc).add_argument
        if settings.where != "none":
            _server_options(add, settings.where)
        for f in dataclasses.fields(settings):
            if f.metadata.get("cli", True):
                meta = dict(f.metadata)
                kind = meta.pop("type") or type(f.default)
                add(f"--{f.name.replace('_', '-')}", type=kind, default=f.default, **meta)
        add("--max-seconds", type=float, default=settings.max_seconds, help="stop after this")
        add("--json", type=Path, help="also write the results as JSON to this file")
    report = commands.add_parser("report", help="a Markdown table and PNG plots from results")
    report.add_argument("files", nargs="+", metavar="[LABEL=]RESULTS.json", help="--json output")
    report.add_argument("--out", type=Path, required=True, help="directory to write into")
    doc = "every scenario against every server variant; writes docs/benchmarks.md"
    suite = commands.add_parser("suite", help=doc).add_argument
    suite("--out-doc", type=Path, default=Path("docs/benchmarks.md"), help="the page to write")
    suite("--quick", action="store_true", help="tiny sizes and short runs, to check the harness")
    suite("--server-core", type=int, default=0, help="core for every server and redis-server")
    suite("--pin", default="1", help="cores for the load generator (default 1)")
    suite("--max-seconds", type=float, default=900.0, help="stop the whole suite after this")
    suite("--dir", type=Path, help="where server logs and data files go (default: a temp dir)")
    other = "also measure a server you run (any implementation of the protocol), side by side "
    other += "with serve; with its PID, its CPU and memory too (repeatable)"
    suite("--other", action="append", default=[], metavar="NAME=URL[@PID]", help=other)
    paths = "that server's subscribe and publish paths under its URL (default /events,/publish)"
    suite("--other-paths", action="append", default=[], metavar="NAME=EVENTS,PUBLISH", help=paths)
    suite("--only", help=f"only these of the suite's own variants (of {','.join(OWN)})")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit status 1 if a check failed (a missed event, an error), 2 if
    something could not run, 130 when interrupted."""
    args = build_parser().parse_args(argv)
    progress.ENABLED = not args.no_progress
    if args.scenario == "report":
        try:
            written = write_report(args.files, args.out)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print("\n".join(f"wrote {path}" for path in written))
        return 0
    run = _suite if args.scenario == "suite" else _scenario
    if args.scenario == "suite":
        _stop_on_signals()
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


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise RunTimeout("the run exceeded --max-seconds")


def _scenario(args: argparse.Namespace) -> int:
    """One scenario against the server the options give; 1 if anything failed."""
    settings_type = SCENARIOS[args.scenario]
    names = [f.name for f in dataclasses.fields(settings_type) if hasattr(args, f.name)]
    settings = settings_type(**{name: getattr(args, name) for name in names})
    pin(settings.pin)
    raise_fd_limit(64)
    credentials = Credentials.from_env()
    with _server(args, credentials) as (server, note):
        cores = ",".join(map(str, settings.pin or ()))
        pinned = f" and the coordinator pinned to core(s) {cores} (sched_setaffinity, as "
        pinned = f"{pinned}taskset -c {cores} would)" if cores else ", not pinned"
        print(f"{note}\ngenerator: {settings.processes} process(es){pinned}")
        if server is not None:
            print(credentials.note())
        report = RUNNERS[args.scenario](settings, server)
    print(report.text())
    if args.json:
        url = server.target.url if server else None
        write_json(args.json, args.scenario, vars(args) | {"server": note, "url": url}, report)
    if error := refused(report):
        print(error, file=sys.stderr)
    return 1 if report.failed else 0


@contextlib.contextmanager
def _server(args: argparse.Namespace, credentials: Credentials) -> Iterator[tuple[Any, str]]:
    """The server at --url, or a fresh `longpoll serve` on --server-core (stopped after,
    with `credentials`' publish token and subscribe secret); and what the harness did."""
    options = vars(args)
    stats = parse_target(args.stats_url) if options.get("stats_url") else None
    paths = options.get("events_path", "/events"), options.get("publish_path", "/publish")
    if args.scenario == "publish-persist":
        yield None, f"servers started by the harness on core {args.server_core}"
    elif options.get("server_core") is None:
        pid = f"pid {args.server_pid}" if args.server_pid else "no --server-pid: no server CPU"
        server = Server(parse_target(args.url), *paths, stats, args.server_pid, credentials)
        note = f"server at {args.url}, not started by the harness ({pid}; pin it yourself, "
        yield server, note + "e.g. taskset -c 0)"
    else:
        flags, core = shlex.split(args.serve_flags), args.server_core
        with (
            tempfile.TemporaryDirectory(prefix="longpoll-bench-") as workdir,
            serve_variant(flags, core, Path(workdir) / "serve.log", credentials) as served,
        ):
            started = served.server()
            server = dataclasses.replace(
                started, events_path=paths[0], publish_path=paths[1], stats=stats or started.stats
            )
            note = f"server started by the harness on core {core}: {' '.join(served.command)}"
            yield server, f"{note} (pid {served.pid}, {served.url})"


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
            with contextlib.suppress(psutil.Error):
                child.send_signal(signal.SIGINT)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _suite(args: argparse.Namespace) -> int:
    """Run the suite and write the page; 1 if any check failed, 2 if anything could not run."""
    cores, server_core = parse_cores(args.pin), args.server_core
    if server_core not in os.sched_getaffinity(0) or server_core in cores:
        raise ValueError(f"--server-core {server_core} must be an available core, not one of --pin")
    only = frozenset(OWN if args.only is None else filter(None, args.only.split(",")))
    if unknown := only - set(OWN):
        raise ValueError(f"--only: no variant {', '.join(sorted(unknown))} (of {', '.join(OWN)})")
    given = others(args.other, args.other_paths, OWN, server_core, cores)
    started, load_before, facts = time.monotonic(), load_average(), machine_facts(server_core)
    pin(cores)
    raise_fd_limit(64)
    plan = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="longpoll-suite-", dir=args.dir) as workdir:
        show = functools.partial(print, flush=True)
        suite = Suite(plan, server_core, cores, Path(workdir), show, only, given)
        outcomes = suite.run()
    elapsed = time.monotonic() - started
    loads = (load_before, load_average())
    record = Record(outcomes, suite.variants, plan, args.quick, facts, server_core, cores, *loads)
    record = dataclasses.replace(record, elapsed_s=elapsed, others=tuple(given))
    print("\n".join(f"wrote {path}" for path in write_page(record, args.out_doc)))
    if problems := [f"{o.label} {o.scenario}" for o in outcomes if o.failed]:
        print("failed: " + ", ".join(problems), file=sys.stderr)
    print(f"suite took {elapsed:.0f} s")
    return 2 if any(o.error for o in outcomes) else 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
