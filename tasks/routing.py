"""Where a job goes and how long it may take: queue, priority and time limits.

Each model family has two queues, ``dreamloom.<family>.fast`` and ``dreamloom.<family>.relax``; a worker
consumes the families it serves. Redis priorities are strict (0 first) and apply across a worker's queues:
fast jobs get 0-4 and relax jobs 5-9, so a relax job runs only when no fast job waits; within each, the
priority is the owner's number of jobs already queued or running (capped), so one user's flood never goes
ahead of another user's first job.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tasks.records import FAST, MODES, Job
from tasks.settings import Settings

__all__ = ["PRIORITY_LEVELS", "Dispatcher", "priority", "queue_name", "time_limits", "worker_queues"]

PRIORITY_LEVELS = 10
_RELAX_OFFSET = 5
_MAX_RANK = 4
_BASE_SECONDS = 60.0


def queue_name(family: str, mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
    return f"dreamloom.{family}.{mode}"


def worker_queues(families: Iterable[str], modes: Iterable[str] = MODES) -> list[str]:
    """A worker's queues: every fast queue before every relax queue."""
    families = list(dict.fromkeys(families))
    return [queue_name(family, mode) for mode in MODES if mode in set(modes) for family in families]


def priority(mode: str, rank: int) -> int:
    """0 is taken first: a user's first fast job 0, their second 1 ... relax jobs from 5."""
    return min(rank, _MAX_RANK) + (0 if mode == FAST else _RELAX_OFFSET)


def time_limits(work: int, settings: Settings) -> tuple[int, int]:
    """(soft, hard) seconds for a job of ``work`` pixel-steps: a minute, plus the configured seconds per
    megapixel-step, capped by ``max_job_seconds``; the hard limit leaves a quarter more for cleanup."""
    soft = min(float(settings.max_job_seconds), _BASE_SECONDS + work / 1e6 * settings.seconds_per_megapixel_step)
    return int(soft), int(soft * 1.25) + 10


class Dispatcher:
    """Hands admitted jobs to the broker."""

    def __init__(self, celery: Any, store: Any, settings: Settings, task_name: str) -> None:
        self.celery = celery
        self.store = store
        self.settings = settings
        self.task_name = task_name

    def send(self, job: Job, rank: int) -> None:
        soft, hard = time_limits(job.work, self.settings)
        level = priority(job.mode, rank)
        self.celery.send_task(
            self.task_name,
            args=[job.id],
            task_id=job.id,
            queue=queue_name(job.family, job.mode),
            priority=level,
            soft_time_limit=soft,
            time_limit=hard,
        )
        self.store.mark_sent(job, level)
