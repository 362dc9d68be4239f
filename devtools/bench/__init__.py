"""``dreamloom bench``: benchmarks that print figures, each measuring dreamloom against a reference in one run.

    dreamloom bench engine      plain diffusers (A) against dreamloom's engine (B): a GPU's figures
    dreamloom bench jobs        the job path's own overhead against a bare Celery round trip
    dreamloom bench first-job   a newcomer's first ``dreamloom imagine``, cold and warm
    dreamloom bench gpu         the prepared check of a CUDA machine in one run of at most 8 minutes
    dreamloom bench overlap     a worker's jobs/s against 1/GPU-time, rendering while it encodes and stores

They come with a checkout (``./dev install``), not with the ``dreamloom`` wheel: ``add_command`` is the
``dreamloom.commands`` entry point of the devtools distribution. Each benchmark's module is imported only
when it runs (the engine benchmark imports torch).
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

__all__ = ["BENCHMARKS", "add_command"]

# name -> (module with main(argv) -> int, what it measures)
BENCHMARKS = {
    "engine": ("devtools.bench.engine_speed", "plain diffusers (A) against dreamloom's engine (B), on a GPU"),
    "jobs": ("devtools.bench.job_overhead", "the job path's overhead against a bare Celery round trip"),
    "first-job": ("devtools.bench.first_job", "a newcomer's first `dreamloom imagine`, cold and warm"),
    "gpu": ("devtools.bench.gpu_check", "the prepared check of a CUDA machine: engine, a job, A vs B, memory"),
    "overlap": ("devtools.bench.overlap", "a worker's jobs/s against 1/GPU-time, with overlap on and off"),
}


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bench`` to the ``dreamloom`` command line."""
    bench = commands.add_parser(
        "bench",
        help="benchmarks: " + ", ".join(BENCHMARKS) + " (a checkout's dev tools; --help after each)",
        description="Measure dreamloom against a reference in the same run; every benchmark prints its figures.",
    )
    bench.add_argument("benchmark", choices=list(BENCHMARKS), help="which benchmark: " + "; ".join(
        f"{name}: {summary}" for name, (_, summary) in BENCHMARKS.items()))  # fmt: skip
    bench.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options (see its --help)")
    bench.set_defaults(run=_run)


def _run(args: Any) -> int:
    module = importlib.import_module(BENCHMARKS[args.benchmark][0])
    status: int = module.main(args.options)
    return status
