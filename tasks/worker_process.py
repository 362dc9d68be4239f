"""The command that runs a worker: ``celery worker`` on the queues of the models and families it serves,
under a small supervisor that starts it again when it crashes.

``dreamloom worker`` becomes this command; ``dreamloom up``, a command line that starts a job system of its
own, and the jobs benchmark run it as a child process. One command for all of them, so every worker runs
the same way a production deployment's does.

Why a supervisor: the worker runs its jobs in threads of one process that holds the engine (``tasks.worker``
says why). With the prefork pool, a pool child killed by a driver fault or the OOM killer was replaced by its
parent; with threads, the whole worker goes. So ``python -m tasks.worker_process CELERY-ARGS`` runs ``celery``
as its child and starts it again when it ends by a signal or by the hard-limit watchdog
(``tasks.deadlines.WATCHDOG_EXIT``), after a pause that doubles while it keeps crashing (0.5 s up to 30 s).
The new run warms up and takes back the unacknowledged jobs of the last (``tasks.warm_start``). Any other
exit (a bad setting, a model that cannot load, a clean stop) ends the supervisor with the same status.
SIGTERM, SIGINT and SIGQUIT are passed on to the worker (Celery's warm and cold shutdowns) and end the
supervisor after it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from types import FrameType

from engine.registry import Registry
from tasks.deadlines import WATCHDOG_EXIT
from tasks.processes import die_with_parent
from tasks.records import MODES
from tasks.routing import worker_queues

__all__ = ["DEFAULT_CONCURRENCY", "served_models", "supervise", "worker_command"]

DEFAULT_CONCURRENCY = 2  # one job renders while one encodes and uploads; 1: no overlap
FIRST_PAUSE, LONGEST_PAUSE, STABLE_SECONDS = 0.5, 30.0, 60.0


def worker_command(
    families: Iterable[str],
    concurrency: int = DEFAULT_CONCURRENCY,
    name: str | None = None,
    loglevel: str = "INFO",
    modes: Iterable[str] = MODES,
    models: Iterable[str] = (),
) -> list[str]:
    """The supervised ``celery worker`` for the queues of ``models`` first, then of ``families`` (fast and/or
    relax): threads pool with ``concurrency`` threads sharing one engine (one per GPU: run a worker per GPU)."""
    queues = worker_queues(sorted(set(families)), modes, models)
    return [
        sys.executable, "-m", "tasks.worker_process", "-A", "tasks.celery_worker", "worker",
        "-P", "threads", "-c", str(concurrency), "-Q", ",".join(queues),
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


def supervise(celery_args: Sequence[str]) -> int:
    """Run ``celery CELERY-ARGS``, starting it again after a crash (see the module's docstring)."""
    stopping: list[int] = []
    child: subprocess.Popen[bytes] | None = None

    def pass_on(number: int, _frame: FrameType | None) -> None:
        stopping.append(number)
        if child is not None and child.poll() is None:
            child.send_signal(number)

    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):  # warm, and cold shutdowns
        signal.signal(number, pass_on)
    pause = FIRST_PAUSE
    while True:
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", "celery", *celery_args], preexec_fn=die_with_parent)
        while True:
            try:
                status = child.wait()
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries wait() itself
                continue
        if stopping or not (status < 0 or status == WATCHDOG_EXIT):
            return status if status >= 0 else 128 - status
        if time.monotonic() - started > STABLE_SECONDS:
            pause = FIRST_PAUSE
        how = f"was killed by signal {-status} ({_name(-status)})" if status < 0 else "ended a stuck job"
        print(f"dreamloom worker: the worker (pid {child.pid}) {how}; starting it again in {pause:g}s",
              file=sys.stderr, flush=True)  # fmt: skip
        time.sleep(pause)
        if stopping:
            return 128 + stopping[0]
        pause = min(LONGEST_PAUSE, pause * 2)


def _name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(supervise(sys.argv[1:]))
