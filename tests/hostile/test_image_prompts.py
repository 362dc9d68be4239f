"""Hostile image prompts (issue 17: items 1, 2, 3 and 15). A URL in a prompt cannot reach what a worker can
reach, cannot tie up or exhaust a worker, is downloaded once and kept with the job; and what a member reads
when something fails names nothing internal (no address, port, bucket, endpoint, host or path).

Real listeners on loopback (a tiny ``http.server`` in a thread, on 127.0.0.1, 127.0.0.2 and ::1), the real job
system (Redis, S3 on moto) and the worker's ``JobRunner``; only the GPU engine is a stand-in (the null engine).
The item tests go through the worker with settings read from the environment, as a deployed worker reads them.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import http.server
import io
import ipaddress
import os
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from engine.jobs import Action, JobStatus
from engine.null import NullEngine
from engine.prompt import parse
from engine.registry import Registry
from tasks.client import JobClient
from tasks.file_storage import storage_from_settings
from tasks.records import Job
from tasks.settings import Settings
from tasks.worker import JobRunner
from tests.conftest import settings_env
from tests.support.servers import free_port

GENERIC = "Could not use the image at "

# --- a tiny web server on loopback ----------------------------------------------------------------------

Route = Callable[[http.server.BaseHTTPRequestHandler], None]


class Listener:
    """An HTTP server on a loopback address, in a thread: path -> route; every request is recorded."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.scheme = "https" if tls else "http"
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str]] = []  # (path, Host header)
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                listener.requests.append((self.path, self.headers.get("Host", "")))
                route = listener.routes.get(self.path.split("?")[0])
                try:
                    if route is None:
                        self.send_error(404)
                    else:
                        route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up: what the deadline tests want

            def log_message(self, *args: Any) -> None:
                pass

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("Server", (http.server.ThreadingHTTPServer,), {"address_family": family})
        self.server = server_class((host, 0), Handler)
        self.port: int = self.server.server_address[1]
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.netloc}{path}"

    def start(self) -> Listener:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(data: bytes, content_type: str = "image/png") -> Route:
    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return route


def redirect(location: str) -> Route:
    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


def trickle(data: bytes, interval: float, headers_too: bool = False) -> Route:
    """A byte every ``interval`` seconds: of the body, or (``headers_too``) of the status line and headers."""

    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        handler.wfile.write(b"" if headers_too else head)
        for byte in (head if headers_too else b"") + data:
            handler.wfile.write(bytes([byte]))
            time.sleep(interval)

    return route


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener("127.0.0.1").start()
    yield server
    server.stop()


@pytest.fixture
def listener6() -> Iterator[Listener]:
    server = Listener("::1").start()
    yield server
    server.stop()


@pytest.fixture
def outside() -> Iterator[Listener]:
    """A server on 127.0.0.2 that plays an allowed outside host (the tests allow its address on purpose)."""
    server = Listener("127.0.0.2").start()
    yield server
    server.stop()


# --- images -------------------------------------------------------------------------------------------------


