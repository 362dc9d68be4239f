"""Jobs end to end through a real Celery worker, real Redis and the S3 server: submit, events, artifacts,
follow-ups, fairness, priorities, cancel, and every kind of bad input."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import time
from typing import Any

import boto3
import pytest
from PIL import Image

from engine.actions import ACTIONS, FollowUpOptions
from engine.errors import InvalidFollowUp, JobFailed, NotAllowed, QueueFull, UnknownJob
from engine.jobs import Action, JobStatus, PanDirection
from engine.null import NullEngine
from engine.prompt import parse
from engine.registry import Registry
from tasks.artifacts import content_type
from tasks.client import JobClient
from tasks.events import EventType
from tasks.records import RELAX, Job, new_job_id
from tasks.worker import JobRunner
from tests.conftest import S3_CREDENTIALS
from tests.support.servers import wait_until


def finished(client: JobClient, job_id: str, timeout: float = 60) -> Any:
    wait_until(lambda: client.get(job_id).finished, timeout=timeout, what=f"job {job_id} to finish")
    return client.get(job_id)


def events_of(client: JobClient, job_id: str) -> list[Any]:
    seen = []
    while batch := client.events.read("test", "reader", count=100, block_ms=50):
        seen += batch
        client.events.ack("test", *[e.id for e in batch if e.id])
    return [e for e in seen if e.job_id == job_id]


def bucket_keys(settings) -> set[str]:
    s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name="us-east-1", **S3_CREDENTIALS)
    return {item["Key"] for item in s3.list_objects_v2(Bucket=settings.s3_bucket).get("Contents", [])}


@pytest.mark.slow
def test_imagine_then_follow_ups_end_to_end(client, settings, start_thread_worker):
    start_thread_worker()
    grid_job = client.submit(parse("a lighthouse at dusk --ar 16:9 --seed 7"), owner="alice", channel="c1", guild="g1")
    assert finished(client, grid_job.id).status is JobStatus.DONE
    events = events_of(client, grid_job.id)
    kinds = [e.type for e in events]
    assert kinds[0] is EventType.STARTED
    assert kinds.count(EventType.PROGRESS) >= 1
    assert kinds[-1] is EventType.DONE
    assert kinds.count(EventType.DONE) == 1
    assert all(e.channel == "c1" for e in events)
    previews = [e.preview for e in events if e.type is EventType.PROGRESS and e.preview]
    assert previews, "the engine previews every 2nd step; with no throttle each reaches an event"
    assert all(p[:4] == b"RIFF" and p[8:12] == b"WEBP" for p in previews)
    assert client.preview(grid_job.id) == previews[-1]

    keys = bucket_keys(settings)
    for name in ("1.webp", "2.webp", "3.webp", "4.webp", "grid.jpg", "job.json"):
        assert f"jobs/{grid_job.id}/{name}" in keys
    grid_manifest = client.manifest(grid_job.id)
    assert grid_manifest["recipe"]["seed"] == 7
    assert grid_manifest["recipe"]["image_seeds"] == [7, 8, 9, 10]
    assert grid_manifest["recipe"]["prompt_text"] == "a lighthouse at dusk --ar 16:9 --seed 7"
    assert grid_manifest["lineage"] == []
    assert client.artifact(grid_job.id, "grid")[:3] == b"\xff\xd8\xff", "the grid is kept as the JPEG the bot posts"
    original = client.artifact(grid_job.id, "2")
    assert (original[:4], original[8:16]) == (b"RIFF", b"WEBPVP8L"), "the images are kept as lossless WebP"

    variation = client.follow_up(grid_job.id, Action.VARY_STRONG, owner="bob", index=3, channel="c1")
    assert finished(client, variation.id).status is JobStatus.DONE
    variation_manifest = client.manifest(variation.id)
    assert (variation_manifest["parent"], variation_manifest["parent_index"]) == (grid_job.id, 3)
    assert variation_manifest["lineage"] == [grid_job.id]
    assert variation_manifest["owner"] == "bob", "whoever clicks owns the follow-up"
    assert variation_manifest["recipe"]["action"] == "vary_strong"

    separated = client.follow_up(grid_job.id, Action.SEPARATE, owner="alice", index=2)
    assert separated.status is JobStatus.DONE, "U2 needs no GPU: done when follow_up returns"
    assert client.manifest(separated.id)["recipe"]["seed"] == 8
    assert separated.seed == 8, "the record shows the image's own seed too"
    upscaled = client.follow_up(separated.id, Action.UPSCALE_SUBTLE, owner="alice")
    assert finished(client, upscaled.id).status is JobStatus.DONE
    upscaled_manifest = client.manifest(upscaled.id)
    assert upscaled_manifest["lineage"] == [grid_job.id, separated.id]
    assert upscaled_manifest["recipe"]["settings"]["width"] == 160

    zoomed = client.follow_up(separated.id, Action.ZOOM_OUT, owner="alice", options=FollowUpOptions(scale=1.5))
    panned = client.follow_up(
        separated.id, Action.PAN, owner="alice", options=FollowUpOptions(direction=PanDirection.LEFT)
    )
    rerolled = client.follow_up(grid_job.id, Action.REROLL, owner="alice")
    for child in (zoomed, panned, rerolled):
        assert finished(client, child.id).status is JobStatus.DONE
    assert client.manifest(zoomed.id)["params"]["scale"] == 1.5
    assert client.manifest(rerolled.id)["recipe"]["seed"] != 7


def test_progress_events_are_throttled(settings, registry_file, start_thread_worker, engine):
    from tests.support.fake_engines import SlowEngine

    throttled = dataclasses.replace(settings, progress_interval=1.0)
    client = JobClient(throttled, registry=Registry.from_toml(registry_file))
    start_thread_worker(job_engine=SlowEngine(engine, step_seconds=0.25), job_settings=throttled)
    job = client.submit(parse("a cat --q 2 --seed 1"), owner="alice")  # 8 steps of 0.25 s
    finished(client, job.id)
    progress = [e for e in events_of(client, job.id) if e.type is EventType.PROGRESS]
    assert progress
    assert [e.percent for e in progress] == sorted(e.percent or 0 for e in progress)
    # At most one a second (the last step always reports): spacing, not a count, so a busy machine passes too.
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(progress[:-1])]
    assert all(gap >= 0.95 for gap in gaps), gaps


def test_the_engine_is_built_once_per_worker_process(settings, registry_file, client):
    built = []

    def factory() -> NullEngine:
        built.append(1)
        return NullEngine(Registry.from_toml(registry_file))

    from celery.contrib.testing.worker import start_worker

    from tasks.routing import worker_queues
    from tasks.worker import create_worker_app

    app = create_worker_app(settings, engine_factory=factory)
    with start_worker(app, pool="solo", perform_ping_check=False, queues=worker_queues(["sd15"])):
        jobs = [client.submit(parse(f"job {n}"), owner=f"u{n}") for n in range(3)]
        for job in jobs:
            assert finished(client, job.id).status is JobStatus.DONE
    assert built == [1]


def test_one_users_flood_does_not_delay_another_users_first_job(settings, registry_file, start_thread_worker):
    limited = dataclasses.replace(settings, max_running_per_user=2, max_queued_per_user=20)
    client = JobClient(limited, registry=Registry.from_toml(registry_file))
    flood = [client.submit(parse(f"flood {n}"), owner="alice") for n in range(20)]
    assert [j.status for j in flood].count(JobStatus.QUEUED) == 2
    assert [j.status for j in flood].count(JobStatus.HELD) == 18
    first_of_bob = client.submit(parse("my first job"), owner="bob")
    start_thread_worker(job_engine=NullEngine(Registry.from_toml(registry_file)), job_settings=limited)
    for job in [*flood, first_of_bob]:
        finished(client, job.id)
    started = {job.id: client.get(job.id).started_at or 0.0 for job in [*flood, first_of_bob]}
    bob_started = started[first_of_bob.id]
    assert all(bob_started < started[job.id] for job in flood[2:]), "before every job beyond alice's limit"
    assert bob_started < started[flood[1].id], "and before alice's second: each user's first job goes first"
    order = sorted(started, key=lambda job_id: started[job_id])
    alice_order = [job_id for job_id in order if job_id != first_of_bob.id]
    assert alice_order == [job.id for job in flood], "held jobs are released in the order they came"


def test_relax_jobs_run_only_when_no_fast_job_waits(client, registry_file, start_thread_worker):
    relaxed = [client.submit(parse(f"relax {n}"), owner=f"r{n}", mode=RELAX) for n in range(3)]
    fast = [client.submit(parse(f"fast {n}"), owner=f"f{n}") for n in range(3)]
    start_thread_worker(job_engine=NullEngine(Registry.from_toml(registry_file)))
    for job in [*relaxed, *fast]:
        finished(client, job.id)
    latest_fast = max(client.get(j.id).started_at or 0 for j in fast)
    assert all((client.get(j.id).started_at or 0) > latest_fast for j in relaxed)


def test_queue_positions_and_held_jobs(settings, registry_file):
    limited = dataclasses.replace(settings, max_running_per_user=1, max_queued_per_user=3)
    client = JobClient(limited, registry=Registry.from_toml(registry_file))
    a1, a2, a3 = (client.submit(parse(f"a {n}"), owner="alice") for n in range(3))
    b1 = client.submit(parse("b"), owner="bob")
    assert client.queue_info(a1.id).position == 1
    assert client.queue_info(b1.id).position == 2
    held = client.queue_info(a3.id)
    assert (held.status, held.held_behind) == (JobStatus.HELD, 1)
    assert client.queue_info(a2.id).held_behind == 0
    client.store.record_duration("sd15", 10.0)
    assert client.queue_info(b1.id).eta_seconds == 20.0, "two jobs ahead on one worker, 10 s each"
    client.submit(parse("a 4"), owner="alice")
    with pytest.raises(QueueFull, match="Queue full: you already have 3 jobs waiting"):
        client.submit(parse("a 5"), owner="alice")


def test_cancel_held_queued_and_running_jobs(client, settings, registry_file, start_thread_worker, engine):
    limited = dataclasses.replace(settings, max_running_per_user=1)
    client = JobClient(limited, registry=Registry.from_toml(registry_file))
    first = client.submit(parse("one --q 2 --seed 1"), owner="alice")
    held = client.submit(parse("two"), owner="alice")
    assert client.cancel(held.id, by="alice").status is JobStatus.CANCELLED
    assert client.cancel(first.id, by="alice").status is JobStatus.CANCELLED
    assert [e.type for e in events_of(client, first.id)] == [EventType.CANCELLED]

    from tests.support.fake_engines import SlowEngine

    running = client.submit(parse("three --q 2 --seed 2"), owner="alice")
    start_thread_worker(job_engine=SlowEngine(engine), job_settings=limited)
    wait_until(lambda: client.get(running.id).status is JobStatus.RUNNING, what="the job to start")
    wait_until(lambda: client.get(running.id).progress > 0, what="a first step")
    client.cancel(running.id, by="alice")
    assert finished(client, running.id, timeout=20).status is JobStatus.CANCELLED
    kinds = [e.type for e in events_of(client, running.id)]
    assert kinds[-1] is EventType.CANCELLED
    assert EventType.DONE not in kinds
    assert client.get(first.id).status is JobStatus.CANCELLED, "the stale queue entry was skipped"
    assert client.get(first.id).attempts == 0


def finished_parent(client: JobClient, action: Action) -> Job:
    """A finished job to follow up, recorded without ever being queued (the running worker never sees it)."""
    job = Job(id=new_job_id(), action=action, owner="alice", request=parse("y"), model="v6", family="sd15", seed=1)
    client.store.create_running(job)
    client.store.finish(job, JobStatus.DONE, (JobStatus.RUNNING,), 2, fields={"files": json.dumps({})})
    return job


def test_bad_input_gets_clear_errors_and_changes_nothing(client, registry_file, start_thread_worker):
    for call in (
        lambda: client.get("0" * 32),
        lambda: client.cancel("0" * 32, by="alice"),
        lambda: client.follow_up("0" * 32, Action.VARY_SUBTLE, owner="alice", index=1),
        lambda: client.follow_up("not-an-id!", Action.VARY_SUBTLE, owner="alice", index=1),
    ):
        with pytest.raises(UnknownJob, match="does not exist or was deleted"):
            call()

    class Broken:
        def imagine(self, request: Any, **options: Any) -> Any:
            raise JobFailed("The model could not render this prompt")

    start_thread_worker(job_engine=Broken())
    failed = finished(client, client.submit(parse("x"), owner="alice").id)
    assert (failed.status, failed.error) == (JobStatus.FAILED, "The model could not render this prompt")
    assert events_of(client, failed.id)[-1].message == "The model could not render this prompt"
    with pytest.raises(InvalidFollowUp, match="The job failed; only a finished job's images can be used"):
        client.follow_up(failed.id, Action.VARY_SUBTLE, owner="alice", index=1)

    done = finished_parent(client, Action.IMAGINE)
    for index in (0, 5, None):
        with pytest.raises(InvalidFollowUp, match=rf"Pick an image of the grid: 1, 2, 3 or 4 \(got {index}\)"):
            client.follow_up(done.id, Action.VARY_STRONG, owner="alice", index=index)
    with pytest.raises(InvalidFollowUp, match=r"Zoom Out is not possible on a grid \(separate an image with U1-U4"):
        client.follow_up(done.id, Action.ZOOM_OUT, owner="alice", index=1)
    single = finished_parent(client, Action.SEPARATE)
    with pytest.raises(InvalidFollowUp, match=r"Zoom must be from 1 to 2 \(got 3\)"):
        client.follow_up(single.id, Action.ZOOM_OUT, owner="alice", options=FollowUpOptions(scale=3.0))
    with pytest.raises(InvalidFollowUp, match="Pan needs a direction: left, right, up or down"):
        client.follow_up(single.id, Action.PAN, owner="alice")
    with pytest.raises(InvalidFollowUp, match="Re-roll is not possible on a single image"):
        client.follow_up(single.id, Action.REROLL, owner="alice")
    with pytest.raises(InvalidFollowUp, match=r"Upscale \(Subtle\) works on the whole image; it takes no image number"):
        client.follow_up(single.id, Action.UPSCALE_SUBTLE, owner="alice", index=2)

    queued = Job(id=new_job_id(), action=Action.IMAGINE, owner="alice", request=parse("z"), model="v6", family="sd15",
                 seed=1)  # fmt: skip
    client.store.admit(queued, 2, 10)  # queued, and not handed to the running worker
    before = client.get(queued.id)
    with pytest.raises(NotAllowed, match="Only the person who started a job can cancel it"):
        client.cancel(queued.id, by="mallory")
    assert client.get(queued.id) == before, "nothing changed"
    with pytest.raises(InvalidFollowUp, match="already done"):
        client.cancel(done.id, by="alice")


class _VariationsTooSlow(NullEngine):
    def vary(self, *args: Any, cancel: Any = None, **kwargs: Any) -> Any:
        while not cancel():  # steps that never end; the worker's deadline, kept at each step, stops them
            time.sleep(0.05)
        raise AssertionError("cancelled instead of stopped by the deadline")


def test_a_job_past_its_time_limit_says_what_can_be_done_for_its_own_action(
    client, settings, registry_file, start_thread_worker
):
    strict = dataclasses.replace(settings, max_job_seconds=1)
    start_thread_worker(job_engine=_VariationsTooSlow(Registry.from_toml(registry_file)), job_settings=strict)
    grid = finished(client, client.submit(parse("a cat --seed 2"), owner="alice").id)
    varied = finished(client, client.follow_up(grid.id, Action.VARY_STRONG, owner="alice", index=1).id)
    assert varied.status is JobStatus.FAILED
    assert varied.error == f"The job took longer than its time limit; {ACTIONS[Action.VARY_STRONG].too_slow}"
    assert "--q" not in varied.error, "no advice about a prompt a button cannot change"


class _LoadsInTheJob(NullEngine):
    """Its model "loads" inside the first job, for longer than the job's whole limit (a model swapped in)."""

    def __init__(self, registry: Registry, seconds: float) -> None:
        super().__init__(registry)
        self.seconds = seconds
        self.loaded: dict[str, float] = {}

    def load_times(self) -> dict[str, float]:
        return dict(self.loaded)

    def imagine(self, request: Any, **options: Any) -> Any:
        if not self.loaded:
            time.sleep(self.seconds)
            self.loaded["v6"] = self.seconds
        return super().imagine(request, **options)


