"""A Discord API double: Discord's REST API (v10) and gateway on 127.0.0.1 for the unmodified discord.py client.

Start it (``DiscordDouble`` as an async context manager, the ``discord_double`` fixture, or ``BackgroundDouble``
in a thread for a bot in another process), point discord.py at it (``point_discord_py_at`` /
``discord_py_pointed_at``, or the environment of ``DiscordDouble.bot_env`` read by ``point_discord_py_from_env``),
play the members (``slash``, ``click``, ``select``, ``submit_modal``, ``react``, ``say``) and read what the bot did
(``messages``, ``dms``, ``ephemeral_replies``, ``Interaction`` records, ``calls``). Discord's rules are enforced
with its real errors and recorded in ``violations`` (see ``rules.Rule``).

Modules: ``server`` (DiscordDouble), ``state`` (the world it keeps), ``gateway``, ``rest``, ``interactions``,
``rules`` and ``ratelimits`` (what is enforced), ``wire`` (HTTP plumbing), ``clock``, ``background``,
``discordpy`` (pointing the client), ``fixtures`` (pytest).
"""

from __future__ import annotations

from .background import BackgroundDouble
from .clock import Clock
from .discordpy import (
    API_URL_ENV,
    GATEWAY_URL_ENV,
    TOKEN_ENV,
    discord_py_pointed_at,
    point_discord_py_at,
    point_discord_py_from_env,
)
from .models import Attachment, Call, Channel, Interaction, Message, UploadedFile, User
from .ratelimits import RateLimit, RateLimits
from .rules import Limits, Rule, Violation
from .server import DiscordDouble

__all__ = [
    "API_URL_ENV",
    "GATEWAY_URL_ENV",
    "TOKEN_ENV",
    "Attachment",
    "BackgroundDouble",
    "Call",
    "Channel",
    "Clock",
    "DiscordDouble",
    "Interaction",
    "Limits",
    "Message",
    "RateLimit",
    "RateLimits",
    "Rule",
    "UploadedFile",
    "User",
    "Violation",
    "discord_py_pointed_at",
    "point_discord_py_at",
    "point_discord_py_from_env",
]
