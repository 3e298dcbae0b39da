"""Server-Sent Events in Debian's Chromium: the browser's own `EventSource`, and
longpoll.js with `transport` "sse" and "auto".

The server is longpoll's own (so a test can cut its connections, as a network
would) or stock uvicorn; the test pages come from Playwright at the server's
origin, and every subscribe request the page makes is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from playwright.async_api import Page, Request, Route

from longpoll import AccessPolicy, LongpollApp, LongpollManager, Options
from longpoll.tokens import issue
from tests.servers import RunningServer, serve_app, wait_for_waiters
from tests.test_browser import PAGES, got, start, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = "a secret of at least thirty-two bytes, for the tests"

EVENT_SOURCE_PAGE = """<!doctype html><meta charset="utf-8"><title>EventSource</title>
<script>
window.seen = [];
window.opened = 0;
window.listen = (query, types) => {
  types.push("message");
  window.source = new EventSource("/events?" + query);
  source.onopen = () => { opened += 1; };
  for (const type of types) {
    source.addEventListener(type, (event) => {
      seen.push({ type: event.type, lastEventId: event.lastEventId, data: JSON.parse(event.data) });
    });
  }
};
window.harnessReady = true;
</script>
"""


@dataclass
class Subscribe:
    """One subscribe request the page made."""

    query: dict[str, list[str]]
    headers: dict[str, str]
    request: Request

    @property
    def streams(self) -> bool:
        return "text/event-stream" in self.headers.get("accept", "")


class Recorder:
    """The subscribe requests a page makes, in order."""

    def __init__(self, page: Page) -> None:
        self.requests: list[Subscribe] = []
        page.on("request", self._seen)

    def _seen(self, request: Request) -> None:
        url = urlsplit(request.url)
        if url.path == "/events":
            query = parse_qs(url.query, keep_blank_values=True)
            self.requests.append(Subscribe(query, request.headers, request))

    @property
    def streams(self) -> list[Subscribe]:
        return [request for request in self.requests if request.streams]

    @property
    def polls(self) -> list[Subscribe]:
        return [request for request in self.requests if not request.streams]


@contextlib.asynccontextmanager
async def served(
    options: Options | None = None, *, portable: bool = False, access: AccessPolicy | None = None
) -> AsyncIterator[RunningServer]:
    """A `LongpollApp` with a fresh manager on a free loopback port."""
    manager = LongpollManager(options or Options())
    async with serve_app(LongpollApp(manager, access=access), portable=portable) as running:
        yield running


async def open_page(page: Page, url: str, body: str = PAGES["/module.html"]) -> Recorder:
    """Show `body` at `url`/page.html (Playwright serves it), and record subscribes."""

    async def fulfil(route: Route) -> None:
        await route.fulfill(body=body, content_type="text/html; charset=utf-8")

    await page.route(f"{url}/page.html", fulfil)
    recorder = Recorder(page)
    await page.goto(f"{url}/page.html")
    await page.wait_for_function("window.harnessReady === true", timeout=5000)
    return recorder


def cut_connections(server: RunningServer) -> None:
    """Break every connection of longpoll's own server, as a network failure would."""
    assert server.http is not None
    for connection in list(server.http.connections):
        connection.abort()


async def block_streams(page: Page) -> None:
    """From now on, the page's stream requests fail as if a proxy refused them."""

    async def refuse(route: Route) -> None:
        if "text/event-stream" in route.request.headers.get("accept", ""):
            await route.abort("connectionrefused")
        else:
            await route.continue_()

    await page.route("**/events?*", refuse)


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [event["id"] for event in events]


# --- the browser's own EventSource -------------------------------------------------


