"""The `catchup` and `stream` subcommands of ``python -m bench``.

Either against a server you started (`--url`, `--server-pid`), or against a fresh
`longpoll serve --port 0` the harness starts pinned to `--server-core` (as
`taskset -c CORE` would) and stops at the end. The output says which. The tokens in
`LONGPOLL_PUBLISH_TOKEN` and `LONGPOLL_SUBSCRIBE_SECRET`, if set, are sent (and given to
the server the harness starts).
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.catchup import SINCE_CHOICES, CatchupReport, run_catchup
from bench.credentials import Credentials, refused
from bench.http import Target, parse_target
from bench.launch import serve_variant
from bench.load import LOAD_HEADER, load_line, load_notes
from bench.procs import parse_cores, pin
from bench.report import write_json
from bench.stream import run_stream, stream_table


def _server_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--url", default="http://127.0.0.1:8101", help="server base URL (loopback only)")
    add("--events-path", default="/events", help="subscribe path under the base URL")
    add("--publish-path", default="/publish", help="publish path under the base URL")
    add("--server-pid", type=int, help="server process id (its CPU)")
    add(
        "--server-core",
        type=int,
        help="start a fresh `longpoll serve --port 0` on this core instead of using --url",
    )
    add("--serve-flags", default="", help="extra flags for the started server, e.g. '--ttl 60'")
    add("--category", help="category (default: a fresh random one)")
    add("--pin", help="pin generator processes (and the coordinator) to these cores, e.g. 1")
    add("--payload-bytes", type=int, default=0, help="padding added to each event's data")
    add("--max-seconds", type=float, default=600.0, help="stop the whole run after this")
    add("--json", type=Path, help="also write the results as JSON to this file")


def add_read_parsers(scenarios: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `catchup` and `stream`."""
    catchup = scenarios.add_parser(
        "catchup", help="requests/s of subscribe requests answered at once from the buffer"
    )
    _server_options(catchup)
    add = catchup.add_argument
    add("--events", type=int, default=100, help="events published first (default 100)")
    add("--since", choices=SINCE_CHOICES, default="all", help="since_time=-1, or after event 1")
    add("--poll-timeout", type=int, default=5, help="subscribe timeout= seconds")
    add("--connections", type=int, default=50, help="concurrent subscribers (keep-alive)")
    add("--procs", type=int, default=1, help="load-generator processes")
    add("--warmup", type=float, default=1.0, help="seconds of requests before measuring")
    add("--duration", type=float, default=5.0, help="seconds measured")
    add("--max-requests", type=int, default=2_000_000, help="requests at most, in total")

    stream = scenarios.add_parser(
        "stream", help="K subscribers in resume loops while R events/s are published"
    )
    _server_options(stream)
    add = stream.add_argument
    add("--subscribers", type=int, default=1000, help="K subscribers, one connection each")
    add("--rate", type=float, default=20.0, help="R events published per second")
    add("--duration", type=float, default=10.0, help="T seconds of publishing")
    add("--max-events", type=int, default=100_000, help="events published at most")
    add("--poll-timeout", type=int, default=30, help="subscribe timeout= seconds")
    add("--procs", type=int, help="subscriber processes (default: one per --pin core, else 2)")
    add("--stats-url", help="URL of JSON stats with 'waiting_subscribers' (e.g. .../stats)")
    add("--settle", type=float, default=0.5, help="seconds to wait for subscribers without stats")
    add("--settle-timeout", type=float, default=30.0, help="max seconds to poll stats")
    add("--drain", type=float, default=10.0, help="max seconds after publishing for the tail")
    add("--connect-concurrency", type=int, default=256, help="connects in flight per process")
    add("--connect-timeout", type=float, default=10.0, help="seconds per connect attempt")


@dataclass(frozen=True, slots=True)
class Served:
    """The server under test and what the harness did about it."""

    target: Target
    pid: int | None
    stats: Target | None
    note: str


