"""Downloading a URL that a member gave, without letting the member reach what the worker can reach.

A worker sits inside the operator's network: next to Redis, the object store, the cloud's metadata service.
A URL in a prompt is fetched only when every step is safe:

1. the scheme is http or https, with no user name or password, on port 80 or 443 (or a port the operator
   named for that host);
2. the host is on the operator's list (by default Discord's CDN hosts, ``DISCORD_CDN_HOSTS``), or the
   operator allows any public host;
3. the host resolves only to public addresses: loopback, private, link-local, multicast, unspecified,
   reserved, shared and cloud-metadata addresses are refused, IPv4 and IPv6 alike (an IPv4 address
   inside IPv6 - mapped, 6to4, NAT64 - counts as that IPv4 address). Networks the operator trusts
   (``trusted_networks``) are exempt, except the metadata addresses, which are never fetched;
4. the connection goes to the address that was checked (no second lookup between the check and the
   connection, so a DNS answer cannot change in between), while the request and TLS still name the host;
5. a redirect is a new URL and goes through all of the above again, at most ``max_redirects`` times;
6. the whole download - lookup, connection, headers and body - has one deadline and one byte budget: a
   server that sends a byte every few seconds is cut off at the deadline, not after each read.

Every refusal raises ``FetchRefused`` whose message is the real reason, for the operator's log. Members
must not be told it (it says what listens where): ``tasks.fetch`` gives them one generic line.

    policy = FetchPolicy(hosts=("cdn.discordapp.com", "images.example.com:8443"))
    download = fetch("https://cdn.discordapp.com/attachments/1/2/cat.png", policy)
    download.data, download.url, download.content_type
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

__all__ = [
    "DISCORD_CDN_HOSTS",
    "METADATA_ADDRESSES",
    "Download",
    "FetchPolicy",
    "FetchRefused",
    "IPAddress",
    "address_refusal",
    "fetch",
    "system_resolve",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], Sequence[IPAddress]]

DISCORD_CDN_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")
DEFAULT_PORTS = {"http": 80, "https": 443}
ALLOWED_PORTS = frozenset(DEFAULT_PORTS.values())
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024

# Cloud metadata and host services: never fetched, even from a network the operator trusts.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean ... (IMDS)
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS DNS
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "168.63.129.16",  # Azure WireServer (a public address)
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class FetchRefused(Exception):
    """The URL was not fetched, or its download was cut off; the message is the reason, for the log only."""


@dataclass(frozen=True)
class Download:
    url: str  # after redirects
    data: bytes
    content_type: str


def system_resolve(host: str) -> list[IPAddress]:
    """Every address ``host`` resolves to (a numeric host, in any form ``inet_aton`` takes, to itself)."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


@dataclass(frozen=True)
class FetchPolicy:
    """Where image prompts may come from, and how much of a worker one download may take."""

    # Hosts a URL may name: "name", "name:port" (that port too), "*.domain" (its subdomains).
    hosts: tuple[str, ...] = DISCORD_CDN_HOSTS
    any_public_host: bool = False  # any host on a public address
    ports: frozenset[int] = ALLOWED_PORTS  # the ports every allowed host may be reached on
    trusted_networks: tuple[IPNetwork, ...] = ()  # private networks the operator allows (not metadata)
    deadline_seconds: float = 15.0  # the whole download
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 3
    resolve: Resolver = field(default=system_resolve, compare=False)
    tls: ssl.SSLContext | None = field(default=None, compare=False)  # None: the system's trusted CAs
    user_agent: str = "dreamloom (image prompt)"

    def __post_init__(self) -> None:
        for entry in self.hosts:
            try:
                _host_entry(entry)
            except ValueError:
                raise ValueError(f"{entry!r} is not a host, host:port or *.domain") from None

    def host_refusal(self, host: str, port: int) -> str | None:
        """Why a URL may not name ``host`` on ``port``, or None."""
        host = host.lower().rstrip(".")
        for name, entry_port in map(_host_entry, self.hosts):
            named = host == name or (name.startswith("*.") and host.endswith(name[1:]))
            if named and (port in self.ports or port == entry_port):
                return None
        if self.any_public_host and port in self.ports:
            return None
        if port not in self.ports:
            return f"port {port} is not allowed for {host}"
        return f"host {host} is not on the allowed list"

    def address_refusal(self, address: IPAddress) -> str | None:
        return address_refusal(address, self.trusted_networks)


