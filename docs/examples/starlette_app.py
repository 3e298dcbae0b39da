"""Long polling inside a Starlette app: run with `uvicorn docs.examples.starlette_app:app`."""

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from longpoll import LongpollManager, Options, PublishHandler, SubscribeHandler

manager = LongpollManager(Options(max_event_buffer_size=100))


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with manager:  # mounted handlers get no lifespan events of their own
        yield


async def home(request: object) -> PlainTextResponse:
    return PlainTextResponse("subscribe at /events, publish at /publish")


app = Starlette(
    routes=[
        Route("/", home),
        Route("/events", SubscribeHandler(manager)),
        Route("/publish", PublishHandler(manager)),
    ],
    lifespan=lifespan,
)
