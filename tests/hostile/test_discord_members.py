"""Hostile members on Discord (issue 17, items 6, 8, 16, 17, 18, 20): what a member types, clicks or reacts
cannot ping others, skip the queue, spam DMs, steer another job's buttons, or step around a server's rules.

The bot scenarios run the real ``DreamloomBot`` in this process against the Discord API double and the real
job system (redis-server, storage in a local folder); finished jobs are written as a worker writes them
(files, then the record and its ``done`` event in one step), so no GPU or Celery worker is needed.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from redis.asyncio import Redis as AsyncRedis

from bot.discord.bot import DreamloomBot
from bot.discord.cogs.admin import Admin
from bot.discord.cooldowns import DmCooldowns
from bot.discord.messages import EMBED_LIMIT, FIELD_LIMIT, job_line, owner_mentions, result_content
from bot.discord.prefs import GuildConfig
from bot.discord.settings import BotSettings
from engine.errors import QueueFull
from engine.grid import compose_grid
from engine.jobs import Action, JobStatus
from engine.prompt import parse
from engine.recipe import ModelRecord, Recipe
from engine.registry import Registry
from engine.results import GenerationResult, Timings
from tasks.artifacts import prepare, upload
from tasks.client import JobClient
from tasks.events import EventType, JobEvent
from tasks.records import Job, new_job_id
from tasks.settings import Secret, Settings
from tests.support.discord_double import DiscordDouble, Message, User

REGISTRY = Registry.from_mapping({"default": "v6", "models": {"v6": {"source": "/srv/models/v6", "family": "sd15"}}})
HOSTILE_PROMPT = "<@111111111111111111> <@!222> <@&333333333333333333> @everyone @here a cat"
QUEUE_FULL = "Queue full: you already have 1 jobs waiting; wait for one to finish or cancel one"
MESSAGE_ROUTES = {  # every route that carries a message's text, and so a prompt the bot echoes
    ("POST", "/channels/{channel_id}/messages"),
    ("PATCH", "/channels/{channel_id}/messages/{message_id}"),
    ("POST", "/interactions/{interaction_id}/{interaction_token}/callback"),
    ("POST", "/webhooks/{application_id}/{interaction_token}"),
    ("PATCH", "/webhooks/{application_id}/{interaction_token}/messages/@original"),
}


@pytest.fixture
def jobs(redis_url: str, tmp_path: Path) -> Iterator[JobClient]:
    """The job system with room for one running and one held job per member, storing in a local folder."""
    settings = Settings(
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        spool_dir=tmp_path / "spool",
        max_running_per_user=1,
        max_queued_per_user=1,
    )
    client = JobClient(settings, registry=REGISTRY)
    yield client
    client.close()


def finished_grid(client: JobClient, owner: str, channel: str | None = None, prompt: str = "a cat") -> Job:
    """A grid as a worker leaves it: four stored images, the grid and job.json, then the record done with
    its ``done`` event (the bot posts it)."""
    request = parse(prompt)
    job = Job(id=new_job_id(), action=Action.IMAGINE, owner=owner, request=request, model="v6", family="sd15",
              seed=7, channel=channel)  # fmt: skip
    images = tuple(Image.new("RGB", (32, 32), colour) for colour in ((200, 0, 0), (0, 200, 0), (0, 0, 200), (9, 9, 9)))
    recipe = Recipe(Action.IMAGINE, request, ModelRecord("v6", "/srv/models/v6", "sd15"), 7, (7, 8, 9, 10),
                    {"width": 32, "height": 32})  # fmt: skip
    client.store.create_running(job)
    result = GenerationResult(images, compose_grid(images), recipe, Timings())
    files = upload(client.storage, job.id, prepare(job, result, []))
    event = JobEvent(EventType.DONE, job.id, owner, channel, percent=100)
    client.store.finish(job, JobStatus.DONE, (JobStatus.RUNNING,), 1,
                        fields={"files": json.dumps(files), "size": "[32, 32]"}, event=event.fields())  # fmt: skip
    return client.get(job.id)


def separations(client: JobClient, owner: str) -> list[Job]:
    return [job for job in client.jobs_of(owner) if job.action is Action.SEPARATE]


# --- a bot in this process -------------------------------------------------------------------------------


class Scene:
    """The double, the running bot and the job system, with what the scenarios share."""

    def __init__(self, double: DiscordDouble, bot: DreamloomBot, client: JobClient) -> None:
        self.double = double
        self.bot = bot
        self.client = client

    @property
    def alice(self) -> User:
        return self.double.user

    async def call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(function, *args, **kwargs)

    async def grid(self, owner: User, prompt: str = "a cat") -> tuple[Job, Message]:
        job = await self.call(finished_grid, self.client, str(owner.id), str(self.double.channel.id), prompt)
        return job, await self.result_for(job.id)

    async def result_for(self, job_id: str) -> Message:
        def find() -> Message | None:
            return next((m for m in self.double.messages() if m.attachments and any(job_id in c for c in m.custom_ids())
                         and not m.deleted), None)  # fmt: skip

        return await self.double.wait_for(find, timeout=20, what=f"the result of {job_id}")

    async def answer(self, interaction: Any) -> Message:
        """The bot's ephemeral answer to a slash command or click, once filled in."""

        def answered() -> Message | None:
            return next((m for m in interaction.messages if not m.loading and (m.content or m.embeds)), None)

        return await self.double.wait_for(answered, timeout=20, what="the bot's answer")

    async def click(self, message: Message, label: str, user: User | None = None) -> Message:
        custom_id = next(str(b["custom_id"]) for b in message.buttons() if b.get("label") == label)
        return await self.answer(await self.double.click(message, custom_id, user=user))

    def bot_message(self, custom_ids: list[str], embeds: list[dict[str, Any]] | None = None) -> Message:
        """A message of the bot's carrying buttons it never made for it (as a tampered payload would)."""
        row = {"type": 1, "components": [{"type": 2, "style": 2, "label": f"B{n}", "custom_id": c}
                                         for n, c in enumerate(custom_ids)]}  # fmt: skip
        payload = {"content": "old", "components": [row], "embeds": embeds or []}
        return self.double.world.create_message(self.double.channel, self.double.bot_user, payload, [])


