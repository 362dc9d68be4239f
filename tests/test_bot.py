"""The Discord bot end to end: the real bot process (``python -m bot.discord``) connected to the Discord API double,
the real job system (redis-server, a Celery worker, the S3 server) and the tiny engine."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from engine.errors import JobFailed
from engine.jobs import JobStatus
from tasks.client import JobClient
from tests.conftest import settings_env
from tests.support.discord_double import BackgroundDouble
from tests.support.discord_double.models import Message
from tests.support.servers import ROOT, free_port

pytestmark = pytest.mark.slow  # a real bot process per test

TIMEOUT = 90.0  # generous: the machine may be busy


class BotProcess:
    """``python -m bot.discord`` with the environment a deployment would give it."""

    def __init__(self, env: dict[str, str], log_file: Path) -> None:
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, double: BackgroundDouble) -> BotProcess:
        before = double.double.connected
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "bot.discord"], env=self.env, cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT)  # fmt: skip
        double.wait_for(lambda: double.double.connected > before, timeout=TIMEOUT, what="the bot to connect")
        double.wait_for(lambda: double.double.commands(), timeout=TIMEOUT, what="the bot's commands")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


class World:
    """The double, the bot process and the job system, with the helpers the scenarios share."""

    def __init__(self, double: BackgroundDouble, env: dict[str, str], client: JobClient, tmp_path: Path) -> None:
        self.bg = double
        self.double = double.double
        self.env = env
        self.client = client
        self.tmp_path = tmp_path
        self.bots: list[BotProcess] = []

    def start_bot(self) -> BotProcess:
        bot = BotProcess(self.env, self.tmp_path / f"bot-{len(self.bots)}.log").start(self.bg)
        self.bots.append(bot)
        return bot

    def stop_bots(self) -> None:
        for bot in self.bots:
            bot.stop()
        self.bg.wait_for(lambda: self.double.connected == 0, timeout=TIMEOUT, what="the bot to disconnect")

    def slash(self, name: str, options: dict[str, Any] | None = None, user: Any = None) -> Any:
        interaction = self.bg.call(self.double.slash(name, options or {}, user=user))
        self.bg.wait_for(lambda: interaction.acknowledged, timeout=10, what=f"/{name} to be acknowledged")
        return interaction

    def click(self, message: Message, custom_id: str, user: Any = None) -> Any:
        interaction = self.bg.call(self.double.click(message, custom_id, user=user))
        self.bg.wait_for(lambda: interaction.acknowledged, timeout=10, what=f"the click on {custom_id}")
        return interaction

    def reply(self, interaction: Any) -> Message:
        """The bot's answer to an interaction once it is filled in (a deferred reply or a follow-up)."""

        def answered() -> Message | None:
            for message in interaction.messages:
                if not message.loading and (message.content or message.embeds):
                    return message  # type: ignore[no-any-return]
            return None

        return self.bg.wait_for(answered, timeout=TIMEOUT, what="the bot's reply")

    def results(self) -> list[Message]:
        return [m for m in self.double.messages() if m.attachments and m.custom_ids() and not m.deleted]

    def result_for(self, job_id: str, timeout: float = TIMEOUT) -> Message:
        def find() -> Message | None:
            return next((m for m in self.results() if any(job_id in c for c in m.custom_ids())), None)

        return self.bg.wait_for(find, timeout=timeout, what=f"the result of job {job_id}")

    def newest_result_after(self, count: int) -> Message:
        return self.bg.wait_for(lambda: self.results()[count] if len(self.results()) > count else None,
                                timeout=TIMEOUT, what="a new result")  # fmt: skip


def job_of(message: Message) -> str:
    return message.custom_ids()[0].split(":")[2]


def button(message: Message, label: str) -> str:
    for item in message.buttons():
        if item.get("label") == label or (item.get("emoji") or {}).get("name") == label:
            return str(item["custom_id"])
    raise AssertionError(f"no button {label!r} on {[b.get('label') for b in message.buttons()]}")


