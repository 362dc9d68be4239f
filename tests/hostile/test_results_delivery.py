"""Hostile members against the delivery of results and the job records: a channel or a member that refuses the
bot's messages, a flood of progress, Redis filling up, and a job delivered to a second worker while it renders.

Items 4, 9, 10 and 19 of issue 17. The jobs run through the real job store (redis-server), the real storage
(the S3 server) and ``JobRunner`` with the torch-free ``NullEngine``; the bot is the real discord.py bot, in
this process, against the Discord double.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import subprocess
import threading
import time
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis

from engine.errors import UnknownJob
from engine.jobs import Action, JobStatus
from engine.null import NullEngine
from engine.prompt import parse
from tasks.client import JobClient
from tasks.events import EventBus, EventType, JobEvent
from tasks.job_store import EVENT_STREAM, EVENT_STREAM_MAXLEN, PREFIX
from tasks.records import Job
from tasks.worker import JobRunner
from tests.support.playground import null_registry

GROUP = "bot"  # the Discord bot's consumer group (bot.discord.cogs.results.GROUP)


@pytest.fixture
def client(settings, tmp_path):
    """A client whose models are the NullEngine's (no model is built or loaded)."""
    job_client = JobClient(settings, registry=null_registry(tmp_path)[1])
    yield job_client
    job_client.redis.close()


def runner(client: JobClient, settings: Any, engine: Any = None) -> JobRunner:
    return JobRunner(settings=settings, store=client.store, storage=client.storage, dispatcher=client.dispatcher,
                     engine=lambda: engine or NullEngine(client.registry))  # fmt: skip


def done_job(client: JobClient, settings: Any, prompt: str, owner: str = "alice", channel: str | None = None) -> Job:
    job = client.submit(parse(prompt), owner=owner, channel=channel)
    runner(client, settings).run(job.id, worker="w1")
    finished = client.get(job.id)
    assert finished.status is JobStatus.DONE, finished.error
    return finished


# --- item 4: one failing event stops every later result ---------------------------------------------------


@pytest.mark.slow  # a real bot logs in to the double (seconds)
@pytest.mark.anyio
async def test_item_04_a_result_discord_refuses_does_not_stop_the_three_behind_it(discord_double, client, settings):
    """A bot restarts with a result Discord refuses (403: a member who blocks DMs) pending, and 3 finished jobs
    behind it: the 3 are posted, the refused one is acknowledged and marked, nothing loops."""
    from bot.discord.desk import RESULT_MARK
    from bot.discord.launcher import run_discord_bot
    from bot.discord.settings import BotSettings
    from tasks.settings import Secret

    double = discord_double
    closed = double.add_user("mallory")
    closed.dms_open = False  # sends to the DM channel answer 403 50007
    dm = double.dm_channel(closed)
    consumer = "hostile-bot"
    refused = await asyncio.to_thread(done_job, client, settings, "a DM result --seed 1", str(closed.id), str(dm.id))
    # A bot took the refused job's done event and stopped before acknowledging it (crashed, or failed on it).
    taken: list[JobEvent] = []
    while batch := await asyncio.to_thread(client.events.read, GROUP, consumer, 100, 50):
        taken += batch
    client.events.ack(GROUP, *[e.id or "" for e in taken if not (e.type.final and e.job_id == refused.id)])
    assert [e.job_id for e in taken if e.type is EventType.DONE] == [refused.id]

    channel = str(double.channel.id)
    owner = str(double.user.id)
    behind = [
        await asyncio.to_thread(done_job, client, settings, f"result {n} --seed {n}", owner, channel) for n in range(3)
    ]

    def posted() -> dict[str, int]:
        found: dict[str, int] = {}
        for message in double.messages():
            for job in behind:
                if message.attachments and any(job.id in c for c in message.custom_ids()):
                    found[job.id] = found.get(job.id, 0) + 1
        return found

    bot = asyncio.create_task(run_discord_bot(BotSettings(token=Secret(double.token), consumer=consumer), client))
    try:
        await double.wait_until_connected()
        await double.wait_for(lambda: len(posted()) == 3, timeout=30, what="the 3 results behind the refused one")

        def settled() -> bool:
            pending = client.redis.xpending(PREFIX + "events:final", GROUP)["pending"]
            return pending == 0 and (client.get_mark(refused.id, RESULT_MARK) or "").startswith("refused:")

        await double.wait_for(settled, timeout=10, what="the refused event to be acknowledged and marked")
        await asyncio.sleep(0.5)  # anything still looping would post again or try the DM again
    finally:
        bot.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bot
    assert posted() == {job.id: 1 for job in behind}, "each posted once"
    assert double.dms(closed) == []
    dm_posts = [c for c in double.calls_to("POST", "/channels/{channel_id}/messages") if str(dm.id) in c.path]
    assert len(dm_posts) == 1, "the refused result was tried once, not again and again"
    assert client.redis.xlen(PREFIX + "events:dead") == 0, "a refusal is final, not an error to set aside"


