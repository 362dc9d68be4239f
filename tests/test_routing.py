"""Per-model routing: a job goes to a worker that announces its model, else to its family's queue with
time to load the model; queue names stay safe whatever a model is called."""

from __future__ import annotations

import re
import sys
import time
from functools import partial
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from engine.errors import ConfigError, PromptError, UnknownModel
from engine.jobs import JobStatus
from engine.null import NullEngine
from engine.prompt import parse
from engine.registry import Registry
from tasks.celery_app import make_celery
from tasks.client import JobClient
from tasks.health import check_workers
from tasks.job_store import WORKER_ALIVE_SECONDS
from tasks.records import Job
from tasks.routing import (
    MAX_MODEL_NAME_BYTES,
    load_allowance,
    model_queue_name,
    queue_name,
    served_by,
    time_limits,
    worker_queues,
)
from tasks.settings import Settings
from tasks.worker import create_worker_app
from tasks.worker_process import served_models, worker_command
from tests.support.servers import wait_until

SAFE_QUEUE = re.compile(r"dreamloom\.model\.[a-z0-9_-]+\.(fast|relax)")
HOSTILE = ["v6", "V6", "v6.fast", "v6_2efast", "v6.1", "v6_1", "a b", "../x", "x:y", "x\ny", "*", "model",
           "dreamloom.sd15.fast", "ü", "🙂", "\x00", "\ud800", "_", "-", "a" * MAX_MODEL_NAME_BYTES]  # fmt: skip