async def test_event_source_gets_events_in_order_and_resumes_by_itself(page: Page) -> None:
    async with served() as server:
        manager = server.manager
        recorder = await open_page(page, server.url, EVENT_SOURCE_PAGE)
        query = "category=a&category=b&category=line%0Abreak"
        await page.evaluate("([query, types]) => listen(query, types)", [query, ["a", "b"]])
        await wait_for_waiters(manager, 1)
        await wait_until(page, "opened === 1")
        published = [
            await manager.publish("a", 1),
            await manager.publish("b", {"two": 2}),
            await manager.publish("line\nbreak", "a category with a line break"),
            await manager.publish("a", [4]),
        ]
        await wait_until(page, "seen.length === 4")
        seen = await page.evaluate("seen")
        # A category that cannot stand in an `event:` line comes as "message".
        assert [entry["type"] for entry in seen] == ["a", "b", "message", "a"]
        assert [entry["lastEventId"] for entry in seen] == [
            f"{event.timestamp}:{event.id}" for event in published
        ]
        assert [entry["data"] for entry in seen] == [event.to_dict() for event in published]

        # The connection breaks; the browser comes back with Last-Event-ID after the
        # server's `retry:` time and gets what was published meanwhile, once.
        cut_connections(server)
        meanwhile = [await manager.publish("b", n) for n in range(2)]
        await wait_until(page, "seen.length === 6 && opened === 2", seconds=10)
        seen = await page.evaluate("seen")
        await page.evaluate("source.close()")
        assert [entry["data"]["id"] for entry in seen] == [
            str(event.id) for event in published + meanwhile
        ]
        # The reconnection asked for the same URL, with no position in it: only its
        # Last-Event-ID header (which Playwright does not show) let the server resume.
        first, again = recorder.requests
        assert again.query == first.query == {"category": ["a", "b", "line\nbreak"]}


# --- longpoll.js over a stream -----------------------------------------------------


@pytest.mark.parametrize("portable", [False, True], ids=["own-server", "asgi-uvicorn"])
async def test_sse_transport_delivers_events_in_order(page: Page, portable: bool) -> None:
    categories = ["news", "café ☕ + más", "missed"]
    async with served(portable=portable) as server:
        manager = server.manager
        recorder = await open_page(page, server.url)
        options = {"subscribeUrl": "/events", "publishUrl": "/publish", "category": categories}
        await start(page, {**options, "transport": "sse"})
        await wait_for_waiters(manager, 1)
        values: list[Any] = ["text", {"nested": [1, None, True]}, 42, "ünïcødé ✓ 😀", [], False]
        published = [
            await manager.publish(categories[index % 3], value)
            for index, value in enumerate(values)
        ]
        answer = await page.evaluate("client.publish('news', {from: 'the page'})")
        await wait_until(page, f"got.events.length === {len(values) + 1}")
        await asyncio.sleep(0.1)  # nothing more arrives
        result = await got(page)
        state = await page.evaluate("[client.activeTransport, client.sinceTime, client.lastId]")
        await page.evaluate("client.stop()")
        await wait_for_waiters(manager, 0)

    expected = [(event.category, event.data, str(event.id)) for event in published]
    expected.append(("news", {"from": "the page"}, answer["id"]))
    assert [(e["category"], e["data"], e["id"]) for e in result["events"]] == expected
    assert result["failures"] == result["gaps"] == []  # the category "missed" is no gap
    assert state == ["sse", answer["timestamp"], answer["id"]]
    [stream] = recorder.requests
    assert stream.streams
    assert stream.query == {"category": categories}  # no timeout: a stream has none


async def test_sse_reconnects_from_its_position_without_gap_or_duplicate(page: Page) -> None:
    async with served() as server:
        manager = server.manager
        recorder = await open_page(page, server.url)
        options = {"subscribeUrl": "/events", "category": "c", "transport": "sse"}
        await start(page, options)
        await wait_for_waiters(manager, 1)
        # The stream's first words name a position: a cut before any event loses nothing.
        await wait_until(page, "client.sinceTime !== undefined")
        announced = await page.evaluate("client.sinceTime")
        cut_connections(server)
        published = [await manager.publish("c", "while away")]
        await wait_until(page, "got.events.length === 1")
        await wait_for_waiters(manager, 1)

        published += [await manager.publish("c", n) for n in range(3)]
        await wait_until(page, "got.events.length === 4")
        cut_connections(server)
        published += [await manager.publish("c", n) for n in range(3, 5)]
        await wait_until(page, "got.events.length === 6")
        await wait_for_waiters(manager, 1)
        published.append(await manager.publish("c", "after"))
        await wait_until(page, "got.events.length === 7")
        await asyncio.sleep(0.1)
        result = await got(page)
        await page.evaluate("client.stop()")

    assert ids(result["events"]) == [str(event.id) for event in published]
    assert result["failures"] == []  # an open stream that breaks is reopened quietly
    positions = [request.query for request in recorder.requests]
    assert [request.streams for request in recorder.requests] == [True] * 3
    assert positions[1] == {"category": ["c"], "since_time": [str(announced)]}
    fourth = published[3]
    assert positions[2] == {
        "category": ["c"],
        "since_time": [str(fourth.timestamp)],
        "last_id": [str(fourth.id)],
    }


