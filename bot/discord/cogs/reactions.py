"""Reactions on job and result messages: ❌ by the job's owner cancels it or deletes the result; ✉️ sends
the image as stored and its full settings to whoever reacted, by DM, within the limits of
``bot.discord.cooldowns`` (a member over them is told once, then further ✉️ pass quietly)."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import discord
from discord.ext import commands

from bot.discord.bot import DreamloomBot
from bot.discord.messages import error_embed, info_embed, shown_text
from engine.errors import UnknownJob
from engine.jobs import JobStatus

log = logging.getLogger(__name__)

CANCEL = "❌"
ENVELOPES = ("✉️", "✉")


class Reactions(commands.Cog):
    def __init__(self, bot: DreamloomBot) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        emoji = str(payload.emoji)
        if self.bot.user is not None and payload.user_id == self.bot.user.id:
            return
        if emoji != CANCEL and emoji not in ENVELOPES:
            return
        desk = self.bot.desk
        job_id = await desk.job_of_message(payload.message_id)
        if job_id is None:
            return
        try:
            job = await desk.call(desk.client.get, job_id)
        except UnknownJob:
            return
        if emoji == CANCEL:
            if str(payload.user_id) != job.owner:
                return  # only the owner's ❌ counts
            if not job.finished:
                await desk.call(desk.client.cancel, job.id, str(payload.user_id))
            else:
                await self.delete(payload)
        else:
            await self.send_by_dm(payload.user_id, job_id)

    async def delete(self, payload: discord.RawReactionActionEvent) -> None:
        channel = self.bot.get_channel(payload.channel_id)
        if channel is None or not hasattr(channel, "get_partial_message"):
            return
        with contextlib.suppress(discord.NotFound):
            await channel.get_partial_message(payload.message_id).delete()
        await self.bot.desk.forget(payload.message_id)

    async def send_by_dm(self, user_id: int, job_id: str) -> None:
        desk = self.bot.desk
        job = await desk.call(desk.client.get, job_id)
        if job.status is not JobStatus.DONE:
            return
        refusal = await desk.dm_cooldowns.take(str(user_id), job.id)
        if refusal is not None:
            log.info("no ✉️ DM of %s for user %s: %s", job.id, user_id, refusal.line)
            if await desk.dm_cooldowns.first_refusal(str(user_id)):
                await self.dm(user_id, embed=error_embed("Slow down", refusal.line))
            return
        manifest = await desk.call(desk.client.manifest, job_id)
        recipe = manifest["recipe"]
        rows = [
            ("Prompt", shown_text(recipe["prompt_text"], 1000)),
            ("Seed", str(recipe["seed"])),
            ("Model", str(recipe["model"]["alias"])),
            ("Job", job.id),
        ]
        settings = json.dumps(recipe.get("settings", {}), indent=1, default=str)[:1000]
        embed = info_embed("Your image", rows, f"```json\n{settings}\n```")
        await self.dm(user_id, embed=embed, file=await desk.stored_file(job))

    async def dm(self, user_id: int, **message: Any) -> None:
        """A DM that mentions no one; a member who does not take DMs (or is gone) is only logged."""
        try:
            user = self.bot.get_user(user_id) or await self.bot.fetch_user(user_id)
            await user.send(**message, allowed_mentions=discord.AllowedMentions.none())
        except (discord.Forbidden, discord.NotFound):
            log.info("user %s does not accept DMs", user_id)


async def setup(bot: DreamloomBot) -> None:
    await bot.add_cog(Reactions(bot))
