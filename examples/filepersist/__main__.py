"""`python -m examples.filepersist [--port PORT] [--file PATH]`: a guestbook kept in a file."""

import os

from examples._serve import parser, serve
from examples.filepersist import DEFAULT_FILE, DEFAULT_PORT, make_app, new_manager


def main() -> None:
    arguments = parser("A guestbook whose entries survive restarts.", DEFAULT_PORT)
    arguments.add_argument(
        "--file", default=DEFAULT_FILE, help=f"where events are kept (default {DEFAULT_FILE})"
    )
    args = arguments.parse_args()
    manager = new_manager(args.file)
    serve(
        lambda url: make_app(manager),
        manager,
        args.port,
        title="filepersist",
        argv_note=[f"events are kept in {os.path.abspath(args.file)}"],
    )


if __name__ == "__main__":
    main()
