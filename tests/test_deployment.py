"""The recipes of docs/deployment.md, run: nginx in front of `longpoll serve` (with the
shipped deploy/nginx/longpoll.conf, TLS included), the systemd unit, the Dockerfile
and the crash-loss measurement.

nginx runs unprivileged-style from files under tmp_path (its own prefix, pid, logs
and temporary folders) on free loopback ports, in front of a real `longpoll serve`.
The server runs with a small --max-timeout so that a subscribe can wait for its
largest timeout here; the nginx read timeout comes from the same rule as the
shipped file's (`read_timeout_for`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from bench.redis_server import RedisServer
from longpoll import LongpollApp, Options
from longpoll.cli import build_parser
from longpoll.client import Client, ServerError
from tests.servers import ServeProcess, start_serve

ROOT = Path(__file__).resolve().parent.parent
NGINX_SITE = ROOT / "deploy" / "nginx" / "longpoll.conf"
UNIT = ROOT / "deploy" / "longpoll.service"
DOCKERFILE = ROOT / "Dockerfile"
CRASH_SCRIPT = ROOT / "deploy" / "crash_loss.py"

NGINX = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/local/sbin")
needs_nginx = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx; .ci/run installs it)"
)
OPENSSL = shutil.which("openssl")

MAX_TIMEOUT = 3  # --max-timeout of the server behind nginx here
DEFAULT_MAX_TIMEOUT = Options().max_longpoll_timeout_seconds
HEARTBEAT_SECONDS = inspect.signature(LongpollApp).parameters["stream_heartbeat_seconds"].default


def read_timeout_for(max_timeout: int) -> int:
    """nginx's proxy_read_timeout for a server's --max-timeout (docs/deployment.md):
    10 s above the longest an answer may take to start, a subscribe's largest timeout
    or the silence between two keep-alive comments of an event stream."""
    return int(max(max_timeout, HEARTBEAT_SECONDS)) + 10


# -- nginx, run from files of the test ----------------------------------------------


@dataclass
class Tls:
    certificate: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certificate))


@dataclass
class Nginx:
    process: subprocess.Popen[bytes]
    url: str  # https://127.0.0.1:PORT
    plain_url: str  # http://127.0.0.1:PORT (redirects)
    folder: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def site_config(upstream: str, https_port: int, http_port: int, tls: Tls, read_timeout: int) -> str:
    """deploy/nginx/longpoll.conf with the test's addresses, certificate and read
    timeout; each line replaced must be in the file exactly once."""
    text = NGINX_SITE.read_text()
    replacements = {
        "server 127.0.0.1:8101;": f"server {upstream};",
        "    listen 80;\n": f"    listen 127.0.0.1:{http_port};\n",
        "    listen [::]:80;\n": "",
        "    listen 443 ssl;\n": f"    listen 127.0.0.1:{https_port} ssl;\n",
        "    listen [::]:443 ssl;\n": "",
        "/etc/letsencrypt/live/events.example.com/fullchain.pem": str(tls.certificate),
        "/etc/letsencrypt/live/events.example.com/privkey.pem": str(tls.key),
        f"proxy_read_timeout {read_timeout_for(DEFAULT_MAX_TIMEOUT)}s;": (
            f"proxy_read_timeout {read_timeout}s;"
        ),
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{NGINX_SITE} no longer has {old!r} once"
        text = text.replace(old, new)
    return text


def start_nginx(folder: Path, upstream: str, tls: Tls, read_timeout: int) -> Nginx:
    """nginx with the shipped site config in front of `upstream` (host:port)."""
    assert NGINX is not None
    folder.mkdir(parents=True)
    https_port, http_port = free_port(), free_port()
    (folder / "longpoll.conf").write_text(
        site_config(upstream, https_port, http_port, tls, read_timeout)
    )
    temp_paths = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, nginx's workers would switch to "nobody", who cannot enter tmp_path.
    user = "user root;" if os.geteuid() == 0 else ""
    (folder / "nginx.conf").write_text(
        f"""
