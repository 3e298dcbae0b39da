"""The `publish` and `publish-persist` subcommands of ``python -m bench``."""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

from bench.credentials import Credentials, refused
from bench.http import parse_target
from bench.load import LOAD_HEADER, load_line
from bench.persist import persist_table, run_persist
from bench.procs import parse_cores
from bench.publish import publish_notes, run_publish
from bench.report import write_json


def _load_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--connections", type=int, default=50, help="concurrent publishers (keep-alive)")
    add("--procs", type=int, default=1, help="load-generator processes")
    add("--pin", help="pin generator processes to these cores, e.g. 1")
    add("--warmup", type=float, default=1.0, help="seconds of publishing before measuring")
    add("--duration", type=float, default=5.0, help="seconds measured")
    add("--max-requests", type=int, default=2_000_000, help="publishes at most, in total")
    add("--payload-bytes", type=int, default=0, help="padding added to the event data")
    add("--max-seconds", type=float, default=600.0, help="stop the whole run after this")
    add("--json", type=Path, help="also write the results as JSON to this file")


def add_publish_parsers(scenarios: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `publish` and `publish-persist`."""
    publish = scenarios.add_parser("publish", help="publish requests/s on C connections")
    publish.add_argument("--url", default="http://127.0.0.1:8101", help="server base URL")
    publish.add_argument("--publish-path", default="/publish", help="publish path")
    publish.add_argument("--category", help="category (default: a fresh random one)")
    publish.add_argument("--server-pid", type=int, help="server process id (its CPU)")
    _load_options(publish)

    persist = scenarios.add_parser(
        "publish-persist",
        help="publish requests/s of longpoll serve: persistence off, on, with --fsync",
    )
    persist.add_argument("--server-core", type=int, default=0, help="core for the server")
    persist.add_argument("--rounds", type=int, default=2, help="runs per variant")
    persist.add_argument("--dir", type=Path, help="directory for the data files")
    persist.add_argument("--flush-period", type=float, help="--flush-period for the server")
    _load_options(persist)


def main_publish(args: argparse.Namespace) -> int:
    """Run `publish` or `publish-persist`; 1 if any publish failed."""
    cores = parse_cores(args.pin) if args.pin else None
    if args.scenario == "publish":
        credentials = Credentials.from_env()
        report = run_publish(
            parse_target(args.url),
            args.publish_path,
            args.category or f"bench-{uuid.uuid4().hex[:8]}",
            connections=args.connections,
            procs=args.procs,
            cores=cores,
            warmup_s=args.warmup,
            duration_s=args.duration,
            max_requests=args.max_requests,
            payload_bytes=args.payload_bytes,
            server_pid=args.server_pid,
            credentials=credentials,
        )
        print(f"publish against {report.url}: {args.connections} connections")
        print(credentials.note())
        print(LOAD_HEADER)
        print(load_line("publish", report))
        print("\n".join(["", *publish_notes()]))
        if args.json:
            write_json(args.json, "publish", vars(args), report)
        if error := refused(report):
            print(error, file=sys.stderr)
        return 1 if report.failed else 0
    persist = run_persist(
        server_core=args.server_core,
        cores=cores,
        procs=args.procs,
        connections=args.connections,
        warmup_s=args.warmup,
        duration_s=args.duration,
        rounds=args.rounds,
        max_requests=args.max_requests,
        payload_bytes=args.payload_bytes,
        directory=args.dir,
        flush_period=args.flush_period,
    )
    print(persist_table(persist, args.connections))
    if args.json:
        write_json(args.json, "publish-persist", vars(args), persist)
    return 1 if persist.failed else 0
