"""pytest fixtures for the Discord double (loaded by ``pytest_plugins`` in tests/conftest.py).

- ``discord_double``: a started ``DiscordDouble`` on this test's event loop, with discord.py pointed at it;
  for ``@pytest.mark.anyio`` tests. Its teardown fails the test if the bot broke a rule that the test did not
  ``take_violations()``. Tune the limits through ``discord_double_limits``.
- ``background_discord_double``: a ``BackgroundDouble`` (its own loop in a thread) for synchronous tests and
  bots in subprocesses (give the subprocess ``background_discord_double.double.bot_env()``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from .background import BackgroundDouble
from .discordpy import discord_py_pointed_at
from .rules import Limits
from .server import DiscordDouble


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """discord.py runs on asyncio."""
    return "asyncio"


@pytest.fixture
def discord_double_limits(request: pytest.FixtureRequest) -> Limits:
    """Discord's limits; a test tunes them with
    ``@pytest.mark.parametrize("discord_double_limits", [Limits(...)], indirect=True)``.
    """
    limits: Limits = getattr(request, "param", None) or Limits()
    return limits


@pytest.fixture
async def discord_double(discord_double_limits: Limits) -> AsyncIterator[DiscordDouble]:
    async with DiscordDouble(limits=discord_double_limits) as double:
        with discord_py_pointed_at(double.base_url):
            yield double
    double.assert_no_violations()


@pytest.fixture
def background_discord_double(discord_double_limits: Limits) -> Iterator[BackgroundDouble]:
    with BackgroundDouble(DiscordDouble(limits=discord_double_limits)) as background:
        yield background
    background.double.assert_no_violations()
