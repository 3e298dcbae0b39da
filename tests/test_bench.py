"""`python -m bench` as a user runs it: real servers on free loopback ports, real load."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import psutil
import pytest

from longpoll._http import Receive, Scope, Send
from tests.servers import serve_process, serve_until_crash

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"
VARIANTS = ("uvicorn", "granian", "redis-1", "redis-2", "persistence", "floor")


def bench(*args: str) -> list[str]:
    """The command line of `python -m bench ARGS`, without a progress bar."""
    return [sys.executable, "-m", "bench", "--no-progress", *args]


def run_bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        bench(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def refuses(port: int) -> bool:
    """True when nothing accepts connections on the loopback port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


@pytest.mark.timeout(120)
def test_quick_suite_writes_the_page_plots_and_results(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    done = run_bench("suite", "--quick", "--out-doc", str(page), timeout=110)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"suite took \d+ s", done.stdout)

    text = page.read_text()
    first = text.split("\n\n")[1]
    assert "pip install -e '.[dev]'" in first
    assert "python -m bench suite" in first
    assert "redis-server" in first
    assert "Load average" in text
    assert "pinned to core 0" in text
    speed = re.search(r"`sum\(range\(1000\)\)` took ([\d.]+) µs", text)
    assert speed is not None and 0 < float(speed.group(1)) < 1000
    for variant in VARIANTS:
        assert f"\n### {variant}\n" in text
        assert re.search(rf"^\| {re.escape(variant)} \| ", text, re.MULTILINE)
    for scenario in ("fanout", "publish", "catchup", "stream", "idle-memory", "publish-persist"):
        assert f"| {scenario} |" in text
    targets = text.split("## Targets")[1].split("##")[0]
    assert len(re.findall(r"^\| (fan-out|catch-up|publish|idle|stream)", targets, re.M)) == 5
    assert "**met**" in targets or "**missed**" in targets
    assert "## What limits each figure" in text
    choice = text.split("## Default server")[1].split("##")[0]
    assert re.search(r"did better than granian's ASGI interface on \d of 5 figures", choice)
    assert len(re.findall(r"^\| .* \| (uvicorn|granian) \|$", choice, re.M)) == 5
    assert "could not run" not in text

    assets = tmp_path / "benchmarks"
    for plot in ("fanout-latency.png", "requests-per-s.png"):
        assert f"](benchmarks/{plot})" in text
        assert (assets / plot).read_bytes().startswith(PNG)

    results = json.loads((assets / "results.json").read_text())
    runs = results["runs"]
    assert not [run for run in runs if run["failed"]]
    streams = {run["label"]: run for run in runs if run["scenario"] == "stream"}
    assert set(streams) == {"uvicorn", "granian", "redis-1", "redis-2"}
    for stream in streams.values():
        assert stream["missed"] == 0
        assert stream["duplicated"] == 0
        assert stream["delivered"] == stream["expected"] > 0
    # every server the suite started is gone, redis-server included
    ports = {int(m) for m in re.findall(r"127\.0\.0\.1:(\d+)", json.dumps(results["runs"]))}
    ports |= {int(m) for m in re.findall(r"--port ([1-9]\d*)", json.dumps(results["variants"]))}
    assert len(ports) >= 5
    assert all(refuses(port) for port in ports)


