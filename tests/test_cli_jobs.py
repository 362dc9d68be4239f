"""``dreamloom imagine`` and the buttons as commands, run as a user runs them, against a real job system
(Redis, a worker, local storage); and their refusals: a bad parameter exits 2 with the bot's message."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.jobs import JobStatus
from engine.prompt import parse
from tasks.client import JobClient
from tests.support.playground import JOB_DONE, clean_env, dreamloom, local_settings, null_registry, painting_worker
from tests.support.servers import wait_until


@pytest.fixture
def job_system(redis_url, tmp_path) -> Iterator[dict[str, str]]:
    """A job system with a painting worker; yields the environment that points the CLI at it."""
    registry_file, registry = null_registry(tmp_path)
    settings = local_settings(redis_url, tmp_path)
    with painting_worker(settings, registry):
        yield clean_env(
            REDIS_URL=redis_url,
            DREAMLOOM_DATA_DIR=str(settings.data_dir),
            DREAMLOOM_MODELS=str(registry_file),
            DREAMLOOM_USER="carol",
        )


@pytest.mark.slow
def test_imagine_and_follow_ups_end_to_end(job_system, tmp_path):
    result = dreamloom("imagine", "a lighthouse --ar 16:9 --seed 7", env=job_system, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    found = JOB_DONE.search(result.stdout)
    assert found, result.stdout
    grid_id = found[1]
    grid_path = Path(re.search(r"^  grid: (.+)$", result.stdout, re.MULTILINE)[1])  # type: ignore[index]
    assert grid_path == tmp_path / "data" / "artifacts" / "jobs" / grid_id / "grid.jpg"
    assert grid_path.read_bytes()[:3] == b"\xff\xd8\xff"
    assert re.search(rf"^{grid_id[:8]} +\d+% ", result.stdout, re.MULTILINE), "progress lines while it runs"
    assert "note:" not in result.stdout, "a configured model needs no notice"

    result = dreamloom("vary", grid_id[:8], "2", "--strong", env=job_system, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    variation_id = JOB_DONE.search(result.stdout)[1]  # type: ignore[index]
    assert "(Variations (Strong))" in result.stdout
    manifest = json.loads((grid_path.parent.parent / variation_id / "job.json").read_text())
    assert (manifest["parent"], manifest["parent_index"], manifest["owner"]) == (grid_id, 2, "carol")

    result = dreamloom("upscale", grid_id, "1", env=job_system, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(Image #1)" in result.stdout
    image = Path(re.search(r"^  image: (.+)$", result.stdout, re.MULTILINE)[1])  # type: ignore[index]
    assert image.name == "1.webp"
    assert image.is_file()

    result = dreamloom("upscale", grid_id, "3", "--creative", env=job_system, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(Upscaled (Creative))" in result.stdout, "on a grid: separate image 3, then upscale it"

    listed = dreamloom("jobs", env=job_system, cwd=tmp_path)
    assert listed.returncode == 0
    assert len(listed.stdout.splitlines()) == 5
    assert listed.stdout.splitlines()[-1].startswith(f"{grid_id}  done")


def test_a_follow_up_that_cannot_run_exits_2(job_system, tmp_path):
    result = dreamloom("imagine", "a cat --seed 1", env=job_system, cwd=tmp_path)
    grid_id = JOB_DONE.search(result.stdout)[1]  # type: ignore[index]
    result = dreamloom("zoom", grid_id, env=job_system, cwd=tmp_path)
    assert result.returncode == 2
    assert "Not possible: Job" in result.stderr
    assert "is a grid: say which image (1-4)" in result.stderr
    result = dreamloom("vary", "f" * 32, "1", env=job_system, cwd=tmp_path)
    assert result.returncode == 2
    assert "Unknown job" in result.stderr
    result = dreamloom("cancel", grid_id[:8], env=job_system, cwd=tmp_path)
    assert (result.returncode, result.stderr.strip()) == (
        2,
        "Not possible: This job is already done; there is nothing to cancel",
    )


def test_cancel_waits_for_a_running_job_to_stop_and_says_how_it_ended(redis_url, tmp_path):
    registry_file, registry = null_registry(tmp_path)
    settings = local_settings(redis_url, tmp_path)
    env = clean_env(REDIS_URL=redis_url, DREAMLOOM_DATA_DIR=str(settings.data_dir),
                    DREAMLOOM_MODELS=str(registry_file), DREAMLOOM_USER="carol")  # fmt: skip
    with painting_worker(settings, registry, step_seconds=1.0), JobClient(settings, registry=registry) as client:
        job = client.submit(parse("a slow cat"), owner="carol")
        wait_until(lambda: client.get(job.id).status is JobStatus.RUNNING, timeout=60, what="the job to start")
        result = dreamloom("cancel", job.id[:8], env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"job {job.id} cancelled\n", "it waited for the running job's next step"
        assert client.get(job.id).status is JobStatus.CANCELLED


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["imagine", "a cat --chaos 150"], "Invalid parameter: --chaos must be a whole number from 0 to 100 (got 150)"),
        (["imagine", "a {cat"], "Invalid prompt: Unbalanced braces"),
        (["imagine", "a {red, green} cat --repeat 6"], "Invalid prompt: This prompt makes 12 jobs"),
        (["vary", "0123abcd", "7"], "an image of a grid is 1, 2, 3 or 4 (got '7')"),
        (["zoom", "0123abcd", "--ar", "wide"], "an aspect ratio is W:H such as 16:9 (got 'wide')"),
    ],
)
def test_bad_parameters_exit_2_with_the_message(args, message, tmp_path):
    # Nothing listens at this REDIS_URL: a bad request is refused before any service is looked for.
    result = dreamloom(*args, env=clean_env(REDIS_URL="redis://127.0.0.1:9/0"), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "dreamloom-data").exists(), "no embedded job system was started"
