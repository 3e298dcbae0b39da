"""What a crash of `longpoll serve --persist FILE` loses, with and without --fsync.

For each mode, a few times over: start `longpoll serve --persist FILE` on a free
loopback port, publish from several concurrent clients for a while, kill the
server with SIGKILL while publishes are in flight, then compare the events the
server acknowledged with those in FILE. Prints a Markdown table.

    python deploy/crash_loss.py              # 5 runs per mode, as fast as it goes
    python deploy/crash_loss.py --rate 200   # 200 publishes per second
    python deploy/crash_loss.py --runs 1 --seconds 0.5 --dir /var/lib/longpoll

Run it on the disk your server will write to (--dir): fsync's cost is the disk's.
SIGKILL stops the process, not the machine: what the process handed to the
operating system survives it. A power cut also loses, without --fsync, what the
operating system had not yet written to the disk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

_LISTENING = re.compile(rb"listening on http://([^:]+):(\d+)")
_CONTENT_LENGTH = re.compile(rb"(?i)content-length: *(\d+)")


@dataclass
class Run:
    """One server killed while publishing."""

    acknowledged: int
    lost: int
    """Acknowledged events that are not in the file."""
    seconds: float

    @property
    def rate(self) -> float:
        return self.acknowledged / self.seconds


async def _start(path: Path, fsync: bool) -> tuple[asyncio.subprocess.Process, tuple[str, int]]:
    flags = ["--persist", str(path), "--max-buffer", "1000000"]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "longpoll.cli",
        "serve",
        "--port",
        "0",
        *flags,
        *(["--fsync"] if fsync else []),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    async with asyncio.timeout(15):
        while line := await process.stdout.readline():
            match = _LISTENING.search(line)
            if match:
                return process, (match.group(1).decode(), int(match.group(2)))
    process.kill()
    raise SystemExit(f"longpoll serve did not start: {line!r}")


async def _publisher(
    host: str, port: int, acknowledged: list[str], n: int, interval: float
) -> None:
    """Publish one event after another on one keep-alive connection, at most one per
    `interval` seconds, until the server is gone (plain asyncio streams: a full HTTP
    client would be slower than the server)."""
    body = orjson.dumps({"category": "crash", "data": {"publisher": n, "text": "x" * 64}})
    request = (
        b"POST /publish HTTP/1.1\r\nhost: %b\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%b" % (host.encode(), len(body), body)
    )
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return
    next_at = time.monotonic()
    try:
        while True:
            next_at += interval
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200 "):
                return
            length = int(_CONTENT_LENGTH.search(head).group(1))  # type: ignore[union-attr]
            answer = await reader.readexactly(length)
            acknowledged.append(orjson.loads(answer)["id"])
            await asyncio.sleep(next_at - time.monotonic())
    except (OSError, asyncio.IncompleteReadError):
        return  # the server is gone
    finally:
        writer.close()


async def _run(folder: Path, fsync: bool, seconds: float, clients: int, rate: float) -> Run:
    path = Path(tempfile.mkdtemp(dir=folder)) / "events.jsonl"
    process, address = await _start(path, fsync)
    acknowledged: list[str] = []
    host, port = address
    interval = clients / rate if rate else 0.0
    tasks = [
        asyncio.create_task(_publisher(host, port, acknowledged, n, interval))
        for n in range(clients)
    ]
    started = time.monotonic()
    # A random moment within the flush period, which began when the server started.
    await asyncio.sleep(seconds + random.random())
    process.send_signal(signal.SIGKILL)
    elapsed = time.monotonic() - started
    await asyncio.gather(*tasks)
    await process.wait()
    on_disk = set()
    for line in path.read_bytes().splitlines():
        # A line torn by the kill is skipped, as the server skips it on start.
        with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
            on_disk.add(orjson.loads(line)["id"])
    lost = sum(1 for event_id in acknowledged if event_id not in on_disk)
    path.unlink()
    path.parent.rmdir()
    return Run(len(acknowledged), lost, elapsed)


async def _measure(args: argparse.Namespace) -> None:
    pace = f"at {args.rate:g} events/s in all" if args.rate else "as fast as they can"
    publishers = f"{args.clients} publisher{'s' * (args.clients != 1)}"
    print(
        f"{args.runs} runs per mode, {publishers} {pace} for "
        f"{args.seconds:g} to {args.seconds + 1:g} s, then SIGKILL; files in {args.dir}\n"
    )
    print("| mode | publishes acknowledged per second | acknowledged events lost per crash |")
    print("|---|---|---|")
    for fsync in (False, True):
        runs = [
            await _run(args.dir, fsync, args.seconds, args.clients, args.rate)
            for _ in range(args.runs)
        ]
        rate = statistics.median(run.rate for run in runs)
        lost = sorted(run.lost for run in runs)
        window = statistics.median(run.lost / run.rate * 1000 for run in runs)
        mode = "`--fsync`" if fsync else "without `--fsync`"
        losses = ", ".join(str(n) for n in lost)
        print(f"| {mode} | {rate:,.0f} | {losses} (median {window:.0f} ms of publishing) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="crashes per mode")
    parser.add_argument("--seconds", type=float, default=2.0, help="publishing before the kill")
    parser.add_argument("--clients", type=int, default=8, help="concurrent publishers")
    parser.add_argument(
        "--rate", type=float, default=0, help="publishes per second in all (0: no pause)"
    )
    parser.add_argument(
        "--dir", type=Path, default=Path(tempfile.gettempdir()), help="folder for the files"
    )
    asyncio.run(_measure(parser.parse_args()))


if __name__ == "__main__":
    main()
