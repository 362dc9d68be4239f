"""The bot's side of the job system: async access to ``JobClient``, user preferences, job events, and the
bot's own records (which message shows which job), plus posting job messages and results.

The bot's own Redis data (preferences, the message map) and its waiting for job events use ``redis.asyncio``
on the event loop. ``JobClient`` is synchronous (it also sends to Celery and reads storage through boto3);
its calls go through ``asyncio.to_thread`` so a slow moment never blocks the gateway.

Results are posted at most once: a mark on the job says "posting" before the message goes out and
"posted:<id>" after. A bot that crashed in between finds its message in the channel's recent history
instead of posting a second one. A result mentions its owner and pings no one else.

A click is trusted only for the job its message shows (``shows``): the message map says which, or for a
message the map no longer knows, the job named in the footer the bot wrote under the picture.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import discord
from PIL import Image
from redis.asyncio import Redis as AsyncRedis

from bot.discord.components import view_for
from bot.discord.cooldowns import DmCooldowns
from bot.discord.messages import owner_mentions, result_content, result_embed
from bot.discord.prefs import PreferenceStore
from bot.discord.settings import BotSettings
from engine.actions import ResultKind
from tasks.artifacts import GRID, content_type
from tasks.client import JobClient
from tasks.events import AsyncEventBus
from tasks.records import Job

__all__ = ["Desk"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_MESSAGE_KEY = "dreamloom:bot:message:{}"
_HISTORY_SEARCHED = 50  # messages looked through for a result a crashed bot may already have posted
DM_FILE_LIMIT = 8 * 1024 * 1024  # a stored original up to this size goes by DM as it is; larger ones as JPEG
RESULT_MARK = "discord-result"
POSTED = "posted:"  # the result mark once posted, the message id after it


class Desk:
    def __init__(self, client: JobClient, redis: AsyncRedis, settings: BotSettings) -> None:
        self.client = client
        self.redis = redis
        self.settings = settings
        self.prefs = PreferenceStore(redis)
        self.events = AsyncEventBus(redis)
        self.dm_cooldowns = DmCooldowns(redis, settings.dm_cooldown, settings.dms_per_hour)

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(function, *args, **kwargs)

    # --- which message shows which job ------------------------------------------------------------------

    async def remember(self, message_id: int, job_id: str) -> None:
        """Kept as long as job records are (``DREAMLOOM_RECORD_RETENTION_DAYS``; 0: for ever)."""
        retention = math.ceil(self.client.settings.record_retention_seconds)
        await self.redis.set(_MESSAGE_KEY.format(message_id), job_id, ex=retention or None)

    async def forget(self, message_id: int) -> None:
        await self.redis.delete(_MESSAGE_KEY.format(message_id))

    async def job_of_message(self, message_id: int) -> str | None:
        value = cast(bytes | None, await self.redis.get(_MESSAGE_KEY.format(message_id)))
        return value.decode() if value is not None else None

    async def shows(self, message: discord.Message | None, job_id: str, bot_id: int | None) -> bool:
        """Whether ``message`` (a clicked one) is the bot's (``bot_id``) message for ``job_id``, so that its
        buttons may start from that job."""
        if message is None:
            return False
        mapped = await self.job_of_message(message.id)
        if mapped is not None:
            return mapped == job_id
        footer = f"job {job_id}"
        return message.author.id == bot_id and any(
            footer in (embed.footer.text or "").split(" · ") for embed in message.embeds
        )

    # --- posting ----------------------------------------------------------------------------------------

    async def post_job_message(self, channel: discord.abc.Messageable, job: Job, line: str) -> discord.Message:
        """The message that shows a job while it waits and renders (edited with progress)."""
        message = await channel.send(line, allowed_mentions=discord.AllowedMentions.none())
        await self.call(self.client.set_message, job.id, str(message.id))
        await self.remember(message.id, job.id)
        return message

    async def post_result(
        self, channel: discord.abc.Messageable, job: Job, once: bool = True
    ) -> discord.Message | None:
        """The finished job as a channel message with its picture and buttons, mentioning its owner.
        With ``once``, a job's result is posted a single time however often this is called."""
        if once:
            mark = await self.call(self.client.get_mark, job.id, RESULT_MARK)
            if mark is not None and mark.startswith(POSTED):
                return None
            if not await self.call(self.client.claim_mark, job.id, RESULT_MARK, "posting"):
                found = await self._find_posted(channel, job.id)
                if found is not None:
                    await self.call(self.client.set_mark, job.id, RESULT_MARK, f"{POSTED}{found.id}")
                    return None
        manifest = await self.call(self.client.manifest, job.id)
        picture = await self.picture_file(job)
        message = await channel.send(
            result_content(job),
            embed=result_embed(job, manifest, picture.filename),
            file=picture,
            view=view_for(job.id, job.kind, job.size),
            allowed_mentions=owner_mentions(job),
        )
        await self.remember(message.id, job.id)
        if once:
            await self.call(self.client.set_mark, job.id, RESULT_MARK, f"{POSTED}{message.id}")
        return message

    async def _find_posted(self, channel: discord.abc.Messageable, job_id: str) -> discord.Message | None:
        """A result for ``job_id`` among the channel's recent messages (posted before a crash)."""
        try:
            async for message in channel.history(limit=_HISTORY_SEARCHED):
                if any(job_id in (getattr(c, "custom_id", None) or "") for row in message.components
                       for c in getattr(row, "children", [])):  # fmt: skip
                    return message
        except discord.HTTPException:
            log.warning("could not read the history of channel %s", getattr(channel, "id", "?"))
        return None

    async def picture_file(self, job: Job) -> discord.File:
        """The picture to post: a grid is stored as the JPEG the bot posts; a single image is converted."""
        filename = f"dreamloom_{job.id[:8]}.jpg"
        if job.kind is ResultKind.GRID:
            data = await self.call(self.client.artifact, job.id, GRID)
        else:
            data = await self.call(encode_for_discord, await self.call(self.client.artifact, job.id, "1"))
        return discord.File(io.BytesIO(data), filename=filename)

    async def stored_file(self, job: Job) -> discord.File:
        """The job's picture as stored, not encoded again: the grid's JPEG, or a single image's original
        (a JPEG of it when the original is too large to send)."""
        if job.kind is ResultKind.GRID:
            return await self.picture_file(job)
        data = await self.call(self.client.artifact, job.id, "1")
        if len(data) > DM_FILE_LIMIT:
            return await self.picture_file(job)
        extension = content_type("1", data).split("/")[-1]
        return discord.File(io.BytesIO(data), filename=f"dreamloom_{job.id[:8]}.{extension}")


def encode_for_discord(original: bytes) -> bytes:
    """A stored original (lossless WebP, or PNG) as the JPEG the bot posts: a fraction of the size, well under
    Discord's upload limit."""
    image = Image.open(io.BytesIO(original)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, subsampling=0)
    return buffer.getvalue()
