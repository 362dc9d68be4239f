"""Discord's rate limits as fixed windows per bucket, with the headers and 429 body that discord.py reads.

Every successful answer on a limited route carries ``X-RateLimit-Limit/-Remaining/-Reset/-Reset-After/-Bucket``
(so discord.py waits before it runs dry, as with Discord), unless the limit is declared with ``headers=False``:
that plays a limit the client cannot see coming (one shared with another process, or a sub-limit), which it
learns of only from the 429 and its ``retry_after``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields

from .clock import Clock


@dataclass(frozen=True)
class RateLimit:
    limit: int
    per: float
    """Seconds in a window."""
    headers: bool = True


@dataclass(frozen=True)
class RateLimits:
    """Limits per bucket; None turns a bucket off. Buckets are per channel, or per interaction token."""

    message_create: RateLimit | None = RateLimit(5, 5.0)
    message_edit: RateLimit | None = RateLimit(5, 5.0)
    message_delete: RateLimit | None = RateLimit(5, 1.0)
    reaction: RateLimit | None = RateLimit(1, 0.25)
    interaction_webhook: RateLimit | None = RateLimit(5, 2.0)
    global_limit: RateLimit | None = RateLimit(50, 1.0)
    """Every bot-token request (not interaction callbacks and webhooks), as Discord's global limit."""

    @classmethod
    def off(cls) -> RateLimits:
        return cls(**{f.name: None for f in fields(cls)})

    def of(self, bucket: str) -> RateLimit | None:
        limit: RateLimit | None = getattr(self, bucket)
        return limit


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    headers: dict[str, str]
    retry_after: float = 0.0


@dataclass
class _Window:
    started: float
    count: int = 0


class RateLimiter:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}

    def hit(self, bucket: str, major: str, limit: RateLimit) -> Verdict:
        now = self._clock.now()
        window = self._windows.get((bucket, major))
        if window is None or now >= window.started + limit.per:
            window = self._windows[(bucket, major)] = _Window(started=now)
        # Rounded up to the millisecond, so a client that sleeps exactly this long finds the window over.
        reset_after = math.ceil((window.started + limit.per - now) * 1000) / 1000
        if window.count >= limit.limit:
            headers = self._headers(bucket, limit, 0, reset_after)
            headers |= {
                "Retry-After": str(max(1, math.ceil(reset_after))),
                "X-RateLimit-Scope": "user" if limit.headers else "shared",
                # discord.py treats a 429 without ``Via`` as a Cloudflare ban and raises instead of retrying.
                "Via": "1.1 google",
            }
            if bucket == "global_limit":
                headers = {key: value for key, value in headers.items() if not key.startswith("X-RateLimit-")}
                headers |= {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}
            return Verdict(allowed=False, headers=headers, retry_after=reset_after)
        window.count += 1
        remaining = limit.limit - window.count
        headers = self._headers(bucket, limit, remaining, reset_after) if limit.headers else {}
        return Verdict(allowed=True, headers=headers)

    def _headers(self, bucket: str, limit: RateLimit, remaining: int, reset_after: float) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(limit.limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{self._clock.wall() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": hashlib.sha1(bucket.encode()).hexdigest()[:32],
        }
