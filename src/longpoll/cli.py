"""The `longpoll` command line."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import multiprocessing
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, cast

import orjson

from longpoll import __version__
from longpoll.errors import InvalidRequest, LongpollError
from longpoll.limits import ClientLimits
from longpoll.options import Options
from longpoll.server import ServerLimits

if TYPE_CHECKING:
    from longpoll.access import Authorize
    from longpoll.addons.base import AddOn
    from longpoll.asgi import LongpollApp
    from longpoll.backends import Backend
    from longpoll.client import Client, Since

_PUBLISH_TOKEN_ENV = "LONGPOLL_PUBLISH_TOKEN"
_SUBSCRIBE_SECRET_ENV = "LONGPOLL_SUBSCRIBE_SECRET"
_OPERATIONS_TOKEN_ENV = "LONGPOLL_OPERATIONS_TOKEN"
_CLIENT_TOKEN_ENV = "LONGPOLL_TOKEN"
_DEFAULT_BUFFERED_BYTES = 256 * 1024 * 1024
# Flags of `longpoll serve` for the paths of the endpoints for operators.
_OPERATIONS_PATHS = [
    ("--stats-path", "/stats", "the stats (JSON counts)"),
    ("--healthz-path", "/healthz", "the liveness probe (200 while the process serves)"),
    ("--readyz-path", "/readyz", "the readiness probe (503 while shutting down or Redis is away)"),
    ("--metrics-path", "/metrics", "the Prometheus metrics"),
    ("--console-path", "/console", "the console, a page for operators (its data comes through "
     "the endpoints above, with their tokens)"),
]  # fmt: skip
_DEFAULTS = Options()
_LIMITS = ServerLimits()
# Flags of `longpoll serve` for the fields of `ServerLimits`.
_LIMIT_FLAGS = [
    ("--max-url-bytes", "max_url_bytes", int, "N", "longest request URL (414 above it)"),
    ("--max-header-bytes", "max_header_bytes", int, "N", "largest header block (431 above)"),
    ("--max-headers", "max_headers", int, "N", "most header lines in a request (431 above)"),
    ("--head-timeout", "head_timeout_seconds", float, "S",
     "seconds a request head may take to arrive"),
    ("--keep-alive-timeout", "keep_alive_timeout_seconds", float, "S",
     "seconds an idle connection is kept open"),
    ("--max-connections", "max_connections", int, "N",
     "open connections; above it new ones are answered 503 with Retry-After"),
    ("--write-high-water", "write_high_water_bytes", int, "BYTES",
     "unsent answer bytes a connection may hold before it is cut (a client not reading)"),
    ("--grace", "grace_seconds", float, "S",
     "at shutdown, seconds for requests in flight to finish"),
]  # fmt: skip


def _port(text: str) -> int:
    """A TCP port number, for argparse."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {port}")
    return port


_Flag = tuple[str, dict[str, Any]]
"""A flag (or a positional argument) and what `add_argument` takes besides its name."""


def _flag(name: str, what: str, **options: Any) -> _Flag:
    return name, {"help": what, **options}


class _Command(NamedTuple):
    """A command of `longpoll`: its help, its flags, then its groups of flags by title."""

    summary: str
    description: str
    flags: list[_Flag]
    groups: dict[str, list[_Flag]]


_SUBSCRIBE_PATH = _flag("--subscribe-path", "path of the subscribe endpoint", default="/events")


def _server_flags(endpoint: _Flag) -> list[_Flag]:
    """The flags of a client command that say where the server and `endpoint` are."""
    return [
        _flag("--url", "base URL of the server", default="http://127.0.0.1:8101"),
        endpoint,
        _flag("--token", f"send Authorization: Bearer TOKEN (better: set {_CLIENT_TOKEN_ENV})"),
    ]


