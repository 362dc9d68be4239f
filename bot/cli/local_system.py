"""The job system on this machine, for ``dreamloom up`` and for a command that finds none running: a private
Redis (unless REDIS_URL is set) and one Celery worker subprocess, on one data folder.

The data folder (``DREAMLOOM_DATA_DIR``, default ``./dreamloom-data``) holds everything it keeps::

    artifacts/            the images and job.json of every job (unless an S3 bucket is configured)
    redis/                the embedded Redis's append-only file: job records and queues survive a restart
    spool/                images a worker made but could not store yet
    logs/worker.log       the worker's log
    service.lock          held by the process that runs the job system on this folder
    service.json          how to reach a running ``up`` (bot.cli.services)

The worker is the very command a production worker runs (``tasks.worker_process``), in a subprocess: the
command line never imports torch. It gets the environment less the secrets it does not use (no Discord
token: ``tasks.processes.worker_environment``).

The folder and what is in it are its owner's alone: folders 0700, files 0600 (the children run with a
private umask; local storage and the logs create their files so).
"""

from __future__ import annotations

import dataclasses
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path

from bot.cli.services import DataFolder, RunningServices, Say, ServiceError, say
from bot.cli.settings import ServiceSettings
from engine.registry import Registry
from tasks.client import JobClient
from tasks.embedded_redis import EmbeddedRedis
from tasks.processes import ESCALATION, IDLE_WORKER_STOP, PRIVATE_UMASK, spawn, stop, worker_environment
from tasks.settings import Settings
from tasks.worker_process import served_models, worker_command

__all__ = ["LocalJobSystem"]


class LocalJobSystem:
    """A private Redis (unless REDIS_URL is set) and one worker subprocess, on one data folder. Without
    ``worker`` (listing or cancelling jobs), only Redis."""

    def __init__(
        self, service: ServiceSettings, environ: Mapping[str, str], say: Say = say, *, worker: bool = True
    ) -> None:
        self.service = service
        self.with_worker = worker
        self.environ = dict(environ)
        self.say = say
        self.folder = DataFolder(service.data_dir, RunningServices.of_user(self.environ))
        self.redis: EmbeddedRedis | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.registry: Registry | None = None
        self.settings: Settings | None = None
        self.started = False  # whether start() got as far as owning the data folder
        self._log_start = 0

    @property
    def worker_log(self) -> Path:
        return self.folder.path / "logs" / "worker.log"

    def start(self) -> None:
        """Start everything (call ``stop`` afterwards, also when this raises)."""
        if not self.folder.acquire():
            running = self.folder.running()
            where = f": its page is {running.web_url}" if running and running.web_url else ""
            raise ServiceError(f"dreamloom is already running on the data folder {self.folder.path}{where}")
        self.started = True
        self._private_folders()
        base = Settings.from_env(self.environ)
        self.registry = Registry.from_env(self.environ)
        if self.with_worker:
            default = self.registry.resolve(None)
            self.say(f"model        {default.alias} ({default.source})")
            if self.registry.notice is not None:
                self.say(f"             {self.registry.notice}")
        if self.environ.get("REDIS_URL"):
            redis_url = base.redis_url
            self.say("redis        REDIS_URL")
        else:
            self.redis = EmbeddedRedis(self.folder.path / "redis")
            redis_url = self.redis.start()
            self.say(f"redis        embedded ({self.redis.binary}), data in {self.redis.folder}")
        spool = Path(self.environ.get("DREAMLOOM_SPOOL_DIR") or self.folder.path / "spool")
        self.settings = dataclasses.replace(base, redis_url=redis_url, data_dir=self.folder.path, spool_dir=spool)
        if self.with_worker:
            families, models = served_models(self.registry, None, self.service.worker_models)
            self._log_start = self.worker_log.stat().st_size if self.worker_log.exists() else 0
            command = worker_command(families, self.service.worker_concurrency, models=models)
            self.worker = spawn(command, env=self._worker_env(), log=self.worker_log, umask=PRIVATE_UMASK)
            self.say(f"worker       starting, log in {self.worker_log}")

    def _private_folders(self) -> None:
        """The folders of the data folder's own, its owner's alone (also those an older version left open)."""
        for name in ("artifacts", "redis", "spool", "logs"):
            folder = self.folder.path / name
            folder.mkdir(mode=0o700, exist_ok=True)
            folder.chmod(0o700)

    def _worker_env(self) -> dict[str, str]:
        """The worker's environment: this one less the secrets a worker does not use, and the job system's."""
        assert self.settings is not None
        return {
            **worker_environment(self.environ, s3=bool(self.settings.s3_bucket)),
            "REDIS_URL": self.settings.redis_url,
            "DREAMLOOM_DATA_DIR": str(self.folder.path),
            "DREAMLOOM_SPOOL_DIR": str(self.settings.spool_dir),
        }

    def client(self) -> JobClient:
        assert self.settings is not None, "start() first"
        assert self.registry is not None, "start() first"
        return JobClient(self.settings, registry=self.registry)

    def worker_ready(self) -> bool:
        """Whether the worker is warm and consuming (Celery's "ready." comes after the warm start)."""
        return self._log_has(b" ready.")

    def _log_has(self, text: bytes) -> bool:
        try:
            with self.worker_log.open("rb") as handle:
                handle.seek(self._log_start)
                return text in handle.read()
        except OSError:
            return False

    def worker_warming(self) -> bool:
        """Whether the worker has started loading and warming its models (``tasks.celery_worker``)."""
        return self._log_has(b"warming up:")

    def worker_failure(self) -> str | None:
        """Why the worker is gone, or None while it runs."""
        if self.worker is None or self.worker.poll() is None:
            return None
        try:
            lines = self.worker_log.read_text(errors="replace").strip().splitlines()[-8:]
        except OSError:
            lines = []
        tail = "\n".join(f"    {line}" for line in lines)
        return f"the worker stopped (exit status {self.worker.returncode}); the end of {self.worker_log}:\n{tail}"

    def stop(self, hurry: threading.Event | None = None, *, idle: bool = False) -> None:
        """Stop the worker, then Redis (which the worker needs until it is gone); safe to call at any point.

        ``idle``: the worker has nothing in hand (a command's own job system, once its jobs are finished), so
        it stops at once (``tasks.processes.IDLE_WORKER_STOP``) rather than after Celery's warm shutdown."""
        if self.worker is not None:
            stop(self.worker, IDLE_WORKER_STOP if idle else ESCALATION, hurry=hurry)
            self.worker = None
        if self.redis is not None:
            self.redis.stop(hurry)
            self.redis = None
        self.folder.release()
