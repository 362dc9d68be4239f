"""The bot's features, one cog each (loaded by ``bot.app.DreamloomBot.setup_hook``)."""