@pytest.fixture(scope="module")
def two_model_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two models of one family (and one of another); the NullEngine never loads their sources."""
    path = tmp_path_factory.mktemp("routing") / "models.toml"
    entries = [("v6", "sd15"), ("v7", "sd15"), ("niji", "sdxl")]
    path.write_text('default = "v6"\n' + "".join(
        f'[models.{alias}]\nsource = "/nowhere/{alias}"\nfamily = "{family}"\nnative_size = [64, 64]\n'
        f"size_multiple = 16\nsteps = 2\n" for alias, family in entries))  # fmt: skip
    return path


def test_hostile_model_names_give_safe_distinct_queues():
    names = [model_queue_name(name, mode) for name in HOSTILE for mode in ("fast", "relax")]
    assert all(SAFE_QUEUE.fullmatch(name) for name in names), names
    assert len(set(names)) == len(names), "no two models (or modes) share a queue"
    assert model_queue_name("v6.fast", "relax") == "dreamloom.model.v6_2efast.relax", "a mode cannot be smuggled in"
    assert served_by(names) == ([], HOSTILE), "a worker's heartbeat reads back exactly the models it serves"
    for bad in ("", "a" * (MAX_MODEL_NAME_BYTES + 1), "é" * 33):
        with pytest.raises(ValueError, match=f"a model name is 1-{MAX_MODEL_NAME_BYTES} bytes"):
            model_queue_name(bad, "fast")
    with pytest.raises(ValueError, match="mode must be one of fast, relax"):
        model_queue_name("v6", "urgent")
    for family in ("model", "", "sd.15", "SD15"):
        with pytest.raises(ValueError, match="a model family is"):
            queue_name(family, "fast")
    unwritten = ["dreamloom.model.v6_2.fast", "dreamloom.model.V6.fast", "dreamloom.model._61.fast", "celery",
                 "dreamloom.sd15.later", "dreamloom.model.fast"]  # fmt: skip
    assert served_by(unwritten) == ([], []), "names no dispatcher writes"


@examples(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=16), st.text(min_size=1, max_size=16))
def test_model_queue_names_are_injective(first: str, second: str):
    try:
        one, other = model_queue_name(first, "fast"), model_queue_name(second, "fast")
    except ValueError:  # over the byte limit: refused, never shortened into someone else's name
        return
    assert SAFE_QUEUE.fullmatch(one)
    assert (one == other) == (first == second)
    assert served_by([one]) == ([], [first])


def test_worker_command_lists_model_queues_first():
    command = worker_command(["sdxl", "sd15"], concurrency=1, name="w@h", models=["v7", "v6"])
    assert command[:6] == [sys.executable, "-m", "tasks.worker_process", "-A", "tasks.celery_worker", "worker"]
    assert command[command.index("-Q") + 1].split(",") == [
        "dreamloom.model.v7.fast", "dreamloom.model.v6.fast", "dreamloom.model.v7.relax", "dreamloom.model.v6.relax",
        "dreamloom.sd15.fast", "dreamloom.sdxl.fast", "dreamloom.sd15.relax", "dreamloom.sdxl.relax",
    ]  # fmt: skip
    assert worker_queues(["sd15"], ["relax"], ["v6"]) == ["dreamloom.model.v6.relax", "dreamloom.sd15.relax"]


def test_a_worker_serves_the_models_of_its_families_or_the_ones_named(two_model_registry):
    registry = Registry.from_toml(two_model_registry)
    assert served_models(registry) == (["sd15", "sdxl"], ["v6", "v7", "niji"])
    assert served_models(registry, ["sd15"]) == (["sd15"], ["v6", "v7"])
    assert served_models(registry, None, ["v7"]) == (["sd15"], ["v7"]), "its family is the fallback"
    assert served_models(registry, ["sdxl"], ["v7"]) == (["sdxl", "sd15"], ["v7"])
    with pytest.raises(UnknownModel, match="Unknown model 'v8'"):
        served_models(registry, None, ["v8"])


def test_model_settings_refuse_what_they_cannot_read():
    from bot.cli.settings import ServiceSettings

    assert ServiceSettings.from_env({"DREAMLOOM_WORKER_MODELS": "v6, niji,v6"}).worker_models == ("v6", "niji")
    for raw in ("v6,../x", "V6", ",".join(f"m{n}" for n in range(33)), "a" * 33):
        with pytest.raises(ConfigError, match="DREAMLOOM_WORKER_MODELS"):
            ServiceSettings.from_env({"DREAMLOOM_WORKER_MODELS": raw})
    table = Settings.from_env({"DREAMLOOM_MODEL_LOAD_SECONDS": "sdxl=240, flux = 600"})
    assert (table.model_load_seconds_for("sdxl"), table.model_load_seconds_for("flux")) == (240.0, 600.0)
    assert table.model_load_seconds_for("sd15") == 90.0, "families not named keep the built-in default"
    assert Settings.from_env({"DREAMLOOM_MODEL_LOAD_SECONDS": "45"}).model_load_seconds_for("flux") == 45.0
    for raw in ("sdxl", "sdxl=-1", "sdxl=nan", "sdxl=601", "=5", "sdxl=1e9", ",".join(["a=1"] * 65)):
        with pytest.raises(ConfigError, match="DREAMLOOM_MODEL_LOAD_SECONDS"):
            Settings.from_env({"DREAMLOOM_MODEL_LOAD_SECONDS": raw})


def test_time_for_loading_is_added_and_bounded():
    settings = Settings(max_job_seconds=1200)
    assert time_limits(10**6, settings) == (61, 86), "a minute and a second for one megapixel-step"
    assert time_limits(10**6, settings, 100.0) == (161, 211), "soft and hard both get the load time"
    assert load_allowance("sdxl", None, settings) == 180.0, "no recorded load: the family's default"
    assert load_allowance("sdxl", 20.0, settings) == 45.0, "a recorded load, half again and a margin"
    soft, hard = time_limits(10**15, settings, 10**9)
    assert soft == 1200 + 600, "loading adds at most MAX_LOAD_ALLOWANCE_SECONDS"
    assert hard < settings.visibility_timeout, "Redis never hands a loading job to a second worker"


def sent_message(settings: Settings, queue: str):
    """The message the broker holds on ``queue`` (read with the job system's own transport options)."""
    with make_celery(settings).connection_for_read() as connection:
        simple = connection.SimpleQueue(queue)
        try:
            message = simple.get(timeout=5)
            message.ack()
            return message
        finally:
            simple.close()


def test_a_job_whose_model_no_worker_announces_goes_to_its_family_with_time_to_load(settings, two_model_registry):
    client = JobClient(settings, registry=Registry.from_toml(two_model_registry))
    try:
        client.store.models_seen("gone@test", ["v7"])
        client.store.redis.zadd("dreamloom:model-workers:v7", {"gone@test": time.time() - WORKER_ALIVE_SECONDS - 1})
        job = client.submit(parse("a lighthouse --v 7"), owner="alice")
        assert client.store.get_field(job.id, "queue") == "dreamloom.sd15.fast"
        soft, hard = time_limits(job.work, settings)
        headers = sent_message(settings, "dreamloom.sd15.fast").headers
        assert headers["id"] == job.id
        assert headers["timelimit"] == [int((soft + 90) * 1.25) + 10, soft + 90], "the sd15 default: 90 s"

        client.store.record_load_times({"v7": 40.0})
        again = client.submit(parse("a lighthouse --v 7"), owner="bob")
        assert sent_message(settings, "dreamloom.sd15.fast").headers["timelimit"][1] == soft + 75, "40 x 1.5 + 15"

        client.store.models_seen("w@test", ["v7"])
        third = client.submit(parse("a lighthouse --v 7"), owner="carol")
        assert client.store.get_field(third.id, "queue") == "dreamloom.model.v7.fast"
        assert sent_message(settings, "dreamloom.model.v7.fast").headers["timelimit"] == [hard, soft], (
            "on its model's own queue a job gets no time for loading: the worker has the model"
        )
        assert again.status is JobStatus.QUEUED
    finally:
        client.close()


def test_a_model_whose_jobs_wait_with_no_worker_fails_the_health_check(settings, two_model_registry):
    client = JobClient(settings, registry=Registry.from_toml(two_model_registry))
    try:
        for family in ("sd15", "sdxl"):
            client.store.worker_seen(family, "w@test")
        client.store.models_seen("w@test", ["v6"])
        client.submit(parse("a lighthouse --v 6"), owner="alice")
        assert check_workers(settings, ["sd15", "sdxl"]).ok, "its worker is alive"
        client.store.redis.zadd("dreamloom:model-workers:v6", {"w@test": time.time() - WORKER_ALIVE_SECONDS - 1})
        check = check_workers(settings, ["sd15", "sdxl"])
        assert not check.ok
        assert "v6 (1 waiting)" in check.detail
        assert "dreamloom worker --models v6" in check.detail
    finally:
        client.close()


def wait_finished(client: JobClient, jobs: list[Job]) -> None:
    def ended(job_id: str) -> bool:
        return client.get(job_id).finished

    for job in jobs:
        wait_until(partial(ended, job.id), timeout=60, what=f"job {job.id}")


class RecordingEngine(NullEngine):
    """A NullEngine that remembers the models it was asked for: which worker rendered which job."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry)
        self.models: list[str | None] = []

    def imagine(self, request, **kwargs):
        self.models.append(request.model)
        return super().imagine(request, **kwargs)


@pytest.mark.slow
def test_jobs_of_two_models_of_one_family_go_to_the_workers_that_have_them(settings, two_model_registry):
    registry = Registry.from_toml(two_model_registry)
    client = JobClient(settings, registry=registry)
    engines = {"v6": RecordingEngine(registry), "v7": RecordingEngine(registry)}

    queues = {model: worker_queues(["sd15"], models=[model]) for model in engines}  # both serve the family too
    for model, names in queues.items():  # what each worker's heartbeat announces (tasks.celery_worker)
        families, models = served_by(names)
        client.store.worker_seen(families[0], f"{model}@test")
        client.store.models_seen(f"{model}@test", models)

    def worker(model: str):
        app = create_worker_app(settings, engine_factory=lambda: engines[model])
        return start_worker(app, pool="solo", perform_ping_check=False, queues=queues[model], shutdown_timeout=30)

    try:
        jobs = {model: [client.submit(parse(f"job {n} --v {model[1]}"), owner=f"{model}-{n}") for n in range(3)]
                for model in engines}  # fmt: skip
        with worker("v6"):  # one worker at a time: Celery's test workers in one process share the current app
            wait_finished(client, jobs["v6"])
            assert [client.get(job.id).status for job in jobs["v7"]] == [JobStatus.QUEUED] * 3, (
                "the v6 worker serves the family too, but v7's jobs wait for the worker that has v7"
            )
        with worker("v7"):
            wait_finished(client, jobs["v7"])
        assert engines["v6"].models == ["v6"] * 3, "every v6 job, and only those, on the worker that has v6"
        assert engines["v7"].models == ["v7"] * 3
        for model, made in jobs.items():
            assert {client.store.get_field(job.id, "queue") for job in made} == {f"dreamloom.model.{model}.fast"}
            assert all(client.get(job.id).status is JobStatus.DONE for job in made)
    finally:
        client.close()


@pytest.mark.slow
def test_dreamloom_worker_names_a_model_it_cannot_serve(tmp_path):
    from tests.support.playground import clean_env, dreamloom

    env = clean_env(PYTHONPATH=str(Path(__file__).resolve().parents[1]))  # this checkout's code
    unknown = dreamloom("worker", "--models", "v9", env=env, cwd=tmp_path)
    assert unknown.returncode != 0
    assert "Unknown model 'v9': known models are demo" in unknown.stderr
    hostile = dreamloom("worker", "--models", "demo,../../etc", env=env, cwd=tmp_path)
    assert hostile.returncode != 0
    assert "--models: '../../etc' is not a model name" in hostile.stderr


def test_a_parameter_the_model_cannot_honour_is_refused_before_a_job_exists(settings, tmp_path):
    """--tile on a transformer model (SD3, FLUX) is refused at the front door, naming the parameter, instead of
    a queued job that fails on the worker; a model that tiles still takes it."""
    path = tmp_path / "models.toml"
    path.write_text('default = "v6"\n[models.v6]\nsource = "/nowhere/v6"\nfamily = "sd15"\n'
                    '[models.v7]\nsource = "/nowhere/v7"\nfamily = "flux"\n')  # fmt: skip
    client = JobClient(settings, registry=Registry.from_toml(path))
    try:
        with pytest.raises(PromptError, match=r"--tile is not available on model 'v7' \(flux\)"):
            client.submit(parse("a tiled floor --tile --v 7"), owner="alice")
        assert client.jobs_of("alice") == [], "no job was made"
        assert client.submit(parse("a tiled floor --tile"), owner="alice").status is JobStatus.QUEUED
    finally:
        client.close()