daemon off;
worker_processes 1;
{user}
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} warn;
events {{ worker_connections 256; }}
http {{
    access_log {folder / "access.log"};
{temp_paths}
    include {folder / "longpoll.conf"};
}}
"""
    )
    process = subprocess.Popen(
        [
            NGINX,
            "-p",
            str(folder),
            "-c",
            str(folder / "nginx.conf"),
            "-e",
            str(folder / "error.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    nginx = Nginx(
        process, f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}", folder
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (folder / "error.log").read_text(errors="replace")
            raise AssertionError(f"nginx did not start:\n{log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", https_port)):
            return nginx
        time.sleep(0.02)
    nginx.stop()
    raise AssertionError("nginx did not listen within 10 s")


@contextlib.contextmanager
def nginx_in_front(
    folder: Path, server: ServeProcess, tls: Tls, read_timeout: int
) -> Iterator[Nginx]:
    nginx = start_nginx(folder, server.url.removeprefix("http://"), tls, read_timeout)
    try:
        yield nginx
    finally:
        nginx.stop()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1, made by openssl as the docs show."""
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    certificate, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(certificate)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Tls(certificate, key)


@pytest.fixture(scope="module")
def upstream() -> Iterator[ServeProcess]:
    """`longpoll serve` with a short --max-timeout, shared by the nginx tests."""
    server = start_serve("--max-timeout", str(MAX_TIMEOUT))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def nginx(
    upstream: ServeProcess, tls: Tls, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nginx]:
    """The shipped nginx site in front of `upstream`, read timeout by the rule."""
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx; .ci/run installs it)")
    folder = tmp_path_factory.mktemp("nginx") / "by-the-rule"
    with nginx_in_front(folder, upstream, tls, read_timeout_for(MAX_TIMEOUT)) as running:
        yield running


@contextlib.asynccontextmanager
async def client_of(url: str, tls: Tls) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, verify=tls.context(), timeout=30) as client:
        yield client


async def publish(client: httpx.AsyncClient, category: str, data: object) -> str:
    response = await client.post("/publish", json={"category": category, "data": data})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def wait_for_waiting(server: ServeProcess, count: int) -> None:
    """Until `count` subscribers wait on the server (asked directly, not through nginx)."""
    async with httpx.AsyncClient(base_url=server.url) as direct, asyncio.timeout(10):
        while (await direct.get("/stats")).json()["waiting_subscribers"] < count:
            await asyncio.sleep(0.02)


# -- nginx in front -----------------------------------------------------------------


def test_the_shipped_read_timeout_follows_the_rule() -> None:
    site = NGINX_SITE.read_text()
    timeouts = re.findall(r"proxy_read_timeout (\d+)s;", site)
    assert timeouts == [str(read_timeout_for(DEFAULT_MAX_TIMEOUT))]
    # The unit's server has the --max-timeout the nginx file is made for.
    assert f"--max-timeout {DEFAULT_MAX_TIMEOUT} " in UNIT.read_text()
    assert "proxy_buffering off;" in site
    assert "keepalive " in site and 'proxy_set_header Connection "";' in site


@needs_nginx
async def test_a_subscribe_at_the_largest_timeout_gets_its_answer_through_nginx(
    nginx: Nginx, upstream: ServeProcess, tls: Tls
) -> None:
    async with client_of(nginx.url, tls) as client:
        quiet = asyncio.create_task(
            client.get("/events", params={"category": "quiet", "timeout": MAX_TIMEOUT})
        )
        news = asyncio.create_task(
            client.get("/events", params={"category": "news", "timeout": MAX_TIMEOUT})
        )
        started = time.monotonic()
        await wait_for_waiting(upstream, 2)
        event_id = await publish(client, "news", {"title": "through nginx"})

        delivered = await news
        assert delivered.status_code == 200
        assert [e["id"] for e in delivered.json()["events"]] == [event_id]
        assert time.monotonic() - started < MAX_TIMEOUT

        timed_out = await quiet
        assert time.monotonic() - started >= MAX_TIMEOUT - 0.1
        assert timed_out.status_code == 200, timed_out.text
        assert "timeout" in timed_out.json()


