"""Where a job goes and how long it may take: queue, priority and time limits.

Two kinds of queue, each in a fast and a relax flavour:

- ``dreamloom.model.<model>.<mode>``: one model's jobs. A worker started for a set of models consumes these
  first, and announces the models in its heartbeat (``JobStore.models_seen``). A job goes here only while a
  live worker announces its model, so it lands where that model is already loaded instead of making a
  worker of the family swap models in and out of its small cache (two models of one family used to share one
  queue and evict each other).
- ``dreamloom.<family>.<mode>``: the fallback, consumed by every worker of the family. A job goes here when
  no live worker announces its model; whoever takes it may have to load the model first, so its time limits
  get the model's load time on top (``load_allowance``): loading must never make a job "too slow".

A model's name is the operator's (registry aliases are checked there), but a queue name must be safe and
unambiguous whatever a record says, so ``model_queue_name`` escapes every character outside ``[a-z0-9-]``
as ``_xx`` (its UTF-8 bytes in hex): distinct names give distinct queues, and a name cannot end a queue name
early or smuggle in a mode (``v6.fast`` is ``v6_2efast``).

Redis priorities are strict (0 first) and apply across all of a worker's queues (kombu polls priority level
by level, each level over the queues in their listed order): fast jobs get 0-4 and relax jobs 5-9, so a relax
job runs only when no fast job waits; within each, the priority is the owner's number of jobs already queued
or running (capped), so one user's flood never goes ahead of another user's first job. Model queues change
none of this: they only decide which workers may take a job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tasks.records import FAST, MODES, Job
from tasks.settings import MAX_LOAD_ALLOWANCE_SECONDS, Settings

__all__ = [
    "MAX_MODEL_NAME_BYTES",
    "PRIORITY_LEVELS",
    "Dispatcher",
    "Route",
    "load_allowance",
    "model_queue_name",
    "priority",
    "queue_name",
    "served_by",
    "time_limits",
    "worker_queues",
]

log = logging.getLogger(__name__)

PRIORITY_LEVELS = 10
_RELAX_OFFSET = 5
_MAX_RANK = 4
_BASE_SECONDS = 60.0
MAX_MODEL_NAME_BYTES = 64  # registry aliases are at most 32 characters; anything longer is not a model
_PREFIX = "dreamloom."
_MODEL_PREFIX = "dreamloom.model."
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
# A recorded load time is one measurement on one machine; a job that may have to load gets half again, and
# a little more for a disk that is busy at that moment.
_LOAD_FACTOR = 1.5
_LOAD_MARGIN_SECONDS = 15.0


def queue_name(family: str, mode: str) -> str:
    """A family's (fallback) queue. ``model`` is not a family: its queues are the models' own."""
    _check_mode(mode)
    if not family or family == "model" or not set(family) <= _SAFE:
        raise ValueError(f"a model family is lower-case letters, digits and '-' (got {family!r})")
    return f"{_PREFIX}{family}.{mode}"


def model_queue_name(model: str, mode: str) -> str:
    """A model's own queue; ``ValueError`` for an empty name or one over ``MAX_MODEL_NAME_BYTES``."""
    _check_mode(mode)
    return f"{_MODEL_PREFIX}{_escape(model)}.{mode}"


def worker_queues(families: Iterable[str], modes: Iterable[str] = MODES, models: Iterable[str] = ()) -> list[str]:
    """A worker's queues in the order it polls them: its models' queues, then its families' (each fast
    before relax). The order matters only between jobs of the same priority: a job for a model the worker
    has loaded goes before a fallback job that may make it load another."""
    families = list(dict.fromkeys(families))
    models = list(dict.fromkeys(models))
    chosen = [mode for mode in MODES if mode in set(modes)]
    return [model_queue_name(model, mode) for mode in chosen for model in models] + [
        queue_name(family, mode) for mode in chosen for family in families
    ]


def served_by(queues: Iterable[str]) -> tuple[list[str], list[str]]:
    """(families, models) a worker serves, read back from the names of the queues it consumes (what its
    heartbeat announces); names that are neither kind are left out."""
    families: dict[str, None] = {}
    models: dict[str, None] = {}
    for name in queues:
        head, _, mode = name.rpartition(".")
        if mode not in MODES:
            continue
        if head.startswith(_MODEL_PREFIX):
            model = _unescape(head.removeprefix(_MODEL_PREFIX))
            if model is not None:
                models[model] = None
        elif head.startswith(_PREFIX) and head.count(".") == 1 and head + "." != _MODEL_PREFIX:
            families[head.removeprefix(_PREFIX)] = None
    return list(families), list(models)


