"""The async client: run `longpoll serve`, then `python -m docs.examples.client_async`."""

import asyncio

from longpoll.client import AsyncClient


async def main(url: str = "http://127.0.0.1:8101") -> None:
    async with AsyncClient(f"{url}/events", publish_url=f"{url}/publish") as client:
        await client.publish("news", {"title": "hello"})
        await client.publish("weather", "sunny")

        # since=-1: everything the server still buffers, then new events as they come.
        stream = client.subscribe("news", "weather", since=-1)
        async for event in stream:
            print(event.category, event.data)
            if event.category == "weather":
                await stream.aclose()  # or leave the loop, or cancel the task


if __name__ == "__main__":
    asyncio.run(main())
