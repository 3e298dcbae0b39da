"""`longpoll serve` as a user runs it: a child process on a free loopback port."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.servers import serve_process, start_serve


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "longpoll.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_help_explains_every_flag() -> None:
    top = run_cli("--help")
    assert top.returncode == 0
    assert "serve" in top.stdout
    serve = run_cli("serve", "--help")
    assert serve.returncode == 0
    for flag in [
        "--host",
        "--port",
        "--subscribe-path",
        "--publish-path",
        "--max-buffer",
        "--ttl",
        "--max-timeout",
        "--delete-after-first",
        "--max-body",
        "--max-categories",
        "--log-level",
        "--persist",
        "--redis",
        "--workers",
    ]:
        assert flag in serve.stdout


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (["--port", "http"], "invalid int value"),
        (["--max-buffer", "0"], "max_event_buffer_size must be an integer of at least 1"),
        (["--ttl", "-1"], "event_ttl_seconds must be a positive finite number"),
        (["--max-timeout", "0"], "max_longpoll_timeout_seconds"),
        (["--subscribe-path", "events"], "--subscribe-path must start with '/'"),
        (["--publish-path", "/events"], "two endpoints share the path '/events'"),
        (["--subscribe-path", "/stats"], "two endpoints share the path '/stats'"),
        (["--no-such-flag"], "unrecognized arguments"),
        (["--workers", "2"], "--workers above 1 needs --redis"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--head-timeout", "inf"], "--head-timeout must be a positive finite number"),
        (["--body-timeout", "0"], "--body-timeout must be a positive finite number"),
        (["--max-connections", "0"], "--max-connections must be a positive integer"),
        (["--redis", "redis://127.0.0.1:1/0", "--persist", "f"], "--persist is for the memory"),
    ],
)
def test_bad_flags_exit_with_a_one_line_reason(flags: list[str], reason: str) -> None:
    result = run_cli("serve", *flags)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert reason in lines[0]


def test_port_in_use_exits_with_a_one_line_reason() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0]
    assert "in use" in lines[0]


def test_serves_with_custom_paths_and_options() -> None:
    with serve_process(
        "--subscribe-path", "/sub", "--publish-path", "/pub", "--max-buffer", "2"
    ) as server:
        assert "subscribe /sub, publish /pub" in server.first_line
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for index in range(3):
                response = client.post("/pub", json={"category": "c", "data": index})
                assert response.status_code == 200
            events = client.get("/sub?category=c&timeout=1&since_time=-1").json()["events"]
            assert [event["data"] for event in events] == [1, 2]
            assert client.get("/events?category=c&timeout=1").status_code == 404


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_answers_waiters_and_exits_cleanly(sig: signal.Signals) -> None:
    server = start_serve()
    responses: list[httpx.Response] = []

    def subscribe() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            responses.append(client.get("/events?category=c&timeout=100"))

    waiter = threading.Thread(target=subscribe)
    waiter.start()
    with httpx.Client(base_url=server.url) as client:
        deadline = time.monotonic() + 10
        while client.get("/stats").json()["waiting_subscribers"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    started = time.monotonic()
    code, output = server.stop(sig)
    waiter.join(10)
    assert code == 0, output
    assert time.monotonic() - started < 5
    assert len(responses) == 1
    assert responses[0].status_code == 200
    assert responses[0].json()["timeout"] == "no events before timeout"
    assert "Traceback" not in output
