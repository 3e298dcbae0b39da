"""fastapi: long polling added to an existing FastAPI app, beside its normal routes.

The app is a small order desk with a JSON API under `/api`. Long polling is one
`app.mount("/longpoll", LongpollApp(manager))`; the routes publish what changed with
`manager.publish(...)`, and the page at `/` shows every order live, in every browser.
(The Python counterpart of golongpoll's Gin section.)
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from longpoll import LongpollApp, LongpollManager

DEFAULT_PORT = 8107
PAGE = Path(__file__).with_name("page.html")
CATEGORY = "orders"


class NewOrder(BaseModel):
    """What a customer orders."""

    item: str = Field(min_length=1, max_length=100)
    quantity: int = Field(default=1, ge=1, le=1000)


class Order(NewOrder):
    """An order as the desk keeps it; each change is published whole on `orders`."""

    id: int
    status: Literal["placed", "shipped"] = "placed"


def make_app() -> FastAPI:
    """The FastAPI app: its own routes, plus long polling mounted at `/longpoll`."""
    manager = LongpollManager()
    orders: dict[int, Order] = {}
    numbers = itertools.count(1)
    page = PAGE.read_text(encoding="utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with manager:  # a mounted app gets no lifespan events of its own
            yield

    app = FastAPI(title="Order desk", lifespan=lifespan)
    # /longpoll/events to subscribe, /longpoll/longpoll.js for the page; publishing
    # is left to the routes below, so browsers cannot publish what they like.
    app.mount("/longpoll", LongpollApp(manager, publish_path=None, stats_path=None))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home() -> str:
        return page

    @app.get("/api/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/orders")
    async def list_orders() -> list[Order]:
        return list(orders.values())

    @app.post("/api/orders", status_code=201)
    async def place(new: NewOrder) -> Order:
        order = Order(id=next(numbers), **new.model_dump())
        orders[order.id] = order
        await manager.publish(CATEGORY, order.model_dump())
        return order

    @app.post("/api/orders/{order_id}/ship")
    async def ship(order_id: int) -> Order:
        order = orders.get(order_id)
        if order is None:
            raise HTTPException(404, f"no order {order_id}")
        order.status = "shipped"
        await manager.publish(CATEGORY, order.model_dump())
        return order

    app.state.manager = manager
    return app
