"""The sync client: run `longpoll serve`, then `python -m docs.examples.client_sync`."""

import threading

from longpoll.client import Client


def main(url: str = "http://127.0.0.1:8101") -> None:
    with Client(f"{url}/events", publish_url=f"{url}/publish", poll_timeout_seconds=30) as client:
        stream = client.subscribe("chat", since=-1)

        def publish() -> None:
            for text in ["hi", "how are you?", "bye"]:
                client.publish("chat", {"text": text})

        publisher = threading.Thread(target=publish)
        publisher.start()
        for event in stream:  # blocks; stream.stop() from another thread ends it at once
            print(event.data["text"])
            if event.data["text"] == "bye":
                break
        publisher.join()


if __name__ == "__main__":
    main()
