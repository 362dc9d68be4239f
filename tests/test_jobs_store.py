"""Job records, admission, atomic finishing and durable events, on a real redis-server."""

from __future__ import annotations

import pytest
import redis

from engine.errors import UnknownJob
from engine.jobs import Action, JobStatus
from engine.prompt import parse
from engine.recipe import Recipe
from tasks.events import EventBus, EventType, JobEvent
from tasks.job_store import JobStore
from tasks.records import RELAX, Job, new_job_id


@pytest.fixture
def store(redis_url):
    connection = redis.Redis.from_url(redis_url)
    yield JobStore(connection)
    connection.close()


def job(owner="alice", **changes) -> Job:
    return Job(id=new_job_id(), action=Action.IMAGINE, owner=owner, request=parse("a cat --seed 3"), model="v6",
               family="sd15", seed=3, **changes)  # fmt: skip


def test_a_record_survives_the_round_trip(store):
    original = job(guild="g1", channel="c1", params={"scale": 1.5}, mode=RELAX, work=123)
    assert store.admit(original, max_active=2, max_held=5).status == "queued"
    loaded = store.get(original.id)
    assert loaded.request == original.request
    assert (loaded.guild, loaded.channel, loaded.params, loaded.mode, loaded.work) == (
        "g1",
        "c1",
        {"scale": 1.5},
        RELAX,
        123,
    )
    assert loaded.status is JobStatus.QUEUED
    assert loaded.queued_at is not None


def test_records_and_recipes_written_before_index_was_called_tile_still_load(store):
    """Jobs kept their grid image as ``tile`` (record) and ``parent_tile`` (recipe) before; they still work."""
    follow_up = job(parent=new_job_id(), index=3, size=(64, 48)).with_changes(action=Action.VARY_STRONG)
    fields = follow_up.to_redis()
    assert (fields["index"], fields["size"]) == ("3", "[64, 48]")
    fields["tile"] = fields.pop("index")
    store.redis.hset(f"dreamloom:job:{follow_up.id}", mapping=fields)
    loaded = store.get(follow_up.id)
    assert (loaded.index, loaded.size, loaded.label) == (3, (64, 48), "Variations (Strong)")
    recipe = {"action": "separate", "request": parse("x").to_dict(), "seed": 5, "image_seeds": [5],
              "model": {"alias": "v6", "source": "s", "family": "sd15"}, "parent_tile": 2}  # fmt: skip
    assert Recipe.from_dict(recipe).parent_index == 2


def test_unknown_and_malformed_ids(store):
    for bad in ("0" * 32, "../etc", "", "x" * 200):
        with pytest.raises(UnknownJob, match="does not exist"):
            store.get(bad)
        assert not store.exists(bad)


def test_admission_queues_up_to_the_running_limit_then_holds_then_refuses(store):
    outcomes = [store.admit(job(), max_active=2, max_held=2) for _ in range(5)]
    assert [(o.status, o.rank) for o in outcomes] == [
        ("queued", 0),
        ("queued", 1),
        ("held", 0),
        ("held", 1),
        ("full", 2),
    ]
    assert len(store.jobs_of("alice")) == 4, "a refused job leaves no record"
    assert store.admit(job(owner="bob"), max_active=2, max_held=2).status == "queued", "limits are per user"


def test_finishing_releases_held_jobs_in_order(store):
    jobs = [job() for _ in range(4)]
    for item in jobs:
        store.admit(item, max_active=1, max_held=5)
    assert store.held_jobs("alice") == [j.id for j in jobs[1:]]
    outcome = store.finish(jobs[0], JobStatus.DONE, (JobStatus.QUEUED, JobStatus.RUNNING), max_active=1)
    assert outcome.won
    assert outcome.released == [(jobs[1].id, 0)]
    assert store.get(jobs[1].id).status is JobStatus.QUEUED
    assert store.held_jobs("alice") == [jobs[2].id, jobs[3].id]


def test_a_job_finishes_once_with_exactly_one_event(store):
    item = job()
    store.admit(item, max_active=2, max_held=2)
    events = EventBus(store.redis)
    done = JobEvent(EventType.DONE, item.id, item.owner).fields()
    first = store.finish(item, JobStatus.DONE, (JobStatus.QUEUED, JobStatus.RUNNING), 2, event=done)
    second = store.finish(item, JobStatus.DONE, (JobStatus.QUEUED, JobStatus.RUNNING), 2, event=done)
    late_fail = store.finish(item, JobStatus.FAILED, (JobStatus.QUEUED, JobStatus.RUNNING), 2, event=done)
    assert (first.won, second.won, late_fail.won) == (True, False, False)
    assert second.previous == "done"
    assert store.get(item.id).status is JobStatus.DONE
    read = events.read("test", "reader", block_ms=10)
    assert [(e.type, e.job_id) for e in read] == [(EventType.DONE, item.id)]


