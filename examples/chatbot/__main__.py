"""`python -m examples.chatbot [--port PORT]`: chat with a bot in the browser."""

from examples._serve import parser, serve
from examples.chatbot import DEFAULT_PORT, make_app
from longpoll import LongpollManager


def main() -> None:
    args = parser("A page that chats with a bot over long polling.", DEFAULT_PORT).parse_args()
    manager = LongpollManager()
    serve(lambda url: make_app(manager, url), manager, args.port, title="chatbot")


if __name__ == "__main__":
    main()
