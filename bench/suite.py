"""Every scenario against every variant, each on a fresh server pinned to the server core.

Variants: `serve` (`longpoll serve`, memory backend), `serve-tokens` (the same with a
publish token and a subscribe secret, every request carrying its token), `asgi-uvicorn`
(`LongpollApp`, memory backend, on stock uvicorn: what users who mount the ASGI app get;
the baseline of the targets), `granian` (that app under granian's ASGI interface),
`redis-1` and `redis-2` (`longpoll serve --redis --workers 1|2` against a private
redis-server on the server core too), `persistence` (`publish-persist`: off, on, with
fsync) and `floor`; and any server the user runs (`bench.external`), side by side with the
first four. The scenarios are the ordinary runners; `stream-overload` is `stream` at a rate
the servers cannot keep up with.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shlex
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.catchup import run_catchup
from bench.credentials import NO_CREDENTIALS, Credentials, refused
from bench.external import Other, attach
from bench.fanout import run_fanout
from bench.http import HTTPError, Target, parse_target
from bench.launch import ServedVariant, serve_granian, serve_uvicorn, serve_variant
from bench.load import LOAD_HEADER, load_line
from bench.memory import run_idle_memory
from bench.options import RunOptions
from bench.persist import VARIANTS, persist_table, run_persist
from bench.plan import Outcome, Plan, Variant
from bench.procs import WorkerError
from bench.publish import run_publish
from bench.redis_server import RedisServer
from bench.report import fanout_table, memory_table, result_payload
from bench.server import CoreWatch, ServerPid
from bench.stream import run_stream, stream_table
from bench.targets import TOKENS

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

MEMORY_APP = "bench.apps:memory_app"
FLOOR_APP = "bench.apps:floor_app"
MAX_REQUESTS = 2_000_000


SCENARIOS = ("fanout", "publish", "catchup", "stream")  # on one server; idle-memory on its own
MEMORY_SCENARIOS = (*SCENARIOS, "stream-overload")  # the memory backend's servers
OWN = ("serve", TOKENS, "asgi-uvicorn", "granian", "redis-1", "redis-2", "persistence", "floor")

Measured = tuple["DataclassInstance", bool, str]  # the report, whether it failed, its text
Starter = Callable[[Path], AbstractContextManager[ServedVariant]]


@dataclass(frozen=True, slots=True)
class SideBySide:
    """A memory-backend server (or one the user runs) measured side by side with the others:
    how to start it, and its scenarios (of MEMORY_SCENARIOS, and idle-memory on a fresh
    server of its own)."""

    start: Starter
    scenarios: tuple[str, ...] = (*MEMORY_SCENARIOS, "idle-memory")


@dataclass(frozen=True, slots=True)
class Where:
    """A running server as a scenario sees it."""

    target: Target
    paths: tuple[str, str]  # subscribe, publish
    stats: Target | None  # None: wait `Plan.settle_s` for the subscribers instead
    pid: ServerPid | None
    credentials: Credentials = NO_CREDENTIALS


@dataclass(slots=True)
class Suite:
    """Runs the plan; `show` gets each scenario's text as it finishes."""

    plan: Plan
    server_core: int
    cores: tuple[int, ...]
    workdir: Path
    show: Callable[[str], None]
    only: frozenset[str] = frozenset(OWN)  # which of the suite's own variants run
    others: tuple[Other, ...] = ()  # servers the user runs, side by side with `serve`
    outcomes: list[Outcome] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=list)

    def run(self) -> list[Outcome]:
        """Every variant in turn; a scenario that cannot run is recorded, and the suite goes on."""
        core, credentials = self.server_core, Credentials.fresh()
        own = {
            "serve": SideBySide(lambda log: serve_variant([], core, log)),
            TOKENS: SideBySide(lambda log: serve_variant([], core, log, credentials), SCENARIOS),
            "asgi-uvicorn": SideBySide(
                lambda log: serve_uvicorn(MEMORY_APP, core, log, "--factory", "--lifespan", "on")
            ),
            "granian": SideBySide(lambda log: serve_granian(MEMORY_APP, core, log)),
        }
        others = {  # idle memory needs the pid, and is measured on the server as found
            other.label: SideBySide(
                functools.partial(_attached, other, core, self.cores),
                MEMORY_SCENARIOS + (("idle-memory",) if other.pid else ()),
            )
            for other in self.others
        }
        self._memory_variants({k: v for k, v in own.items() if k in self.only} | others)
        if {"redis-1", "redis-2"} & self.only:
            self._redis_variants()
        if "persistence" in self.only:
            self._persistence()
        if "floor" in self.only:
            self._floor()
        return self.outcomes

    def _floor(self) -> None:
        """Fan-out, publish and catch-up against an app that does the least, on stock uvicorn."""
        label = "floor"
        with (
            self._guard(label, "server"),
            serve_uvicorn(
                FLOOR_APP, self.server_core, self.workdir / "floor.log", "--lifespan", "off"
            ) as served,
        ):
            scenarios = ("fanout", "publish", "catchup")
            self.variants.append(Variant(label, _server(served), scenarios))
            for scenario in scenarios:
                sizes = self.plan.fanout_sizes
                self._scenario(scenario, label, served, served.pid, sizes, 0, True)

    def _memory_variants(self, variants: dict[str, SideBySide]) -> None:
        """The memory backend on each server (and the user's servers). They run side by side
        (idle while another is measured), scenario by scenario, so that the figures they are
        compared by are measured close together in time on a machine whose speed varies."""
        with contextlib.ExitStack() as running:
            served: dict[str, ServedVariant] = {}
            for label, variant in variants.items():
                with self._guard(label, "server"):
                    log = self.workdir / f"{label}.log"
                    served[label] = running.enter_context(variant.start(log))
                    self.variants.append(Variant(label, _server(served[label]), variant.scenarios))
            for scenario in MEMORY_SCENARIOS:
                for label, server in served.items():
                    if scenario not in variants[label].scenarios:
                        continue
                    sizes, subscribers = self.plan.fanout_sizes, self.plan.stream_subscribers
                    self._scenario(scenario, label, server, server.pid, sizes, subscribers, True)
        # Idle memory wants a fresh server of its own.
        for label, variant in variants.items():
            if "idle-memory" not in variant.scenarios:
                continue
            log = self.workdir / f"{label}.log"
            with self._guard(label, "server"), variant.start(log) as server:
                idle = functools.partial(self._idle, _where(server, server.pid, True))
                self._run(label, "idle-memory", _options(server), idle)

    def _redis_variants(self) -> None:
        redis = RedisServer(self.workdir, self.server_core)
        try:
            with self._guard("redis", "server"):
                redis.start()
                for workers in (1, 2):
                    if f"redis-{workers}" in self.only:
                        self._redis_variant(redis, workers)
        finally:
            redis.stop()

    def _redis_variant(self, redis: RedisServer, workers: int) -> None:
        label = f"redis-{workers}"
        flags = ["--redis", redis.url, "--redis-prefix", _category(), "--workers", str(workers)]
        log = self.workdir / f"{label}.log"
        with self._guard(label, "server"), serve_variant(flags, self.server_core, log) as served:
            assert redis.process is not None and served.pid is not None
            shown = ["taskset", "-c", str(self.server_core), "redis-server", "--port"]
            shown += [str(redis.port), "--save", "", "--appendonly", "no"]
            server = f"{shlex.join(served.command)}, with {shlex.join(shown)}"
            self.variants.append(Variant(label, server, SCENARIOS))
            pids = (served.pid, redis.process.pid)
            sizes = self.plan.redis_fanout_sizes
            # each worker counts only its own waiters: with two, wait `settle_s` instead
            subscribers = self.plan.redis_stream_subscribers
            for scenario in SCENARIOS:
                self._scenario(scenario, label, served, pids, sizes, subscribers, workers == 1)

    def _scenario(
        self,
        scenario: str,
        label: str,
        served: ServedVariant,
        pid: ServerPid | None,
        sizes: tuple[int, ...],
        stream_subscribers: int,
        counts_waiters: bool,
    ) -> None:
        where, plan = _where(served, pid, counts_waiters), self.plan
        stream = functools.partial(self._stream, where, stream_subscribers)
        measures: dict[str, Callable[[], Measured]] = {
            "fanout": lambda: self._fanout(where, sizes),
            "publish": lambda: self._publish(where),
            "catchup": lambda: self._catchup(where),
            "stream": lambda: stream(plan.stream_rate, plan.stream_duration_s),
            "stream-overload": lambda: stream(plan.overload_rate, plan.overload_duration_s),
        }
        watched = pid if served.pinned else None
        self._run(label, scenario, _options(served), measures[scenario], watched)

    def _run(
        self,
        label: str,
        scenario: str,
        options: dict[str, object],
        measure: Callable[[], Measured],
        pid: ServerPid | None = None,
    ) -> None:
        """Run one scenario; with the server's `pid`, also note what else used its core."""
        with self._guard(label, scenario):
            watch = CoreWatch(self.server_core, pid) if pid is not None else None
            report, failed, text = measure()
            text = "\n".join(filter(None, (text, refused(report))))
            payload = result_payload(scenario, options, report)
            if watch is not None:
                payload["server_core_others"] = watch.others()
            self.outcomes.append(
                Outcome(label, scenario, json.loads(json.dumps(payload, default=str)), failed)
            )
            self.show(f"== {label}: {scenario} ==\n{text}\n")

    def _run_options(self, where: Where) -> RunOptions:
        return RunOptions(
            target=where.target,
            events_path=where.paths[0],
            publish_path=where.paths[1],
            stats=where.stats,
            category=_category(),
            procs=len(self.cores),
            pin=self.cores,
            poll_timeout_s=100,
            settle_s=self.plan.settle_s,
            settle_timeout_s=30.0,
            collect_timeout_s=30.0,
            connect_concurrency=256,
            connect_timeout_s=10.0,
            payload_bytes=0,
            server_pid=where.pid,
            max_seconds=600.0,
            credentials=where.credentials,
        )

    def _fanout(self, where: Where, sizes: tuple[int, ...]) -> Measured:
        report = run_fanout(self._run_options(where), list(sizes), self.plan.rounds)
        return report, report.failed, fanout_table(report)

    def _idle(self, where: Where) -> Measured:
        plan = self.plan
        opts = self._run_options(where)
        report = run_idle_memory(opts, plan.idle_waiters, plan.idle_warmup, plan.idle_hold_s)
        failed = bool(report.errors) or report.sent < report.waiters
        return report, failed, memory_table(report)

    def _load(self, where: Where) -> dict[str, Any]:
        """The closed-loop load settings that publish and catch-up share."""
        plan = self.plan
        return {
            "connections": plan.connections,
            "procs": 1,
            "cores": self.cores,
            "warmup_s": plan.warmup_s,
            "duration_s": plan.duration_s,
            "max_requests": MAX_REQUESTS,
            "server_pid": where.pid,
            "lead_s": plan.lead_s,
            "credentials": where.credentials,
        }

    def _publish(self, where: Where) -> Measured:
        report = run_publish(where.target, where.paths[1], _category(), **self._load(where))
        return report, report.failed, f"{LOAD_HEADER}\n{load_line('publish', report)}"

    def _catchup(self, where: Where) -> Measured:
        report = run_catchup(
            where.target,
            *where.paths,
            _category(),
            events=self.plan.catchup_events,
            since="all",
            poll_timeout_s=5,
            payload_bytes=0,
            **self._load(where),
        )
        return report, report.failed, f"{LOAD_HEADER}\n{load_line('catchup', report.load)}"

    def _stream(self, where: Where, subscribers: int, rate: float, duration_s: float) -> Measured:
        report = run_stream(
            where.target,
            *where.paths,
            _category(),
            subscribers=subscribers,
            rate=rate,
            duration_s=duration_s,
            max_events=100_000,
            poll_timeout_s=30,
            payload_bytes=0,
            procs=len(self.cores),
            cores=self.cores,
            connect_concurrency=256,
            connect_timeout_s=10.0,
            stats=where.stats,
            settle_s=self.plan.settle_s,
            settle_timeout_s=30.0,
            drain_s=10.0,
            server_pid=where.pid,
            credentials=where.credentials,
        )
        return report, report.failed, stream_table(report)

    def _persistence(self) -> None:
        plan = self.plan
        shown = shlex.join(["taskset", "-c", str(self.server_core), "longpoll", "serve"])
        server = f"a fresh `{shown} --port 0` per run, with each of: " + ", ".join(
            f"`{' '.join(flags).replace('{file}', 'FILE')}`" if flags else "no flag"
            for flags in VARIANTS.values()
        )
        self.variants.append(Variant("persistence", server, ("publish-persist",)))

        def measure() -> Measured:
            report = run_persist(
                server_core=self.server_core,
                cores=self.cores,
                procs=1,
                connections=plan.connections,
                warmup_s=plan.warmup_s,
                duration_s=plan.duration_s,
                rounds=plan.persist_rounds,
                max_requests=MAX_REQUESTS,
                payload_bytes=0,
                directory=self.workdir,
                flush_period=None,
                lead_s=plan.lead_s,
            )
            return report, report.failed, persist_table(report, plan.connections)

        self._run("persistence", "publish-persist", {"server": server}, measure)

    @contextlib.contextmanager
    def _guard(self, label: str, scenario: str) -> Iterator[None]:
        """Record an exception as a failed outcome and carry on with the suite."""
        try:
            yield
        except (WorkerError, RuntimeError, ValueError, HTTPError, OSError, TimeoutError) as exc:
            error = (f"{type(exc).__name__}: {exc}".strip().splitlines() or ["?"])[0]
            self.outcomes.append(Outcome(label, scenario, {}, True, error))
            self.show(f"== {label}: {scenario} == could not run: {error}\n")


def _attached(
    other: Other, core: int, cores: tuple[int, ...], log: Path
) -> AbstractContextManager[ServedVariant]:
    return contextlib.nullcontext(attach(other, core, cores))


def _where(served: ServedVariant, pid: ServerPid | None, counts_waiters: bool) -> Where:
    """How the scenarios reach `served`; they ask its /stats for the waiting subscribers
    only when it answers that and `counts_waiters` (else they wait a fixed time)."""
    counts = counts_waiters and served.counts_waiters
    stats = parse_target(served.url + "/stats") if counts else None
    return Where(parse_target(served.url), served.paths, stats, pid, served.credentials)


def _server(served: ServedVariant) -> str:
    """How `served` ran, for the page."""
    return served.note or shlex.join(served.command)


def _options(served: ServedVariant) -> dict[str, object]:
    return {"server": _server(served), "url": served.url}


def _category() -> str:
    return f"bench-{uuid.uuid4().hex[:8]}"