def test_item_04_a_failing_event_is_retried_a_few_times_then_set_aside_while_others_go_on(client, monkeypatch):
    """An event whose handling keeps failing comes back a bounded number of times (each counted), never ahead of
    every new event, then goes to the dead-letter stream where an operator sees it."""
    import tasks.events as events_module

    bus = EventBus(client.redis)
    bus.ensure_group(GROUP)
    bus.emit(JobEvent(EventType.DONE, "poison", "alice", channel="1"))
    (first,) = bus.read(GROUP, "bot-1", block_ms=10)  # handling fails: not acknowledged
    assert (first.job_id, first.deliveries) == ("poison", 1)
    bus.emit(JobEvent(EventType.DONE, "job1", "alice", channel="1"))
    bus.emit(JobEvent(EventType.PROGRESS, "job2", "alice", channel="1", percent=50))

    restarted = EventBus(client.redis)  # the bot restarts
    seen: list[JobEvent] = []
    for _ in range(4):
        batch = restarted.read(GROUP, "bot-1", block_ms=10)
        seen += batch
        restarted.ack(GROUP, *[e.id or "" for e in batch if e.job_id != "poison"])  # the poison one fails again
    assert [(e.job_id, e.deliveries) for e in seen[:1]] == [("poison", 2)], "its own backlog first, once"
    assert sorted((e.job_id, e.deliveries) for e in seen[1:]) == [("job1", 1), ("job2", 1)], "then the new events"

    monkeypatch.setattr(events_module, "CLAIM_IDLE_MS", 0)  # as if a minute had passed
    again = restarted.read(GROUP, "bot-1", block_ms=10)
    assert [(e.job_id, e.deliveries) for e in again] == [("poison", 3)]
    restarted.set_aside(GROUP, again[0], "HTTPException: 503 Service Unavailable")
    assert restarted.read(GROUP, "bot-1", block_ms=10) == []
    assert client.redis.xpending(PREFIX + "events:final", GROUP)["pending"] == 0
    ((_, dead),) = client.redis.xrange(PREFIX + "events:dead")
    assert (dead[b"job"], dead[b"group"], dead[b"deliveries"]) == (b"poison", b"bot", b"3")
    assert dead[b"reason"].startswith(b"HTTPException: 503")


# --- item 9: results lost after a few hours down -------------------------------------------------------------


def test_item_09_a_done_event_outlives_a_flood_of_progress_events(client, settings):
    """More progress events than the stream keeps arrive after a job is done, while no bot reads: the done
    event is still delivered, and a front end that starts finds the job among those it has not posted."""
    from bot.discord.desk import RESULT_MARK

    client.events.ensure_group(GROUP)  # the bot has read before, then went down for hours
    job = done_job(client, settings, "a result before the flood", channel="1234")
    flood = JobEvent(EventType.PROGRESS, "other", "bob", channel="1234", percent=50).fields()
    with client.redis.pipeline(transaction=False) as pipe:  # as JobStore.set_progress writes them, many workers
        for _ in range(EVENT_STREAM_MAXLEN + 1_000):
            pipe.xadd(EVENT_STREAM, flood, maxlen=EVENT_STREAM_MAXLEN, approximate=True)
        pipe.execute()
    assert client.redis.xlen(EVENT_STREAM) <= EVENT_STREAM_MAXLEN + 100, "progress stays capped"

    done = []
    while batch := client.events.read(GROUP, "bot-1", count=1_000, block_ms=10):
        done += [e for e in batch if e.type is EventType.DONE]
        client.events.ack(GROUP, *[e.id or "" for e in batch])
        if done:
            break
    assert [e.job_id for e in done] == [job.id]
    assert client.unmarked_results(RESULT_MARK) == [(job.id, "1234")], "not posted yet: a starting bot posts it"
    client.set_mark(job.id, RESULT_MARK, "posted:1")
    assert client.unmarked_results(RESULT_MARK) == [], "once"


# --- item 10: Redis grows without bound ---------------------------------------------------------------------