def png(size: tuple[int, int] = (8, 8), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def noise_png(side: int) -> bytes:
    """A PNG that does not compress: about 3 * side² bytes."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(3 * side * side)).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def huge_png(width: int, height: int) -> bytes:
    """A valid black-and-white PNG of width x height that is tiny on the wire (written row by row, so the test
    never holds the image itself)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


# --- the job system, with a model registry that loads nothing --------------------------------------------


@pytest.fixture
def light_registry(tmp_path: Path) -> Path:
    """Models that exist only on paper: the null engine renders, and the real one would find nothing there."""
    path = tmp_path / "models.toml"
    missing = tmp_path / "secret-models" / "sd15"
    path.write_text(f'default = "v6"\n\n[models.v6]\nsource = "{missing}"\nfamily = "sd15"\n')
    return path


@pytest.fixture
def jobs(settings, light_registry: Path) -> Iterator[JobClient]:
    client = JobClient(settings, registry=Registry.from_toml(light_registry))
    yield client
    client.close()


class Recording(NullEngine):
    """The null engine, noting the image prompts each render got (as RGB bytes)."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry)
        self.seen: list[list[bytes]] = []

    def imagine(self, request: Any, **options: Any) -> Any:
        self.seen.append([image.tobytes() for image in options.get("image_prompts") or ()])
        return super().imagine(request, **options)

    def reroll(self, recipe: Any, **options: Any) -> Any:
        self.seen.append([image.tobytes() for image in options.get("image_prompts") or ()])
        return super().reroll(recipe, **options)


def worker_settings(settings: Settings, **env: str) -> Settings:
    """``settings`` as a worker reads them from its environment, with ``env`` on top."""
    return Settings.from_env(settings_env(settings, Path("models.toml"), **env))


def runner(jobs: JobClient, settings: Settings, engine: Any) -> JobRunner:
    return JobRunner(settings=settings, store=jobs.store, storage=storage_from_settings(settings),
                     dispatcher=jobs.dispatcher, engine=lambda: engine)  # fmt: skip


def run(jobs: JobClient, settings: Settings, engine: Any, text: str) -> Job:
    job = jobs.submit(parse(text), owner="mallory", channel="c1")
    runner(jobs, settings, engine).run(job.id, worker="gpu-worker-7.internal")
    return jobs.get(job.id)


def failed_line(jobs: JobClient, job: Job) -> str:
    """What the member is told: the job's error, which its failed event carries too."""
    assert job.status is JobStatus.FAILED, f"{job.status}: {job.error}"
    assert job.error
    return job.error


def allow_loopback(listener: Listener) -> dict[str, str]:
    """The settings that let a worker fetch from one loopback test server (never on a community server)."""
    return {"DREAMLOOM_IMAGE_HOSTS": listener.netloc, "DREAMLOOM_IMAGE_PRIVATE_NETWORKS": f"{listener.host}/32"}


# --- item 1: SSRF -------------------------------------------------------------------------------------------


def test_item_01_image_urls_cannot_reach_the_workers_network(jobs, settings, listener, listener6):
    """An image URL aimed at the worker's own network (loopback in every spelling, ::1, a redirect) is never
    fetched, even with any public host allowed, and the member reads one line that does not say why."""
    listener.routes["/secret.png"] = serve(png(colour=(1, 2, 3)))
    listener6.routes["/secret.png"] = serve(png(colour=(1, 2, 3)))
    closed = free_port()
    port, port6 = listener.port, listener6.port
    probes = [
        f"http://127.0.0.1:{port}/secret.png",
        f"http://[::1]:{port6}/secret.png",
        f"http://127.1:{port}/secret.png",
        f"http://0x7f000001:{port}/secret.png",
        f"http://2130706433:{port}/secret.png",
        f"http://[::ffff:127.0.0.1]:{port}/secret.png",
        f"http://0.0.0.0:{port}/secret.png",
        f"http://localhost:{port}/secret.png",
        f"http://127.0.0.1:{closed}/secret.png",  # nothing listens: the same line as where something does
    ]
    engine = Recording(jobs.registry)
    for env in ({}, {"DREAMLOOM_IMAGE_ANY_PUBLIC_HOST": "1"}):
        job_settings = worker_settings(settings, **env)
        for url in probes:
            line = failed_line(jobs, run(jobs, job_settings, engine, f"{url} a cat --iw 3"))
            assert line.startswith(GENERIC + url), line
            for detail in ("refused", "Errno", "loopback", "private", "not an image", "allowed", "port"):
                assert detail not in line.replace(url, ""), f"{url}: {line}"
    assert listener.requests + listener6.requests == [], "nothing on loopback was asked for anything"
    assert engine.seen == [], "no job rendered with an internal image"


def test_item_01_a_redirect_from_an_allowed_host_to_loopback_is_refused(jobs, settings, listener, outside):
    """An allowed host that redirects to loopback gets the job refused: every hop is checked again."""
    listener.routes["/secret.png"] = serve(png(colour=(1, 2, 3)))
    outside.routes["/cat.png"] = redirect(listener.url("/secret.png"))
    job_settings = worker_settings(settings, DREAMLOOM_IMAGE_ANY_PUBLIC_HOST="1", **allow_loopback(outside))
    line = failed_line(jobs, run(jobs, job_settings, Recording(jobs.registry), f"{outside.url('/cat.png')} a cat"))
    assert line.startswith(GENERIC + outside.url("/cat.png"))
    assert [path for path, _ in outside.requests] == ["/cat.png"], "the allowed host was asked"
    assert listener.requests == [], "the redirect's target was not"


def test_item_01_no_download_when_the_image_is_not_used(jobs, settings, outside):
    """--iw 0 ignores the image prompt, and follow-ups that start from an image use none: nothing is fetched."""
    outside.routes["/cat.png"] = serve(png())
    job_settings = worker_settings(settings, **allow_loopback(outside))
    engine = Recording(jobs.registry)
    ignored = run(jobs, job_settings, engine, f"{outside.url('/cat.png')} a cat --iw 0")
    assert ignored.status is JobStatus.DONE, ignored.error
    assert outside.requests == [], "an image the job does not use is not downloaded"
    used = run(jobs, job_settings, engine, f"{outside.url('/cat.png')} a cat")
    assert used.status is JobStatus.DONE, used.error
    assert len(outside.requests) == 1
    for action, index in ((Action.VARY_STRONG, 2), (Action.SEPARATE, 3)):
        child = jobs.follow_up(used.id, action, owner="mallory", index=index)
        runner(jobs, job_settings, engine).run(child.id, worker="w")
        assert jobs.get(child.id).status is JobStatus.DONE, jobs.get(child.id).error
    assert len(outside.requests) == 1, "follow-ups from an image download nothing"


# --- item 1: the probes, one by one, at the download itself ------------------------------------------------

PUBLIC = ipaddress.ip_address("93.184.215.14")  # a public address; never connected to (see the resolver)


def test_every_probe_is_refused_at_the_address_check_with_ports_and_hosts_open(listener, listener6, outside):
    """With every host allowed and the listeners' ports open, what stops each probe is the address check,
    the scheme check or the redirect check; the listeners see nothing. The table is the issue's report."""
    from tasks.safe_fetch import FetchPolicy, FetchRefused, fetch, system_resolve

    for server in (listener, listener6):
        server.routes["/secret.png"] = serve(png(colour=(1, 2, 3)))
    names = {
        "loopback.example": [ipaddress.ip_address("127.0.0.1")],  # a DNS name that points home
        "v6-loopback.example": [ipaddress.ip_address("::1")],
        "metadata.example": [ipaddress.ip_address("169.254.169.254")],
        "mixed.example": [PUBLIC, ipaddress.ip_address("127.0.0.1")],  # one public, one private answer
        "outside.example": [ipaddress.ip_address("127.0.0.2")],  # the allowed test server
    }

    def resolve(host: str) -> list[Any]:
        return names[host] if host in names else system_resolve(host)

    policy = FetchPolicy(hosts=(), any_public_host=True, ports=frozenset({80, 443, listener.port, listener6.port,
                         outside.port}), trusted_networks=(ipaddress.ip_network("127.0.0.2/32"),),
                         resolve=resolve, deadline_seconds=5)  # fmt: skip
    port, port6 = listener.port, listener6.port
    secret = "/secret.png"
    for hop, target in enumerate(
        [
            f"http://127.0.0.1:{port}{secret}",
            f"http://loopback.example:{port}{secret}",
            f"http://[::1]:{port6}{secret}",
            "file:///etc/passwd",
            f"gopher://127.0.0.1:{port}/_INFO",
        ]
    ):
        outside.routes[f"/hop{hop}"] = redirect(target)
    outside.routes["/loop"] = redirect("/loop")
    probes = {
        "loopback": f"http://127.0.0.1:{port}{secret}",
        "loopback, short form": f"http://127.1:{port}{secret}",
        "loopback, hex": f"http://0x7f000001:{port}{secret}",
        "loopback, decimal": f"http://2130706433:{port}{secret}",
        "loopback, octal": f"http://0177.0.0.1:{port}{secret}",
        "loopback, IPv4-mapped IPv6": f"http://[::ffff:127.0.0.1]:{port}{secret}",
        "IPv6 loopback": f"http://[::1]:{port6}{secret}",
        "unspecified 0.0.0.0": f"http://0.0.0.0:{port}{secret}",
        "unspecified ::": f"http://[::]:{port6}{secret}",
        "localhost": f"http://localhost:{port}{secret}",
        "DNS name -> 127.0.0.1": f"http://loopback.example:{port}{secret}",
        "DNS name -> ::1": f"http://v6-loopback.example:{port6}{secret}",
        "DNS name -> public and 127.0.0.1": f"http://mixed.example:{port}{secret}",
        "DNS name -> metadata": "http://metadata.example/latest/meta-data/",
        "cloud metadata": "http://169.254.169.254/latest/meta-data/",
        "cloud metadata, IPv6 (AWS)": "http://[fd00:ec2::254]/latest/meta-data/",
        "Alibaba metadata": "http://100.100.100.200/latest/meta-data/",
        "Azure WireServer (public range)": "http://168.63.129.16/machine",
        "10/8": "http://10.0.0.1/",
        "172.16/12": "http://172.16.0.1/",
        "192.168/16": "http://192.168.1.1/",
        "100.64/10 (shared)": "http://100.64.0.1/",
        "link-local": "http://169.254.1.1/",
        "IPv6 link-local": "http://[fe80::1]/",
        "IPv6 unique local": "http://[fd12:3456::1]/",
        "multicast": "http://224.0.0.1/",
        "IPv6 multicast": "http://[ff02::1]/",
        "reserved 240/4": "http://240.0.0.1/",
        "broadcast": "http://255.255.255.255/",
        "6to4 of 127.0.0.1": "http://[2002:7f00:1::]/",
        "NAT64 of 10.0.0.1": "http://[64:ff9b::a00:1]/",
        "file://": "file:///etc/passwd",
        "ftp://": f"ftp://127.0.0.1:{port}/",
        "gopher:// (Redis smuggling)": f"gopher://127.0.0.1:{port}/_INFO",
        "data:": "data:image/png;base64," + "iVBORw0KGgo=",
        "user@host": f"http://outside.example@127.0.0.1:{port}{secret}",
        "port not allowed": "http://outside.example:6379/",
        "redirect -> 127.0.0.1": f"http://outside.example:{outside.port}/hop0",
        "redirect -> DNS name -> 127.0.0.1": f"http://outside.example:{outside.port}/hop1",
        "redirect -> [::1]": f"http://outside.example:{outside.port}/hop2",
        "redirect -> file://": f"http://outside.example:{outside.port}/hop3",
        "redirect -> gopher://": f"http://outside.example:{outside.port}/hop4",
        "redirect loop": f"http://outside.example:{outside.port}/loop",
    }
    table = []
    for what, url in probes.items():
        with pytest.raises(FetchRefused) as refused:
            fetch(url, policy)
        table.append(f"{what:38} {url:55} refused: {refused.value}")
    print("\n".join(["", *table]))
    assert listener.requests + listener6.requests == [], "no probe reached a listener"
    assert {path for path, _ in outside.requests} == {"/hop0", "/hop1", "/hop2", "/hop3", "/hop4", "/loop"}
    outside.routes["/cat.png"] = serve(png())
    outside.routes["/hop"] = redirect("/cat.png")
    assert fetch(f"http://outside.example:{outside.port}/hop", policy).data == png(), "a safe redirect is followed"


def test_the_connection_goes_to_the_checked_address_and_names_the_host(outside, listener):
    """The name is looked up once per hop and the connection goes to that answer (a second, rebinding answer
    is never asked for), while the request still names the host."""
    from tasks.safe_fetch import FetchPolicy, fetch

    outside.routes["/cat.png"] = serve(png())
    answers = [[ipaddress.ip_address("127.0.0.2")], [ipaddress.ip_address("127.0.0.1")]]
    asked: list[str] = []

    def rebinding(host: str) -> list[Any]:
        asked.append(host)
        return answers[len(asked) - 1]

    policy = FetchPolicy(hosts=(f"rebind.example:{outside.port}",), resolve=rebinding,
                         trusted_networks=(ipaddress.ip_network("127.0.0.2/32"),))  # fmt: skip
    assert fetch(f"http://rebind.example:{outside.port}/cat.png", policy).data == png()
    assert asked == ["rebind.example"]
    assert outside.requests == [("/cat.png", f"rebind.example:{outside.port}")]
    assert listener.requests == []


def self_signed(name: str, folder: Path) -> tuple[Path, Path]:
    """A certificate for ``name`` that is its own authority, and its key (PEM files in ``folder``)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = folder / f"{name}.pem", folder / f"{name}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_file, key_file


def test_https_connects_to_the_checked_address_and_verifies_the_hosts_certificate(tmp_path):
    """Over HTTPS too the connection goes to the checked address, while SNI and the certificate check use the
    URL's host: a certificate for another name is refused."""
    from tasks.safe_fetch import FetchPolicy, FetchRefused, fetch

    cert_file, key_file = self_signed("images.test", tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)
    names: list[str | None] = []
    server_tls.sni_callback = lambda _socket, name, _context: names.append(name)
    server = Listener("127.0.0.2", tls=server_tls).start()
    try:
        server.routes["/cat.png"] = serve(png())
        client_tls = ssl.create_default_context(cafile=str(cert_file))
        policy = FetchPolicy(
            hosts=(f"images.test:{server.port}", f"other.test:{server.port}"),
            trusted_networks=(ipaddress.ip_network("127.0.0.2/32"),),
            resolve=lambda host: [ipaddress.ip_address("127.0.0.2")],
            tls=client_tls,
        )
        assert fetch(f"https://images.test:{server.port}/cat.png", policy).data == png()
        assert names == ["images.test"]
        assert server.requests == [("/cat.png", f"images.test:{server.port}")]
        with pytest.raises(FetchRefused, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(f"https://other.test:{server.port}/cat.png", policy)
        assert len(server.requests) == 1, "no request went to a server that is not the host"
    finally:
        server.stop()


def test_the_default_allow_list_is_discords_cdn(outside):
    """By default only Discord's CDN hosts may be named; others need the operator's list or 'any public'."""
    from tasks.fetch import policy_from_settings
    from tasks.safe_fetch import FetchRefused, fetch

    policy = policy_from_settings(Settings())
    assert policy.host_refusal("cdn.discordapp.com", 443) is None
    assert policy.host_refusal("media.discordapp.net", 443) is None
    assert policy.host_refusal("cdn.discordapp.com", 6379) is not None
    assert policy.host_refusal("cdn.discordapp.com.evil.example", 443) is not None
    assert policy.host_refusal("example.com", 443) is not None
    with pytest.raises(FetchRefused, match=r"host 127\.0\.0\.2 is not on the allowed list"):
        fetch("http://127.0.0.2/cat.png", policy)
    extra = policy_from_settings(Settings(image_hosts="images.example.org, *.cdn.example.net:8443"))
    assert extra.host_refusal("images.example.org", 443) is None
    assert extra.host_refusal("a.cdn.example.net", 8443) is None
    assert extra.host_refusal("cdn.example.net", 443) is not None
    anyone = policy_from_settings(Settings.from_env({"DREAMLOOM_IMAGE_ANY_PUBLIC_HOST": "1"}))
    assert anyone.host_refusal("example.com", 443) is None
    assert anyone.host_refusal("example.com", 22) is not None
    assert outside.requests == []


# --- item 2: a download cannot tie up or exhaust a worker ----------------------------------------------------


def test_item_02_a_trickling_server_is_cut_at_the_total_deadline(jobs, settings, outside):
    """A server that sends a byte every 0.2 s (body or headers) is cut off at the download's total deadline,
    not after its last byte."""
    outside.routes["/slow.png"] = trickle(png(), 0.2)
    outside.routes["/slow-head.png"] = trickle(png(), 0.2, headers_too=True)
    job_settings = worker_settings(settings, DREAMLOOM_IMAGE_FETCH_SECONDS="0.5", **allow_loopback(outside))
    for path in ("/slow.png", "/slow-head.png"):
        started = time.monotonic()
        line = failed_line(jobs, run(jobs, job_settings, Recording(jobs.registry), f"{outside.url(path)} a cat"))
        elapsed = time.monotonic() - started
        assert line.startswith(GENERIC + outside.url(path))
        assert elapsed < 2.0, f"{path}: held the worker {elapsed:.1f} s with a 0.5 s deadline"


def test_item_02_bombs_and_oversized_downloads_are_refused_before_decoding(jobs, settings, outside):
    """A tiny PNG that declares 13,000 x 13,000 is refused from its header (no 169 Mpx decode), and a
    download over the byte budget is cut off."""
    bomb = huge_png(13_000, 13_000)
    assert len(bomb) < 64 * 1024
    outside.routes["/bomb.png"] = serve(bomb)
    outside.routes["/big.png"] = serve(noise_png(700))  # about 1.5 MB
    job_settings = worker_settings(settings, DREAMLOOM_IMAGE_MAX_MB="1", **allow_loopback(outside))
    engine = Recording(jobs.registry)
    for path in ("/bomb.png", "/big.png"):
        started = time.monotonic()
        line = failed_line(jobs, run(jobs, job_settings, engine, f"{outside.url(path)} a cat"))
        assert line.startswith(GENERIC + outside.url(path))
        assert time.monotonic() - started < 1.5, f"{path} took {time.monotonic() - started:.1f} s"
    assert engine.seen == []


def test_the_pixel_limit_and_pillows_bomb_warning_are_errors():
    """Decoding refuses a header over the limit, treats Pillow's DecompressionBombWarning as an error,
    refuses formats outside PNG/JPEG/WebP/GIF, and reduces a large image as it decodes it."""
    from tasks.fetch import MAX_SIDE, decode_image

    with pytest.raises(ValueError, match="7000x7000 is more than 40000000 pixels"):
        decode_image(huge_png(7000, 7000))
    with pytest.raises(ValueError, match=r"decompression bomb.*169000000 pixels"):
        decode_image(huge_png(13_000, 13_000))
    with pytest.raises(ValueError, match="decompression bomb"):
        decode_image(huge_png(10_000, 10_000), max_pixels=10**9)  # over Pillow's own warning threshold
    tiff = io.BytesIO()
    Image.new("RGB", (8, 8)).save(tiff, format="TIFF")
    with pytest.raises(ValueError, match="not an image dreamloom can read"):
        decode_image(tiff.getvalue())
    with pytest.raises(ValueError, match="not an image dreamloom can read"):
        decode_image(png()[:40])
    large = decode_image(huge_png(6000, 3000))
    assert large.size == (MAX_SIDE, MAX_SIDE // 2)
    assert large.mode == "RGB"


# --- item 3: image prompts are kept with the job -------------------------------------------------------------


def test_item_03_rerolls_variations_and_replays_use_the_kept_copy(jobs, settings, outside):
    """After the first download the image server goes away (a Discord link expires): re-rolls, a re-roll of
    a variation, a redelivered job and a replay from job.json all still have the image, from storage."""
    cat = png(colour=(10, 200, 30))
    outside.routes["/cat.png"] = serve(cat)
    url = outside.url("/cat.png")
    job_settings = worker_settings(settings, **allow_loopback(outside))
    engine = Recording(jobs.registry)

    first = run(jobs, job_settings, engine, f"{url} a cat --iw 2")
    assert first.status is JobStatus.DONE, first.error
    # A second job with the same URL, whose first attempt dies after the download (a worker killed mid-job).
    crashing = jobs.submit(parse(f"{url} a dog --iw 2"), owner="mallory")

    class Dies(Recording):
        def imagine(self, request: Any, **options: Any) -> Any:
            raise SystemExit("worker killed")

    with pytest.raises(SystemExit):
        runner(jobs, job_settings, Dies(jobs.registry)).run(crashing.id, worker="w1")
    assert len(outside.requests) == 2
    outside.stop()  # the link has expired

    reroll = jobs.follow_up(first.id, Action.REROLL, owner="mallory")
    runner(jobs, job_settings, engine).run(reroll.id, worker="w2")
    assert jobs.get(reroll.id).status is JobStatus.DONE, jobs.get(reroll.id).error
    variation = jobs.follow_up(first.id, Action.VARY_STRONG, owner="mallory", index=1)
    runner(jobs, job_settings, engine).run(variation.id, worker="w2")
    reroll_of_variation = jobs.follow_up(variation.id, Action.REROLL, owner="mallory")
    runner(jobs, job_settings, engine).run(reroll_of_variation.id, worker="w2")
    assert jobs.get(reroll_of_variation.id).status is JobStatus.DONE, jobs.get(reroll_of_variation.id).error
    runner(jobs, job_settings, engine).run(crashing.id, worker="w3")  # the redelivery
    assert jobs.get(crashing.id).status is JobStatus.DONE, jobs.get(crashing.id).error

    decoded = Image.open(io.BytesIO(cat)).convert("RGB").tobytes()
    assert engine.seen == [[decoded]] * 4, "every render had the image, the same pixels"
    assert len(outside.requests) == 2, "nothing was downloaded again"

    # Replay: job.json and storage alone give back the exact bytes that were downloaded.
    manifest = jobs.manifest(reroll_of_variation.id)
    [kept] = manifest["image_prompts"]
    assert (kept["url"], kept["sha256"]) == (url, hashlib.sha256(cat).hexdigest())
    assert jobs.storage.get(kept["key"]) == cat
    assert manifest["recipe"]["request"]["image_urls"] == [url]
    assert jobs.manifest(crashing.id)["image_prompts"][0]["key"] == f"jobs/{crashing.id}/image-prompt-1"
    from tasks.fetch import ImagePrompts, kept_images
    from tasks.safe_fetch import FetchPolicy

    offline = ImagePrompts(jobs.storage, FetchPolicy(hosts=()))  # no host may be named: storage or nothing
    images, _ = offline.gather("replay", manifest["recipe"]["request"]["image_urls"], kept_images(manifest))
    assert [image.tobytes() for image in images] == [decoded]


# --- item 15: what members read about internal failures -------------------------------------------------------


def test_item_15_internal_failures_tell_members_nothing_internal(jobs, settings, light_registry):
    """Storage down, a bucket that does not exist, a model source that is missing, storage down when a job is
    redelivered: the member's line names no bucket, endpoint, worker host, spool path or model path."""
    from engine.generate import Engine

    down = free_port()
    cases: list[tuple[str, Settings, Any]] = [
        ("storage down", dataclasses.replace(settings, s3_endpoint_url=f"http://127.0.0.1:{down}",
                                             storage_retry_seconds=0.3), NullEngine(jobs.registry)),
        ("no such bucket", dataclasses.replace(settings, s3_bucket="no-such-bucket-7f3a"), NullEngine(jobs.registry)),
        ("model source missing", settings, Engine(Registry.from_toml(light_registry))),
    ]  # fmt: skip
    internal = [str(down), "127.0.0.1", "no-such-bucket-7f3a", settings.s3_bucket, settings.s3_endpoint_url,
                "gpu-worker-7", str(settings.spool_dir), "secret-models", str(light_registry.parent)]  # fmt: skip
    lines = {}
    for what, job_settings, engine in cases:
        lines[what] = failed_line(jobs, run(jobs, job_settings, engine, "a lighthouse --seed 3"))
    # A job that was attempted before is checked for a stored result first; with storage down it fails too.
    job = jobs.submit(parse("a lighthouse --seed 4"), owner="mallory")
    jobs.store.update(job.id, attempts="1")
    broken = cases[0][1]
    runner(jobs, broken, NullEngine(jobs.registry)).run(job.id, worker="gpu-worker-7.internal")
    lines["storage down, redelivered"] = failed_line(jobs, jobs.get(job.id))
    for what, line in lines.items():
        for detail in internal:
            assert detail not in line, f"{what}: {line!r} names {detail!r}"
    assert lines["model source missing"] == "The model could not be loaded on this server; its operator's log says why"
