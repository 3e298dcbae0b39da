"""`python -m examples.stressor.publisher`: publish many events, one after another.

    python -m examples.stressor.publisher --count 1000 --delay-ms 1 --category stress

Each event's data is `{"n": <1..count>, "sent_ms": <epoch ms>}`. `--concurrency`
keeps several publishes in flight at once (each still waits `--delay-ms` between
its own). Prints how many were published and how fast.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time

from examples.stressor import DEFAULT_PORT
from longpoll.client import AsyncClient, ClientError


async def publish_all(args: argparse.Namespace) -> int:
    numbers = itertools.count(1)
    async with AsyncClient(f"{args.url}/events", publish_url=f"{args.url}/publish") as client:

        async def worker() -> None:
            for n in numbers:
                if n > args.count:
                    return
                await client.publish(args.category, {"n": n, "sent_ms": int(time.time() * 1000)})
                if args.delay_ms:
                    await asyncio.sleep(args.delay_ms / 1000)

        started = time.perf_counter()
        failure: ClientError | None = None
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(args.concurrency):
                    group.create_task(worker())
        except* ClientError as failed:
            failure = failed.exceptions[0]  # type: ignore[assignment]  # a ClientError
        if failure is not None:
            print(f"publish failed: {failure}", file=sys.stderr)
            return 1
        seconds = time.perf_counter() - started
    rate = args.count / seconds if seconds else float("inf")
    print(f"published {args.count} events on {args.category!r} in {seconds:.2f} s ({rate:.0f}/s)")
    return 0


def main() -> None:
    arguments = argparse.ArgumentParser(description="Publish many events to stress a server.")
    arguments.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}", help="base URL")
    arguments.add_argument("--count", type=int, default=1000, help="events to publish (1000)")
    arguments.add_argument("--delay-ms", type=float, default=0, help="wait between events (0)")
    arguments.add_argument("--category", default="stress", help="category (stress)")
    arguments.add_argument("--concurrency", type=int, default=1, help="publishes in flight (1)")
    args = arguments.parse_args()
    if args.count < 0 or args.delay_ms < 0 or args.concurrency < 1:
        arguments.error("--count and --delay-ms cannot be negative, --concurrency is at least 1")
    sys.exit(asyncio.run(publish_all(args)))


if __name__ == "__main__":
    main()
