"""Minimal HTTP/1.1: request bytes, an incremental response parser, a blocking client.

Only what the harness needs: no redirects, no TLS, no compression, one request in
flight per connection (keep-alive, no pipelining).
"""

from __future__ import annotations

import socket
import time
from urllib.parse import quote

from bench.target import Target


class HTTPError(Exception):
    """A malformed or truncated response, or a failed request."""


class Response:
    """A complete response; `head` is its status line and headers, lower-cased.

    Status and keep-alive are read from `head` on demand, outside the timed path.
    """

    __slots__ = ("body", "head")

    def __init__(self, head: bytes, body: bytes) -> None:
        self.head = head
        self.body = body

    @property
    def status(self) -> int:
        """The status code."""
        return int(self.head[9:12])

    @property
    def keep_alive(self) -> bool:
        """True when the connection may carry another request."""
        if not self.head.startswith(b"http/1.1"):
            return False
        if "close" in (self.header("connection") or ""):
            return False
        return self.header("content-length") is not None or "chunked" in (
            self.header("transfer-encoding") or ""
        )

    def header(self, name: str) -> str | None:
        """The value of header `name` (case-insensitive), or None."""
        return _header(self.head, b"\r\n" + name.lower().encode("latin-1") + b":")


def _header(head: bytes, key: bytes) -> str | None:
    """Find `key` (b'\\r\\nname:', lower-case) in a lower-cased head; its stripped value."""
    at = head.find(key)
    if at < 0:
        return None
    start = at + len(key)
    stop = head.find(b"\r\n", start)
    return head[start : stop if stop >= 0 else len(head)].strip().decode("latin-1")


def subscribe_request(
    target: Target,
    path: str,
    category: str,
    timeout_s: int,
    since_time: int | None = None,
    last_id: str | None = None,
    token: str | None = None,
) -> bytes:
    """The bytes of ``GET path?category=...&timeout=...`` on a keep-alive connection.

    `since_time` and `last_id` are added when given (a resume position); `token`, as
    `Authorization: Bearer`.
    """
    query = f"category={quote(category, safe='')}&timeout={timeout_s}"
    if since_time is not None:
        query += f"&since_time={since_time}"
        if last_id is not None:
            query += f"&last_id={quote(last_id, safe='')}"
    return (
        f"GET {target.path(path)}?{query} HTTP/1.1\r\n"
        f"Host: {target.host_header}\r\n"
        "Accept: application/json\r\n"
        f"{_authorization(token)}"
        "\r\n"
    ).encode("ascii")


def _authorization(token: str | None) -> str:
    """The `Authorization: Bearer` header line for `token`, or '' without one."""
    return "" if token is None else f"Authorization: Bearer {token}\r\n"


def get_request(target: Target, path_and_query: str) -> bytes:
    """The bytes of a plain ``GET`` for `path_and_query`."""
    return (
        f"GET {path_and_query} HTTP/1.1\r\n"
        f"Host: {target.host_header}\r\n"
        "Accept: application/json\r\n"
        "\r\n"
    ).encode("ascii")


def post_json_request(target: Target, path: str, body: bytes, token: str | None = None) -> bytes:
    """The bytes of ``POST path`` with a JSON `body`; `token` as `Authorization: Bearer`."""
    head = (
        f"POST {target.path(path)} HTTP/1.1\r\n"
        f"Host: {target.host_header}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{_authorization(token)}"
        "\r\n"
    ).encode("ascii")
    return head + body


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILER, _UNTIL_CLOSE = range(6)
_MAX_HEAD = 64 * 1024


