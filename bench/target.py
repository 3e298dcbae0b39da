"""Parse base URLs and refuse anything that is not a loopback address."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


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


_ALLOWED = {"localhost": "127.0.0.1", "127.0.0.1": "127.0.0.1", "::1": "::1"}


def _loopback_ip(hostname: str) -> str:
    """The IP literal to connect to for `hostname`; raise unless it is 127.0.0.1/::1."""
    ip = _ALLOWED.get(hostname.lower())
    if ip is None:
        raise TargetError(
            f"refusing host {hostname!r}: only loopback addresses "
            "(127.0.0.1, ::1, localhost) may be benchmarked"
        )
    return ip  # 'localhost' is mapped here, never resolved


def parse_target(url: str) -> Target:
    """Parse an ``http://`` URL on a loopback host into a `Target`."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise TargetError(f"{url!r}: only plain http:// URLs are supported")
    if parts.hostname is None:
        raise TargetError(f"{url!r}: no host")
    host = _loopback_ip(parts.hostname)
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise TargetError(f"{url!r}: bad port ({exc})") from None
    shown = f"[{host}]" if ":" in host else parts.hostname
    base = parts.path or "/"
    if parts.query:
        base += "?" + parts.query
    return Target(host=host, port=port, host_header=f"{shown}:{port}", base_path=base)
