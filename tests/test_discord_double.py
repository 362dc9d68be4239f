"""The Discord double against the real discord.py client: a bot logs in, syncs, answers a slash command,
buttons, a modal and reactions; each enforced Discord rule shows up as the bot's error and as a violation;
a bot restarts, resumes, or runs in another process against the same double.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.support.discord_double import (
    BackgroundDouble,
    DiscordDouble,
    Limits,
    RateLimit,
    RateLimits,
    Rule,
    UploadedFile,
)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
JOB = "0123abcd"
UPSCALE = r"dl:up:(?P<job>[0-9a-f]{8}):(?P<n>[0-3])"
REMIX = r"dl:remix:(?P<job>[0-9a-f]{8})"

Button = discord.ui.Button[discord.ui.View]


# -- a small bot in dreamloom's style: defer, follow up, post a grid with DynamicItem buttons


class Upscale(discord.ui.DynamicItem[Button], template=UPSCALE):
    def __init__(self, job: str, n: int) -> None:
        super().__init__(discord.ui.Button(label=f"U{n + 1}", custom_id=f"dl:up:{job}:{n}"))
        self.job, self.n = job, n

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> Upscale:
        return cls(match["job"], int(match["n"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.edit_message(content=f"upscaling {self.job} #{self.n + 1}", view=None)


class Remix(discord.ui.DynamicItem[Button], template=REMIX):
    def __init__(self, job: str) -> None:
        super().__init__(discord.ui.Button(label="Remix", emoji="🎨", custom_id=f"dl:remix:{job}"))
        self.job = job

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> Remix:
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.send_modal(RemixModal(self.job))


class RemixModal(discord.ui.Modal, title="Remix"):
    prompt: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(label="New prompt", custom_id="prompt")

    def __init__(self, job: str) -> None:
        super().__init__(custom_id=f"dl:remix-modal:{job}")
        self.job = job

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.send_message(f"remixing {self.job}: {self.prompt.value}", ephemeral=True)


@app_commands.command(description="Render a prompt as a grid")
@app_commands.describe(prompt="what to draw", count="how many images")
async def imagine(interaction: discord.Interaction[Any], prompt: str, count: app_commands.Range[int, 1, 4] = 4) -> None:
    await interaction.response.defer(thinking=True)
    await interaction.followup.send(f"queued {prompt!r}")
    view = discord.ui.View(timeout=None)
    for n in range(count):
        view.add_item(Upscale(JOB, n))
    view.add_item(Remix(JOB))
    assert isinstance(interaction.channel, discord.TextChannel)
    grid = await interaction.channel.send(f"**{prompt}**", file=discord.File(io.BytesIO(PNG), "grid.png"), view=view)
    await grid.add_reaction("⭐")


@app_commands.command(description="DM me when my images are ready")
async def notify(interaction: discord.Interaction[Any]) -> None:
    try:
        await interaction.user.send("your images are ready")
    except discord.Forbidden:
        await interaction.response.send_message("I cannot DM you", ephemeral=True)
    else:
        await interaction.response.send_message("sent you a DM", ephemeral=True)


class ImagineBot(commands.Bot):
    def __init__(self) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.default())
        self.reactions: list[tuple[str, str, int]] = []
        self.heard: list[str] = []
        self.tree.add_command(imagine)
        self.tree.add_command(notify)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(Upscale, Remix)
        await self.tree.sync()

    async def on_message(self, message: discord.Message) -> None:
        self.heard.append(message.content)

    async def on_raw_reaction_add(self, event: discord.RawReactionActionEvent) -> None:
        self.reactions.append(("add", str(event.emoji), event.user_id))

    async def on_raw_reaction_remove(self, event: discord.RawReactionActionEvent) -> None:
        self.reactions.append(("remove", str(event.emoji), event.user_id))


@pytest.mark.anyio
async def test_a_bot_logs_in_syncs_and_serves_a_command_buttons_a_modal_and_reactions(
    discord_double: DiscordDouble,
) -> None:
    double = discord_double
    bot = ImagineBot()
    async with double.run_bot(bot):
        assert bot.user is not None
        assert bot.user.id == double.bot_user.id
        assert bot.application_id == double.application_id
        assert sorted(command["name"] for command in double.commands()) == ["imagine", "notify"]

        slash = await double.slash("imagine", {"prompt": "a lighthouse", "count": 2})
        grid = await double.wait_for(lambda: next((m for m in double.messages() if m.attachments), None))
        await double.wait_for(lambda: grid.reactions)
        assert slash.response_type == 5
        assert slash.original is not None
        assert not slash.original.loading
        assert slash.original.content == "queued 'a lighthouse'"
        assert grid.content == "**a lighthouse**"
        assert [(a.filename, a.data) for a in grid.attachments] == [("grid.png", PNG)]
        assert grid.custom_ids() == [f"dl:up:{JOB}:0", f"dl:up:{JOB}:1", f"dl:remix:{JOB}"]
        assert grid.reactions == {"⭐": [double.bot_user.id]}

        click = await double.click(grid, f"dl:up:{JOB}:1")
        await double.wait_for(lambda: click.acknowledged)
        assert click.response_type == 7
        assert (grid.content, grid.components, grid.edits) == (f"upscaling {JOB} #2", [], 1)

        again = await double.slash("imagine", {"prompt": "a fox", "count": 1})
        await double.wait_for(lambda: len(double.messages()) == 4)
        fox_grid = double.messages()[-1]
        remix = await double.click(fox_grid, f"dl:remix:{JOB}")
        await double.wait_for(lambda: remix.modal)
        assert remix.modal is not None
        assert remix.modal["title"] == "Remix"
        submitted = await double.submit_modal(remix, {"prompt": "in winter"})
        await double.wait_for(lambda: submitted.original)
        assert submitted.original is not None
        assert submitted.original.ephemeral
        assert [m.content for m in double.ephemeral_replies(double.user)] == [f"remixing {JOB}: in winter"]
        assert again.acknowledged

        bob = double.add_user("bob")
        await double.react(fox_grid, "🔥", user=bob)
        await double.unreact(fox_grid, "🔥", user=bob)
        await double.wait_for(lambda: ("remove", "🔥", bob.id) in bot.reactions)
        assert ("add", "🔥", bob.id) in bot.reactions
        assert ("add", "⭐", double.bot_user.id) in bot.reactions

        mention = f"<@{double.bot_user.id}> a mention is always heard"
        await double.say("without the message content intent a bot does not read this")
        await double.say(mention)
        await double.wait_for(lambda: mention in bot.heard)
        assert not any("does not read this" in heard for heard in bot.heard)

        dm = await double.slash("notify", user=bob)
        await double.wait_for(lambda: dm.original)
        assert [m.content for m in double.dms(bob)] == ["your images are ready"]
        bob.dms_open = False
        refused = await double.slash("notify", user=bob)
        await double.wait_for(lambda: refused.original)
        assert refused.original is not None
        assert refused.original.content == "I cannot DM you"

    assert double.connected == 0
    assert not double.unanswered()
    assert {call.route for call in double.calls if call.route.startswith("/webhooks")} == {
        "/webhooks/{application_id}/{token}"
    }
    double.assert_no_violations()


# -- each rule, broken on purpose by a bot that runs the test's probe as its /probe command

Probe = Callable[[discord.Interaction[Any]], Awaitable[None]]


class ProbeBot(commands.Bot):
    def __init__(self, probe: Probe) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.default())
        self.errors: list[Exception] = []
        self.finished = 0

        @app_commands.command(description="Run the test's probe")
        async def probe_command(interaction: discord.Interaction[Any]) -> None:
            try:
                await probe(interaction)
            except Exception as error:
                self.errors.append(error)
            finally:
                self.finished += 1

        probe_command.name = "probe"
        self.tree.add_command(probe_command)

    async def setup_hook(self) -> None:
        await self.tree.sync()


async def run_probe(double: DiscordDouble, probe: Probe) -> ProbeBot:
    bot = ProbeBot(probe)
    async with double.run_bot(bot):
        await double.slash("probe")
        await double.wait_for(lambda: bot.finished, what="the probe to finish")
    return bot


class RawRows(discord.ui.View):
    """A view whose components are written by hand (discord.py itself refuses more than 25 items)."""

    def __init__(self, rows: list[list[str]]) -> None:
        super().__init__(timeout=None)
        self.rows = rows

    def to_components(self) -> list[dict[str, Any]]:
        return [
            {"type": 1, "components": [{"type": 2, "style": 1, "label": "b", "custom_id": cid} for cid in row]}
            for row in self.rows
        ]


def buttons(*custom_ids: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for custom_id in custom_ids:
        view.add_item(discord.ui.Button(label="b", custom_id=custom_id))
    return view


async def send_eleven_embeds(interaction: discord.Interaction[Any]) -> None:
    # discord.py refuses this itself; a bot writing its own payloads reaches Discord with it.
    route = discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=interaction.channel_id)
    await interaction.client.http.request(route, json={"embeds": [{"title": str(n)} for n in range(11)]})


def grid_of(count: int) -> list[list[str]]:
    ids = [f"b{n}" for n in range(count)]
    return [ids[start : start + 5] for start in range(0, count, 5)]


class Picker(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)
        self.picked: list[str] = []

    @discord.ui.select(custom_id="size", options=[discord.SelectOption(label=s) for s in ("small", "large")])
    async def size(self, interaction: discord.Interaction[Any], select: discord.ui.Select[Picker]) -> None:
        self.picked += select.values
        await interaction.response.defer()


@pytest.mark.anyio
async def test_webhook_edits_fetches_deletes_and_a_select_menu(discord_double: DiscordDouble) -> None:
    double, picker = discord_double, Picker()

    async def probe(interaction: discord.Interaction[Any]) -> None:
        await interaction.response.send_message("v1", file=discord.File(io.BytesIO(b"one"), "one.png"), view=picker)
        original = await interaction.original_response()
        two = discord.File(io.BytesIO(b"two"), "two.png")
        await interaction.edit_original_response(content="v2", attachments=[*original.attachments, two])
        extra = await interaction.followup.send("temporary", ephemeral=True, wait=True)
        await extra.edit(content="edited")
        await extra.delete()

    bot = ProbeBot(probe)
    async with double.run_bot(bot):
        slash = await double.slash("probe")
        await double.wait_for(lambda: bot.finished)
        assert bot.errors == []
        [message] = double.messages()
        assert message is slash.original
        assert message.content == "v2"
        assert [(a.filename, a.data) for a in message.attachments] == [("one.png", b"one"), ("two.png", b"two")]
        assert slash.messages == [message]

        pick = await double.select(message, "size", ["large"])
        await double.wait_for(lambda: pick.acknowledged)
        assert pick.response_type == 6
        assert picker.picked == ["large"]

    webhook_calls = [(c.method, c.route.removeprefix("/webhooks/{application_id}/{token}")) for c in double.calls]
    assert [call for call in webhook_calls if call[1].startswith("/messages")] == [
        ("GET", "/messages/{message_id}"),
        ("PATCH", "/messages/{message_id}"),
        ("PATCH", "/messages/{message_id}"),
        ("DELETE", "/messages/{message_id}"),
    ]


SMALL_FILES = Limits(attachment_size_limit=1024)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("probe", "status", "code", "rule"),
    [
        pytest.param(
            lambda i: i.response.send_message("26 buttons", view=RawRows(grid_of(26))),
            400,
            50035,
            Rule.TOO_MANY_ROWS,
            id="26-buttons",
        ),
        pytest.param(
            lambda i: i.response.send_message("6 in a row", view=RawRows([[f"b{n}" for n in range(6)]])),
            400,
            50035,
            Rule.TOO_MANY_IN_ROW,
            id="6-in-a-row",
        ),
        pytest.param(
            lambda i: i.response.send_message("long id", view=buttons("x" * 101)),
            400,
            50035,
            Rule.CUSTOM_ID_TOO_LONG,
            id="101-char-custom-id",
        ),
        pytest.param(
            lambda i: i.response.send_message("twins", view=buttons("same", "same")),
            400,
            50035,
            Rule.CUSTOM_ID_DUPLICATED,
            id="duplicate-custom-id",
        ),
        pytest.param(lambda i: i.response.send_message("x" * 2001), 400, 50035, Rule.CONTENT_TOO_LONG, id="2001-chars"),
        pytest.param(send_eleven_embeds, 400, 50035, Rule.TOO_MANY_EMBEDS, id="11-embeds"),
        pytest.param(
            lambda i: i.followup.send("before any response"), 404, 10015, Rule.NOT_ACKNOWLEDGED, id="follow-up-first"
        ),
    ],
)
async def test_a_broken_message_rule_is_discords_error_and_a_violation(
    discord_double: DiscordDouble, probe: Probe, status: int, code: int, rule: Rule
) -> None:
    bot = await run_probe(discord_double, probe)

    [error] = bot.errors
    assert isinstance(error, discord.HTTPException)
    assert (error.status, error.code) == (status, code)
    assert [violation.rule for violation in discord_double.take_violations()] == [rule]


@pytest.mark.anyio
@pytest.mark.parametrize("discord_double_limits", [SMALL_FILES], indirect=True)
async def test_an_attachment_over_the_size_limit_is_413_entity_too_large(discord_double: DiscordDouble) -> None:
    seen_limits: list[int] = []

    async def probe(interaction: discord.Interaction[Any]) -> None:
        seen_limits.append(interaction.filesize_limit)
        await interaction.response.defer()
        fits = discord.File(io.BytesIO(b"x" * 1024), "fits.png")
        await interaction.followup.send(file=fits)
        await interaction.followup.send(file=discord.File(io.BytesIO(b"x" * 1025), "too-big.png"))

    bot = await run_probe(discord_double, probe)

    assert seen_limits == [1024]
    [error] = bot.errors
    assert isinstance(error, discord.HTTPException)
    assert (error.status, error.code) == (413, 40005)
    [violation] = discord_double.take_violations()
    assert violation.rule is Rule.ATTACHMENT_TOO_LARGE
    assert "too-big.png" in violation.detail
    [interaction] = discord_double.interactions
    assert [a.filename for m in interaction.messages for a in m.attachments] == ["fits.png"]


@pytest.mark.anyio
async def test_an_initial_response_after_3_seconds_is_unknown_interaction(discord_double: DiscordDouble) -> None:
    entered, gate = asyncio.Event(), asyncio.Event()

    async def slow(interaction: discord.Interaction[Any]) -> None:
        entered.set()
        await gate.wait()
        await interaction.response.defer()

    bot = ProbeBot(slow)
    async with discord_double.run_bot(bot):
        interaction = await discord_double.slash("probe")
        await asyncio.wait_for(entered.wait(), 5)
        discord_double.clock.advance(3.2)
        gate.set()
        await discord_double.wait_for(lambda: bot.finished)

    [error] = bot.errors
    assert isinstance(error, discord.NotFound)
    assert error.code == 10062
    assert interaction.failed
    assert not interaction.acknowledged
    [violation] = discord_double.take_violations()
    assert violation.rule is Rule.LATE_RESPONSE
    assert violation.status == 404


@pytest.mark.anyio
async def test_an_interaction_token_expires_after_15_minutes(discord_double: DiscordDouble) -> None:
    deferred, gate = asyncio.Event(), asyncio.Event()
    posted: list[discord.Message] = []

    async def long_job(interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(thinking=True)
        deferred.set()
        await gate.wait()
        assert isinstance(interaction.channel, discord.TextChannel)
        posted.append(await interaction.channel.send("a channel message needs no token"))
        await interaction.edit_original_response(content="done, 15 minutes later")

    bot = ProbeBot(long_job)
    async with discord_double.run_bot(bot):
        await discord_double.slash("probe")
        await asyncio.wait_for(deferred.wait(), 5)
        discord_double.clock.advance(15 * 60 + 1)
        gate.set()
        await discord_double.wait_for(lambda: bot.finished)

    [error] = bot.errors
    assert isinstance(error, discord.HTTPException)
    assert (error.status, error.code) == (401, 50027)
    assert [v.rule for v in discord_double.take_violations()] == [Rule.TOKEN_EXPIRED]
    assert [m.content for m in discord_double.messages()] == ["", "a channel message needs no token"]
    assert posted[0].id == discord_double.messages()[-1].id


def edit_five_times(done: list[float]) -> Probe:
    async def probe(interaction: discord.Interaction[Any]) -> None:
        await interaction.response.send_message("editing", ephemeral=True)
        assert isinstance(interaction.channel, discord.TextChannel)
        message = await interaction.channel.send("0")
        started = time.monotonic()
        for n in range(1, 6):
            await message.edit(content=str(n))
        done.append(time.monotonic() - started)

    return probe


HIDDEN_EDIT_LIMIT = Limits(rate_limits=RateLimits(message_edit=RateLimit(2, 0.3, headers=False)))
ANNOUNCED_EDIT_LIMIT = Limits(rate_limits=RateLimits(message_edit=RateLimit(2, 0.3)))


@pytest.mark.anyio
@pytest.mark.parametrize("discord_double_limits", [HIDDEN_EDIT_LIMIT], indirect=True)
async def test_a_too_fast_edit_loop_gets_429_and_discord_py_retries_after_retry_after(
    discord_double: DiscordDouble,
) -> None:
    elapsed: list[float] = []
    bot = await run_probe(discord_double, edit_five_times(elapsed))

    assert bot.errors == []
    [message] = discord_double.messages()
    assert (message.content, message.edits) == ("5", 5)
    statuses = [
        call.status for call in discord_double.calls_to("PATCH", "/channels/{channel_id}/messages/{message_id}")
    ]
    assert statuses.count(200) == 5
    assert 429 in statuses
    violations = discord_double.take_violations()
    assert {v.rule for v in violations} == {Rule.RATE_LIMITED}
    assert len(violations) == statuses.count(429)
    assert elapsed[0] >= 0.25


@pytest.mark.anyio
@pytest.mark.parametrize("discord_double_limits", [ANNOUNCED_EDIT_LIMIT], indirect=True)
async def test_announced_rate_limit_headers_make_discord_py_wait_without_a_429(discord_double: DiscordDouble) -> None:
    elapsed: list[float] = []
    bot = await run_probe(discord_double, edit_five_times(elapsed))

    assert bot.errors == []
    assert discord_double.messages()[0].content == "5"
    edits = discord_double.calls_to("PATCH", "/channels/{channel_id}/messages/{message_id}")
    assert [call.status for call in edits] == [200] * 5
    assert elapsed[0] >= 0.55  # two full 0.3 s windows waited out


# -- restarts, resumes, and a bot in another process


@pytest.mark.anyio
async def test_a_new_bot_process_finds_the_old_messages_and_their_buttons_still_work(
    discord_double: DiscordDouble,
) -> None:
    double = discord_double
    async with double.run_bot(ImagineBot()):
        await double.slash("imagine", {"prompt": "a lighthouse", "count": 4})
        grid = await double.wait_for(lambda: next((m for m in double.messages() if m.attachments), None))
    assert double.connected == 0

    second = ImagineBot()
    async with double.run_bot(second):
        channel = second.get_channel(double.channel.id)
        assert isinstance(channel, discord.TextChannel)
        fetched = await channel.fetch_message(grid.id)
        assert fetched.content == "**a lighthouse**"
        assert await fetched.attachments[0].read() == PNG
        click = await double.click(grid, f"dl:up:{JOB}:3")
        await double.wait_for(lambda: click.acknowledged)
        assert grid.content == f"upscaling {JOB} #4"
    assert len(double.gateway.sessions) == 2
    double.assert_no_violations()


@pytest.mark.anyio
async def test_a_dropped_connection_resumes_and_receives_what_it_missed(discord_double: DiscordDouble) -> None:
    double = discord_double
    bot = ImagineBot()
    async with double.run_bot(bot):
        await double.slash("imagine", {"prompt": "a fox", "count": 1})
        grid = await double.wait_for(lambda: next((m for m in double.messages() if m.attachments), None))
        await double.drop_connections()
        await double.react(grid, "🔥")  # while the bot is away: kept for its RESUME
        [session] = double.gateway.sessions
        await double.wait_for(lambda: session.resumes == 1 and session.live)
        await double.wait_for(lambda: ("add", "🔥", double.user.id) in bot.reactions)

        await double.request_reconnect()
        await double.wait_for(lambda: session.resumes == 2 and session.live)
        click = await double.click(grid, f"dl:up:{JOB}:0")
        await double.wait_for(lambda: click.acknowledged)
    assert len(double.gateway.sessions) == 1


BOT_PROCESS = """
    import os

    import discord
    import yarl
    from discord import app_commands

    # The two settings that send the unmodified discord.py client to the double.
    discord.http.Route.BASE = os.environ["DREAMLOOM_DISCORD_API_URL"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["DREAMLOOM_DISCORD_GATEWAY_URL"])


    class PingBot(discord.Client):
        def __init__(self):
            super().__init__(intents=discord.Intents.default())
            self.tree = app_commands.CommandTree(self)

            @self.tree.command(description="Answer pong")
            async def ping(interaction):
                await interaction.response.send_message("pong")

        async def setup_hook(self):
            await self.tree.sync()


    PingBot().run(os.environ["DREAMLOOM_DISCORD_TOKEN"], log_handler=None)
