"""Durable job events on a Redis Stream, read by each front end through its own consumer group.

A front end that was down when a job finished gets the event when it returns: events wait in the stream
until the group reads them, and an event read but not acknowledged (the reader crashed) is delivered again
to the same consumer on restart, or claimed by another consumer of the group once it has been idle.
Final events (done, failed, cancelled) are written by ``JobStore.finish`` in the same atomic step as the
status change; progress and started events are written here.

Synchronous readers (the command line, workers, benchmarks) use ``EventBus`` and ``EventTail``; the asyncio
front doors (the Discord bot, the web playground) use ``AsyncEventBus`` and ``AsyncEventTail`` on
``redis.asyncio``, so waiting for events holds no thread. Both read in the same order, with the same
parsing below.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ResponseError

from tasks.job_store import EVENT_STREAM, EVENT_STREAM_MAXLEN

__all__ = ["AsyncEventBus", "AsyncEventTail", "EventBus", "EventTail", "EventType", "JobEvent"]

CLAIM_IDLE_MS = 60_000  # an event unacknowledged this long by a consumer that went away is taken over


class EventType(StrEnum):
    STARTED = "started"
    PROGRESS = "progress"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (EventType.DONE, EventType.FAILED, EventType.CANCELLED)


@dataclass(frozen=True)
class JobEvent:
    type: EventType
    job_id: str
    owner: str
    channel: str | None = None
    percent: int | None = None
    preview: bytes | None = None  # a small WebP image of the work in progress
    message: str | None = None  # why a job failed, or what a finished job should say
    at: float = 0.0
    id: str | None = None  # the stream entry id, once read

    def fields(self) -> dict[str, str | bytes]:
        values: dict[str, str | bytes] = {
            "type": self.type.value,
            "job": self.job_id,
            "owner": self.owner,
            "at": f"{self.at or time.time():.3f}",
        }
        if self.channel is not None:
            values["channel"] = self.channel
        if self.percent is not None:
            values["percent"] = str(self.percent)
        if self.preview is not None:
            values["preview"] = self.preview
        if self.message is not None:
            values["message"] = self.message
        return values

    @classmethod
    def from_fields(cls, entry_id: bytes | str, raw: dict[bytes, bytes]) -> JobEvent:
        def text(name: str) -> str | None:
            value = raw.get(name.encode())
            return value.decode() if value is not None else None

        percent = text("percent")
        return cls(
            type=EventType(text("type") or ""),
            job_id=text("job") or "",
            owner=text("owner") or "",
            channel=text("channel"),
            percent=int(percent) if percent is not None else None,
            preview=raw.get(b"preview"),
            message=text("message"),
            at=float(text("at") or 0),
            id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
        )


class EventBus:
    """Append job events, and read them as a member of a consumer group."""

    def __init__(self, redis: Redis, stream: str = EVENT_STREAM) -> None:
        self.redis = redis
        self.stream = stream
        self._groups: set[str] = set()  # groups known to exist
        self._caught_up: set[tuple[str, str]] = set()  # (group, consumer) pairs whose own backlog was read

    def emit(self, event: JobEvent) -> str:
        fields = cast(dict[Any, Any], event.fields())
        return _text(self.redis.xadd(self.stream, fields, maxlen=EVENT_STREAM_MAXLEN, approximate=True))

    def ensure_group(self, group: str) -> None:
        """Create ``group`` reading from the start of the stream (nothing written before it is missed)."""
        if group not in self._groups:
            try:
                self.redis.xgroup_create(self.stream, group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._groups.add(group)

    def read(self, group: str, consumer: str, count: int = 20, block_ms: int = 1000) -> list[JobEvent]:
        """The next events for ``consumer``: first its own unacknowledged ones (after a restart), then
        events idle at consumers that went away, then new events (waiting up to ``block_ms``)."""
        self.ensure_group(group)
        if (group, consumer) not in self._caught_up:
            if backlog := _events(self.redis.xreadgroup(group, consumer, {self.stream: "0"}, count=count)):
                return backlog
            self._caught_up.add((group, consumer))
        claimed = self.redis.xautoclaim(self.stream, group, consumer, CLAIM_IDLE_MS, "0-0", count=count)
        if events := _claimed_events(claimed):
            return events
        return _events(self.redis.xreadgroup(group, consumer, {self.stream: ">"}, count=count, block=block_ms))

    def ack(self, group: str, *event_ids: str) -> None:
        if event_ids:
            self.redis.xack(self.stream, group, *event_ids)

    def tail(self) -> EventTail:
        """Follow events from now on, without a consumer group (see ``EventTail``)."""
        return EventTail(self.redis, self.stream)


class AsyncEventBus:
    """``EventBus``'s reading side on ``redis.asyncio``, for the front doors that run an event loop."""

    def __init__(self, redis: AsyncRedis, stream: str = EVENT_STREAM) -> None:
        self.redis = redis
        self.stream = stream
        self._groups: set[str] = set()
        self._caught_up: set[tuple[str, str]] = set()

    async def ensure_group(self, group: str) -> None:
        if group not in self._groups:
            try:
                await self.redis.xgroup_create(self.stream, group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._groups.add(group)

    async def read(self, group: str, consumer: str, count: int = 20, block_ms: int = 1000) -> list[JobEvent]:
        """As ``EventBus.read``: the consumer's own backlog, then idle events, then new ones."""
        await self.ensure_group(group)
        if (group, consumer) not in self._caught_up:
            if backlog := _events(await self.redis.xreadgroup(group, consumer, {self.stream: "0"}, count=count)):
                return backlog
            self._caught_up.add((group, consumer))
        claimed = await self.redis.xautoclaim(self.stream, group, consumer, CLAIM_IDLE_MS, "0-0", count=count)
        if events := _claimed_events(claimed):
            return events
        return _events(await self.redis.xreadgroup(group, consumer, {self.stream: ">"}, count=count, block=block_ms))

    async def ack(self, group: str, *event_ids: str) -> None:
        if event_ids:
            await self.redis.xack(self.stream, group, *event_ids)

    async def tail(self) -> AsyncEventTail:
        """Follow events from now on, without a consumer group (see ``EventTail``)."""
        return AsyncEventTail(self.redis, self.stream, _newest_id(await self.redis.xrevrange(self.stream, count=1)))


class EventTail:
    """Events from now on, for readers that need only the live ones: every reader sees every event, nothing
    is acknowledged, and what a reader missed it reads from the job records (the web page of each browser,
    a CLI waiting for its job). Front ends that must handle every event, also those that happened while
    they were down (the Discord bot), read with a consumer group instead (``EventBus.read``)."""

    def __init__(self, redis: Redis, stream: str) -> None:
        self.redis = redis
        self.stream = stream
        self.last_id = _newest_id(redis.xrevrange(stream, count=1))

    def read(self, block_ms: int = 1000, count: int = 100) -> list[JobEvent]:
        """Events after the last one read, waiting up to ``block_ms`` for the first."""
        events, self.last_id = _tail(self.redis.xread({self.stream: self.last_id}, count=count, block=block_ms),
                                     self.last_id)  # fmt: skip
        return events


class AsyncEventTail:
    """``EventTail`` on ``redis.asyncio``."""

    def __init__(self, redis: AsyncRedis, stream: str, last_id: str) -> None:
        self.redis = redis
        self.stream = stream
        self.last_id = last_id

    async def read(self, block_ms: int = 1000, count: int = 100) -> list[JobEvent]:
        response = await self.redis.xread({self.stream: self.last_id}, count=count, block=block_ms)
        events, self.last_id = _tail(response, self.last_id)
        return events


# --- reading Redis's answers, for both kinds of reader ---------------------------------------------------


def _events(response: Any) -> list[JobEvent]:
    """The events of an XREADGROUP answer; entries trimmed away from the stream come back empty."""
    return [JobEvent.from_fields(entry_id, fields) for _, entries in response or [] for entry_id, fields in entries
            if fields]  # fmt: skip


def _claimed_events(response: Any) -> list[JobEvent]:
    """The events of an XAUTOCLAIM answer: (next start, entries, deleted ids)."""
    if not response or not response[1]:
        return []
    return [JobEvent.from_fields(entry_id, fields) for entry_id, fields in response[1] if fields]


def _tail(response: Any, last_id: str) -> tuple[list[JobEvent], str]:
    """The events of an XREAD answer, and the id to read after next time."""
    events = []
    for _stream, entries in response or []:
        for entry_id, fields in entries:
            last_id = _text(entry_id)
            if fields:
                events.append(JobEvent.from_fields(entry_id, fields))
    return events, last_id


def _newest_id(response: Any) -> str:
    """The id of the newest entry (an XREVRANGE answer of one), or the start of the stream."""
    return _text(response[0][0]) if response else "0-0"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
