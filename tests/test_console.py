"""The console page for operators, and the per-category listing of the stats endpoint
that it shows: over HTTP, with `longpoll serve`, and in Debian's Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from longpoll import AccessPolicy, LongpollApp, LongpollManager, Options
from longpoll.backends import Backend, CategoryStats
from longpoll.browser import client_script
from longpoll.console import CONTENT_SECURITY_POLICY
from longpoll.tokens import issue
from tests.servers import RunningServer, http_client, serve_app, serve_process, wait_for_waiters

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = "a secret of at least thirty-two bytes, for the tests"
OPERATIONS_TOKEN = "operations-token-for-tests-0123456789"
PUBLISH_TOKEN = "publish-token-for-tests-0123456789"


@contextlib.asynccontextmanager
async def served(
    options: Options | None = None,
    *,
    backend: Backend | None = None,
    portable: bool = False,
    **app_options: Any,
) -> AsyncIterator[RunningServer]:
    """A `LongpollApp` (with `app_options`) and a fresh manager on a free loopback port."""
    manager = LongpollManager(options or Options(), backend=backend)
    async with serve_app(LongpollApp(manager, **app_options), portable=portable) as running:
        yield running


# --- the per-category listing -------------------------------------------------------


async def test_stats_list_the_categories_on_request(make_backend: Callable[[], Backend]) -> None:
    async with (
        served(backend=make_backend()) as server,
        http_client(server.url) as http,
    ):
        manager = server.manager
        for category, count in [("b", 2), ("a", 1), ("é ☕", 1)]:
            for n in range(count):
                await manager.publish(category, n)
        waiting = [
            asyncio.create_task(http.get(f"/events?category={names}&timeout=30"))
            for names in ("a", "a&category=idle", "idle")
        ]
        await wait_for_waiters(manager, 3)

        plain = (await http.get("/stats")).json()
        assert "categories_detail" not in plain
        assert "categories_detail" not in (await http.get("/stats?categories=0")).json()
        detailed = (await http.get("/stats?categories=1")).json()
        listed = detailed.pop("categories_detail")
        assert detailed == plain
        assert listed == [
            {"name": "a", "buffered_events": 1, "waiting_subscribers": 2},
            {"name": "b", "buffered_events": 2, "waiting_subscribers": 0},
            # Waited for, never published to.
            {"name": "idle", "buffered_events": 0, "waiting_subscribers": 2},
            {"name": "é ☕", "buffered_events": 1, "waiting_subscribers": 0},
        ]
        refused = await http.get("/stats?categories=all")
        assert refused.status_code == 400
        assert refused.json() == {"error": "categories must be 1 (list them) or 0"}

        await manager.publish("a", "the end")
        await manager.publish("idle", "at last")
        await asyncio.gather(*waiting)


async def test_the_listing_takes_the_categories_most_recently_published_to(
    make_backend: Callable[[], Backend],
) -> None:
    async with LongpollManager(backend=make_backend()) as manager:
        for name in ("d", "c", "e", "a", "b"):
            await manager.publish(name, name)
            await asyncio.sleep(0.002)  # Redis orders categories by their newest millisecond
        assert await manager.category_stats(3) == [
            CategoryStats("a", 1, 0),
            CategoryStats("b", 1, 0),
            CategoryStats("e", 1, 0),
        ]
        assert [stats.name for stats in await manager.category_stats()] == list("abcde")
        with pytest.raises(ValueError, match="at least 1"):
            await manager.category_stats(0)


async def test_the_stats_endpoint_lists_at_most_a_thousand_categories() -> None:
    async with served() as server, http_client(server.url) as http:
        for index in range(1005):
            await server.manager.publish(f"c{index:04}", index)
        listed = (await http.get("/stats?categories=1")).json()["categories_detail"]
    assert len(listed) == 1000
    assert [stats["name"] for stats in listed] == [f"c{index:04}" for index in range(5, 1005)]


async def test_the_listing_needs_the_operations_token() -> None:
    access = AccessPolicy(operations_token=OPERATIONS_TOKEN)
    async with served(access=access) as server, http_client(server.url) as http:
        await server.manager.publish("c", 1)
        assert (await http.get("/stats?categories=1")).status_code == 401
        headers = {"authorization": f"Bearer {OPERATIONS_TOKEN}"}
        answer = await http.get("/stats?categories=1", headers=headers)
        assert answer.json()["categories_detail"] == [
            {"name": "c", "buffered_events": 1, "waiting_subscribers": 0}
        ]


# --- the page over HTTP ------------------------------------------------------------


@pytest.mark.parametrize("portable", [False, True], ids=["own-server", "asgi-uvicorn"])
async def test_the_page_and_its_files_are_served_with_a_strict_policy(portable: bool) -> None:
    async with (
        served(console_path="/console", portable=portable) as server,
        http_client(server.url) as http,
    ):
        page = await http.get("/console")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY.decode()
        assert "script-src 'self';" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["x-frame-options"] == "DENY"
        html = page.text
        assert 'name="viewport"' in html
        assert 'data-subscribe="/events" data-publish="/publish" data-stats="/stats"' in html
        # No inline script or style: every script is a file of the console's own.
        assert re.findall(r"<script[^>]*>", html) == [
            '<script src="console/longpoll.js" defer>',
            '<script src="console/console.js" defer>',
        ]
        assert "</script>" in html and not re.search(r"<script[^>]*>[^<]", html)
        assert " style=" not in html and "<style" not in html

        files = {
            "/console/console.js": "text/javascript; charset=utf-8",
            "/console/console.css": "text/css; charset=utf-8",
            "/console/longpoll.js": "text/javascript; charset=utf-8",
        }
        for path, content_type in files.items():
            answer = await http.get(path)
            assert (answer.status_code, answer.headers["content-type"]) == (200, content_type)
            assert answer.headers["x-content-type-options"] == "nosniff"
            cached = await http.get(path, headers={"if-none-match": answer.headers["etag"]})
            assert cached.status_code == 304
        assert (await http.get("/console/longpoll.js")).content == client_script()
        assert b"innerHTML" not in (await http.get("/console/console.js")).content

        head = await http.head("/console")
        assert (head.status_code, head.content) == (200, b"")
        posted = await http.post("/console")
        assert (posted.status_code, posted.headers["allow"]) == (405, "GET, HEAD")
        assert (await http.get("/console/other.js")).status_code == 404
        assert (await http.get("/console/")).status_code == 404


async def test_an_app_has_no_console_unless_asked() -> None:
    async with serve_app(LongpollApp(LongpollManager())) as server, http_client(server.url) as http:
        for path in ("/console", "/console/console.js", "/console/longpoll.js"):
            assert (await http.get(path)).status_code == 404

    moved = LongpollApp(LongpollManager(), console_path="/ops/", publish_path=None)
    async with serve_app(moved) as server, http_client(server.url) as http:
        page = await http.get("/ops/")
        assert page.status_code == 200
        assert '<script src="console.js" defer>' in page.text
        assert 'data-console="/ops/"' in page.text
        assert 'data-publish=""' in page.text  # publishing is off: the page says so
        assert (await http.get("/ops/console.css")).status_code == 200
    with pytest.raises(ValueError, match="must start with '/'"):
        LongpollApp(LongpollManager(), console_path="console")


async def test_serve_has_the_console_unless_turned_off() -> None:
    for flags, present, absent in [
        ((), ["/console", "/console/console.js"], []),
        (("--console-path", "off"), [], ["/console", "/console/console.js"]),
        (("--console-path", "/admin"), ["/admin", "/admin/console.css"], ["/console"]),
    ]:
        with serve_process(*flags) as server:
            async with http_client(server.url) as http:
                for path in present:
                    assert (await http.get(path)).status_code == 200, (flags, path)
                for path in absent:
                    assert (await http.get(path)).status_code == 404, (flags, path)


# --- the page in Chromium -----------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A phone-sized page in a fresh browser context; uncaught errors fail the test,
    as does any Content-Security-Policy violation."""
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    tab = await context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(str(error)))
    tab.on(
        "console",
        lambda message: (
            problems.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield tab
    await context.close()
    assert problems == []


async def open_console(page: Page, url: str) -> list[str]:
    """Open the console; returns the list that collects the page's publish requests."""
    publishes: list[str] = []
    page.on(
        "request",
        lambda request: (
            publishes.append(request.post_data or "") if request.url.endswith("/publish") else None
        ),
    )
    await page.goto(f"{url}/console")
    await page.wait_for_function("document.documentElement.dataset.ready === 'true'")
    return publishes


def row(page: Page, category: str) -> Any:
    return page.locator("#category-rows tr").filter(
        has=page.get_by_role("rowheader", name=category, exact=True)
    )


async def test_the_console_lists_tails_and_publishes(page: Page) -> None:
    async with served(console_path="/console") as server:
        manager = server.manager
        await manager.publish("news", "first")
        await manager.publish("news", "second")
        await manager.publish("<b>bold</b>", {"html": "<img src=x onerror=alert(1)>"})
        publishes = await open_console(page, server.url)

        await expect(row(page, "news")).to_contain_text("2")
        await expect(row(page, "<b>bold</b>")).to_have_count(1)
        await expect(page.locator("#summary")).to_have_text(
            "2 categories, 3 events buffered, 0 subscribers waiting."
        )

        await page.get_by_role("button", name="Tail news").click()
        await wait_for_waiters(manager, 1)
        await expect(page.locator("#tail-status")).to_have_text(
            "Tailing news over Server-Sent Events."
        )
        await expect(row(page, "news").locator("td").nth(1)).to_have_text("1")  # waiting
        live = await manager.publish("news", {"title": "<script>alert(1)</script>"})
        events = page.locator("#tail-events li")
        await expect(events).to_have_count(1)
        await expect(events.first).to_contain_text(str(live.id))
        await expect(events.first.locator("pre")).to_have_text(
            '{\n  "title": "<script>alert(1)</script>"\n}'
        )

        await page.get_by_label("Category", exact=True).fill("news")
        await page.get_by_label("Data (JSON)").fill('{"from": "the form", "n": [1, 2]}')
        await page.get_by_role("button", name="Publish").click()
        await expect(events).to_have_count(2)
        await expect(events.first.locator("pre")).to_contain_text('"from": "the form"')
        await expect(page.locator("#publish-result")).to_contain_text("Published at")
        assert len(publishes) == 1

        # A tail started from what is buffered shows what came before too.
        await page.get_by_role("button", name="Stop", exact=True).click()
        await wait_for_waiters(manager, 0)
        await page.get_by_role("button", name="Clear").click()
        await page.get_by_label("from").select_option("buffered")
        await page.get_by_role("button", name="Tail <b>bold</b>").click()
        await expect(events).to_have_count(5)
        # Event data and category names are text, never markup.
        assert await page.locator("main img, main b, main script").count() == 0
        await page.get_by_role("button", name="Stop", exact=True).click()


async def test_invalid_json_is_shown_inline_and_nothing_is_sent(page: Page) -> None:
    async with served(console_path="/console") as server:
        publishes = await open_console(page, server.url)
        await page.get_by_label("Category", exact=True).fill("c")
        data = page.get_by_label("Data (JSON)")
        for text, message in [
            ('{"unclosed": ', "The data is not valid JSON: "),
            ("{'single': 'quotes'}", "The data is not valid JSON: "),
            ("null", "The data must not be null: the server refuses it."),
        ]:
            await data.fill(text)
            await page.get_by_role("button", name="Publish").click()
            await expect(page.locator("#publish-error")).to_be_visible()
            await expect(page.locator("#publish-error")).to_contain_text(message)
            await expect(data).to_have_attribute("aria-invalid", "true")
        await data.fill('"fixed"')  # typing clears the error
        await expect(page.locator("#publish-error")).to_be_hidden()
        await asyncio.sleep(0.2)
        assert publishes == []
        assert server.manager.counts.published == 0

        await page.get_by_label("Category", exact=True).fill("")
        await page.get_by_role("button", name="Publish").click()
        await expect(page.locator("#publish-error")).to_have_text("Give a category.")
        assert publishes == []


async def test_the_console_shows_a_gap(page: Page) -> None:
    async with served(Options(max_event_buffer_size=2), console_path="/console") as server:
        manager = server.manager
        await open_console(page, server.url)
        await page.get_by_label("Category to tail").fill("c")
        await page.get_by_label("Category to tail").press("Enter")
        await wait_for_waiters(manager, 1)
        await manager.publish("c", "before")
        events = page.locator("#tail-events li")
        await expect(events).to_have_count(1)

        # The connection breaks; more is published than the buffer keeps meanwhile.
        assert server.http is not None
        for connection in list(server.http.connections):
            connection.abort()
        for n in range(4):
            await manager.publish("c", n)
        await expect(events).to_have_count(4)  # the gap, then the two events still kept
        await expect(page.locator("#tail-events li.gap")).to_have_text(
            "Events were missed here: the server dropped them before the tail could get them."
        )
        texts = await page.locator("#tail-events li pre").all_text_contents()
        assert texts == ["3", "2", '"before"']  # newest first
        await page.get_by_role("button", name="Stop", exact=True).click()


async def test_the_console_uses_the_tokens_it_is_given(page: Page) -> None:
    access = AccessPolicy(
        operations_token=OPERATIONS_TOKEN, publish_token=PUBLISH_TOKEN, subscribe_secret=SECRET
    )
    async with served(console_path="/console", access=access) as server:
        manager = server.manager
        await manager.publish("news", 1)
        await open_console(page, server.url)
        error = page.locator("#categories-error")
        await expect(error).to_contain_text("needs the operations token")

        await page.locator("summary").click()
        await page.get_by_label("Operations token (stats)").fill(OPERATIONS_TOKEN)
        await page.get_by_label("Operations token (stats)").press("Enter")
        await expect(row(page, "news")).to_have_count(1)
        await expect(error).to_be_hidden()

        await page.get_by_label("Subscribe token (live tail)").fill(issue(SECRET, ["news"], 600))
        await page.get_by_label("Publish token").fill(PUBLISH_TOKEN)
        await page.get_by_label("Publish token").press("Enter")
        await page.get_by_role("button", name="Tail news").click()
        await wait_for_waiters(manager, 1)
        await page.get_by_label("Category", exact=True).fill("news")
        await page.get_by_label("Data (JSON)").fill("[1, 2, 3]")
        await page.get_by_role("button", name="Publish").click()
        await expect(page.locator("#tail-events li pre")).to_have_text(["[\n  1,\n  2,\n  3\n]"])
        await page.get_by_role("button", name="Stop", exact=True).click()

        # The tokens stay with the tab, not beyond it.
        await page.reload()
        await page.wait_for_function("document.documentElement.dataset.ready === 'true'")
        await expect(page.get_by_label("Operations token (stats)")).to_have_value(OPERATIONS_TOKEN)
        await expect(row(page, "news")).to_have_count(1)
        other = await page.context.new_page()
        await other.goto(f"{server.url}/console")
        await expect(other.get_by_label("Operations token (stats)")).to_have_value("")
        await other.close()
