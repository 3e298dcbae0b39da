"""`python -m examples.microchat [--port PORT]`: serve the chat rooms."""

from examples._serve import parser, serve
from examples.microchat import DEFAULT_PORT, make_app, new_manager


def main() -> None:
    args = parser("Chat rooms over long polling.", DEFAULT_PORT).parse_args()
    manager = new_manager()
    serve(lambda url: make_app(manager), manager, args.port, title="microchat")


if __name__ == "__main__":
    main()