_SERVE = _Command(
    "run a long-polling server",
    "Run a long-polling server: subscribe with GET, publish with POST.",
    [
        _flag("--host", "address to listen on", default="127.0.0.1"),
        _flag("--port", "port (0: any free one)", type=_port, default=8101),
        _SUBSCRIBE_PATH,
        _flag(
            "--stream-path",
            "path that answers every subscribe with a Server-Sent Events stream (the "
            "subscribe path streams to requests that accept text/event-stream); off: none",
            default="off",
        ),
        _flag(
            "--heartbeat",
            "seconds between the comments that keep an idle stream open through proxies",
            type=float,
            default=15.0,
            metavar="S",
        ),
        _flag(
            "--publish-path",
            "path of the publish endpoint; off: no publishing over HTTP",
            default="/publish",
        ),
        *(
            _flag(flag, f"path of {what}; off: none", default=path)
            for flag, path, what in _OPERATIONS_PATHS
        ),
        _flag(
            "--max-buffer",
            "events kept per category; the oldest is dropped first",
            type=int,
            default=_DEFAULTS.max_event_buffer_size,
        ),
        _flag("--ttl", "seconds an event is kept (default: until the buffer is full)", type=float),
        _flag(
            "--max-timeout",
            "largest timeout (seconds) a subscriber may ask for",
            type=int,
            default=_DEFAULTS.max_longpoll_timeout_seconds,
        ),
        _flag(
            "--delete-after-first",
            "delete each event once a subscriber has received it",
            action="store_true",
        ),
        _flag(
            "--max-body",
            "largest publish request body in bytes",
            type=int,
            default=_DEFAULTS.max_publish_body_bytes,
        ),
        _flag(
            "--max-categories",
            "most categories one subscribe request may name",
            type=int,
            default=_DEFAULTS.max_categories_per_request,
        ),
        _flag(
            "--persist",
            "keep events in FILE, one JSON event a line as golongpoll's file add-on "
            "writes them, and load them back on start",
            metavar="FILE",
        ),
        _flag(
            "--fsync",
            "with --persist: acknowledge a publish only once its event is on disk",
            action="store_true",
        ),
        _flag(
            "--flush-period",
            "with --persist: write new events to FILE at least every S seconds (default: 1)",
            type=float,
            default=argparse.SUPPRESS,
            metavar="S",
        ),
        _flag(
            "--compact",
            "with --persist: on start, rewrite FILE with only the events still kept",
            action="store_true",
        ),
        _flag(
            "--redis",
            "keep events in Redis (e.g. redis://127.0.0.1:6379/0) instead of in memory, "
            "so that several workers and machines serve one event history",
            metavar="URL",
        ),
        _flag("--redis-prefix", "with --redis: prefix of every Redis key", default="longpoll"),
        _flag(
            "--workers",
            "server processes sharing the port (above 1 needs --redis)",
            type=int,
            default=1,
        ),
        _flag(
            "--access-log",
            "log one line per answer: client, method, path (no query), status, body "
            "bytes, time taken (a subscribe that waited for events says so)",
            action="store_true",
        ),
        _flag(
            "--log-level",
            "logging level",
            default="info",
            choices=["debug", "info", "warning", "error"],
        ),
    ],
    {
        "access control (see the README's Security section)": [
            _flag(
                "--cors-origin",
                "a web origin (https://app.example) whose pages may subscribe and publish; "
                "repeat for more; * lets every origin subscribe, never publish. Pages of "
                "other origins are refused with 403",
                action="append",
                default=[],
                metavar="ORIGIN",
            ),
            _flag(
                "--publish-token",
                "publishing needs Authorization: Bearer TOKEN (better: set "
                f"{_PUBLISH_TOKEN_ENV}, which the process list does not show)",
                metavar="TOKEN",
            ),
            _flag(
                "--subscribe-secret",
                "subscribing needs a token signed with SECRET (see longpoll token) that "
                f"grants the categories (better: set {_SUBSCRIBE_SECRET_ENV})",
                metavar="SECRET",
            ),
            _flag(
                "--operations-token",
                "the stats, metrics, health and readiness endpoints need Authorization: "
                f"Bearer TOKEN (better: set {_OPERATIONS_TOKEN_ENV})",
                metavar="TOKEN",
            ),
            _flag(
                "--authorize",
                "your own hook authorize(request, action, categories) -> bool, sync or "
                "async, imported from MODULE",
                metavar="MODULE:NAME",
            ),
        ],
        "limits of the store and per client address": [
            _flag(
                "--max-buffered-bytes",
                "event bytes kept in all categories together, the oldest dropped first "
                f"(default: {_DEFAULT_BUFFERED_BYTES} with the memory backend; Redis has "
                "maxmemory)",
                type=int,
                metavar="BYTES",
            ),
            _flag(
                "--max-stored-categories",
                "categories kept at once; publishing to a new one beyond it answers 507 "
                "(categories empty out with --ttl; default: no bound)",
                type=int,
                metavar="N",
            ),
            _flag(
                "--publish-rate",
                "publishes per second one client address may make (429 above; default: no bound)",
                type=float,
                metavar="N",
            ),
            _flag(
                "--publish-burst",
                "with --publish-rate: publishes one client may make at once",
                type=int,
                default=ClientLimits().publish_burst,
                metavar="N",
            ),
            _flag(
                "--max-waiting-per-client",
                "subscribes of one client address that may wait at once (429 above; "
                "default: no bound)",
                type=int,
                metavar="N",
            ),
        ],
        "connection limits": [
            *(
                _flag(
                    flag,
                    what,
                    dest=field,
                    type=kind,
                    default=getattr(_LIMITS, field),
                    metavar=metavar,
                )
                for flag, field, kind, metavar, what in _LIMIT_FLAGS
            ),
            _flag(
                "--body-timeout",
                "seconds a request body may take to arrive (408 after)",
                type=float,
                default=30.0,
                metavar="S",
            ),
        ],
    },
)
_TOKEN = _Command(
    "print a subscribe token for categories",
    "Print a signed token (JWT, HS256) that lets its holder subscribe to the categories, "
    "for a server started with --subscribe-secret.",
    [
        _flag(
            "--secret-env",
            "environment variable holding the secret",
            default=_SUBSCRIBE_SECRET_ENV,
            metavar="VAR",
        ),
        _flag(
            "--category",
            "a category the token grants, or PREFIX* for every category starting with "
            "PREFIX; repeat for more",
            action="append",
            required=True,
            metavar="CATEGORY",
        ),
        _flag("--ttl", "seconds it is valid", type=float, default=3600.0, metavar="S"),
    ],
    {},
)
_SUBSCRIBE = _Command(
    "print the events of categories, one JSON object a line",
    "Subscribe to categories on a long-polling server and print each event as one JSON "
    "line with its timestamp, category, data and id. Runs until interrupted; resumes "
    "after the last event printed across timeouts.",
    [
        _flag("categories", "a category", nargs="+", metavar="CATEGORY"),
        _flag(
            "--since",
            "print events published after this time in epoch milliseconds (negative: "
            "everything the server buffers; default: from now on)",
            type=int,
            metavar="MS",
        ),
        _flag(
            "--poll-timeout",
            "how long the server holds each poll",
            type=int,
            default=45,
            metavar="SECONDS",
        ),
        _flag(
            "--retry",
            "when the server is lost or fails, retry with back-off instead of exiting",
            action="store_true",
        ),
        _flag(
            "--sse",
            "receive the events over one Server-Sent Events stream instead of polls "
            "(--poll-timeout is not used; the server must stream, as longpoll serve does)",
            action="store_true",
        ),
        *_server_flags(_SUBSCRIBE_PATH),
    ],
    {},
)
_PUBLISH = _Command(
    "publish an event",
    "Publish an event on a long-polling server and print its id and timestamp.",
    [
        _flag("category", "the category to publish on"),
        _flag("data", "the event's data: JSON, else taken as a string; - reads standard input"),
        _flag(
            "--attempts",
            "how many times to send the event (always with the same id, so it is stored "
            "once) when the server cannot be reached or answers 408, 429, 502, 503 or 504",
            type=int,
            default=5,
            metavar="N",
        ),
        *_server_flags(_flag("--publish-path", "path of the publish endpoint", default="/publish")),
    ],
    {},
)
_COMMANDS = {"serve": _SERVE, "token": _TOKEN, "subscribe": _SUBSCRIBE, "publish": _PUBLISH}


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Names a flag's default in its help, unless there is none to name or the help does."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or "default:" in text:
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Reports a bad flag on one line, pointing to --help."""

    commands: dict[str, argparse.ArgumentParser]
    """The parser of each command, which errors of that command name."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> _Parser:
    parser = _Parser(prog="longpoll", description="Web publish/subscribe over HTTP long polling.")
    parser.add_argument("--version", action="version", version=f"longpoll {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    parser.commands = {}
    for name, command in _COMMANDS.items():
        sub = commands.add_parser(
            name, help=command.summary, description=command.description, formatter_class=_Help
        )
        for flag, options in command.flags:
            sub.add_argument(flag, **options)
        for title, flags in command.groups.items():
            group = sub.add_argument_group(title)
            for flag, options in flags:
                group.add_argument(flag, **options)
        parser.commands[name] = sub
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `longpoll` command."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    command = parser.commands[args.command]
    if unknown:
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "serve":
        return _serve(command, args)
    if args.command == "token":
        return _token(command, args)
    return _run_client(command, args)


def _serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from longpoll.server import bind_socket

    path_flags = [flag for flag, _ in _SERVE.flags if flag.endswith("-path")]
    for flag in path_flags:
        name = flag.removeprefix("--").replace("-", "_")
        path = getattr(args, name)
        if path == "off" and flag != "--subscribe-path":
            setattr(args, name, None)
        elif not path.startswith("/"):
            parser.error(f"{flag} must start with '/'")
    for name, variable in (
        ("publish_token", _PUBLISH_TOKEN_ENV),
        ("subscribe_secret", _SUBSCRIBE_SECRET_ENV),
        ("operations_token", _OPERATIONS_TOKEN_ENV),
    ):
        if getattr(args, name) is None:
            setattr(args, name, os.environ.get(variable) or None)
    if args.authorize is not None:
        _load_hook(parser, args.authorize)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.workers > 1 and args.redis is None:
        parser.error(
            "--workers above 1 needs --redis: with the memory backend each worker would "
            "keep its own events, and a subscriber would miss those published to another"
        )
    if args.redis is not None and args.persist is not None:
        parser.error("--persist is for the memory backend: with --redis, Redis keeps the events")
    if args.redis is not None:
        for flag in ("--max-buffered-bytes", "--max-stored-categories"):
            if getattr(args, flag.removeprefix("--").replace("-", "_")) is not None:
                parser.error(f"{flag} is for the memory backend: bound Redis with maxmemory")
    elif args.max_buffered_bytes is None:
        args.max_buffered_bytes = _DEFAULT_BUFFERED_BYTES
    addon = _persistor(parser, args)
    try:
        app = _build_app(args, addon)
        _limits(args)
    except ValueError as exc:
        parser.error(_flag_names(str(exc)))

    _configure_logging(args)
    _warn_if_open(args)
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        reason = exc.strerror or exc
        print(f"longpoll: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1
    try:
        if args.workers == 1:
            return _run_server(app, sock, args)
        # Checked once here rather than failing in every worker.
        unreachable = _redis_reachable(args.redis)
        if unreachable is not None:
            print(f"longpoll: the server could not run: {unreachable}", file=sys.stderr)
            return 1
        return _run_workers(args, sock)
    finally:
        sock.close()


def _build_app(args: argparse.Namespace, addon: AddOn | None) -> LongpollApp:
    """The app that `longpoll serve` runs, from its flags; raises ValueError for bad ones."""
    from longpoll.access import AccessPolicy
    from longpoll.asgi import LongpollApp
    from longpoll.backends import MemoryBackend
    from longpoll.manager import LongpollManager

    options = Options(
        max_longpoll_timeout_seconds=args.max_timeout,
        max_event_buffer_size=args.max_buffer,
        event_ttl_seconds=args.ttl,
        delete_event_after_first_retrieval=args.delete_after_first,
        max_publish_body_bytes=args.max_body,
        max_categories_per_request=args.max_categories,
        max_buffered_bytes=args.max_buffered_bytes,
        max_stored_categories=args.max_stored_categories,
    )
    backend: Backend = MemoryBackend()
    if args.redis is not None:
        backend = _redis_backend(args)
    access = AccessPolicy(
        cors_origins=args.cors_origin,
        publish_token=args.publish_token,
        subscribe_secret=args.subscribe_secret,
        authorize=None if args.authorize is None else _load_hook(None, args.authorize),
        operations_token=args.operations_token,
    )
    return LongpollApp(
        LongpollManager(options, backend=backend, addon=addon),
        subscribe_path=args.subscribe_path,
        stream_path=args.stream_path,
        publish_path=args.publish_path,
        stats_path=args.stats_path,
        health_path=args.healthz_path,
        ready_path=args.readyz_path,
        metrics_path=args.metrics_path,
        console_path=args.console_path,
        body_timeout_seconds=args.body_timeout,
        stream_heartbeat_seconds=args.heartbeat,
        access=access,
        client_limits=ClientLimits(
            publish_per_second=args.publish_rate,
            publish_burst=args.publish_burst,
            max_waiting=args.max_waiting_per_client,
        ),
    )


def _redis_backend(args: argparse.Namespace) -> Backend:
    """The backend of --redis; ValueError for a URL it cannot use or a missing extra."""
    scheme, found, _ = args.redis.partition("://")
    if not found or scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"--redis must be a URL such as redis://127.0.0.1:6379/0, not {args.redis!r}"
        )
    try:
        from longpoll.backends.redis import RedisBackend
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] not in ("redis", "hiredis"):
            raise
        raise ValueError("--redis needs the redis extra: pip install 'longpoll[redis]'") from None
    return RedisBackend(args.redis, key_prefix=args.redis_prefix)


