"""The job system's settings: from the environment, typed, and secrets that never print."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigError
from tasks.settings import ENVIRONMENT, Secret, Settings


def test_defaults_and_environment():
    assert Settings.from_env({}) == Settings()
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://cache:6379/2",
            "DREAMLOOM_MAX_RUNNING_PER_USER": "3",
            "DREAMLOOM_PROGRESS_INTERVAL": "0.5",
            "DREAMLOOM_DATA_DIR": "/srv/dreamloom",
            "AWS_SECRET_ACCESS_KEY": "very-secret",
            "DREAMLOOM_S3_BUCKET": "",
        }
    )
    assert settings.redis_url == "redis://cache:6379/2"
    assert settings.max_running_per_user == 3
    assert settings.progress_interval == 0.5
    assert settings.data_dir == Path("/srv/dreamloom")
    assert settings.s3_secret_access_key == Secret("very-secret")
    assert settings.s3_bucket is None, "an empty variable counts as unset"


def test_secrets_never_print():
    settings = Settings(s3_access_key_id=Secret("AKIAEXAMPLE"), s3_secret_access_key=Secret("very-secret"))
    for text in (repr(settings), str(settings), f"{settings}"):
        assert "AKIAEXAMPLE" not in text
        assert "very-secret" not in text
    assert settings.s3_secret_access_key is not None
    assert settings.s3_secret_access_key.reveal() == "very-secret"


@pytest.mark.parametrize(("variable", "value"), [("DREAMLOOM_MAX_ATTEMPTS", "three"), ("DREAMLOOM_MAX_ATTEMPTS", "-1"),
                                                 ("DREAMLOOM_PROGRESS_INTERVAL", "fast")])  # fmt: skip
def test_bad_values_name_the_variable(variable, value):
    with pytest.raises(ConfigError, match=f"{variable} must be"):
        Settings.from_env({variable: value})


def test_every_setting_has_a_variable():
    assert set(ENVIRONMENT) == set(Settings.__dataclass_fields__)


def test_visibility_timeout_exceeds_the_longest_hard_time_limit():
    from tasks.routing import time_limits

    settings = Settings(max_job_seconds=1200)
    _, hard = time_limits(10**15, settings)
    assert hard < settings.visibility_timeout


def test_workers_are_recycled_only_when_asked():
    """A recycled worker process reloads its model (and repeats any compile warm-up), so by default none is."""
    from tasks.celery_app import make_celery

    default = make_celery(Settings()).conf
    assert default.worker_max_tasks_per_child is None
    assert default.worker_max_memory_per_child is None
    asked = Settings.from_env({"DREAMLOOM_WORKER_MAX_TASKS_PER_CHILD": "200", "DREAMLOOM_WORKER_MAX_MEMORY_MB": "6000"})
    conf = make_celery(asked).conf
    assert conf.worker_max_tasks_per_child == 200
    assert conf.worker_max_memory_per_child == 6000 * 1024, "Celery counts resident memory in KiB"


def test_settings_travel_to_a_child_process_through_the_environment():
    """``to_env`` is what ``from_env`` reads: a worker started with it runs with the same settings."""
    from tasks.settings import Secret, Settings

    settings = Settings(redis_url="redis://127.0.0.1:7/1", s3_bucket="art", s3_secret_access_key=Secret("k3y"),
                        max_attempts=5, record_retention_days=0.5)  # fmt: skip
    env = settings.to_env()
    assert env["DREAMLOOM_MAX_ATTEMPTS"] == "5"
    assert Settings.from_env(env) == settings
