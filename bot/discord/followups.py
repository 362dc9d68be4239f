"""What a click on a result's button does: start the follow-up job (after the remix or zoom form when one
is due), highlight the used button, and show the new job's message.

``FollowUps`` belongs to the bot (``DreamloomBot.followups``); the buttons and forms of
``bot.discord.components`` hand their clicks to it. A click starts from the job its message shows and no
other (``Desk.shows``): a button id that names another job is refused. U1-U4 on an image separated before
answer with that result (``JobClient.follow_up`` makes each image's separation once).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from bot.discord.components import JobButton, RemixModal, ZoomModal, mark_used
from bot.discord.desk import POSTED, RESULT_MARK
from bot.discord.messages import describe_error, job_line, reply_error, status_text
from bot.discord.prefs import apply_preferences
from engine.actions import ACTIONS, FollowUpOptions
from engine.errors import DreamloomError, PromptError
from engine.jobs import Action, JobStatus
from engine.prompt import parse
from tasks.records import Job

if TYPE_CHECKING:
    from bot.discord.bot import DreamloomBot

__all__ = ["FollowUps"]

log = logging.getLogger(__name__)


class FollowUps:
    def __init__(self, bot: DreamloomBot) -> None:
        self.bot = bot

    async def clicked(self, interaction: discord.Interaction, button: JobButton) -> None:
        if button.button is None:
            await reply_error(interaction, "Unknown button", button.problem or "This button is not one of dreamloom's")
            return
        desk = self.bot.desk
        try:
            await self.bot.check_guild(interaction)
            parent = await desk.call(desk.client.get, button.job_id)
            prefs = await desk.prefs.get(str(interaction.user.id))
        except Exception as exc:
            await reply_error(interaction, *describe_error(exc))
            return
        if not await desk.shows(interaction.message, parent.id, self.bot.user.id if self.bot.user else None):
            log.warning("refused button %s on message %s: it names another job", button.custom_id,
                        getattr(interaction.message, "id", None))  # fmt: skip
            await reply_error(interaction, "Unknown button", "This button does not match the image it is under; "
                              "use the buttons of the result itself")  # fmt: skip
            return
        if button.button.asks:
            await interaction.response.send_modal(ZoomModal(button))
            return
        if prefs.remix and ACTIONS[self.action_of(button, prefs.variation)].remixable:
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
            prefs = await desk.prefs.get(user)
            request = None
            if remix is not None:
                request = parse(apply_preferences(remix, prefs))
                await self.bot.check_guild(interaction, [request])
            channel = interaction.channel
            job = await desk.call(
                desk.client.follow_up,
                button.job_id,
                self.action_of(button, prefs.variation),
                owner=user,
                index=button.button.index if button.button else None,
                guild=str(interaction.guild_id) if interaction.guild_id else None,
                channel=str(channel.id) if channel else None,
                mode=prefs.mode,
                request=request,
                options=self.options(button, zoom),
            )
        except Exception as exc:
            if not isinstance(exc, DreamloomError):
                log.exception("button %s failed", button.custom_id)
            await reply_error(interaction, *describe_error(exc))
            return
        await self.mark(interaction, button)
        if job.action is Action.SEPARATE or not isinstance(channel, discord.abc.Messageable):
            await interaction.followup.send(await self.separated_line(job), ephemeral=True)
            return
        info = await desk.call(desk.client.queue_info, job.id)
        message = await desk.post_job_message(channel, job, job_line(job, status_text(job, info)))
        await interaction.followup.send(f"Started: {message.jump_url}", ephemeral=True)

    async def separated_line(self, job: Job) -> str:
        """What a U click answers: where the image is, when it was posted already (the same image separated
        before), or that it follows."""
        desk = self.bot.desk
        mark = await desk.call(desk.client.get_mark, job.id, RESULT_MARK)
        if job.status is JobStatus.DONE and mark is not None and mark.startswith(POSTED):
            place = f"{job.guild or '@me'}/{job.channel}/{mark.removeprefix(POSTED)}"
            return f"{job.label or 'That image'} is here: https://discord.com/channels/{place}"
        if job.status is JobStatus.FAILED:
            return f"Job failed: {job.error or 'the image could not be separated'}"
        return "Done: the image follows in a moment."

    @staticmethod
    def action_of(button: JobButton, variation: str) -> Action:
        """The button's action; V1-V4 vary subtly or strongly as the clicker's /settings say."""
        assert button.button is not None
        if button.button.key == "v":
            return Action.VARY_SUBTLE if variation == "subtle" else Action.VARY_STRONG
        return button.button.action

    @staticmethod
    def options(button: JobButton, zoom: tuple[str, str] | None) -> FollowUpOptions:
        """The button's own options, or the Custom Zoom form's scale and aspect ratio."""
        assert button.button is not None
        if zoom is None:
            return button.button.options
        scale_text, aspect_text = (part.strip() for part in zoom)
        try:
            scale = float(scale_text)
        except ValueError:
            raise PromptError("zoom", f"Zoom must be a number from 1.0 to 2.0 (got {scale_text!r})") from None
        aspect = parse(f"x --ar {aspect_text}").aspect if aspect_text else None
        return FollowUpOptions(scale=scale, aspect=aspect)

    async def mark(self, interaction: discord.Interaction, button: JobButton) -> None:
        """Highlight the used button on its message, as MidJourney does; a failure here changes nothing."""
        message = interaction.message
        if message is None:
            return
        try:
            await message.edit(view=mark_used(message, button.custom_id))
        except discord.HTTPException:
            log.info("could not mark button %s as used", button.custom_id)
