"""`python -m examples.fastapi [--port PORT]`: a FastAPI app with long polling mounted."""

from examples._serve import parser, serve
from examples.fastapi import DEFAULT_PORT, make_app
from longpoll import LongpollManager


def main() -> None:
    args = parser("Long polling beside the routes of a FastAPI app.", DEFAULT_PORT).parse_args()
    app = make_app()
    manager: LongpollManager = app.state.manager
    serve(
        lambda url: app,
        manager,
        args.port,
        title="fastapi",
        argv_note=[
            'API docs: {url}/docs; place an order: curl --json \'{{"item": "tea"}}\' '
            "{url}/api/orders"
        ],
    )


if __name__ == "__main__":
    main()
