"""The Discord bot: ``dreamloom bot`` (or ``python -m bot.discord``).

Its modules:

    launcher.py     logs in with DISCORD_TOKEN and owns the clients' lifecycles
    bot.py          DreamloomBot: its extensions, the persistent buttons, the checks every command shares
    cogs/           one feature each: /imagine, button clicks (follow-ups), job events (progress,
                    results), /settings and /info, /admin, reactions
    components.py   the buttons (custom_ids that carry the job) and the forms (remix, custom zoom)
    cooldowns.py    how often ✉️ may DM a member a result
    desk.py         the bot's side of the job system: posting job messages and results exactly once
    messages.py     what the bot says: job lines, result embeds, error embeds
    prefs.py        /settings and /admin choices, in Redis
    settings.py     the bot's environment variables
"""
