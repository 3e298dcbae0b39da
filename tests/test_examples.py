"""The examples in examples/, each started as `python -m examples.<name>` and used in Chromium.

Each test starts its example as a child process on a free loopback port (`--port 0`;
the example prints the URL it serves), drives its page in headless Debian Chromium
through Playwright, and always stops the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.servers import http_client

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parent.parent
_URL = re.compile(rb"open (http://127\.0\.0\.1:\d+)/")
WAIT_MS = 10_000  # the longest any visible change may take


class Example:
    """A running example: its process and the base URL it printed."""

    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self.process = process
        self.url = url

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send `sig` and wait for the exit (SIGKILL after 5 s); return the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(sig)
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        assert self.process.returncode is not None
        return self.process.returncode


async def run_python(*args: str, seconds: float = 30) -> tuple[int, str]:
    """Run `python ARGS` in the repository root; return its exit code and its output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), seconds)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode()


@contextlib.asynccontextmanager
async def example(name: str, *flags: str) -> AsyncIterator[Example]:
    """`python -m examples.NAME --port 0 FLAGS`, until the block ends."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"examples.{name}",
        "--port",
        "0",
        *flags,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    running: Example | None = None
    try:
        assert process.stdout is not None
        async with asyncio.timeout(15):
            while running is None:
                line = await process.stdout.readline()
                assert line, f"examples.{name} exited before printing its URL"
                match = _URL.search(line)
                if match:
                    running = Example(process, match.group(1).decode())
        yield running
    finally:
        await (running or Example(process, "")).stop(signal.SIGKILL)


@contextlib.asynccontextmanager
async def tab(browser: Browser, url: str) -> AsyncIterator[Page]:
    """A page at `url` in a fresh browser context; an uncaught error in it fails the test."""
    context: BrowserContext = await browser.new_context()
    uncaught: list[str] = []
    try:
        opened = await context.new_page()
        opened.set_default_timeout(WAIT_MS)
        opened.on("pageerror", lambda error: uncaught.append(str(error)))
        await opened.goto(url)
        yield opened
    finally:
        await context.close()
    assert uncaught == []


def setup_module() -> None:
    expect.set_options(timeout=WAIT_MS)


# --- microchat ---------------------------------------------------------------------


async def join(page: Page, name: str, room: str) -> None:
    await page.fill("#name", name)
    await page.fill("#room", room)
    await page.click("#join-button")
    await expect(page.locator("#text")).to_be_enabled()


async def say(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.click("#send-button")


async def test_microchat_rooms_are_live_and_show_text_as_text(browser: Browser) -> None:
    async with (
        example("microchat") as chat,
        tab(browser, chat.url + "/") as alice,
        tab(browser, chat.url + "/") as bob,
        tab(browser, chat.url + "/") as carol,
    ):
        await join(alice, "Alice", "lobby")
        await join(bob, "Bob", "lobby")
        await join(carol, "Carol", "kitchen")

        await say(alice, "hi Bob")
        await say(bob, "hello Alice")
        await say(carol, "anyone in the kitchen?")
        for page in (alice, bob):
            await expect(page.locator("#messages li")).to_have_text(
                ["Alicehi Bob", "Bobhello Alice"]
            )
            await expect(page.locator("#messages li .name")).to_have_text(["Alice", "Bob"])
        await expect(carol.locator("#messages li")).to_have_text(["Carolanyone in the kitchen?"])

        attack = '<script>window.pwned = 1</script><img src="x" onerror="window.pwned = 1">'
        await say(bob, attack)
        for page in (alice, bob):
            await expect(page.locator("#messages li .text").nth(2)).to_have_text(attack)
            assert await page.locator("#messages img, #messages script").count() == 0
            assert await page.evaluate("window.pwned") is None

        # A newcomer gets the room's recent messages, then new ones.
        async with tab(browser, chat.url + "/") as dave:
            await join(dave, "Dave", "lobby")
            await expect(dave.locator("#messages li")).to_have_count(3)
            await say(dave, "late, sorry")
            await expect(alice.locator("#messages li").last).to_have_text("Davelate, sorry")
        await expect(carol.locator("#messages li")).to_have_count(1)


# --- authentication ----------------------------------------------------------------


async def connect(page: Page, *, password: str | None = None, token: str | None = None) -> None:
    if token is not None:
        await page.check("input[name=mode][value=token]")
        await page.fill("#token", token)
    else:
        await page.check("input[name=mode][value=basic]")
        await page.fill("#user", "alice")
        await page.fill("#password", password or "")
    await page.click("#connect")


async def publish_note(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.click("#publish")


async def test_authentication_refuses_bad_credentials_and_serves_good_ones(
    browser: Browser,
) -> None:
    async with example("authentication") as site, http_client(site.url) as http:
        # The middleware answers before the handlers: a challenge for basic, 403 for tokens.
        refused = await http.post("/basic/publish", json={"category": "notes", "data": "x"})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic realm=")
        assert refused.json() == {"error": "valid username and password needed"}
        # A page's own request is challenged under a scheme browsers do not prompt for.
        scripted = await http.get(
            "/basic/events?category=notes&timeout=1", headers={"X-Requested-With": "page"}
        )
        assert scripted.status_code == 401
        assert scripted.headers["www-authenticate"].startswith("xBasic realm=")
        wrong = await http.get(
            "/token/events?category=notes&timeout=1", headers={"X-Auth-Token": "guess"}
        )
        assert wrong.status_code == 403

        async with tab(browser, site.url + "/") as page:
            await connect(page, password="not-it")
            await expect(page.locator("#status")).to_have_text(re.compile(r"^Refused \(401\)"))
            await publish_note(page, "sneaky")
            await expect(page.locator("#status")).to_have_text(
                re.compile(r"^Publish refused \(401\)")
            )
            await connect(page, token="guess")
            await expect(page.locator("#status")).to_have_text(re.compile(r"^Refused \(403\)"))

            code, output = await run_python(
                "-m", "examples.authentication.client", "--url", site.url,
                "--user", "alice", "--password", "nope", "from a bad password",
            )  # fmt: skip
            assert code == 1
            assert "refused: 401" in output
            code, output = await run_python(
                "-m", "examples.authentication.client", "--url", site.url,
                "--token", "guess", "from a bad token",
            )  # fmt: skip
            assert (code, "refused: 403" in output) == (1, True)

            await connect(page, password="wonderland")
            await expect(page.locator("#status")).to_have_text("Listening for notes.")
            await publish_note(page, "with a password")
            await expect(page.locator("#notes li")).to_have_text(["with a password (from browser)"])
            code, output = await run_python(
                "-m", "examples.authentication.client", "--url", site.url,
                "--token", "let-me-in", "from python",
            )  # fmt: skip
            assert (code, output.startswith("published ")) == (0, True)
            await expect(page.locator("#notes li")).to_have_text(
                ["with a password (from browser)", "from python (from python)"]
            )

        # A fresh page with the token sees only what good credentials published.
        async with tab(browser, site.url + "/") as page:
            await connect(page, token="let-me-in")
            await publish_note(page, "with a token")
            await expect(page.locator("#notes li")).to_have_text(
                [
                    "with a password (from browser)",
                    "from python (from python)",
                    "with a token (from browser)",
                ]
            )
            await expect(page.locator("#status")).to_have_text("Listening for notes.")


# --- chatbot -----------------------------------------------------------------------


async def test_chatbot_replies_to_the_page(browser: Browser) -> None:
    async with example("chatbot") as bot, tab(browser, bot.url + "/") as page:
        chat = page.locator("#chat li")
        await page.fill("#text", "hello")
        await page.click("#send-button")
        await expect(chat).to_have_count(2)
        await expect(chat.nth(0)).to_have_text("you: hello")
        await expect(chat.nth(1)).to_have_text(re.compile(r"^bot: Hello, human!"))
        await page.fill("#text", "stressed")
        await page.click("#send-button")
        await expect(chat).to_have_count(4)
        await expect(chat.nth(3)).to_have_text("bot: You said 8 characters. Backwards: desserts")


async def test_chatbot_stops_quietly_on_ctrl_c() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "examples.chatbot", "--port", "0",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stdout is not None
    async with asyncio.timeout(15):
        first = await process.stdout.readline()
        assert _URL.search(first), first
        await asyncio.sleep(0.5)  # the bot's first poll waits
        process.send_signal(signal.SIGINT)
        rest = (await process.stdout.read()).decode()
        assert await process.wait() == 0
    assert "retrying" not in rest and "Traceback" not in rest and "bot stopped" not in rest, rest


# --- stressor ----------------------------------------------------------------------


async def test_stressor_counts_what_the_publisher_sends(browser: Browser) -> None:
    async with example("stressor") as site, tab(browser, site.url + "/?category=load") as page:
        await expect(page.locator("#category")).to_have_text("load")
        await asyncio.sleep(0.3)  # the page's first poll is on its way: "now" is set
        code, output = await run_python(
            "-m", "examples.stressor.publisher", "--url", site.url,
            "--count", "300", "--delay-ms", "1", "--category", "load",
        )  # fmt: skip
        assert code == 0, output
        assert output.startswith("published 300 events on 'load' in ")
        await expect(page.locator("#count")).to_have_text("300")
        await expect(page.locator("#last")).to_have_text(re.compile(r'^\{"n":300,'))
        assert int(await page.locator("#peak").inner_text()) > 0
        await expect(page.locator("#gaps")).to_have_text("0")
        await expect(page.locator("#rate")).to_have_text("0", timeout=3000)  # a second later

        # Events on other categories are not counted.
        code, _ = await run_python(
            "-m", "examples.stressor.publisher", "--url", site.url,
            "--count", "5", "--category", "elsewhere", "--concurrency", "2",
        )  # fmt: skip
        assert code == 0
        await asyncio.sleep(0.3)
        await expect(page.locator("#count")).to_have_text("300")


# --- fastapi -----------------------------------------------------------------------


async def test_fastapi_routes_and_long_polling_side_by_side(browser: Browser) -> None:
    async with (
        example("fastapi") as desk,
        http_client(desk.url) as http,
        tab(browser, desk.url + "/") as clerk,
        tab(browser, desk.url + "/") as watcher,
    ):
        assert (await http.get("/api/health")).json() == {"status": "ok"}
        assert "/api/orders" in (await http.get("/openapi.json")).json()["paths"]
        assert (await http.post("/api/orders", json={"item": ""})).status_code == 422

        await clerk.fill("#item", "tea")
        await clerk.fill("#quantity", "2")
        await clerk.click("#place")
        for page in (clerk, watcher):
            await expect(page.locator("#order-1 td").nth(3)).to_have_text("placed")
            await expect(page.locator("#order-1")).to_contain_text("tea2")

        # A change made through the API by someone else shows up in both pages.
        placed = await http.post("/api/orders", json={"item": "scones", "quantity": 6})
        assert placed.status_code == 201
        assert placed.json() == {"item": "scones", "quantity": 6, "id": 2, "status": "placed"}
        await expect(watcher.locator("#orders tr")).to_have_count(2)
        await watcher.locator("#order-1 button.ship").click()
        for page in (clerk, watcher):
            await expect(page.locator("#order-1 td").nth(3)).to_have_text("shipped")
            await expect(page.locator("#order-2 td").nth(3)).to_have_text("placed")
        listed = (await http.get("/api/orders")).json()
        assert [order["status"] for order in listed] == ["shipped", "placed"]
        # Browsers subscribe, but publishing is the API's job here.
        refused = await http.post("/longpoll/publish", json={"category": "orders", "data": 1})
        assert refused.status_code == 404


# --- filepersist -------------------------------------------------------------------


async def sign(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.click("#sign-button")
    await expect(page.locator("#status")).to_have_text("Saved.")


async def test_filepersist_keeps_entries_across_restarts(browser: Browser, tmp_path: Path) -> None:
    book = str(tmp_path / "book.jsonl")
    async with example("filepersist", "--file", book) as first:
        async with tab(browser, first.url + "/") as page:
            await sign(page, "first visit")
            await sign(page, "<b>still text</b>")
            await expect(page.locator("#entries li")).to_have_count(2)
        # A graceful stop ends with exit status 0.
        assert await first.stop(signal.SIGTERM) == 0
    lines = (await asyncio.to_thread(Path(book).read_text)).splitlines()
    assert len(lines) == 2 and '"first visit"' in lines[0]

    async with example("filepersist", "--file", book) as second:
        async with tab(browser, second.url + "/") as page:
            await expect(page.locator("#entries li")).to_have_text(
                ["first visit", "<b>still text</b>"]
            )
            await sign(page, "after a restart")
        # fsync=True: what the page was told is saved survives even SIGKILL.
        await second.stop(signal.SIGKILL)

    async with (
        example("filepersist", "--file", book) as third,
        tab(browser, third.url + "/") as page,
    ):
        await expect(page.locator("#entries li")).to_have_text(
            ["first visit", "<b>still text</b>", "after a restart"]
        )
