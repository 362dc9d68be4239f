"""The bot's features, one cog each (loaded by ``bot.discord.bot.DreamloomBot.setup_hook``)."""