def _host_entry(entry: str) -> tuple[str, int | None]:
    """An allowed host as (name, port): "name" and a bare IPv6 address have no port; "name:port" and
    "[v6]:port" have one."""
    entry = entry.strip().lower()
    if entry.startswith("["):
        name, _, port = entry[1:].partition("]")
        return name, int(port[1:]) if port.startswith(":") else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        return name.rstrip("."), int(port)
    return entry.rstrip("."), None


def _unwrapped(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64), else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if int(address) >> 32 == 0 and int(address) > 1:  # deprecated "IPv4-compatible" ::a.b.c.d
            return ipaddress.IPv4Address(int(address))
    return address


def address_refusal(address: IPAddress, trusted: Sequence[IPNetwork] = ()) -> str | None:
    """Why a connection to ``address`` is refused (loopback, private ...), or None for a public address."""
    address = _unwrapped(address)
    if address in METADATA_ADDRESSES:
        return f"{address} is a cloud metadata address"
    if any(address.version == net.version and address in net for net in trusted):
        return None
    embedded = []
    if isinstance(address, ipaddress.IPv6Address):
        if address.sixtofour is not None:
            embedded.append(address.sixtofour)
        if address.teredo is not None:
            embedded.append(address.teredo[1])
    for kind, check in (
        ("a loopback", "is_loopback"),
        ("the unspecified", "is_unspecified"),
        ("a link-local", "is_link_local"),
        ("a multicast", "is_multicast"),
        ("a reserved", "is_reserved"),
        ("a private", "is_private"),
        ("a site-local", "is_site_local"),
    ):
        if getattr(address, check, False):
            return f"{address} is {kind} address"
    if not address.is_global:
        return f"{address} is not a public address"
    for inner in embedded:
        if (reason := address_refusal(inner, trusted)) is not None:
            return f"{address} carries {inner}: {reason}"
    return None


_resolvers: tuple[int, ThreadPoolExecutor] | None = None


def _lookups() -> ThreadPoolExecutor:
    """This process's lookup threads, so a lookup can be given up at the deadline (a forked child starts
    its own: threads do not survive a fork)."""
    global _resolvers
    if _resolvers is None or _resolvers[0] != os.getpid():
        _resolvers = (os.getpid(), ThreadPoolExecutor(4, thread_name_prefix="dreamloom-resolve"))
    return _resolvers[1]


class _Deadline:
    """One deadline for a whole download: at the deadline, the sockets it watches are shut down, which ends
    any read that is still waiting (a per-read timeout would let a trickling server go on for ever)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0 or self.expired:
            raise FetchRefused(f"the download took longer than {self.seconds:g} s")
        return left

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to a checked address; the request still names the URL's host."""

    def __init__(self, host: str, port: int, address: IPAddress, deadline: _Deadline) -> None:
        super().__init__(host, port, timeout=deadline.remaining())
        self.address = address
        self.deadline = deadline

    def _open(self) -> socket.socket:
        sock = socket.create_connection((str(self.address), self.port), self.deadline.remaining())
        self.deadline.watch(sock)
        sock.settimeout(self.deadline.remaining())
        return sock

    def connect(self) -> None:
        self.sock = self._open()


class _PinnedHTTPS(_PinnedHTTP):
    """An HTTPS connection to a checked address; SNI and the certificate check use the URL's host."""

    default_port = 443

    def __init__(self, host: str, port: int, address: IPAddress, deadline: _Deadline, context: ssl.SSLContext) -> None:
        super().__init__(host, port, address, deadline)
        self.context = context

    def connect(self) -> None:
        sock = self._open()
        try:
            self.sock = self.context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


_tls = ssl.create_default_context()


