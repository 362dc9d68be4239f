"""Job events, as the bot shows them: progress edits on job messages, results posted once, failures explained.

Events come from the job system's streams through the "bot" consumer group, so events that arrived while
the bot was down are handled when it starts. Progress edits are throttled per job and per channel to stay
well inside Discord's rate limits (5 edits per 5 s per channel); progress older than a minute (from while
the bot was down) is skipped, final events never are.

One event never holds up the others: an answer 4xx from Discord (the channel is gone, an admin took away
Send Messages, the member blocks DMs) is final for that event: logged, counted
(``dreamloom_events_undelivered_total{reason="refused"}``), acknowledged, and a done job is marked so that
nobody tries it again. Other errors leave the event to be handed out again, at most ``MAX_DELIVERIES``
times; then it is set aside in the dead-letter stream (``reason="set_aside"``). When the bot starts it also
posts every done job of a Discord channel that has no result mark yet (its event was set aside, or trimmed
before the bot read it), once.
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
from bot.discord.desk import RESULT_MARK
from bot.discord.messages import error_embed, job_line
from bot.stopping import cancel_and_wait
from engine.errors import UnknownJob
from tasks.events import MAX_DELIVERIES, EventType, JobEvent
from tasks.metrics import STAGE_SECONDS, UNDELIVERED
from tasks.records import Job

log = logging.getLogger(__name__)

GROUP = "bot"
STALE_PROGRESS_SECONDS = 60.0
CHANNEL_EDIT_GAP = 1.2  # seconds between edits in one channel: under Discord's 5 per 5 s
RECOVER_EVERY = 60.0  # seconds between re-sends of jobs whose sender crashed
READER_STOP_GRACE = 1.0  # seconds: the event reader has nothing to clean up; a read it was in is given again
REFUSED = "refused:"  # a result mark: Discord refused the result for good (the reason follows)


class Results(commands.Cog):
    def __init__(self, bot: DreamloomBot) -> None:
        self.bot = bot
        self.task: asyncio.Task[None] | None = None
        self.last_job_edit: dict[str, float] = {}
        self.last_channel_edit: dict[int, float] = {}
        self.started_at = time.time()  # jobs that finish from now on come through the event streams

    async def cog_load(self) -> None:
        self.started_at = time.time()
        self.task = asyncio.create_task(self.consume(), name="dreamloom-events")

    async def cog_unload(self) -> None:
        """Stop reading events before the bot's Redis connection closes (the launcher closes it after this).
        An event cut short is not acknowledged, so the next start handles it."""
        if self.task is not None:
            await cancel_and_wait(self.task, grace=READER_STOP_GRACE)
            if not self.task.cancelled() and self.task.exception() is not None:
                log.error("the event reader had stopped", exc_info=self.task.exception())

    async def consume(self) -> None:
        await self.bot.wait_until_ready()
        desk = self.bot.desk
        consumer = self.bot.settings.consumer
        await self.post_unposted()
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
                await self.deliver(event)

    async def deliver(self, event: JobEvent) -> None:
        """Handle one event, then acknowledge it: at once when handled or refused for good; a failure of
        another kind leaves it to be handed out again (``events.CLAIM_IDLE_MS`` later), ``MAX_DELIVERIES``
        times at most, then it is set aside for the operator."""
        try:
            await self.handle(event)
        except Exception as exc:
            if await self.refused(event.job_id, event.type, exc):
                pass
            elif event.deliveries < MAX_DELIVERIES:
                log.exception("handling %s of job %s failed (try %d of %d); it is tried again", event.type.value,
                              event.job_id, event.deliveries, MAX_DELIVERIES)  # fmt: skip
                return
            else:
                log.exception("handling %s of job %s failed %d times; set aside in the dead-letter stream",
                              event.type.value, event.job_id, event.deliveries)  # fmt: skip
                await self.bot.desk.events.set_aside(GROUP, event, f"{type(exc).__name__}: {exc}")
                UNDELIVERED.labels(reason="set_aside").inc()
                return
        await self.bot.desk.events.ack(GROUP, event.id or "")

    async def refused(self, job_id: str, kind: EventType, exc: Exception) -> bool:
        """True when ``exc`` is Discord's final answer for this event (4xx: not found, forbidden, invalid):
        logged and counted; a done job is marked so that neither its event nor a restart tries it again."""
        if not isinstance(exc, discord.HTTPException) or not 400 <= exc.status < 500 or exc.status == 429:
            return False
        log.warning("Discord refused the %s of job %s (%s %s: %s); not tried again", kind.value, job_id, exc.status,
                    exc.code, exc.text)  # fmt: skip
        UNDELIVERED.labels(reason="refused").inc()
        if kind is EventType.DONE:
            await self.mark_refused(job_id, str(exc.status))
        return True

    async def mark_refused(self, job_id: str, why: str) -> None:
        with contextlib.suppress(UnknownJob):
            await self.bot.desk.call(self.bot.desk.client.set_mark, job_id, RESULT_MARK, REFUSED + why)

    async def post_unposted(self) -> None:
        """At start: post every done job on record of a Discord channel that has no result mark (its event
        was set aside, or trimmed away before this bot read it), once. Jobs finished since the bot started are
        left to their events (their progress edits come first)."""
        desk = self.bot.desk
        try:
            found = await desk.call(desk.client.unmarked_results, RESULT_MARK)
        except Exception:
            log.exception("could not look for results that were never posted")
            return
        for job_id, channel_id in found:
            if not channel_id.isdigit():
                continue  # not a Discord job
            try:
                job = await desk.call(desk.client.get, job_id)
                if (job.finished_at or 0.0) >= self.started_at:
                    continue  # finished while this bot reads events: its own events show it, progress first
                channel = await self.channel(int(channel_id))
                if channel is None:
                    await self.mark_refused(job.id, "channel")
                    continue
                log.info("posting the result of job %s, finished while it was not posted", job.id)
                await self.show_result(channel, job, job.finished_at)
            except Exception as exc:
                if not await self.refused(job_id, EventType.DONE, exc):
                    log.exception("posting the result of job %s failed; the next start tries again", job_id)

    async def handle(self, event: JobEvent) -> None:
        if not (event.channel or "").isdigit():
            return  # not a Discord job (the web playground or the CLI)
        try:
            job = await self.bot.desk.call(self.bot.desk.client.get, event.job_id)
        except UnknownJob:
            return
        channel = await self.channel(int(event.channel or 0))
        if channel is None:
            if event.type is EventType.DONE:
                await self.mark_refused(job.id, "channel")
            return
        if event.type in (EventType.STARTED, EventType.PROGRESS):
            await self.show_progress(channel, job, event)
        elif event.type is EventType.DONE:
            await self.show_result(channel, job, event.at)
        else:
            await self.show_end(channel, job, event)

    async def show_result(self, channel: discord.abc.Messageable, job: Job, finished_at: float | None) -> None:
        """Post the result once (not when Discord refused it for good before), and remove the job message."""
        desk = self.bot.desk
        mark = await desk.call(desk.client.get_mark, job.id, RESULT_MARK)
        if mark is not None and mark.startswith(REFUSED):
            return
        if await desk.post_result(channel, job) is not None and finished_at:
            STAGE_SECONDS.labels(stage="post").observe(max(0.0, time.time() - finished_at))
        await self.remove_job_message(channel, job)

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
