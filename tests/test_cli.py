"""`longpoll serve` as a user runs it: a child process on a free loopback port."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import orjson
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
        (["--port", "http"], "not a port number: 'http'"),
        (["--port", "99999"], "a port is 0 to 65535, not 99999"),
        (["--port", "-1"], "a port is 0 to 65535, not -1"),
        (["--max-buffer", "0"], "--max-buffer must be an integer of at least 1"),
        (["--ttl", "-1"], "--ttl must be a positive finite number"),
        (["--max-timeout", "0"], "--max-timeout must be"),
        (["--redis", "notaurl"], "--redis must be a URL such as redis://127.0.0.1:6379/0"),
        (["--persist", "/no/such/folder/events.jsonl"], "the folder /no/such/folder does not"),
        (["--persist", "/"], "--persist / is a folder"),
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
    assert lines[0].endswith("(see longpoll serve --help)")


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed start wrote on stderr (log lines aside)."""
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("longpoll")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_redis_away_at_start_is_one_line_and_exit_1(workers: str) -> None:
    result = run_cli(
        "serve", "--port", "0", "--redis", "redis://127.0.0.1:1/0", "--workers", workers
    )
    assert result.returncode == 1
    line = one_line_failure(result)
    assert line.startswith("longpoll: the server could not run: Redis")
    assert "unavailable" in line and "Connection refused" in line


def test_a_persistence_file_out_of_order_is_one_line_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [
        {"timestamp": 2000, "category": "c", "data": 1, "id": str(uuid.uuid4())},
        {"timestamp": 1000, "category": "c", "data": 2, "id": str(uuid.uuid4())},
    ]
    path.write_text("".join(orjson.dumps(line).decode() + "\n" for line in lines))
    result = run_cli("serve", "--port", "0", "--persist", str(path))
    assert result.returncode == 1
    assert "is older than the event on line 1" in one_line_failure(result)


def test_redis_without_its_extra_says_what_to_install() -> None:
    script = (
        "import sys; sys.modules['redis'] = None\n"
        "from longpoll.cli import main\n"
        "sys.exit(main(['serve', '--port', '0', '--redis', 'redis://127.0.0.1:6379/0']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "--redis needs the redis extra: pip install 'longpoll[redis]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_output_that_cannot_be_written_is_one_line_and_exit_1() -> None:
    with serve_process() as server, open("/dev/full", "w") as full:
        for command in (["publish", "news", "hi"], ["subscribe", "news", "--since", "-1"]):
            result = subprocess.run(
                [sys.executable, "-m", "longpoll.cli", *command, "--url", server.url],
                stdout=full, stderr=subprocess.PIPE, text=True, timeout=30,
            )  # fmt: skip
            assert result.returncode == 1
            assert result.stderr == "longpoll: cannot write the output: No space left on device\n"


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


def test_the_access_log_has_a_line_per_answer() -> None:
    with serve_process("--access-log") as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            client.post("/publish", json={"category": "c", "data": 1})
            client.get("/events", params={"category": "c", "timeout": 1, "token": "secret"})
            client.get("/nothing")
        code, output = server.stop(signal.SIGTERM)
    assert code == 0
    lines = [
        line.split("longpoll.access: ")[1] for line in output.splitlines() if "access:" in line
    ]
    assert len(lines) == 3, output
    assert lines[0].startswith('127.0.0.1 "POST /publish" 200 ')
    assert lines[1].startswith('127.0.0.1 "GET /events" 200 ')
    assert lines[1].endswith(" ms (waited for events)")
    assert float(lines[1].split()[-5]) >= 900  # it waited its 1 s timeout
    assert lines[2].startswith('127.0.0.1 "GET /nothing" 404 ')
    assert "secret" not in output  # queries (and tokens in them) are not logged


def test_no_access_log_by_default() -> None:
    with serve_process() as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            client.post("/publish", json={"category": "c", "data": 1})
        _, output = server.stop(signal.SIGTERM)
    assert "longpoll.access" not in output


def test_the_configuration_reference_is_the_parsers_own() -> None:
    from docs.reference import PAGE, render

    assert PAGE.read_text() == render(), "run: python -m docs.reference"
    for flag in ("--max-buffered-bytes", "--publish-token", "--token", "--secret-env"):
        assert f"| `{flag}` |" in PAGE.read_text()
