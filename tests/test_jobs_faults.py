"""Faults injected into a running system: real workers (the supervisor and its `celery worker`, threads pool)
killed and restarted, a real redis-server with AOF, and the S3 server taken away and brought back. Nothing
may be lost or run twice to completion."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.jobs import JobStatus
from engine.prompt import parse
from engine.registry import Registry
from tasks.client import JobClient
from tasks.events import EventType
from tasks.health import check_workers
from tasks.routing import worker_queues
from tests.conftest import settings_env
from tests.support.servers import RedisServer, WorkerProcess, wait_until

pytestmark = pytest.mark.slow  # real workers, killed and restarted


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def start_worker(workers, settings, registry_file, tmp_path, name="worker", wait=True, **env) -> WorkerProcess:
    log_file = tmp_path / f"{name}-{len(workers)}.log"
    worker = WorkerProcess(settings_env(settings, registry_file, **env), worker_queues(["sd15"]), log_file)
    workers.append(worker.start(wait=wait))
    return worker


def done_events(client: JobClient, job_id: str) -> list[EventType]:
    kinds = []
    while batch := client.events.read("faults", "reader", count=100, block_ms=50):
        kinds += [e.type for e in batch if e.job_id == job_id]
        client.events.ack("faults", *[e.id for e in batch if e.id])
    return kinds


def _all_events(client: JobClient) -> list[Any]:
    events = []
    while batch := client.events.read("faults", "reader", count=100, block_ms=50):
        events += batch
        client.events.ack("faults", *[e.id for e in batch if e.id])
    return events


def test_a_worker_killed_between_render_and_upload_loses_nothing(
    client, settings, registry_file, tmp_path, workers, s3_server
):
    """Overlap: while the first job waits to upload (storage is away), the second renders; then the worker is
    killed (SIGKILL, mid-render for the second job). The supervisor starts a new worker process, and both jobs
    finish once: the first from its spool without a second render, the second rendered again."""
    pid_file, renders = tmp_path / "engine.pid", tmp_path / "renders.txt"
    patient = dataclasses.replace(settings, storage_retry_seconds=120.0)
    worker = start_worker(
        workers, patient, registry_file, tmp_path,
        DREAMLOOM_ENGINE_FACTORY="tests.support.fake_engines:slow_engine",
        DREAMLOOM_TEST_STEP_SECONDS="0.3",
        DREAMLOOM_TEST_PID_FILE=str(pid_file),
        DREAMLOOM_TEST_RENDERS=str(renders),
    )  # fmt: skip
    first = client.submit(parse("a lighthouse --seed 6"), owner="alice")
    wait_until(lambda: client.get(first.id).status is JobStatus.RUNNING, timeout=120, what="the first job to start")
    s3_server.stop()
    try:
        wait_until(lambda: "storage: could not store" in worker.log(), timeout=60, what="the first job's upload")
        second = client.submit(parse("a harbour --seed 7 --q 2"), owner="bob")
        wait_until(lambda: client.get(second.id).progress > 0, timeout=60, what="the second job to render")
        assert not client.get(first.id).finished, "the first job still waits for storage: the two overlap"
        victim = int(pid_file.read_text())
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: worker.children() and victim not in worker.children(), timeout=30, what="a restart")
    finally:
        s3_server.start()

    wait_until(lambda: client.get(first.id).finished and client.get(second.id).finished, timeout=180,
               what="both jobs to finish after the restart")  # fmt: skip
    assert [client.get(job.id).status for job in (first, second)] == [JobStatus.DONE] * 2
    assert [client.get(job.id).attempts for job in (first, second)] == [2, 2], "redelivered once after the kill"
    assert int(pid_file.read_text()) != victim, "the supervisor started a new worker process, which ran them"
    assert "SIGKILL" in worker.log()
    drawn = renders.read_text().splitlines()
    assert drawn.count("a lighthouse") == 1, "the first job was finished from its spool, not drawn again"
    assert drawn.count("a harbour") == 2, "the second was drawn again: it was killed mid-render"
    finals = [e.job_id for e in _all_events(client) if e.type is EventType.DONE]
    assert (finals.count(first.id), finals.count(second.id)) == (1, 1), "one done event each"
    assert client.artifact(first.id, "manifest")
    assert client.artifact(second.id, "grid")[:3] == b"\xff\xd8\xff", "the grid is kept as the JPEG the bot posts"


def test_a_worker_warms_its_models_before_it_takes_a_job_and_loading_never_counts(
    client, settings, registry_file, tmp_path, workers
):
    """Loading takes 4 s, longer than the job's whole limit (3 s): the worker says "warming" meanwhile, and
    the first job, sent while it warms, waits for it and succeeds."""
    strict = dataclasses.replace(settings, max_job_seconds=3)
    worker = start_worker(
        workers, strict, registry_file, tmp_path, wait=False,
        DREAMLOOM_ENGINE_FACTORY="tests.support.fake_engines:slow_loading_engine",
        DREAMLOOM_TEST_LOAD_SECONDS="4",
        DREAMLOOM_TEST_STEP_SECONDS="0.01",
    )  # fmt: skip
    job = JobClient(strict, registry=Registry.from_toml(registry_file)).submit(parse("a cat --seed 8"), owner="alice")
    wait_until(lambda: check_workers(strict, ["sd15"]).detail.startswith("warming"), timeout=60, what="warming")
    assert client.get(job.id).status is JobStatus.QUEUED, "no job is taken while the worker warms"
    worker.wait_ready()
    assert "warmed model v6" in worker.log()
    wait_until(lambda: client.get(job.id).finished, timeout=60, what="the first job")
    assert (client.get(job.id).status, client.get(job.id).error) == (JobStatus.DONE, None)
    assert check_workers(strict, ["sd15"]).ok


def test_storage_unreachable_mid_job_is_retried_and_the_job_finishes(
    client, settings, registry_file, tmp_path, workers, s3_server
):
    worker = start_worker(
        workers, settings, registry_file, tmp_path,
        DREAMLOOM_ENGINE_FACTORY="tests.support.fake_engines:slow_engine",
        DREAMLOOM_TEST_STEP_SECONDS="0.5",
    )  # fmt: skip
    job = client.submit(parse("a lighthouse --seed 4"), owner="alice")
    wait_until(lambda: client.get(job.id).status is JobStatus.RUNNING, timeout=120, what="the job to start")
    s3_server.stop()
    try:
        wait_until(lambda: "storage: could not store" in worker.log(), timeout=60, what="a failed upload")
        time.sleep(2)  # a few seconds of outage, with retries
    finally:
        s3_server.start()
    wait_until(lambda: client.get(job.id).finished, timeout=60, what="the job to finish")
    assert client.get(job.id).status is JobStatus.DONE
    assert client.artifact(job.id, "manifest")
    assert done_events(client, job.id).count(EventType.DONE) == 1


def test_queued_jobs_survive_a_redis_crash_with_aof(settings, registry_file, tmp_path, workers):
    server = RedisServer(tmp_path / "aof-redis", appendonly=True).start()
    try:
        aof_settings = dataclasses.replace(settings, redis_url=server.url)
        client = JobClient(aof_settings, registry=Registry.from_toml(registry_file))
        jobs = [client.submit(parse(f"survivor {n} --seed {n}"), owner=f"user{n}") for n in range(3)]
        server.kill()  # SIGKILL: no chance to save anything beyond the append-only file
        server.start()
        assert [client.get(job.id).status for job in jobs] == [JobStatus.QUEUED] * 3, "records survived"
        start_worker(workers, aof_settings, registry_file, tmp_path)

        def all_finished() -> bool:
            return all(client.get(job.id).finished for job in jobs)

        wait_until(all_finished, timeout=180, what="the queued jobs to finish")
        assert [client.get(job.id).status for job in jobs] == [JobStatus.DONE] * 3
    finally:
        server.stop()


def test_a_poison_job_fails_after_the_attempt_cap_and_the_worker_goes_on(
    client, settings, registry_file, tmp_path, workers
):
    capped = dataclasses.replace(settings, max_attempts=2)
    start_worker(
        workers, capped, registry_file, tmp_path, DREAMLOOM_ENGINE_FACTORY="tests.support.fake_engines:poison_engine"
    )
    poison = client.submit(parse("a poison pill"), owner="alice")
    healthy = client.submit(parse("a healthy cat"), owner="bob")
    wait_until(lambda: client.get(poison.id).finished, timeout=240, what="the poison job to be given up")
    final = client.get(poison.id)
    assert final.status is JobStatus.FAILED
    assert final.error is not None
    assert "stopped its worker 2 times and was given up" in final.error
    assert final.attempts == 3
    wait_until(lambda: client.get(healthy.id).finished, timeout=120, what="the healthy job")
    assert client.get(healthy.id).status is JobStatus.DONE


def test_a_job_over_its_time_limit_fails_with_a_reason(client, settings, registry_file, tmp_path, workers):
    """Time limits follow a job's size; here the cap is set to 2 s so a 4-second job runs over it."""
    strict = dataclasses.replace(settings, max_job_seconds=2)
    strict_client = JobClient(strict, registry=Registry.from_toml(registry_file))
    start_worker(
        workers, strict, registry_file, tmp_path,
        DREAMLOOM_ENGINE_FACTORY="tests.support.fake_engines:slow_engine",
        DREAMLOOM_TEST_STEP_SECONDS="0.5",
    )  # fmt: skip
    job = strict_client.submit(parse("a slow cat --q 2"), owner="alice")
    wait_until(lambda: strict_client.get(job.id).finished, timeout=120, what="the job to be stopped")
    final = strict_client.get(job.id)
    assert final.status is JobStatus.FAILED
    assert final.error == (
        "The job took longer than its time limit; try a smaller size (--ar closer to 1:1), fewer steps (--q .5) "
        "or a simpler prompt"
    ), "what the person who typed /imagine can change"
