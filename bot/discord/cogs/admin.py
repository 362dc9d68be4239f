"""Guild admins' settings: phrases refused in prompts, and the channels dreamloom answers in."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.bot import DreamloomBot
from bot.discord.messages import fit_list, info_embed
from bot.discord.prefs import GuildConfig


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Admin(commands.GroupCog, group_name="admin", group_description="dreamloom's settings for this server"):
    def __init__(self, bot: DreamloomBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        permissions = getattr(interaction.user, "guild_permissions", None)
        if permissions is None or not permissions.manage_guild:
            raise app_commands.CheckFailure("manage_guild")
        return True

    @app_commands.command(name="block", description="Refuse prompts that contain a word or phrase")
    async def block(self, interaction: discord.Interaction, phrase: app_commands.Range[str, 1, 100]) -> None:
        await self.change(interaction, "blocklist", True, phrase.strip().lower())

    @app_commands.command(name="unblock", description="Allow a word or phrase again")
    async def unblock(self, interaction: discord.Interaction, phrase: app_commands.Range[str, 1, 100]) -> None:
        await self.change(interaction, "blocklist", False, phrase.strip().lower())

    @app_commands.command(name="answer-in", description="Answer only in this channel (and others you add)")
    async def answer_in(self, interaction: discord.Interaction, channel: discord.TextChannel) -> None:
        await self.change(interaction, "channels", True, str(channel.id))

    @app_commands.command(name="stop-answering-in", description="Stop limiting dreamloom to this channel")
    async def stop_answering_in(self, interaction: discord.Interaction, channel: discord.TextChannel) -> None:
        await self.change(interaction, "channels", False, str(channel.id))

    @app_commands.command(name="show", description="This server's dreamloom settings")
    async def show(self, interaction: discord.Interaction) -> None:
        config = await self.bot.desk.prefs.guild(str(interaction.guild_id))
        await interaction.response.send_message(embed=self.describe(config), ephemeral=True)

    async def change(self, interaction: discord.Interaction, what: str, add: bool, value: str) -> None:
        desk = self.bot.desk
        config = await desk.prefs.change_guild(str(interaction.guild_id), what, add, value)
        await interaction.response.send_message(embed=self.describe(config, "Saved"), ephemeral=True)

    @staticmethod
    def describe(config: GuildConfig, title: str = "Server settings") -> discord.Embed:
        """The settings as an embed within Discord's limits: long lists end with "… and N more"."""
        blocked = fit_list(sorted(config.blocklist)) or "nothing"
        channels = fit_list([f"<#{c}>" for c in sorted(config.channels)]) or "every channel"
        return info_embed(title, [("Blocked", blocked), ("Answers in", channels)])


async def setup(bot: DreamloomBot) -> None:
    await bot.add_cog(Admin(bot))
