"""dreamloom on one machine (``dreamloom up``), and each of its parts alone, for production.

    up       the job system on this machine (``LocalJobSystem``: a private Redis unless REDIS_URL is set,
             and a Celery worker subprocess), the web playground, and the Discord bot when DISCORD_TOKEN is set
    worker   a Celery worker for the model families of the registry (the process becomes ``celery worker``)
    web      the playground alone, against the job system of REDIS_URL
    bot      the Discord bot alone, against the job system of REDIS_URL

``up`` and a ``dreamloom imagine`` that finds no service run the very same worker command, with the same
client, as a production deployment does; only where Redis and the model come from differs.

The data folder (``DREAMLOOM_DATA_DIR``) holds everything ``up`` keeps::

    artifacts/            the images and job.json of every job (unless an S3 bucket is configured)
    redis/                the embedded Redis's append-only file: job records and queues survive a restart
    logs/worker.log       the worker's log
    service.lock          held by the process that runs the job system on this folder
    service.json          how to reach a running ``up`` (Redis URL, page URL), for ``dreamloom imagine``

This package never imports torch: the worker runs in a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from redis import Redis
from redis.exceptions import RedisError

from bot.cli.settings import ServiceSettings
from bot.default_model import ModelNotice, ModelSetup, notice_for, prepare_models
from engine.errors import ConfigError, DreamloomError
from engine.registry import Registry
from tasks.client import JobClient
from tasks.embedded_redis import EmbeddedRedis
from tasks.processes import spawn, stop
from tasks.records import MODES
from tasks.routing import worker_queues
from tasks.settings import Settings

__all__ = [
    "Connection",
    "DataFolder",
    "LocalJobSystem",
    "ServiceError",
    "ServiceRecord",
    "connect",
    "run_bot",
    "run_up",
    "run_web",
    "run_worker",
    "worker_command",
]

log = logging.getLogger(__name__)
Say = Callable[[str], None]

RECOVER_EVERY_SECONDS = 60.0
_REDIS_STOP = ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0))


class ServiceError(DreamloomError):
    """Something that stops dreamloom from starting; the message says what to do."""

    title = "Cannot start"


def say(line: str) -> None:
    print(line, flush=True)


# --- the worker command --------------------------------------------------------------------------------


def worker_command(
    families: Iterable[str],
    concurrency: int = 1,
    name: str | None = None,
    loglevel: str = "INFO",
    modes: Iterable[str] = MODES,
) -> list[str]:
    """``celery worker`` for the queues of ``families`` (fast and/or relax): prefork pool, ``concurrency``
    processes."""
    queues = worker_queues(sorted(set(families)), modes)
    return [
        sys.executable, "-m", "celery", "-A", "tasks.celery_worker", "worker",
        "-P", "prefork", "-c", str(concurrency), "-Q", ",".join(queues),
        "-n", name or f"dreamloom-{os.getpid()}@%h",
        "--without-mingle", "--without-gossip", "-l", loglevel,
    ]  # fmt: skip


# --- the data folder -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceRecord:
    """What ``service.json`` says about a running ``dreamloom up``."""

    pid: int
    redis_url: str
    web_url: str | None = None
    models: str | None = None  # the DREAMLOOM_MODELS file its worker serves, so the CLI uses the same registry


class DataFolder:
    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self._lock: IO[str] | None = None

    @property
    def record_file(self) -> Path:
        return self.path / "service.json"

    def acquire(self) -> bool:
        """Become the one process that runs the job system on this folder (False: another one does)."""
        self.path.mkdir(parents=True, exist_ok=True)
        handle = (self.path / "service.lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._lock = handle
        return True

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    def publish(self, record: ServiceRecord) -> None:
        partial = self.record_file.with_suffix(".tmp")
        partial.touch(mode=0o600)
        partial.write_text(json.dumps(dataclasses.asdict(record)))  # holds the Redis password: owner only
        os.replace(partial, self.record_file)

    def unpublish(self) -> None:
        self.record_file.unlink(missing_ok=True)

    def running(self) -> ServiceRecord | None:
        """The running ``up`` on this folder, or None (none, or one that died without cleaning up)."""
        try:
            record = ServiceRecord(**json.loads(self.record_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if self._lock is not None:
            return record
        probe = DataFolder(self.path)
        if probe.acquire():  # nobody holds the lock: the record is stale
            probe.release()
            return None
        return record


# --- the job system on this machine --------------------------------------------------------------------


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
        self.folder = DataFolder(service.data_dir)
        self.redis: EmbeddedRedis | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.models: ModelSetup | None = None
        self.settings: Settings | None = None
        self._log_start = 0

    @property
    def worker_log(self) -> Path:
        return self.folder.path / "logs" / "worker.log"

    def start(self) -> None:
        """Start everything (call ``stop`` afterwards, also when this raises)."""
        if not self.folder.acquire():
            running = self.folder.running()
            where = f": open {running.web_url}" if running and running.web_url else ""
            raise ServiceError(f"dreamloom is already running on the data folder {self.folder.path}{where}")
        base = Settings.from_env(self.environ)
        self.models = prepare_models(self.environ)
        if self.with_worker:
            default = self.models.registry.resolve(None)
            self.say(f"model        {default.alias} ({default.source})")
            if self.models.notice is not None:
                self.say(f"             {self.models.notice}")
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
            families = [entry.family for entry in self.models.registry.entries]
            self._log_start = self.worker_log.stat().st_size if self.worker_log.exists() else 0
            command = worker_command(families, self.service.worker_concurrency)
            self.worker = spawn(command, env=self._worker_env(), log=self.worker_log)
            self.say(f"worker       starting, log in {self.worker_log}")

    def _worker_env(self) -> dict[str, str]:
        assert self.settings is not None
        assert self.models is not None
        env = {
            **self.environ,
            "REDIS_URL": self.settings.redis_url,
            "DREAMLOOM_DATA_DIR": str(self.folder.path),
            "DREAMLOOM_SPOOL_DIR": str(self.settings.spool_dir),
        }
        return env

    def client(self) -> JobClient:
        assert self.settings is not None, "start() first"
        assert self.models is not None, "start() first"
        return JobClient(self.settings, registry=self.models.registry)

    def worker_ready(self) -> bool:
        try:
            with self.worker_log.open("rb") as handle:
                handle.seek(self._log_start)
                return b" ready." in handle.read()
        except OSError:
            return False

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

    def stop(self, hurry: threading.Event | None = None) -> None:
        """Stop the worker, then Redis (which the worker needs until it is gone); safe to call at any point."""
        if self.worker is not None:
            stop(self.worker, hurry=hurry)
            self.worker = None
        if self.redis is not None:
            self.redis.stop(hurry)
            self.redis = None
        self.folder.release()


# --- dreamloom up --------------------------------------------------------------------------------------


def run_up(service: ServiceSettings, environ: Mapping[str, str] | None = None, say: Say = say) -> int:
    """Everything on one machine until Ctrl-C (or SIGTERM); then stop it all, in order."""
    env = dict(os.environ if environ is None else environ)
    system = LocalJobSystem(service, env, say)
    hurry = threading.Event()
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        say(f"data folder  {system.folder.path}")
        system.start()
        return asyncio.run(_up(system, service, env, say))
    except KeyboardInterrupt:
        say("interrupted while starting")
        return 130
    except DreamloomError as exc:
        say(f"{exc.title}: {exc}")
        return exc.exit_code
    finally:
        previous_int = signal.signal(signal.SIGINT, lambda *_: hurry.set())  # a second Ctrl-C: no waiting
        signal.signal(signal.SIGTERM, lambda *_: hurry.set())
        system.stop(hurry)
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
        say("stopped")


def _interrupt(_signal: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


async def _up(system: LocalJobSystem, service: ServiceSettings, env: Mapping[str, str], say: Say) -> int:
    from bot.web.app import create_app
    from bot.web.server import PortInUse, serve

    assert system.models is not None
    assert system.settings is not None
    stopping = _stop_on_signals()
    client = system.client()
    app = create_app(client, user=service.user, notice=system.models.notice, local_only=service.web_is_local)
    failed = False
    try:
        async with serve(app, service.web_host, service.web_port) as url:
            system.folder.publish(
                ServiceRecord(os.getpid(), system.settings.redis_url, url, _models_file(system.environ))
            )
            if not service.web_is_local:
                say(f"warning      the playground has no login and listens on {service.web_host}")
            background = [
                asyncio.create_task(_watch_worker(system, stopping, say)),
                asyncio.create_task(_recover(client)),
            ]
            bot = _discord_bot(system, env, say)
            if bot is not None:
                background.append(asyncio.create_task(_keep_going(bot, "the Discord bot", say)))
            say("")
            say(f"Open {url} in your browser. Ctrl-C stops everything.")
            await stopping.wait()
            failed = stopping.failed
            say("stopping ...")
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
    except PortInUse as exc:
        say(f"dreamloom: {exc.strerror}: set DREAMLOOM_WEB_PORT (or --port) to another port")
        return 1
    finally:
        system.folder.unpublish()
        client.redis.close()
    return 1 if failed else 0


class _Stop(asyncio.Event):
    failed = False

    def fail(self) -> None:
        self.failed = True
        self.set()


def _stop_on_signals() -> _Stop:
    stopping = _Stop()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stopping.set)
    return stopping


async def _watch_worker(system: LocalJobSystem, stopping: _Stop, say: Say) -> None:
    announced = False
    while True:
        if not announced and system.worker_ready():
            say("worker       ready")
            announced = True
        failure = system.worker_failure()
        if failure is not None:
            say(f"dreamloom: {failure}")
            stopping.fail()
            return
        await asyncio.sleep(0.5)


async def _recover(client: JobClient) -> None:
    """Send again the jobs whose sender died between admitting and sending them."""
    while True:
        try:
            await asyncio.to_thread(client.recover)
        except RedisError as exc:
            log.warning("could not look for unsent jobs: %s", exc)
        await asyncio.sleep(RECOVER_EVERY_SECONDS)


async def _keep_going(work: Coroutine[Any, Any, Any], what: str, say: Say) -> None:
    try:
        await work
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("%s stopped", what)
        say(f"dreamloom: {what} stopped: {exc}; everything else goes on")


def _discord_bot(system: LocalJobSystem, env: Mapping[str, str], say: Say) -> Coroutine[Any, Any, Any] | None:
    if not env.get("DISCORD_TOKEN"):
        say("discord bot  off (set DISCORD_TOKEN to start it)")
        return None
    assert system.settings is not None
    assert system.models is not None
    try:
        run_discord_bot, bot_settings = _load_discord_bot()
    except DreamloomError as exc:
        say(f"discord bot  not started: {exc}")
        return None
    say("discord bot  starting")
    return run_discord_bot(bot_settings, JobClient(system.settings, registry=system.models.registry))


def _load_discord_bot() -> tuple[Callable[[Any, JobClient], Coroutine[Any, Any, Any]], Any]:
    """The bot's launcher and its settings from the environment (imported only when the bot runs)."""
    from bot.discord.launcher import run_discord_bot
    from bot.discord.settings import BotSettings

    bot_settings = BotSettings.from_env()
    if bot_settings.token is None:
        raise ConfigError("DISCORD_TOKEN is not set: the bot needs its token from the Discord developer portal")
    return run_discord_bot, bot_settings


