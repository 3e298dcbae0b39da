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

from bench.targets import times
from longpoll.types import Receive, Scope, Send
from tests.servers import serve_process, serve_until_crash

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"
VARIANTS = ("serve", "serve-tokens", "asgi-uvicorn", "granian", "redis-1", "redis-2",
            "persistence", "floor")  # fmt: skip
SCENARIOS = ("fanout", "publish", "catchup", "stream", "stream-overload", "stream-sse",
             "stream-sse-overload", "idle-memory", "publish-persist")  # fmt: skip


def bench(*args: str) -> list[str]:
    """The command line of `python -m bench ARGS`, without a progress bar."""
    return [sys.executable, "-m", "bench", "--no-progress", *args]


def run_bench(
    *args: str, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m bench ARGS`, with `env` added to this process's environment."""
    return subprocess.run(
        bench(*args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
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


def table_rows(text: str, section: str) -> list[list[str]]:
    """The cells of each body row of the first table in `section` of the page."""
    part = text.split(f"## {section}\n")[1].split("\n## ")[0]
    lines = [line for line in part.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


@pytest.mark.timeout(180)
def test_quick_suite_writes_the_page_plots_and_results(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    done = run_bench("suite", "--quick", "--out-doc", str(page), timeout=170)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"suite took \d+ s", done.stdout)
    written = re.findall(r"^wrote (.+)$", done.stdout, re.MULTILINE)
    assert len(written) == 4
    assert all(Path(path).is_relative_to(tmp_path) for path in written)

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
    assert "--factory --lifespan on bench.apps:memory_app" in text  # asgi-uvicorn
    for scenario in SCENARIOS:
        assert f"| {scenario} |" in text
    assert "could not run" not in text

    results = json.loads((tmp_path / "benchmarks" / "results.json").read_text())
    runs = results["runs"]
    assert not [run for run in runs if run["failed"]]
    by = {(run["label"], run["scenario"]): run for run in runs}
    streams = {label for label, scenario in by if scenario == "stream"}
    assert streams == {"serve", "serve-tokens", "asgi-uvicorn", "granian", "redis-1", "redis-2"}
    tokens = {scenario for label, scenario in by if label == "serve-tokens"}
    assert tokens == {"fanout", "publish", "catchup", "stream"}
    overloads = {label for label, scenario in by if scenario == "stream-overload"}
    assert overloads == {"serve", "asgi-uvicorn", "granian"}
    for sse_scenario in ("stream-sse", "stream-sse-overload"):
        assert {label for label, scenario in by if scenario == sse_scenario} == {
            "serve", "asgi-uvicorn"
        }  # fmt: skip
    for (_, scenario), stream in by.items():
        if scenario.startswith("stream"):
            assert stream["rate"] == (200.0 if scenario.endswith("-overload") else 20.0)
            assert stream["sse"] == scenario.startswith("stream-sse")
            assert stream["missed"] == stream["duplicated"] == 0
            assert stream["delivered"] == stream["expected"] > 0
            assert stream["server_cpu_share"] is not None

    # every target: serve's figure, asgi-uvicorn's, their ratio, a verdict, the limits;
    # the last one: serve-tokens' publish and stream figures, serve's, three ratios
    targets = {" ".join(row[0].split(" ")[:2]): row for row in table_rows(text, "Targets")}
    assert {name.split(" ")[0] for name in targets} == {
        "stream", "SSE", "publish", "fan-out", "idle", "catch-up", "with"
    }  # fmt: skip
    assert len(table_rows(text, "Targets")) == 9
    for row in table_rows(text, "Targets"):
        assert len(row) == 7
        assert "not measured" not in " ".join(row[1:3])
        ratio = r"\d+\.\d+x"
        if row[0].startswith("with tokens and metrics on"):
            ratio = rf"publish req/s {ratio}; stream p99 {ratio}; stream server CPU {ratio}"
        assert re.fullmatch(ratio, row[3])
        assert row[4] in ("**met**", "**missed**")
        assert row[5] != "-" or row[0].startswith("idle")
    publish = by[("serve", "publish")]["requests_per_s"]
    baseline = by[("asgi-uvicorn", "publish")]["requests_per_s"]
    assert targets["publish req/s"][1] == f"{publish:,.0f} req/s"
    assert targets["publish req/s"][3] == times(publish / baseline)
    assert targets["publish req/s"][4] == ("**met**" if publish >= 2.5 * baseline else "**missed**")
    idle = by[("serve", "idle-memory")]["kib_per_waiter"]
    assert targets["idle memory"][4] == ("**met**" if idle <= 8 else "**missed**")
    sse, polled = by[("serve", "stream-sse-overload")], by[("serve", "stream")]
    delivered = sse["delivered_per_s"] >= 0.99 * sse["subscribers"] * sse["rate"]
    met = delivered and sse["latency"]["p99_ms"] <= 50 and sse["missed"] == 0
    assert targets["SSE stream"][1].startswith(f"{sse['delivered_per_s']:,.0f} deliveries/s, ")
    assert targets["SSE stream"][4] == ("**met**" if met else "**missed**")
    cost = sse["server_us_per_delivery"] / polled["server_us_per_delivery"]
    assert targets["SSE server"][1].startswith("`serve` stream-sse-overload: ")
    assert "; stream-sse: " in targets["SSE server"][1]
    assert targets["SSE server"][2].startswith("`serve` stream: ")
    assert "; stream-overload: " in targets["SSE server"][2]
    assert targets["SSE server"][3] == times(cost)
    assert targets["SSE server"][4] == ("**met**" if cost <= 1 / 3 else "**missed**")
    with_tokens = by[("serve-tokens", "publish")]["requests_per_s"]
    tokens_row = targets["with tokens"]
    assert tokens_row[1].startswith(f"`serve-tokens`: publish {with_tokens:,.0f} req/s; ")
    assert targets["with tokens"][2].startswith(f"`serve`: publish {publish:,.0f} req/s; ")
    assert targets["with tokens"][3].startswith(f"publish req/s {times(with_tokens / publish)}; ")
    streamed = [by[(label, "stream")] for label in ("serve-tokens", "serve")]
    within = (
        with_tokens >= 0.9 * publish
        and streamed[0]["latency"]["p99_ms"] <= 1.1 * streamed[1]["latency"]["p99_ms"]
        and streamed[0]["server_cpu_share"] <= 1.1 * streamed[1]["server_cpu_share"]
    )
    assert targets["with tokens"][4] == ("**met**" if within else "**missed**")
    assert "| serve-tokens | `LONGPOLL_PUBLISH_TOKEN=... LONGPOLL_SUBSCRIBE_SECRET=... " in text

    servers = "serve against stock ASGI servers"
    assert re.search(
        r"did better than asgi-uvicorn on \d of 8 figures and than granian on \d of 6 figures",
        text.split(f"## {servers}")[1],
    )
    compared = table_rows(text, servers)
    assert len(compared) == 8
    for row in compared:  # granian does not stream server-sent events
        sse_row = row[0].startswith("SSE")
        assert re.fullmatch(r"\d+\.\d+x", row[4])
        assert row[5] == "-" if sse_row else re.fullmatch(r"\d+\.\d+x", row[5])
    assert "## What limits each figure" in text
    assert "| serve | stream-overload | " in text
    assert "| asgi-uvicorn | stream-sse-overload | " in text

    for plot in ("fanout-latency.png", "requests-per-s.png"):
        assert f"](benchmarks/{plot})" in text
        assert (tmp_path / "benchmarks" / plot).read_bytes().startswith(PNG)

    # every server the suite started is gone, redis-server included
    ports = {int(m) for m in re.findall(r"127\.0\.0\.1:(\d+)", json.dumps(results["runs"]))}
    ports |= {int(m) for m in re.findall(r"--port ([1-9]\d*)", json.dumps(results["variants"]))}
    assert len(ports) >= 6
    assert all(refuses(port) for port in ports)


@pytest.mark.timeout(120)
def test_suite_measures_a_server_the_user_runs_side_by_side_with_serve(tmp_path: Path) -> None:
    # "the other implementation": a server the suite did not start, under paths of its own
    # and without stats, given twice: with its pid, and without
    paths = ("--subscribe-path", "/lp/subscribe", "--publish-path", "/lp/publish")
    with serve_process(*paths, "--stats-path", "off") as other:
        page = tmp_path / "b.md"
        done = run_bench(
            "suite", "--quick", "--only", "serve", "--out-doc", str(page),
            "--other", f"lp={other.url}@{other.process.pid}", "--other", f"nopid={other.url}",
            "--other-paths", "lp=/lp/subscribe,/lp/publish",
            "--other-paths", "nopid=/lp/subscribe,/lp/publish", timeout=110,
        )  # fmt: skip
        assert other.process.poll() is None  # the suite left it alone
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"warning: --other lp: pid {other.process.pid}, not pinned" in done.stderr
    assert "warning: --other nopid: no pid given" in done.stderr

    text = page.read_text()
    servers = "serve against the alternatives"
    header = text.split(f"## {servers}\n")[1].split("\n| --- |")[0].splitlines()[-1]
    assert header.endswith("| lp | nopid | serve / asgi-uvicorn | serve / granian | serve / lp "
                           "| serve / nopid |")  # fmt: skip
    assert re.search(r"did better than lp on \d of 6 figures and than nopid on \d of 5", text)
    compared = {row[0]: row for row in table_rows(text, servers)}
    assert len(compared) == 8
    for name, row in compared.items():
        assert re.fullmatch(r"[\d,.]+", row[1]) and row[2] == row[3] == "-"
        if name.startswith("SSE"):  # the suite asks only its own servers for streams
            assert row[4] == row[5] == row[8] == row[9] == "-"
            continue
        assert re.fullmatch(r"[\d,.]+", row[4]) and re.fullmatch(r"\d+\.\d+x", row[8])
        idle = name.startswith("idle")  # only with the pid, on the server as found
        assert row[5] == "-" if idle else re.fullmatch(r"[\d,.]+", row[5])
        assert row[9] == "-" if idle else re.fullmatch(r"\d+\.\d+x", row[9])
    assert re.search(r"^\| lp \| .*measured as found \| .*idle-memory \|$", text, re.MULTILINE)

    results = json.loads((tmp_path / "b" / "results.json").read_text())
    by = {(run["label"], run["scenario"]): run for run in results["runs"]}
    assert not [run for run in results["runs"] if run["failed"]]
    assert {scenario for label, scenario in by if label == "nopid"} == {
        "fanout", "publish", "catchup", "stream", "stream-overload"
    }  # fmt: skip
    assert by[("lp", "publish")]["server_cpu_share"] is not None
    assert by[("nopid", "publish")]["server_cpu_share"] is None
    rounds = [r for size in by[("lp", "fanout")]["sizes"] for r in size["rounds"]]
    assert all(r["waiting_seen"] is None and r["settle_s"] == 0.5 for r in rounds)  # no stats
    limits = [row for row in table_rows(text, "What limits each figure") if row[0] == "nopid"]
    assert limits and all(row[3] == "-" and row[6].startswith("could not tell") for row in limits)


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


def test_sse_stream_against_longpoll_serve_delivers_every_event_once(tmp_path: Path) -> None:
    with serve_process() as server:
        out = tmp_path / "sse.json"
        done = run_bench(
            "stream-sse", "--url", server.url, "--stats-url", server.url + "/stats",
            "--server-pid", str(server.process.pid), "--pin", "1", "--subscribers", "30",
            "--rate", "100", "--duration", "1", "--latency-every", "3", "--json", str(out),
            timeout=60,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^delivered\s+3000/3000 ", done.stdout, re.MULTILINE)
    assert re.search(r"^missed\s+0 \(0 subscribers", done.stdout, re.MULTILINE)
    assert re.search(r"^streams\s+30 opened, .* 0 reconnects, 0 foreign", done.stdout, re.M)
    result = json.loads(out.read_text())
    assert result["scenario"] == "stream-sse" and result["sse"]
    assert result["missed"] == result["duplicated"] == result["out_of_order"] == 0
    assert result["errors"] == {} and result["foreign"] == 0
    assert result["latency"]["count"] == 10 * 100  # every third subscriber reads the send times
    assert result["server_us_per_delivery"] > 0


def test_sse_reader_counts_gaps_duplicates_and_disorder_however_the_stream_is_cut() -> None:
    # and a stream reopened resumes after the last event read
    from bench.conn import Connection
    from bench.http import Server, parse_target
    from bench.settings import StreamSSE
    from bench.sse import Reader
    from bench.subscribers import Process, StreamConfig

    run_id, planned = uuid.uuid4().hex, 8
    settings = StreamSSE(category="c", subscribers=1, latency_every=1)
    config = StreamConfig(settings, Server(parse_target("http://127.0.0.1:9")), None, run_id, 1,
                          planned, 0, 0)  # fmt: skip

    def frame(seq: int) -> bytes:
        data, event_id = {"run": run_id, "seq": seq, "t": 1000 + seq}, f"{seq:032x}"
        event = {"timestamp": 5, "category": "c", "data": data, "id": event_id}
        body = json.dumps(event, separators=(",", ":")).encode()
        return b"id: 5:%s\nevent: c\ndata: %s\n\n" % (event_id.encode(), body)

    frames = [b"retry: 2000\n\n", b"id: 4\n\n", frame(0), frame(1) + frame(2), b": keep-alive\n\n"]
    frames += [frame(4), frame(5) + frame(5) + frame(7), frame(6), frame(planned)]  # no 3
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    head += b"transfer-encoding: chunked\r\n\r\n"
    wire = head + b"".join(b"%x\r\n%s\r\n" % (len(f), f) for f in frames)

    class Transport:
        written = b""

        def is_closing(self) -> bool:
            return False

        def write(self, data: bytes) -> None:
            self.written = data

        def abort(self) -> None:
            pass

    for cuts in ([], [len(head) + 3], list(range(1, len(wire), 7)), list(range(1, len(wire)))):
        reader = Reader(Process(config))
        conn = reader.conn = Connection(reader)
        conn.connection_made(Transport())  # type: ignore[arg-type]
        reader.poll()
        for start, stop in zip([0, *cuts], [*cuts, len(wire)], strict=True):
            conn.data_received(wire[start:stop])
        seen = reader.result()
        assert (seen.delivered, seen.missing, seen.duplicates) == (7, [3], 1), cuts
        assert (seen.out_of_order, seen.got_end, seen.error) == (1, True, ""), cuts
        assert (seen.events, seen.foreign) == (9, 0), cuts
        assert len(reader.run.latencies) == 7  # first sightings

    reader = Reader(Process(config))
    conn = reader.conn = Connection(reader)
    conn.connection_made(transport := Transport())  # type: ignore[arg-type]
    reader.poll()
    assert b"since_time=-1 HTTP/1.1\r\n" in transport.written
    assert b"\r\nAccept: text/event-stream\r\n" in transport.written
    conn.data_received(wire[: wire.index(b"\r\n", wire.index(b": keep-alive")) + 2])
    reader.poll()  # as a reconnect does, after the keep-alive that followed seq 2
    assert b"since_time=5&last_id=" + b"%032x" % 2 + b" HTTP/1.1" in transport.written


def test_tokens_are_sent_and_a_refusal_fails_the_run() -> None:
    publish_token, secret = "p" * 32, "s" * 32
    tokens = {"LONGPOLL_PUBLISH_TOKEN": publish_token, "LONGPOLL_SUBSCRIBE_SECRET": secret}
    with serve_process("--publish-token", publish_token, "--subscribe-secret", secret) as server:
        load = ("--connections", "2", "--warmup", "0.1", "--duration", "0.3")
        good = run_bench("publish", "--url", server.url, *load, timeout=30, env=tokens)
        wrong = {"LONGPOLL_PUBLISH_TOKEN": "w" * 32}
        refused = run_bench("publish", "--url", server.url, *load, timeout=30, env=wrong)
        stream = run_bench(
            "stream", "--url", server.url, "--stats-url", server.url + "/stats",
            "--subscribers", "5", "--duration", "0.5", "--pin", "1", timeout=40, env=tokens,
        )  # fmt: skip
    assert good.returncode == 0, good.stdout + good.stderr
    assert "tokens: the publish token ($LONGPOLL_PUBLISH_TOKEN) with every publish" in good.stdout
    assert re.search(r"^publish\s+\d+ .*  -$", good.stdout, re.MULTILINE)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert re.search(r"HTTP 401 x\d+", refused.stdout)
    assert re.match(r"error: the server refused \d+ request\(s\) with HTTP 401", refused.stderr)
    assert stream.returncode == 0, stream.stdout + stream.stderr
    assert re.search(r"^delivered\s+50/50 ", stream.stdout, re.MULTILINE)
    assert publish_token not in good.stdout + stream.stdout


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


async def _stalled(scope: Scope, receive: Receive, send: Send) -> None:
    """Opens every stream of server-sent events, and for 3 s (longer than the run) answers
    no publish and sends no event: a server that has fallen far behind."""
    assert scope["type"] == "http"
    if scope["path"] == "/events":
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
    await asyncio.sleep(3)


async def test_sse_publisher_gives_up_on_a_server_that_falls_behind() -> None:
    async with serve_until_crash(_stalled) as url:
        process = await asyncio.create_subprocess_exec(
            *bench("stream-sse", "--url", url, "--subscribers", "3", "--rate", "20",
                   "--duration", "0.5", "--pin", "1", "--drain", "0.5"),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), 40)
    output = stdout.decode()
    assert process.returncode == 0, output + stderr.decode()  # behind, but nothing wrong
    assert re.search(r"^delivered\s+0/30 ", output, re.MULTILINE)
    assert "the publisher gave up on 11 answers after the drain time: 30 events not read" in output
    assert re.search(r"^missed\s+0 ", output, re.MULTILINE)
    assert re.search(r"^errors\s+-$", output, re.MULTILINE)


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