def priority(mode: str, rank: int) -> int:
    """0 is taken first: a user's first fast job 0, their second 1 ... relax jobs from 5."""
    return min(rank, _MAX_RANK) + (0 if mode == FAST else _RELAX_OFFSET)


def time_limits(work: int, settings: Settings, load_seconds: float = 0.0) -> tuple[int, int]:
    """(soft, hard) seconds for a job of ``work`` pixel-steps: a minute, plus the configured seconds per
    megapixel-step, capped by ``max_job_seconds``; plus ``load_seconds`` (capped) when the worker that takes
    it may have to load its model first. The hard limit leaves a quarter more for cleanup."""
    render = min(float(settings.max_job_seconds), _BASE_SECONDS + work / 1e6 * settings.seconds_per_megapixel_step)
    soft = render + min(max(0.0, load_seconds), float(MAX_LOAD_ALLOWANCE_SECONDS))
    return int(soft), int(soft * 1.25) + 10


def load_allowance(family: str, recorded: float | None, settings: Settings) -> float:
    """Seconds a job may need for loading its model on a worker that does not have it: the model's recorded
    load time with a margin, or, before any worker has loaded it, the family's default (conservative:
    ``DREAMLOOM_MODEL_LOAD_SECONDS`` or the built-in table in ``tasks.settings``)."""
    if recorded is not None and recorded >= 0:
        return recorded * _LOAD_FACTOR + _LOAD_MARGIN_SECONDS
    return settings.model_load_seconds_for(family)


@dataclass(frozen=True)
class Route:
    """Where one job goes, and the load time its limits include (0 on its model's own queue)."""

    queue: str
    load_seconds: float


class Dispatcher:
    """Hands admitted jobs to the broker: to a worker that has the job's model when one announces it, else
    to the family's queue with time for loading."""

    def __init__(self, celery: Any, store: Any, settings: Settings, task_name: str) -> None:
        self.celery = celery
        self.store = store
        self.settings = settings
        self.task_name = task_name

    def route(self, job: Job) -> Route:
        try:
            own = model_queue_name(job.model, job.mode)
        except ValueError:  # not a name a queue can carry (an old or damaged record): the family serves it
            log.warning("job %s: model %r cannot have a queue of its own; sent to its family's", job.id, job.model)
            own = None
        if own is not None and self.store.model_workers(job.model) > 0:
            return Route(own, 0.0)
        recorded = self.store.load_time(job.model)
        return Route(queue_name(job.family, job.mode), load_allowance(job.family, recorded, self.settings))

    def send(self, job: Job, rank: int) -> None:
        route = self.route(job)
        soft, hard = time_limits(job.work, self.settings, route.load_seconds)
        level = priority(job.mode, rank)
        self.celery.send_task(
            self.task_name,
            args=[job.id],
            task_id=job.id,
            queue=route.queue,
            priority=level,
            soft_time_limit=soft,
            time_limit=hard,
        )
        self.store.mark_sent(job, level, route.queue)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")


def _escape(model: str) -> str:
    """``[a-z0-9-]`` as is, every other UTF-8 byte as ``_xx``: injective, and only safe characters."""
    raw = model.encode("utf-8", "surrogatepass")
    if not raw or len(raw) > MAX_MODEL_NAME_BYTES:
        raise ValueError(f"a model name is 1-{MAX_MODEL_NAME_BYTES} bytes (got {len(raw)})")
    return "".join(chr(byte) if chr(byte) in _SAFE else f"_{byte:02x}" for byte in raw)


def _unescape(text: str) -> str | None:
    """The model an escaped name stands for; None unless ``text`` is exactly what ``_escape`` writes."""
    out = bytearray()
    index = 0
    while index < len(text):
        char = text[index]
        if char == "_":
            pair = text[index + 1 : index + 3]
            if len(pair) != 2 or not set(pair) <= set("0123456789abcdef"):
                return None
            out.append(int(pair, 16))
            index += 3
        elif char in _SAFE:
            out.append(ord(char))
            index += 1
        else:
            return None
    try:
        model = out.decode("utf-8", "surrogatepass")
        return model if _escape(model) == text else None
    except (UnicodeDecodeError, ValueError):
        return None
