"""The browser client, longpoll.js, in Debian's Chromium driven by Playwright.

Pages come from the same origin as a real server on a loopback port. Every test
runs on the module's event loop, which the browser's fixture shares.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import pytest
from playwright.async_api import Page
from starlette.applications import Starlette
from starlette.routing import Route

from longpoll import AccessPolicy, BrowserClientHandler, LongpollApp, LongpollManager, Options
from longpoll.browser import client_script
from longpoll.tokens import issue
from longpoll.types import Receive, Scope, Send
from tests.servers import http_client, serve_app, serve_until_crash, wait_for_waiters
from tests.test_client_token import TokenGate

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parent.parent

App = Callable[[Scope, Receive, Send], Awaitable[None]]

# Starts a client whose callbacks record into `window.got`; `retry` is onFailure's answer.
HARNESS = """
window.start = (options, retry = true) => {
  const got = { events: [], failures: [], gaps: [] };
  window.got = got;
  window.client = newClient({
    onEvent: (event) => got.events.push(event),
    onFailure: (message, status) => {
      got.failures.push({ message, status });
      return retry;
    },
    onGap: (position) => got.gaps.push(position),
    ...options,
  });
  return true;
};
window.newClient = newClient;
window.harnessReady = true;
"""

PAGES = {
    "/classic.html": '<!doctype html><meta charset="utf-8"><title>classic</title>\n'
    '<script src="/longpoll.js"></script>\n'
    f"<script>\nconst {{ newClient }} = longpoll;\n{HARNESS}</script>\n",
    "/module.html": '<!doctype html><meta charset="utf-8"><title>module</title>\n'
    f'<script type="module">\nimport {{ newClient }} from "/longpoll.js";\n{HARNESS}</script>\n',
    "/mjs.html": '<!doctype html><meta charset="utf-8"><title>mjs</title>\n'
    f'<script type="module">\nimport {{ newClient }} from "/longpoll.mjs";\n{HARNESS}</script>\n',
    "/": (ROOT / "docs" / "examples" / "browser_page.html").read_text(),
}


@dataclass
class Seen:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    at: float


class Site:
    """An ASGI app: the test pages, a failing endpoint, and `app` for the rest.

    It records every HTTP request, so tests can tell what the browser sent and when.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.requests: list[Seen] = []

    def seen(self, path: str) -> list[Seen]:
        return [request for request in self.requests if request.path == path]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            headers = {
                key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
            }
            seen = Seen(scope["method"], scope["path"], query, headers, time.monotonic())
            self.requests.append(seen)
            if scope["path"] in PAGES:
                body = PAGES[scope["path"]].encode()
                await _respond(send, 200, b"text/html; charset=utf-8", body)
                return
            if scope["path"] == "/failing":
                body = orjson.dumps({"error": "the database is on fire"})
                await _respond(send, 500, b"application/json", body)
                return
        await self.app(scope, receive, send)


