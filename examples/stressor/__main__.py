"""`python -m examples.stressor [--port PORT]`: the page that counts events."""

from examples._serve import parser, serve
from examples.stressor import DEFAULT_PORT, make_app, new_manager


def main() -> None:
    args = parser("A page counting events live, to stress.", DEFAULT_PORT).parse_args()
    manager = new_manager()
    serve(
        lambda url: make_app(manager),
        manager,
        args.port,
        title="stressor",
        argv_note=[
            "then stress it: python -m examples.stressor.publisher --url {url} "
            "--count 1000 --delay-ms 1 --category stress"
        ],
    )


if __name__ == "__main__":
    main()
