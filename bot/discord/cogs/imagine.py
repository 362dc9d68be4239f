"""/imagine: parse, expand permutations and --repeat, admit each job, and show its job message."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.bot import DreamloomBot
from bot.discord.messages import describe_error, error_embed, job_line, status_text
from bot.discord.prefs import apply_preferences
from engine.errors import DreamloomError, PromptError
from engine.prompt import ImagineRequest, requests_of

log = logging.getLogger(__name__)


class Imagine(commands.Cog):
    def __init__(self, bot: DreamloomBot) -> None:
        self.bot = bot

    @app_commands.command(name="imagine", description="Create four images from a prompt")
    @app_commands.describe(prompt="What to imagine, then parameters such as --ar 16:9 --seed 7 --no people")
    async def imagine(self, interaction: discord.Interaction, prompt: app_commands.Range[str, 1, 1800]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        desk = self.bot.desk
        try:
            requests = await self.requests_for(interaction, prompt)
            channel = interaction.channel
            if not isinstance(channel, discord.abc.Messageable):
                raise PromptError(None, "dreamloom cannot post in this kind of channel")
            prefs = await desk.prefs.get(str(interaction.user.id))
            lines = []
            for request in requests:
                job = await desk.call(
                    desk.client.submit,
                    request,
                    owner=str(interaction.user.id),
                    guild=str(interaction.guild_id) if interaction.guild_id else None,
                    channel=str(channel.id),
                    mode=prefs.mode,
                    model=prefs.model,
                )
                info = await desk.call(desk.client.queue_info, job.id)
                message = await desk.post_job_message(channel, job, job_line(job, status_text(job, info)))
                lines.append(f"[{status_text(job, info)}]({message.jump_url})")
        except Exception as exc:  # every failure becomes a short embed; unexpected ones also go to the log
            if not isinstance(exc, DreamloomError):
                log.exception("/imagine failed")
            await interaction.followup.send(embed=error_embed(*describe_error(exc)), ephemeral=True)
            return
        await interaction.followup.send("Queued: " + ", ".join(lines), ephemeral=True)

    async def requests_for(self, interaction: discord.Interaction, prompt: str) -> list[ImagineRequest]:
        """The jobs one /imagine makes: the user's defaults applied, {…} permutations and --repeat expanded."""
        desk = self.bot.desk
        await self.bot.check_guild(interaction)
        prefs = await desk.prefs.get(str(interaction.user.id))
        requests = requests_of(apply_preferences(prompt, prefs), limit=self.bot.settings.max_jobs_per_command)
        await self.bot.check_guild(interaction, requests)  # banned phrases, in the text each job would draw
        return requests


async def setup(bot: DreamloomBot) -> None:
    await bot.add_cog(Imagine(bot))
