"""HTTP/1.1 as the harness speaks it: loopback URLs, request bytes, an incremental
response parser and a blocking client. No TLS, redirects or pipelining."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from bench.credentials import NO_CREDENTIALS, Credentials

LOOPBACK = {"localhost": "127.0.0.1", "127.0.0.1": "127.0.0.1", "::1": "::1"}


class HTTPError(Exception):
    """A malformed or truncated response, or a failed request."""


class TargetError(ValueError):
    """A URL the harness will not (or cannot) connect to."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where to connect (`host`, `port`), what to send as `Host`, and the base path."""

    host: str
    port: int
    host_header: str
    base_path: str

    def path(self, suffix: str) -> str:
        """The base path joined with `suffix` (which starts with '/')."""
        return self.base_path.rstrip("/") + suffix

    @property
    def url(self) -> str:
        """The base URL, for reports."""
        return f"http://{self.host_header}{self.base_path.rstrip('/')}"


def parse_target(url: str) -> Target:
    """Parse an ``http://`` URL on a loopback host (never resolved) into a `Target`."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise TargetError(f"{url!r}: only plain http:// URLs are supported")
    if parts.hostname is None:
        raise TargetError(f"{url!r}: no host")
    host = LOOPBACK.get(parts.hostname.lower())
    if host is None:
        raise TargetError(
            f"refusing host {parts.hostname!r}: only loopback addresses "
            "(127.0.0.1, ::1, localhost) may be benchmarked"
        )
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise TargetError(f"{url!r}: bad port ({exc})") from None
    shown = f"[{host}]" if ":" in host else parts.hostname
    base = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(host=host, port=port, host_header=f"{shown}:{port}", base_path=base)


def request(
    target: Target,
    method: str,
    path: str,
    body: bytes = b"",
    token: str | None = None,
    accept: str = "application/json",
) -> bytes:
    """The bytes of one request (a POST carries a JSON `body`), `token` as a Bearer token."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
    if method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    else:
        head += f"Accept: {accept}\r\n"
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n"
    return (head + "\r\n").encode("ascii") + body


ServerPid = int | tuple[int, ...]  # several: a server and what it needs (e.g. redis-server)


@dataclass(frozen=True, slots=True)
class Server:
    """The server under test as a scenario reaches it: `stats` answers its waiting
    subscribers (else the scenario waits `settle` s); `pid`, to read its CPU and memory."""

    target: Target
    events_path: str = "/events"
    publish_path: str = "/publish"
    stats: Target | None = None
    pid: ServerPid | None = None
    credentials: Credentials = NO_CREDENTIALS

    def subscribe(
        self,
        category: str,
        timeout_s: int | None,
        since_time: int | None = None,
        last_id: str | None = None,
        token: str | None = None,
    ) -> bytes:
        """``GET events?category=...&timeout=...``, resuming at `since_time` (and `last_id`);
        `token`: the subscribe token for `category`. Without a timeout, a request for a
        stream of server-sent events (``Accept: text/event-stream``)."""
        query = f"category={quote(category, safe='')}"
        if timeout_s is not None:
            query += f"&timeout={timeout_s}"
        if since_time is not None:
            query += f"&since_time={since_time}"
            if last_id is not None:
                query += f"&last_id={quote(last_id, safe='')}"
        path = f"{self.target.path(self.events_path)}?{query}"
        accept = "application/json" if timeout_s is not None else "text/event-stream"
        return request(self.target, "GET", path, token=token, accept=accept)

    def publish(self, category: str, data: object, compact: bool = False) -> bytes:
        """``POST publish`` of one event with `data` in `category`, with the publish token."""
        separators = (",", ":") if compact else None
        body = json.dumps({"category": category, "data": data}, separators=separators).encode()
        token = self.credentials.publish_token
        return request(self.target, "POST", self.target.path(self.publish_path), body, token)


def _header(head: bytes, key: bytes) -> str | None:
    """The stripped value of `key` (b'\\r\\nname:', lower-case) in a lower-cased head."""
    at = head.find(key)
    if at < 0:
        return None
    start = at + len(key)
    stop = head.find(b"\r\n", start)
    return head[start : stop if stop >= 0 else len(head)].strip().decode("latin-1")


class Response:
    """A complete response; `head` is its status line and headers, lower-cased."""

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
        if not self.head.startswith(b"http/1.1") or "close" in (self.header("connection") or ""):
            return False
        framing = self.header("transfer-encoding") or ""
        return self.header("content-length") is not None or "chunked" in framing

    def header(self, name: str) -> str | None:
        """The value of header `name` (case-insensitive), or None."""
        return _header(self.head, b"\r\n" + name.lower().encode("latin-1") + b":")


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
    return Response(head, data[end + 4 :]) if len(data) - end - 4 == length else None