@asynccontextmanager
async def running_bot(double: DiscordDouble, client: JobClient, **settings: Any) -> AsyncIterator[Scene]:
    redis = AsyncRedis.from_url(client.settings.redis_url)
    bot_settings = BotSettings(token=Secret(double.token), consumer="hostile", edit_interval=0.1, **settings)
    async with redis, DreamloomBot(client, redis, bot_settings) as bot:
        # The double sends its one guild at once; discord.py would wait 2 s more for others before on_ready,
        # which the bot's event reader waits for.
        bot._connection.guild_ready_timeout = 0.05
        async with double.run_bot(bot):
            yield Scene(double, bot, client)


# --- 6: mentions ---------------------------------------------------------------------------------------


def test_item_06_an_echoed_prompt_carries_no_mention():
    """A prompt full of mentions reads as text in every line the bot builds, and only the owner may be pinged."""
    job = Job(id=new_job_id(), action=Action.IMAGINE, owner="42", request=parse(HOSTILE_PROMPT), model="v6",
              family="sd15", seed=1)  # fmt: skip
    for text in (result_content(job), job_line(job, "queued")):
        assert "<@42>" in text, "the owner is still named"
        for mention in ("<@1111", "<@!222", "<@&3333", "@everyone", "@here"):
            assert mention not in text, f"{mention} would resolve in {text!r}"
        assert "@\u200beveryone" in text, "the text still reads the same"
    assert dict(owner_mentions(job).to_dict()) == {"parse": [], "users": [42]}


