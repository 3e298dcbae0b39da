"""Publishing from longpoll.js in Debian's Chromium: every publish names its event, and
one that may not have arrived is sent again under the same id, so it is stored once.

Failures between the page and a real server on a loopback port are made with
Playwright's request interception (`page.route`): an answer replaced, or the server's
answer taken and the connection to the page broken instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from playwright.async_api import Error, Page, Route

from longpoll import Options
from tests.servers import http_client
from tests.test_browser import open_harness, site, start

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(30)]

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

# Resolves to ["ok", answer] or ["error", {message, status, body, eventId, attempts, code}].
PUBLISH = """async ([category, data]) => {
  try {
    return ["ok", await client.publish(category, data)];
  } catch (error) {
    const { message, status, body, eventId, attempts, code } = error;
    return ["error", { name: error.name, message, status, body, eventId, attempts, code }];
  }
}"""

NGINX_504 = (
    "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    "<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)

Handler = Callable[[Route, int], Awaitable[None]]


class Publishes:
    """Intercepts the page's publishes: `handle(route, n)` answers the n-th (from 1).

    Records each request's body and when it was sent.
    """

    def __init__(self, handle: Handler) -> None:
        self.handle = handle
        self.bodies: list[dict[str, Any]] = []
        self.times: list[float] = []

    async def __call__(self, route: Route) -> None:
        self.bodies.append(orjson.loads(route.request.post_data or "null"))
        self.times.append(time.monotonic())
        await self.handle(route, len(self.bodies))

    def ids(self) -> list[str]:
        return [body["id"] for body in self.bodies]


async def intercept(page: Page, handle: Handler) -> Publishes:
    publishes = Publishes(handle)
    await page.route("**/publish", publishes)
    return publishes


async def publish(page: Page, category: str, data: Any) -> tuple[str, dict[str, Any]]:
    outcome, value = await page.evaluate(PUBLISH, [category, data])
    return outcome, value


async def stored(url: str, category: str) -> list[dict[str, Any]]:
    """Every event buffered in `category`, as a subscribe gets them."""
    async with http_client(url) as http:
        answer = await http.get(
            "/events", params={"category": category, "timeout": 1, "since_time": -1}
        )
    assert answer.status_code == 200, answer.text
    events: list[dict[str, Any]] = answer.json().get("events", [])
    return events


async def open_client(page: Page, url: str, **options: Any) -> None:
    await open_harness(page, url)
    base = {"subscribeUrl": "/events", "publishUrl": "/publish", "category": "unused"}
    await start(page, {**base, "publishRetryWaitSeconds": 0.05, **options})


def json_answer(status: int, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    return {"status": status, "body": orjson.dumps(body), "headers": headers}


# --- the event id and the repeat flag ----------------------------------------------


@pytest.mark.parametrize("random_uuid", [True, False], ids=["randomUUID", "getRandomValues"])
async def test_each_publish_sends_a_new_event_id_and_the_answer_says_repeat(
    page: Page, random_uuid: bool
) -> None:
    async with site() as (_, url, _):
        await open_client(page, url)
        if not random_uuid:
            # As in a page of a plain-http origin, where crypto.randomUUID is missing.
            await page.evaluate("delete Crypto.prototype.randomUUID")
            assert await page.evaluate("typeof crypto.randomUUID") == "undefined"

        async def pass_on(route: Route, n: int) -> None:
            await route.continue_()

        publishes = await intercept(page, pass_on)
        first = await publish(page, "ids", {"n": 1})
        second = await publish(page, "ids", {"n": 2})
        assert first[0] == second[0] == "ok"
        answers = [first[1], second[1]]
        assert publishes.ids() == [answer["id"] for answer in answers]
        assert all(UUID4.match(event_id) for event_id in publishes.ids())
        assert publishes.ids()[0] != publishes.ids()[1]
        assert [body["data"] for body in publishes.bodies] == [{"n": 1}, {"n": 2}]
        assert all(answer["repeat"] is False for answer in answers)
        events = await stored(url, "ids")
        assert [(event["id"], event["timestamp"]) for event in events] == [
            (answer["id"], answer["timestamp"]) for answer in answers
        ]

        # The same request twice (as when a publish is sent again after its answer was
        # lost): the second answer, which reaches the page, says so.
        await page.unroute("**/publish")

        async def twice(route: Route, n: int) -> None:
            await route.fetch()
            await route.fulfill(response=await route.fetch())

        publishes = await intercept(page, twice)
        outcome, answer = await publish(page, "ids", {"n": 3})
        assert outcome == "ok"
        assert answer == {
            "success": True,
            "id": publishes.ids()[0],
            "timestamp": answer["timestamp"],
            "repeat": True,
        }
        assert [event["id"] for event in await stored(url, "ids")][2:] == [answer["id"]]


# --- sent again under the same id --------------------------------------------------


@pytest.mark.parametrize("reached_the_server", [False, True], ids=["unavailable", "unconfirmed"])
async def test_a_publish_answered_503_is_sent_again_and_stored_once(
    page: Page, reached_the_server: bool
) -> None:
    async with site() as (_, url, _):
        await open_client(page, url)

        async def first_503(route: Route, n: int) -> None:
            if n > 1:
                await route.continue_()
            elif reached_the_server:
                # The store kept the event but lost its answer: the server says so.
                stored_id = orjson.loads(route.request.post_data or "{}")["id"]
                assert (await route.fetch()).status == 200
                body = {
                    "error": "the event may have been stored: publish it again with its id",
                    "code": "publish_unconfirmed",
                    "id": stored_id,
                }
                await route.fulfill(**json_answer(503, body))
            else:
                await route.fulfill(**json_answer(503, {"error": "redis is unavailable"}))

        publishes = await intercept(page, first_503)
        outcome, answer = await publish(page, "once", "hello")
        assert outcome == "ok"
        assert len(publishes.bodies) == 2
        assert publishes.bodies[0] == publishes.bodies[1]
        assert answer["id"] == publishes.ids()[0]
        assert answer["repeat"] is reached_the_server
        events = await stored(url, "once")
        assert [(event["id"], event["data"]) for event in events] == [(answer["id"], "hello")]


async def test_a_publish_whose_answer_was_lost_is_sent_again_and_is_a_repeat(page: Page) -> None:
    async with site() as (_, url, _):
        await open_client(page, url)
        answers = []

        async def lose_the_first_answer(route: Route, n: int) -> None:
            if n == 1:
                answers.append(await route.fetch())  # the server stores the event...
                await route.abort("connectionreset")  # ...and the page never hears of it
            else:
                await route.continue_()

        publishes = await intercept(page, lose_the_first_answer)
        outcome, answer = await publish(page, "lost", [1, 2])
        assert outcome == "ok"
        first = await answers[0].json()
        assert publishes.ids() == [first["id"]] * 2
        assert answer == {**first, "repeat": True}
        events = await stored(url, "lost")
        assert [(event["id"], event["data"]) for event in events] == [(first["id"], [1, 2])]


async def test_retry_after_is_waited_for_and_a_long_one_ends_the_publish(page: Page) -> None:
    async with site() as (_, url, _):
        await open_client(page, url, maxPublishRetryWaitSeconds=2)
        limited = {"error": "too many publishes: at most 1 per second from one client"}

        async def rate_limited(route: Route, n: int) -> None:
            if n == 1:
                await route.fulfill(**json_answer(429, limited, **{"Retry-After": "1"}))
            elif n == 2:
                await route.continue_()
            else:
                await route.fulfill(**json_answer(429, limited, **{"Retry-After": "60"}))

        publishes = await intercept(page, rate_limited)
        outcome, answer = await publish(page, "limited", 1)
        assert outcome == "ok"
        assert publishes.ids() == [answer["id"]] * 2
        assert publishes.times[1] - publishes.times[0] >= 0.95  # not the 0.05 s back-off
        assert len(await stored(url, "limited")) == 1

        # Retry-After beyond maxPublishRetryWaitSeconds: the publish fails at once.
        began = time.monotonic()
        outcome, error = await publish(page, "limited", 2)
        assert time.monotonic() - began < 1
        assert outcome == "error"
        assert error["message"] == (
            f"publish failed: {limited['error']} (429); the server asks to wait 60 s, "
            "more than maxPublishRetryWaitSeconds"
        )
        assert (error["status"], error["attempts"]) == (429, 1)
        assert len(publishes.bodies) == 3


# --- giving up ---------------------------------------------------------------------


async def test_the_attempts_are_bounded_and_the_error_names_the_last_failure(
    page: Page,
) -> None:
    async with site() as (_, url, _):
        await open_client(page, url, publishAttempts=3)

        async def shutting_down(route: Route, n: int) -> None:
            await route.fulfill(**json_answer(503, {"error": "server is shutting down"}))

        publishes = await intercept(page, shutting_down)
        began = time.monotonic()
        outcome, error = await publish(page, "never", 1)
        assert outcome == "error"
        assert error["name"] == "LongpollError"
        assert error["message"] == "publish failed after 3 attempts: server is shutting down (503)"
        assert (error["status"], error["attempts"]) == (503, 3)
        assert publishes.ids() == [error["eventId"]] * 3
        # Two waits, of 0.05 then 0.1 s, each cut by up to half.
        gaps = [later - earlier for earlier, later in itertools.pairwise(publishes.times)]
        assert 0.02 <= gaps[0] <= 0.5 and 0.045 <= gaps[1] <= 0.6, gaps
        assert time.monotonic() - began < 3
        assert await stored(url, "never") == []


async def test_a_publish_without_an_answer_in_time_is_sent_again_then_given_up(
    page: Page,
) -> None:
    async with site() as (_, url, _):
        await open_client(page, url, publishAttempts=2, publishTimeoutSeconds=0.3)
        done = asyncio.Event()

        async def never_answer(route: Route, n: int) -> None:
            await done.wait()
            with contextlib.suppress(Error):  # the page gave up on it already
                await route.abort()

        publishes = await intercept(page, never_answer)
        began = time.monotonic()
        outcome, error = await publish(page, "slow", 1)
        done.set()
        assert time.monotonic() - began < 2
        assert outcome == "error"
        assert error["message"] == "publish failed after 2 attempts: no answer within 0.3 s"
        assert (error["status"], error["attempts"]) == (0, 2)
        assert publishes.ids() == [error["eventId"]] * 2


async def test_a_refusal_is_not_sent_again_and_keeps_the_server_message(page: Page) -> None:
    async with site(Options(max_publish_body_bytes=200)) as (app, url, _):
        await open_client(page, url)
        outcome, error = await publish(page, "big", "x" * 300)
        assert outcome == "error"
        assert error["message"] == "request body is larger than 200 bytes"
        assert (error["status"], error["attempts"]) == (413, 1)
        assert orjson.loads(error["body"]) == {"error": error["message"]}
        assert len(app.seen("/publish")) == 1


# --- answers that are not the server's ---------------------------------------------


async def test_a_proxy_html_page_becomes_one_line_naming_the_status_and_cause(
    page: Page,
) -> None:
    async with site() as (_, url, _):
        await open_client(page, url, publishAttempts=2)

        async def proxy(route: Route, n: int) -> None:
            status = 504 if route.request.url.endswith("/publish") else 404
            body = NGINX_504 if status == 504 else "<html><h1>Not Found</h1></html>"
            await route.fulfill(status=status, content_type="text/html", body=body)

        publishes = await intercept(page, proxy)
        outcome, error = await publish(page, "proxied", 1)
        assert outcome == "error"
        assert error["message"] == (
            "publish failed after 2 attempts: "
            "the proxy in front timed out waiting for the server (504)"
        )
        assert (error["status"], error["body"]) == (504, NGINX_504)  # for onFail, as before
        assert len(publishes.bodies) == 2

        # A 404 page is no reason to send the publish again.
        await page.route("**/elsewhere", publishes)
        await page.evaluate("client.publishUrl = new URL('/elsewhere', location.href).href")
        outcome, error = await publish(page, "proxied", 2)
        assert outcome == "error"
        assert error["message"] == "publish failed: nothing is served at this URL (404)"
        assert (error["status"], error["attempts"]) == (404, 1)
        assert len(publishes.bodies) == 3
        assert await stored(url, "proxied") == []


async def test_invalid_publish_options_throw_naming_the_option(page: Page) -> None:
    async with site() as (_, url, _):
        await open_harness(page, url)
        errors = await page.evaluate(
            """(cases) => cases.map((options) => {
              try {
                newClient({ subscribeUrl: "/events", category: "c", ...options }).stop();
                return null;
              } catch (error) {
                return [error.option, error.message];
              }
            })""",
            [
                {"publishAttempts": 0},
                {"publishAttempts": 2.5},
                {"publishTimeoutSeconds": 0},
                {"publishRetryWaitSeconds": "1"},
                {"publishRetryWaitSeconds": 2, "maxPublishRetryWaitSeconds": 1},
                {"publishRetryWaitSeconds": 20},  # the maximum follows when not given
            ],
        )
        assert errors == [
            [
                "publishAttempts",
                "longpoll: option 'publishAttempts' must be a whole number, at least 1",
            ],
            [
                "publishAttempts",
                "longpoll: option 'publishAttempts' must be a whole number, at least 1",
            ],
            [
                "publishTimeoutSeconds",
                "longpoll: option 'publishTimeoutSeconds' must be a number of seconds above 0",
            ],
            [
                "publishRetryWaitSeconds",
                "longpoll: option 'publishRetryWaitSeconds' must be a number of seconds above 0",
            ],
            [
                "maxPublishRetryWaitSeconds",
                "longpoll: option 'maxPublishRetryWaitSeconds' must be a number, "
                "at least publishRetryWaitSeconds",
            ],
            None,
        ]
