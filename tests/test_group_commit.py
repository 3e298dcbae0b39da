"""GroupCommit: one batch in flight, the next gathering, every caller answered."""

from __future__ import annotations

import asyncio

import pytest

from longpoll.backends._shared import GroupCommit


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

    async def short(items: list[str]) -> list[str | Exception]:
        return list[str | Exception](items[1:])

    miscounted = GroupCommit(short, closed)
    outcomes = await asyncio.gather(*(miscounted.submit(i) for i in "xy"), return_exceptions=True)
    assert [str(outcome) for outcome in outcomes] == ["1 results for 2 items"] * 2


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


async def test_a_caller_cancelled_before_its_batch_went_out_is_not_sent() -> None:
    recorder = Recorder()
    commit = GroupCommit(recorder.run, closed)
    first = await held_in_flight(recorder, commit, "first")
    gone = asyncio.create_task(commit.submit("gone"))
    kept = asyncio.create_task(commit.submit("kept"))
    await asyncio.sleep(0.01)
    gone.cancel()
    recorder.gate.set()
    assert (await first, await kept) == ("FIRST", "KEPT")
    assert recorder.batches == [["first"], ["kept"]]


async def test_aclose_lets_a_batch_finish_then_fails_what_hangs() -> None:
    recorder = Recorder()
    commit = GroupCommit(recorder.run, closed)
    in_flight = await held_in_flight(recorder, commit, "a")
    asyncio.get_running_loop().call_later(0.05, recorder.gate.set)
    await commit.aclose(grace_seconds=5)
    assert await in_flight == "A"

    hanging = GroupCommit(recorder.run, closed)
    hung = await held_in_flight(recorder, hanging, "h")
    queued = asyncio.create_task(hanging.submit("q"))
    await asyncio.sleep(0.01)
    await hanging.aclose(grace_seconds=0.05)
    for task in (hung, queued):
        with pytest.raises(RuntimeError, match="closed"):
            await task
    with pytest.raises(RuntimeError, match="closed"):
        await hanging.submit("late")


async def test_a_flusher_cancelled_before_it_ran_strands_no_caller() -> None:
    # As when a loop shuts down and cancels every task.
    recorder = Recorder()
    commit = GroupCommit(recorder.run, closed)
    stranded = asyncio.create_task(commit.submit("s"))
    await asyncio.sleep(0)  # the item is queued, its batch's task not yet started
    flusher = commit._flusher
    assert flusher is not None and recorder.batches == []
    flusher.cancel()
    await asyncio.sleep(0.01)
    assert await commit.submit("next") == "NEXT"  # a later item is not stuck
    assert await stranded == "S"  # it went out with the later one
