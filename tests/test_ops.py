"""Operating dreamloom: a worker's /metrics and /healthz, health checks in plain words, job ids in logs."""

from __future__ import annotations

import dataclasses
import json
import logging
import urllib.request

import pytest

from engine.errors import ConfigError
from engine.jobs import JobStatus
from engine.prompt import parse
from tasks.health import run_checks
from tasks.logs import job_context, setup_logging
from tasks.routing import worker_queues
from tests.conftest import settings_env
from tests.support.servers import RedisServer, WorkerProcess, free_port, wait_until


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.slow
def test_a_worker_exposes_metrics_and_health_after_a_job(client, settings, registry_file, tmp_path):
    port = free_port()
    env = settings_env(settings, registry_file, DREAMLOOM_METRICS_PORT=str(port),
                       PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"))  # fmt: skip
    (tmp_path / "prometheus").mkdir()
    worker = WorkerProcess(env, worker_queues(["sd15"], models=["v6"]), tmp_path / "worker.log").start()
    try:
        wait_until(lambda: client.store.model_workers("v6") == 1, timeout=60, what="the worker to announce v6")
        job = client.submit(parse("a lighthouse --seed 1"), owner="alice")
        assert client.store.get_field(job.id, "queue") == "dreamloom.model.v6.fast", "to the worker that has v6"
        wait_until(lambda: client.get(job.id).finished, timeout=120, what="the job")
        assert client.get(job.id).status is JobStatus.DONE
        assert client.store.load_time("v6") is not None, "its load time, for jobs that may have to load it"
        wait_until(lambda: "dreamloom_workers" in fetch(f"http://127.0.0.1:{port}/metrics")[1], timeout=30,
                   what="the metrics endpoint")  # fmt: skip
        status, metrics = fetch(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        for series in (
            'dreamloom_queue_depth{queue="dreamloom.sd15.fast"} 0.0',
            'dreamloom_jobs{status="done"} 1.0',
            'dreamloom_workers{family="sd15"} 1.0',
            'dreamloom_jobs_finished_total{status="done"} 1.0',
            'dreamloom_job_stage_seconds_count{stage="wait"} 1.0',
            'dreamloom_job_stage_seconds_count{stage="render"} 1.0',
            'dreamloom_job_stage_seconds_count{stage="store"} 1.0',
            'dreamloom_model_load_seconds{model="v6"}',
        ):
            assert series in metrics, series
        status, health = fetch(f"http://127.0.0.1:{port}/healthz")
        assert status == 200
        checks = {c["name"]: c["ok"] for c in json.loads(health)["checks"]}
        assert checks == {"redis": True, "storage": True, "workers": True, "warm": True}
        assert fetch(f"http://127.0.0.1:{port}/livez") == (200, "ok\n")
        assert f"job={job.id}" in worker.log(), "log lines carry the job id"
    finally:
        worker.stop()


def test_health_says_plainly_what_is_wrong(settings, tmp_path):
    stopped = RedisServer(tmp_path / "gone").start()
    stopped.stop()
    unreachable = f"http://127.0.0.1:{free_port()}"
    broken = dataclasses.replace(settings, redis_url=stopped.url, s3_endpoint_url=unreachable)
    checks = {check.name: check for check in run_checks(broken, ["sd15"])}
    assert not checks["redis"].ok
    assert checks["redis"].detail.startswith(f"Redis at 127.0.0.1:{stopped.port}/0 is not reachable")
    assert "start it or fix REDIS_URL" in checks["redis"].detail
    assert not checks["storage"].ok
    assert "Storage unreachable" in checks["storage"].detail
    assert "is DREAMLOOM_S3_ENDPOINT_URL right?" in checks["storage"].detail
    assert checks["workers"].detail == "cannot tell: Redis is not reachable"


def test_health_of_a_working_setup_without_workers(settings):
    checks = {check.name: check for check in run_checks(settings, ["sd15"])}
    assert checks["redis"].ok
    assert checks["storage"].ok
    assert not checks["workers"].ok
    assert checks["workers"].detail == "no worker for sd15 seen in 5 minutes; start one with `dreamloom worker`"


def test_a_missing_bucket_is_named(settings):
    checks = {check.name: check for check in run_checks(dataclasses.replace(settings, s3_bucket="no-such-bucket"))}
    assert "NoSuchBucket" in checks["storage"].detail


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_every_log_line_carries_its_job(fmt, capfd):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO", fmt)
        with job_context("3f2a" * 8):
            logging.getLogger("tasks.worker").info("rendering")
        logging.getLogger("tasks.worker").info("idle")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = capfd.readouterr().err.strip().splitlines()[-2:]
    if fmt == "json":
        first, second = (json.loads(line) for line in lines)
        assert (first["job"], first["message"], first["logger"]) == ("3f2a" * 8, "rendering", "tasks.worker")
        assert second["job"] == "-"
    else:
        assert f"job={'3f2a' * 8}: rendering" in lines[0]
        assert "job=-: idle" in lines[1]


def test_a_bad_log_format_is_refused():
    with pytest.raises(ConfigError, match="DREAMLOOM_LOG_FORMAT must be text or json"):
        setup_logging("INFO", "xml")


def test_the_health_command_reports_a_stopped_redis_and_an_unreachable_s3(tmp_path, registry_file):
    from tests.support.playground import clean_env, dreamloom

    stopped = RedisServer(tmp_path / "gone").start()
    stopped.stop()
    env = clean_env(
        REDIS_URL=stopped.url,
        DREAMLOOM_S3_BUCKET="images",
        DREAMLOOM_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
        AWS_ACCESS_KEY_ID="key",
        AWS_SECRET_ACCESS_KEY="very-secret-value",
        DREAMLOOM_MODELS=str(registry_file),
    )
    result = dreamloom("health", env=env, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"FAIL redis    Redis at 127.0.0.1:{stopped.port}/0 is not reachable")
    assert lines[1].startswith("FAIL storage  Storage unreachable")
    assert "is DREAMLOOM_S3_ENDPOINT_URL right?" in lines[1]
    assert lines[2] == "FAIL workers  cannot tell: Redis is not reachable"
    assert "very-secret-value" not in result.stdout + result.stderr
