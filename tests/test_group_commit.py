"""GroupCommit: one batch in flight, the next gathering, every caller answered."""

from __future__ import annotations

import asyncio

import pytest

from longpoll.backends._group_commit import GroupCommit


class Recorder:
    """A batch runner that records its batches and can be held in flight."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def run(self, items: list[str]) -> list[str | Exception]:
        self.batches.append(items)
        await self.gate.wait()
        return [ValueError(item) if item.startswith("bad") else item.upper() for item in items]


def closed() -> Exception:
    return RuntimeError("closed")


async def held_in_flight(
    recorder: Recorder, commit: GroupCommit[str, str], item: str
) -> asyncio.Task[str]:
    """Submit `item` with the runner held, once the batch carrying it is in flight."""
    recorder.gate.clear()
    task = asyncio.create_task(commit.submit(item))
    await asyncio.sleep(0.01)
    assert recorder.batches[-1] == [item]
    return task


async def test_items_sent_during_a_batch_go_together_in_the_next() -> None:
    recorder = Recorder()
    commit = GroupCommit(recorder.run, closed)
    first = await held_in_flight(recorder, commit, "a")
    rest = [asyncio.create_task(commit.submit(item)) for item in ("b", "c", "d")]
    await asyncio.sleep(0.01)
    assert recorder.batches == [["a"]]  # still in flight
    recorder.gate.set()
    assert await first == "A"
    assert await asyncio.gather(*rest) == ["B", "C", "D"]
    assert recorder.batches == [["a"], ["b", "c", "d"]]
    # Alone, an item goes out at once.
    assert await commit.submit("e") == "E"
    assert recorder.batches[-1] == ["e"]


async def test_a_failed_item_fails_alone_and_a_failed_batch_fails_all() -> None:
    recorder = Recorder()
    commit = GroupCommit(recorder.run, closed)
    results = await asyncio.gather(
        commit.submit("ok"), commit.submit("bad one"), commit.submit("fine"),
        return_exceptions=True,
    )  # fmt: skip
    assert results[0] == "OK" and results[2] == "FINE"
    assert isinstance(results[1], ValueError)

    async def broken(items: list[str]) -> list[str | Exception]:
        raise ConnectionError("down")

    failing = GroupCommit(broken, closed)
    outcomes = await asyncio.gather(*(failing.submit(i) for i in "xyz"), return_exceptions=True)
    assert [type(outcome) for outcome in outcomes] == [ConnectionError] * 3


async def test_a_cancelled_caller_leaves_the_others_their_results() -> None:
    recorder = Recorder()
    commit = GroupCommit(recorder.run, closed)
    gone = await held_in_flight(recorder, commit, "gone")
    kept = asyncio.create_task(commit.submit("kept"))
    await asyncio.sleep(0.01)
    gone.cancel()
    recorder.gate.set()
    assert await kept == "KEPT"
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_aclose_lets_a_batch_finish_then_fails_what_hangs() -> None:
    recorder = Recorder()
    commit = GroupCommit(recorder.run, closed)
    in_flight = await held_in_flight(recorder, commit, "a")
    asyncio.get_running_loop().call_later(0.05, recorder.gate.set)
    await commit.aclose(grace_seconds=5)
    assert await in_flight == "A"

    hung = await held_in_flight(recorder, commit, "h")
    queued = asyncio.create_task(commit.submit("q"))
    await asyncio.sleep(0.01)
    await commit.aclose(grace_seconds=0.05)
    for task in (hung, queued):
        with pytest.raises(RuntimeError, match="closed"):
            await task
    # Nothing is left running: a new item starts a new batch.
    recorder.gate.set()
    assert await commit.submit("n") == "N"
