"""Pages of another origin in real Chromium: no publishing through a visitor's
browser, and subscribing only where the server allows that origin."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from longpoll import LongpollApp, LongpollManager
from longpoll.access import AccessPolicy
from tests.servers import RunningServer, serve_app

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def blank_page(request: object) -> HTMLResponse:
    return HTMLResponse('<!doctype html><meta charset="utf-8"><title>elsewhere</title>')


# A form that posts JSON without JavaScript: enctype text/plain sends "name=value".
FORM = """<!doctype html><meta charset="utf-8">
<form method="post" action="{target}" enctype="text/plain">
<input name='{{"category":"csrf","data":"form","pad":"' value='"}}'>
</form><script>document.forms[0].submit()</script>"""


async def form_page(request: object) -> HTMLResponse:
    target = request.query_params["target"]  # type: ignore[attr-defined]
    return HTMLResponse(FORM.format(target=target))


@contextlib.asynccontextmanager
async def other_origin() -> AsyncIterator[str]:
    """A site on another port of the loopback: another origin."""
    pages = Starlette(routes=[Route("/", blank_page), Route("/form", form_page)])
    async with serve_app(pages, LongpollManager()) as running:
        yield running.url


@contextlib.asynccontextmanager
async def longpoll_server(access: AccessPolicy | None = None) -> AsyncIterator[RunningServer]:
    async with serve_app(LongpollApp(LongpollManager(), access=access)) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    yield await context.new_page()
    await context.close()


FETCH = """async ([url, init]) => {
  try {
    const response = await fetch(url, init);
    return { status: response.status, type: response.type, body: await response.text() };
  } catch (error) {
    return { failed: String(error) };
  }
}"""


async def buffered(server: RunningServer) -> int:
    return (await server.manager.stats()).buffered_events


async def test_a_page_elsewhere_cannot_publish_by_form_or_fetch(page: Page) -> None:
    async with other_origin() as elsewhere, longpoll_server() as server:
        publish = f"{server.url}/publish"
        async with page.expect_navigation(url=publish):
            await page.goto(f"{elsewhere}/form?target={publish}")
        assert "requests from origin" in await page.content()

        await page.goto(elsewhere)
        body = '{"category":"csrf","data":"fetch"}'
        for init in (
            {"method": "POST", "mode": "no-cors", "body": body,
             "headers": {"content-type": "text/plain"}},
            {"method": "POST", "body": body, "headers": {"content-type": "application/json"}},
        ):  # fmt: skip
            result = await page.evaluate(FETCH, [publish, init])
            # Opaque (no-cors) or refused by CORS: either way the page learns nothing.
            assert result.get("type") == "opaque" or "failed" in result, result
        assert await buffered(server) == 0

        # The same requests from the server's own origin are served.
        await page.goto(f"{server.url}/longpoll.js")
        result = await page.evaluate(
            FETCH,
            [publish, {"method": "POST", "body": body, "headers": {"content-type": "text/plain"}}],
        )
        assert result["status"] == 200, result
        assert await buffered(server) == 1


async def test_a_page_elsewhere_subscribes_and_publishes_only_where_allowed(page: Page) -> None:
    async with other_origin() as elsewhere:
        events = "/events?category=news&timeout=1&since_time=-1"
        async with longpoll_server() as closed:
            await closed.manager.publish("news", "hidden")
            await page.goto(elsewhere)
            result = await page.evaluate(FETCH, [closed.url + events, {}])
            assert "failed" in result, result

        allowed = AccessPolicy(cors_origins=[elsewhere])
        async with longpoll_server(allowed) as open_server:
            await open_server.manager.publish("news", "shown")
            await page.goto(elsewhere)
            result = await page.evaluate(FETCH, [open_server.url + events, {}])
            assert result["status"] == 200, result
            assert '"shown"' in result["body"]
            # A JSON publish needs a preflight, which this origin passes.
            init = {
                "method": "POST",
                "body": '{"category":"news","data":"from the page"}',
                "headers": {"content-type": "application/json"},
            }
            result = await page.evaluate(FETCH, [open_server.url + "/publish", init])
            assert result["status"] == 200, result
            assert await buffered(open_server) == 2
            # An error's JSON is readable too.
            result = await page.evaluate(FETCH, [open_server.url + "/events?category=news", {}])
            assert result["status"] == 400
            assert "timeout is required" in result["body"]
