"""The worker app configured from the environment: ``celery -A tasks.celery_worker worker -Q ...``
(what ``dreamloom worker`` runs, under ``tasks.worker_process``'s supervisor).

Besides the app, this entry point sets up what only a real worker process wants: logging with the job id
on every line, a /metrics and /healthz endpoint (DREAMLOOM_METRICS_PORT), a heartbeat that tells
``dreamloom health`` which model families have a worker, even while it is idle, and the warm start:

1. ``worker_init`` (the main process, before the consumer exists): the heartbeat starts, saying "warming",
   and /healthz answers 503 ("warming"); the engine is built and every model the worker serves is loaded and
   warmed (``tasks.warm_start``); the jobs a killed run of this worker left unacknowledged go back to the
   queues. Only then does Celery start consuming, so no job waits on a model load or pays for it.
2. ``worker_ready`` (Celery logs "ready."): the heartbeat says "ready" and /healthz answers 200, and from
   then on it also tells dispatchers which models this worker has loaded (``tasks.routing``: the models of its
   ``dreamloom.model.*`` queues), so jobs for them go to those queues and none waits for a load.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import signals
from prometheus_client import multiprocess
from redis import Redis

from engine.registry import Registry
from tasks.health import Check, run_checks
from tasks.job_store import WORKER_ALIVE_SECONDS, JobStore
from tasks.logs import setup_logging
from tasks.metrics import registry_for
from tasks.ops_server import start_ops_server
from tasks.routing import served_by
from tasks.settings import Settings
from tasks.warm_start import models_to_warm, reclaim, warm_up
from tasks.worker import create_worker_app

log = logging.getLogger(__name__)

settings = Settings.from_env()
app = create_worker_app(settings)
WARMING = "warming: loading and warming its models before it takes jobs"


class _State:
    """This worker's families and whether it is warm, shared by the heartbeat and /healthz."""

    def __init__(self) -> None:
        self.families: list[str] = []
        self.models: list[str] = []  # announced once warm, so that a job on a model's queue never waits on a load
        self.hostname = ""
        self.ready = threading.Event()
        self.stopped = threading.Event()


state = _State()


def _logging(logfile: str | None = None, **_: Any) -> None:
    """Our format (job id on every line) instead of Celery's; ``celery worker -f FILE`` still picks the file."""
    setup_logging(settings.log_level, settings.log_format, logfile or None)


def _warm_start(sender: Any, **_: Any) -> None:
    """Announce the worker as warming, warm its models, take back its lost jobs (see the module's docstring)."""
    _logging(sender.logfile)  # Celery sets logging up only after worker_init; the warm start's lines count
    queues = sorted(sender.app.amqp.queues.consume_from)
    families, state.models = served_by(queues)
    state.families = sorted(families)
    state.hostname = sender.hostname
    store = JobStore(Redis.from_url(settings.redis_url))
    threading.Thread(target=_heartbeat, args=(store,), name="dreamloom-heartbeat", daemon=True).start()
    if settings.metrics_port:
        start_ops_server(settings.metrics_host, settings.metrics_port, registry_for(store), _checks)
    runtime = app.dreamloom_runtime
    started = time.perf_counter()
    log.info("warming up: loading the models of %s before taking jobs", ", ".join(state.families) or "no family")
    engine = runtime.engine()
    registry = getattr(engine, "registry", None)
    warm_up(engine, models_to_warm(registry if isinstance(registry, Registry) else Registry.from_env(), queues))
    log.info("warm in %.2fs", time.perf_counter() - started)
    reclaim(app, store, queues)


def _ready(**_: Any) -> None:
    state.ready.set()


def _heartbeat(store: JobStore) -> None:
    while not state.stopped.is_set():
        warm = state.ready.is_set()
        try:
            for family in state.families:
                if warm:
                    store.worker_seen(family, state.hostname)
                store.worker_warming(family, state.hostname, not warm)
            if warm:
                store.models_seen(state.hostname, state.models)
        except Exception:
            log.warning("could not announce this worker to Redis; retrying", exc_info=True)
        if warm:
            state.stopped.wait(WORKER_ALIVE_SECONDS / 5)
        else:
            state.ready.wait(WORKER_ALIVE_SECONDS / 5)  # announced as ready as soon as it is


def _checks() -> list[Check]:
    warm = Check("warm", True, "its models are loaded") if state.ready.is_set() else Check("warm", False, WARMING)
    return [*run_checks(settings, state.families), warm]


def _child_gone(pid: int | None = None, **_: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]


signals.setup_logging.connect(_logging, weak=False)
signals.worker_init.connect(_warm_start, weak=False)
signals.worker_ready.connect(_ready, weak=False)
signals.worker_process_shutdown.connect(_child_gone, weak=False)
