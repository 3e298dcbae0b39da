"""Long polling beside the routes of a FastAPI app: `uvicorn docs.examples.fastapi_app:app`."""

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from longpoll import LongpollApp, LongpollManager

manager = LongpollManager()


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with manager:  # a mounted app gets no lifespan events of its own
        yield


app = FastAPI(lifespan=lifespan)
app.mount("/longpoll", LongpollApp(manager))  # /longpoll/events, /longpoll/publish


@app.post("/orders/{order_id}/ship")
async def ship(order_id: int) -> dict[str, str]:
    event = await manager.publish(f"order-{order_id}", {"status": "shipped"})
    return {"event_id": str(event.id)}