@pytest.fixture
def world(background_discord_double, settings, registry_file, client, tmp_path) -> Iterator[World]:
    env = {
        **settings_env(settings, registry_file),
        **background_discord_double.double.bot_env(),
        "DISCORD_TOKEN": background_discord_double.double.token,
        "DREAMLOOM_BOT_CONSUMER": "bot-e2e",
        "DREAMLOOM_BOT_EDIT_INTERVAL": "0.2",
        "DREAMLOOM_BOT_METRICS_PORT": str(free_port()),
    }
    world = World(background_discord_double, env, client, tmp_path)
    yield world
    world.stop_bots()
    for bot in world.bots:
        assert "Traceback" not in bot.log(), bot.log()[-3000:]
        assert background_discord_double.double.token not in bot.log(), "the token must never reach a log"


def test_imagine_progress_grid_and_every_kind_of_button(world, start_thread_worker):
    world.start_bot()
    start_thread_worker()
    slash = world.slash("imagine", {"prompt": "a lighthouse at dusk --ar 16:9 --seed 7 --q 2"})
    assert slash.deferred, "deferred at once, well within Discord's 3 s"
    assert "Queued" in world.reply(slash).content

    grid = world.newest_result_after(0)
    grid_job = job_of(grid)
    job_message_edits = [c for c in world.double.calls_to("PATCH", "/channels/{channel_id}/messages/{message_id}")]
    assert job_message_edits, "the job message was edited with progress while it rendered"
    assert [b.get("label") for b in grid.buttons()] == ["U1", "U2", "U3", "U4", None, "V1", "V2", "V3", "V4"]
    assert (grid.buttons()[4].get("emoji") or {}).get("name") == "🔄"
    assert f"<@{world.double.user.id}>" in grid.content
    assert "seed 7" in grid.embeds[0]["footer"]["text"]
    assert grid.attachments[0].data[:3] == b"\xff\xd8\xff", "posted as JPEG"

    world.click(grid, button(grid, "U2"))
    separated = world.newest_result_after(1)
    assert "Image #2" in separated.content
    assert len(separated.buttons()) == 12
    assert world.double.message(grid.id).component(button(grid, "U2"))["style"] == 1, "U2 is marked as used"

    world.click(separated, button(separated, "Vary (Strong)"))
    variations = world.newest_result_after(2)
    manifest = world.client.manifest(job_of(variations))
    assert manifest["parent"] == job_of(separated)
    assert manifest["lineage"] == [grid_job, job_of(separated)]

    world.click(grid, button(grid, "🔄"))
    rerolled = world.newest_result_after(3)
    assert world.client.manifest(job_of(rerolled))["action"] == "reroll"
    world.double.assert_no_violations()

    port = world.env["DREAMLOOM_BOT_METRICS_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert 'dreamloom_job_stage_seconds_count{stage="post"} 4.0' in metrics, "four results posted"
    assert 'dreamloom_jobs{status="done"} 4.0' in metrics


def test_buttons_still_work_after_a_restart(world, start_thread_worker):
    world.start_bot()
    start_thread_worker()
    slash = world.slash("imagine", {"prompt": "a red bird --seed 3"})
    world.reply(slash)
    grid = world.newest_result_after(0)
    world.stop_bots()

    world.start_bot()
    world.click(grid, button(grid, "V3"))
    variations = world.newest_result_after(1)
    manifest = world.client.manifest(job_of(variations))
    assert (manifest["parent"], manifest["parent_index"]) == (job_of(grid), 3)


def test_a_job_that_finishes_while_the_bot_is_down_is_posted_once(world, start_thread_worker):
    world.start_bot()
    slash = world.slash("imagine", {"prompt": "a quiet harbour --seed 5"})
    world.reply(slash)
    job = world.client.jobs_of(str(world.double.user.id))[0]
    world.stop_bots()
    start_thread_worker()
    world.bg.wait_for(lambda: world.client.get(job.id).status is JobStatus.DONE, timeout=TIMEOUT, what="the job")
    assert world.results() == []

    world.start_bot()
    world.result_for(job.id)
    world.stop_bots()
    world.start_bot()  # again: the event was handled and acknowledged
    world.bg.call(world.double.wait_for(lambda: world.double.connected == 1))
    assert len([m for m in world.results() if job_of(m) == job.id]) == 1


def test_bad_parameters_and_forged_buttons_get_clear_errors(world):
    world.start_bot()
    bad = world.slash("imagine", {"prompt": "a cat --chaos 150"})
    embed = world.reply(bad).embeds[0]
    assert embed["title"] == "Invalid parameter"
    assert "--chaos must be a whole number from 0 to 100 (got 150)" in embed["description"]
    assert world.reply(bad).ephemeral

    unknown = "0" * 32
    forged = world.bg.call(_post_as_bot(world, [f"dl:u:{unknown}:2", f"dl:v:{'a' * 32}:7", "dl:zz:nope", "dl:"]))
    expected = {
        f"dl:u:{unknown}:2": ("Unknown job", "does not exist or was deleted"),
        f"dl:v:{'a' * 32}:7": ("Unknown button", "names no image of the grid"),
        "dl:zz:nope": ("Unknown button", "not one of dreamloom's"),
        "dl:": ("Unknown button", "not one of dreamloom's"),
    }
    for custom_id, (title, text) in expected.items():
        answer = world.reply(world.click(forged, custom_id)).embeds[0]
        assert answer["title"] == title
        assert text in answer["description"]
    assert world.client.jobs_of(str(world.double.user.id)) == [], "no job was created"


async def _post_as_bot(world: World, custom_ids: list[str]) -> Message:
    """A message from the bot carrying buttons it never made (as an old or tampered message would)."""
    row = {"type": 1, "components": [{"type": 2, "style": 2, "label": str(n), "custom_id": c}
                                     for n, c in enumerate(custom_ids)]}  # fmt: skip
    return world.double.world.create_message(
        world.double.channel, world.double.bot_user, {"content": "old", "components": [row]}, []
    )


def test_two_users_see_only_their_own_jobs_and_only_owners_can_cancel(world):
    world.start_bot()
    bob = world.double.add_user("bob")
    world.reply(world.slash("imagine", {"prompt": "alice's lighthouse"}))
    world.reply(world.slash("imagine", {"prompt": "bob's castle"}, user=bob))
    alice_info = world.reply(world.slash("info")).embeds[0]["description"]
    bob_info = world.reply(world.slash("info", user=bob)).embeds[0]["description"]
    assert "alice's lighthouse" in alice_info
    assert "bob's castle" not in alice_info
    assert "bob's castle" in bob_info

    alice_job = next(j for j in world.client.jobs_of(str(world.double.user.id)))
    job_message = world.double.message(int(alice_job.message_id or 0))
    world.bg.call(world.double.react(job_message, "❌", user=bob))
    world.bg.call(world.double.react(job_message, "❌"))
    world.bg.wait_for(lambda: world.client.get(alice_job.id).status is JobStatus.CANCELLED, timeout=TIMEOUT,
                      what="alice's cancel")  # fmt: skip
    bob_job = world.client.jobs_of(str(bob.id))[0]
    assert world.client.get(bob_job.id).status is JobStatus.QUEUED
    world.bg.wait_for(lambda: "Cancelled" in world.double.message(job_message.id).content, timeout=TIMEOUT,
                      what="the job message to say it was cancelled")  # fmt: skip


class _FailsAfterAPreview:
    """An engine that sends previews until the bot has shown one, then fails as a model can."""

    def __init__(self, preview_shown: Any) -> None:
        self.preview_shown = preview_shown

    def imagine(self, request: Any, **options: Any) -> Any:
        deadline = time.monotonic() + TIMEOUT
        step = 0
        while not self.preview_shown() and time.monotonic() < deadline:
            step += 1
            options["progress"](min(step, 3), 4, Image.new("RGB", (64, 64), (200, 40, 40)))
            time.sleep(0.3)
        raise JobFailed("The model could not draw this prompt")


def test_a_failed_job_message_says_why_without_its_last_preview(world, start_thread_worker):
    def preview_edits() -> list[Any]:
        edits = world.double.calls_to("PATCH", "/channels/{channel_id}/messages/{message_id}")
        return [call for call in edits if call.files and call.files[0].filename == "preview.webp"]

    world.start_bot()
    start_thread_worker(job_engine=_FailsAfterAPreview(lambda: bool(preview_edits())))
    world.reply(world.slash("imagine", {"prompt": "an impossible thing"}))
    job = world.client.jobs_of(str(world.double.user.id))[0]
    world.bg.wait_for(lambda: world.client.get(job.id).status is JobStatus.FAILED, timeout=TIMEOUT, what="it to fail")
    message_id = int(world.client.get(job.id).message_id or 0)
    assert any(call.path.endswith(f"/{message_id}") for call in preview_edits()), "a preview showed while it ran"
    world.bg.wait_for(lambda: "Job failed" in world.double.message(message_id).content, timeout=TIMEOUT,
                      what="the job message to say it failed")  # fmt: skip
    failed = world.double.message(message_id)
    assert failed.attachments == [], "the last preview is gone: it is not a result"
    assert [(e["title"], e["description"]) for e in failed.embeds] == [
        ("Job failed", "The model could not draw this prompt")
    ]
    assert failed.components == [], "no buttons on a failed job"


def test_settings_remix_custom_zoom_dm_and_show(world, start_thread_worker):
    world.start_bot()
    start_thread_worker()
    saved = world.reply(world.slash("settings", {"stylize": 250, "remix": True, "variation": "subtle"}))
    assert saved.embeds[0]["title"] == "Settings saved"
    world.reply(world.slash("imagine", {"prompt": "a lighthouse --seed 9"}))
    grid = world.newest_result_after(0)
    assert world.client.manifest(job_of(grid))["recipe"]["request"]["stylize"] == 250, "the user's default applied"

    opened = world.click(grid, button(grid, "V1"))
    assert opened.modal is not None, "remix mode opens the prompt first"
    world.reply(world.bg.call(world.double.submit_modal(opened, {"prompt": "a lighthouse at night --seed 9"})))
    remixed = world.newest_result_after(1)
    remixed_manifest = world.client.manifest(job_of(remixed))
    assert remixed_manifest["recipe"]["request"]["prompt"] == "a lighthouse at night"
    assert remixed_manifest["action"] == "vary_subtle", "V buttons follow the user's variation setting"

    world.click(grid, button(grid, "U1"))
    single = world.newest_result_after(2)
    zoom = world.click(single, button(single, "Custom Zoom"))
    world.reply(world.bg.call(world.double.submit_modal(zoom, {"scale": "1.25", "aspect": "2:1"})))
    zoomed = world.newest_result_after(3)
    zoom_manifest = world.client.manifest(job_of(zoomed))
    assert zoom_manifest["params"] == {"scale": 1.25, "aspect": [2, 1]}

    world.bg.call(world.double.react(single, "✉️"))
    dm = world.bg.wait_for(lambda: world.double.dms(world.double.user)[-1:] or None, timeout=TIMEOUT, what="a DM")[0]
    assert dm.attachments
    assert job_of(single) in str(dm.embeds[0])

    shown = world.reply(world.slash("show", {"job_id": job_of(grid)}))
    assert "Posted again" in shown.content
    again = world.newest_result_after(4)
    assert job_of(again) == job_of(grid)

    mallory = world.double.add_user("mallory")
    refused = world.reply(world.slash("show", {"job_id": job_of(grid)}, user=mallory)).embeds[0]
    assert refused["title"] == "Not allowed"


def test_admins_limit_channels_and_block_phrases(world):
    world.start_bot()
    other = world.bg.call(world.double.add_channel("elsewhere"))
    world.reply(world.slash("admin block", {"phrase": "forbidden fruit"}))
    blocked = world.reply(world.slash("imagine", {"prompt": "a Forbidden  Fruit bowl"})).embeds[0]
    assert blocked["title"] == "Banned prompt"
    assert "forbidden fruit" in blocked["description"]

    world.reply(world.slash("admin answer-in", {"channel": other}))
    elsewhere = world.reply(world.slash("imagine", {"prompt": "a cat"})).embeds[0]
    assert elsewhere["title"] == "Not here"
    assert f"<#{other.id}>" in elsewhere["description"]


@pytest.mark.anyio
async def test_the_bot_waits_for_events_on_asyncio_redis_and_closes_it_when_it_stops(discord_double, client):
    """Job events are read with redis.asyncio (a blocked XREADGROUP on the bot's own connection, no thread
    held per poll), and stopping the bot closes that connection."""
    import asyncio

    from bot.discord.launcher import REDIS_CLIENT_NAME, run_discord_bot
    from bot.discord.settings import BotSettings
    from tasks.settings import Secret

    def bot_connections() -> list[dict[str, Any]]:
        return [c for c in client.redis.client_list() if c.get("name") == REDIS_CLIENT_NAME]

    settings = BotSettings(token=Secret(discord_double.token), consumer="lifecycle")
    task = asyncio.create_task(run_discord_bot(settings, client))
    try:
        await discord_double.wait_until_connected()
        await discord_double.wait_for(
            lambda: any(c["cmd"] == "xreadgroup" for c in bot_connections()), timeout=30, what="an XREADGROUP"
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await discord_double.wait_for(lambda: not bot_connections(), timeout=10, what="the bot's connections to close")


@pytest.mark.anyio
async def test_the_bot_stops_even_when_a_cancellation_is_lost(discord_double, client, monkeypatch):
    """Stopping the bot ends its event reader although the call it was in lost the cancellation, as a
    library under Python 3.11 can when the call completes at that moment (CI hung on this for 90 min)."""
    import asyncio

    from bot.discord.desk import Desk
    from bot.discord.launcher import REDIS_CLIENT_NAME, run_discord_bot
    from bot.discord.settings import BotSettings
    from tasks.events import EventType, JobEvent
    from tasks.settings import Secret

    handling = asyncio.Event()
    lost: list[str] = []

    call = Desk.call

    async def call_losing_a_cancellation(desk: Desk, function: Any, *args: Any, **kwargs: Any) -> Any:
        """The event handler's look-up of job-1 stands for the call that loses the cancellation."""
        if args == ("job-1",):
            handling.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                lost.append("job-1")  # and carries on, as if the call had simply returned
        return await call(desk, function, *args, **kwargs)

    # The bot loads its cogs as extensions (a fresh module each), so the patch goes on the desk they all use.
    monkeypatch.setattr(Desk, "call", call_losing_a_cancellation)

    def reading_events() -> bool:  # the bot's group exists, so the event below reaches it
        return any(c.get("name") == REDIS_CLIENT_NAME and c["cmd"] == "xreadgroup" for c in client.redis.client_list())

    settings = BotSettings(token=Secret(discord_double.token), consumer="lost-cancel")
    task = asyncio.create_task(run_discord_bot(settings, client))
    try:
        await discord_double.wait_for(reading_events, timeout=30, what="the bot reading events")
        client.events.emit(JobEvent(EventType.DONE, "job-1", "42", "7", percent=100))
        await asyncio.wait_for(handling.wait(), 30)
    finally:
        task.cancel()  # the launcher stops this way on SIGINT; the bot's close unloads the Results cog
        done, _ = await asyncio.wait({task}, timeout=30)
    assert done == {task}, "the bot did not stop: its event reader went on after the lost cancellation"
    assert lost == ["job-1"], "the cancellation reached the event handler and was lost there"
    assert task.cancelled() or task.exception() is None
