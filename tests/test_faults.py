"""Redis paused and restarted under load: nothing acknowledged is lost or repeated.

Two workers of `longpoll serve` share a private Redis. A publisher sends about 100
events a second, each with its own id, and retries a failed publish with the same id
until it is acknowledged; 20 subscribers poll, half resuming from the last event they
got, half also from the `timestamp` of each timeout answer (as golongpoll's clients
do). Redis is paused (SIGSTOP) for 15 s, then killed and restarted empty once every
subscriber has caught up. Every subscriber must get every acknowledged event exactly
once, and service must come back by itself.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.redis_server import RedisServer
from tests.servers import serve_process

PAUSE_SECONDS = 15.0
CATEGORY = "faults"


@dataclass
class Subscriber:
    """One resuming subscriber and what it received."""

    takes_timeouts: bool
    since_time: int
    last_id: str | None = None
    received: list[str] = field(default_factory=list)
    errors: int = 0

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"category": CATEGORY, "timeout": 2, "since_time": self.since_time}
        if self.last_id is not None:
            params["last_id"] = self.last_id
        return params

    async def run(self, url: str, stop: asyncio.Event) -> None:
        async with connection(url) as http:
            while not stop.is_set():
                await self.poll(http)

    async def poll(self, http: httpx.AsyncClient) -> None:
        try:
            answer = await http.get("/events", params=self.params())
        except httpx.HTTPError:
            answer = None
        if answer is None or answer.status_code != 200:
            self.errors += 1
            await asyncio.sleep(0.2)
            return
        body = answer.json()
        for event in body.get("events", []):
            self.received.append(event["id"])
            self.since_time, self.last_id = event["timestamp"], event["id"]
        if "timeout" in body and self.takes_timeouts:
            self.since_time, self.last_id = body["timestamp"], None


@dataclass
class Publisher:
    """Publishes numbered events, each retried with its id until acknowledged."""

    acknowledged: list[str] = field(default_factory=list)
    failures: int = 0
    unconfirmed: int = 0
    repeats: int = 0
    last_ack: float = 0.0

    async def run(self, url: str, stop: asyncio.Event) -> None:
        async with connection(url) as http:
            while not stop.is_set():
                event_id = str(uuid.uuid4())
                body = {"category": CATEGORY, "data": len(self.acknowledged), "id": event_id}
                while True:
                    try:
                        answer = await http.post("/publish", json=body)
                    except httpx.HTTPError:
                        answer = None
                    if answer is not None and answer.status_code == 200:
                        break
                    self.failures += 1
                    if answer is not None and answer.json().get("code") == "publish_unconfirmed":
                        self.unconfirmed += 1
                    await asyncio.sleep(0.2)
                assert answer.json()["id"] == event_id
                self.repeats += answer.json().get("repeat", False)
                self.acknowledged.append(event_id)
                self.last_ack = time.monotonic()
                await asyncio.sleep(0.01)


def connection(url: str) -> httpx.AsyncClient:
    """A client of its own: one connection, on whichever worker the kernel picks (a new
    one after a failure)."""
    return httpx.AsyncClient(base_url=url, timeout=10, limits=httpx.Limits(max_connections=1))


async def caught_up(subscribers: list[Subscriber], publisher: Publisher, seconds: float) -> float:
    """Wait until every subscriber has every acknowledged event; the seconds it took."""
    started = time.monotonic()
    target = set(publisher.acknowledged)
    async with asyncio.timeout(seconds):
        while not all(target <= set(s.received) for s in subscribers):
            await asyncio.sleep(0.1)
    return time.monotonic() - started


async def acknowledged_after(publisher: Publisher, moment: float, seconds: float) -> float:
    """Wait for a publish acknowledged after `moment`; the seconds from `moment`."""
    async with asyncio.timeout(seconds):
        while publisher.last_ack <= moment:
            await asyncio.sleep(0.05)
    return publisher.last_ack - moment


async def test_redis_paused_and_restarted_loses_and_repeats_nothing(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    flags = ["--redis", redis.url, "--redis-prefix", "faults", "--workers", "2"]
    try:
        with serve_process(*flags) as server:
            # Both workers listen once the server answers the stats of both.
            async with httpx.AsyncClient(base_url=server.url) as http:
                await http.get("/stats")
            start = int(time.time() * 1000)
            stop_publishing, stop_polling = asyncio.Event(), asyncio.Event()
            subscribers = [Subscriber(n % 2 == 1, start) for n in range(20)]
            publisher = Publisher()
            polling = [asyncio.create_task(s.run(server.url, stop_polling)) for s in subscribers]
            publishing = asyncio.create_task(publisher.run(server.url, stop_publishing))
            try:
                await asyncio.sleep(3)
                assert redis.process is not None
                redis.process.send_signal(signal.SIGSTOP)
                await asyncio.sleep(PAUSE_SECONDS)
                redis.process.send_signal(signal.SIGCONT)
                resumed = time.monotonic()
                after_pause = await acknowledged_after(publisher, resumed, 20)
                pause_catch_up = await caught_up(subscribers, publisher, 30)
                # Killed and started again, empty: only what comes next is served.
                redis.stop()
                redis.start()
                restarted = time.monotonic()
                after_restart = await acknowledged_after(publisher, restarted, 20)
                await asyncio.sleep(3)
                stop_publishing.set()
                await publishing
                final_catch_up = await caught_up(subscribers, publisher, 20)
            finally:
                stop_publishing.set()
                stop_polling.set()
                await asyncio.wait([publishing, *polling], timeout=15)
            for task in polling:
                task.result()
            code, output = server.stop(signal.SIGTERM)
    finally:
        redis.stop()

    acknowledged = set(publisher.acknowledged)
    lost = sum(len(acknowledged - set(s.received)) for s in subscribers)
    duplicated = sum(len(s.received) - len(set(s.received)) for s in subscribers)
    unknown = sum(len(set(s.received) - acknowledged) for s in subscribers)
    print(
        f"acknowledged {len(acknowledged)} events ({publisher.failures} failed attempts, "
        f"{publisher.unconfirmed} unconfirmed, {publisher.repeats} answered as repeats); "
        f"lost {lost}, duplicated {duplicated}, unacknowledged yet delivered {unknown}; "
        f"first acknowledgement {after_pause:.2f} s after the pause ended and "
        f"{after_restart:.2f} s after the restart; subscribers caught up "
        f"{pause_catch_up:.2f} s after the pause ({final_catch_up:.2f} s at the end)"
    )
    assert len(acknowledged) == len(publisher.acknowledged)  # ids are never reused
    assert lost == 0
    assert duplicated == 0
    # Every publish was retried until acknowledged, so nothing was delivered unacknowledged.
    assert unknown == 0
    assert code == 0, output
    assert "Traceback" not in output
