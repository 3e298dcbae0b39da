"""`python -m examples.authentication.client`: publish a note with credentials.

    python -m examples.authentication.client --user alice --password wonderland 'hi'
    python -m examples.authentication.client --token let-me-in 'hi'
    python -m examples.authentication.client --token let-me-in --listen

With `--listen` it prints every note (the buffered ones first) until interrupted.
Refused credentials end it with status 1 and the server's message.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from examples.authentication import CATEGORY, DEFAULT_PORT, TOKEN_HEADER
from longpoll.client import AsyncClient, ServerError


def make_client(args: argparse.Namespace) -> AsyncClient:
    """A client for the basic-auth or the token endpoints, with the given credentials."""
    if args.token is not None:
        base = f"{args.url}/token"
        return AsyncClient(
            f"{base}/events", publish_url=f"{base}/publish", headers={TOKEN_HEADER: args.token}
        )
    base = f"{args.url}/basic"
    return AsyncClient(
        f"{base}/events", publish_url=f"{base}/publish", basic_auth=(args.user, args.password)
    )


async def run(args: argparse.Namespace) -> int:
    async with make_client(args) as client:
        try:
            if args.text is not None:
                published = await client.publish(CATEGORY, {"text": args.text, "by": "python"})
                print(f"published {published.id}")
            if args.listen:
                async for event in client.subscribe(CATEGORY, since=-1):
                    print(event.data["text"], flush=True)
        except ServerError as error:
            print(f"refused: {error.status} {error.message}", file=sys.stderr)
            return 1
    return 0


def main() -> None:
    arguments = argparse.ArgumentParser(description="Publish or read notes with credentials.")
    arguments.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}")
    arguments.add_argument("--user", default="alice")
    arguments.add_argument("--password", default="")
    arguments.add_argument("--token", help="use the token endpoints with this token")
    arguments.add_argument("--listen", action="store_true", help="print notes as they come")
    arguments.add_argument("text", nargs="?", help="a note to publish")
    args = arguments.parse_args()
    if args.text is None and not args.listen:
        arguments.error("give a note to publish, --listen, or both")
    try:
        sys.exit(asyncio.run(run(args)))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
