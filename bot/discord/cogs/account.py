"""A user's own side: /settings, /fast, /relax, /info and /show."""

from __future__ import annotations

from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.bot import DreamloomBot
from bot.discord.messages import describe_error, info_embed, reply_error, shown_text, status_text
from engine.errors import DreamloomError, UnknownJob
from engine.jobs import JobStatus
from tasks.records import FAST, RELAX

_ACTIVE = {JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.HELD}


class Account(commands.Cog):
    def __init__(self, bot: DreamloomBot) -> None:
        self.bot = bot

    @app_commands.command(name="settings", description="Your defaults for new jobs (no options: show them)")
    @app_commands.describe(
        model="Model used when a prompt has no --v/--niji",
        stylize="--s added to prompts without one (0-1000)",
        raw="Add --style raw to prompts without a --style",
        remix="Edit the prompt before variations and re-rolls",
        variation="What the V1-V4 buttons do",
        mode="Fast jobs go first; relax jobs run when no fast job waits",
        suffix="Text added to the end of every prompt ('none' clears it)",
    )
    async def settings(
        self,
        interaction: discord.Interaction,
        model: str | None = None,
        stylize: app_commands.Range[int, 0, 1000] | None = None,
        raw: bool | None = None,
        remix: bool | None = None,
        variation: Literal["subtle", "strong"] | None = None,
        mode: Literal["fast", "relax"] | None = None,
        suffix: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        desk = self.bot.desk
        changes: dict[str, object] = {
            name: value
            for name, value in {
                "stylize": stylize,
                "raw": raw,
                "remix": remix,
                "variation": variation,
                "mode": mode,
            }.items()
            if value is not None
        }
        if model is not None:
            known = desk.client.registry.aliases
            if model not in known:
                await reply_error(
                    interaction, "Invalid parameter", f"Unknown model '{model}': known models are {', '.join(known)}"
                )
                return
            changes["model"] = model
        if suffix is not None:
            changes["suffix"] = "" if suffix.strip().lower() == "none" else suffix.strip()
        user = str(interaction.user.id)
        prefs = await desk.prefs.update(user, **changes) if changes else await desk.prefs.get(user)
        title = "Settings saved" if changes else "Your settings"
        await interaction.response.send_message(embed=info_embed(title, prefs.describe()), ephemeral=True)

    @settings.autocomplete("model")
    async def model_choices(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        aliases = self.bot.desk.client.registry.aliases
        return [app_commands.Choice(name=a, value=a) for a in aliases if current.lower() in a][:25]

    @app_commands.command(name="fast", description="Your jobs go first (fast mode)")
    async def fast(self, interaction: discord.Interaction) -> None:
        await self.set_mode(interaction, FAST)

    @app_commands.command(name="relax", description="Your jobs run when no fast job waits (relax mode)")
    async def relax(self, interaction: discord.Interaction) -> None:
        await self.set_mode(interaction, RELAX)

    async def set_mode(self, interaction: discord.Interaction, mode: str) -> None:
        await self.bot.desk.prefs.update(str(interaction.user.id), mode=mode)
        await interaction.response.send_message(f"You are in {mode} mode for new jobs.", ephemeral=True)

    @app_commands.command(name="info", description="Your running and waiting jobs, and your mode")
    async def info(self, interaction: discord.Interaction) -> None:
        desk = self.bot.desk
        user = str(interaction.user.id)
        prefs = await desk.prefs.get(user)
        jobs = await desk.call(desk.client.jobs_of, user, _ACTIVE)
        lines = []
        for job in jobs:
            info = await desk.call(desk.client.queue_info, job.id)
            lines.append(
                f"`{job.id}` {job.action.value}: **{shown_text(job.request.prompt, 60) or '(image)'}** "
                f"({status_text(job, info)})"
            )
        description = "\n".join(lines) if lines else "No jobs running or waiting."
        rows = [("Mode", prefs.mode), ("Jobs", str(len(jobs)))]
        await interaction.response.send_message(embed=info_embed("Your jobs", rows, description), ephemeral=True)

    @app_commands.command(name="show", description="Post one of your jobs again, with working buttons")
    @app_commands.describe(job_id="The job id (in the footer of every result)")
    async def show(self, interaction: discord.Interaction, job_id: str) -> None:
        desk = self.bot.desk
        try:
            job = await desk.call(desk.client.get, job_id.strip())
        except UnknownJob:
            await reply_error(interaction, "Job not found", f"No job {job_id!r}; the id is in the footer of a result")
            return
        if job.owner != str(interaction.user.id):
            await reply_error(interaction, "Not allowed", "You can show only your own jobs")
            return
        if job.status is not JobStatus.DONE:
            await reply_error(interaction, "Not finished", f"That job is {job.status.value}; try again when it is done")
            return
        channel = interaction.channel
        if not isinstance(channel, discord.abc.Messageable):
            await reply_error(interaction, "Not here", "dreamloom cannot post in this kind of channel")
            return
        try:
            await self.bot.check_guild(interaction)  # posts where /imagine may, and in DMs only if allowed
        except DreamloomError as exc:
            await reply_error(interaction, *describe_error(exc))
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        message = await desk.post_result(channel, job, once=False)
        await interaction.followup.send(f"Posted again: {message.jump_url if message else ''}", ephemeral=True)


async def setup(bot: DreamloomBot) -> None:
    await bot.add_cog(Account(bot))
