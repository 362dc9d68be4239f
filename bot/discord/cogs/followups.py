"""What a click on a result's button does: start the follow-up job (after the remix or zoom form when one
is due), highlight the used button, and show the new job's message."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.discord.bot import DreamloomBot, reply_error
from bot.discord.components import JobButton, RemixModal, ZoomModal, mark_used
from bot.discord.messages import describe_error, job_line, status_text
from bot.discord.prefs import apply_preferences
from engine.errors import DreamloomError, PromptError
from engine.jobs import Action, JobStatus
from engine.prompt import parse

log = logging.getLogger(__name__)

_REMIXABLE = {Action.VARY_SUBTLE, Action.VARY_STRONG, Action.REROLL}


class Buttons(commands.Cog):
    def __init__(self, bot: DreamloomBot) -> None:
        self.bot = bot

    async def clicked(self, interaction: discord.Interaction, button: JobButton) -> None:
        if button.problem is not None:
            await reply_error(interaction, "Unknown button", button.problem)
            return
        desk = self.bot.desk
        try:
            await self.bot.check_guild(interaction)
            parent = await desk.call(desk.client.get, button.job_id)
            prefs = await desk.call(desk.prefs.get, str(interaction.user.id))
        except Exception as exc:
            await reply_error(interaction, *describe_error(exc))
            return
        if button.code == "zc":
            await interaction.response.send_modal(ZoomModal(button))
            return
        if prefs.remix and self.action_of(button, prefs.variation) in _REMIXABLE:
            await interaction.response.send_modal(RemixModal(button, parent.request.to_prompt()))
            return
        await self.follow_up(interaction, button)

    async def follow_up(
        self,
        interaction: discord.Interaction,
        button: JobButton,
        remix: str | None = None,
        zoom: tuple[str, str] | None = None,
    ) -> None:
        """Start the button's job; ``remix`` is an edited prompt, ``zoom`` the Custom Zoom form's answers."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        desk = self.bot.desk
        user = str(interaction.user.id)
        try:
            prefs = await desk.call(desk.prefs.get, user)
            request = None
            if remix is not None:
                await self.bot.check_guild(interaction, remix)
                request = parse(apply_preferences(remix, prefs))
            options = self.options(button, zoom)
            channel = interaction.channel
            job = await desk.call(
                desk.client.follow_up,
                button.job_id,
                self.action_of(button, prefs.variation),
                owner=user,
                tile=button.tile,
                guild=str(interaction.guild_id) if interaction.guild_id else None,
                channel=str(channel.id) if channel else None,
                mode=prefs.mode,
                request=request,
                **options,
            )
        except Exception as exc:
            if not isinstance(exc, DreamloomError):
                log.exception("button %s failed", button.custom_id)
            await reply_error(interaction, *describe_error(exc))
            return
        await self.mark(interaction, button)
        if job.status is JobStatus.DONE or not isinstance(channel, discord.abc.Messageable):
            await interaction.followup.send("Done: the image follows in a moment.", ephemeral=True)
            return
        info = await desk.call(desk.client.queue_info, job.id)
        message = await desk.post_job_message(channel, job, job_line(job, status_text(job, info)))
        await interaction.followup.send(f"Started: {message.jump_url}", ephemeral=True)

    @staticmethod
    def action_of(button: JobButton, variation: str) -> Action:
        if button.code == "v":
            return Action.VARY_SUBTLE if variation == "subtle" else Action.VARY_STRONG
        return button.spec.action

    @staticmethod
    def options(button: JobButton, zoom: tuple[str, str] | None) -> dict[str, object]:
        if button.code == "z":
            return {"scale": float(button.argument or 2)}
        if button.code == "p":
            return {"direction": button.argument}
        if zoom is None:
            return {}
        scale_text, aspect_text = (part.strip() for part in zoom)
        try:
            scale = float(scale_text)
        except ValueError:
            raise PromptError("zoom", f"Zoom must be a number from 1.0 to 2.0 (got {scale_text!r})") from None
        aspect = None
        if aspect_text:
            aspect = parse(f"x --ar {aspect_text}").aspect
        return {"scale": scale, "aspect": aspect}

    async def mark(self, interaction: discord.Interaction, button: JobButton) -> None:
        """Highlight the used button on its message, as MidJourney does; a failure here changes nothing."""
        message = interaction.message
        if message is None:
            return
        try:
            await message.edit(view=mark_used(message, button.custom_id))
        except discord.HTTPException:
            log.info("could not mark button %s as used", button.custom_id)


async def setup(bot: DreamloomBot) -> None:
    await bot.add_cog(Buttons(bot))
