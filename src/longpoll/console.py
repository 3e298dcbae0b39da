"""The console: a page for operators, at `/console` of `longpoll serve`.

Plain HTML, CSS and the browser client, served from memory; no build step. The
page is static and harmless by itself: whatever it shows or does goes through the
server's own endpoints and their access control (the stats endpoint for the
categories, a Server-Sent Events stream for the live tail, the publish endpoint
for the form), with tokens typed into the page and kept in the tab's
sessionStorage. Its Content-Security-Policy lets it run only its own scripts and
talk only to its own origin.
"""

from __future__ import annotations

import functools
import html
import importlib.resources

from longpoll._api import CONSOLE_FILES, HttpError, Request, Response
from longpoll._http import send_answer
from longpoll.browser import JAVASCRIPT, StaticFile, client_script
from longpoll.types import Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    b"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page's policy: its own scripts and styles only, and requests to its own origin."""

PAGE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)

_HTML = b"text/html; charset=utf-8"
_CSS = b"text/css; charset=utf-8"


@functools.cache
def _resource(name: str) -> str:
    return (importlib.resources.files("longpoll") / "static" / name).read_text("utf-8")


def console_page(
    path: str,
    *,
    subscribe_path: str,
    publish_path: str | None,
    stats_path: str | None,
    metrics_path: str | None,
) -> str:
    """The console's HTML for a console at `path` and the endpoints' paths (None: off).

    Its files are named relative to the page, and the endpoints' paths are prefixed
    with the page's own mount point by its script, so that it works where an ASGI
    framework mounts the app below a path of its own.
    """
    folder = "" if path.endswith("/") else path.rsplit("/", 1)[1] + "/"
    values = {
        "FILES": folder,
        "CONSOLE": path,
        "SUBSCRIBE": subscribe_path,
        "PUBLISH": publish_path or "",
        "STATS": stats_path or "",
        "METRICS": metrics_path or "",
    }
    page = _resource("console.html")
    for name, value in values.items():
        page = page.replace(f"@{name}@", html.escape(value, quote=True))
    return page


class ConsoleHandler:
    """ASGI app serving the console page at `path` and its files beside it
    (`CONSOLE_FILES`); the other paths name the endpoints the page uses (None:
    that endpoint is off, and the page says so)."""

    def __init__(
        self,
        path: str = "/console",
        *,
        subscribe_path: str = "/events",
        publish_path: str | None = "/publish",
        stats_path: str | None = "/stats",
        metrics_path: str | None = "/metrics",
    ) -> None:
        page = console_page(
            path,
            subscribe_path=subscribe_path,
            publish_path=publish_path,
            stats_path=stats_path,
            metrics_path=metrics_path,
        )
        style, script, client = (path.rstrip("/") + name for name in CONSOLE_FILES)
        self._files = {
            path: StaticFile(page.encode(), _HTML, extra_headers=PAGE_HEADERS),
            style: StaticFile(_resource("console.css").encode(), _CSS),
            script: StaticFile(_resource("console.js").encode(), JAVASCRIPT),
            client: StaticFile(client_script(), JAVASCRIPT),
        }

    def respond(self, request: Request) -> Response:
        """The file at the request's path: GET and HEAD, 304 when unchanged, else 404."""
        file = self._files.get(request.path)
        if file is None:
            raise HttpError(404, f"no such endpoint: {request.path}")
        return file.respond(request)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_answer(scope, send, self.respond)
