"""``python -m bot.discord``: the Discord bot."""

from bot.discord.launcher import main

raise SystemExit(main())