# --- each part alone -----------------------------------------------------------------------------------


def run_worker(
    service: ServiceSettings, families: list[str] | None, loglevel: str, modes: Iterable[str] = MODES
) -> int:
    """Become ``celery worker`` for the registry's families (or ``families``), fast and relax queues (or
    ``modes``). With DREAMLOOM_METRICS_PORT set, its pool processes share Prometheus files in a fresh folder."""
    if not families:
        registry = Registry.from_env()
        families = [entry.family for entry in registry.entries]
        if not families:
            say(f"dreamloom: {notice_for(registry)}")
            return 1
    command = worker_command(families, service.worker_concurrency, loglevel=loglevel, modes=modes)
    say(f"dreamloom worker: queues {command[command.index('-Q') + 1]}")
    if os.environ.get("DREAMLOOM_METRICS_PORT", "0") not in ("", "0") and not os.environ.get(
        "PROMETHEUS_MULTIPROC_DIR"
    ):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="dreamloom-metrics-")
    os.execv(command[0], command)


def run_web(service: ServiceSettings) -> int:
    """The playground alone, on the job system of the environment."""
    from bot.web.app import create_app
    from bot.web.server import PortInUse, serve

    client = JobClient.from_env()

    async def main() -> int:
        stopping = _stop_on_signals()
        app = create_app(client, user=service.user, notice=notice_for(client.registry),
                         local_only=service.web_is_local)  # fmt: skip
        try:
            async with serve(app, service.web_host, service.web_port) as url:
                say(f"dreamloom web: open {url} (Ctrl-C stops it)")
                await stopping.wait()
        except PortInUse as exc:
            say(f"dreamloom: {exc.strerror}: set DREAMLOOM_WEB_PORT (or --port) to another port")
            return 1
        return 0

    try:
        return asyncio.run(main())
    finally:
        client.redis.close()


