"""``dreamloom bench overlap``: jobs per second against 1/GPU-time, with the worker's overlap on and off.

A worker renders one job at a time on the GPU (its render lock) while its other threads encode and store the
jobs before (``tasks.worker``). Whether that keeps the GPU busy is measured here without a GPU: an engine
that sleeps a fixed "GPU time" per job (a sleep, like a CUDA call, leaves the CPU to the other threads) and
returns real pictures at the real size (1024² by default), which the worker encodes and stores as it would
rendered ones. The worker is the real one (``tasks.worker_process``: supervisor, Celery threads pool, a
private Redis, local storage). For each concurrency (1: no overlap; 2: the default) it submits ``--jobs``
jobs at once and measures, between the first and the last done event, jobs per second against the ideal,
1/GPU-time. The target: at least 90 % of it with overlap on, on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redis import Redis

from devtools.bench.job_overhead import DoneEvents
from engine.callbacks import CancelCheck, ProgressCallback
from engine.jobs import JobStatus
from engine.null import NullEngine
from engine.prompt import parse
from engine.registry import Registry
from tasks.client import JobClient
from tasks.embedded_redis import EmbeddedRedis
from tasks.processes import ESCALATION, IDLE_WORKER_STOP, spawn, stop, wait_for_ready
from tasks.settings import Settings
from tasks.worker_process import worker_command

__all__ = ["GpuTimeEngine", "gpu_time_engine", "main", "measure_mode"]

FAMILY = "sd15"
GPU_SECONDS = "DREAMLOOM_BENCH_GPU_SECONDS"


class GpuTimeEngine(NullEngine):
    """The null engine's real pictures after ``gpu_seconds`` of "rendering" (a sleep, in steps with cancel
    and deadline checks, as a real denoising loop has)."""

    def __init__(self, registry: Registry, gpu_seconds: float) -> None:
        super().__init__(registry, steps=4)
        self.gpu_seconds = gpu_seconds

    def steps(self, progress: ProgressCallback | None, cancel: CancelCheck | None, seed: int) -> None:
        for _ in range(self.step_count):
            time.sleep(self.gpu_seconds / self.step_count)
        super().steps(progress, cancel, seed)


def gpu_time_engine() -> GpuTimeEngine:
    """The worker's engine factory (DREAMLOOM_ENGINE_FACTORY): GPU time from DREAMLOOM_BENCH_GPU_SECONDS."""
    return GpuTimeEngine(Registry.from_env(), float(os.environ.get(GPU_SECONDS, "0.3")))


def measure_mode(folder: Path, redis_url: str, concurrency: int, args: argparse.Namespace) -> dict[str, Any]:
    """Start a worker with ``concurrency`` threads, run ``args.jobs`` jobs at once, and stop it."""
    folder.mkdir(parents=True, exist_ok=True)
    registry_file = folder / "models.toml"
    registry_file.write_text(f'[models.v6]\nsource = "gpu-time"\nfamily = "{FAMILY}"\n'
                             f"native_size = [{args.size}, {args.size}]\n")  # fmt: skip
    settings = Settings(
        redis_url=redis_url,
        data_dir=folder / "data",
        spool_dir=folder / "spool",
        max_running_per_user=1000,
        max_queued_per_user=1000,
        engine_factory="devtools.bench.overlap:gpu_time_engine",
        progress_interval=1.0,
    )
    env = {
        **os.environ,
        "DREAMLOOM_MODELS": str(registry_file),
        "HF_HUB_OFFLINE": "1",
        GPU_SECONDS: str(args.gpu),
        **settings.to_env(),
    }
    log = folder / "worker.log"
    worker = spawn(worker_command([FAMILY], concurrency, name=f"overlap-{uuid.uuid4().hex[:6]}@%h"), env=env, log=log)
    idle = False
    try:
        if not wait_for_ready(worker, log, 300):
            raise SystemExit(f"the benchmark's worker did not start; see {log}")
        client = JobClient(settings, registry=Registry.from_toml(registry_file))
        with DoneEvents(client) as done:
            started = time.perf_counter()
            jobs = [client.submit(parse(f"a harbour, study {n}"), owner=f"overlap-{n}", channel="bench")
                    for n in range(args.jobs)]  # fmt: skip
            done.wait([job.id for job in jobs], timeout=600)
            arrived = sorted(done.arrived[job.id] for job in jobs)
        finished = sum(client.get(job.id).status is JobStatus.DONE for job in jobs)
        idle = True
    finally:
        stop(worker, IDLE_WORKER_STOP if idle else ESCALATION)
    # Steady state: the first job pays for the queue's start; from its end to the last, jobs - 1 went through.
    span = arrived[-1] - arrived[0] if len(arrived) > 1 else arrived[-1] - started
    per_second = (len(arrived) - 1) / span if len(arrived) > 1 else 1 / span
    return {
        "concurrency": concurrency,
        "overlap": concurrency > 1,
        "jobs": args.jobs,
        "done": finished,
        "seconds": arrived[-1] - started,
        "jobs_per_second": per_second,
        "of_ideal": per_second * args.gpu,
    }


def format_table(results: Sequence[dict[str, Any]], gpu: float, size: int) -> str:
    lines = [f"{'overlap':<8} {'threads':>7} {'jobs':>5} {'done':>5} {'jobs/s':>7} {'1/GPU-time':>10} {'of ideal':>8}"]
    lines.append("-" * len(lines[0]))
    for r in results:
        lines.append(f"{'on' if r['overlap'] else 'off':<8} {r['concurrency']:>7} {r['jobs']:>5} {r['done']:>5} "
                     f"{r['jobs_per_second']:>7.2f} {1 / gpu:>10.2f} {r['of_ideal']:>8.0%}")  # fmt: skip
    lines.append(f"(GPU time {gpu * 1000:.0f} ms a job, four {size}x{size} images and their grid encoded and stored; "
                 "jobs/s between the first and the last done event)")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dreamloom bench overlap", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", type=float, default=0.3, help="seconds of GPU time per job (default 0.3)")
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels (default 1024)")
    parser.add_argument("--jobs", type=int, default=20, help="jobs submitted at once in each mode (default 20)")
    parser.add_argument("--concurrency", type=int, default=2, help="the worker's threads with overlap on (default 2)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if min(args.jobs, args.size, args.concurrency - 1) < 1 or not 0 < args.gpu <= 60:
        parser.error("--jobs and --size must be at least 1, --concurrency at least 2, --gpu in (0, 60] seconds")
    if args.size > 4096:
        parser.error("--size must be at most 4096")
    results = []
    with tempfile.TemporaryDirectory(prefix="dreamloom-overlap-") as scratch:
        redis = EmbeddedRedis(Path(scratch) / "redis")
        redis.start()
        try:
            for concurrency in (1, args.concurrency):
                print(f"bench overlap: {concurrency} thread(s) ...", file=sys.stderr, flush=True)
                results.append(measure_mode(Path(scratch) / f"threads-{concurrency}", redis.url, concurrency, args))
                Redis.from_url(redis.url).flushall()
        finally:
            redis.stop()
    print(f"dreamloom bench overlap on {os.cpu_count()} CPUs")
    print(format_table(results, args.gpu, args.size))
    if args.json:
        args.json.write_text(json.dumps({"gpu_seconds": args.gpu, "size": args.size, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