async def _respond(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def site(options: Options | None = None) -> AsyncIterator[tuple[Site, str, LongpollManager]]:
    """A `Site` around a `LongpollApp` with a fresh manager, on a free loopback port."""
    manager = LongpollManager(options or Options())
    app = Site(LongpollApp(manager))
    async with serve_app(app, manager) as server:
        yield app, server.url, manager


@contextlib.asynccontextmanager
async def token_site(
    tokens: dict[str, set[str]],
) -> AsyncIterator[tuple[TokenGate, str, LongpollManager]]:
    """A `Site` whose events and publish need a bearer token of `tokens` (see `TokenGate`)."""
    manager = LongpollManager()
    gate = TokenGate(LongpollApp(manager), tokens)
    async with serve_app(Site(gate), manager) as server:
        yield gate, server.url, manager


async def open_harness(page: Page, url: str, form: str = "module") -> None:
    await page.goto(f"{url}/{form}.html")
    await page.wait_for_function("window.harnessReady === true", timeout=5000)


async def start(page: Page, options: dict[str, Any], *, retry: bool = True) -> None:
    await page.evaluate("([options, retry]) => start(options, retry)", [options, retry])


async def wait_until(page: Page, condition: str, seconds: float = 10) -> None:
    await page.wait_for_function(condition, timeout=seconds * 1000)


async def got(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate("got")
    return result


# --- serving the script ------------------------------------------------------------


async def test_the_script_is_served_with_validators() -> None:
    async with site() as (_, url, _), http_client(url) as http:
        classic = await http.get("/longpoll.js")
        assert classic.status_code == 200
        assert classic.headers["content-type"] == "text/javascript; charset=utf-8"
        assert classic.content == client_script()
        assert b"export" not in classic.content.split(b"*/", 1)[1]
        assert classic.headers["vary"] == "Sec-Fetch-Mode, Sec-Fetch-Dest"
        etag, modified = classic.headers["etag"], classic.headers["last-modified"]

        for validator in [{"if-none-match": etag}, {"if-modified-since": modified}]:
            cached = await http.get("/longpoll.js", headers=validator)
            assert (cached.status_code, cached.content) == (304, b"")
            assert cached.headers["etag"] == etag
        stale = await http.get("/longpoll.js", headers={"if-none-match": '"other"'})
        assert stale.status_code == 200

        as_module = {"sec-fetch-mode": "cors", "sec-fetch-dest": "script"}
        module = await http.get("/longpoll.js", headers=as_module)
        assert module.content == client_script(module=True)
        assert module.content.endswith(b"export default longpoll;\n")
        assert module.headers["etag"] != etag
        # A module fetch revalidating with the classic script's tag gets the module.
        revalidated = await http.get("/longpoll.js", headers={**as_module, "if-none-match": etag})
        assert revalidated.status_code == 200
        mjs = await http.get("/longpoll.mjs")
        assert mjs.content == module.content
        assert "vary" not in mjs.headers

        head = await http.head("/longpoll.js")
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == str(len(classic.content))
        posted = await http.post("/longpoll.js")
        assert (posted.status_code, posted.headers["allow"]) == (405, "GET, HEAD")

    manager = LongpollManager()
    moved = LongpollApp(manager, client_path="/static/lp.js")
    async with serve_app(moved) as server, http_client(server.url) as http:
        assert (await http.get("/static/lp.js")).content == client_script()
        assert (await http.get("/static/lp.mjs")).content == client_script(module=True)
        assert (await http.get("/longpoll.js")).status_code == 404
    # Beside the handlers in a Starlette app, as the README says.
    routed = Starlette(routes=[Route("/longpoll.js", BrowserClientHandler())])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(routed)) as http:
        answer = await http.get("http://test/longpoll.js")
        assert (answer.status_code, answer.content) == (200, client_script())

    without = LongpollApp(LongpollManager(), client_path=None)
    async with serve_app(without) as server, http_client(server.url) as http:
        assert (await http.get("/longpoll.js")).status_code == 404
        assert (await http.get("/longpoll.mjs")).status_code == 404


# --- events, publishing, the two forms ---------------------------------------------


@pytest.mark.parametrize("form", ["classic", "module", "mjs"])
async def test_events_arrive_in_order_with_their_data(page: Page, form: str) -> None:
    categories = ["news", "café ☕ + más"]
    async with site() as (app, url, manager):
        await open_harness(page, url, form)
        if form == "classic":
            assert await page.evaluate("golongpoll === longpoll && !!longpoll.newClient")
            # A golongpoll already there is left alone.
            await page.evaluate("window.golongpoll = 'the original'")
            await page.add_script_tag(url="/longpoll.js")
            assert await page.evaluate("[golongpoll, typeof longpoll.newClient]") == [
                "the original",
                "function",
            ]
        else:
            assert await page.evaluate("typeof longpoll === 'undefined'")
        await start(
            page, {"subscribeUrl": "/events", "publishUrl": "/publish", "category": categories}
        )
        await wait_for_waiters(manager, 1)

        values: list[Any] = [
            "plain text",
            {"nested": {"list": [1, 2.5, None, True], "empty": {}}},
            42,
            -3.25,
            "ünïcødé ✓ 😀 中文",
            [],
            False,
        ]
        published = []
        for index, value in enumerate(values):
            published.append(await manager.publish(categories[index % 2], value))
        answer = await page.evaluate(
            """async (category) => await client.publish(category, {from: "the page", n: 1})""",
            categories[1],
        )
        assert answer["success"] is True
        await wait_until(page, f"got.events.length >= {len(values) + 1}")
        await asyncio.sleep(0.1)  # nothing more arrives
        events = (await got(page))["events"]

        expected = [(event.category, event.data, str(event.id)) for event in published]
        expected.append((categories[1], {"from": "the page", "n": 1}, answer["id"]))
        assert [(e["category"], e["data"], e["id"]) for e in events] == expected
        assert events[-1]["timestamp"] == answer["timestamp"]

        # The poll now waiting resumes from the last event received.
        await wait_for_waiters(manager, 1)
        last_poll = app.seen("/events")[-1].query
        assert last_poll["category"] == categories
        assert last_poll["timeout"] == ["45"]
        assert last_poll["since_time"] == [str(answer["timestamp"])]
        assert last_poll["last_id"] == [answer["id"]]
        assert app.seen("/events")[0].query.keys() == {"category", "timeout"}

        # Reloading revalidates the cached script: the server sees its validator.
        await page.reload()
        await page.wait_for_function("window.harnessReady === true")
        script = "/longpoll.mjs" if form == "mjs" else "/longpoll.js"
        assert "if-none-match" in app.seen(script)[-1].headers


async def test_a_golongpoll_page_works_unchanged(page: Page) -> None:
    """golongpoll's option names and callbacks, and resuming from timeout answers."""
    async with site(Options(max_publish_body_bytes=200)) as (app, url, manager):
        await open_harness(page, url, "classic")
        await page.evaluate(
            """() => {
              window.log = [];
              window.client = golongpoll.newClient({
                subscribeUrl: "/events",
                publishUrl: "/publish",
                category: "chat",
                lastId: undefined,
                pollTimeoutSeconds: 1,
                reattemptWaitSeconds: 1,
                sucessWaitSeconds: 0,
                basicAuthUsername: "",
                basicAuthPassword: "",
                loggingEnabled: true,
                extraRequestHeaders: [],
                onEvent: (event) => log.push(["event", event.data]),
                onFailure: (message) => { log.push(["failure", message]); return true; },
              });
            }"""
        )
        await wait_for_waiters(manager, 1)
        await page.evaluate(
            """() => {
              client.publish("chat", "hello",
                (answer) => log.push(["published", answer.success]),
                (status, text) => log.push(["not published", status, text]));
              client.publish("chat", "x".repeat(300),
                () => log.push(["published", "too long"]),
                (status, text) => log.push(["not published", status, JSON.parse(text).error]));
            }"""
        )
        await wait_until(page, "log.length >= 3")
        log = await page.evaluate("log")
        assert sorted(map(str, log)) == sorted(
            map(
                str,
                [
                    ["event", "hello"],
                    ["published", True],
                    ["not published", 413, "request body is larger than 200 bytes"],
                ],
            )
        )

        # Polls that time out resume from the answer's timestamp, without last_id.
        count = len(app.seen("/events"))
        while len(app.seen("/events")) < count + 2:
            await asyncio.sleep(0.05)
        timeout_resumes = [request.query for request in app.seen("/events")[count:]]
        assert all("last_id" not in query for query in timeout_resumes)
        since = [int(query["since_time"][0]) for query in timeout_resumes]
        assert since[0] < since[1] <= time.time() * 1000
        later = await manager.publish("chat", "after the timeouts")
        await wait_until(page, "log.length >= 4")
        assert (await page.evaluate("log"))[-1] == ["event", later.data]


# --- stopping, failures, back-off --------------------------------------------------


async def test_stop_aborts_the_poll_and_ends_polling(page: Page) -> None:
    async with site() as (app, url, manager):
        await open_harness(page, url)
        await start(page, {"subscribeUrl": "/events", "category": "c", "pollTimeoutSeconds": 2})
        await wait_for_waiters(manager, 1)
        polls = len(app.seen("/events"))

        stopped_at = time.monotonic()
        await page.evaluate("client.stop()")
        await wait_for_waiters(manager, 0)  # the aborted request was seen to go away
        assert time.monotonic() - stopped_at < 1

        await manager.publish("c", "too late")
        await asyncio.sleep(2.5)  # longer than a poll
        assert len(app.seen("/events")) == polls
        assert await page.evaluate("client.running") is False
        assert (await got(page))["events"] == []


async def test_on_failure_gets_the_server_message_and_false_stops(page: Page) -> None:
    async with site(Options(max_longpoll_timeout_seconds=3)) as (app, url, _):
        async with http_client(url) as http:
            expected = (await http.get("/events?category=c&timeout=10")).json()["error"]
        await open_harness(page, url)
        options = {"subscribeUrl": "/events", "category": "c", "pollTimeoutSeconds": 10}
        await start(page, {**options, "reattemptWaitSeconds": 0.05}, retry=False)
        await wait_until(page, "got.failures.length >= 1")
        await asyncio.sleep(0.5)  # several back-off waits
        assert (await got(page))["failures"] == [{"message": expected, "status": 400}]
        assert "timeout" in expected
        assert len(app.seen("/events")) == 2  # the check above, then the page's one poll
        assert await page.evaluate("client.running") is False


async def test_back_off_spacing_grows_after_failures(page: Page) -> None:
    base = 0.05
    async with site() as (app, url, _):
        await open_harness(page, url)
        options = {"subscribeUrl": "/failing", "category": "c", "reattemptWaitSeconds": base}
        await start(page, {**options, "maxReattemptWaitSeconds": 10})
        while len(app.seen("/failing")) < 6:
            await asyncio.sleep(0.02)
        await page.evaluate("client.stop()")
        times = [request.at for request in app.seen("/failing")]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        for failures, gap in enumerate(gaps, start=1):
            full = base * 2 ** (failures - 1)
            assert full * 0.5 - 0.01 <= gap <= full + 0.25, (failures, gaps)
        assert gaps[-1] > 3 * gaps[0]
        failures = (await got(page))["failures"]
        assert failures[0] == {"message": "the database is on fire", "status": 500}
        await asyncio.sleep(1)  # past the next wait: stop() ended the back-off too
        assert len(app.seen("/failing")) == len(times)


# --- headers -----------------------------------------------------------------------


async def test_basic_auth_and_extra_headers_are_sent(page: Page) -> None:
    async with site() as (app, url, manager):
        await open_harness(page, url)
        await start(
            page,
            {
                "subscribeUrl": "/events",
                "publishUrl": "/publish",
                "category": "c",
                "basicAuthUsername": "ådmin",
                "basicAuthPassword": "pa:ss wörd",
                "extraRequestHeaders": [
                    {"key": "X-Token", "value": "t-123"},
                    {"key": "X-Other", "value": "two words"},
                ],
            },
        )
        await wait_for_waiters(manager, 1)
        await page.evaluate("client.publish('c', 'with headers')")
        await wait_until(page, "got.events.length === 1")
        credentials = base64.b64encode("ådmin:pa:ss wörd".encode()).decode()
        requests = [*app.seen("/events"), *app.seen("/publish")]
        assert len(requests) >= 2
        for request in requests:
            assert request.headers["authorization"] == f"Basic {credentials}"
            assert request.headers["x-token"] == "t-123"
            assert request.headers["x-other"] == "two words"


# Starts a client (as `start`) whose token function gives the tokens of `window.tokens`
# in turn, then the last one again, as a Promise or as a plain string, and notes each
# token it gives in `window.given`. `window.tokens` may be replaced as it runs.
START_WITH_TOKENS = """([tokens, options, retry, promise]) => {
  window.tokens = tokens;
  window.given = [];
  const next = () => {
    given.push(window.tokens.length > 1 ? window.tokens.shift() : window.tokens[0]);
    return given[given.length - 1];
  };
  const token = promise
    ? () => new Promise((resolve) => setTimeout(() => resolve(next()), 0))
    : next;
  return start({ ...options, token }, retry);
}"""


async def start_with_tokens(
    page: Page,
    tokens: list[str],
    options: dict[str, Any],
    *,
    retry: bool = True,
    promise: bool = True,
) -> None:
    await page.evaluate(START_WITH_TOKENS, [tokens, options, retry, promise])


async def test_a_token_function_authorizes_every_request_and_renews_after_a_401(
    page: Page,
) -> None:
    tokens = {"good": {"c"}}
    async with token_site(tokens) as (gate, url, manager):
        await open_harness(page, url)
        options = {"subscribeUrl": "/events", "publishUrl": "/publish", "category": "c"}
        await start_with_tokens(page, ["expired", "good"], options)
        await wait_for_waiters(manager, 1)  # refused once, then let in at once
        first = await manager.publish("c", "first")
        await wait_until(page, "got.events.length === 1")
        await wait_for_waiters(manager, 1)

        # The token expires while a poll waits; the function gives it once more, then a
        # new one when asked again after the 401.
        await page.evaluate("window.tokens = ['good', 'renewed']")
        del tokens["good"]
        tokens["renewed"] = {"c"}
        second = await manager.publish("c", "second")
        await wait_until(page, "got.events.length === 2")
        await wait_for_waiters(manager, 1)
        answer = await page.evaluate("client.publish('c', 'from the page')")
        await wait_until(page, "got.events.length === 3")
        await wait_for_waiters(manager, 1)

        result = await got(page)
        given = await page.evaluate("given")
        await page.evaluate("client.stop()")
    assert [event["id"] for event in result["events"]] == [
        str(first.id),
        str(second.id),
        answer["id"],
    ]
    assert result["failures"] == []  # the renewals cured both 401s
    assert [(seen.path, seen.status) for seen in gate.seen[:6]] == [
        ("/events", 401),
        ("/events", 200),
        ("/events", 200),
        ("/events", 401),
        ("/events", 200),
        ("/publish", 200),
    ]
    expected = ["expired", "good", "good", "good", "renewed", "renewed", "renewed"]
    assert given == expected  # one call per request: the six above and the poll waiting
    assert gate.authorizations() == [f"Bearer {token}" for token in expected]


async def test_signed_subscribe_tokens_of_the_server_are_renewed_after_a_401(
    page: Page,
) -> None:
    secret = "a-subscribe-secret-for-the-browser-tests"
    manager = LongpollManager()
    app = Site(LongpollApp(manager, access=AccessPolicy(subscribe_secret=secret)))
    expired = issue(secret, ["c"], ttl_seconds=60, now=time.time() - 120)
    valid = issue(secret, ["c"], ttl_seconds=600)
    async with serve_app(app, manager) as server:
        await open_harness(page, server.url)
        options = {"subscribeUrl": "/events", "category": "c"}
        await start_with_tokens(page, [expired, valid], options)
        await wait_for_waiters(manager, 1)
        published = await manager.publish("c", "signed")
        await wait_until(page, "got.events.length === 1")
        result = await got(page)
        given = await page.evaluate("given")
        await page.evaluate("client.stop()")
    assert [event["id"] for event in result["events"]] == [str(published.id)]
    assert result["failures"] == []
    assert given[:2] == [expired, valid]
    sent = [seen.headers.get("authorization") for seen in app.seen("/events")]
    assert sent[:2] == [f"Bearer {expired}", f"Bearer {valid}"]


async def test_a_refused_token_is_a_failure_and_403_is_never_retried(page: Page) -> None:
    async with token_site({"good": {"c"}}) as (gate, url, _):
        await open_harness(page, url)
        options = {"subscribeUrl": "/events", "publishUrl": "/publish", "category": "c"}
        # A string token is not renewed: its 401 goes to onFailure, which stops here.
        await start(page, {**options, "token": "forged"}, retry=False)
        await wait_until(page, "got.failures.length === 1 && !client.running")
        assert (await got(page))["failures"] == [
            {"message": "missing, expired or unknown token", "status": 401}
        ]
        assert gate.statuses("/events") == [401]

        # A function's token refused twice in a row is a failure too.
        await start_with_tokens(page, ["expired", "revoked", "good"], options, retry=False)
        await wait_until(page, "got.failures.length === 1 && !client.running")
        assert (await got(page))["failures"][0]["status"] == 401
        assert await page.evaluate("given") == ["expired", "revoked"]
        assert gate.statuses("/events") == [401, 401, 401]

        # A token that does not grant the category: 403 at once, never retried.
        await start_with_tokens(
            page, ["good"], {**options, "category": "d"}, retry=False, promise=False
        )
        await wait_until(page, "got.failures.length === 1 && !client.running")
        assert (await got(page))["failures"] == [
            {"message": "the token does not grant this category", "status": 403}
        ]
        refused = await page.evaluate(
            "client.publish('d', 1).then(() => null, (error) => [error.status, error.message])"
        )
        assert refused == [403, "the token does not grant this category"]
        assert await page.evaluate("given") == ["good", "good"]

        # A token function that throws is a failure with no answer (status 0).
        await page.evaluate(
            """(options) => start({
              ...options,
              token: () => { throw new Error("no token today"); },
            }, false)""",
            options,
        )
        await wait_until(page, "got.failures.length === 1 && !client.running")
        assert (await got(page))["failures"] == [
            {"message": "the token function failed: no token today", "status": 0}
        ]
    assert [(seen.path, seen.status) for seen in gate.seen[3:]] == [
        ("/events", 403),
        ("/publish", 403),
    ]


# --- resume and gaps ---------------------------------------------------------------


async def test_resume_after_a_server_restart_loses_nothing(page: Page) -> None:
    async with LongpollManager() as manager:
        app = Site(LongpollApp(manager))
        async with serve_until_crash(app) as url:
            await open_harness(page, url)
            options = {"subscribeUrl": "/events", "category": "c", "pollTimeoutSeconds": 5}
            await start(
                page, {**options, "reattemptWaitSeconds": 0.1, "maxReattemptWaitSeconds": 0.4}
            )
            await wait_for_waiters(manager, 1)
            published = [await manager.publish("c", n) for n in range(2)]
            await wait_until(page, "got.events.length === 2")
            await wait_for_waiters(manager, 1)

        assert (await manager.stats()).waiting_subscribers == 0
        published += [await manager.publish("c", n) for n in range(2, 4)]
        await wait_until(page, "got.failures.length >= 2")  # refused while down

        async with serve_until_crash(app, int(url.rsplit(":", 1)[1])):
            await wait_until(page, "got.events.length === 4")
            await wait_for_waiters(manager, 1)
            published.append(await manager.publish("c", 4))
            await wait_until(page, "got.events.length === 5")
            await asyncio.sleep(0.1)
            result = await got(page)
            await page.evaluate("client.stop()")
        assert [event["id"] for event in result["events"]] == [str(e.id) for e in published]
        assert [event["data"] for event in result["events"]] == [0, 1, 2, 3, 4]
        assert {failure["status"] for failure in result["failures"]} == {0}


async def test_a_gap_is_signalled_before_the_events_after_it(page: Page) -> None:
    async with site(Options(max_event_buffer_size=2)) as (_, url, manager):
        published = [await manager.publish("c", n) for n in range(4)]
        await open_harness(page, url)
        first = published[0]
        position = {"sinceTime": first.timestamp, "lastId": str(first.id)}
        await start(page, {"subscribeUrl": "/events", "category": "c", **position})
        await wait_until(page, "got.events.length === 2")
        result = await got(page)
        assert result["gaps"] == [position]
        assert [event["data"] for event in result["events"]] == [2, 3]
        await page.evaluate("client.stop()")


# --- bad options ---------------------------------------------------------------------

BAD_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("subscribeUrl", {}),
    ("category", {"subscribeUrl": "/events"}),
    ("category", {"category": ""}),
    ("category", {"category": []}),
    ("category", {"category": ["a", 7]}),
    ("category", {"category": "é" * 513}),
    ("sinceTime", {"sinceTime": "yesterday"}),
    ("lastId", {"lastId": "6e0cd2f4-5e50-4d7f-9f29-1f8a0b1b8b66"}),
    ("onEvent", {"onEvent": "print"}),
    ("pollTimeoutSeconds", {"pollTimeoutSeconds": 0}),
    ("pollTimeoutSeconds", {"pollTimeoutSeconds": 1.5}),
    ("reattemptWaitSeconds", {"reattemptWaitSeconds": 0}),
    ("maxReattemptWaitSeconds", {"reattemptWaitSeconds": 5, "maxReattemptWaitSeconds": 1}),
    ("successWaitSeconds", {"successWaitSeconds": -1}),
    ("sucessWaitSeconds", {"successWaitSeconds": 1, "sucessWaitSeconds": 2}),
    ("basicAuthPassword", {"basicAuthUsername": "me"}),
    ("token", {"token": ""}),
    ("token", {"token": "Bearer abc"}),
    ("token", {"token": 42}),
    ("token", {"token": "abc", "basicAuthUsername": "me", "basicAuthPassword": "pw"}),
    ("token", {"token": "abc", "extraRequestHeaders": [{"key": "authorization", "value": "x"}]}),
    ("extraRequestHeaders", {"extraRequestHeaders": {"X-A": "b"}}),
    ("extraRequestHeaders", {"extraRequestHeaders": [{"key": "bad name", "value": "x"}]}),
    ("loggingEnabled", {"loggingEnabled": "yes"}),
    ("onevent", {"onevent": "a typo"}),
]