def fetch(url: str, policy: FetchPolicy) -> Download:
    """The body at ``url`` (a 200 answer, after at most ``policy.max_redirects`` checked redirects), or
    ``FetchRefused`` with the reason."""
    with _Deadline(policy.deadline_seconds) as deadline:
        try:
            return _fetch(url, policy, deadline)
        except FetchRefused:
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if deadline.expired:
                raise FetchRefused(f"the download took longer than {policy.deadline_seconds:g} s") from exc
            raise FetchRefused(f"{type(exc).__name__}: {exc}") from exc


def _fetch(url: str, policy: FetchPolicy, deadline: _Deadline) -> Download:
    for hop in range(policy.max_redirects + 1):
        scheme, host, port, target = _checked_url(url, policy)
        address = _checked_address(host, policy, deadline)
        connection = (
            _PinnedHTTPS(host, port, address, deadline, policy.tls or _tls)
            if scheme == "https"
            else _PinnedHTTP(host, port, address, deadline)
        )
        response: http.client.HTTPResponse | None = None
        try:
            connection.putrequest("GET", target, skip_accept_encoding=True)
            connection.putheader("User-Agent", policy.user_agent)
            connection.putheader("Accept", "image/png,image/jpeg,image/webp,image/gif;q=0.9,*/*;q=0.1")
            connection.putheader("Accept-Encoding", "identity")
            connection.putheader("Connection", "close")
            connection.endheaders()
            response = connection.getresponse()
            if response.status in REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise FetchRefused(f"HTTP {response.status} without a Location from {host} ({address})")
                if hop == policy.max_redirects:
                    raise FetchRefused(f"more than {policy.max_redirects} redirects")
                url = urljoin(url, location.strip())
                continue
            if response.status != 200:
                raise FetchRefused(f"HTTP {response.status} {response.reason} from {host} ({address})")
            data = _body(response, policy, deadline)
            return Download(url, data, response.getheader("Content-Type", ""))
        finally:
            if response is not None:
                response.close()
            connection.close()
    raise AssertionError("unreachable")  # pragma: no cover


def _checked_url(url: str, policy: FetchPolicy) -> tuple[str, str, int, str]:
    """(scheme, host, port, request target) of a URL that may be fetched, or ``FetchRefused``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise FetchRefused(f"the scheme {scheme or '(none)'!r} is not http or https")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise FetchRefused("a URL with a user name or password")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise FetchRefused("a URL without a host")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise FetchRefused(f"a bad port: {exc}") from None
    if (reason := policy.host_refusal(host, port)) is not None:
        raise FetchRefused(reason)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    if any(ord(c) <= 32 or ord(c) == 127 for c in target):
        raise FetchRefused("a URL with spaces or control characters")
    return scheme, host, port, target


def _checked_address(host: str, policy: FetchPolicy, deadline: _Deadline) -> IPAddress:
    """The address to connect to: every address ``host`` resolves to must be allowed (a name that answers
    one public and one private address is refused), and the first is used."""
    lookup = _lookups().submit(policy.resolve, host)
    try:
        addresses = list(lookup.result(timeout=deadline.remaining()))
    except FutureTimeout:
        raise FetchRefused(f"looking up {host} took longer than {policy.deadline_seconds:g} s") from None
    except (OSError, UnicodeError, ValueError) as exc:
        raise FetchRefused(f"cannot resolve {host}: {exc}") from exc
    if not addresses:
        raise FetchRefused(f"{host} resolves to no address")
    for address in addresses:
        if (reason := policy.address_refusal(address)) is not None:
            raise FetchRefused(f"{host}: {reason}")
    return _unwrapped(addresses[0])


def _body(response: http.client.HTTPResponse, policy: FetchPolicy, deadline: _Deadline) -> bytes:
    declared = response.getheader("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > policy.max_bytes:
        raise FetchRefused(f"the body is {int(declared)} bytes, more than {policy.max_bytes}")
    chunks: list[bytes] = []
    size = 0
    while True:
        deadline.remaining()
        chunk = response.read1(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > policy.max_bytes:
            raise FetchRefused(f"the body is more than {policy.max_bytes} bytes")
        chunks.append(chunk)
    deadline.remaining()  # a body cut short by the deadline is not a whole body
    return b"".join(chunks)