def run_bot() -> int:
    """The Discord bot alone, on the job system of the environment."""
    from bot.discord.launcher import main

    return main()


# --- the CLI's connection --------------------------------------------------------------------------------


@dataclass
class Connection:
    client: JobClient
    notice: ModelNotice | None
    how: str  # in words: which job system the command uses
    web_url: str | None = None
    system: LocalJobSystem | None = None  # the job system this command started for itself


@contextlib.contextmanager
def connect(
    service: ServiceSettings, environ: Mapping[str, str] | None = None, say: Say = say, *, worker: bool = True
) -> Iterator[Connection]:
    """The job system a CLI command uses: a running ``dreamloom up`` on the data folder, else the one of
    REDIS_URL, else an embedded one (private Redis, and a worker unless ``worker`` is False) for the duration
    of the command."""
    env = dict(os.environ if environ is None else environ)
    record = DataFolder(service.data_dir).running()
    if record is not None and _reachable(record.redis_url):
        settings = dataclasses.replace(Settings.from_env(env), redis_url=record.redis_url,
                                       data_dir=service.data_dir.resolve())  # fmt: skip
        registry = Registry.from_toml(record.models) if record.models else Registry.from_env(env)
        client = JobClient(settings, registry=registry)
        try:
            yield Connection(client, notice_for(registry), f"the running dreamloom up (pid {record.pid})",
                             record.web_url)  # fmt: skip
        finally:
            client.redis.close()
        return
    if env.get("REDIS_URL"):
        registry = Registry.from_env(env)
        client = JobClient(Settings.from_env(env), registry=registry)
        try:
            yield Connection(client, notice_for(registry), "the job system of REDIS_URL")
        finally:
            client.redis.close()
        return
    system = LocalJobSystem(service, env, say=lambda line: None, worker=worker)
    hurry = threading.Event()
    if worker:
        say(f"No dreamloom service is running: starting one for this command (data in {system.folder.path}) ...")
    try:
        system.start()
        assert system.models is not None
        client = system.client()
        try:
            yield Connection(client, system.models.notice, "an embedded job system", system=system)
        finally:
            client.redis.close()
    finally:
        previous = signal.signal(signal.SIGINT, lambda *_: hurry.set())
        try:
            system.stop(hurry)
        finally:
            signal.signal(signal.SIGINT, previous)


def _models_file(env: Mapping[str, str]) -> str | None:
    models = env.get("DREAMLOOM_MODELS")
    return str(Path(models).resolve()) if models else None


def _reachable(redis_url: str) -> bool:
    client = Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except RedisError:
        return False
    finally:
        client.close()