def _redis_reachable(url: str) -> str | None:
    """Why Redis at `url` cannot be reached now, or None if it answers."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis at {url} is unavailable: {exc}"
    finally:
        client.close()
    return None


def _load_hook(parser: argparse.ArgumentParser | None, target: str) -> Authorize:
    """The `--authorize` hook MODULE:NAME; a usage error (or ValueError) if it cannot be loaded."""
    module_name, _, name = target.partition(":")
    try:
        if not module_name or not name:
            raise ValueError("give it as MODULE:NAME, e.g. myapp.auth:authorize")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"cannot import {module_name}: {exc}") from None
        hook = getattr(module, name, None)
        if not callable(hook):
            raise ValueError(f"{module_name} has no callable named {name}")
    except ValueError as exc:
        if parser is None:
            raise ValueError(f"--authorize {target}: {exc}") from None
        parser.error(f"--authorize {target}: {exc}")
    return cast("Authorize", hook)


def _warn_if_open(args: argparse.Namespace) -> None:
    """Warn when a server other machines can reach lets anyone publish or subscribe."""
    if args.host in ("127.0.0.1", "::1", "localhost"):
        return
    open_to = []
    if args.publish_path is not None and args.publish_token is None and args.authorize is None:
        open_to.append(f"publish (--publish-token or {_PUBLISH_TOKEN_ENV}, or --publish-path off)")
    if args.subscribe_secret is None and args.authorize is None:
        open_to.append(f"subscribe (--subscribe-secret or {_SUBSCRIBE_SECRET_ENV})")
    if open_to:
        logging.getLogger("longpoll.server").warning(
            "listening on %s, which other machines may reach, and anyone may %s; "
            "or use --authorize",
            args.host,
            " and ".join(open_to),
        )


def _token(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from longpoll.tokens import issue

    secret = os.environ.get(args.secret_env)
    if not secret:
        parser.error(f"the environment variable {args.secret_env} (--secret-env) is not set")
    try:
        print(issue(secret, args.category, args.ttl))
    except (ValueError, InvalidRequest) as exc:
        parser.error(str(exc).replace("ttl_seconds", "--ttl").replace("secret", args.secret_env, 1))
    return 0


def _limits(args: argparse.Namespace) -> ServerLimits:
    """The connection limits that the flags ask for; raises ValueError for bad ones."""
    return ServerLimits(**{field: getattr(args, field) for _, field, *_ in _LIMIT_FLAGS})


# The Python names (of Options, ServerLimits, ClientLimits, AccessPolicy) that an
# error message may name, and the flags that set them.
_FIELD_FLAGS = {
    **{field: flag for flag, field, *_ in _LIMIT_FLAGS},
    "max_longpoll_timeout_seconds": "--max-timeout",
    "publish_attempts": "--attempts",
    "max_event_buffer_size": "--max-buffer",
    "event_ttl_seconds": "--ttl",
    "max_publish_body_bytes": "--max-body",
    "max_categories_per_request": "--max-categories",
    "body_timeout_seconds": "--body-timeout",
    "stream_heartbeat_seconds": "--heartbeat",
    "max_buffered_bytes": "--max-buffered-bytes",
    "max_stored_categories": "--max-stored-categories",
    "publish_per_second": "--publish-rate",
    "publish_burst": "--publish-burst",
    "max_waiting": "--max-waiting-per-client",
    "publish_token": f"--publish-token (or {_PUBLISH_TOKEN_ENV})",
    "operations_token": f"--operations-token (or {_OPERATIONS_TOKEN_ENV})",
    "subscribe_secret": f"--subscribe-secret (or {_SUBSCRIBE_SECRET_ENV})",
    # the client commands'
    "poll_timeout_seconds": "--poll-timeout",
    "subscribe_url": "--url",
    "publish_url": "--url",
}


def _flag_names(message: str) -> str:
    """`message` with the Python names of settings replaced by their flags."""
    for field, flag in _FIELD_FLAGS.items():
        message = re.sub(rf"\b{field}\b", flag, message)
    return message


def _configure_logging(args: argparse.Namespace) -> None:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _run_server(app: LongpollApp, sock: socket.socket, args: argparse.Namespace) -> int:
    """Serve until stopped; 0, or 1 after one line on stderr saying why it could not."""
    import uvloop

    try:
        uvloop.run(_serve_until_stopped(app, sock, args))
    except (LongpollError, OSError, ValueError) as exc:
        # What start-up can meet: Redis away, a persistence file that cannot be used.
        logging.getLogger("longpoll.server").debug("the server stopped", exc_info=True)
        print(f"longpoll: the server could not run: {_reason(exc)}", file=sys.stderr)
        return 1
    return 0


def _reason(error: BaseException) -> str:
    """`error` in one line, with the file it names."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    return str(error).splitlines()[0] if str(error) else type(error).__name__


