"""Every scenario against every variant, each on a fresh server pinned to the server core.

Variants: `serve` (`longpoll serve`, memory backend), `serve-tokens` (the same with a
publish token and a subscribe secret, every request carrying its token), `asgi-uvicorn`
(`LongpollApp`, memory backend, on stock uvicorn: what users who mount the ASGI app get;
the baseline of the targets), `granian` (that app under granian's ASGI interface),
`redis-1` and `redis-2` (`longpoll serve --redis --workers 1|2` against a private
redis-server on the server core too), `persistence` (`publish-persist`: off, on, with
fsync) and `floor`; and any server the user runs (`bench.external`), side by side with the
first four. The scenarios are the ordinary runners with settings from the plan;
`stream-overload` is `stream` at a rate the servers cannot keep up with; `stream-sse` and
`stream-sse-overload` are the same two streams read as server-sent events (on `serve` and
`asgi-uvicorn`: the others do not serve streams).
"""

from __future__ import annotations

import contextlib
import functools
import json
import shlex
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.credentials import Credentials, refused
from bench.fanout import run_fanout, run_idle_memory
from bench.http import HTTPError, Server
from bench.load import run_catchup, run_publish
from bench.persist import VARIANTS, run_persist
from bench.procs import WorkerError
from bench.redis_server import RedisServer
from bench.report import result_payload
from bench.servers import CoreWatch, ServedVariant, serve_granian, serve_uvicorn, serve_variant
from bench.settings import (
    Catchup,
    Fanout,
    IdleMemory,
    Publish,
    PublishPersist,
    Scenario,
    Stream,
    StreamSSE,
    fresh_category,
)
from bench.stream import run_stream
from bench.targets import TOKENS

MEMORY_APP = "bench.apps:memory_app"
FLOOR_APP = "bench.apps:floor_app"
SCENARIOS = ("fanout", "publish", "catchup", "stream")  # on one server; idle-memory on its own
SSE = ("stream-sse", "stream-sse-overload")  # on the servers that stream server-sent events
PLAIN = (*SCENARIOS, "stream-overload")  # on every memory-backend server
MEMORY_SCENARIOS = (*PLAIN, *SSE)  # the memory backend's servers, in this order
OWN = ("serve", TOKENS, "asgi-uvicorn", "granian", "redis-1", "redis-2", "persistence", "floor")
RUNNERS: dict[str, Callable[[Any, Any], Any]] = {  # settings, server -> report
    "fanout": run_fanout,
    "idle-memory": run_idle_memory,
    "publish": run_publish,
    "catchup": run_catchup,
    "stream": run_stream,
    "stream-overload": run_stream,
    "stream-sse": run_stream,
    "stream-sse-overload": run_stream,
    "publish-persist": lambda settings, _: run_persist(settings),
}


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes and durations of one suite."""

    fanout_sizes: tuple[int, ...]
    redis_fanout_sizes: tuple[int, ...]
    rounds: int
    idle_waiters: int
    idle_warmup: int
    idle_hold_s: float
    connections: int
    lead_s: float  # publish, catch-up: from the start to the first request
    warmup_s: float
    duration_s: float
    catchup_events: int
    stream_subscribers: int
    redis_stream_subscribers: int  # Redis shares the server core: a full stream swamps it
    stream_rate: float
    stream_duration_s: float
    overload_rate: float  # stream-overload: the stream's subscribers at this rate
    overload_duration_s: float
    sse_drain_s: float  # SSE: how long the server may take to catch up after publishing
    persist_rounds: int
    settle_s: float  # wait for subscribers where the server cannot count them (redis-2, --other)


FULL = Plan(
    fanout_sizes=(1000, 5000, 10000),
    redis_fanout_sizes=(1000, 5000),
    rounds=3,
    idle_waiters=10_000,
    idle_warmup=100,
    idle_hold_s=1.0,
    connections=50,
    lead_s=1.5,
    warmup_s=1.0,
    duration_s=3.0,
    catchup_events=100,
    stream_subscribers=1000,
    redis_stream_subscribers=200,
    stream_rate=20.0,
    stream_duration_s=10.0,
    overload_rate=200.0,
    overload_duration_s=5.0,
    sse_drain_s=5.0,
    persist_rounds=2,
    settle_s=2.0,
)

QUICK = Plan(
    fanout_sizes=(50, 100),
    redis_fanout_sizes=(50, 100),
    rounds=1,
    idle_waiters=100,
    idle_warmup=10,
    idle_hold_s=0.2,
    connections=10,
    lead_s=0.4,
    warmup_s=0.1,
    duration_s=0.5,
    catchup_events=20,
    stream_subscribers=20,
    redis_stream_subscribers=20,
    stream_rate=20.0,
    stream_duration_s=1.0,
    overload_rate=200.0,
    overload_duration_s=0.5,
    sse_drain_s=2.0,
    persist_rounds=1,
    settle_s=0.5,
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One scenario against one variant: its results (as in results.json), or its error."""

    label: str
    scenario: str
    payload: dict[str, Any]
    failed: bool
    error: str = ""


