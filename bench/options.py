"""Options shared by every scenario, and the worker configs they imply."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.credentials import NO_CREDENTIALS, Credentials
from bench.http import Target, subscribe_request
from bench.procs import Workers
from bench.server import ServerPid
from bench.waiters import WaiterConfig, waiters_job


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Where the server is and how the load generator behaves."""

    target: Target
    events_path: str
    publish_path: str
    stats: Target | None
    category: str
    procs: int
    pin: tuple[int, ...] | None
    poll_timeout_s: int
    settle_s: float
    settle_timeout_s: float
    collect_timeout_s: float
    connect_concurrency: int
    connect_timeout_s: float
    payload_bytes: int
    server_pid: ServerPid | None
    max_seconds: float
    credentials: Credentials = NO_CREDENTIALS  # the tokens every request carries

    def workers(self, max_subscribers: int) -> Workers[WaiterConfig]:
        """The worker processes, with room for `max_subscribers` in total."""
        request = subscribe_request(
            self.target,
            self.events_path,
            self.category,
            self.poll_timeout_s,
            token=self.credentials.subscribe_token(self.category),
        )
        config = WaiterConfig(
            self.target, request, self.connect_concurrency, self.connect_timeout_s
        )
        files = math.ceil(max_subscribers / self.procs) + 64
        return Workers(waiters_job, [config] * self.procs, self.pin, files)

    @property
    def open_budget_s(self) -> float:
        """How long a worker may spend opening its connections for one round."""
        return 3 * self.connect_timeout_s + 30

    @property
    def subscribe_wait_s(self) -> float:
        """How long the coordinator waits for workers to report their requests sent."""
        return self.open_budget_s + 15
