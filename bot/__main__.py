"""``python -m bot``: the Discord bot."""

from bot.launcher import main

main()
