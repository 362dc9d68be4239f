"""Hostile members against the playground, the ops endpoints and the processes of one machine (issue 17,
items 11, 13 and 14): real HTTP to a real ``dreamloom web`` and ops server, real child processes."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bot.cli.local_system import LocalJobSystem
from bot.cli.services import ServiceRecord
from bot.cli.settings import ServiceSettings
from bot.web.app import create_app
from bot.web.guard import AllowedHosts, host_name
from engine.errors import ConfigError
from tasks.client import JobClient
from tasks.file_storage import LocalStorage
from tasks.health import PROBE_KEY, run_checks
from tasks.ops_server import start_ops_server
from tasks.processes import child_environment, worker_environment
from tasks.settings import Settings, redacted_url
from tests.support.playground import clean_env, local_settings, null_registry, serve_in_thread
from tests.support.servers import wait_until

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "discord-token-that-must-stay-with-the-bot"


def request(
    url: str, *, method: str = "GET", body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request, with whatever Host, Origin ... headers a hostile page sends."""
    data = None if body is None else json.dumps(body).encode()
    sent = {**({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, sent, method=method), timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


@pytest.fixture
def web_on_all_addresses(redis_url, tmp_path) -> Iterator[str]:
    """``dreamloom web`` as compose and Kubernetes run it (DREAMLOOM_WEB_HOST=0.0.0.0), with one proxy name
    allowed; yields the loopback URL it prints."""
    models, _ = null_registry(tmp_path)
    env = clean_env(
        PYTHONPATH=str(ROOT),
        REDIS_URL=redis_url,
        DREAMLOOM_MODELS=str(models),
        DREAMLOOM_DATA_DIR=str(tmp_path / "data"),
        DREAMLOOM_WEB_HOST="0.0.0.0",
        DREAMLOOM_WEB_PORT="0",
        DREAMLOOM_WEB_ALLOWED_HOSTS="play.example.org",
    )
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "web"], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "dreamloom web: open http://" in line, line + process.stdout.read()
        yield line.split("open ", 1)[1].split()[0]
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


def test_item_11_a_playground_on_all_addresses_answers_only_its_own_names_and_pages(web_on_all_addresses):
    """DNS rebinding (Host: evil.example), a foreign Origin's POST and framing are refused on 0.0.0.0."""
    url = web_on_all_addresses
    port = url.rsplit(":", 1)[1]

    status, headers, body = request(f"{url}/api/info", headers={"Host": f"evil.example:{port}"})
    assert status == 403, "a rebound name reaches the playground"
    refusal = json.loads(body)
    assert refusal["title"] == "Not allowed"
    assert "host name" in refusal["error"]
    assert "DREAMLOOM_WEB_ALLOWED_HOSTS" in refusal["error"], "the operator learns what to set"
    assert headers["Content-Security-Policy"] == "frame-ancestors 'none'", "refusals are not framed either"
    status, _, body = request(f"{url}/api/info")
    assert json.loads(body)["storage"] == "local", "item 15: which kind of storage, never its folder"
    assert b"/data" not in body, body
    assert b"artifacts" not in body, body
    for name in (f"127.0.0.1:{port}", f"localhost:{port}", "play.example.org", f"PLAY.example.org.:{port}"):
        assert request(f"{url}/api/info", headers={"Host": name})[0] == 200, name
    for name in ("10.0.0.7", "evil.example", f"127.0.0.1.nip.io:{port}", "play.example.org@evil.example", ""):
        assert request(f"{url}/api/info", headers={"Host": name})[0] == 403, name

    imagine = f"{url}/api/imagine"
    prompt = {"prompt": "a lighthouse --seed 1"}
    for refused in (
        {"Origin": "http://evil.example"},
        {"Origin": f"http://evil.example:{port}"},
        {"Origin": "http://127.0.0.1:1"},  # another page on this machine
        {"Origin": "null"},  # a sandboxed frame
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-site"},
    ):
        status, _, body = request(imagine, method="POST", body=prompt, headers=refused)
        assert status == 403, refused
        assert json.loads(body)["error"] == "requests that change something must come from the playground's own page"
    assert json.loads(request(f"{url}/api/jobs")[2])["jobs"] == [], "a refused POST made no job"
    own_page = {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}
    status, headers, body = request(imagine, method="POST", body=prompt, headers=own_page)
    assert status == 200, body
    assert headers["X-Frame-Options"] == "DENY"
    proxied = {"Host": "play.example.org", "Origin": "https://play.example.org"}  # TLS ends at the proxy
    assert request(imagine, method="POST", body=prompt, headers=proxied)[0] == 200
    assert request(imagine, method="POST", body=prompt)[0] == 200, "a tool that sends no Origin (curl)"

    for path in ("/", "/static/app.js", "/files/" + "0" * 32 + "/grid.jpg"):  # a page, a file, a 404
        headers = request(url + path)[1]
        assert headers["Content-Security-Policy"] == "frame-ancestors 'none'", path
        assert headers["X-Frame-Options"] == "DENY", path


def test_item_13_health_says_ok_or_unavailable_writes_seldom_and_checks_the_host(redis_url, tmp_path):
    """/healthz shows no paths or endpoints, doesn't write on every call, and refuses rebound names."""
    assert Settings.from_env({}).metrics_host == "127.0.0.1", "the ops port of the bot and workers stays local"
    settings = local_settings(redis_url, tmp_path)
    probe = settings.data_dir / "artifacts" / PROBE_KEY
    checked = [settings]
    server = start_ops_server(settings.metrics_host, 0, CollectorRegistry(), lambda: run_checks(checked[0]))
    try:
        healthz = f"http://127.0.0.1:{server.server_port}/healthz"
        status, _, body = request(healthz)
        assert status == 200
        ok = [{"name": "redis", "ok": True, "status": "ok"}, {"name": "storage", "ok": True, "status": "ok"}]
        assert json.loads(body) == {"ok": True, "checks": ok}
        assert probe.exists(), "the first check writes its probe"
        probe.unlink()
        for _ in range(5):
            assert request(healthz)[0] == 200
        assert not probe.exists(), "a probe every few seconds (or a member's loop) writes each time"

        checked[0] = dataclasses.replace(settings, redis_url="redis://:hunter2@127.0.0.1:1/0")
        status, _, body = request(healthz)
    finally:
        server.shutdown()
        server.server_close()
    assert status == 503
    assert json.loads(body)["checks"][0] == {"name": "redis", "ok": False, "status": "unavailable"}
    for internal in (b"127.0.0.1:1", b"hunter2", str(tmp_path).encode(), b"REDIS_URL"):
        assert internal not in body, internal

    _, registry = null_registry(tmp_path)
    client = JobClient(settings, registry=registry)
    try:
        with serve_in_thread(create_app(client, user="alice")) as url:
            assert request(f"{url}/healthz", headers={"Host": "evil.example"})[0] == 403, "a rebound name"
            for probe_host in ("10.1.2.3:8188", "[fd00::5]:8188", url.split("//")[1]):  # a kubelet's pod IP
                status, _, body = request(f"{url}/healthz", headers={"Host": probe_host})
                assert status == 200, probe_host
                assert str(tmp_path).encode() not in body
                assert b"local folder" not in body
            assert request(f"{url}/api/info", headers={"Host": "10.1.2.3:8188"})[0] == 403, "IPs: probes only"
    finally:
        client.redis.close()


def test_item_14_children_get_no_discord_token_and_the_data_folder_is_private(monkeypatch, tmp_path, caplog):
    """The worker and Redis children hold no DISCORD_TOKEN, settings hide the Redis password, files are 0600."""
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)  # the embedded Redis starts from this process's own environment
    models, _ = null_registry(tmp_path)
    env = clean_env(DISCORD_TOKEN=TOKEN, REDIS_PASSWORD="compose-secret", AWS_ACCESS_KEY_ID="AKIAEXAMPLE",
                    AWS_SECRET_ACCESS_KEY="aws-secret", HF_TOKEN="hf-token", DREAMLOOM_MODELS=str(models),
                    TOKENIZERS_PARALLELISM="false")  # fmt: skip
    lines: list[str] = []
    data = tmp_path / "data"
    system = LocalJobSystem(ServiceSettings(data_dir=data), env, lines.append)
    caplog.set_level(logging.DEBUG)
    try:
        system.start()
        assert system.worker is not None
        assert system.redis is not None
        assert system.settings is not None
        worker_env = _environ(system.worker.pid)
        assert "DISCORD_TOKEN" not in worker_env, "the worker holds the token"
        assert TOKEN not in str(worker_env)
        assert {"REDIS_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}.isdisjoint(worker_env), "no bucket"
        assert worker_env["HF_TOKEN"] == "hf-token", "a gated model needs it"
        assert worker_env["TOKENIZERS_PARALLELISM"] == "false", "only secrets go"
        assert worker_env["REDIS_URL"] == system.settings.redis_url

        password = system.redis.password
        record = ServiceRecord(os.getpid(), system.settings.redis_url, str(data))
        for shown in (repr(system.settings), str(system.settings), repr(record), *lines):
            assert password not in shown, shown
        assert "redis://:***@127.0.0.1:" in repr(system.settings)
        assert all(password not in record.getMessage() for record in caplog.records)

        storage = LocalStorage(data / "artifacts")
        storage.put("jobs/" + "a" * 32 + "/grid.jpg", b"\xff\xd8\xff", "image/jpeg")
        wait_until(lambda: any((data / "redis").rglob("*.aof")), timeout=10, what="the append-only file")
    finally:
        system.stop(idle=True)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    private = [data / "service.lock", *data.rglob("*")]
    assert any(path.name.endswith(".aof") for path in private)
    assert any(path.name == "grid.jpg" for path in private)
    opened = {str(path.relative_to(data)): oct(stat.S_IMODE(path.stat().st_mode)) for path in private
              if path.stat().st_mode & 0o077}  # fmt: skip
    assert opened == {}, "others on the machine can read the members' images, prompts (AOF) or logs"


def test_dreamloom_worker_drops_the_front_ends_secrets_when_it_becomes_celery(tmp_path):
    """``dreamloom worker`` (compose gives every container deploy/.env) execs Celery without the token."""
    models, _ = null_registry(tmp_path)
    env = clean_env(PYTHONPATH=str(ROOT), DISCORD_TOKEN=TOKEN, DREAMLOOM_MODELS=str(models),
                    REDIS_URL="redis://127.0.0.1:1/0", DREAMLOOM_S3_BUCKET="images", AWS_ACCESS_KEY_ID="AKIAEXAMPLE",
                    AWS_SECRET_ACCESS_KEY="aws-secret")  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        cmdline = Path(f"/proc/{process.pid}/cmdline")
        wait_until(lambda: b"celery" in cmdline.read_bytes(), timeout=30, what="dreamloom worker to exec Celery")
        worker_env = _environ(process.pid)
        status = Path(f"/proc/{process.pid}/status").read_text()
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    assert "DISCORD_TOKEN" not in worker_env
    assert worker_env["AWS_SECRET_ACCESS_KEY"] == "aws-secret", "it stores in the bucket: it keeps its keys"
    assert "Umask:\t0077" in status, "its spool (under /tmp by default) holds members' images"


def test_the_allowed_hosts_setting_and_the_host_header_are_read_strictly():
    """What DREAMLOOM_WEB_ALLOWED_HOSTS and a Host header may say; nothing is guessed."""
    assert ServiceSettings.from_env({}).web_allowed_hosts == ()
    parsed = ServiceSettings.from_env({"DREAMLOOM_WEB_ALLOWED_HOSTS": " Play.Example.org., [fd00::5], 10.0.0.2 "})
    assert parsed.web_allowed_hosts == ("play.example.org", "fd00::5", "10.0.0.2")
    for bad in ("play.example.org:8188", "https://play.example.org", "user@host", "a/b"):
        with pytest.raises(ConfigError, match="DREAMLOOM_WEB_ALLOWED_HOSTS lists host names without"):
            ServiceSettings.from_env({"DREAMLOOM_WEB_ALLOWED_HOSTS": bad})
    everywhere = AllowedHosts("0.0.0.0")
    assert everywhere.names == {"localhost", "127.0.0.1", "::1"}, "0.0.0.0 is no name a browser asks for"
    assert AllowedHosts("192.168.1.5").allows("192.168.1.5"), "a specific bind address is its own name"
    assert AllowedHosts("0.0.0.0", ["*"]).allows("anything.example"), "only when the operator says so"
    assert [host_name(h) for h in ("Example.COM:80", "[::1]:8188", "[::1]", "a:b", "x y", "[::1]x", "")] == [
        "example.com", "::1", "::1", None, None, None, None,
    ]  # fmt: skip


def test_secrets_are_told_by_their_names_and_urls_print_no_password():
    """A child's environment loses every secret not kept; a Redis URL prints with its password as ***."""
    environ = {"PATH": "/bin", "DISCORD_TOKEN": "t", "GITHUB_TOKEN": "g", "MINIO_ROOT_PASSWORD": "m",
               "OPENAI_API_KEY": "o", "SSH_AUTH_SOCK": "/tmp/agent", "TOKENIZERS_PARALLELISM": "false",
               "AWS_SESSION_TOKEN": "s", "HF_TOKEN": "h", "REDIS_URL": "redis://:p@r/0"}  # fmt: skip
    assert child_environment(environ) == {"PATH": "/bin", "TOKENIZERS_PARALLELISM": "false",
                                          "REDIS_URL": "redis://:p@r/0"}  # fmt: skip
    assert set(worker_environment(environ, s3=True)) == {"PATH", "TOKENIZERS_PARALLELISM", "REDIS_URL",
                                                         "HF_TOKEN", "AWS_SESSION_TOKEN"}  # fmt: skip
    assert redacted_url("redis://:p4ss@redis:6379/0") == "redis://:***@redis:6379/0"
    assert (
        redacted_url("rediss://user:p4ss@redis/1?password=p4ss&db=2") == "rediss://user:***@redis/1?password=***&db=2"
    )
    assert redacted_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