def test_a_model_loaded_inside_a_job_does_not_count_against_its_time_limit(
    client, settings, registry_file, start_thread_worker
):
    strict = dataclasses.replace(settings, max_job_seconds=1)
    start_thread_worker(job_engine=_LoadsInTheJob(Registry.from_toml(registry_file), 2.0), job_settings=strict)
    job = finished(client, client.submit(parse("a cat --seed 3"), owner="alice").id)
    assert (job.status, job.error) == (JobStatus.DONE, None), "2 s of loading, 1 s limit: the load is not counted"


def test_a_redelivered_job_whose_result_exists_is_not_rendered_again(client, settings):
    """The worker stored everything and died before marking the job done: the next delivery finishes it
    from storage without rendering, and there is exactly one done event."""
    job = client.submit(parse("a cat --seed 5"), owner="alice")
    renders = []

    class Counting(NullEngine):
        def imagine(self, request: Any, **options: Any) -> Any:
            renders.append(request)
            return super().imagine(request, **options)

    def runner() -> JobRunner:
        return JobRunner(settings=settings, store=client.store, storage=client.storage,
                         dispatcher=client.dispatcher, engine=lambda: Counting(client.registry))  # fmt: skip

    crashing = runner()
    crashing._finish_done = lambda *args: (_ for _ in ()).throw(SystemExit("worker died"))  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        crashing.run(job.id, worker="w1")
    assert client.get(job.id).status is JobStatus.RUNNING
    assert len(renders) == 1

    runner().run(job.id, worker="w2")
    assert client.get(job.id).status is JobStatus.DONE
    assert len(renders) == 1, "not rendered again"
    runner().run(job.id, worker="w3")
    assert [e.type for e in events_of(client, job.id)].count(EventType.DONE) == 1