@needs_nginx
async def test_a_read_timeout_below_the_largest_subscribe_timeout_is_a_504(
    upstream: ServeProcess, tls: Tls, tmp_path: Path
) -> None:
    with nginx_in_front(tmp_path / "nginx", upstream, tls, read_timeout=1) as nginx:
        async with client_of(nginx.url, tls) as client:
            started = time.monotonic()
            answer = await client.get("/events", params={"category": "c", "timeout": MAX_TIMEOUT})
            assert time.monotonic() - started < MAX_TIMEOUT - 0.5
        assert answer.status_code == 504
        # The shipped file's own error page: JSON naming the cause, not nginx's HTML.
        assert answer.headers["content-type"] == "application/json"
        assert "proxy_read_timeout" in answer.json()["error"]

        def poll_once() -> None:
            with (
                httpx.Client(verify=tls.context()) as http,
                Client(
                    f"{nginx.url}/events",
                    poll_timeout_seconds=MAX_TIMEOUT,
                    http_client=http,
                    on_failure=lambda error: False,
                ) as longpoll,
            ):
                next(iter(longpoll.subscribe("c")))

        with pytest.raises(ServerError) as raised:
            await asyncio.to_thread(poll_once)
        assert raised.value.status == 504
        assert "proxy_read_timeout" in str(raised.value)


@needs_nginx
async def test_an_event_stream_through_nginx_arrives_event_by_event(
    nginx: Nginx, upstream: ServeProcess, tls: Tls
) -> None:
    # Whether the server streams at all: asked with a real request.
    async with (
        httpx.AsyncClient(base_url=upstream.url, timeout=10) as direct,
        direct.stream(
            "GET",
            "/events",
            params={"category": "probe", "timeout": 1},
            headers={"accept": "text/event-stream"},
        ) as probe,
    ):
        streams = probe.headers.get("content-type", "").startswith("text/event-stream")
    if not streams:
        pytest.skip("the server does not answer text/event-stream on the subscribe path yet")

    async with client_of(nginx.url, tls) as client:
        lines: list[str] = []
        arrived = asyncio.Event()
        async with client.stream(
            "GET",
            "/events",
            params={"category": "live"},
            headers={"accept": "text/event-stream", "accept-encoding": "gzip"},
        ) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert "content-encoding" not in stream.headers  # never gzip a stream

            async def read() -> None:
                async for line in stream.aiter_lines():
                    lines.append(line)
                    arrived.set()

            reader = asyncio.create_task(read())
            try:
                for n in range(3):
                    event_id = await publish(client, "live", {"n": n})
                    # Each event comes through on its own, not held in a buffer.
                    async with asyncio.timeout(2):
                        while not any(event_id in line for line in lines):
                            arrived.clear()
                            await arrived.wait()
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        data = [
            json.loads(line.removeprefix("data:")) for line in lines if line.startswith("data:")
        ]
        assert [d["data"] for d in data if isinstance(d, dict) and "data" in d] == [
            {"n": 0},
            {"n": 1},
            {"n": 2},
        ]


