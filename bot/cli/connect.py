"""The job system a command uses, found the same way by every command (``bot.cli.services.find_running``):

1. the running ``dreamloom up`` of the data folder named with ``--data-dir`` or DREAMLOOM_DATA_DIR, of
   ./dreamloom-data, or else this user's only running one;
2. else the job system of REDIS_URL (a deployment);
3. else one started for the command alone on its data folder (a private Redis, and a worker when the
   command makes a job), said out loud; commands that only read what exists (``jobs``, ``cancel``, the
   buttons) refuse instead when that folder holds nothing yet, and say how to find the right one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.cli.local_system import LocalJobSystem
from bot.cli.services import NoService, Say, ServiceRecord, find_running, say
from bot.cli.settings import ServiceSettings
from engine.registry import ModelNotice, Registry
from tasks.client import JobClient
from tasks.settings import Settings

__all__ = ["Connection", "connect", "job_system_of"]


@dataclass
class Connection:
    client: JobClient
    notice: ModelNotice | None
    how: str  # in words: which job system the command uses
    web_url: str | None = None
    system: LocalJobSystem | None = None  # the job system this command started for itself


def job_system_of(record: ServiceRecord, environ: Mapping[str, str]) -> tuple[Settings, Registry]:
    """The settings and models to reach a running ``up`` with: its Redis, its data folder, its models file."""
    settings = dataclasses.replace(Settings.from_env(environ), redis_url=record.redis_url,
                                   data_dir=Path(record.data_dir))  # fmt: skip
    registry = Registry.from_toml(record.models) if record.models else Registry.from_env(environ)
    return settings, registry


@contextlib.contextmanager
def connect(
    service: ServiceSettings,
    environ: Mapping[str, str] | None = None,
    say: Say = say,
    *,
    worker: bool = True,
    needs_data: bool = False,
) -> Iterator[Connection]:
    """The job system for a command (see the module's docstring). ``worker``: the command makes a job, so a
    job system started for it runs a worker. ``needs_data``: the command works on jobs that must exist."""
    env = dict(os.environ if environ is None else environ)
    record = find_running(service, env)
    if record is not None:
        settings, registry = job_system_of(record, env)
        how = f"the dreamloom up running on {record.data_dir} (pid {record.pid})"
        with JobClient(settings, registry=registry) as client:
            yield Connection(client, registry.notice, how, record.web_url)
        return
    if env.get("REDIS_URL"):
        registry = Registry.from_env(env)
        with JobClient(Settings.from_env(env), registry=registry) as client:
            yield Connection(client, registry.notice, "the job system of REDIS_URL")
        return
    folder = service.data_dir.resolve()
    if needs_data and not (folder / "redis").is_dir():
        raise NoService(
            f"No dreamloom is running, and {folder} holds no jobs: start one with `dreamloom up`, or pass "
            "--data-dir with the folder your jobs are in"
        )
    system = LocalJobSystem(service, env, say=lambda line: None, worker=worker)
    if worker:
        say(f"No dreamloom is running: starting one for this command, with its data in {folder} "
            "(`dreamloom up` keeps one running; --data-dir picks another folder) ...")  # fmt: skip
    hurry = threading.Event()
    idle = False  # nothing waits or runs: the worker has nothing to finish
    try:
        system.start()
        assert system.registry is not None
        with system.client() as client:
            yield Connection(client, system.registry.notice, "a job system started for this command", system=system)
            counts = client.store.counts()
            idle = counts["queued"] + counts["held"] + counts["running"] == 0
    finally:
        previous = signal.signal(signal.SIGINT, lambda *_: hurry.set())
        try:
            system.stop(hurry, idle=idle)
        finally:
            signal.signal(signal.SIGINT, previous)
