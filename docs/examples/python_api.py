"""Publishing and subscribing from Python, without HTTP: `python -m docs.examples.python_api`."""

import asyncio

from longpoll import LongpollManager, Subscription


async def main() -> None:
    async with LongpollManager() as manager:
        news = Subscription(("news",), timeout_seconds=30)
        waiting = asyncio.create_task(manager.subscribe(news))
        await asyncio.sleep(0.1)  # let the subscriber start waiting
        first = await manager.publish("news", {"title": "hello"})
        print((await waiting).events[0].data)  # {'title': 'hello'}

        # From another thread, publish_threadsafe() hands the event to the loop.
        await asyncio.to_thread(manager.publish_threadsafe, "news", "from a thread")

        # Resume after the first event: everything published since, in order.
        since_first = Subscription(("news",), 1, since_time=first.timestamp, last_id=first.id)
        print([event.data for event in (await manager.subscribe(since_first)).events])


if __name__ == "__main__":
    asyncio.run(main())
