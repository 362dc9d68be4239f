"""The Discord bot's configuration, read once from the environment. The token never prints."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from engine.errors import ConfigError
from tasks.settings import Secret, read_switch

__all__ = ["BOT_ENVIRONMENT", "BotSettings"]

BOT_ENVIRONMENT = {
    "token": "DISCORD_TOKEN",
    "api_url": "DREAMLOOM_DISCORD_API_URL",
    "gateway_url": "DREAMLOOM_DISCORD_GATEWAY_URL",
    "guilds": "DREAMLOOM_DISCORD_GUILDS",
    "consumer": "DREAMLOOM_BOT_CONSUMER",
    "edit_interval": "DREAMLOOM_BOT_EDIT_INTERVAL",
    "max_jobs_per_command": "DREAMLOOM_BOT_MAX_JOBS_PER_COMMAND",
    "metrics_port": "DREAMLOOM_BOT_METRICS_PORT",
    "allow_dms": "DREAMLOOM_BOT_ALLOW_DMS",
    "dm_cooldown": "DREAMLOOM_BOT_DM_COOLDOWN",
    "dms_per_hour": "DREAMLOOM_BOT_DMS_PER_HOUR",
}


@dataclass(frozen=True)
class BotSettings:
    token: Secret | None = None  # DISCORD_TOKEN; the bot does not start without it
    api_url: str | None = None  # Discord's REST API base, for a proxy (default: discord.py's own)
    gateway_url: str | None = None  # and its gateway
    guilds: tuple[int, ...] = ()  # sync slash commands to these guilds at once (else globally, which is slower)
    consumer: str = "bot"  # this bot's name in the job events' consumer group: keep it across restarts
    edit_interval: float = 3.0  # seconds between progress edits of one job message
    max_jobs_per_command: int = 10  # {permutations} x --repeat jobs one /imagine may start
    metrics_port: int = 0  # serve /metrics and /healthz on this port (0: off)
    allow_dms: bool = False  # members may use dreamloom in DMs with the bot (under every server's banned phrases)
    dm_cooldown: float = 600.0  # seconds before ✉️ sends the same job to the same member again
    dms_per_hour: int = 10  # ✉️ DMs one member may get in an hour

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BotSettings:
        env = os.environ if environ is None else environ

        def value(name: str) -> str | None:
            raw = env.get(BOT_ENVIRONMENT[name], "").strip()
            return raw or None

        token = value("token")
        guilds = value("guilds")
        try:
            guild_ids = tuple(int(g) for g in guilds.replace(" ", "").split(",") if g) if guilds else ()
            edit_interval = float(value("edit_interval") or 3.0)
            max_jobs = int(value("max_jobs_per_command") or 10)
            metrics_port = int(value("metrics_port") or 0)
            dm_cooldown = float(value("dm_cooldown") or 600.0)
            dms_per_hour = int(value("dms_per_hour") or 10)
        except ValueError as exc:
            raise ConfigError(
                "DREAMLOOM_DISCORD_GUILDS must be comma-separated guild ids, DREAMLOOM_BOT_EDIT_INTERVAL and "
                "DREAMLOOM_BOT_DM_COOLDOWN numbers, DREAMLOOM_BOT_MAX_JOBS_PER_COMMAND, DREAMLOOM_BOT_METRICS_PORT "
                f"and DREAMLOOM_BOT_DMS_PER_HOUR whole numbers ({exc})"
            ) from None
        allow_dms = read_switch(BOT_ENVIRONMENT["allow_dms"], value("allow_dms") or "off")
        return cls(
            token=Secret(token) if token else None,
            api_url=value("api_url"),
            gateway_url=value("gateway_url"),
            guilds=guild_ids,
            consumer=value("consumer") or f"bot-{socket.gethostname()}",
            edit_interval=edit_interval,
            max_jobs_per_command=max(1, max_jobs),
            metrics_port=metrics_port,
            allow_dms=allow_dms,
            dm_cooldown=max(0.0, dm_cooldown),
            dms_per_hour=max(0, dms_per_hour),
        )
