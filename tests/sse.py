"""A raw Server-Sent Events reader for the tests: the bytes as the server sent them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Frame:
    """One block of a stream (up to a blank line), its fields in order."""

    raw: bytes
    fields: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        values = [value for key, value in self.fields if key == name]
        return values[-1] if values else None

    @property
    def is_comment(self) -> bool:
        return not self.fields


class RawStream:
    """A stream request on its own connection, read frame by frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunked = False
        self.body = b""  # decoded payload received so far
        self.ended = False  # the body ended cleanly (the last chunk, or EOF when not chunked)
        self._buffer = b""

    async def read_head(self) -> None:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()
        self.chunked = self.headers.get("transfer-encoding") == "chunked"

    async def _more(self) -> bool:
        """Read more of the body into the buffer; False at its end."""
        if self.ended:
            return False
        if self.chunked:
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.strip(), 16)
            data = await self.reader.readexactly(size + 2)
            if size == 0:
                self.ended = True
                return False
            payload = data[:-2]
        else:
            payload = await self.reader.read(65536)
            if not payload:
                self.ended = True
                return False
        self.body += payload
        self._buffer += payload
        return True

    async def frame(self, seconds: float = 10) -> Frame | None:
        """The next frame; None once the stream has ended."""
        async with asyncio.timeout(seconds):
            while b"\n\n" not in self._buffer:
                if not await self._more():
                    return None
        raw, _, self._buffer = self._buffer.partition(b"\n\n")
        frame = Frame(raw + b"\n\n")
        for line in raw.decode("utf-8").split("\n"):
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            frame.fields.append((name, value.removeprefix(" ")))
        return frame

    async def events(self, count: int, seconds: float = 10) -> list[Frame]:
        """The next `count` frames that carry data (comments and bare ids skipped)."""
        frames: list[Frame] = []
        while len(frames) < count:
            frame = await self.frame(seconds)
            assert frame is not None, f"the stream ended after {len(frames)} events"
            if frame.get("data") is not None:
                frames.append(frame)
        return frames

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def open_stream(
    url: str,
    target: str,
    headers: dict[str, str] | None = None,
    version: str = "1.1",
) -> AsyncIterator[RawStream]:
    """GET `target` with `Accept: text/event-stream` on a new connection to `url`."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    lines = [f"GET {target} HTTP/{version}", f"Host: {parts.netloc}"]
    lines.append("Accept: text/event-stream")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    stream = RawStream(reader, writer)
    try:
        await stream.read_head()
        yield stream
    finally:
        await stream.close()
