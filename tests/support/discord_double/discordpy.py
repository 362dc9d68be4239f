"""Pointing the unmodified discord.py client at a double: two class attributes, or two environment variables.

A bot in another process reads ``DREAMLOOM_DISCORD_API_URL`` and ``DREAMLOOM_DISCORD_GATEWAY_URL`` (see
``DiscordDouble.bot_env``) and, before it logs in, sets::

    discord.http.Route.BASE = os.environ["DREAMLOOM_DISCORD_API_URL"]              # http://127.0.0.1:PORT/api/v10
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["DREAMLOOM_DISCORD_GATEWAY_URL"])

which is what ``point_discord_py_from_env`` does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import discord.gateway
import discord.http
import yarl

API_URL_ENV = "DREAMLOOM_DISCORD_API_URL"
GATEWAY_URL_ENV = "DREAMLOOM_DISCORD_GATEWAY_URL"
TOKEN_ENV = "DREAMLOOM_DISCORD_TOKEN"


def urls(base_url: str) -> tuple[str, str]:
    """The REST base and the gateway URL of a double listening at ``http://127.0.0.1:PORT``."""
    return f"{base_url}/api/v10", base_url.replace("http://", "ws://", 1) + "/gw"


def point_discord_py(api_url: str, gateway_url: str) -> Callable[[], None]:
    """Send discord.py's REST calls (webhooks and interaction callbacks included) and its gateway connection
    to these URLs; returns a function that restores the previous ones.
    """
    route, websocket = discord.http.Route, discord.gateway.DiscordWebSocket
    before = (route.BASE, websocket.DEFAULT_GATEWAY)
    route.BASE = api_url
    websocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)

    def restore() -> None:
        route.BASE, websocket.DEFAULT_GATEWAY = before

    return restore


def point_discord_py_at(base_url: str) -> Callable[[], None]:
    """``point_discord_py`` for a double at ``base_url`` (``DiscordDouble.base_url``)."""
    return point_discord_py(*urls(base_url))


@contextmanager
def discord_py_pointed_at(base_url: str) -> Iterator[None]:
    restore = point_discord_py_at(base_url)
    try:
        yield
    finally:
        restore()


def point_discord_py_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """Apply ``DREAMLOOM_DISCORD_API_URL`` / ``DREAMLOOM_DISCORD_GATEWAY_URL`` when both are set; True if they were."""
    env = os.environ if environ is None else environ
    api_url, gateway_url = env.get(API_URL_ENV), env.get(GATEWAY_URL_ENV)
    if not (api_url and gateway_url):
        return False
    point_discord_py(api_url, gateway_url)
    return True