@contextlib.contextmanager
def _server(args: argparse.Namespace, credentials: Credentials) -> Iterator[Served]:
    """The server at --url, or a fresh `longpoll serve` on --server-core (stopped after),
    with `credentials`' publish token and subscribe secret."""
    stats = getattr(args, "stats_url", None)
    if args.server_core is None:
        where = f"server at {args.url}, not started by the harness"
        pid = f"pid {args.server_pid}" if args.server_pid else "no --server-pid: no server CPU"
        yield Served(
            parse_target(args.url),
            args.server_pid,
            parse_target(stats) if stats else None,
            f"{where} ({pid}; pin it yourself, e.g. taskset -c 0)",
        )
        return
    with (
        tempfile.TemporaryDirectory(prefix="longpoll-bench-") as workdir,
        serve_variant(
            shlex.split(args.serve_flags),
            args.server_core,
            Path(workdir) / "serve.log",
            credentials,
        ) as served,
    ):
        target = parse_target(served.url)
        yield Served(
            target,
            served.pid,
            parse_target(stats) if stats else parse_target(served.url + "/stats"),
            f"server started by the harness on core {args.server_core}: "
            f"{' '.join(served.command)} (pid {served.pid}, {served.url})",
        )


def _generator_note(cores: tuple[int, ...] | None, procs: int) -> str:
    if not cores:
        return f"generator: {procs} process(es), not pinned"
    listed = ",".join(map(str, cores))
    return (
        f"generator: {procs} process(es) and the coordinator pinned to core(s) {listed} "
        f"(sched_setaffinity, as taskset -c {listed} would)"
    )


def main_read(args: argparse.Namespace) -> int:
    """Run `catchup` or `stream`; 1 if anything failed, missed or was duplicated."""
    cores = parse_cores(args.pin) if args.pin else None
    pin(cores)
    category = args.category or f"bench-{uuid.uuid4().hex[:8]}"
    credentials = Credentials.from_env()
    with _server(args, credentials) as served:
        server_pid = args.server_pid if args.server_core is None else served.pid
        if args.scenario == "catchup":
            catchup = run_catchup(
                served.target,
                args.events_path,
                args.publish_path,
                category,
                events=args.events,
                since=args.since,
                poll_timeout_s=args.poll_timeout,
                payload_bytes=args.payload_bytes,
                connections=args.connections,
                procs=args.procs,
                cores=cores,
                warmup_s=args.warmup,
                duration_s=args.duration,
                max_requests=args.max_requests,
                server_pid=server_pid,
                credentials=credentials,
            )
            print(served.note)
            print(_generator_note(cores, catchup.load.procs))
            print(credentials.note())
            print(_catchup_text(catchup, args.connections))
            if args.json:
                write_json(args.json, "catchup", _options(args, served), catchup)
            if error := refused(catchup):
                print(error, file=sys.stderr)
            return 1 if catchup.failed else 0
        procs = args.procs if args.procs is not None else len(cores) if cores else 2
        stream = run_stream(
            served.target,
            args.events_path,
            args.publish_path,
            category,
            subscribers=args.subscribers,
            rate=args.rate,
            duration_s=args.duration,
            max_events=args.max_events,
            poll_timeout_s=args.poll_timeout,
            payload_bytes=args.payload_bytes,
            procs=procs,
            cores=cores,
            connect_concurrency=args.connect_concurrency,
            connect_timeout_s=args.connect_timeout,
            stats=served.stats,
            settle_s=args.settle,
            settle_timeout_s=args.settle_timeout,
            drain_s=args.drain,
            server_pid=server_pid,
            credentials=credentials,
        )
        print(served.note)
        print(_generator_note(cores, stream.procs))
        print(credentials.note())
        print(stream_table(stream))
        if args.json:
            write_json(args.json, "stream", _options(args, served), stream)
        if error := refused(stream):
            print(error, file=sys.stderr)
        return 1 if stream.failed else 0


def _options(args: argparse.Namespace, served: Served) -> dict[str, object]:
    return {**vars(args), "server": served.note, "resolved_url": served.target.url}


def _catchup_text(report: CatchupReport, connections: int) -> str:
    return "\n".join(
        [
            f"catchup: {connections} connections, GET {report.query}",
            f"{report.events_published} events published first; one answer carries "
            f"{report.events_per_response} events, {report.response_bytes} bytes",
            LOAD_HEADER,
            load_line("catchup", report.load),
            "",
            *load_notes("catch-up requests"),
        ]
    )