def _whole_response(data: bytes) -> Response | None:
    """`data` parsed if it is exactly one final Content-Length response, else None."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = data[:end].lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0 or not head.startswith(b"http/1.") or head[9:10] == b"1":
        return None
    stop = head.find(b"\r\n", at + 17)
    try:
        length = int(head[at + 17 : stop if stop >= 0 else end])
    except ValueError:
        return None
    if len(data) - end - 4 != length:
        return None
    return Response(head, data[end + 4 :])


class ResponseParser:
    """Feed it bytes as they arrive; `feed` returns the `Response` once complete.

    The common case, a whole Content-Length response in one read, costs a few
    bytes-level searches and no per-header objects.
    """

    __slots__ = ("_body", "_buf", "_head", "_remaining", "_state")

    def __init__(self) -> None:
        self._buf = b""
        self._reset()

    def _reset(self) -> None:
        self._state = _HEAD
        self._head = b""
        self._remaining = 0
        self._body: list[bytes] = []

    def feed(self, data: bytes) -> Response | None:
        """Add `data`; return the response when its last byte has arrived."""
        if self._state == _HEAD and not self._buf:
            fast = _whole_response(data)
            if fast is not None:
                return fast
        buf = self._buf + data if self._buf else data
        self._buf = b""
        while True:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        raise HTTPError("response head too large")
                    self._buf = buf
                    return None
                self._parse_head(buf[:end].lower())
                buf = buf[end + 4 :]
            elif state == _LENGTH:
                need = self._remaining
                if len(buf) < need:
                    self._body.append(buf)
                    self._remaining = need - len(buf)
                    return None
                self._body.append(buf[:need])
                self._buf = buf[need:]
                return self._finish()
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    self._buf = buf
                    return None
                self._chunk_size(buf[:end])
                buf = buf[end + 2 :]
            elif state == _CHUNK_DATA:
                need = self._remaining + 2
                if len(buf) < need:
                    self._buf = buf
                    return None
                if buf[need - 2 : need] != b"\r\n":
                    raise HTTPError("chunk not followed by CRLF")
                self._body.append(buf[: need - 2])
                buf = buf[need:]
                self._state = _CHUNK_SIZE
            elif state == _TRAILER:
                end = buf.find(b"\r\n")
                if end < 0:
                    self._buf = buf
                    return None
                buf = buf[end + 2 :]
                if end == 0:
                    self._buf = buf
                    return self._finish()
            else:  # _UNTIL_CLOSE
                self._body.append(buf)
                return None

    def feed_eof(self) -> Response | None:
        """The peer closed: return a close-delimited response, or raise if truncated."""
        if self._state == _UNTIL_CLOSE:
            return self._finish()
        if self._state == _HEAD and not self._buf:
            return None
        raise HTTPError("connection closed mid-response")

    def _parse_head(self, head: bytes) -> None:
        """Read status and framing from a lower-cased head."""
        if not head.startswith(b"http/1.") or len(head) < 12:
            raise HTTPError(f"bad status line {head[:80]!r}")
        try:
            status = int(head[9:12])
        except ValueError:
            raise HTTPError(f"bad status line {head[:80]!r}") from None
        if 100 <= status < 200:
            return  # interim response: the next head follows
        self._head = head
        length = _header(head, b"\r\ncontent-length:")
        if status in (204, 304):
            self._state, self._remaining = _LENGTH, 0
        elif "chunked" in (_header(head, b"\r\ntransfer-encoding:") or ""):
            self._state = _CHUNK_SIZE
        elif length is not None:
            try:
                self._remaining = int(length)
            except ValueError:
                raise HTTPError("bad Content-Length") from None
            self._state = _LENGTH
        else:
            self._state = _UNTIL_CLOSE

    def _chunk_size(self, line: bytes) -> None:
        text = line.split(b";", 1)[0].strip()
        try:
            size = int(text, 16)
        except ValueError:
            raise HTTPError(f"bad chunk size {text!r}") from None
        if size == 0:
            self._state = _TRAILER
        else:
            self._remaining = size
            self._state = _CHUNK_DATA

    def _finish(self) -> Response:
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        response = Response(self._head, body)
        self._reset()
        return response


class BlockingConnection:
    """One blocking keep-alive connection for the coordinator (publish, stats)."""

    def __init__(self, target: Target, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        try:
            self._sock = socket.create_connection((target.host, target.port), timeout_s)
        except OSError as exc:
            raise HTTPError(f"connect to {target.url}: {exc}") from exc
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(self, raw: bytes) -> Response:
        """Send `raw` and wait (bounded by the timeout) for the whole response."""
        deadline = time.monotonic() + self._timeout_s
        parser = ResponseParser()
        try:
            self._sock.sendall(raw)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HTTPError("response timed out")
                self._sock.settimeout(left)
                data = self._sock.recv(65536)
                response = parser.feed_eof() if not data else parser.feed(data)
                if response is not None:
                    return response
                if not data:
                    raise HTTPError("connection closed before a response")
        except OSError as exc:
            raise HTTPError(f"request failed: {exc}") from exc

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()


def fetch(target: Target, raw: bytes, timeout_s: float) -> Response:
    """Open a connection, send `raw`, return the response, close."""
    conn = BlockingConnection(target, timeout_s)
    try:
        return conn.request(raw)
    finally:
        conn.close()