@needs_nginx
async def test_nginx_keeps_its_connections_to_the_server_open(
    nginx: Nginx, upstream: ServeProcess, tls: Tls
) -> None:
    for n in range(8):  # each from a new client connection to nginx
        async with client_of(nginx.url, tls) as client:
            await publish(client, "keepalive", n)
    port = int(upstream.url.rsplit(":", 1)[1])
    server = psutil.Process(upstream.process.pid)
    open_to_nginx = [
        c
        for c in server.net_connections("tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
    ]
    # One idle connection kept for the next request, not one per request closed.
    assert 1 <= len(open_to_nginx) <= 2


@needs_nginx
async def test_pages_of_the_site_publish_through_nginx_and_others_are_refused(
    nginx: Nginx, tls: Tls
) -> None:
    async with client_of(nginx.url, tls) as client:
        # nginx passes the Host the browser asked for, port included: the server
        # sees the page's Origin as its own.
        own = await client.post(
            "/publish",
            json={"category": "page", "data": 1},
            headers={"origin": nginx.url},
        )
        assert own.status_code == 200, own.text
        other = await client.post(
            "/publish",
            json={"category": "page", "data": 2},
            headers={"origin": "https://elsewhere.example"},
        )
        assert other.status_code == 403


@needs_nginx
async def test_nginx_compresses_answers_hides_operators_paths_and_redirects_to_https(
    nginx: Nginx, upstream: ServeProcess, tls: Tls
) -> None:
    async with client_of(nginx.url, tls) as client:
        for n in range(20):
            await publish(client, "big", {"text": "compressible " * 10, "n": n})
        answer = await client.get(
            "/events",
            params={"category": "big", "since_time": -1, "timeout": 1},
            headers={"accept-encoding": "gzip"},
        )
        assert answer.headers["content-encoding"] == "gzip"
        assert len(answer.json()["events"]) == 20  # httpx decompressed it
        for path in ("/metrics", "/stats", "/healthz", "/readyz"):
            assert (await client.get(path)).status_code == 404, path
    async with httpx.AsyncClient(base_url=upstream.url) as direct:
        assert (await direct.get("/healthz")).status_code == 200
    async with httpx.AsyncClient() as plain:
        redirect = await plain.get(f"{nginx.plain_url}/events?category=a")
    assert redirect.status_code == 301
    assert redirect.headers["location"] == "https://127.0.0.1/events?category=a"


def wait_for_output(server: ServeProcess, text: str, count: int, timeout: float = 15) -> None:
    """Read the server's output until `count` more lines hold `text` (the server is
    killed if that takes longer than `timeout`)."""
    assert server.process.stdout is not None
    watchdog = threading.Timer(timeout, server.process.kill)
    watchdog.start()
    try:
        while count:
            line = server.process.stdout.readline()
            assert line, f"the server ended before saying {text!r} {count} more times"
            count -= text in line
    finally:
        watchdog.cancel()


@needs_nginx
async def test_workers_with_redis_behind_nginx(
    redis_server: RedisServer, tls: Tls, tmp_path: Path
) -> None:
    prefix = f"deploy-{uuid.uuid4().hex}"
    server = start_serve(
        "--redis", redis_server.url, "--redis-prefix", prefix, "--workers", "2",
        "--max-timeout", str(MAX_TIMEOUT),
    )  # fmt: skip
    try:
        # Each worker says it listens; a SIGTERM before both do would end one early.
        wait_for_output(server, "listening on", count=1)
        with nginx_in_front(
            tmp_path / "nginx", server, tls, read_timeout_for(MAX_TIMEOUT)
        ) as nginx:
            async with client_of(nginx.url, tls) as client:
                ids = [await publish(client, "shared", n) for n in range(6)]
                everything = await client.get(
                    "/events", params={"category": "shared", "since_time": -1, "timeout": 1}
                )
                events = everything.json()["events"]
                assert [e["id"] for e in events] == ids
                third = events[2]
                resumed = await client.get(
                    "/events",
                    params={
                        "category": "shared",
                        "since_time": third["timestamp"],
                        "last_id": third["id"],
                        "timeout": 1,
                    },
                )
                assert [e["id"] for e in resumed.json()["events"]] == ids[3:]
    finally:
        code, output = server.stop()
    assert code == 0, output


# -- systemd ------------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    """Each setting of the unit file and its values, in order (parse-checked)."""
    settings: dict[str, list[str]] = {}
    section = None
    for number, raw in enumerate(UNIT.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            assert section in ("Unit", "Service", "Install"), f"line {number}: {line}"
            continue
        key, equals, value = line.partition("=")
        assert section is not None and equals and re.fullmatch(r"[A-Za-z]+", key), (
            f"{UNIT.name} line {number} is not a setting: {raw!r}"
        )
        settings.setdefault(key, []).append(value)
    return settings


def test_the_systemd_unit_is_hardened_and_starts_a_valid_serve(tmp_path: Path) -> None:
    settings = unit_settings()
    assert settings["Type"] == ["exec"]
    assert settings["Restart"] == ["on-failure"]
    assert int(settings["LimitNOFILE"][0]) >= 65536
    for hardening in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp"):
        assert settings[hardening][0] in ("yes", "strict"), hardening
    assert settings["DynamicUser"] == ["yes"]
    command = shlex.split(settings["ExecStart"][0])
    assert command[:2] == ["/opt/longpoll/bin/longpoll", "serve"]
    build_parser().parse_args(command[1:])  # exits on a flag the server does not have
    persist = command[command.index("--persist") + 1]
    assert persist.startswith(f"/var/lib/{settings['StateDirectory'][0]}/")
    # A stop waits out the server's grace period and more.
    assert int(settings["TimeoutStopSec"][0]) > 5

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # parse-checked above; systemd-analyze verifies where it is installed
    # verify checks that the command exists: point it at this checkout's.
    longpoll = Path(sys.executable).with_name("longpoll")
    unit = tmp_path / "longpoll.service"
    unit.write_text(UNIT.read_text().replace("/opt/longpoll/bin/longpoll", str(longpoll)))
    verified = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0 and not verified.stdout + verified.stderr, (
        verified.stdout + verified.stderr
    )


# -- the container image ------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        word, _, rest = line.partition(" ")
        assert word in {
            "FROM", "RUN", "COPY", "WORKDIR", "ENV", "USER", "EXPOSE", "HEALTHCHECK",
            "ENTRYPOINT", "CMD", "ARG", "LABEL", "STOPSIGNAL", "VOLUME",
        }, f"not a Dockerfile instruction: {line!r}"  # fmt: skip
        instructions.append((word, rest.strip()))
    assert not pending, "the Dockerfile ends in a continuation line"
    return instructions


def healthcheck_command() -> list[str]:
    [healthcheck] = [rest for word, rest in dockerfile_instructions() if word == "HEALTHCHECK"]
    options, _, exec_form = healthcheck.partition(" CMD ")
    assert exec_form.startswith("["), "HEALTHCHECK CMD in exec form"
    assert "--interval=" in options and "--timeout=" in options
    return list(json.loads(exec_form))


def test_the_dockerfile_runs_serve_as_a_user_of_its_own() -> None:
    instructions = dockerfile_instructions()
    final_stage = instructions[max(i for i, (w, _) in enumerate(instructions) if w == "FROM") :]
    users = [rest for word, rest in final_stage if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    command = [
        *json.loads(dict(instructions)["ENTRYPOINT"]),
        *json.loads(dict(instructions)["CMD"]),
    ]
    assert command[:2] == ["longpoll", "serve"]
    args = build_parser().parse_args(command[1:])
    assert args.host == "0.0.0.0"
    assert dict(instructions)["EXPOSE"] == str(args.port)
    # Everything it copies is in the repository, and .dockerignore lets it through.
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for word, rest in instructions:
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert f"!{source}" in ignore, source


OPERATIONS_TOKEN = "operations-token-of-the-deployment-tests"


def test_the_dockerfile_health_check_asks_the_server() -> None:
    command = healthcheck_command()
    assert command[0] == "python"
    default_port = build_parser().parse_args(["serve"]).port
    server = start_serve("--operations-token", OPERATIONS_TOKEN)
    try:
        # The image's server listens on its default port; here on a free one.
        command = [
            sys.executable,
            *(
                part.replace(f":{default_port}/", f":{server.url.rsplit(':', 1)[1]}/")
                for part in command[1:]
            ),
        ]

        def check(environment: dict[str, str]) -> int:
            env = {"PATH": os.environ["PATH"], **environment}
            return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode

        assert check({"LONGPOLL_OPERATIONS_TOKEN": OPERATIONS_TOKEN}) == 0
        assert check({}) != 0  # a 401 is unhealthy, as is no answer
    finally:
        server.stop()
    assert check({"LONGPOLL_OPERATIONS_TOKEN": OPERATIONS_TOKEN}) != 0


# -- persistence: what a crash loses --------------------------------------------------


def test_the_crash_loss_script_finds_no_loss_with_fsync(tmp_path: Path) -> None:
    measured = subprocess.run(
        [sys.executable, str(CRASH_SCRIPT), "--runs", "1", "--seconds", "0.3", "--clients", "2",
         "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert measured.returncode == 0, measured.stdout + measured.stderr
    rows = [line for line in measured.stdout.splitlines() if line.startswith("| ")]
    fsync = [row for row in rows if row.startswith("| `--fsync`")]
    assert len(fsync) == 1 and re.search(r"\| [\d,]+ \| 0 \(median 0 ms", fsync[0]), rows
    assert list(tmp_path.iterdir()) == []  # it leaves no file behind


# -- the guide ----------------------------------------------------------------------


def test_the_guide_shows_the_shipped_files_as_they_are() -> None:
    guide = (ROOT / "docs" / "deployment.md").read_text()
    blocks = re.findall(r"^```(\w+)\n(.*?)^```$", guide, re.MULTILINE | re.DOTALL)
    shown: dict[str, list[str]] = {}
    for language, body in blocks:
        shown.setdefault(language, []).append(body)
    assert NGINX_SITE.read_text() in shown["nginx"]
    assert UNIT.read_text() in shown["ini"]
    assert DOCKERFILE.read_text() in shown["dockerfile"]
    # The rule as the guide words it gives the shipped read timeout.
    assert f"`proxy_read_timeout {read_timeout_for(DEFAULT_MAX_TIMEOUT)}s`" in guide
    assert f"`--max-timeout 300`, set `{read_timeout_for(300)}s`" in guide
