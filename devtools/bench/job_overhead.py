"""``dreamloom bench jobs``: the job path's own overhead on real servers, against a bare Celery round trip.

Starts a private redis-server, a Celery worker as ``dreamloom worker`` runs it (threads pool) and, for the S3
runs, moto's S3 server (from the dev extra) spoken to over HTTP. For each storage and engine it measures:

- the reference: a bare Celery task round trip (``dreamloom.ping``: sent, run, answered on a Redis list);
- latency: jobs one at a time, from ``submit`` to their ``done`` event read through a consumer group as
  the bot reads it, minus the render time the engine reported: the job system's overhead (p50/p95/p99);
- throughput: many jobs at once, done events per second.

The null engine returns prepared images at once (``engine.null``); the tiny engine renders tiny models
for real. Then it times composing and encoding a 2048² grid as the bot posts it against Pillow's default.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from redis import Redis

from engine.grid import compose_grid
from engine.jobs import JobStatus
from engine.null import NullEngine
from engine.prompt import parse
from engine.registry import Registry
from tasks.celery_app import PING_TASK
from tasks.client import JobClient
from tasks.embedded_redis import EmbeddedRedis
from tasks.processes import ESCALATION, IDLE_WORKER_STOP, spawn, stop, wait_for_ready
from tasks.routing import queue_name
from tasks.settings import Secret, Settings
from tasks.worker_process import worker_command

__all__ = ["main"]

GROUP = "bench"
FAMILY = "sd15"


class DoneEvents:
    """Reads job events through a consumer group, as the bot does, noting when each job's final event arrives."""

    def __init__(self, client: JobClient) -> None:
        self.client = client
        self.arrived: dict[str, float] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._read, name="bench-events", daemon=True)
        self.changed = threading.Condition()

    def __enter__(self) -> DoneEvents:
        self.client.events.ensure_group(GROUP)
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)

    def _read(self) -> None:
        consumer = f"bench-{uuid.uuid4().hex[:6]}"
        while not self.stopping.is_set():
            events = self.client.events.read(GROUP, consumer, count=100, block_ms=200)
            now = time.perf_counter()
            with self.changed:
                for event in events:
                    if event.type.final:
                        self.arrived[event.job_id] = now
                self.changed.notify_all()
            self.client.events.ack(GROUP, *[e.id for e in events if e.id])

    def wait(self, job_ids: Sequence[str], timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not all(j in self.arrived for j in job_ids):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{sum(j not in self.arrived for j in job_ids)} jobs did not finish in time")
                self.changed.wait(min(left, 0.5))


def percentiles(values: Sequence[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else list(values) * 99
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98], "mean": statistics.fmean(values)}


def measure(client: JobClient, redis: Redis, latency_jobs: int, throughput_jobs: int) -> dict[str, Any]:
    reference = []
    for _ in range(max(20, latency_jobs)):
        reply = f"dreamloom:bench:pong:{uuid.uuid4().hex}"
        started = time.perf_counter()
        client.dispatcher.celery.send_task(PING_TASK, args=[reply], queue=queue_name(FAMILY, "fast"))
        redis.blpop([reply], timeout=30)
        reference.append((time.perf_counter() - started) * 1000)

    with DoneEvents(client) as done:
        overhead, total = [], []
        for n in range(latency_jobs):
            started = time.perf_counter()
            job = client.submit(parse(f"a lighthouse, study {n}"), owner=f"bench-{n}", channel="bench")
            done.wait([job.id])
            elapsed = (done.arrived[job.id] - started) * 1000
            if client.get(job.id).status is not JobStatus.DONE:
                raise RuntimeError(f"job {job.id} did not finish: {client.get(job.id).error}")
            render = client.manifest(job.id)["timings"]["total"] * 1000
            total.append(elapsed)
            overhead.append(elapsed - render)
        started = time.perf_counter()
        jobs = [client.submit(parse(f"a harbour, study {n}"), owner=f"burst-{n}", channel="bench")
                for n in range(throughput_jobs)]  # fmt: skip
        done.wait([job.id for job in jobs])
        burst = max(done.arrived[job.id] for job in jobs) - started
    return {
        "reference_ms": percentiles(reference),
        "overhead_ms": percentiles(overhead),
        "submit_to_done_ms": percentiles(total),
        "jobs_per_second": throughput_jobs / burst,
        "overhead_over_reference_p50": percentiles(overhead)["p50"] / percentiles(reference)["p50"],
    }


def grid_encoding(side: int = 1024, repeats: int = 5) -> dict[str, float]:
    """ms to compose four images into a grid and encode it: as the bot posts it, and with Pillow's default."""
    registry = Registry.from_mapping({"models": {"bench": {"source": "-", "native_size": [side, side]}}})
    images = list(NullEngine(registry).imagine(parse("a grid --seed 1")).images)

    def timed(save: dict[str, Any]) -> float:
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            compose_grid(images).save(io.BytesIO(), **save)
            runs.append((time.perf_counter() - started) * 1000)
        return statistics.median(runs)

    return {
        "dreamloom_jpeg_q90_ms": timed({"format": "JPEG", "quality": 90, "subsampling": 0}),
        "pillow_default_png_ms": timed({"format": "PNG"}),
        "pillow_default_jpeg_ms": timed({"format": "JPEG"}),
    }


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise SystemExit("the S3 runs need moto's server: pip install 'moto[server]' (in dreamloom[dev])") from None
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request at INFO
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def run_one(
    storage: str, engine: str, folder: Path, redis_url: str, s3_url: str | None, args: argparse.Namespace
) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    registry_file = folder / "models.toml"
    if engine == "null":
        registry_file.write_text(
            f'[models.v6]\nsource = "prepared-images"\nfamily = "{FAMILY}"\nnative_size = [{args.size}, {args.size}]\n'
        )
        factory = "engine.null:NullEngine.from_env"
    else:
        model = args.tiny_model or folder / "tiny-model"
        if args.tiny_model is None:  # built in a process of its own: this one never imports torch
            build = (
                f"from devtools.tiny_pipelines import save_tiny_pipeline; save_tiny_pipeline({str(model)!r}, 'sd15')"
            )
            subprocess.run([sys.executable, "-c", build], check=True, capture_output=True)
        registry_file.write_text(
            f'[models.v6]\nsource = "{model}"\nfamily = "{FAMILY}"\nnative_size = [64, 64]\nsize_multiple = 16\n'
            'steps = 4\nscheduler = "euler"\n'
        )
        factory = "engine.generate:Engine.from_env"
    settings = Settings(
        redis_url=redis_url,
        data_dir=folder / "data",
        spool_dir=folder / "spool",
        s3_bucket="bench" if storage == "s3" else None,
        s3_endpoint_url=s3_url if storage == "s3" else None,
        s3_addressing_style="path",
        s3_access_key_id=Secret("bench") if storage == "s3" else None,
        s3_secret_access_key=Secret("bench") if storage == "s3" else None,
        max_running_per_user=1000,
        max_queued_per_user=1000,
        engine_factory=factory,
    )
    if storage == "s3":
        from tasks.file_storage import S3Storage

        S3Storage("bench", endpoint_url=s3_url, access_key_id="bench", secret_access_key="bench").client.create_bucket(
            Bucket="bench"
        )
    env = {**os.environ, "DREAMLOOM_MODELS": str(registry_file), "HF_HUB_OFFLINE": "1", **settings.to_env()}
    log = folder / "worker.log"
    command = [*worker_command([FAMILY], args.concurrency, name=f"bench-{uuid.uuid4().hex[:6]}@%h"), "-f", str(log)]
    worker = spawn(command, env=env)
    idle = False
    try:
        if not wait_for_ready(worker, log, 300):
            raise SystemExit(f"the benchmark's worker did not start; see {log}")
        client = JobClient(settings, registry=Registry.from_toml(registry_file))
        redis = Redis.from_url(redis_url)
        client.submit(parse("warm-up"), owner="bench-warmup", channel="bench")  # loads the engine
        with DoneEvents(client) as done:
            warm = client.jobs_of("bench-warmup")[0]
            done.wait([warm.id], timeout=600)
        # The tiny engine really renders (about a second a job on 2 cores): fewer jobs say as much.
        counts = (args.latency_jobs, args.jobs) if engine == "null" else (args.tiny_jobs, args.tiny_jobs)
        measured = measure(client, redis, *counts)
        idle = True  # every job it was given is done
    finally:
        stop(worker, IDLE_WORKER_STOP if idle else ESCALATION)
    return {"storage": storage, "engine": engine, **measured}


def format_table(results: Sequence[dict[str, Any]], grid: dict[str, float], size: int) -> str:
    header = (
        f"{'storage':<8} {'engine':<7} {'reference p50':>13} {'overhead p50':>12} {'p95':>7} {'p99':>7} "
        f"{'x ref':>6} {'submit->done p50':>16} {'jobs/s':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        o, ref = r["overhead_ms"], r["reference_ms"]
        lines.append(
            f"{r['storage']:<8} {r['engine']:<7} {ref['p50']:>10.1f} ms {o['p50']:>9.1f} ms {o['p95']:>7.1f} "
            f"{o['p99']:>7.1f} {r['overhead_over_reference_p50']:>6.1f} {r['submit_to_done_ms']['p50']:>13.1f} ms "
            f"{r['jobs_per_second']:>7.1f}"
        )
    lines.append(f"(null engine images {size}x{size}; overhead = submit to done event, minus the engine's render time)")
    lines.append(
        f"grid 2048x2048 compose + encode: {grid['dreamloom_jpeg_q90_ms']:.1f} ms as the bot posts it (JPEG q90), "
        f"{grid['pillow_default_png_ms']:.1f} ms with Pillow's default PNG, {grid['pillow_default_jpeg_ms']:.1f} ms "
        "with Pillow's default JPEG"
    )
    return "\n".join(lines)


def _choices(parser: argparse.ArgumentParser, option: str, value: str, known: tuple[str, str]) -> list[str]:
    """``both`` or a comma-separated list of ``known`` names, in the order given; else a usage error."""
    names = list(known) if value == "both" else [name for name in value.split(",") if name]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        parser.error(f"{option} takes {known[0]}, {known[1]} or both, not {value!r}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dreamloom bench jobs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs submitted at once for throughput (default 200)")
    parser.add_argument("--latency-jobs", type=int, default=100, help="jobs one at a time for latency (default 100)")
    parser.add_argument("--tiny-jobs", type=int, default=20, help="tiny-engine jobs, each way (default 20)")
    parser.add_argument("--storage", default="both", help="local, s3 or both (default both)")
    parser.add_argument("--engine", default="both", help="null, tiny or both (default both)")
    parser.add_argument("--size", type=int, default=512, help="the null engine's image size (default 512)")
    parser.add_argument("--concurrency", type=int, default=1, help="worker threads, one engine (default 1)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--tiny-model", type=Path, help="a tiny pipeline folder for the tiny engine (default: one built for the run)"
    )
    args = parser.parse_args(argv)
    storages = _choices(parser, "--storage", args.storage, ("local", "s3"))
    engines = _choices(parser, "--engine", args.engine, ("null", "tiny"))
    if min(args.jobs, args.latency_jobs, args.tiny_jobs, args.concurrency, args.size) < 1:
        parser.error("--jobs, --latency-jobs, --tiny-jobs, --concurrency and --size must be at least 1")
    results = []
    with tempfile.TemporaryDirectory(prefix="dreamloom-bench-") as scratch:
        redis = EmbeddedRedis(Path(scratch) / "redis")
        redis.start()
        try:
            with s3_server() if "s3" in storages else contextlib.nullcontext("") as s3_url:
                for storage in storages:
                    for engine in engines:
                        print(f"bench jobs: {storage} storage, {engine} engine ...", file=sys.stderr, flush=True)
                        folder = Path(scratch) / f"{storage}-{engine}"
                        try:
                            results.append(run_one(storage, engine, folder, redis.url, s3_url or None, args))
                        except TimeoutError as exc:
                            print(f"dreamloom bench jobs: {exc} ({storage} storage, {engine} engine): is the "
                                  "machine busy? Rerun with fewer --jobs / --tiny-jobs", file=sys.stderr)  # fmt: skip
                            return 1
                        Redis.from_url(redis.url).flushall()
        finally:
            redis.stop()
    grid = grid_encoding()
    print(
        f"dreamloom bench jobs on {os.cpu_count()} CPUs, {args.latency_jobs} jobs one at a time, "
        f"{args.jobs} at once (tiny engine: {args.tiny_jobs} each), worker concurrency {args.concurrency}"
    )
    print(format_table(results, grid, args.size))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "grid_encoding": grid}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