def test_jobs_stored_with_png_originals_keep_working(client, settings):
    """Originals were PNG files before they were lossless WebP: readers go through the job's record and
    job.json, so an old job's images are still served and its buttons still work."""
    job = client.submit(parse("a cat --seed 5"), owner="alice")
    runner = JobRunner(settings=settings, store=client.store, storage=client.storage,
                       dispatcher=client.dispatcher, engine=lambda: NullEngine(client.registry))  # fmt: skip
    runner.run(job.id, worker="w1")
    manifest = client.manifest(job.id)
    originals = {}
    for n in "1234":  # rewrite the job as the older layout stored it; the WebP files become unreadable
        originals[n] = Image.open(io.BytesIO(client.artifact(job.id, n))).convert("RGB")
        buffer = io.BytesIO()
        originals[n].save(buffer, format="PNG")
        client.storage.put(f"jobs/{job.id}/{n}.png", buffer.getvalue(), "image/png")
        client.storage.put(manifest["files"][n], b"not an image", "image/webp")
        manifest["files"][n] = f"jobs/{job.id}/{n}.png"
    client.storage.put(f"jobs/{job.id}/job.json", json.dumps(manifest).encode(), "application/json")
    client.store.update(job.id, files=json.dumps({**client.get(job.id).files, **manifest["files"]}))

    assert client.artifact(job.id, "3")[:4] == b"\x89PNG"
    assert content_type("3", client.artifact(job.id, "3")) == "image/png", "served as what it is"
    assert content_type("3") == "image/webp"
    separated = client.follow_up(job.id, Action.SEPARATE, owner="alice", index=3)
    varied = client.follow_up(job.id, Action.VARY_SUBTLE, owner="alice", index=3)
    for follow_up in (separated, varied):
        runner.run(follow_up.id, worker="w1")
        assert client.get(follow_up.id).status is JobStatus.DONE, client.get(follow_up.id).error
    image = Image.open(io.BytesIO(client.artifact(separated.id, "1"))).convert("RGB")
    assert image.tobytes() == originals["3"].tobytes(), "U3 of an old job is its third image, exactly"


def test_importing_the_client_does_not_import_torch():
    from tests.test_imports import modules_loaded_by

    loaded = modules_loaded_by("import tasks.client, tasks.job_store, tasks.events, tasks.file_storage")
    assert "tasks" in loaded
    assert "torch" not in loaded
    assert "diffusers" not in loaded


def test_recover_resends_jobs_whose_sender_crashed(client, registry_file, start_thread_worker):
    job = client.submit(parse("lost"), owner="alice")
    orphan = client.store.get(job.id)
    # As if the sender died between admitting the job and handing it to the broker:
    client.redis.delete("dreamloom:waiting:sd15")
    client.redis.sadd("dreamloom:unsent", orphan.id)
    client.redis.hset(f"dreamloom:job:{orphan.id}", "queued_at", str(time.time() - 120))
    client.redis.delete("dreamloom.sd15.fast")  # the broker lost it too
    assert client.recover() == [orphan.id]
    start_thread_worker(job_engine=NullEngine(Registry.from_toml(registry_file)))
    assert finished(client, orphan.id).status is JobStatus.DONE
    assert client.recover() == []