def test_fanout_against_longpoll_serve_delivers_to_everyone(tmp_path: Path) -> None:
    with serve_process() as server:
        pid = str(server.process.pid)
        out = tmp_path / "fanout.json"
        done = run_bench(
            "fanout", "--url", server.url, "--stats-url", server.url + "/stats",
            "--server-pid", pid, "--pin", "1", "--sizes", "20,200", "--rounds", "2",
            "--json", str(out), timeout=50,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^\s+20\s+all\s+40/40\s", done.stdout, re.MULTILINE)
    assert re.search(r"^\s+200\s+all\s+400/400\s", done.stdout, re.MULTILINE)
    sizes = json.loads(out.read_text())["sizes"]
    assert [(s["received"], s["expected"], s["errors"]) for s in sizes] == [
        (40, 40, {}),
        (400, 400, {}),
    ]


class BrokenServer:
    """Speaks the subscribe/publish protocol, but never delivers the event whose data has
    seq 3, and delivers the one with seq 5 twice in the same answer."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.published = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        if scope["path"] == "/publish":
            await self._publish(receive, send)
            return
        query = parse_qs(scope["query_string"].decode())
        category = query["category"][0]
        since = int(query.get("since_time", ["0"])[0] or 0)
        last_id = query.get("last_id", [""])[0]
        deadline = time.monotonic() + int(query["timeout"][0])
        while not (events := self._after(category, since, last_id)):
            published = self.published
            left = deadline - time.monotonic()
            if left <= 0:
                now = int(time.time() * 1000)
                await _answer(send, {"timeout": "no events before timeout", "timestamp": now})
                return
            try:
                await asyncio.wait_for(published.wait(), left)
            except TimeoutError:
                continue
        await _answer(send, {"events": events})

    async def _publish(self, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        posted = json.loads(body)
        event = {
            "timestamp": 1_700_000_000_000 + len(self.events),
            "category": posted["category"],
            "data": posted["data"],
            "id": str(uuid.uuid4()),
        }
        self.events.append(event)
        self.published.set()
        self.published = asyncio.Event()
        await _answer(send, {"success": True, "id": event["id"], "timestamp": event["timestamp"]})

    def _after(self, category: str, since: int, last_id: str) -> list[dict[str, Any]]:
        ids = [event["id"] for event in self.events]
        start = ids.index(last_id) + 1 if last_id in ids else 0
        answer = []
        for event in self.events[start:]:
            if event["category"] != category or (since >= 0 and event["timestamp"] <= since):
                continue
            seq = event["data"].get("seq")
            if seq != 3:
                answer += [event, event] if seq == 5 else [event]
        return answer


async def _answer(send: Send, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def test_stream_reports_missed_and_duplicated_events() -> None:
    async with serve_until_crash(BrokenServer()) as url:
        process = await asyncio.create_subprocess_exec(
            *bench("stream", "--url", url, "--subscribers", "4", "--rate", "20",
                   "--duration", "0.5", "--pin", "1", "--poll-timeout", "5", "--drain", "3"),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), 40)
    output = stdout.decode()
    assert process.returncode == 1, output + stderr.decode()
    assert re.search(r"^missed\s+4 \(4 subscribers; max 1 per subscriber\)", output, re.M)
    assert re.search(r"^duplicated\s+4 \(4 subscribers; max 1 per subscriber\)", output, re.M)
    assert "missed seqs [3]" in output


def test_suite_refuses_to_share_the_server_core_with_the_generator(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    done = run_bench(
        "suite", "--server-core", "1", "--pin", "1", "--out-doc", str(page), timeout=30
    )
    assert done.returncode == 2
    assert "--server-core 1" in done.stderr
    assert not page.exists()


def test_interrupted_suite_stops_every_server(tmp_path: Path) -> None:
    suite = subprocess.Popen(
        bench("suite", "--quick", "--out-doc", str(tmp_path / "benchmarks.md")),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        me = psutil.Process(suite.pid)
        deadline = time.monotonic() + 20
        started: list[psutil.Process] = []
        while time.monotonic() < deadline and len(started) < 2:
            time.sleep(0.1)
            started = me.children(recursive=True)  # a server, then generator processes
        assert any("longpoll.cli" in cmdline(p) for p in started)
        os.kill(suite.pid, signal.SIGINT)
        _, stderr = suite.communicate(timeout=30)
    finally:
        if suite.poll() is None:
            suite.kill()
            suite.wait()
    assert suite.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not (tmp_path / "benchmarks.md").exists()
