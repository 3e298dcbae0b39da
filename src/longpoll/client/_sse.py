"""A Server-Sent Events parser without I/O: bytes in, frames out.

It follows the WHATWG rules for `text/event-stream`: lines end with CRLF, LF or
CR; a blank line ends a frame; a line starting with ":" is a comment; a field
without a colon has an empty value, and one space after the colon is dropped;
`data` lines join with LF; unknown fields are ignored; an unfinished frame at
the end of the stream is discarded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Frame:
    """A finished frame that has data (an event) or at least an `id`."""

    event: str
    """The `event` field, "message" without one."""
    data: str | None
    """The `data` lines joined, None when the frame had none (no event then)."""
    id: str | None
    """The frame's own `id` field, if it had one."""


class SseParser:
    """Turns the bytes of one stream, as they arrive, into frames."""

    def __init__(self) -> None:
        self.retry_milliseconds: int | None = None
        """The last `retry` field: the reconnection delay the server asks of browsers."""
        self._buffer = b""
        self._started = False  # a byte order mark is skipped at the start
        self._skip_lf = False  # the last chunk ended with CR: a LF first is its end
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[Frame]:
        """The frames that `chunk` finishes."""
        if self._skip_lf and chunk:
            self._skip_lf = False
            chunk = chunk.removeprefix(b"\n")
        if not self._started and chunk:
            self._started = True
            chunk = chunk.removeprefix(_BOM)
        buffer = self._buffer + chunk
        frames: list[Frame] = []
        start = 0
        for match in _LINE_END.finditer(buffer):
            frame = self._line(buffer[start : match.start()].decode("utf-8", "replace"))
            if frame is not None:
                frames.append(frame)
            start = match.end()
            self._skip_lf = match.group() == b"\r" and start == len(buffer)
        self._buffer = buffer[start:]
        return frames

    def _line(self, line: str) -> Frame | None:
        if not line:
            return self._dispatch()
        name, colon, value = line.partition(":")
        if not name and colon:
            return None  # a comment
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_milliseconds = int(value)
        return None

    def _dispatch(self) -> Frame | None:
        frame = None
        if self._data or self._id is not None:
            data = "\n".join(self._data) if self._data else None
            frame = Frame(self._event or "message", data, self._id)
        self._event, self._data, self._id = "", [], None
        return frame
