"""The command that runs a worker: ``celery worker`` on the queues of the model families it serves.

``dreamloom worker`` becomes this command; ``dreamloom up``, a command line that starts a job system of its
own, and the jobs benchmark run it as a child process. One command for all of them, so every worker runs
the same way a production deployment's does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from tasks.records import MODES
from tasks.routing import worker_queues

__all__ = ["worker_command"]


def worker_command(
    families: Iterable[str],
    concurrency: int = 1,
    name: str | None = None,
    loglevel: str = "INFO",
    modes: Iterable[str] = MODES,
) -> list[str]:
    """``celery worker`` for the queues of ``families`` (fast and/or relax): prefork pool, ``concurrency``
    processes (one per GPU: each loads its models once)."""
    queues = worker_queues(sorted(set(families)), modes)
    return [
        sys.executable, "-m", "celery", "-A", "tasks.celery_worker", "worker",
        "-P", "prefork", "-c", str(concurrency), "-Q", ",".join(queues),
        "-n", name or f"dreamloom-{os.getpid()}@%h",
        "--without-mingle", "--without-gossip", "-l", loglevel,
    ]  # fmt: skip
