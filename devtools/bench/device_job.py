"""One real job through Redis and a Celery worker on the device: part two of ``dreamloom bench gpu``.

The engine check runs the engine in the checking process; a deployment runs it in a Celery prefork child,
where CUDA has its own ways to fail (a parent that touched CUDA before forking, a worker that never sees
``DREAMLOOM_DEVICE``, a first job whose model load runs past its time limit). So this part starts what
``dreamloom up`` starts: a private redis-server (``tasks.embedded_redis``) and ``celery worker`` as
``dreamloom worker`` runs it (``tasks.worker_process.worker_command``), with the device in its environment;
submits one /imagine through ``tasks.client.JobClient`` as every front door does, and waits for it to be
done with its files stored. It never imports torch itself: the worker does.

    figures = run_job("cuda", Path("/tmp/gpu-check/sd-turbo"), "sd-turbo", Path("/tmp/gpu-check/job"), print)
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.jobs import JobStatus
from engine.prompt import parse
from engine.registry import Registry
from tasks.client import JobClient
from tasks.embedded_redis import EmbeddedRedis
from tasks.processes import IDLE_WORKER_STOP, spawn, stop, wait_for_ready
from tasks.settings import Settings
from tasks.worker_process import worker_command

__all__ = ["PROMPT", "run_job"]

PROMPT = "a lighthouse at dusk --seed 7"
READY_SECONDS = 240.0  # a worker's start: Python, Celery, torch and CUDA's own start on a cold machine


def run_job(
    device: str,
    model: Path,
    family: str,
    folder: Path,
    log: Callable[[str], None],
    timeout: float = 300.0,
    tiny: bool = False,
) -> dict[str, Any]:
    """Submit one job to a worker on ``device`` serving ``model`` and wait for it; the figures, or an
    exception that says which step failed."""
    folder.mkdir(parents=True, exist_ok=True)
    registry_file = folder / "models.toml"
    sizes = 'native_size = [64, 64]\nsize_multiple = 16\nsteps = 4\nscheduler = "euler"\n' if tiny else ""
    registry_file.write_text(f'[models.check]\nsource = "{model}"\nfamily = "{family}"\n{sizes}')
    redis = EmbeddedRedis(folder / "redis")
    worker = None
    try:
        settings = Settings(
            redis_url=redis.start(),
            data_dir=folder / "data",
            spool_dir=folder / "spool",
            engine_factory="engine.generate:Engine.from_env",
        )
        env = {
            **os.environ,
            "DREAMLOOM_MODELS": str(registry_file),
            "DREAMLOOM_DEVICE": device,
            "HF_HUB_OFFLINE": "1",
            **settings.to_env(),
        }
        worker_log = folder / "worker.log"
        worker_log.unlink(missing_ok=True)  # a reused folder's log says "ready." before this worker is
        command = worker_command([family], 1, name=f"gpu-check-{uuid.uuid4().hex[:6]}@%h")
        started = time.perf_counter()
        worker = spawn([*command, "-f", str(worker_log)], env=env)
        log(f"job: worker starting on {device} (log {worker_log})")
        if not wait_for_ready(worker, worker_log, READY_SECONDS):
            raise RuntimeError(f"the worker did not start: {_tail(worker_log)}")
        ready = time.perf_counter() - started
        client = JobClient(settings, registry=Registry.from_toml(registry_file))
        submitted = time.perf_counter()
        job = client.submit(parse(PROMPT), owner="gpu-check", channel="gpu-check")
        log(f"job: {job.id} submitted")
        while not (job := client.get(job.id)).status.finished:
            if time.perf_counter() - submitted > timeout or worker.poll() is not None:
                raise RuntimeError(f"job {job.id} is still {job.status.value}: {_tail(worker_log)}")
            time.sleep(0.1)
        done = time.perf_counter() - submitted
        if job.status is not JobStatus.DONE:
            raise RuntimeError(f"job {job.id} {job.status.value}: {job.error} ({_tail(worker_log)})")
        manifest = client.manifest(job.id)
        files = {name: len(client.artifact(job.id, name)) for name in _artifact_names(manifest)}
        model_record = manifest.get("recipe", {}).get("model", {})
        if model_record.get("device") != device.split(":")[0]:
            raise RuntimeError(f"the job ran on {model_record.get('device')!r}, not on {device}")
        return {
            "job": job.id,
            "worker_ready_seconds": ready,
            "submit_to_done_seconds": done,
            "render_seconds": float(manifest["timings"]["total"]),
            "stored_files": len(files),
            "stored_bytes": sum(files.values()),
            "model": {key: model_record.get(key) for key in ("family", "dtype", "device", "scheduler")},
        }
    finally:
        if worker is not None:  # at once, also mid-job: this check has nothing to lose and no time to wait
            stop(worker, IDLE_WORKER_STOP)
        redis.stop()


def _artifact_names(manifest: dict[str, Any]) -> list[str]:
    return sorted(manifest.get("files", {}))  # "1"-"4" and "grid"


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {log})"
