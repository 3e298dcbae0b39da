"""The `longpoll` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from longpoll import __version__
from longpoll.options import Options

_DEFAULTS = Options()


class _Parser(argparse.ArgumentParser):
    """Reports a bad flag on one line, pointing to --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="longpoll",
        description="Web publish/subscribe over HTTP long polling.",
    )
    parser.add_argument("--version", action="version", version=f"longpoll {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser(
        "serve",
        help="run a long-polling server (memory backend)",
        description="Run a long-polling server: subscribe with GET, publish with POST.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8101, help="port (0: any free one)")
    serve.add_argument("--subscribe-path", default="/events", help="path of the subscribe endpoint")
    serve.add_argument("--publish-path", default="/publish", help="path of the publish endpoint")
    serve.add_argument(
        "--max-buffer",
        type=int,
        default=_DEFAULTS.max_event_buffer_size,
        help="events kept per category; the oldest is dropped first",
    )
    serve.add_argument(
        "--ttl",
        type=float,
        default=None,
        help="seconds an event is kept (default: until the buffer is full)",
    )
    serve.add_argument(
        "--max-timeout",
        type=int,
        default=_DEFAULTS.max_longpoll_timeout_seconds,
        help="largest timeout (seconds) a subscriber may ask for",
    )
    serve.add_argument(
        "--delete-after-first",
        action="store_true",
        help="delete each event once a subscriber has received it",
    )
    serve.add_argument(
        "--max-body",
        type=int,
        default=_DEFAULTS.max_publish_body_bytes,
        help="largest publish request body in bytes",
    )
    serve.add_argument(
        "--max-categories",
        type=int,
        default=_DEFAULTS.max_categories_per_request,
        help="most categories one subscribe request may name",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="logging level",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `longpoll` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(parser, args)
    parser.error(f"unknown command {args.command!r}")


def _serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from longpoll.asgi import LongpollApp
    from longpoll.manager import LongpollManager
    from longpoll.server import bind_socket, serve

    try:
        options = Options(
            max_longpoll_timeout_seconds=args.max_timeout,
            max_event_buffer_size=args.max_buffer,
            event_ttl_seconds=args.ttl,
            delete_event_after_first_retrieval=args.delete_after_first,
            max_publish_body_bytes=args.max_body,
            max_categories_per_request=args.max_categories,
        )
    except ValueError as exc:
        parser.error(str(exc))
    paths = {"--subscribe-path": args.subscribe_path, "--publish-path": args.publish_path}
    for flag, path in paths.items():
        if not path.startswith("/"):
            parser.error(f"{flag} must start with '/'")
    if args.subscribe_path == args.publish_path:
        parser.error("--subscribe-path and --publish-path must differ")

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        reason = exc.strerror or exc
        print(f"longpoll: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1
    app = LongpollApp(
        LongpollManager(options),
        subscribe_path=args.subscribe_path,
        publish_path=args.publish_path,
    )
    try:
        import uvloop

        # uvicorn's own start-up chatter only at debug: longpoll logs where it listens.
        uvicorn_level = "debug" if args.log_level == "debug" else "warning"
        uvloop.run(serve(app, sock, log_level=uvicorn_level))
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