async def test_invalid_options_throw_naming_the_option(page: Page) -> None:
    async with site() as (app, url, manager):
        await open_harness(page, url)
        for option, bad in BAD_OPTIONS:
            options = {"subscribeUrl": "/events", "category": "c", **bad}
            if option == "subscribeUrl":
                options.pop("subscribeUrl")
            if option == "category" and "category" not in bad:
                options.pop("category")
            thrown = await page.evaluate(
                """(options) => {
                  try { newClient(options); } catch (error) {
                    return [error.name, error.option, error.message];
                  }
                  return null;
                }""",
                options,
            )
            assert thrown is not None, option
            assert thrown[:2] == ["TypeError", option]
            assert f"'{option}'" in thrown[2]

        await start(page, {"subscribeUrl": "/events", "publishUrl": "/publish", "category": "c"})
        await wait_for_waiters(manager, 1)  # its poll reached the server before stop()
        publish_errors = await page.evaluate(
            """() => [["c", null], ["", 1], ["c", 1, "not a function"]].map((args) => {
                try { client.publish(...args); } catch (error) { return error.message; }
                return null;
            })"""
        )
        assert publish_errors == [
            "longpoll: publish(): data must not be null or undefined",
            "longpoll: publish(): category must be a non-empty string",
            "longpoll: publish(): onSuccess must be a function",
        ]
        await page.evaluate("client.stop()")
        await wait_for_waiters(manager, 0)
        await start(page, {"subscribeUrl": "/events", "category": "c"})
        await wait_for_waiters(manager, 1)
        thrown = await page.evaluate(
            "() => { try { client.publish('c', 1); } catch (error) { return error.option; } }"
        )
        assert thrown == "publishUrl"
        await page.evaluate("client.stop()")
        assert len(app.seen("/events")) == 2  # only the two valid clients polled
        assert app.seen("/publish") == []


# --- the README's page ---------------------------------------------------------------


async def test_the_readme_page(page: Page) -> None:
    source = (ROOT / "docs" / "examples" / "browser_page.html").read_text()
    assert f"```html\n{source}```" in (ROOT / "README.md").read_text()
    async with site() as (_, url, manager):
        await manager.publish("chat", {"text": "published before the page opened"})
        await page.goto(url + "/")
        messages = page.locator("#messages li")
        await messages.first.wait_for()
        await wait_for_waiters(manager, 1)
        await manager.publish("chat", {"text": "hello from Python ✓"})
        await page.fill("#text", "hi from the page")
        await page.press("#text", "Enter")
        expected = [
            "published before the page opened",
            "hello from Python ✓",
            "hi from the page",
        ]
        await page.wait_for_function(
            f"document.querySelectorAll('#messages li').length === {len(expected)}"
        )
        assert await messages.all_text_contents() == expected
        assert await page.input_value("#text") == ""
