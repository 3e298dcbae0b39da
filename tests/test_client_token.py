"""Bearer tokens in the Python clients: the pure core, and both clients against a real
server on a loopback port that demands a token.

The server is `LongpollApp` behind `TokenGate`, this file's stand-in for the
server's access control: it answers a missing or unknown token with 401 and a
token that does not grant the category with 403, each with a JSON `error`, as the
wire contract says.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import pytest

from longpoll import ClientError, InvalidRequest, LongpollApp, LongpollManager, ServerError
from longpoll.client import AsyncClient, Client, ReceivedEvent
from longpoll.client._core import make_settings, retried_by_default
from longpoll.types import Message, Receive, Scope, Send
from tests.servers import RunningServer, serve_app, wait_for_waiters

FAST = {"poll_timeout_seconds": 1, "retry_wait_seconds": 0.02, "max_retry_wait_seconds": 0.1}
"""Short polls and waits, so that no test waits long for anything."""

GUARDED = ("/events", "/publish")


@dataclass
class Seen:
    """One guarded request as the gate saw it, and the status the gate or the app
    answered (None until the answer starts)."""

    path: str
    authorization: str | None
    status: int | None = None


class TokenGate:
    """ASGI middleware in front of `app`: subscribe and publish requests need
    `Authorization: Bearer <token>` with a token of `tokens`, which grants the
    categories it maps to.

    A missing or unknown token gets 401 with `WWW-Authenticate: Bearer`; a known
    token that does not grant every category of the request gets 403. Both answer
    JSON `{"error": ...}`, and such a request never reaches `app`. `tokens` may
    change while serving (a token that expires is removed from it).
    """

    def __init__(self, app: LongpollApp, tokens: dict[str, set[str]]) -> None:
        self.app = app
        self.tokens = tokens
        self.seen: list[Seen] = []

    def statuses(self, path: str) -> list[int | None]:
        return [seen.status for seen in self.seen if seen.path == path]

    def authorizations(self) -> list[str | None]:
        return [seen.authorization for seen in self.seen]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in GUARDED:
            await self.app(scope, receive, send)
            return
        headers = {
            key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
        }
        seen = Seen(scope["path"], headers.get("authorization"))
        self.seen.append(seen)

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen.status = message["status"]
            await send(message)

        scheme, _, token = (seen.authorization or "").partition(" ")
        granted = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if granted is None:
            await _refuse(recording_send, 401, "missing, expired or unknown token")
            return
        if scope["path"] == "/events":
            query = parse_qs(scope["query_string"].decode("latin-1"))
            categories = query.get("category", [])
        else:
            body, receive = await _read_body(receive)
            categories = []  # a body that is not JSON: the app answers it
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                categories = [orjson.loads(body).get("category")]
        if not set(categories) <= granted:
            await _refuse(recording_send, 403, "the token does not grant this category")
            return
        await self.app(scope, receive, recording_send)


async def _refuse(send: Send, status: int, error: str) -> None:
    body = orjson.dumps({"error": error})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a `receive` that hands it to the app again."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


@contextlib.asynccontextmanager
async def gated(tokens: dict[str, set[str]]) -> AsyncIterator[tuple[TokenGate, RunningServer]]:
    """A `LongpollApp` behind a `TokenGate` with `tokens`, on a free loopback port."""
    manager = LongpollManager()
    gate = TokenGate(LongpollApp(manager), tokens)
    async with serve_app(gate, manager) as server:
        yield gate, server


def async_client(url: str, **options: Any) -> AsyncClient:
    return AsyncClient(f"{url}/events", publish_url=f"{url}/publish", **{**FAST, **options})


def sync_client(url: str, **options: Any) -> Client:
    return Client(f"{url}/events", publish_url=f"{url}/publish", **{**FAST, **options})


async def within(seconds: float, awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, seconds)


def tokens_from(*tokens: str) -> tuple[list[str], Callable[[], str]]:
    """A token function returning `tokens` in turn, then the last one again; and the
    list of what it returned, one entry per call."""
    given: list[str] = []
    source = itertools.chain(tokens, itertools.repeat(tokens[-1]))

    def token() -> str:
        given.append(next(source))
        return given[-1]

    return given, token


async def publish_then_receive(flavour: str, url: str, token: Any) -> tuple[Any, ReceivedEvent]:
    """Publish 1 on "c" with a client of `flavour`, then receive it."""
    if flavour == "async":
        async with async_client(url, token=token) as client:
            published = await client.publish("c", 1)
            event = await within(5, anext(client.subscribe("c", since=-1)))
            return published, event

    def run() -> tuple[Any, ReceivedEvent]:
        with sync_client(url, token=token) as client:
            published = client.publish("c", 1)
            return published, next(client.subscribe("c", since=-1))

    result: tuple[Any, ReceivedEvent] = await within(5, asyncio.to_thread(run))
    return result


async def next_event(flavour: str, url: str, token: Any, **options: Any) -> ReceivedEvent:
    """The first event of a subscription to "c" from everything buffered."""
    if flavour == "async":
        async with async_client(url, token=token, **options) as client:
            event: ReceivedEvent = await within(5, anext(client.subscribe("c", since=-1)))
            return event

    def run() -> ReceivedEvent:
        with sync_client(url, token=token, **options) as client:
            return next(client.subscribe("c", since=-1))

    received: ReceivedEvent = await within(5, asyncio.to_thread(run))
    return received


async def publish_with(flavour: str, url: str, token: Any) -> Any:
    """What a publish on "c" with a client of `flavour` returns."""
    if flavour == "async":
        async with async_client(url, token=token) as client:
            return await within(5, client.publish("c", "x"))

    def run() -> Any:
        with sync_client(url, token=token) as client:
            return client.publish("c", "x")

    return await within(5, asyncio.to_thread(run))


# --- the token reaches the server ------------------------------------------------------


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_a_string_token_goes_with_every_request(flavour: str) -> None:
    async with gated({"good": {"c"}}) as (gate, server):
        published, event = await publish_then_receive(flavour, server.url, "good")
        assert (event.data, event.id) == (1, published.id)
    assert [seen.path for seen in gate.seen] == ["/publish", "/events"]
    assert gate.authorizations() == ["Bearer good", "Bearer good"]
    assert [seen.status for seen in gate.seen] == [200, 200]


@pytest.mark.parametrize("flavour", ["async", "sync", "async-function"])
async def test_a_token_function_is_called_before_each_request(flavour: str) -> None:
    tokens: dict[str, set[str]] = {}
    calls = 0

    def token() -> str:
        # A new token each time, known to the server: each request shows which call it got.
        nonlocal calls
        calls += 1
        tokens[f"t{calls}"] = {"c"}
        return f"t{calls}"

    async def async_token() -> str:
        await asyncio.sleep(0)
        return token()

    async with gated(tokens) as (gate, server):
        if flavour == "sync":

            def run() -> list[Any]:
                with sync_client(server.url, token=token) as client:
                    stream = client.subscribe("c", since=-1)
                    client.publish("c", 1)
                    first = next(stream)
                    client.publish("c", 2)
                    return [first.data, next(stream).data]

            received = await within(5, asyncio.to_thread(run))
        else:
            provider = async_token if flavour == "async-function" else token
            async with async_client(server.url, token=provider) as client:
                stream = client.subscribe("c", since=-1)
                await client.publish("c", 1)
                first = await within(5, anext(stream))
                await client.publish("c", 2)
                received = [first.data, (await within(5, anext(stream))).data]
    assert received == [1, 2]
    assert [seen.path for seen in gate.seen] == ["/publish", "/events", "/publish", "/events"]
    assert gate.authorizations() == [f"Bearer t{number}" for number in range(1, 5)]
    assert calls == 4


# --- renewal and refusals --------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_a_refused_token_is_renewed_once_and_the_request_goes_through(
    flavour: str,
) -> None:
    failures: list[ClientError] = []

    def on_failure(error: ClientError) -> bool:
        failures.append(error)
        return False

    async with gated({"good": {"c"}}) as (gate, server):
        await server.manager.publish("c", "before")
        given, token = tokens_from("expired", "good")
        event = await next_event(flavour, server.url, token, on_failure=on_failure)
        assert event.data == "before"
        assert gate.statuses("/events") == [401, 200]
        assert given == ["expired", "good"]

        given, token = tokens_from("expired", "good")
        published = await publish_with(flavour, server.url, token)
        assert published.id is not None
        assert gate.statuses("/publish") == [401, 200]
        assert given == ["expired", "good"]
    assert failures == []  # the 401 that the renewal cured reached no one


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_a_token_that_expires_during_a_subscription_is_renewed(flavour: str) -> None:
    tokens = {"first": {"c"}}
    # The function still gives "first" for the poll after the token expired, and
    # "second" when asked again after the 401.
    given, token = tokens_from("first", "first", "second")
    received: list[Any] = []
    async with gated(tokens) as (gate, server):
        if flavour == "async":
            client = async_client(server.url, token=token, poll_timeout_seconds=30)

            async def consume() -> None:
                async for event in client.subscribe("c"):
                    received.append(event.data)
                    if len(received) == 2:
                        break

            consumer = asyncio.create_task(consume())
        else:
            sync = sync_client(server.url, token=token, poll_timeout_seconds=30)

            def consume_sync() -> None:
                for event in sync.subscribe("c"):
                    received.append(event.data)
                    if len(received) == 2:
                        break

            consumer = asyncio.create_task(asyncio.to_thread(consume_sync))
        await wait_for_waiters(server.manager, 1)
        # The waiting poll was let in; the token expires while it waits.
        del tokens["first"]
        tokens["second"] = {"c"}
        await server.manager.publish("c", 1)
        async with asyncio.timeout(5):
            while not received:
                await asyncio.sleep(0.005)
        await wait_for_waiters(server.manager, 1)
        await server.manager.publish("c", 2)
        await within(5, consumer)
        if flavour == "async":
            await client.aclose()
        else:
            sync.close()
    assert received == [1, 2]
    assert given == ["first", "first", "second"]
    assert gate.statuses("/events") == [200, 401, 200]
    assert gate.authorizations() == ["Bearer first", "Bearer first", "Bearer second"]


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_a_refused_string_token_is_an_error_at_once(flavour: str) -> None:
    async with gated({"good": {"c"}}) as (gate, server):
        started = time.monotonic()
        with pytest.raises(ServerError) as refused:
            await next_event(flavour, server.url, "forged")
        with pytest.raises(ServerError) as refused_publish:
            await publish_with(flavour, server.url, "forged")
        assert time.monotonic() - started < 2
    for error in (refused.value, refused_publish.value):
        assert (error.status, error.message) == (401, "missing, expired or unknown token")
    assert gate.statuses("/events") == [401]
    assert gate.statuses("/publish") == [401]


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_a_token_function_refused_twice_is_an_error(flavour: str) -> None:
    async with gated({"good": {"c"}}) as (gate, server):
        given, token = tokens_from("expired", "revoked", "good")
        started = time.monotonic()
        with pytest.raises(ServerError) as refused:
            await next_event(flavour, server.url, token)
        assert time.monotonic() - started < 2
        assert refused.value.status == 401
        assert given == ["expired", "revoked"]
        assert gate.statuses("/events") == [401, 401]

        given, token = tokens_from("expired", "revoked", "good")
        with pytest.raises(ServerError) as refused:
            await publish_with(flavour, server.url, token)
        assert refused.value.status == 401
        assert given == ["expired", "revoked"]
        assert gate.statuses("/publish") == [401, 401]


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_a_token_without_the_category_is_refused_at_once(flavour: str) -> None:
    async with gated({"other": {"elsewhere"}}) as (gate, server):
        given, token = tokens_from("other")
        with pytest.raises(ServerError) as forbidden:
            await next_event(flavour, server.url, token)
        with pytest.raises(ServerError) as forbidden_publish:
            await publish_with(flavour, server.url, token)
    for error in (forbidden.value, forbidden_publish.value):
        assert (error.status, error.message) == (403, "the token does not grant this category")
    assert [seen.status for seen in gate.seen] == [403, 403]
    assert given == ["other", "other"]


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_on_failure_decides_after_a_refused_token(flavour: str) -> None:
    """A 401 goes to `on_failure` like any error: the retry after its back-off wait
    asks the token function again."""
    statuses: list[int] = []

    def on_failure(error: ClientError) -> bool:
        assert isinstance(error, ServerError)
        statuses.append(error.status)
        return len(statuses) < 2

    async with gated({"good": {"c"}}) as (gate, server):
        await server.manager.publish("c", "hello")
        given, token = tokens_from("a", "b", "good")
        event = await next_event(flavour, server.url, token, on_failure=on_failure)
    assert event.data == "hello"
    assert statuses == [401]
    assert given == ["a", "b", "good"]
    assert gate.statuses("/events") == [401, 401, 200]


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_a_failing_token_function_ends_the_subscription_with_its_error(
    flavour: str,
) -> None:
    def broken() -> str:
        raise RuntimeError("the token service is down")

    async with gated({"good": {"c"}}) as (gate, server):
        with pytest.raises(RuntimeError, match="token service is down"):
            await next_event(flavour, server.url, broken)
        with pytest.raises(InvalidRequest, match="must return a string, not NoneType"):
            await next_event(flavour, server.url, lambda: None)
        with pytest.raises(InvalidRequest, match="visible ASCII"):
            await publish_with(flavour, server.url, lambda: "Bearer secret")
    assert gate.seen == []


# --- the core, without I/O ---------------------------------------------------------------


def settings(token: Any = None, **options: Any) -> Any:
    arguments: dict[str, Any] = {
        "subscribe_url": "http://h/events",
        "publish_url": "http://h/publish",
        "poll_timeout_seconds": 45,
        "retry_wait_seconds": 1.0,
        "max_retry_wait_seconds": 30.0,
        "success_wait_seconds": 0.0,
        "basic_auth": None,
        "headers": None,
        "on_failure": None,
        **options,
    }
    return make_settings(**arguments, token=token)


def test_core_a_string_token_is_a_fixed_header() -> None:
    fixed = settings("abc.DEF-123_~+/=", headers={"X-Team": "blue"})
    assert fixed.token_provider is None
    for headers in (fixed.poll_headers(), fixed.publish_headers()):
        assert headers["authorization"] == "Bearer abc.DEF-123_~+/="
        assert headers["x-team"] == "blue"
    assert fixed.poll_headers()["accept"] == "application/json"
    assert fixed.publish_headers()["content-type"] == "application/json"
    assert not fixed.renews_token(401)


def test_core_a_token_function_gives_each_request_its_header() -> None:
    def provider() -> str:
        return "unused"

    renewing = settings(provider)
    assert renewing.token_provider is provider
    assert "authorization" not in renewing.headers
    assert renewing.poll_headers("one")["authorization"] == "Bearer one"
    assert renewing.publish_headers("two")["authorization"] == "Bearer two"
    assert renewing.renews_token(401)
    assert not renewing.renews_token(403)
    assert not renewing.renews_token(200)
    assert not settings().renews_token(401)
    assert "authorization" not in settings().poll_headers()


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (None, "must return a string, not NoneType"),
        (b"bytes", "must return a string, not bytes"),
        ("", "visible ASCII"),
        ("Bearer s3cret", "visible ASCII"),
        ("s3cret\r\nX-Evil: 1", "visible ASCII"),
        ("s3crét", "visible ASCII"),
    ],
)
def test_core_a_token_function_that_gives_no_token(returned: Any, message: str) -> None:
    renewing = settings(lambda: "unused")
    with pytest.raises(InvalidRequest, match=message) as raised:
        renewing.poll_headers(returned)
    assert "s3cr" not in str(raised.value)  # a token is a secret: never in a message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"token": "t", "basic_auth": ("ann", "pw")}, "give basic_auth or token, not both"),
        ({"token": "t", "headers": {"authorization": "x"}}, "Authorization header or token"),
        ({"token": lambda: "t", "basic_auth": ("ann", "pw")}, "basic_auth or token"),
        ({"token": ""}, "token must be a non-empty string of visible ASCII"),
        ({"token": "Bearer t"}, 'no "Bearer "'),
        ({"token": "t\n"}, "token must be a non-empty string"),
        ({"token": 42}, "token must be a string or a function returning one, not int"),
    ],
)
async def test_bad_token_options_raise_value_error(options: dict[str, Any], message: str) -> None:
    for client in (AsyncClient, Client):
        with pytest.raises(ValueError, match=message):
            client("http://127.0.0.1:8101/events", **options)


async def test_only_the_async_client_takes_an_async_token_function() -> None:
    async def token() -> str:
        return "t"

    with pytest.raises(ValueError, match="async ones need AsyncClient"):
        Client("http://127.0.0.1:8101/events", token=token)  # type: ignore[arg-type]
    async with AsyncClient("http://127.0.0.1:8101/events", token=token) as client:
        assert client.settings.token_provider is token


def test_refusals_of_a_token_are_not_retried_by_default() -> None:
    assert not retried_by_default(ServerError(401, "expired"))
    assert not retried_by_default(ServerError(403, "not this category"))


async def test_a_real_server_answers_like_the_gate() -> None:
    """The gate's answers as an HTTP client sees them (the contract the clients rely on)."""
    async with gated({"good": {"c"}}) as (_, server), httpx.AsyncClient() as http:
        missing = await http.get(f"{server.url}/events?category=c&timeout=1")
        forbidden = await http.get(
            f"{server.url}/events?category=d&timeout=1", headers={"Authorization": "Bearer good"}
        )
    assert (missing.status_code, missing.headers["www-authenticate"]) == (401, "Bearer")
    assert missing.json() == {"error": "missing, expired or unknown token"}
    assert (forbidden.status_code, forbidden.json()["error"]) == (
        403,
        "the token does not grant this category",
    )
