"""How often ✉️ may DM a member a result: once per job per member per cooldown, and a number an hour.

Any member can react ✉️ to any result, so without a limit one member could have the bot send them (or keep
it busy sending) the same image over and over. Both limits live in Redis, checked and counted in one
script, so several bots (or a restart) share them::

    dreamloom:bot:dm:{user}:{job}     the job was sent to the user lately (expires after the cooldown)
    dreamloom:bot:dms:{user}          DMs sent to the user this hour (expires an hour after the first)
    dreamloom:bot:dm-note:{user}      the user was told about the limits lately (told once per cooldown)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

__all__ = ["DmCooldowns", "DmRefusal"]

_PREFIX = "dreamloom:bot:"
HOUR_MS = 3_600_000

# KEYS: this job for this user, the user's count this hour. ARGV: cooldown ms, hour ms, DMs allowed an hour.
# Returns 0 (send it), 1 (this job was sent lately) or 2 (the hour's DMs are used up).
_TAKE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[3]) then return 2 end
if tonumber(ARGV[1]) > 0 then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
if redis.call('INCR', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return 0
"""


@dataclass(frozen=True)
class DmRefusal:
    """Why ✉️ sent nothing this time, as the member reads it."""

    line: str


class DmCooldowns:
    def __init__(self, redis: Redis, cooldown: float, per_hour: int) -> None:
        self.redis = redis
        self.cooldown = cooldown
        self.per_hour = per_hour
        self._take = redis.register_script(_TAKE)

    async def take(self, user: str, job_id: str) -> DmRefusal | None:
        """Count a DM of ``job_id`` to ``user`` and return None, or say why it may not be sent now."""
        keys = [f"{_PREFIX}dm:{user}:{job_id}", f"{_PREFIX}dms:{user}"]
        outcome = int(cast(int, await self._take(keys=keys, args=[int(self.cooldown * 1000), HOUR_MS, self.per_hour])))
        if outcome == 0:
            return None
        minutes = max(1, round(self.cooldown / 60))
        if outcome == 1:
            return DmRefusal(f"You got this image by DM less than {minutes} min ago; react ✉️ again later")
        return DmRefusal(f"✉️ sends at most {self.per_hour} images an hour; react again in a while")

    async def first_refusal(self, user: str) -> bool:
        """True once per cooldown for ``user``: whether to tell them about a refusal (later ones pass quietly)."""
        ttl = max(1, int(self.cooldown) or 60)
        return bool(await self.redis.set(f"{_PREFIX}dm-note:{user}", "1", nx=True, ex=ttl))