@pytest.mark.anyio
async def test_item_06_results_show_and_clicks_ping_only_the_owner(discord_double, jobs):
    """Results, U-clicks and /show of a prompt full of mentions send allowed_mentions naming the job's owner alone."""
    async with running_bot(discord_double, jobs) as scene:
        bob = discord_double.add_user("bob")
        grid_job, grid = await scene.grid(scene.alice, HOSTILE_PROMPT)
        separated_line = await scene.click(grid, "U1", user=bob)
        separated = await scene.result_for(separations(jobs, str(bob.id))[0].id)
        assert "Image #1" in separated.content
        shown = await scene.answer(await discord_double.slash("show", {"job_id": grid_job.id}))
        assert "Posted again" in shown.content
        await discord_double.wait_for(lambda: len(scene.double.messages()) >= 3, what="the second post of the grid")
        assert separated_line.content.startswith("Done") or "is here" in separated_line.content

    texts = []  # every message the bot sent or edited with text: a body, or an interaction callback's data
    for call in discord_double.calls:
        body = (call.json or {}).get("data", call.json) if (call.method, call.route) in MESSAGE_ROUTES else None
        if isinstance(body, dict) and ("content" in body or "embeds" in body):
            texts.append((call, body))
    results = [(call, body) for call, body in texts if call.route == "/channels/{channel_id}/messages"
               and body.get("components")]  # fmt: skip
    assert len(results) == 3, "the grid, the separated image and the grid again (/show)"
    for call, body in texts:
        for mention in ("@everyone", "@here", "<@1111", "<@!222", "<@&"):
            assert mention not in str(body), f"{call} says {mention}"
        mentions = body.get("allowed_mentions")
        assert mentions is not None, f"{call} lets Discord parse every mention"
        assert mentions["parse"] == [], f"{call} lets Discord parse mentions: {mentions}"
        assert not mentions.get("roles"), call
        assert not mentions.get("replied_user"), call
    for call, body in results:
        job = jobs.get(call.response["components"][0]["components"][0]["custom_id"].split(":")[2])
        assert [str(user) for user in body["allowed_mentions"]["users"]] == [job.owner], "only its owner is pinged"
    assert {jobs.get(c.response["components"][0]["components"][0]["custom_id"].split(":")[2]).owner
            for c, _ in results} == {str(scene.alice.id), str(bob.id)}  # fmt: skip


# --- 8: U1-U4 and admission --------------------------------------------------------------------------------


