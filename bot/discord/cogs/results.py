"""Job events, as the bot shows them: progress edits on job messages, results posted once, failures explained.

Events come from the job system's stream through the "bot" consumer group, so events that arrived while
the bot was down are handled when it starts. Progress edits are throttled per job and per channel to stay
well inside Discord's rate limits (5 edits per 5 s per channel); progress older than a minute (from while
the bot was down) is skipped, final events never are.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time

import discord
from discord.ext import commands

from bot.discord.bot import DreamloomBot
from bot.discord.messages import error_embed, job_line
from engine.errors import UnknownJob
from tasks.events import EventType, JobEvent
from tasks.metrics import STAGE_SECONDS
from tasks.records import Job

log = logging.getLogger(__name__)

GROUP = "bot"
STALE_PROGRESS_SECONDS = 60.0
CHANNEL_EDIT_GAP = 1.2  # seconds between edits in one channel: under Discord's 5 per 5 s
RECOVER_EVERY = 60.0  # seconds between re-sends of jobs whose sender crashed


class Results(commands.Cog):
    def __init__(self, bot: DreamloomBot) -> None:
        self.bot = bot
        self.task: asyncio.Task[None] | None = None
        self.last_job_edit: dict[str, float] = {}
        self.last_channel_edit: dict[int, float] = {}

    async def cog_load(self) -> None:
        self.task = asyncio.create_task(self.consume(), name="dreamloom-events")

    async def cog_unload(self) -> None:
        """Stop reading events before the bot's Redis connection closes (the launcher closes it after this)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def consume(self) -> None:
        await self.bot.wait_until_ready()
        desk = self.bot.desk
        consumer = self.bot.settings.consumer
        next_recover = 0.0
        while not self.bot.is_closed():
            try:
                if time.monotonic() > next_recover:
                    await desk.call(desk.client.recover)
                    next_recover = time.monotonic() + RECOVER_EVERY
                events = await desk.events.read(GROUP, consumer, 20, 1000)
            except Exception:
                log.exception("reading job events failed; retrying")
                await asyncio.sleep(2)
                continue
            for event in events:
                try:
                    await self.handle(event)
                except Exception:
                    # Left unacknowledged: the event is delivered again (after a restart, or once idle).
                    log.exception("handling %s of job %s failed", event.type.value, event.job_id)
                    continue
                await desk.events.ack(GROUP, event.id or "")

    async def handle(self, event: JobEvent) -> None:
        if not (event.channel or "").isdigit():
            return  # not a Discord job (the web playground or the CLI)
        try:
            job = await self.bot.desk.call(self.bot.desk.client.get, event.job_id)
        except UnknownJob:
            return
        channel = await self.channel(int(event.channel or 0))
        if channel is None:
            return
        if event.type in (EventType.STARTED, EventType.PROGRESS):
            await self.show_progress(channel, job, event)
        elif event.type is EventType.DONE:
            if await self.bot.desk.post_result(channel, job) is not None:
                STAGE_SECONDS.labels(stage="post").observe(max(0.0, time.time() - event.at))
            await self.remove_job_message(channel, job)
        else:
            await self.show_end(channel, job, event)

    async def show_progress(self, channel: discord.abc.Messageable, job: Job, event: JobEvent) -> None:
        if job.message_id is None or time.time() - event.at > STALE_PROGRESS_SECONDS:
            return
        now = time.monotonic()
        channel_id = getattr(channel, "id", 0)
        if now - self.last_job_edit.get(job.id, 0.0) < self.bot.settings.edit_interval:
            return
        if now - self.last_channel_edit.get(channel_id, 0.0) < CHANNEL_EDIT_GAP:
            return
        self.last_job_edit[job.id] = self.last_channel_edit[channel_id] = now
        percent = event.percent or 0
        message = channel.get_partial_message(int(job.message_id))  # type: ignore[attr-defined]
        content = job_line(job, f"{percent}%")
        try:
            if event.preview:
                preview = discord.File(io.BytesIO(event.preview), filename="preview.webp")
                embed = discord.Embed().set_image(url="attachment://preview.webp")
                await message.edit(content=content, embed=embed, attachments=[preview])
            else:
                await message.edit(content=content)
        except discord.NotFound:
            log.info("job message of %s is gone; no more progress for it", job.id)

    async def show_end(self, channel: discord.abc.Messageable, job: Job, event: JobEvent) -> None:
        """Failed or cancelled: the job message says so (or a new message does, if it is gone)."""
        cancelled = event.type is EventType.CANCELLED
        title = "Cancelled" if cancelled else "Job failed"
        line = "The job was cancelled." if cancelled else (event.message or job.error or "The job failed.")
        content = job_line(job, title)
        embed = error_embed(title, line)
        if job.message_id is not None:
            try:
                message = channel.get_partial_message(int(job.message_id))  # type: ignore[attr-defined]
                await message.edit(content=content, embed=embed, attachments=[])
                return
            except discord.NotFound:
                pass
        await channel.send(content, embed=embed, allowed_mentions=discord.AllowedMentions.none())

    async def remove_job_message(self, channel: discord.abc.Messageable, job: Job) -> None:
        if job.message_id is None:
            return
        with contextlib.suppress(discord.NotFound):
            await channel.get_partial_message(int(job.message_id)).delete()  # type: ignore[attr-defined]
        await self.bot.desk.forget(int(job.message_id))
        self.last_job_edit.pop(job.id, None)

    async def channel(self, channel_id: int) -> discord.abc.Messageable | None:
        found = self.bot.get_channel(channel_id)
        if found is None:
            try:
                found = await self.bot.fetch_channel(channel_id)
            except (discord.NotFound, discord.Forbidden):
                log.warning("channel %s is gone or hidden; its job events are dropped", channel_id)
                return None
        return found if isinstance(found, discord.abc.Messageable) else None


async def setup(bot: DreamloomBot) -> None:
    await bot.add_cog(Results(bot))
