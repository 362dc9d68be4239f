"""What users and guilds set with /settings, /fast, /relax and /admin, kept in Redis (redis.asyncio)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, cast

from redis.asyncio import Redis

from engine.prompt import ImagineRequest, given_parameters
from engine.safety import Blocklist
from tasks.records import FAST, MODES

__all__ = ["GuildConfig", "PreferenceStore", "Preferences", "apply_preferences"]

_PREFIX = "dreamloom:bot:"
VARIATIONS = ("subtle", "strong")


@dataclass(frozen=True)
class Preferences:
    """A user's defaults. None means "the server's"."""

    model: str | None = None  # a registry alias used when a prompt has no --v/--niji
    stylize: int | None = None  # --s added to prompts that give none
    raw: bool = False  # --style raw added to prompts that give no --style
    remix: bool = False  # variations and re-rolls first open the prompt for editing
    variation: str = "strong"  # what V1-V4 do: subtle or strong
    mode: str = FAST
    suffix: str = ""  # text added to the end of every prompt

    def describe(self) -> list[tuple[str, str]]:
        return [
            ("Model", self.model or "server default"),
            ("Stylize", str(self.stylize) if self.stylize is not None else "100 (default)"),
            ("Raw", "on" if self.raw else "off"),
            ("Remix", "on" if self.remix else "off"),
            ("V buttons", self.variation),
            ("Mode", self.mode),
            ("Suffix", self.suffix or "none"),
        ]


@dataclass(frozen=True)
class GuildConfig:
    """What a guild's admins set: phrases refused in prompts, and the channels the bot answers in."""

    blocklist: frozenset[str] = field(default_factory=frozenset)
    channels: frozenset[int] = field(default_factory=frozenset)  # empty: every channel

    def allows(self, channel_id: int | None) -> bool:
        return not self.channels or channel_id in self.channels

    def check_banned(self, requests: Iterable[ImagineRequest], where: str = "on this server") -> None:
        """Raise ``BannedPrompt`` when a request uses one of the server's banned phrases. Give it the requests
        a command makes, after the member's preferences and ``{…}`` expansion (``requests_of(apply_preferences(
        ...))``): a suffix or ``bad{}word`` is then the text the model gets. Matching is
        ``engine.safety.normalise``d (case, invisible characters, look-alike letters)."""
        if self.blocklist:
            blocklist = Blocklist(self.blocklist)
            for request in requests:
                blocklist.check(request, where=where)


def apply_preferences(text: str, prefs: Preferences) -> str:
    """The prompt with the user's suffix and the defaults it does not override: ``--s``, ``--style raw``."""
    text = f"{text.strip()} {prefs.suffix}".strip() if prefs.suffix else text.strip()
    given = given_parameters(text)
    extra = []
    if prefs.stylize is not None and "--stylize" not in given:
        extra.append(f"--s {prefs.stylize}")
    if prefs.raw and "--style" not in given:
        extra.append("--style raw")
    return " ".join([text, *extra])


class PreferenceStore:
    """Preferences and server settings, read and written on the event loop."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def get(self, user: str) -> Preferences:
        raw = cast(dict[bytes, bytes], await self.redis.hgetall(f"{_PREFIX}prefs:{user}"))
        values: dict[str, Any] = {}
        for item in fields(Preferences):
            text = raw.get(item.name.encode())
            if text is None:
                continue
            decoded = text.decode()
            if item.name == "stylize":
                values[item.name] = int(decoded)
            elif item.name in ("raw", "remix"):
                values[item.name] = decoded == "1"
            else:
                values[item.name] = decoded
        return Preferences(**values)

    async def update(self, user: str, **changes: Any) -> Preferences:
        prefs = replace(await self.get(user), **changes)
        if prefs.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if prefs.variation not in VARIATIONS:
            raise ValueError(f"variation must be one of {', '.join(VARIATIONS)}")
        encoded = {
            name: ("1" if value else "0") if isinstance(value, bool) else str(value)
            for name, value in asdict(prefs).items()
            if value is not None
        }
        key = f"{_PREFIX}prefs:{user}"
        async with self.redis.pipeline() as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=cast(Any, encoded))
            await pipe.execute()
        return prefs

    async def guild(self, guild: str) -> GuildConfig:
        blocklist = cast(set[bytes], await self.redis.smembers(f"{_PREFIX}guild:{guild}:blocklist"))
        channels = cast(set[bytes], await self.redis.smembers(f"{_PREFIX}guild:{guild}:channels"))
        return GuildConfig(frozenset(b.decode() for b in blocklist), frozenset(int(c) for c in channels))

    async def strictest(self, guilds: list[str]) -> GuildConfig:
        """The rules for DMs: the banned phrases of every one of ``guilds``, no channel limit."""
        if not guilds:
            return GuildConfig()
        keys = [f"{_PREFIX}guild:{guild}:blocklist" for guild in guilds]
        blocklist = cast(set[bytes], await self.redis.sunion(keys))
        return GuildConfig(frozenset(b.decode() for b in blocklist))

    async def change_guild(self, guild: str, what: str, add: bool, value: str) -> GuildConfig:
        if what not in ("blocklist", "channels"):
            raise ValueError(f"unknown guild setting {what!r}")
        key = f"{_PREFIX}guild:{guild}:{what}"
        if add:
            await self.redis.sadd(key, value)
        else:
            await self.redis.srem(key, value)
        return await self.guild(guild)