@dataclass(frozen=True, slots=True)
class Variant:
    """A server set-up: its label, how it was started, which scenarios ran against it."""

    label: str
    server: str
    scenarios: tuple[str, ...]


Starter = Callable[[Path], AbstractContextManager[ServedVariant]]


@dataclass(frozen=True, slots=True)
class SideBySide:
    """A memory-backend server (or one the user runs) measured side by side with the others:
    how to start it, and its scenarios (of MEMORY_SCENARIOS, and idle-memory on a fresh
    server of its own)."""

    start: Starter
    scenarios: tuple[str, ...] = (*MEMORY_SCENARIOS, "idle-memory")


@dataclass(slots=True)
class Suite:
    """Runs the plan; `show` gets each scenario's text as it finishes."""

    plan: Plan
    server_core: int
    cores: tuple[int, ...]
    workdir: Path
    show: Callable[[str], None]
    only: frozenset[str] = frozenset(OWN)  # which of the suite's own variants run
    others: dict[str, ServedVariant] = field(default_factory=dict)  # `--other` servers
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
            "granian": SideBySide(
                lambda log: serve_granian(MEMORY_APP, core, log), (*PLAIN, "idle-memory")
            ),
        }
        others = {  # idle memory needs the pid, and is measured on the server as found
            label: SideBySide(
                functools.partial(_as_found, other),
                PLAIN + (("idle-memory",) if other.pid else ()),
            )
            for label, other in self.others.items()
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
        log = self.workdir / "floor.log"
        with (
            self._guard("floor", "server"),
            serve_uvicorn(FLOOR_APP, self.server_core, log, "--lifespan", "off") as served,
        ):
            scenarios = ("fanout", "publish", "catchup")
            self.variants.append(Variant("floor", served.shown, scenarios))
            for scenario in scenarios:
                self._run("floor", scenario, served, served.server())

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
                    self.variants.append(Variant(label, served[label].shown, variant.scenarios))
            for scenario in MEMORY_SCENARIOS:
                for label, server in served.items():
                    if scenario in variants[label].scenarios:
                        self._run(label, scenario, server, server.server())
        for label, variant in variants.items():  # idle memory wants a fresh server of its own
            if "idle-memory" in variant.scenarios:
                log = self.workdir / f"{label}.log"
                with self._guard(label, "server"), variant.start(log) as server:
                    self._run(label, "idle-memory", server, server.server(), watch=False)

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
        prefix = fresh_category()
        flags = ["--redis", redis.url, "--redis-prefix", prefix, "--workers", str(workers)]
        log = self.workdir / f"{label}.log"
        with self._guard(label, "server"), serve_variant(flags, self.server_core, log) as served:
            assert redis.process is not None and served.pid is not None
            shown = ["taskset", "-c", str(self.server_core), "redis-server", "--port"]
            shown += [str(redis.port), "--save", "", "--appendonly", "no"]
            server = f"{shlex.join(served.command)}, with {shlex.join(shown)}"
            self.variants.append(Variant(label, server, SCENARIOS))
            # each worker counts only its own waiters: with two, wait `settle_s` instead
            measured = served.server((served.pid, redis.process.pid), counts=workers == 1)
            for scenario in SCENARIOS:
                self._run(label, scenario, served, measured, redis=True)

    def _settings(self, scenario: str, redis: bool) -> Scenario:
        """The settings of `scenario` from the plan (`redis`: its sizes for Redis)."""
        plan = self.plan
        waiting: dict[str, Any] = {
            "pin": self.cores,
            "settle": plan.settle_s,
            "settle_timeout": 30.0,
        }
        if scenario == "fanout":
            sizes = plan.redis_fanout_sizes if redis else plan.fanout_sizes
            return Fanout(**waiting, sizes=sizes, rounds=plan.rounds)
        if scenario == "idle-memory":
            return IdleMemory(
                **waiting, waiters=plan.idle_waiters, warmup=plan.idle_warmup, hold=plan.idle_hold_s
            )
        if scenario == "publish":
            return Publish(**self._loop())
        if scenario == "catchup":
            return Catchup(**self._loop(), events=plan.catchup_events)
        overload = scenario.endswith("-overload")
        if scenario in SSE:
            waiting["drain"] = plan.sse_drain_s
        return (StreamSSE if scenario in SSE else Stream)(
            **waiting,
            subscribers=plan.redis_stream_subscribers if redis else plan.stream_subscribers,
            rate=plan.overload_rate if overload else plan.stream_rate,
            duration=plan.overload_duration_s if overload else plan.stream_duration_s,
        )

    def _loop(self) -> dict[str, Any]:
        """The closed-loop settings that publish, catch-up and persistence share."""
        plan = self.plan
        return {
            "pin": self.cores,
            "connections": plan.connections,
            "warmup": plan.warmup_s,
            "duration": plan.duration_s,
            "lead": plan.lead_s,
        }

    def _run(
        self,
        label: str,
        scenario: str,
        served: ServedVariant,
        server: Server,
        watch: bool = True,
        redis: bool = False,
    ) -> None:
        """Run one scenario; on a server alone on its core, also note what else used it."""
        with self._guard(label, scenario):
            watched = watch and served.pinned and server.pid is not None
            core = CoreWatch(self.server_core, server.pid) if watched and server.pid else None
            report = RUNNERS[scenario](self._settings(scenario, redis), server)
            extra = {"server_core_others": core.others()} if core else {}
            options = {"server": served.shown, "url": served.url}
            self._record(label, scenario, options, report, extra)

    def _record(
        self,
        label: str,
        scenario: str,
        options: Mapping[str, object],
        report: Any,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        payload = {**result_payload(scenario, options, report), **(extra or {})}
        outcome = json.loads(json.dumps(payload, default=str))
        self.outcomes.append(Outcome(label, scenario, outcome, report.failed))
        text = "\n".join(filter(None, (report.text(), refused(report))))
        self.show(f"== {label}: {scenario} ==\n{text}\n")

    def _persistence(self) -> None:
        core = self.server_core
        shown = shlex.join(["taskset", "-c", str(core), "longpoll", "serve"])
        server = f"a fresh `{shown} --port 0` per run, with each of: " + ", ".join(
            f"`{' '.join(flags).replace('{file}', 'FILE')}`" if flags else "no flag"
            for flags in VARIANTS.values()
        )
        self.variants.append(Variant("persistence", server, ("publish-persist",)))
        rounds = self.plan.persist_rounds
        settings = PublishPersist(**self._loop(), server_core=core, rounds=rounds, dir=self.workdir)
        with self._guard("persistence", "publish-persist"):
            report = RUNNERS["publish-persist"](settings, None)
            self._record("persistence", "publish-persist", {"server": server}, report)

    @contextlib.contextmanager
    def _guard(self, label: str, scenario: str) -> Iterator[None]:
        """Record an exception as a failed outcome and carry on with the suite."""
        try:
            yield
        except (WorkerError, RuntimeError, ValueError, HTTPError, OSError, TimeoutError) as exc:
            error = (f"{type(exc).__name__}: {exc}".strip().splitlines() or ["?"])[0]
            self.outcomes.append(Outcome(label, scenario, {}, True, error))
            self.show(f"== {label}: {scenario} == could not run: {error}\n")


def _as_found(other: ServedVariant, log: Path) -> AbstractContextManager[ServedVariant]:
    return contextlib.nullcontext(other)
