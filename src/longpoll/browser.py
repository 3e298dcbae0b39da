"""The browser client, `static/longpoll.js`, served from memory with cache validators.

The file is a classic script that defines the global `longpoll`. Its ES module form
is the same text plus an `export` statement (a file with `export` cannot run as a
classic script). `BrowserClientHandler` picks the form: the module when asked for
(`module=True`) or, by default, when the browser fetches the file as a module
script, which it does in CORS mode (`Sec-Fetch-Mode: cors`, `Sec-Fetch-Dest: script`)
where a classic script is fetched in no-cors mode.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import time
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from longpoll._api import READ_METHODS, Request, Response, check_method
from longpoll._http import send_answer
from longpoll.types import Receive, Scope, Send

# What turns the classic script into the ES module.
MODULE_EXPORTS = b"""
export const { newClient, LongpollError } = longpoll;
export default longpoll;
"""

JAVASCRIPT = b"text/javascript; charset=utf-8"


@functools.cache
def _client_script() -> tuple[bytes, float]:
    """The classic script's bytes and modification time, read once."""
    resource = importlib.resources.files("longpoll") / "static" / "longpoll.js"
    body = resource.read_bytes()
    modified = resource.stat().st_mtime if isinstance(resource, Path) else time.time()
    return body, modified


def client_script(*, module: bool = False) -> bytes:
    """The text of `longpoll.js`: the classic script, or with `module` its ES module form."""
    body, _ = _client_script()
    return body + MODULE_EXPORTS if module else body


class StaticFile:
    """ASGI app serving one in-memory file to GET and HEAD.

    The answer carries an `ETag` (a hash of the body) and `Last-Modified`, so a
    request whose `If-None-Match` (or, without one, `If-Modified-Since`) matches gets
    304 with no body. `Cache-Control: no-cache` has browsers revalidate each use.
    """

    def __init__(
        self,
        body: bytes,
        content_type: bytes,
        *,
        last_modified: float | None = None,
        extra_headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self.body = body
        self.etag = b'"%s"' % hashlib.sha256(body).hexdigest()[:32].encode()
        self.last_modified = int(time.time() if last_modified is None else last_modified)
        self._headers = [
            (b"content-type", content_type),
            (b"etag", self.etag),
            (b"last-modified", formatdate(self.last_modified, usegmt=True).encode()),
            (b"cache-control", b"no-cache"),
            (b"x-content-type-options", b"nosniff"),
            *extra_headers,
        ]

    def respond(self, request: Request) -> Response:
        """The answer to `request`: the file, 304, or 405 for a method other than GET/HEAD."""
        check_method(request.method, *READ_METHODS)
        if self._not_modified(request):
            return Response(304, b"", self._headers[1:])
        return Response(200, self.body, self._headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_answer(scope, send, self.respond)

    def _not_modified(self, request: Request) -> bool:
        if_none_match = request.header(b"if-none-match")
        if if_none_match is not None:
            tags = [tag.strip().removeprefix(b"W/") for tag in if_none_match.split(b",")]
            return self.etag in tags or b"*" in tags
        if_modified_since = request.header(b"if-modified-since")
        if if_modified_since is None:
            return False
        try:
            since = parsedate_to_datetime(if_modified_since.decode("latin-1"))
        except (TypeError, ValueError):
            return False
        return since.tzinfo is not None and self.last_modified <= since.timestamp()


class BrowserClientHandler:
    """ASGI app serving the browser client, `longpoll.js`.

    With `module=None` (the default) it answers a module-script fetch with the ES
    module form and any other request with the classic script (and says
    `Vary: Sec-Fetch-Mode, Sec-Fetch-Dest`); `module=True` or False serves one form.
    Browsers send Sec-Fetch-* headers to https and localhost origins only, so a page
    on a plain-http origin elsewhere imports a `module=True` path (`/longpoll.mjs`).
    """

    def __init__(self, *, module: bool | None = None) -> None:
        self.module = module
        _, modified = _client_script()
        vary = () if module is not None else ((b"vary", b"Sec-Fetch-Mode, Sec-Fetch-Dest"),)
        self._classic = StaticFile(
            client_script(), JAVASCRIPT, last_modified=modified, extra_headers=vary
        )
        self._module = StaticFile(
            client_script(module=True), JAVASCRIPT, last_modified=modified, extra_headers=vary
        )

    def respond(self, request: Request) -> Response:
        """The answer to `request`, in the form it asks for (see the class)."""
        module = self.module
        if module is None:
            module = (
                request.header(b"sec-fetch-mode") == b"cors"
                and request.header(b"sec-fetch-dest") == b"script"
            )
        return (self._module if module else self._classic).respond(request)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_answer(scope, send, self.respond)
