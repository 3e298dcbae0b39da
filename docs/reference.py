"""Writes docs/configuration.md from the command line's own parser: `python -m docs.reference`.

A test compares the page with what this makes, so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path

from longpoll import AccessPolicy, LongpollApp, Options
from longpoll.cli import build_parser
from longpoll.limits import ClientLimits
from longpoll.server import ServerLimits

PAGE = Path(__file__).resolve().parent / "configuration.md"

# Flags whose Python counterpart is not a field of the same name (or has none).
_PYTHON = {
    "--host": "`longpoll.server.bind_socket(host, port)`",
    "--port": "`longpoll.server.bind_socket(host, port)`",
    "--subscribe-path": "`LongpollApp(subscribe_path=)`",
    "--publish-path": "`LongpollApp(publish_path=)` (None: off)",
    "--stats-path": "`LongpollApp(stats_path=)`",
    "--healthz-path": "`LongpollApp(health_path=)`",
    "--readyz-path": "`LongpollApp(ready_path=)`",
    "--metrics-path": "`LongpollApp(metrics_path=)`",
    "--max-buffer": "`Options.max_event_buffer_size`",
    "--ttl": "`Options.event_ttl_seconds`",
    "--max-timeout": "`Options.max_longpoll_timeout_seconds`",
    "--delete-after-first": "`Options.delete_event_after_first_retrieval`",
    "--max-body": "`Options.max_publish_body_bytes`",
    "--max-categories": "`Options.max_categories_per_request`",
    "--persist": "`FilePersistor(path)` as `LongpollManager(addon=)`",
    "--fsync": "`FilePersistor(fsync=)`",
    "--flush-period": "`FilePersistor(flush_period_seconds=)`",
    "--compact": "`FilePersistor(compact=)`",
    "--redis": "`RedisBackend(url)` as `LongpollManager(backend=)`",
    "--redis-prefix": "`RedisBackend(key_prefix=)`",
    "--cors-origin": "`AccessPolicy(cors_origins=)`",
    "--authorize": "`AccessPolicy(authorize=)`",
    "--publish-rate": "`ClientLimits.publish_per_second`",
    "--max-waiting-per-client": "`ClientLimits.max_waiting`",
    "--body-timeout": "`LongpollApp(body_timeout_seconds=)`",
    "--access-log": "`longpoll.server.serve(access_log=)`",
    "--token": "`Client(token=)`, `AsyncClient(token=)`",
    "--url": "`Client(subscribe_url, publish_url=)`",
    "--poll-timeout": "`Client(poll_timeout_seconds=)`",
    "--since": "`Client.subscribe(since=)`",
    "--retry": "`Client(on_failure=)`",
    "--category": "`longpoll.tokens.issue(categories=)`",
    "--secret-env": "`longpoll.tokens.issue(secret)`",
}
_ENVIRONMENT = {
    "--publish-token": "`LONGPOLL_PUBLISH_TOKEN`",
    "--subscribe-secret": "`LONGPOLL_SUBSCRIBE_SECRET`",
    "--operations-token": "`LONGPOLL_OPERATIONS_TOKEN`",
    "--token": "`LONGPOLL_TOKEN`",
    "--secret-env": "the variable it names (`LONGPOLL_SUBSCRIBE_SECRET`)",
}
_COMMANDS = {
    "serve": "`longpoll serve`: the server",
    "token": "`longpoll token`: a subscribe token",
    "subscribe": "`longpoll subscribe`: print events",
    "publish": "`longpoll publish`: publish an event",
}


def _python_name(flag: str, dest: str) -> str:
    if flag in _PYTHON:
        return _PYTHON[flag]
    for owner in (Options, ServerLimits, ClientLimits):
        if dest in owner.__dataclass_fields__:
            return f"`{owner.__name__}.{dest}`"
    for call in (AccessPolicy, LongpollApp):
        if dest in inspect.signature(call).parameters:
            return f"`{call.__name__}({dest}=)`"
    return "-"


def _default(action: argparse.Action) -> str:
    if action.default in (None, argparse.SUPPRESS) or action.default == []:
        found = re.search(r"default: ([^;)]*)", action.help or "")
        return found.group(1) if found else "-"
    if action.default is False:
        return "off"
    return f"`{action.default}`"


def _meaning(action: argparse.Action) -> str:
    text = re.sub(r"\s*\(default: [^)]*\)", "", action.help or "")
    return " ".join(text.split()).replace("|", "\\|")


def render() -> str:
    """The whole page."""
    parser = build_parser()
    parts = [
        "# Configuration\n",
        "Every flag of the `longpoll` command, with its environment variable (where it",
        "has one), its counterpart in Python and its default. This page is generated",
        "from the command's own parser by `python -m docs.reference`; a test fails when",
        "they differ.\n",
    ]
    for name, command in parser.commands.items():
        parts.append(f"## {_COMMANDS[name]}\n")
        parts.append("| flag | environment | Python | default | meaning |")
        parts.append("|---|---|---|---|---|")
        for action in command._actions:
            if not action.option_strings or action.dest == "help":
                continue
            flag = action.option_strings[-1]
            environment = _ENVIRONMENT.get(flag, "")
            python = _python_name(flag, action.dest)
            row = (flag, environment, python, _default(action), _meaning(action))
            parts.append("| `{}` | {} | {} | {} | {} |".format(*row))
        parts.append("")
    return "\n".join(parts)


def main() -> None:
    PAGE.write_text(render())
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
