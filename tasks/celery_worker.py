"""The worker app configured from the environment: ``celery -A tasks.celery_worker worker -Q ...``
(what ``dreamloom worker`` runs).

Besides the app, this entry point sets up what only a real worker process wants: logging with the job id
on every line, a /metrics and /healthz endpoint in the main process (DREAMLOOM_METRICS_PORT), and a
heartbeat that tells ``dreamloom health`` which model families have a worker, even while it is idle, and
tells dispatchers which models it serves from their own queues (``tasks.routing``): the models of its
``dreamloom.model.*`` queues, which a worker consumes once it has them loaded.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import signals
from prometheus_client import multiprocess
from redis import Redis

from tasks.health import run_checks
from tasks.job_store import WORKER_ALIVE_SECONDS, JobStore
from tasks.logs import setup_logging
from tasks.metrics import registry_for
from tasks.ops_server import start_ops_server
from tasks.routing import served_by
from tasks.settings import Settings
from tasks.worker import create_worker_app

log = logging.getLogger(__name__)

settings = Settings.from_env()
app = create_worker_app(settings)


def _logging(logfile: str | None = None, **_: Any) -> None:
    """Our format (job id on every line) instead of Celery's; ``celery worker -f FILE`` still picks the file."""
    setup_logging(settings.log_level, settings.log_format, logfile or None)


def _ready(sender: Any, **_: Any) -> None:
    store = JobStore(Redis.from_url(settings.redis_url))
    queues = [queue.name for queue in sender.task_consumer.queues]
    families, models = served_by(queues)
    families = sorted(families)
    hostname = sender.hostname

    def heartbeat() -> None:
        while True:
            try:
                for family in families:
                    store.worker_seen(family, hostname)
                store.models_seen(hostname, models)
            except Exception:
                log.warning("could not announce this worker to Redis; retrying", exc_info=True)
            stopped.wait(WORKER_ALIVE_SECONDS / 5)

    stopped = threading.Event()
    threading.Thread(target=heartbeat, name="dreamloom-heartbeat", daemon=True).start()
    if settings.metrics_port:
        start_ops_server(
            settings.metrics_host, settings.metrics_port, registry_for(store), lambda: run_checks(settings, families)
        )


def _child_gone(pid: int | None = None, **_: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]


signals.setup_logging.connect(_logging, weak=False)
signals.worker_ready.connect(_ready, weak=False)
signals.worker_process_shutdown.connect(_child_gone, weak=False)
