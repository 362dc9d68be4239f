"""Who may talk to the playground: the Host it is asked for, the Origin of what changes state, the frames.

A page on another site must not drive the playground, whether through DNS rebinding (its own name made to
resolve to the playground's address: the browser then sends ``Host: evil.example``), a cross-site request
(``Origin: https://evil.example``), or a frame around the page (clickjacking). So:

- every request must name an allowed host (``AllowedHosts``: the loopback names, the address the server is
  bound to when it is a specific one, and ``DREAMLOOM_WEB_ALLOWED_HOSTS``); the read-only operator paths
  (``/metrics``, ``/healthz``, ``/livez``) also answer an IP literal, which is what Kubernetes probes and
  Prometheus send (``Host: 10.1.2.3:8188``) and what a rebinding page can never send, as it needs a name;
- every state-changing request (POST, PUT, PATCH, DELETE) must come from the playground's own page: an
  ``Origin`` that names the host the request was sent to, and no cross-site ``Sec-Fetch-Site``; a client
  that is not a browser (curl, scripts) sends neither and is let through, as the Host check holds;
- every response forbids framing (``Content-Security-Policy: frame-ancestors 'none'``, ``X-Frame-Options``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

__all__ = ["LOOPBACK_NAMES", "OPERATOR_PATHS", "AllowedHosts", "guard_middlewares", "host_name", "is_ip_literal"]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
OPERATOR_PATHS = frozenset({"/metrics", "/healthz", "/livez"})  # read-only, for probes and Prometheus
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_ANY_ADDRESS = {"", "0.0.0.0", "::"}
_DEFAULT_PORTS = {"http": 80, "https": 443}
SECURITY_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AllowedHosts:
    """The host names the playground answers to: the loopback names, ``bind`` when it is one address (not
    0.0.0.0 or ::), and ``extra`` (``*`` in ``extra``: any name, for a proxy that checks the Host itself)."""

    def __init__(self, bind: str = "127.0.0.1", extra: Iterable[str] = ()) -> None:
        names = set(LOOPBACK_NAMES)
        if bind not in _ANY_ADDRESS:
            names.add(_normalise(bind))
        extra_names = {_normalise(name) for name in extra}
        self.any = "*" in extra_names
        self.names = frozenset(names | (extra_names - {"*"}))

    def allows(self, name: str | None) -> bool:
        return name is not None and (self.any or name in self.names)

    def __repr__(self) -> str:
        return f"AllowedHosts({sorted(self.names) + (['*'] if self.any else [])})"


def guard_middlewares(allowed: AllowedHosts) -> list[Middleware]:
    """The Host check and the Origin check, as aiohttp middlewares, in that order."""

    @web.middleware
    async def allowed_hosts_only(request: web.Request, handler: Handler) -> web.StreamResponse:
        name = host_name(request.headers.get("Host", ""))
        if allowed.allows(name) or (request.path in OPERATOR_PATHS and name is not None and is_ip_literal(name)):
            return await handler(request)
        return _refuse(
            "this playground does not answer to that host name; its operator lists the names it answers to in "
            "DREAMLOOM_WEB_ALLOWED_HOSTS"
        )

    @web.middleware
    async def same_origin_changes_only(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in STATE_CHANGING and not _from_own_page(request):
            return _refuse("requests that change something must come from the playground's own page")
        return await handler(request)

    return [allowed_hosts_only, same_origin_changes_only]


async def add_security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every response, errors and files included, forbids being framed."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def host_name(value: str) -> str | None:
    """The name of a Host header (``Example.com:8188`` -> ``example.com``, ``[::1]:80`` -> ``::1``), or None
    when it is not one."""
    value = value.strip()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
    else:
        name, colon, port = value.partition(":")
        if colon and not port.isdigit():
            return None
    name = _normalise(name)
    if not name or any(c.isspace() or c in "/\\@?#" for c in name):
        return None
    return name


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _from_own_page(request: web.Request) -> bool:
    """No browser says this request came from another site: ``Sec-Fetch-Site`` is not cross-site, and an
    ``Origin`` names the very host (and port) the request was sent to."""
    if request.headers.get("Sec-Fetch-Site", "").lower() in ("cross-site", "same-site"):
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    try:
        parts = urlsplit(origin.strip())
        origin_port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return False
    if parts.scheme not in _DEFAULT_PORTS or parts.hostname is None:
        return False  # "null" (a sandboxed frame, a file), or not a web origin
    host = request.headers.get("Host", "").strip()
    host_port = host.rpartition(":")[2] if not host.endswith("]") and ":" in host else None
    if host_port is not None and not host_port.isdigit():
        return False
    same_name = _normalise(parts.hostname) == host_name(host)
    # A Host without a port is the scheme's default one; behind a TLS proxy the scheme the page used is not the
    # one this server sees, so the port is compared only where both sides name one.
    same_port = (host_port is None and origin_port in _DEFAULT_PORTS.values()) or str(origin_port) == host_port
    return same_name and same_port


def _normalise(name: str) -> str:
    return name.strip().strip("[]").rstrip(".").lower()


def _refuse(message: str) -> web.Response:
    return web.json_response({"title": "Not allowed", "error": message}, status=403)