async def _serve_until_stopped(
    app: LongpollApp, sock: socket.socket, args: argparse.Namespace
) -> None:
    from longpoll.server import serve

    parent = multiprocessing.parent_process()
    if parent is not None:
        # A worker stops by itself if its parent dies without passing a SIGTERM on
        # (killed with SIGKILL, say): the parent's sentinel becomes readable then.
        loop = asyncio.get_running_loop()

        def parent_gone() -> None:
            loop.remove_reader(parent.sentinel)
            os.kill(os.getpid(), signal.SIGTERM)

        loop.add_reader(parent.sentinel, parent_gone)
    await serve(app, sock, _limits(args), access_log=args.access_log)


def _run_worker(args: argparse.Namespace, sock: socket.socket) -> None:
    """One of `--workers` server processes (started fresh, so it builds its own app)."""
    # Its own process group: a Ctrl-C in the terminal reaches only the parent,
    # which passes one SIGTERM on, so each worker shuts down gracefully once.
    os.setsid()
    _configure_logging(args)
    sys.exit(_run_server(_build_app(args, addon=None), sock, args))


def _run_workers(args: argparse.Namespace, sock: socket.socket) -> int:
    """Run `--workers` processes on the shared listening socket until SIGINT/SIGTERM."""
    from prometheus_client import multiprocess

    # The workers share their metrics through files in one directory (see longpoll.metrics).
    metrics_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="longpoll-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_run_worker, args=(args, sock), name=f"longpoll-worker-{n}")
        for n in range(args.workers)
    ]
    try:
        for worker in workers:
            worker.start()

        def stop(signum: int, frame: object) -> None:
            for worker in workers:
                if worker.pid is not None and worker.is_alive():
                    os.kill(worker.pid, signal.SIGTERM)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for worker in workers:
            worker.join()
            if worker.pid is not None:
                multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0 if all(worker.exitcode == 0 for worker in workers) else 1


