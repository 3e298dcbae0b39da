"""`python -m examples.authentication [--port PORT]`: long polling behind authentication."""

from examples._serve import parser, serve
from examples.authentication import DEFAULT_PORT, make_app
from longpoll import LongpollManager


def main() -> None:
    args = parser("Long polling behind basic auth and a token header.", DEFAULT_PORT).parse_args()
    manager = LongpollManager()
    serve(
        lambda url: make_app(manager),
        manager,
        args.port,
        title="authentication",
        argv_note=[
            "user alice, password wonderland; token let-me-in",
            "publish from Python: python -m examples.authentication.client "
            "--url {url} --user alice --password wonderland 'hello'",
        ],
    )


if __name__ == "__main__":
    main()
