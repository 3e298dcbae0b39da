"""Who may do what: `uvicorn --factory docs.examples.access_app:build_app`."""

import os

from longpoll import AccessDenied, AccessPolicy, LongpollApp, LongpollManager, Request
from longpoll.limits import ClientLimits

# Sessions your app created at login: cookie value -> user name.
SESSIONS = {"s3cr3t-session": "ann"}


def authorize(request: Request, action: str, categories: tuple[str, ...]) -> bool:
    """Users read their own categories ("user.ann...") and "news"; only ann publishes."""
    session = (request.header(b"cookie") or b"").decode().removeprefix("session=")
    user = SESSIONS.get(session)
    if user is None:
        raise AccessDenied("log in first", status=401)
    if action == "publish":
        return user == "ann"
    return all(c == "news" or c.startswith(f"user.{user}") for c in categories)


def build_app() -> LongpollApp:
    access = AccessPolicy(
        cors_origins=["https://app.example"],  # pages there may subscribe and publish
        authorize=authorize,
        operations_token=os.environ.get("LONGPOLL_OPERATIONS_TOKEN"),
    )
    limits = ClientLimits(publish_per_second=10, max_waiting=20)
    return LongpollApp(LongpollManager(), access=access, client_limits=limits)
