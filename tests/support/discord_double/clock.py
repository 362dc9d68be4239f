"""Time for the double: real time that a test can jump forward, and Discord's snowflake ids."""

from __future__ import annotations

import datetime
import itertools
import threading
import time

DISCORD_EPOCH_MS = 1_420_070_400_000


class Clock:
    """Monotonic and wall-clock seconds, both shifted by ``advance`` so a test can skip 15 minutes at once.

    Time never runs backwards: rate-limit windows, the 3-second deadline and token expiry all read ``now()``.
    """

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        """Monotonic seconds, for deadlines and windows."""
        return time.monotonic() + self._offset

    def wall(self) -> float:
        """Unix seconds, for timestamps, snowflakes and ``X-RateLimit-Reset``."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"the clock only moves forward (got {seconds} s)")
        self._offset += seconds

    def iso(self, wall: float | None = None) -> str:
        moment = self.wall() if wall is None else wall
        return datetime.datetime.fromtimestamp(moment, datetime.UTC).isoformat()


class Snowflakes:
    """Increasing ids in Discord's layout, so discord.py's ``created_at`` reads a sensible time."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last = 0
        self._increment = itertools.count()
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            millis = int(self._clock.wall() * 1000) - DISCORD_EPOCH_MS
            candidate = (millis << 22) | (next(self._increment) & 0xFFF)
            self._last = max(candidate, self._last + 1)
            return self._last
