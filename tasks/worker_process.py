"""The command that runs a worker: ``celery worker`` on the queues of the models and families it serves.

``dreamloom worker`` becomes this command; ``dreamloom up``, a command line that starts a job system of its
own, and the jobs benchmark run it as a child process. One command for all of them, so every worker runs
the same way a production deployment's does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from engine.registry import Registry
from tasks.records import MODES
from tasks.routing import worker_queues

__all__ = ["served_models", "worker_command"]


def worker_command(
    families: Iterable[str],
    concurrency: int = 1,
    name: str | None = None,
    loglevel: str = "INFO",
    modes: Iterable[str] = MODES,
    models: Iterable[str] = (),
) -> list[str]:
    """``celery worker`` for the queues of ``models`` first, then of ``families`` (fast and/or relax):
    prefork pool, ``concurrency`` processes (one per GPU: each loads its models once)."""
    queues = worker_queues(sorted(set(families)), modes, models)
    return [
        sys.executable, "-m", "celery", "-A", "tasks.celery_worker", "worker",
        "-P", "prefork", "-c", str(concurrency), "-Q", ",".join(queues),
        "-n", name or f"dreamloom-{os.getpid()}@%h",
        "--without-mingle", "--without-gossip", "-l", loglevel,
    ]  # fmt: skip


def served_models(
    registry: Registry, families: Iterable[str] | None = None, models: Iterable[str] | None = None
) -> tuple[list[str], list[str]]:
    """(families, models) a worker serves: the named ``models`` (any registry name: ``--v 6`` style too) and
    their families besides ``families``; with no models named, every registry model of ``families`` (all of
    the registry's when none are named either). ``UnknownModel`` names a model the registry lacks."""
    named = [registry.resolve(name) for name in models or ()]
    chosen = list(dict.fromkeys(families or ()))
    if named:
        chosen += [entry.family for entry in named if entry.family not in chosen]
        return chosen, list(dict.fromkeys(entry.alias for entry in named))
    if not chosen:
        chosen = list(dict.fromkeys(entry.family for entry in registry.entries))
    return chosen, [entry.alias for entry in registry.entries if entry.family in chosen]
