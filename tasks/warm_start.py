"""Warm start: before a worker consumes a queue, it loads and warms the models it serves, and takes back the
jobs a killed run of it left unacknowledged.

Why before: a model loaded inside the first job made that job pay for it (tens of seconds for SDXL from disk,
minutes with ``torch.compile``), and a job's time limit is not the place for it (``tasks.deadlines``). So
``tasks.celery_worker`` calls ``warm_up`` from Celery's ``worker_init``, in the worker's main process, before
the consumer starts: no job is taken until every model has loaded and made one small generation (which is
also the compile warm-up where the entry compiles). An engine may do its own warm-up: a ``warm_up(alias)``
method, when it has one, is called instead of the generation.

Why take jobs back: the worker runs its jobs in threads of one process, so a crash (a driver fault, the OOM
killer, our own hard-limit watchdog) takes the whole process, not a pool child whose parent gives the
message back. Redis keeps such a message unacknowledged until its visibility timeout (an hour), so
``reclaim`` gives every unacknowledged message of this worker's queues back to its queue unless a live
attempt holds the job (a fresh heartbeat of a process that exists). A message that another live worker has
reserved but not started is given back too; that is safe, as a job delivered twice runs once
(``tasks.job_store``), and it costs only a second look at the job.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from celery import Celery

from engine.contract import ImageEngine
from engine.prompt import parse
from engine.registry import ModelEntry, Registry
from tasks.job_store import JobStore
from tasks.routing import served_by
from tasks.worker import process_gone

__all__ = ["models_to_warm", "reclaim", "warm_up"]

log = logging.getLogger(__name__)


def models_to_warm(registry: Registry, queues: Iterable[str]) -> list[ModelEntry]:
    """The registry's models the worker consumes the queues of (``dreamloom.model.<model>.<mode>``: what it
    announces as loaded), or with no model queue, every model of its families' queues."""
    families, models = served_by(queues)
    if models:
        return [entry for entry in registry.entries if entry.alias in models]
    return [entry for entry in registry.entries if entry.family in families]


def warm_up(engine: ImageEngine, entries: Iterable[ModelEntry]) -> dict[str, float]:
    """Load and warm each model (one small generation, or the engine's own ``warm_up``); seconds by alias.
    A model that cannot load raises here, so the worker stops before it takes a job it would fail."""
    own = getattr(engine, "warm_up", None)
    seconds = {}
    for entry in entries:
        started = time.perf_counter()
        if callable(own):
            own(entry.alias)
        else:
            request = dataclasses.replace(parse("warm-up --seed 1"), model=entry.alias)
            engine.imagine(request, seed=1)
        seconds[entry.alias] = time.perf_counter() - started
        log.info("warmed model %s in %.2fs", entry.alias, seconds[entry.alias])
    return seconds


def reclaim(app: Celery, store: JobStore, queues: Iterable[str]) -> list[str]:
    """Give this worker's queues back the messages no live attempt holds (see the module's docstring);
    returns their job ids."""
    wanted = set(queues)
    reclaimed = []
    with app.connection_for_write() as connection:
        channel: Any = connection.default_channel
        client = channel.client
        for tag, raw in client.hgetall(channel.unacked_key).items():
            try:
                message, _exchange, routing_key = json.loads(raw)
                job_id = str(message["headers"]["id"])
            except (ValueError, KeyError, TypeError):
                continue  # not a task message of ours
            if routing_key not in wanted or _held(store, job_id):
                continue
            channel.qos.restore_by_tag(tag, client)
            reclaimed.append(job_id)
    if reclaimed:
        log.info("gave %d unacknowledged job(s) back to the queues: %s", len(reclaimed), ", ".join(reclaimed))
    return reclaimed


def _held(store: JobStore, job_id: str) -> bool:
    """Whether a live attempt holds the job: a heartbeat whose process is not known to be gone."""
    holder = store.heartbeat_holder(job_id)
    return holder is not None and not process_gone(holder)
