"""Running the Discord bot: ``python -m bot.discord`` (or ``dreamloom bot``), configured from the environment."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import discord.gateway
import discord.http
import yarl
from redis.asyncio import Redis as AsyncRedis

from bot.discord.bot import DreamloomBot
from bot.discord.settings import BotSettings
from bot.stopping import cancel_and_wait
from engine.errors import ConfigError
from tasks.client import JobClient
from tasks.health import run_checks
from tasks.metrics import registry_for
from tasks.ops_server import start_ops_server

__all__ = ["main", "run_discord_bot"]

log = logging.getLogger(__name__)

BOT_CLOSE_GRACE = 15.0  # seconds for the bot's orderly close (its cogs, the gateway, Redis) before cancelling again
REDIS_CLIENT_NAME = "dreamloom-bot"  # its asyncio connections, as Redis's CLIENT LIST shows them


async def run_discord_bot(settings: BotSettings, client: JobClient) -> None:
    """Log in and serve until cancelled or closed. ``client`` is the caller's (it closes it); the bot's own
    asyncio Redis connection (preferences, the message map, job events) opens here and closes with the bot."""
    if settings.token is None:
        raise ConfigError("DISCORD_TOKEN is not set: create a bot at https://discord.com/developers and set its token")
    if settings.api_url:
        discord.http.Route.BASE = settings.api_url
    if settings.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)
    if settings.metrics_port:
        start_ops_server(
            client.settings.metrics_host,
            settings.metrics_port,
            registry_for(client.store),
            lambda: run_checks(client.settings),
        )
    redis = AsyncRedis.from_url(client.settings.redis_url, client_name=REDIS_CLIENT_NAME)
    async with redis, DreamloomBot(client, redis, settings) as bot:
        await bot.start(settings.token.reveal())


def main() -> int:
    """``python -m bot.discord`` and ``dreamloom bot``: the bot, configured from the environment, until SIGINT
    or SIGTERM (Ctrl-C, docker stop); then it logs out and every connection closes."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = BotSettings.from_env()
    if settings.token is None:
        raise ConfigError("DISCORD_TOKEN is not set: create a bot at https://discord.com/developers and set its token")
    with JobClient.from_env() as client:
        asyncio.run(_serve_until_signalled(settings, client))
    return 0


async def _serve_until_signalled(settings: BotSettings, client: JobClient) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    bot = asyncio.create_task(run_discord_bot(settings, client))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({bot, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not bot.done():
        log.info("stopping the bot")
    await cancel_and_wait(bot, stopping, grace=BOT_CLOSE_GRACE)
    with contextlib.suppress(asyncio.CancelledError):
        await bot
