"""Prometheus metrics for every dreamloom process (workers, the bot, the web playground).

Series (all prefixed ``dreamloom_``)::

    queue_depth{queue}               jobs waiting in each queue (read from Redis at scrape time)
    jobs{status}                     jobs queued, held or running now; done, failed, cancelled so far (Redis)
    workers{family}                  workers seen in the last five minutes (Redis)
    job_stage_seconds{stage}         histogram: wait (queue), render, store (workers), post (bot)
    jobs_finished_total{status}      jobs this process finished
    events_undelivered_total{reason} job events a front end gave up on: refused (Discord answered 4xx) or
                                     set_aside (failed too often; kept in the dead-letter stream)
    model_load_seconds{model}        how long loading each model took (workers)
    gpu_memory_bytes{kind}           allocated now and peak (workers with CUDA)

Workers with a prefork pool record in child processes: with ``PROMETHEUS_MULTIPROC_DIR`` set (the
``dreamloom worker`` command sets it) the parent's endpoint adds up every child's files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from tasks.job_store import JobStore
from tasks.routing import queue_name

__all__ = [
    "FINISHED",
    "GPU_MEMORY",
    "MODEL_LOAD",
    "STAGE_SECONDS",
    "UNDELIVERED",
    "RedisCollector",
    "exposition",
    "registry_for",
]

_STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800)

STAGE_SECONDS = Histogram(
    "dreamloom_job_stage_seconds", "Seconds a job spent in each stage", ["stage"], buckets=_STAGE_BUCKETS
)
FINISHED = Counter("dreamloom_jobs_finished_total", "Jobs this process finished, by final status", ["status"])
UNDELIVERED = Counter("dreamloom_events_undelivered_total", "Job events a front end gave up on, by reason", ["reason"])
MODEL_LOAD = Gauge("dreamloom_model_load_seconds", "Seconds loading each model took", ["model"],
                   multiprocess_mode="max")  # fmt: skip
GPU_MEMORY = Gauge("dreamloom_gpu_memory_bytes", "GPU memory of this worker", ["kind"], multiprocess_mode="max")


class RedisCollector:
    """Gauges read from Redis when scraped: the same numbers from every process that exposes them."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("dreamloom_queue_depth", "Jobs waiting in each queue", labels=["queue"])
        families = self.store.families_waiting()
        for family, modes in sorted(families.items()):
            for mode, count in sorted(modes.items()):
                depth.add_metric([queue_name(family, mode)], count)
        yield depth
        jobs = GaugeMetricFamily("dreamloom_jobs", "Jobs by status (ended ones: so far)", labels=["status"])
        for status, count in sorted(self.store.counts().items()):
            jobs.add_metric([status], max(0, count))
        yield jobs
        workers = GaugeMetricFamily("dreamloom_workers", "Workers seen in the last five minutes", labels=["family"])
        for family in sorted(families):
            workers.add_metric([family], self.store.workers(family))
        yield workers


def registry_for(store: JobStore | None) -> CollectorRegistry:
    """A registry with this process's metrics (or all pool processes', in multiprocess mode) and Redis's."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for metric in (STAGE_SECONDS, FINISHED, UNDELIVERED, MODEL_LOAD, GPU_MEMORY):
            registry.register(metric)
    if store is not None:
        registry.register(RedisCollector(store))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def record_model_loads(load_times: Mapping[str, float]) -> None:
    """Copy an engine's model load times (``ImageEngine.load_times()``) into MODEL_LOAD."""
    for alias, seconds in load_times.items():
        MODEL_LOAD.labels(model=alias).set(seconds)


def record_gpu_memory() -> None:
    """GPU memory of this process, when it uses CUDA (torch is only looked at if already imported)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return
    GPU_MEMORY.labels(kind="allocated").set(torch.cuda.memory_allocated())
    GPU_MEMORY.labels(kind="peak").set(torch.cuda.max_memory_allocated())