def test_item_10_records_expire_and_buttons_on_old_results_work_from_job_json(client, settings):
    """Finished records, per-user lists and message maps expire; a click on an expired job's buttons still
    starts its follow-ups, from the job's job.json in storage."""
    from bot.discord.desk import Desk
    from bot.discord.settings import BotSettings

    retention = settings.record_retention_seconds
    job = done_job(client, settings, "an old lighthouse --ar 16:9 --seed 7", channel="1234")
    record = f"{PREFIX}job:{job.id}"
    assert 0 < client.redis.ttl(record) <= retention, "a finished record expires"
    assert 0 < client.redis.ttl(f"{PREFIX}user:alice:jobs") <= retention + 86_400

    async def remember() -> int:
        async with AsyncRedis.from_url(settings.redis_url) as redis:
            await Desk(client, redis, BotSettings()).remember(42, job.id)
            return int(await redis.ttl("dreamloom:bot:message:42"))

    assert 0 < asyncio.run(remember()) <= retention, "the message map expires with the records"

    client.redis.delete(record)  # the retention has passed
    old = client.get(job.id)
    assert (old.status, old.owner, old.size, old.seed) == (JobStatus.DONE, "alice", job.size, job.seed)
    assert old.request == job.request
    assert client.artifact(job.id, "grid")[:3] == b"\xff\xd8\xff"
    separated = client.follow_up(job.id, Action.SEPARATE, owner="bob", index=2, channel="1234")  # U2
    assert separated.status is JobStatus.DONE, separated.error
    varied = client.follow_up(job.id, Action.VARY_STRONG, owner="bob", index=3, channel="1234")  # V3
    runner(client, settings).run(varied.id, worker="w1")
    assert client.get(varied.id).status is JobStatus.DONE, client.get(varied.id).error
    assert client.manifest(varied.id)["parent"] == job.id
    client.set_mark(job.id, "discord-result", "posted:1")
    assert not client.redis.exists(record), "a mark does not bring an expired record back as a stub"
    with pytest.raises(UnknownJob):
        client.get("f" * 32)


# --- item 19: a redelivered job is rendered again while the first attempt still runs --------------------------


class _Gated(NullEngine):
    """Renders only when let through; counts its renders."""

    def __init__(self, registry: Any) -> None:
        super().__init__(registry)
        self.renders = 0
        self.started = threading.Event()
        self.go_on = threading.Event()

    def imagine(self, request: Any, **options: Any) -> Any:
        self.renders += 1
        self.started.set()
        assert self.go_on.wait(30), "never let through"
        return super().imagine(request, **options)


def _outcome(run: Any, *args: Any) -> Exception | None:
    try:
        run(*args)
    except Exception as exc:
        return exc
    return None


def test_item_19_a_second_delivery_of_a_running_job_waits_for_a_stale_heartbeat(client, settings):
    """A job delivered again while its first attempt renders is not rendered a second time: it waits while the
    first worker's heartbeat is fresh, and takes the job over once it is stale or its process is gone."""
    from tasks.job_store import StillRunning

    engine = _Gated(client.registry)
    job = client.submit(parse("a slow castle --seed 3"), owner="alice")
    quick = dataclasses.replace(settings, heartbeat_seconds=0.6)
    first = threading.Thread(target=runner(client, quick, engine).run, args=(job.id, "w1"))
    first.start()
    try:
        assert engine.started.wait(30)
        time.sleep(1.0)  # past the heartbeat's own lifetime: only its refreshes keep it fresh
        second = _Gated(client.registry)
        second.go_on.set()
        busy = _outcome(runner(client, quick, second).run, job.id, "w2")  # Celery delivered it again
        assert second.renders == 0, "not rendered while the first attempt runs"
        assert isinstance(busy, StillRunning), "the delivery is tried again later"
        assert 0 < busy.retry_in <= 0.6
    finally:
        engine.go_on.set()
        first.join(30)
    assert client.get(job.id).status is JobStatus.DONE
    assert (client.get(job.id).attempts, engine.renders) == (1, 1)
    assert not client.redis.exists(f"{PREFIX}job:{job.id}:heartbeat"), "the heartbeat ends with the attempt"

    # A worker elsewhere whose heartbeat went stale (it hung, or its machine died): taken over once stale.
    stale = client.submit(parse("a stale castle --seed 4"), owner="bob")
    client.store.begin(stale, "w-elsewhere", 3, heartbeat=("elsewhere|1|x", 0.3))
    taker = _Gated(client.registry)
    taker.go_on.set()
    assert isinstance(_outcome(runner(client, quick, taker).run, stale.id, "w3"), StillRunning), "fresh: it waits"
    time.sleep(0.4)
    runner(client, quick, taker).run(stale.id, worker="w3")
    assert (client.get(stale.id).status, client.get(stale.id).attempts, taker.renders) == (JobStatus.DONE, 2, 1)

    # A worker process of this machine killed mid-job: its heartbeat is still fresh, yet taken over at once.
    from tasks.worker import Heartbeat

    killed = client.submit(parse("a killed castle --seed 5"), owner="carol")
    gone = subprocess.Popen(["true"])
    gone.wait()
    machine, _, nonce = Heartbeat(client.store, killed.id, 30).token.split("|")
    client.store.begin(killed, "w-killed", 3, heartbeat=(f"{machine}|{gone.pid}|{nonce}", 30))
    runner(client, quick, taker).run(killed.id, worker="w4")
    assert (client.get(killed.id).status, client.get(killed.id).attempts, taker.renders) == (JobStatus.DONE, 2, 2)