class ResponseParser:
    """Feed it bytes as they arrive; `feed` returns the `Response` once complete.

    The common case, a whole Content-Length response in one read, costs a few
    bytes-level searches and no per-header objects. With `stream` set, a 200 response
    whose body runs until its last chunk or the close (a stream of server-sent events)
    is `streaming` from its head on: `take` hands over its body as it arrives.
    """

    __slots__ = ("_body", "_buf", "_head", "_remaining", "_state", "stream", "streaming")

    def __init__(self) -> None:
        self._buf = b""
        self.stream = False
        self._reset()

    def _reset(self) -> None:
        self._state = _HEAD
        self._head = b""
        self._remaining = 0
        self._body: list[bytes] = []
        self.streaming = False

    def take(self) -> bytes:
        """The body that came since the last `take` (of a response that is `streaming`)."""
        body, self._body = self._body, []
        return body[0] if len(body) == 1 else b"".join(body)

    def chunks(self, data: bytes) -> bytes | None:
        """The payloads of `data` if it is whole chunks, not the last, of a response that
        is `streaming` and has nothing pending (else None: `feed` it)."""
        if self._buf or self._state != _CHUNK_SIZE:
            return None
        pieces, at = [], 0
        while at < len(data):
            line = data.find(b"\r\n", at)
            try:
                size = int(data[at:line], 16) if line > at else 0
            except ValueError:
                return None
            at = line + 2 + size
            if not size or data[at : at + 2] != b"\r\n":
                return None
            pieces.append(data[line + 2 : at])
            at += 2
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def feed(self, data: bytes) -> Response | None:
        """Add `data`; return the response when its last byte has arrived."""
        if self._state == _HEAD and not self._buf and (fast := _whole_response(data)):
            return fast
        buf, self._buf = self._buf + data if self._buf else data, b""
        while True:
            state = self._state
            if state == _UNTIL_CLOSE:
                self._body.append(buf)
                return None
            if state == _LENGTH:
                need = self._remaining
                if len(buf) < need:
                    self._body.append(buf)
                    self._remaining = need - len(buf)
                    return None
                self._body.append(buf[:need])
                self._buf = buf[need:]
                return self._finish()
            if state == _CHUNK_DATA:
                need = self._remaining + 2
                if len(buf) < need:
                    self._buf = buf
                    return None
                if buf[need - 2 : need] != b"\r\n":
                    raise HTTPError("chunk not followed by CRLF")
                self._body.append(buf[: need - 2])
                buf, self._state = buf[need:], _CHUNK_SIZE
                continue
            end = buf.find(b"\r\n\r\n" if state == _HEAD else b"\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    raise HTTPError("response head too large")
                self._buf = buf
                return None
            if state == _HEAD:
                self._parse_head(buf[:end].lower())
                buf = buf[end + 4 :]
            elif state == _CHUNK_SIZE:
                self._chunk_size(buf[:end])
                buf = buf[end + 2 :]
            else:  # _TRAILER: skip its lines up to the empty one
                buf = buf[end + 2 :]
                if end == 0:
                    self._buf = buf
                    return self._finish()

    def feed_eof(self) -> Response | None:
        """The peer closed: return a close-delimited response, or raise if truncated."""
        if self._state == _UNTIL_CLOSE:
            return self._finish()
        if self._state == _HEAD and not self._buf:
            return None
        raise HTTPError("connection closed mid-response")

    def _parse_head(self, head: bytes) -> None:
        """Read status and framing from a lower-cased head."""
        try:
            status = int(head[9:12]) if head.startswith(b"http/1.") else 0
        except ValueError:
            status = 0
        if status < 100:
            raise HTTPError(f"bad status line {head[:80]!r}")
        if status < 200:
            return  # interim response: the next head follows
        self._head = head
        length = _header(head, b"\r\ncontent-length:")
        if status in (204, 304):
            self._state, self._remaining = _LENGTH, 0
        elif "chunked" in (_header(head, b"\r\ntransfer-encoding:") or ""):
            self._state = _CHUNK_SIZE
        elif length is not None:
            try:
                self._state, self._remaining = _LENGTH, int(length)
            except ValueError:
                raise HTTPError("bad Content-Length") from None
        else:
            self._state = _UNTIL_CLOSE
        self.streaming = self.stream and status == 200 and self._state != _LENGTH

    def _chunk_size(self, line: bytes) -> None:
        text = line.split(b";", 1)[0].strip()
        try:
            size = int(text, 16)
        except ValueError:
            raise HTTPError(f"bad chunk size {text!r}") from None
        self._state, self._remaining = (_CHUNK_DATA, size) if size else (_TRAILER, 0)

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
            while (left := deadline - time.monotonic()) > 0:
                self._sock.settimeout(left)
                data = self._sock.recv(65536)
                if (response := parser.feed(data) if data else parser.feed_eof()) is not None:
                    return response
                if not data:
                    raise HTTPError("connection closed before a response")
        except OSError as exc:
            raise HTTPError(f"request failed: {exc}") from exc
        raise HTTPError("response timed out")

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
