"""Engines for fault tests, named by DREAMLOOM_ENGINE_FACTORY in worker subprocesses.

They wrap the real engine (the tiny models of DREAMLOOM_MODELS) and misbehave on purpose.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from engine.generate import Engine


class _Wrapped:
    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


class SlowEngine(_Wrapped):
    """Sleeps at every step (``step_seconds``, or DREAMLOOM_TEST_STEP_SECONDS in a worker subprocess), and
    writes its pid to DREAMLOOM_TEST_PID_FILE when a job starts, so a test can act (kill, cut storage off)
    while a job is running; with DREAMLOOM_TEST_RENDERS, appends each prompt it renders to that file."""

    def __init__(self, engine: Any, step_seconds: float | None = None) -> None:
        super().__init__(engine)
        self.step_seconds = step_seconds

    def imagine(self, request: Any, **options: Any) -> Any:
        pid_file = os.environ.get("DREAMLOOM_TEST_PID_FILE")
        if pid_file:
            Path(pid_file).write_text(str(os.getpid()))
        renders = os.environ.get("DREAMLOOM_TEST_RENDERS")
        if renders:  # one line per render: a test counts how often a prompt was drawn
            with Path(renders).open("a") as handle:
                handle.write(request.prompt + "\n")
        delay = self.step_seconds or float(os.environ.get("DREAMLOOM_TEST_STEP_SECONDS", "0.5"))
        progress = options.pop("progress", None)

        def slow_progress(step: int, total: int, preview: Any) -> None:
            time.sleep(delay)
            if progress is not None:
                progress(step, total, preview)

        return self.engine.imagine(request, progress=slow_progress, **options)


class PoisonEngine(_Wrapped):
    """Kills its own process (as a driver crash would) on any prompt that says "poison"."""

    def imagine(self, request: Any, **options: Any) -> Any:
        if "poison" in request.prompt:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.engine.imagine(request, **options)


def slow_engine() -> SlowEngine:
    return SlowEngine(Engine.from_env())


def poison_engine() -> PoisonEngine:
    return PoisonEngine(Engine.from_env())


def slow_loading_engine() -> SlowEngine:
    """The slow engine, built after DREAMLOOM_TEST_LOAD_SECONDS of "loading" (as a large model from disk)."""
    time.sleep(float(os.environ.get("DREAMLOOM_TEST_LOAD_SECONDS", "0")))
    return slow_engine()
