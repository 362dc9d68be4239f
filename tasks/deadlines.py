"""A job's time limit, kept by the worker itself rather than by Celery.

Why not Celery's soft and hard time limits: their clock starts when the task starts, so a model loaded inside
a job (the first job of a worker before warm starts, a model swapped in later) spent the job's limit on
loading, and a job for SDXL with ``torch.compile`` failed "took longer than its time limit" before it drew
anything. They also need a process per job to signal, and the worker now runs its jobs in threads (one
renders while another encodes and uploads, ``tasks.worker``), where Celery has no time limits at all.

So the clock is ours (``Deadline``):

- it starts when the job has the GPU (``tasks.worker``'s render lock), not while it waits for the job
  before it;
- the seconds the engine spent loading models meanwhile (``ImageEngine.load_times``) are given back;
- it is read at every denoising step, from the engine's cancel check (``engine.actions.Work.cancel``): past
  the soft limit the job fails with "took longer than its time limit" (``OverTime``);
- a step that never returns (a hung driver) checks nothing, so one ``Watchdog`` thread per process ends the
  whole process (``os._exit``) once a render is past its hard limit. The job's message was not acknowledged,
  so it is delivered again after the restart, and ``max_attempts`` bounds how often. The watchdog arms at
  a job's first step: before it, the engine may be loading a model, which is never timed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

__all__ = ["WATCHDOG_EXIT", "Deadline", "OverTime", "Watchdog"]

log = logging.getLogger(__name__)

WATCHDOG_EXIT = 75  # EX_TEMPFAIL: the worker's supervisor (tasks.worker_process) starts it again


class OverTime(Exception):
    """Raised from a job's step check when the job is past its soft limit."""


class Deadline:
    """One job's soft and hard limits, in seconds of rendering (time spent loading models not counted)."""

    def __init__(
        self,
        soft: float,
        hard: float,
        load_times: Callable[[], Mapping[str, float]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.soft = soft
        self.hard = hard
        self.clock = clock
        self._load_times = load_times
        self._loaded_before = dict(load_times())
        self.started = clock()
        self.loading = 0.0  # seconds of model loading during the job, as of the last check
        self.armed = False  # a step was reached: the watchdog may act

    def elapsed(self) -> float:
        """Seconds the job has run, less the loading known at the last check."""
        return self.clock() - self.started - self.loading

    def check(self) -> None:
        """Called at every step (in the job's thread): raise ``OverTime`` past the soft limit."""
        self.loading = self._loading_since_start()
        self.armed = True
        if self.elapsed() > self.soft:
            raise OverTime(f"rendered for {self.elapsed():.1f}s, over its limit of {self.soft:g}s")

    def past_hard_limit(self) -> bool:
        return self.armed and self.elapsed() > self.hard

    def _loading_since_start(self) -> float:
        """Seconds of the models loaded (or loaded again) since the job started."""
        now = self._load_times()
        return sum(seconds for alias, seconds in now.items() if self._loaded_before.get(alias) != seconds)


class Watchdog:
    """Ends the process when a render is stuck past its hard limit (see the module's docstring).

    One per process; ``watch`` registers a render for as long as it runs. ``exit`` is ``os._exit`` in a worker
    (no clean-up can run behind a hung driver call, and none is needed: nothing was acknowledged)."""

    def __init__(self, interval: float = 1.0, exit: Callable[[int], object] = os._exit) -> None:
        self.interval = interval
        self.exit = exit
        self._watched: dict[int, tuple[str, Deadline]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watch(self, job_id: str, deadline: Deadline) -> Iterator[Deadline]:
        key = id(deadline)
        with self._lock:
            self._watched[key] = (job_id, deadline)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="dreamloom-watchdog", daemon=True)
                self._thread.start()
        try:
            yield deadline
        finally:
            with self._lock:
                self._watched.pop(key, None)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                stuck = [(job_id, d) for job_id, d in self._watched.values() if d.past_hard_limit()]
            for job_id, deadline in stuck:
                log.critical("job %s: stuck for %.0fs, past its hard limit of %gs; ending this worker process so "
                             "that it starts again and the job is delivered again", job_id, deadline.elapsed(),
                             deadline.hard)  # fmt: skip
                logging.shutdown()
                self.exit(WATCHDOG_EXIT)
                return