"""


def test_a_bot_in_another_process_connects_to_a_double_in_a_thread(
    background_discord_double: BackgroundDouble, tmp_path: Path
) -> None:
    background = background_discord_double
    double = background.double
    script = tmp_path / "ping_bot.py"
    script.write_text(textwrap.dedent(BOT_PROCESS))
    env = {**os.environ, **double.bot_env()}
    with subprocess.Popen([sys.executable, str(script)], env=env) as process:
        try:
            background.wait_for(lambda: double.connected, timeout=30, what="the bot process to connect")
            interaction = background.call(double.slash("ping"))
            original = background.wait_for(lambda: interaction.original)
            assert original.content == "pong"
            assert [c["name"] for c in double.commands()] == ["ping"]
        finally:
            process.terminate()
            process.wait(10)


@pytest.mark.anyio
async def test_slash_options_are_checked_as_discords_client_checks_them(discord_double: DiscordDouble) -> None:
    double = discord_double
    async with double.run_bot(ImagineBot()):
        with pytest.raises(LookupError, match="not synced"):
            await double.slash("describe")
        with pytest.raises(ValueError, match="outside"):
            await double.slash("imagine", {"prompt": "a fox", "count": 5})
        with pytest.raises(ValueError, match="needs"):
            await double.slash("imagine", {"count": 1})
        with pytest.raises(TypeError, match="cannot take"):
            await double.slash("imagine", {"prompt": UploadedFile("a.png", PNG)})
    assert double.interactions == []