def _persistor(parser: argparse.ArgumentParser, args: argparse.Namespace) -> AddOn | None:
    """The FilePersistor that --persist asks for, or None."""
    if args.persist is None:
        for flag, value in (("--fsync", args.fsync), ("--compact", args.compact)):
            if value:
                parser.error(f"{flag} needs --persist")
        if "flush_period" in args:
            parser.error("--flush-period needs --persist")
        return None
    from longpoll.addons.file import FilePersistor

    if not args.persist:
        parser.error("--persist must not be empty")
    path = Path(args.persist)
    if path.is_dir():
        parser.error(f"--persist {path} is a folder: name a file (in it, for instance)")
    if not path.parent.is_dir():
        parser.error(f"--persist {path}: the folder {path.parent} does not exist")
    try:
        return FilePersistor(
            args.persist,
            flush_period_seconds=getattr(args, "flush_period", 1.0),
            fsync=args.fsync,
            compact=args.compact,
        )
    except ValueError as exc:
        message = str(exc).replace("flush_period_seconds", "--flush-period")
        parser.error(message.replace("path", "--persist", 1))


def _run_client(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from longpoll.client import Client

    if not args.url.startswith(("http://", "https://")):
        parser.error(f"--url must be an http:// or https:// URL, not {args.url!r}")
    flag = f"--{args.command}-path"
    path = args.subscribe_path if args.command == "subscribe" else args.publish_path
    if not path.startswith("/"):
        parser.error(f"{flag} must start with '/'")
    url = args.url.rstrip("/") + path
    # The library's warnings (a retry, a gap in the events) go to stderr.
    logging.basicConfig(level=logging.WARNING, format="longpoll: %(message)s")
    retry = args.command == "subscribe" and args.retry
    try:
        client = Client(
            url if args.command == "subscribe" else args.url.rstrip("/") + "/events",
            publish_url=url if args.command == "publish" else None,
            poll_timeout_seconds=getattr(args, "poll_timeout", 45),
            token=args.token or os.environ.get(_CLIENT_TOKEN_ENV) or None,
            # Without --retry, the first failure ends the command.
            on_failure=None if retry else _give_up,
            publish_attempts=getattr(args, "attempts", 5),
        )
    except ValueError as exc:
        parser.error(_flag_names(str(exc)))
    with client:
        try:
            if args.command == "subscribe":
                return _subscribe(client, args)
            return _publish(client, args)
        except InvalidRequest as exc:
            parser.error(str(exc))
        except LongpollError as exc:
            print(f"longpoll: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:
            # The reader went away (`longpoll subscribe c | head -1`): no more output.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except OSError as exc:  # the output cannot be written (a full disk, say)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            print(f"longpoll: cannot write the output: {_reason(exc)}", file=sys.stderr)
            return 1


def _give_up(error: LongpollError) -> bool:
    return False


def _subscribe(client: Client, args: argparse.Namespace) -> int:
    since: Since = "now" if args.since is None else int(args.since)
    out = sys.stdout.buffer
    receive = client.stream if args.sse else client.subscribe
    for event in receive(*args.categories, since=since):
        out.write(orjson.dumps(event.to_dict()) + b"\n")
        out.flush()
    return 0


def _publish(client: Client, args: argparse.Namespace) -> int:
    if args.data == "-":
        text = sys.stdin.read()
        text = text.removesuffix("\n").removesuffix("\r")
    else:
        text = args.data
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        data = text
    published = client.publish(args.category, data)
    receipt = {
        "id": None if published.id is None else str(published.id),
        "timestamp": published.timestamp,
    }
    sys.stdout.buffer.write(orjson.dumps(receipt) + b"\n")
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