async def test_sse_signals_a_gap_before_the_events_after_it(page: Page) -> None:
    async with served(Options(max_event_buffer_size=2)) as server:
        published = [await server.manager.publish("c", n) for n in range(4)]
        await open_page(page, server.url)
        first = published[0]
        position = {"sinceTime": first.timestamp, "lastId": str(first.id)}
        await start(
            page, {"subscribeUrl": "/events", "category": "c", "transport": "sse", **position}
        )
        await wait_until(page, "got.events.length === 2")
        result = await got(page)
        await page.evaluate("client.stop()")
    assert result["gaps"] == [position]
    assert ids(result["events"]) == [str(event.id) for event in published[2:]]


async def test_sse_failures_carry_the_server_message_and_status(page: Page) -> None:
    async with served(Options(max_categories_per_request=1)) as server:
        await open_page(page, server.url)
        options = {"subscribeUrl": "/events", "category": ["a", "b"], "transport": "sse"}
        await start(page, options, retry=False)
        await wait_until(page, "got.failures.length === 1 && !client.running")
        result = await got(page)
    assert result["failures"] == [
        {"message": "category may be given at most 1 times", "status": 400}
    ]


async def test_sse_sends_the_token_in_its_header_and_renews_it_after_a_401(page: Page) -> None:
    access = AccessPolicy(subscribe_secret=SECRET)
    good = issue(SECRET, ["c"], 600)
    async with served(access=access) as server:
        recorder = await open_page(page, server.url)
        await page.evaluate(
            """(tokens) => {
              window.tokens = tokens;
              start({subscribeUrl: "/events", category: "c", transport: "sse",
                     token: () => tokens.shift()});
            }""",
            ["not-a-token", good],
        )
        await wait_for_waiters(server.manager, 1)
        event = await server.manager.publish("c", "granted")
        await wait_until(page, "got.events.length === 1")
        result = await got(page)
        await page.evaluate("client.stop()")
    assert ids(result["events"]) == [str(event.id)]
    assert result["failures"] == []  # the fresh token cured the 401 at once
    assert [request.headers.get("authorization") for request in recorder.requests] == [
        "Bearer not-a-token",
        f"Bearer {good}",
    ]
    assert all("token" not in request.query for request in recorder.requests)


async def test_stop_ends_the_stream_at_once(page: Page) -> None:
    async with served() as server:
        manager = server.manager
        await open_page(page, server.url)
        await start(page, {"subscribeUrl": "/events", "category": "c", "transport": "sse"})
        await wait_for_waiters(manager, 1)
        stopped_at = time.monotonic()
        await page.evaluate("client.stop()")
        await wait_for_waiters(manager, 0)
        assert time.monotonic() - stopped_at < 1
        await manager.publish("c", "too late")
        await asyncio.sleep(0.3)
        assert (await got(page))["events"] == []


async def test_the_transport_option_is_checked(page: Page) -> None:
    async with served() as server:
        await open_page(page, server.url)
        error = await page.evaluate(
            """() => {
              try {
                newClient({subscribeUrl: "/events", category: "c", transport: "websocket"});
              } catch (error) {
                return [error.name, error.option, error.message];
              }
            }"""
        )
    assert error == [
        "TypeError",
        "transport",
        """longpoll: option 'transport' must be one of "longpoll", "sse", "auto\"""",
    ]


# --- transport "auto" --------------------------------------------------------------


async def test_auto_falls_back_to_long_polling_and_keeps_its_position(page: Page) -> None:
    async with served() as server:
        manager = server.manager
        recorder = await open_page(page, server.url)
        options = {"subscribeUrl": "/events", "category": "c", "transport": "auto"}
        await start(page, {**options, "pollTimeoutSeconds": 5})
        await wait_for_waiters(manager, 1)
        published = [await manager.publish("c", n) for n in range(3)]
        await wait_until(page, "got.events.length === 3")
        assert await page.evaluate("client.activeTransport") == "sse"

        # Streams stop getting through (a proxy, say) and the open one breaks.
        await block_streams(page)
        cut_connections(server)
        published += [await manager.publish("c", n) for n in range(3, 5)]
        await wait_until(page, "got.events.length === 5")
        await wait_for_waiters(manager, 1)
        published.append(await manager.publish("c", "polled"))
        await wait_until(page, "got.events.length === 6")
        await asyncio.sleep(0.1)
        result = await got(page)
        transport = await page.evaluate("client.activeTransport")
        await page.evaluate("client.stop()")

    assert ids(result["events"]) == [str(event.id) for event in published]
    assert result["failures"] == []
    assert transport == "longpoll"
    first_poll = recorder.polls[0].query
    third = published[2]
    assert first_poll == {
        "category": ["c"],
        "timeout": ["5"],
        "since_time": [str(third.timestamp)],
        "last_id": [str(third.id)],
    }
    # The one stream that could not be opened came between the stream and the polls.
    assert [request.streams for request in recorder.requests[:3]] == [True, True, False]


