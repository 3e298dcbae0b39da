"""The worker side of the SSE stream: subscribers that each hold one stream of server-sent
events (`GET /events` with `Accept: text/event-stream`, from `since_time=-1` on a fresh
category), with the long-poll subscribers' tallies, bitmap and reconnects.

Reading must cost little, as one core takes in 200,000 events a second. A piece of the
body is cut at its last blank line (whole frames only), `\\ndata:` counts its events and
one regular expression finds the `seq` of each event of this run (the publisher's data
starts ``{"run":"<id>","seq":N,"t":T``), and also `t` on every `latency_every`-th
subscriber; the seqs found are kept as they are, with the time of the read, and marked in
the bitmap only when the stream is over (after the generator's CPU is measured): a
second sighting is a duplicate, a seq below one seen is out of order, latency is the
read's time - `t`. Events that are not this run's (or `event: missed` gaps) are counted
as they come. The end event (`seq` = planned) ends the stream.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from bench.conn import Connection
from bench.http import Response
from bench.procs import Channel
from bench.subscribers import Process, Seen, StreamConfig, Subscriber, stream_job

DATA = b"\ndata:"
MISSED = b"event: missed"
EVENT_STREAM = b"text/event-stream"


@functools.cache
def _patterns(run_id: str) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """The seq of each event of the run; and its seq and send time."""
    start = b'"data":{"run":"' + run_id.encode() + b'","seq":(\\d+)'
    return re.compile(start), re.compile(start + rb',"t":(\d+)')


class Reader(Subscriber):
    """A subscriber reading one stream; reconnects resume after the last frame read."""

    __slots__ = ("end", "found", "frames", "pattern", "rest", "sampled")

    def __init__(self, run: Process) -> None:
        super().__init__(run)
        self.sampled = run.made % getattr(run.config.settings, "latency_every", 1) == 0
        run.made += 1
        self.pattern = _patterns(run.config.run_id)[self.sampled]
        self.end = b"%d" % run.config.planned  # the end event's seq
        self.found: list[tuple[int, list[Any]]] = []  # each read's time and seqs (and `t`s)
        self.rest = b""  # a frame begun in the last piece
        self.frames = b""  # the last whole frames read: the position to resume from

    def poll(self) -> None:
        """Open the stream from the current position."""
        config = self.run.config
        self.rest = b""
        self.tally.responses += 1  # streams asked for
        self._resume()
        request = config.server.subscribe(
            config.settings.category, None, self.since, self.last_id, config.token
        )
        if self.conn is None or not self.conn.send(request, self.read):
            self.lost()

    def _resume(self) -> None:
        """Take the position from the last `id:` line read."""
        frames, self.frames = self.frames, b""
        at = frames.rfind(b"\nid: ") + 1
        if not at and not frames.startswith(b"id: "):
            return
        line = frames[at + 4 : frames.find(b"\n", at)]
        since, _, last_id = line.decode("latin-1").partition(":")
        if since.lstrip("-").isdigit():
            self.since, self.last_id = int(since), last_id or None

    def answered(self, conn: Connection, response: Response, now: int) -> None:
        """The stream ended (its rest in `response`), or an answer that is not a stream."""
        if response.status != 200:
            self.finish(f"HTTP {response.status}")
        elif EVENT_STREAM not in response.head:
            self.finish("answer is not an event stream")
        else:
            if response.body:
                self.read(conn, response.body, now)
            if not self.done:
                conn.close()
                self.lost()  # the server ended the stream: resume where it stopped

    def read(self, conn: Connection, piece: bytes, now: int) -> None:
        """Take in a piece of the stream, received at `now`, up to its last whole frame."""
        if self.rest:
            piece = self.rest + piece
        cut = piece.rfind(b"\n\n") + 2
        if cut != len(piece):
            if cut == 1:
                self.rest = piece
                return
            self.rest, piece = piece[cut:], piece[:cut]
        elif self.rest:
            self.rest = b""
        events = piece.count(DATA)
        if not events:
            if b"id: " in piece:  # a position alone: the first of a stream without one
                self.frames = piece
            return
        self.frames = piece
        self.tally.events += events
        found = self.pattern.findall(piece)
        if len(found) != events:
            missed = piece.count(MISSED)
            self.tally.missed_flags += missed
            self.tally.foreign += events - len(found) - missed
            if not found:
                return
        self.found.append((now, found))
        self.run.last_ns = now
        if (found[-1][0] if self.sampled else found[-1]) == self.end:
            self.finish("")

    def result(self) -> Seen:
        """What this subscriber saw (see `Subscriber.result`), once the seqs it kept are
        marked."""
        end = int(self.end)
        for now, found in self.found:
            for seq, sent in found if self.sampled else ((seq, None) for seq in found):
                if int(seq) == end:
                    self.end_seq = end
                else:
                    self.mark(int(seq), None if sent is None else int(sent), now)
        self.found = []
        return super().result()


async def sse_job(config: StreamConfig, channel: Channel) -> None:
    """A process of SSE subscribers: connect, read the streams until the end event or the
    deadline, report."""
    await stream_job(config, channel, Reader)
