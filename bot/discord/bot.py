"""The Discord bot: its extensions, the persistent buttons, and checks every command shares.

Its messages mention no one unless a message says otherwise (a result pings its owner only). In DMs,
where no server's admins set rules, dreamloom answers only if the operator allows it
(``DREAMLOOM_BOT_ALLOW_DMS``), and then the banned phrases of every server the bot is in apply.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import discord
from discord import app_commands
from discord.ext import commands
from redis.asyncio import Redis as AsyncRedis

from bot.discord.components import JobButton
from bot.discord.desk import Desk
from bot.discord.followups import FollowUps
from bot.discord.messages import NotHere, describe_error, reply_error
from bot.discord.settings import BotSettings
from engine.errors import DreamloomError
from engine.prompt import ImagineRequest
from tasks.client import JobClient

__all__ = ["DreamloomBot"]

log = logging.getLogger(__name__)

EXTENSIONS = tuple(f"bot.discord.cogs.{name}" for name in ("imagine", "results", "account", "admin", "reactions"))


class DreamloomBot(commands.Bot):
    def __init__(self, client: JobClient, redis: AsyncRedis, settings: BotSettings) -> None:
        """``client`` and ``redis`` are the launcher's, which closes them (``bot.discord.launcher``)."""
        intents = discord.Intents.default()  # guilds, reactions and DMs; no message content needed
        contexts = app_commands.AppCommandContext(guild=True, dm_channel=settings.allow_dms, private_channel=False)
        super().__init__(command_prefix=commands.when_mentioned, intents=intents, help_command=None,
                         allowed_mentions=discord.AllowedMentions.none(), allowed_contexts=contexts)  # fmt: skip
        self.settings = settings
        self.desk = Desk(client, redis, settings)
        self.followups = FollowUps(self)  # what the buttons under results do (bot.discord.components)
        self.tree.error(self.on_app_command_error)

    async def setup_hook(self) -> None:
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        self.add_dynamic_items(JobButton)
        if self.settings.guilds:
            for guild_id in self.settings.guilds:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()

    async def check_guild(self, interaction: discord.Interaction, requests: Sequence[ImagineRequest] = ()) -> None:
        """Refuse commands outside the guild's chosen channels, and ``requests`` (the jobs a command makes, with
        the member's preferences applied) that use its banned phrases; in DMs, everything unless DMs are allowed,
        and then requests with any server's banned phrases."""
        if interaction.guild_id is None:
            if not self.settings.allow_dms:
                raise NotHere("dreamloom does not answer in DMs; use it in a server's channel")
            config = await self.desk.prefs.strictest([str(guild.id) for guild in self.guilds])
            where = "in DMs"
        else:
            config = await self.desk.prefs.guild(str(interaction.guild_id))
            where = "on this server"
        if not config.allows(interaction.channel_id):
            channels = ", ".join(f"<#{c}>" for c in sorted(config.channels))
            raise NotHere(f"dreamloom answers in {channels} on this server")
        config.check_banned(requests, where)

    async def on_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        if isinstance(cause, app_commands.CheckFailure):
            title, line = "Not allowed", "You need the Manage Server permission for that"
        else:
            title, line = describe_error(cause)
            if not isinstance(cause, DreamloomError):
                log.error("command %s failed", getattr(interaction.command, "name", "?"), exc_info=cause)
        await reply_error(interaction, title, line)
