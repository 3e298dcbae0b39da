"""chatbot: a page chats with a bot that is a Python client of the same server.

The page and the bot share the category `chatbot`. The bot (`run_bot`) subscribes
to it with `longpoll.client.AsyncClient`, and answers every message a person
published with a reply of its own on the same category, over HTTP like any client.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from examples._serve import page
from longpoll import BrowserClientHandler, LongpollManager, PublishHandler, SubscribeHandler
from longpoll.client import AsyncClient
from longpoll.errors import ClientError, ServerError

DEFAULT_PORT = 8103
PAGE = Path(__file__).with_name("page.html")
CATEGORY = "chatbot"
BOT = "bot"
logger = logging.getLogger("examples.chatbot")


def reply_to(text: str) -> str:
    """What the bot says to `text`."""
    words = text.lower().split()
    if not words:
        return "Say something, I am listening."
    if words[0] in {"hi", "hello", "hey"}:
        return "Hello, human! Ask me the time, or say anything and I will say it backwards."
    if "time" in words:
        return "It is " + datetime.datetime.now().strftime("%H:%M:%S") + " here."
    return f"You said {len(text)} characters. Backwards: {text[::-1]}"


def _unless_shutting_down(error: ClientError) -> bool:
    """Retry a failed poll, unless the server says it is shutting down (503)."""
    return not (isinstance(error, ServerError) and error.status == 503)


async def run_bot(base_url: str) -> None:
    """Answer every message on `CATEGORY` that the bot did not write, until cancelled
    or the server shuts down."""
    async with AsyncClient(
        f"{base_url}/events",
        publish_url=f"{base_url}/publish",
        poll_timeout_seconds=30,
        on_failure=_unless_shutting_down,
    ) as client:
        # From this moment: messages sent while the first poll is on its way count too.
        started = int(datetime.datetime.now().timestamp() * 1000)
        try:
            async for event in client.subscribe(CATEGORY, since=started):
                data: Any = event.data
                if not isinstance(data, dict) or data.get("from") == BOT:
                    continue
                await asyncio.sleep(0.3)  # "typing"
                answer = reply_to(str(data.get("text", "")))
                await client.publish(CATEGORY, {"from": BOT, "text": answer})
        except ServerError as exc:
            if exc.status != 503:
                raise


def make_app(manager: LongpollManager, base_url: str) -> Starlette:
    """The chat page and the endpoints; the bot runs as a task during the app's life."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager:
            bot = asyncio.create_task(run_bot(base_url))
            bot.add_done_callback(_report)
            try:
                yield
            finally:
                bot.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await bot

    return Starlette(
        routes=[
            Route("/", page(PAGE)),
            Route("/events", SubscribeHandler(manager)),
            Route("/publish", PublishHandler(manager)),
            Route("/longpoll.js", BrowserClientHandler()),
        ],
        lifespan=lifespan,
    )


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the bot stopped", exc_info=task.exception())
