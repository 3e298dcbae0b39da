"""`longpoll subscribe` and `longpoll publish` as a user runs them, against `longpoll serve`."""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.servers import ServeProcess, serve_process, start_serve


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "longpoll.cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=30,
    )


class Subscriber:
    """`longpoll subscribe` in a child process, its output lines read as they come."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "longpoll.cli", "subscribe", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def events(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        return [orjson.loads(self.lines.get(timeout=timeout)) for _ in range(count)]

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            _, errors = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, errors = self.process.communicate()
        self._reader.join(5)
        return self.process.returncode, errors


@pytest.fixture
def server() -> Iterator[ServeProcess]:
    with serve_process() as running:
        yield running


def wait_for_subscribers(url: str, count: int) -> None:
    deadline = time.monotonic() + 10
    with httpx.Client(base_url=url) as client:
        while client.get("/stats").json()["waiting_subscribers"] != count:
            assert time.monotonic() < deadline, "the subscriber never started waiting"
            time.sleep(0.01)


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_subscribe_prints_what_publish_sends(server: ServeProcess) -> None:
    subscriber = Subscriber("news", "weather", "--url", server.url)
    try:
        wait_for_subscribers(server.url, 1)
        receipts = [
            run_cli("publish", "news", '{"title": "hello"}', "--url", server.url),
            run_cli("publish", "weather", "sunny and 20°C", "--url", server.url),
            run_cli("publish", "news", "-", "--url", server.url, stdin="[1, 2]\n"),
            run_cli("publish", "news", "-", "--url", server.url, stdin="just text\n"),
        ]
        for receipt in receipts:
            assert receipt.returncode == 0, receipt.stderr
        events = subscriber.events(4)
    finally:
        code, errors = subscriber.stop()
    assert [list(event) for event in events] == [["timestamp", "category", "data", "id"]] * 4
    assert [(event["category"], event["data"]) for event in events] == [
        ("news", {"title": "hello"}),
        ("weather", "sunny and 20°C"),
        ("news", [1, 2]),
        ("news", "just text"),
    ]
    published = [orjson.loads(receipt.stdout) for receipt in receipts]
    assert [event["id"] for event in events] == [p["id"] for p in published]
    assert [event["timestamp"] for event in events] == [p["timestamp"] for p in published]
    assert code == 130  # interrupted, quietly
    assert "Traceback" not in errors


def test_subscribe_since_and_custom_paths() -> None:
    with serve_process("--subscribe-path", "/sub", "--publish-path", "/pub") as server:
        url = ["--url", server.url]
        for number in range(2):
            assert (
                run_cli("publish", "c", str(number), *url, "--publish-path", "/pub").returncode == 0
            )
        subscriber = Subscriber("c", "--since", "-1", *url, "--subscribe-path", "/sub")
        try:
            assert [event["data"] for event in subscriber.events(2)] == [0, 1]
        finally:
            subscriber.stop()


@pytest.mark.parametrize("command", [["subscribe", "c"], ["publish", "c", "x", "--attempts", "1"]])
def test_unreachable_server_is_one_line_and_exit_1(command: list[str]) -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    result = run_cli(*command, "--url", url)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"longpoll: cannot reach {url}/")


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            ["subscribe", "c", "--poll-timeout", "500"],
            "longpoll: server answered 400: timeout must be between 1 and 110 seconds",
        ),
        (
            ["publish", "c", "x", "--publish-path", "/events"],
            "longpoll: server answered 405: use GET to subscribe",
        ),
    ],
)
def test_refusal_is_one_line_and_exit_1(
    server: ServeProcess, command: list[str], message: str
) -> None:
    result = run_cli(*command, "--url", server.url)
    assert result.returncode == 1
    assert result.stderr.strip() == message


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (["publish", "c", "null"], "data must not be null"),
        (["publish", "", "x"], "category must not be empty"),
        (["subscribe", "c", "--since", "soon"], "invalid int value"),
        (["subscribe", "c", "--url", "ftp://example.com"], "--url must be an http:// or https://"),
        (["publish", "c", "x", "--url", "127.0.0.1:1"], "not '127.0.0.1:1'"),
        (["publish", "c", "x", "--subscribe-path", "/e"], "unrecognized arguments"),
        (["subscribe", "c", "--poll-timeout", "0"], "--poll-timeout must be a whole number"),
        (["publish", "c", "x", "--publish-path", "publish"], "must start with '/'"),
    ],
)
def test_bad_arguments_exit_2(command: list[str], reason: str) -> None:
    result = run_cli(*command)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert reason in lines[0]


def test_subscribe_retry_survives_a_server_restart() -> None:
    first = start_serve()
    port = first.url.rsplit(":", 1)[1]
    subscriber = Subscriber("c", "--url", first.url, "--retry")
    second = None
    try:
        wait_for_subscribers(first.url, 1)
        first.stop(signal.SIGKILL)
        second = start_serve("--port", port)
        wait_for_subscribers(second.url, 1)
        assert run_cli("publish", "c", "back", "--url", second.url).returncode == 0
        assert [event["data"] for event in subscriber.events(1)] == ["back"]
    finally:
        code, errors = subscriber.stop()
        first.stop(signal.SIGKILL)
        if second is not None:
            second.stop(signal.SIGKILL)
    assert code == 130
    assert "cannot reach" in errors and "retrying" in errors
    assert "Traceback" not in errors


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("subscribe", ["--url", "--subscribe-path", "--since", "--poll-timeout", "--retry"]),
        ("publish", ["--url", "--publish-path", "standard input"]),
    ],
)
def test_help_explains_every_flag(command: str, flags: list[str]) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0
    for flag in flags:
        assert flag in result.stdout


def test_a_publish_is_sent_again_before_the_command_gives_up() -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    result = run_cli("publish", "c", "x", "--url", url, "--attempts", "2")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith(f"longpoll: publish failed (cannot reach {url}/publish")
    assert "sending it again in" in lines[0]
    assert lines[1].startswith(f"longpoll: cannot reach {url}/")


def test_attempts_must_be_at_least_one() -> None:
    result = run_cli("publish", "c", "x", "--attempts", "0")
    assert result.returncode == 2
    assert "--attempts must be a whole number of at least 1" in result.stderr