@pytest.mark.parametrize("transport", ["auto", "sse"])
async def test_a_server_that_refuses_streams(page: Page, transport: str) -> None:
    """A server without streams (golongpoll's asks for a timeout): "auto" long-polls,
    "sse" reports the server's refusal."""
    async with served() as server:
        manager = server.manager
        recorder = await open_page(page, server.url)

        async def refuse(route: Route) -> None:
            if "text/event-stream" not in route.request.headers.get("accept", ""):
                await route.continue_()
                return
            body = orjson.dumps({"error": "Invalid timeout arg"})
            await route.fulfill(status=400, body=body, content_type="application/json")

        await page.route("**/events?*", refuse)
        options = {"subscribeUrl": "/events", "category": "c", "transport": transport}
        await start(page, options, retry=False)
        if transport == "sse":
            await wait_until(page, "!client.running")
            result = await got(page)
            assert result["failures"] == [{"message": "Invalid timeout arg", "status": 400}]
            return
        await wait_for_waiters(manager, 1)
        event = await manager.publish("c", "by poll")
        await wait_until(page, "got.events.length === 1")
        await wait_for_waiters(manager, 1)
        result = await got(page)
        await page.evaluate("client.stop()")
    assert ids(result["events"]) == [str(event.id)]
    assert result["failures"] == []
    assert [request.streams for request in recorder.requests] == [True, False, False]


async def test_auto_tries_a_stream_again_when_polls_fail_too(page: Page) -> None:
    """Neither gets through (a server away): one failure is reported per stream and
    poll tried, and the next attempt is a stream again."""
    async with served() as server:
        recorder = await open_page(page, server.url)

        async def fail(route: Route) -> None:
            body = orjson.dumps({"error": "the database is on fire"})
            await route.fulfill(status=500, body=body, content_type="application/json")

        await page.route("**/events?*", fail)
        options = {"subscribeUrl": "/events", "category": "c", "transport": "auto"}
        await start(page, {**options, "reattemptWaitSeconds": 0.05})
        await wait_until(page, "got.failures.length >= 3")
        await page.evaluate("client.stop()")
        result = await got(page)
    kinds = [request.streams for request in recorder.requests]
    assert kinds[:6] == [True, False] * 3
    assert result["failures"][:3] == [{"message": "the database is on fire", "status": 500}] * 3


async def test_auto_tries_a_stream_again_after_five_minutes_of_polls(page: Page) -> None:
    async with served(Options(max_longpoll_timeout_seconds=600)) as server:
        manager = server.manager
        await page.clock.install()
        recorder = await open_page(page, server.url)
        await block_streams(page)
        options = {"subscribeUrl": "/events", "category": "c", "transport": "auto"}
        # Polls outlast the jump in time below, so that none is cut short by it.
        await start(page, {**options, "pollTimeoutSeconds": 500})
        await wait_for_waiters(manager, 1)
        await page.unroute("**/events?*")
        published = [await manager.publish("c", "by poll")]
        await wait_until(page, "got.events.length === 1")
        await wait_for_waiters(manager, 1)
        assert await page.evaluate("client.activeTransport") == "longpoll"

        await page.clock.fast_forward(301_000)
        published.append(await manager.publish("c", "the last poll"))
        await wait_until(page, "got.events.length === 2")
        await wait_until(page, "client.activeTransport === 'sse'")
        await wait_for_waiters(manager, 1)
        published.append(await manager.publish("c", "by stream"))
        await wait_until(page, "got.events.length === 3")
        result = await got(page)
        await page.evaluate("client.stop()")
    assert ids(result["events"]) == [str(event.id) for event in published]
    assert [request.streams for request in recorder.requests] == [True, False, False, True]
    last = published[1]
    assert recorder.requests[-1].query["last_id"] == [str(last.id)]