def test_item_08_u_clicks_reuse_the_separation_and_respect_a_full_queue(jobs):
    """Repeated (even simultaneous) U clicks make one job; with the queue full a new one is refused like /imagine."""
    grid = finished_grid(jobs, "alice")
    first = jobs.follow_up(grid.id, Action.SEPARATE, owner="alice", index=1)
    assert first.status is JobStatus.DONE
    assert {jobs.follow_up(grid.id, Action.SEPARATE, owner="alice", index=1).id for _ in range(5)} == {first.id}
    assert jobs.follow_up(grid.id, Action.SEPARATE, owner="mallory", index=1).id == first.id, "anyone's U1: the same"

    ids: list[str] = []
    start = threading.Barrier(8)

    def click() -> None:
        start.wait()
        ids.append(jobs.follow_up(grid.id, Action.SEPARATE, owner="alice", index=3).id)

    threads = [threading.Thread(target=click) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1, "eight clicks at once separate image 3 once"
    assert len(separations(jobs, "alice")) == 2
    assert separations(jobs, "mallory") == []

    jobs.submit(parse("one"), owner="alice")
    jobs.submit(parse("two"), owner="alice")
    with pytest.raises(QueueFull) as imagine:
        jobs.submit(parse("three"), owner="alice")
    assert str(imagine.value.public) == QUEUE_FULL
    for _ in range(50):
        with pytest.raises(QueueFull) as clicked:
            jobs.follow_up(grid.id, Action.SEPARATE, owner="alice", index=2)
        assert clicked.value.public == imagine.value.public, "the same refusal as /imagine"
    with pytest.raises(QueueFull):
        jobs.follow_up(grid.id, Action.VARY_STRONG, owner="alice", index=2)
    assert jobs.follow_up(grid.id, Action.SEPARATE, owner="alice", index=1).id == first.id, "done before: still given"
    assert len(separations(jobs, "alice")) == 2, "50 refused clicks made no job"
    assert jobs.follow_up(grid.id, Action.SEPARATE, owner="bob", index=2).status is JobStatus.DONE, "bob has room"


# --- 16: ✉️ -------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_item_16_envelope_dms_are_limited_and_send_the_stored_file(discord_double, jobs):
    """✉️ again on the same result sends nothing new (one short note), and a DM carries the stored file as it is."""
    async with running_bot(discord_double, jobs) as scene:
        alice = scene.alice
        _, grid = await scene.grid(alice)
        await scene.click(grid, "U2")
        separated_job = separations(jobs, str(alice.id))[0]
        separated = await scene.result_for(separated_job.id)

        def images() -> list[Message]:
            return [m for m in discord_double.dms(alice) if m.attachments]

        await discord_double.react(separated, "✉️")
        await discord_double.wait_for(lambda: len(images()) == 1, what="the DM")
        stored = await scene.call(jobs.artifact, separated_job.id, "1")
        assert images()[0].attachments[0].data == stored, "the stored original, not encoded again"
        for _ in range(5):
            await discord_double.unreact(separated, "✉️")
            await discord_double.react(separated, "✉️")
        notes = await discord_double.wait_for(
            lambda: [m for m in discord_double.dms(alice) if m.embeds and m.embeds[0].get("title") == "Slow down"],
            what="the note about the limit",
        )
        await discord_double.react(grid, "✉️")  # another job: allowed, and a barrier for the reactions before it
        await discord_double.wait_for(lambda: len(images()) == 2, what="the grid's DM")
        await asyncio.sleep(0.2)
    assert len(images()) == 2, "five more ✉️ on one result sent no image"
    assert len(notes) == 1
    assert "less than 10 min" in notes[0].embeds[0]["description"]
    assert len([m for m in discord_double.dms(alice) if not m.attachments]) == 1, "told once, not five times"
    assert "/srv/models" not in str(images()[0].embeds), "no path of the server in a DM"


@pytest.mark.anyio
async def test_item_16_a_member_gets_a_few_dms_an_hour(redis_url):
    """Past the hourly number of ✉️ DMs, every further job is refused, each job once per cooldown."""
    redis = AsyncRedis.from_url(redis_url)
    async with redis:
        cooldowns = DmCooldowns(redis, cooldown=600, per_hour=3)
        assert [await cooldowns.take("alice", f"job{n}") for n in range(3)] == [None, None, None]
        again, fourth = await cooldowns.take("alice", "job0"), await cooldowns.take("alice", "job9")
        assert again is not None
        assert "less than 10 min" in again.line
        assert fourth is not None
        assert "at most 3 images an hour" in fourth.line
        assert await cooldowns.take("bob", "job0") is None, "each member has their own"
        assert [await cooldowns.first_refusal("alice") for _ in range(3)] == [True, False, False]
        assert 0 < await redis.ttl("dreamloom:bot:dms:alice") <= 3600, "the count ends with the hour"


# --- 17: forged button ids -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_item_17_a_button_works_only_for_the_job_its_message_shows(discord_double, jobs):
    """A button id naming a job its message does not show (no record, or a record of another job) starts nothing."""
    async with running_bot(discord_double, jobs) as scene:
        alice = scene.alice
        victim, victim_result = await scene.grid(discord_double.add_user("victim"), "the victim's secret")
        other, _ = await scene.grid(alice, "alice's own")
        unrecorded = scene.bot_message([f"dl:u:{victim.id}:1", f"dl:v:{victim.id}:2"])
        recorded = scene.bot_message([f"dl:u:{victim.id}:1", f"dl:v:{victim.id}:2"])
        await scene.bot.desk.remember(recorded.id, other.id)
        footer = {"footer": {"text": f"seed 7 · job {other.id}"}}
        other_footer = scene.bot_message([f"dl:u:{victim.id}:1"], embeds=[footer])
        answers = [
            await scene.click(message, label)
            for message, label in ((unrecorded, "B0"), (unrecorded, "B1"), (recorded, "B0"), (other_footer, "B0"))
        ]
        for answer in answers:
            assert answer.ephemeral
            assert answer.embeds, f"the forged click was taken: {answer.content!r}"
            assert (answer.embeds[0]["title"], answer.embeds[0]["description"]) == (
                "Unknown button",
                "This button does not match the image it is under; use the buttons of the result itself",
            )
        assert jobs.jobs_of(str(alice.id)) == [jobs.get(other.id)], "no job was started from the victim's grid"

        own = await scene.click(victim_result, "U1")  # the real message of that job still works
        assert own.content.startswith("Done") or "is here" in own.content
        separated_job = separations(jobs, str(alice.id))[0]
        separated = await scene.result_for(separated_job.id)
        posted = f"posted:{separated.id}"
        await discord_double.wait_for(lambda: jobs.get_mark(separated_job.id, "discord-result") == posted)
        again = await scene.click(victim_result, "U1")  # once more: the same image, not a new job (item 8)
        guild = discord_double.world.guild.id
        assert (
            again.content
            == f"Image #1 is here: https://discord.com/channels/{guild}/{separated.channel_id}/{separated.id}"
        )
        own_footer = {"footer": {"text": f"seed 7 · job {victim.id}"}}
        unmapped = scene.bot_message([f"dl:u:{victim.id}:4"], embeds=[own_footer])
        await scene.click(unmapped, "B0")  # a result whose record expired: its own footer names the job
        assert sorted(job.index or 0 for job in separations(jobs, str(alice.id))) == [1, 4]


# --- 18: DMs -------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_item_18_dms_are_off_by_default_and_follow_every_servers_banned_phrases(discord_double, jobs):
    """DMs cannot go around server rules: off unless the operator allows them, then no server's banned phrase passes."""
    dm = discord_double.dm_channel(discord_double.user)
    async with running_bot(discord_double, jobs) as scene:  # the default settings
        refused = await scene.answer(await discord_double.slash("imagine", {"prompt": "a pear"}, channel=dm))
        assert refused.embeds, f"a DM was answered: {refused.content!r}"
        assert refused.embeds[0]["title"] == "Not here"
        assert "does not answer in DMs" in refused.embeds[0]["description"]
        assert [c for c in scene.bot.tree.get_commands() if c.allowed_contexts and c.allowed_contexts.dm_channel] == []
        old = await scene.call(finished_grid, jobs, str(discord_double.user.id))
        shown = await scene.answer(await discord_double.slash("show", {"job_id": old.id}, channel=dm))
        assert shown.embeds[0]["title"] == "Not here", "/show does not post into DMs either"
        assert discord_double.messages(dm) == []
        await scene.answer(await discord_double.slash("admin block", {"phrase": "forbidden fruit"}))
    assert [job.id for job in jobs.jobs_of(str(discord_double.user.id))] == [old.id], "no job from a DM"
    assert BotSettings.from_env({}).allow_dms is False
    assert BotSettings.from_env({"DREAMLOOM_BOT_ALLOW_DMS": "on"}).allow_dms is True

    async with running_bot(discord_double, jobs, allow_dms=True) as scene:
        banned = await scene.answer(await discord_double.slash("imagine", {"prompt": "a FORBIDDEN fruit"}, channel=dm))
        assert banned.embeds, f"a server's banned phrase passed in a DM: {banned.content!r}"
        assert (banned.embeds[0]["title"], banned.embeds[0]["description"]) == (
            "Banned prompt",
            "'forbidden fruit' is not allowed in DMs; rephrase the prompt without it",
        )
        queued = await scene.answer(await discord_double.slash("imagine", {"prompt": "a pear"}, channel=dm))
        assert "Queued" in queued.content
        assert [job.channel for job in jobs.jobs_of(str(discord_double.user.id))] == [str(dm.id), None]


# --- 20: /admin show -------------------------------------------------------------------------------------------


def test_item_20_admin_show_fits_discords_embed_limits():
    """A server with hundreds of banned phrases and channels gets a /admin show embed Discord accepts."""
    phrases = [f"banned phrase number {n:04d} " + "x" * (n % 60) for n in range(400)]
    channels = list(range(10**17, 10**17 + 300))
    embed = Admin.describe(GuildConfig(frozenset(phrases), frozenset(channels)))
    assert len(embed) <= EMBED_LIMIT
    blocked, answers_in = (field.value or "" for field in embed.fields)
    for value, total in ((blocked, len(phrases)), (answers_in, len(channels))):
        assert len(value) <= FIELD_LIMIT
        shown, _, more = value.rpartition(", … and ")
        assert more.endswith(" more")
        assert len(shown.split(", ")) + int(more.removesuffix(" more")) == total, "every item shown or counted"
    assert blocked.startswith(sorted(phrases)[0])
    small = Admin.describe(GuildConfig(frozenset({"a", "b"})))
    assert [f.value for f in small.fields] == ["a, b", "every channel"]