def test_begin_counts_attempts_and_refuses_finished_jobs(store):
    item = job()
    store.admit(item, max_active=2, max_held=2)
    assert store.begin(item, "w1", max_attempts=3) == (1, "queued")
    assert store.begin(item, "w2", max_attempts=3) == (2, "running"), "a redelivery is another attempt"
    assert store.get(item.id).worker == "w2"
    store.finish(item, JobStatus.CANCELLED, (JobStatus.RUNNING,), 2)
    assert store.begin(item, "w3", max_attempts=3) == (0, "cancelled")


def test_begin_marks_the_worker_alive_and_announces_attempts_it_may_run(store):
    events = EventBus(store.redis)
    events.ensure_group("test")
    item = job()
    store.admit(item, max_active=2, max_held=2)
    started = JobEvent(EventType.STARTED, item.id, item.owner, item.channel, percent=0).fields()
    assert store.workers("sd15") == 0
    assert store.begin(item, "w1", max_attempts=2, event=started) == (1, "queued")
    assert store.workers("sd15") == 1
    assert store.begin(item, "w2", max_attempts=2, event=started) == (2, "running")
    assert store.begin(item, "w3", max_attempts=2, event=started) == (3, "running")
    read = events.read("test", "reader", block_ms=10)
    assert [(e.type, e.job_id, e.percent) for e in read] == [(EventType.STARTED, item.id, 0)] * 2, (
        "the third attempt is past the limit: it fails instead of starting"
    )
    assert store.workers("sd15") == 3


def test_waiting_order_is_priority_then_arrival(store):
    first, second, third = job(owner="a"), job(owner="b"), job(owner="c")
    for item, level in ((first, 1), (second, 0), (third, 1)):
        store.admit(item, 5, 5)
        store.mark_sent(item, level)
    assert [store.waiting_position(j) for j in (second, first, third)] == [1, 2, 3]
    store.begin(second, "w", max_attempts=3)
    assert store.waiting_position(second) is None
    assert store.waiting_position(first) == 1


def test_events_wait_for_a_front_end_that_was_down(store):
    """A group reads what was written while its reader was away; an unacknowledged event comes back."""
    bus = EventBus(store.redis)
    bus.ensure_group("bot")
    for n in range(3):
        bus.emit(JobEvent(EventType.PROGRESS, f"job{n}", "alice", percent=n))
    crashed = EventBus(store.redis)  # a reader that takes events and dies before acknowledging them
    taken = crashed.read("bot", "bot-1", count=2, block_ms=10)
    assert [e.job_id for e in taken] == ["job0", "job1"]
    restarted = EventBus(store.redis)
    again = restarted.read("bot", "bot-1", block_ms=10)
    assert [e.job_id for e in again] == ["job0", "job1"], "its own unacknowledged events first"
    restarted.ack("bot", *[e.id for e in again if e.id])
    rest = restarted.read("bot", "bot-1", block_ms=10)
    assert [e.job_id for e in rest] == ["job2"]
    restarted.ack("bot", *[e.id for e in rest if e.id])
    assert restarted.read("bot", "bot-1", block_ms=10) == []
    other_group = EventBus(store.redis).read("web", "web-1", block_ms=10)
    assert len(other_group) == 3, "every front end has its own group and sees every event"


def test_events_carry_previews_as_bytes(store):
    bus = EventBus(store.redis)
    bus.emit(JobEvent(EventType.PROGRESS, "j", "alice", channel="c", percent=40, preview=b"\x00\xffWEBP"))
    (event,) = bus.read("g", "c1", block_ms=10)
    assert (event.percent, event.preview, event.channel) == (40, b"\x00\xffWEBP", "c")


def test_status_counts_follow_every_change(store):
    first, second, third = job(), job(), job()
    for item in (first, second, third):
        store.admit(item, max_active=2, max_held=5)
    assert {k: v for k, v in store.counts().items() if v} == {"queued": 2, "held": 1}
    store.begin(first, "w", max_attempts=3)
    store.begin(first, "w", max_attempts=3)  # a redelivery changes nothing
    assert (store.counts()["queued"], store.counts()["running"]) == (1, 1)
    store.finish(first, JobStatus.DONE, (JobStatus.RUNNING,), max_active=2)
    assert {k: v for k, v in store.counts().items() if v} == {"queued": 2, "done": 1}, "the held job was released"
    store.finish(second, JobStatus.CANCELLED, (JobStatus.QUEUED,), max_active=2)
    assert {k: v for k, v in store.counts().items() if v} == {"queued": 1, "done": 1, "cancelled": 1}


def test_waiting_jobs_by_family_and_mode(store):
    fast, relax = job(), job(owner="bob", mode=RELAX)
    for item, level in ((fast, 0), (relax, 5)):
        store.admit(item, 5, 5)
        store.mark_sent(item, level)
    assert store.families_waiting() == {"sd15": {"fast": 1, "relax": 1}}
