"""`longpoll serve --persist FILE` killed while publishing: what comes back after a restart.

A real server process, a publisher thread in the test publishing one event after
another (bounded in count and time), then SIGKILL, or SIGTERM / SIGINT for a graceful
stop. The restarted server must serve again, in order and with the same ids and
timestamps, every event acknowledged before the last completed flush (with --fsync:
every acknowledged event), and nothing that was never published.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from longpoll.cli import main
from tests.servers import ServeProcess, serve_process, start_serve

CATEGORY = "crash"
FLUSH_PERIOD = 0.2  # seconds
# Between a flush being due and the write being done: the timer, the writer thread.
FLUSH_SLACK = 0.5
PUBLISH_SECONDS = 1.0  # publishing time before the stop
MAX_EVENTS = 20_000
BUFFER = str(MAX_EVENTS + 10)  # so that the restarted server keeps every event


@dataclass
class Ack:
    n: int
    id: str
    timestamp: int
    at: float  # time.monotonic() when the acknowledgement arrived


@dataclass
class Publisher:
    """Publishes {"n": 0}, {"n": 1}, ... one at a time until stopped or refused."""

    url: str
    acks: list[Ack] = field(default_factory=list)
    attempted: int = 0
    failure: str = ""
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        deadline = time.monotonic() + 10
        with httpx.Client(base_url=self.url, timeout=5) as client:
            for n in range(MAX_EVENTS):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                self.attempted = n + 1
                try:
                    response = client.post(
                        "/publish", json={"category": CATEGORY, "data": {"n": n}}
                    )
                except httpx.HTTPError as exc:
                    self.failure = type(exc).__name__
                    return
                if response.status_code != 200:
                    self.failure = f"HTTP {response.status_code}"
                    return
                body = response.json()
                self.acks.append(Ack(n, body["id"], body["timestamp"], time.monotonic()))


def publish_then(server: ServeProcess, stop: Any) -> tuple[Publisher, float]:
    """Publish for PUBLISH_SECONDS, call `stop()` while publishing; return the publisher
    and the time of the stop."""
    publisher = Publisher(server.url)
    thread = threading.Thread(target=publisher.run)
    thread.start()
    try:
        time.sleep(PUBLISH_SECONDS)
        assert thread.is_alive(), f"the publisher stopped early: {publisher.failure}"
        stopped_at = time.monotonic()
        stop()
    finally:
        thread.join(15)
        publisher.stop.set()
    assert not thread.is_alive()
    return publisher, stopped_at


def recovered(path: Path) -> tuple[list[dict[str, Any]], str]:
    """Restart on `path`; every event it serves and the server's output."""
    with serve_process("--persist", str(path), "--max-buffer", BUFFER) as server:
        params = {"category": CATEGORY, "timeout": "1", "since_time": "-1"}
        body = httpx.get(f"{server.url}/events", params=params, timeout=10).json()
        _, output = server.stop(signal.SIGTERM)
    return body.get("events", []), server.first_line + output


def check_order_and_identity(events: list[dict[str, Any]], publisher: Publisher) -> int:
    """The events are a prefix of what was published, in order, acknowledged ones
    with their ids and timestamps; return how many acknowledged ones are among them."""
    assert [e["data"]["n"] for e in events] == list(range(len(events)))
    # At most the one publish in flight at the stop came through unacknowledged.
    assert len(events) <= publisher.attempted
    acked = publisher.acks[: len(events)]
    assert [(e["id"], e["timestamp"]) for e in events[: len(acked)]] == [
        (a.id, a.timestamp) for a in acked
    ]
    timestamps = [e["timestamp"] for e in events]
    assert timestamps == sorted(timestamps)
    return len(acked)


@pytest.mark.parametrize("fsync", [False, True], ids=["flush-period", "fsync"])
def test_sigkill_loses_at_most_the_last_flush_period(tmp_path: Path, fsync: bool) -> None:
    path = tmp_path / "events.jsonl"
    flags = ["--persist", str(path), "--flush-period", str(FLUSH_PERIOD), "--max-buffer", BUFFER]
    server = start_serve(*flags, *(["--fsync"] if fsync else []))
    try:
        publisher, killed_at = publish_then(server, server.process.kill)
    finally:
        server.stop(signal.SIGKILL)
    assert publisher.acks, publisher.failure

    events, output = recovered(path)
    back = check_order_and_identity(events, publisher)
    if fsync:
        must = len(publisher.acks)
    else:
        must = sum(1 for a in publisher.acks if a.at < killed_at - FLUSH_PERIOD - FLUSH_SLACK)
        assert must > 0
    print(
        f"\nSIGKILL {'--fsync' if fsync else f'--flush-period {FLUSH_PERIOD}'}: "
        f"published {publisher.attempted}, acknowledged {len(publisher.acks)}, "
        f"recovered {len(events)} ({back} acknowledged), required {must}"
    )
    assert back >= must
    assert "Traceback" not in output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_graceful_stop_loses_nothing(tmp_path: Path, sig: signal.Signals) -> None:
    path = tmp_path / "events.jsonl"
    # A flush period longer than the test: everything is written by the shutdown.
    server = start_serve("--persist", str(path), "--flush-period", "60", "--max-buffer", BUFFER)
    exit_code: list[int] = []

    def stop() -> None:
        code, _ = server.stop(sig)
        exit_code.append(code)

    try:
        publisher, _ = publish_then(server, stop)
    finally:
        server.stop(signal.SIGKILL)
    assert exit_code == [0]
    assert publisher.acks

    events, output = recovered(path)
    assert check_order_and_identity(events, publisher) == len(publisher.acks)
    assert "skipped" not in output
    print(
        f"\n{sig.name}: published {publisher.attempted}, acknowledged {len(publisher.acks)}, "
        f"recovered {len(events)}"
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--fsync"], "--fsync needs --persist"),
        (["--compact"], "--compact needs --persist"),
        (["--flush-period", "1"], "--flush-period needs --persist"),
        (["--persist", "f", "--flush-period", "0"], "--flush-period must be a positive number"),
        (["--persist", ""], "--persist must not be empty"),
    ],
)
def test_persistence_flags_are_checked(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", *flags])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
