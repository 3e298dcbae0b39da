"""Access control over real HTTP, on both ways in: origins, tokens and the hook."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from longpoll import LongpollApp, LongpollManager
from longpoll.access import AccessDenied, AccessPolicy, Action
from longpoll.tokens import TokenVerifier, issue
from tests.servers import RunningServer, http_client, serve_app, serve_process

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cret-for-tests-only-0123456789abcdef"
PUBLISH_TOKEN = "publish-token-for-tests-0123456789abcdef"
APP_ORIGIN = "http://app.example"
INVALID = "the token for publishing is not valid"


@contextlib.asynccontextmanager
async def served(
    portable: bool, access: AccessPolicy | None = None
) -> AsyncIterator[tuple[RunningServer, httpx.AsyncClient]]:
    app = LongpollApp(LongpollManager(), access=access)
    async with serve_app(app, portable=portable) as running, http_client(running.url) as client:
        yield running, client


async def buffered(running: RunningServer) -> int:
    return (await running.manager.stats()).buffered_events


async def test_a_page_of_another_origin_can_neither_publish_nor_subscribe(portable: bool) -> None:
    async with served(portable) as (running, client):
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/json"):
            response = await client.post(
                "/publish",
                content=b'{"category":"csrf","data":"x"}',
                headers={"origin": "http://evil.example", "content-type": content_type},
            )
            assert response.status_code == 403
            assert response.json() == {
                "error": "requests from origin 'http://evil.example' are not allowed"
            }
            assert "access-control-allow-origin" not in response.headers
        response = await client.get(
            "/events",
            params={"category": "csrf", "timeout": 1, "since_time": -1},
            headers={"origin": "null"},
        )
        assert response.status_code == 403
        assert await buffered(running) == 0


async def test_requests_of_the_servers_own_origin_or_without_one_are_served(
    portable: bool,
) -> None:
    async with served(portable) as (running, client):
        own = running.url  # what a page served by this server sends
        for headers in ({"origin": own}, {"origin": own.upper() + "/"}, {}):
            response = await client.post(
                "/publish", json={"category": "news", "data": 1}, headers=headers
            )
            assert response.status_code == 200, response.text
            assert "access-control-allow-origin" not in response.headers
        response = await client.get(
            "/events",
            params={"category": "news", "timeout": 1, "since_time": -1},
            headers={"origin": own},
        )
        assert [event["data"] for event in response.json()["events"]] == [1, 1, 1]


async def test_listed_origins_get_cors_headers_on_answers_and_errors(portable: bool) -> None:
    policy = AccessPolicy(cors_origins=[APP_ORIGIN + "/"])
    async with served(portable, policy) as (running, client):
        headers = {"origin": APP_ORIGIN}
        response = await client.post(
            "/publish", json={"category": "news", "data": "hi"}, headers=headers
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == APP_ORIGIN
        assert response.headers["vary"].lower() == "origin"
        # A browser must be able to read why a request failed.
        response = await client.get("/events", params={"category": "news"}, headers=headers)
        assert response.status_code == 400
        assert response.json() == {"error": "timeout is required"}
        assert response.headers["access-control-allow-origin"] == APP_ORIGIN
        response = await client.get(
            "/events",
            params={"category": "news", "timeout": 1, "since_time": -1},
            headers=headers,
        )
        assert response.json()["events"][0]["data"] == "hi"
        assert response.headers["access-control-allow-origin"] == APP_ORIGIN
        other = await client.post(
            "/publish", json={"category": "news", "data": 2}, headers={"origin": "http://x.example"}
        )
        assert other.status_code == 403
        assert await buffered(running) == 1


async def test_preflight_is_answered_for_listed_origins_only(portable: bool) -> None:
    policy = AccessPolicy(cors_origins=[APP_ORIGIN])
    async with served(portable, policy) as (_, client):
        asking = {
            "origin": APP_ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        }
        response = await client.options("/publish", headers=asking)
        assert response.status_code == 204
        assert response.content == b""
        assert "content-length" not in response.headers
        assert response.headers["access-control-allow-origin"] == APP_ORIGIN
        assert response.headers["access-control-allow-methods"] == "POST"
        allowed = response.headers["access-control-allow-headers"]
        assert {"authorization", "content-type"} <= {h.strip() for h in allowed.split(",")}
        assert int(response.headers["access-control-max-age"]) > 0
        response = await client.options(
            "/events", headers={**asking, "access-control-request-method": "GET"}
        )
        assert response.status_code == 204
        assert response.headers["access-control-allow-methods"] == "GET"
        refused = await client.options(
            "/publish", headers={**asking, "origin": "http://evil.example"}
        )
        assert refused.status_code == 403
        assert "access-control-allow-origin" not in refused.headers
        assert "error" in refused.json()


async def test_any_origin_may_subscribe_with_a_star_but_never_publish(portable: bool) -> None:
    policy = AccessPolicy(cors_origins=["*"])
    async with served(portable, policy) as (running, client):
        elsewhere = {"origin": "http://anywhere.example"}
        await client.post("/publish", json={"category": "open", "data": 1})
        response = await client.get(
            "/events",
            params={"category": "open", "timeout": 1, "since_time": -1},
            headers=elsewhere,
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "*"
        response = await client.post(
            "/publish", json={"category": "open", "data": 2}, headers=elsewhere
        )
        assert response.status_code == 403
        preflight = await client.options(
            "/publish", headers={**elsewhere, "access-control-request-method": "POST"}
        )
        assert preflight.status_code == 403
        assert await buffered(running) == 1


async def test_publish_token(portable: bool) -> None:
    async with served(portable, AccessPolicy(publish_token=PUBLISH_TOKEN)) as (running, client):
        body = {"category": "news", "data": 1}
        for headers, message in (
            ({}, "publishing needs a token: send Authorization: Bearer <token>"),
            ({"authorization": "Basic dXNlcjpwYXNz"}, "publishing needs a token"),
            ({"authorization": "Bearer " + PUBLISH_TOKEN[:-1]}, INVALID),
            ({"authorization": "Bearer " + PUBLISH_TOKEN + "x"}, INVALID),
        ):
            response = await client.post("/publish", json=body, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"].startswith(message)
            assert response.headers["www-authenticate"] == "Bearer"
        assert await buffered(running) == 0
        response = await client.post(
            "/publish", json=body, headers={"authorization": "bearer " + PUBLISH_TOKEN}
        )
        assert response.status_code == 200
        # Subscribing needs no token of its own unless a subscribe secret is set.
        response = await client.get(
            "/events", params={"category": "news", "timeout": 1, "since_time": -1}
        )
        assert [event["data"] for event in response.json()["events"]] == [1]


async def test_subscribe_tokens_grant_their_categories_only(portable: bool) -> None:
    async with served(portable, AccessPolicy(subscribe_secret=SECRET)) as (running, client):
        await client.post("/publish", json={"category": "chat.room1", "data": "hello"})
        token = issue(SECRET, ["news", "chat.*"], ttl_seconds=60)

        async def poll(categories: list[str], **extra: Any) -> httpx.Response:
            params = {"category": categories, "timeout": 1, "since_time": -1, **extra}
            return await client.get("/events", params=params, headers=extra.pop("headers", {}))

        bearer = {"authorization": f"Bearer {token}"}
        response = await client.get(
            "/events",
            params={"category": ["chat.room1", "news"], "timeout": 1, "since_time": -1},
            headers=bearer,
        )
        assert response.status_code == 200
        assert response.json()["events"][0]["data"] == "hello"
        by_query = await poll(["chat.room1"], token=token)
        assert by_query.status_code == 200 and by_query.json()["events"]

        refused = await client.get(
            "/events",
            params={"category": ["news", "private"], "timeout": 1, "since_time": -1},
            headers=bearer,
        )
        assert refused.status_code == 403
        assert refused.json() == {"error": "the token does not grant the category 'private'"}
        # "chat.*" grants what starts with "chat.", not "chat" itself.
        assert (await poll(["chat"], token=token)).status_code == 403

        expired = issue(SECRET, ["news"], ttl_seconds=60, now=time.time() - 120)
        forged = issue("another-secret-" + SECRET, ["news"], ttl_seconds=60)
        for bad, message in (
            (None, "subscribing needs a token"),
            (expired, "token has expired"),
            (forged, "invalid token: Signature verification failed"),
            ("not.a.jwt", "invalid token"),
        ):
            response = await poll(["news"], **({} if bad is None else {"token": bad}))
            assert response.status_code == 401
            assert response.json()["error"].startswith(message), response.text
            assert response.headers["www-authenticate"] == "Bearer"
        assert (await running.manager.stats()).waiting_subscribers == 0


async def test_an_authorize_hook_sees_the_request_and_decides(portable: bool) -> None:
    seen: list[tuple[str, str, tuple[str, ...], str | None]] = []

    def authorize(request: Any, action: Action, categories: tuple[str, ...]) -> bool:
        client = request.client[0] if request.client else None
        seen.append((request.method, action, categories, client))
        if request.header(b"x-user") is None:
            raise AccessDenied("who are you?", status=401)
        return not any(category.startswith("admin") for category in categories)

    async with served(portable, AccessPolicy(authorize=authorize)) as (running, client):
        user = {"x-user": "ann"}
        ok = await client.post("/publish", json={"category": "news", "data": 1}, headers=user)
        assert ok.status_code == 200
        denied = await client.post("/publish", json={"category": "admin", "data": 1}, headers=user)
        assert denied.status_code == 403
        assert denied.json() == {"error": "not allowed to publish"}
        anonymous = await client.get("/events", params={"category": "news", "timeout": 1})
        assert anonymous.status_code == 401
        assert anonymous.json() == {"error": "who are you?"}
        assert anonymous.headers["www-authenticate"] == "Bearer"
        polled = await client.get(
            "/events",
            params={"category": ["news", "admin.log"], "timeout": 1, "since_time": -1},
            headers=user,
        )
        assert polled.status_code == 403
        assert polled.json() == {"error": "not allowed to subscribe"}
        assert await buffered(running) == 1
    assert seen == [
        ("POST", "publish", ("news",), "127.0.0.1"),
        ("POST", "publish", ("admin",), "127.0.0.1"),
        ("GET", "subscribe", ("news",), "127.0.0.1"),
        ("GET", "subscribe", ("news", "admin.log"), "127.0.0.1"),
    ]


async def test_an_async_hook_is_awaited_before_anything_is_read_or_stored(portable: bool) -> None:
    async def authorize(request: Any, action: Action, categories: tuple[str, ...]) -> bool:
        await asyncio.sleep(0.01)
        if request.header(b"authorization") == b"Bearer let-me-in":
            return True
        raise AccessDenied("a valid token is needed", status=401)

    async with served(portable, AccessPolicy(authorize=authorize)) as (running, client):
        refused = await client.post("/publish", json={"category": "news", "data": 1})
        assert refused.status_code == 401
        assert await buffered(running) == 0
        allowed = {"authorization": "Bearer let-me-in"}
        waiting = asyncio.create_task(
            client.get("/events", params={"category": "news", "timeout": 5}, headers=allowed)
        )
        async with asyncio.timeout(5):
            while (await running.manager.stats()).waiting_subscribers != 1:
                await asyncio.sleep(0.005)
        published = await client.post(
            "/publish", json={"category": "news", "data": 2}, headers=allowed
        )
        assert published.status_code == 200
        answer = await waiting
        assert [event["data"] for event in answer.json()["events"]] == [2]
        refused = await client.get("/events", params={"category": "news", "timeout": 1})
        assert refused.status_code == 401
        assert refused.json() == {"error": "a valid token is needed"}


async def test_a_failing_hook_answers_500_without_details() -> None:
    def authorize(request: Any, action: Action, categories: tuple[str, ...]) -> bool:
        raise RuntimeError("secret internals")

    async with served(False, AccessPolicy(authorize=authorize)) as (running, client):
        response = await client.post("/publish", json={"category": "news", "data": 1})
        assert response.status_code == 500
        assert response.json() == {"error": "internal server error"}
        assert await buffered(running) == 0


def test_tokens_and_secrets_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        issue("short", ["news"])
    with pytest.raises(ValueError, match="publish_token must be at least 32 bytes"):
        AccessPolicy(publish_token="short")
    with pytest.raises(ValueError, match="at least one category"):
        issue(SECRET, [])
    with pytest.raises(ValueError, match="ttl_seconds must be positive"):
        issue(SECRET, ["news"], ttl_seconds=0)
    with pytest.raises(ValueError, match="status must be 401 or 403"):
        AccessDenied("x", status=404)  # type: ignore[arg-type]
    grant = TokenVerifier(SECRET).verify(issue(SECRET, ["a", "b.*"], 60))
    assert grant.allows("a") and grant.allows("b.c") and not grant.allows("b")


def test_longpoll_token_prints_a_token_the_server_accepts() -> None:
    env = {**os.environ, "MY_SECRET": SECRET}
    done = subprocess.run(
        [sys.executable, "-m", "longpoll.cli", "token", "--secret-env", "MY_SECRET",
         "--category", "news", "--category", "chat.*", "--ttl", "60"],
        capture_output=True, text=True, env=env, timeout=30, check=True,
    )  # fmt: skip
    grant = TokenVerifier(SECRET).verify(done.stdout.strip())
    assert grant.allows("news") and grant.allows("chat.x") and not grant.allows("other")
    assert grant.expires - time.time() == pytest.approx(60, abs=5)
    missing = subprocess.run(
        [sys.executable, "-m", "longpoll.cli", "token", "--secret-env", "NOT_SET_ANYWHERE",
         "--category", "news"],
        capture_output=True, text=True, env=env, timeout=30,
    )  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1
    assert "NOT_SET_ANYWHERE (--secret-env) is not set" in missing.stderr


def test_serve_takes_its_tokens_from_the_environment() -> None:
    env_before = dict(os.environ)
    os.environ["LONGPOLL_PUBLISH_TOKEN"] = PUBLISH_TOKEN
    os.environ["LONGPOLL_SUBSCRIBE_SECRET"] = SECRET
    try:
        with serve_process("--cors-origin", APP_ORIGIN) as serving:
            with httpx.Client(base_url=serving.url, timeout=10) as client:
                body = {"category": "news", "data": 1}
                assert client.post("/publish", json=body).status_code == 401
                bearer = {"authorization": f"Bearer {PUBLISH_TOKEN}", "origin": APP_ORIGIN}
                published = client.post("/publish", json=body, headers=bearer)
                assert published.status_code == 200
                assert published.headers["access-control-allow-origin"] == APP_ORIGIN
                params: dict[str, str | int] = {"category": "news", "timeout": 1, "since_time": -1}
                assert client.get("/events", params=params).status_code == 401
                token = issue(SECRET, ["news"], 60)
                polled = client.get("/events", params={**params, "token": token})
                assert [event["data"] for event in polled.json()["events"]] == [1]
            serving.stop(signal.SIGTERM)
    finally:
        os.environ.clear()
        os.environ.update(env_before)


def test_serve_can_leave_publishing_over_http_out() -> None:
    with (
        serve_process("--publish-path", "off") as serving,
        httpx.Client(base_url=serving.url, timeout=10) as client,
    ):
        response = client.post("/publish", json={"category": "news", "data": 1})
        assert response.status_code == 404
        polled = client.get("/events", params={"category": "news", "timeout": 1})
        assert polled.json()["timeout"] == "no events before timeout"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--subscribe-secret", "short"], "--subscribe-secret (or LONGPOLL_SUBSCRIBE_SECRET) must"),
        (["--publish-token", "short"], "--publish-token (or LONGPOLL_PUBLISH_TOKEN) must"),
        (["--authorize", "no_such_module:hook"], "--authorize no_such_module:hook: cannot import"),
        (["--authorize", "os:no_such_name"], "os has no callable named no_such_name"),
        (["--authorize", "os"], "give it as MODULE:NAME"),
    ],
)
def test_bad_access_flags_are_one_line_usage_errors(flags: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "longpoll.cli", "serve", "--port", "0", *flags],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr


def test_a_server_others_can_reach_warns_when_anyone_may_publish_or_subscribe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from longpoll.cli import _warn_if_open, build_parser

    parser = build_parser()
    for host, extra, expected in (
        ("0.0.0.0", [], ["--publish-token", "--subscribe-secret"]),
        ("0.0.0.0", ["--publish-path", "off"], ["--subscribe-secret"]),
        ("::", ["--authorize", "os:getcwd"], []),
        ("127.0.0.1", [], []),
    ):
        caplog.clear()
        args = parser.parse_args(["serve", "--host", host, *extra])
        if args.publish_path == "off":
            args.publish_path = None
        with caplog.at_level("WARNING", logger="longpoll.server"):
            _warn_if_open(args)
        text = caplog.text
        assert all(flag in text for flag in expected), (host, extra, text)
        assert bool(text) == bool(expected), (host, extra, text)


def test_the_command_line_clients_send_a_token() -> None:
    env_before = dict(os.environ)
    os.environ["LONGPOLL_PUBLISH_TOKEN"] = PUBLISH_TOKEN
    try:
        with serve_process() as serving:
            command = [sys.executable, "-m", "longpoll.cli", "publish", "news", "hi"]
            command += ["--url", serving.url]
            clean = {k: v for k, v in os.environ.items() if k != "LONGPOLL_PUBLISH_TOKEN"}
            refused = subprocess.run(command, capture_output=True, text=True, timeout=30, env=clean)
            assert refused.returncode == 1
            assert refused.stderr.count("\n") == 1
            assert "401" in refused.stderr and "publishing needs a token" in refused.stderr
            sent = subprocess.run(
                command,
                capture_output=True, text=True, timeout=30, check=True,
                env={**clean, "LONGPOLL_TOKEN": PUBLISH_TOKEN},
            )  # fmt: skip
            assert orjson.loads(sent.stdout)["id"]
            flagged = subprocess.run(
                [*command, "--token", PUBLISH_TOKEN],
                capture_output=True, text=True, timeout=30, check=True, env=clean,
            )  # fmt: skip
            assert orjson.loads(flagged.stdout)["id"]
    finally:
        os.environ.clear()
        os.environ.update(env_before)


async def test_the_documented_access_example(portable: bool) -> None:
    source = (ROOT / "docs" / "examples" / "access_app.py").read_text()
    assert source.strip() in (ROOT / "docs" / "security.md").read_text()
    module = importlib.reload(importlib.import_module("docs.examples.access_app"))
    app = module.build_app()
    async with serve_app(app, portable=portable) as running, http_client(running.url) as client:
        ann = {"cookie": "session=s3cr3t-session"}
        anonymous = await client.get("/events", params={"category": "news", "timeout": 1})
        assert (anonymous.status_code, anonymous.json()) == (401, {"error": "log in first"})
        published = await client.post("/publish", json={"category": "news", "data": 1}, headers=ann)
        assert published.status_code == 200
        own = await client.get(
            "/events",
            params={"category": ["news", "user.ann.inbox"], "timeout": 1, "since_time": -1},
            headers=ann,
        )
        assert own.json()["events"][0]["data"] == 1
        other = await client.get(
            "/events", params={"category": "user.bob", "timeout": 1}, headers=ann
        )
        assert other.status_code == 403
        page = await client.options(
            "/publish",
            headers={"origin": "https://app.example", "access-control-request-method": "POST"},
        )
        assert page.status_code == 204


async def test_the_python_client_renews_a_signed_token_after_a_401() -> None:
    from longpoll.client import AsyncClient

    policy = AccessPolicy(subscribe_secret=SECRET, publish_token=PUBLISH_TOKEN)
    async with served(False, policy) as (running, _):
        tokens = [issue(SECRET, ["news"], 60, now=time.time() - 120), issue(SECRET, ["news"], 600)]
        given: list[str] = []

        def next_token() -> str:
            given.append(tokens[min(len(given), 1)])
            return given[-1]

        subscriber = AsyncClient(f"{running.url}/events", poll_timeout_seconds=5, token=next_token)
        publisher = AsyncClient(
            f"{running.url}/events", publish_url=f"{running.url}/publish", token=PUBLISH_TOKEN
        )
        async with subscriber, publisher:
            stream = subscriber.subscribe("news", since=-1)
            await publisher.publish("news", "signed")
            async with asyncio.timeout(10):
                event = await anext(aiter(stream))
            await stream.aclose()
        assert event.data == "signed"
        assert given[:2] == tokens
