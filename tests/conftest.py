"""Shared test set-up. Nothing in the suite may reach a model hub; heavy fixtures are built once per session."""

from __future__ import annotations

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
# The list of running `dreamloom up` services lives in the user's state folder; the tests keep their own.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="dreamloom-test-state-")

from pathlib import Path

import pytest

pytest_plugins = ["tests.support.discord_double.fixtures"]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny SD 1.5 and SDXL pipelines, an x4 upscaler and a preview decoder, saved in the diffusers layout."""
    from devtools.tiny_pipelines import save_tiny_pipeline, save_tiny_preview_decoder, save_tiny_upscaler

    root = tmp_path_factory.mktemp("models")
    return {
        "sd15": save_tiny_pipeline(root / "tiny-sd15", "sd15"),
        "sdxl": save_tiny_pipeline(root / "tiny-sdxl", "sdxl"),
        "upscaler": save_tiny_upscaler(root / "tiny-x4-upscaler"),
        "taesd": save_tiny_preview_decoder(root / "tiny-taesd"),
    }


def tiny_registry_toml(models: dict[str, Path], **extra: str) -> str:
    """A models.toml serving the tiny pipelines: v6 (SD 1.5, with upscaler), niji (SDXL), turbo (no guidance)."""
    tiny = 'native_size = [64, 64]\nsize_multiple = 16\nscheduler = "euler"\n'
    return (
        'default = "v6"\n\n'
        f'[models.v6]\nsource = "{models["sd15"]}"\nfamily = "sd15"\nsteps = 4\n{tiny}'
        f'upscaler = "{models["upscaler"]}"\n{extra.get("v6", "")}\n'
        f'[models.niji]\nsource = "{models["sdxl"]}"\nfamily = "sdxl"\nsteps = 4\n{tiny}\n'
        f'[models.turbo]\nsource = "{models["sd15"]}"\nfamily = "sd-turbo"\nsteps = 2\n{tiny}'
    )


@pytest.fixture(scope="session")
def registry_file(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "models.toml"
    path.write_text(tiny_registry_toml(tiny_models))
    return path


@pytest.fixture(scope="session")
def engine(registry_file: Path):
    """One engine for the session, as a worker process has: models load once and stay loaded."""
    from engine.generate import Engine
    from engine.registry import Registry

    return Engine(Registry.from_toml(registry_file), max_loaded=3)


# --- the job system's real servers -------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    from tests.support.servers import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server) -> str:
    """A clean database on the session's redis-server."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return str(redis_server.url)


@pytest.fixture(scope="session")
def s3_server():
    from tests.support.servers import S3Server

    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_server, request: pytest.FixtureRequest) -> str:
    """A new, empty bucket on the S3 server, named after the test."""
    import re
    import uuid

    import boto3

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:8]
    boto3.client("s3", endpoint_url=s3_server.url, region_name="us-east-1", **S3_CREDENTIALS).create_bucket(Bucket=name)
    return name


S3_CREDENTIALS = {"aws_access_key_id": "test-key-id", "aws_secret_access_key": "test-secret-key"}


@pytest.fixture
def settings(redis_url: str, s3_server, bucket: str, tmp_path: Path):
    """Job-system settings for one test: its own Redis database contents, bucket and spool folder."""
    from tasks.settings import Secret, Settings

    return Settings(
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        s3_bucket=bucket,
        s3_endpoint_url=s3_server.url,
        s3_region="us-east-1",
        s3_addressing_style="path",
        s3_access_key_id=Secret(S3_CREDENTIALS["aws_access_key_id"]),
        s3_secret_access_key=Secret(S3_CREDENTIALS["aws_secret_access_key"]),
        progress_interval=0.0,
        storage_retry_seconds=20.0,
        spool_dir=tmp_path / "spool",
        max_queued_per_user=10,
    )


def settings_env(settings, registry_file: Path, **extra: str) -> dict[str, str]:
    """The environment a worker subprocess needs to run with ``settings``."""
    return {"DREAMLOOM_MODELS": str(registry_file), "HF_HUB_OFFLINE": "1", **settings.to_env(), **extra}


@pytest.fixture
def client(settings, registry_file: Path):
    from engine.registry import Registry
    from tasks.client import JobClient

    job_client = JobClient(settings, registry=Registry.from_toml(registry_file))
    yield job_client
    job_client.redis.close()


@pytest.fixture
def start_thread_worker(settings, engine):
    """Start an in-process worker (solo pool, in a thread) on the given families' queues.

    ``engine`` defaults to the session's tiny-model engine; pass another (e.g. a NullEngine)."""
    from contextlib import ExitStack

    from celery.contrib.testing.worker import start_worker

    from tasks.routing import worker_queues
    from tasks.worker import create_worker_app

    stack = ExitStack()

    def start(families=("sd15", "sdxl"), job_engine=None, job_settings=None):
        chosen = job_engine if job_engine is not None else engine
        app = create_worker_app(job_settings or settings, engine_factory=lambda: chosen)
        queues = worker_queues(families)
        return stack.enter_context(
            start_worker(app, pool="solo", perform_ping_check=False, queues=queues, shutdown_timeout=30)
        )

    yield start
    stack.close()
