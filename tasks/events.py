"""Durable job events on Redis Streams, read by each front end through its own consumer group.

Two streams: progress (``started``, ``progress`` with small previews; capped by length, since a missed
progress event is only a missed update) and final events (``done``, ``failed``, ``cancelled``; never cut by
the flood of progress, only by age past the records' retention, ``DREAMLOOM_RECORD_RETENTION_DAYS``).
A group reads both, in the order the events were written.

A front end that was down when a job finished gets the event when it returns: events wait in the streams
until the group reads them. An event read but not acknowledged (the reader crashed, or handling it failed)
is delivered again: once more to the same consumer when it restarts (its backlog is read once, in order,
then new events), and to any consumer of the group once it has been idle ``CLAIM_IDLE_MS``. Every event
carries how often it was handed out (``deliveries``); a reader that keeps failing on one sets it aside
(``set_aside``: to the ``dreamloom:events:dead`` stream, where an operator sees it) instead of retrying it
for ever, so one bad event never holds up the others.
Final events are written by ``JobStore.finish`` in the same atomic step as the status change; progress and
started events are written here.

Synchronous readers (the command line, workers, benchmarks) use ``EventBus`` and ``EventTail``; the asyncio
front doors (the Discord bot, the web playground) use ``AsyncEventBus`` and ``AsyncEventTail`` on
``redis.asyncio``, so waiting for events holds no thread. Both read in the same order, with the same
parsing below.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, cast

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ResponseError

from tasks.job_store import DEAD_STREAM, EVENT_STREAM, EVENT_STREAM_MAXLEN, FINAL_STREAM

__all__ = ["MAX_DELIVERIES", "AsyncEventBus", "AsyncEventTail", "EventBus", "EventTail", "EventType", "JobEvent"]

CLAIM_IDLE_MS = 60_000  # an event unacknowledged this long (its reader went away, or failed on it) is handed out again
MAX_DELIVERIES = 5  # a reader that failed on an event this many times sets it aside (``set_aside``)
DEAD_STREAM_MAXLEN = 10_000
_PENDING_SLACK = 100  # other unacknowledged events of a consumer that may sit between those just claimed


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
    id: str | None = None  # once read: the receipt that acknowledges it ("<stream>:<entry id>")
    deliveries: int = 1  # how often its consumer group has handed it out (a failing event's retries count up)

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
            id=_text(entry_id),
        )


class EventBus:
    """Append job events, and read them as a member of a consumer group."""

    def __init__(self, redis: Redis, stream: str = EVENT_STREAM, final_stream: str = FINAL_STREAM) -> None:
        self.redis = redis
        self.stream = stream
        self.final_stream = final_stream
        self._groups: set[str] = set()  # groups known to exist
        self._backlog: dict[tuple[str, str], dict[str, str]] = {}  # (group, consumer) -> its backlog read so far
        self._caught_up: set[tuple[str, str]] = set()  # (group, consumer) pairs whose own backlog was read

    @property
    def streams(self) -> tuple[str, str]:
        return self.stream, self.final_stream

    def emit(self, event: JobEvent) -> str:
        """Append ``event`` (final events normally come from ``JobStore.finish``); returns its receipt."""
        fields = cast(dict[Any, Any], event.fields())
        if event.type.final:
            return _receipt(self.final_stream, self.redis.xadd(self.final_stream, fields))
        return _receipt(self.stream, self.redis.xadd(self.stream, fields, maxlen=EVENT_STREAM_MAXLEN, approximate=True))

    def ensure_group(self, group: str) -> None:
        """Create ``group`` reading from the start of the streams (nothing written before it is missed)."""
        if group not in self._groups:
            for stream in self.streams:
                try:
                    self.redis.xgroup_create(stream, group, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
            self._groups.add(group)

    def read(self, group: str, consumer: str, count: int = 20, block_ms: int = 1000) -> list[JobEvent]:
        """The next events for ``consumer``: first its own unacknowledged ones (after a restart, each once),
        then events left idle (at consumers that went away, or failing), then new events (waiting up to
        ``block_ms``)."""
        self.ensure_group(group)
        key = (group, consumer)
        while key not in self._caught_up:
            cursors = self._backlog.setdefault(key, dict.fromkeys(self.streams, "0"))
            events, gone = _read_backlog(self.redis.xreadgroup(group, consumer, _ids(cursors), count=count), cursors)
            self.ack(group, *gone)
            if events:
                return self._counted(group, consumer, events)
            if not gone:
                self._caught_up.add(key)
        with self.redis.pipeline(transaction=False) as pipe:
            for stream in self.streams:
                pipe.xautoclaim(stream, group, consumer, CLAIM_IDLE_MS, "0-0", count=count)
            claimed, gone = _claimed_events(self.streams, pipe.execute())
        self.ack(group, *gone)
        if claimed:
            return self._counted(group, consumer, claimed)
        streams = _ids(dict.fromkeys(self.streams, ">"))
        response = self.redis.xreadgroup(group, consumer, streams, count=count, block=block_ms)
        return _new_events(response)

    def _counted(self, group: str, consumer: str, events: list[JobEvent]) -> list[JobEvent]:
        """``events`` (handed out before) with how often they have been handed out now."""
        with self.redis.pipeline(transaction=False) as pipe:
            for stream, first, last, n in _ranges(events):
                pipe.xpending_range(stream, group, first, last, n + _PENDING_SLACK, consumer)
            return _with_deliveries(events, _ranges(events), pipe.execute())

    def ack(self, group: str, *receipts: str) -> None:
        for stream, ids in _by_stream(receipts, self.stream).items():
            self.redis.xack(stream, group, *ids)

    def set_aside(self, group: str, event: JobEvent, reason: str) -> None:
        """Give up on ``event`` for ``group``: keep it in the dead-letter stream for an operator, acknowledged."""
        stream, entry = _split(event.id or "", self.stream)
        with self.redis.pipeline() as pipe:
            pipe.xadd(DEAD_STREAM, _dead_fields(group, event, reason), maxlen=DEAD_STREAM_MAXLEN, approximate=True)
            pipe.xack(stream, group, entry)
            pipe.execute()

    def tail(self) -> EventTail:
        """Follow events from now on, without a consumer group (see ``EventTail``)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for stream in self.streams:
                pipe.xrevrange(stream, count=1)
            newest = pipe.execute()
        return EventTail(self.redis, {stream: _newest_id(n) for stream, n in zip(self.streams, newest, strict=True)})


class AsyncEventBus:
    """``EventBus``'s reading side on ``redis.asyncio``, for the front doors that run an event loop."""

    def __init__(self, redis: AsyncRedis, stream: str = EVENT_STREAM, final_stream: str = FINAL_STREAM) -> None:
        self.redis = redis
        self.stream = stream
        self.final_stream = final_stream
        self._groups: set[str] = set()
        self._backlog: dict[tuple[str, str], dict[str, str]] = {}
        self._caught_up: set[tuple[str, str]] = set()

    @property
    def streams(self) -> tuple[str, str]:
        return self.stream, self.final_stream

    async def ensure_group(self, group: str) -> None:
        if group not in self._groups:
            for stream in self.streams:
                try:
                    await self.redis.xgroup_create(stream, group, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
            self._groups.add(group)

    async def read(self, group: str, consumer: str, count: int = 20, block_ms: int = 1000) -> list[JobEvent]:
        """As ``EventBus.read``: the consumer's own backlog (each once), then idle events, then new ones."""
        await self.ensure_group(group)
        key = (group, consumer)
        while key not in self._caught_up:
            cursors = self._backlog.setdefault(key, dict.fromkeys(self.streams, "0"))
            response = await self.redis.xreadgroup(group, consumer, _ids(cursors), count=count)
            events, gone = _read_backlog(response, cursors)
            await self.ack(group, *gone)
            if events:
                return await self._counted(group, consumer, events)
            if not gone:
                self._caught_up.add(key)
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in self.streams:
                pipe.xautoclaim(stream, group, consumer, CLAIM_IDLE_MS, "0-0", count=count)
            claimed, gone = _claimed_events(self.streams, await pipe.execute())
        await self.ack(group, *gone)
        if claimed:
            return await self._counted(group, consumer, claimed)
        streams = _ids(dict.fromkeys(self.streams, ">"))
        return _new_events(await self.redis.xreadgroup(group, consumer, streams, count=count, block=block_ms))

    async def _counted(self, group: str, consumer: str, events: list[JobEvent]) -> list[JobEvent]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, first, last, n in _ranges(events):
                pipe.xpending_range(stream, group, first, last, n + _PENDING_SLACK, consumer)
            return _with_deliveries(events, _ranges(events), await pipe.execute())

    async def ack(self, group: str, *receipts: str) -> None:
        for stream, ids in _by_stream(receipts, self.stream).items():
            await self.redis.xack(stream, group, *ids)

    async def set_aside(self, group: str, event: JobEvent, reason: str) -> None:
        """As ``EventBus.set_aside``."""
        stream, entry = _split(event.id or "", self.stream)
        async with self.redis.pipeline() as pipe:
            pipe.xadd(DEAD_STREAM, _dead_fields(group, event, reason), maxlen=DEAD_STREAM_MAXLEN, approximate=True)
            pipe.xack(stream, group, entry)
            await pipe.execute()

    async def tail(self) -> AsyncEventTail:
        """Follow events from now on, without a consumer group (see ``EventTail``)."""
        newest = {stream: _newest_id(await self.redis.xrevrange(stream, count=1)) for stream in self.streams}
        return AsyncEventTail(self.redis, newest)


class EventTail:
    """Events from now on, for readers that need only the live ones: every reader sees every event, nothing
    is acknowledged, and what a reader missed it reads from the job records (the web page of each browser,
    a CLI waiting for its job). Front ends that must handle every event, also those that happened while
    they were down (the Discord bot), read with a consumer group instead (``EventBus.read``)."""

    def __init__(self, redis: Redis, last_ids: dict[str, str]) -> None:
        self.redis = redis
        self.last_ids = last_ids  # stream -> the id to read after

    def read(self, block_ms: int = 1000, count: int = 100) -> list[JobEvent]:
        """Events after the last ones read, waiting up to ``block_ms`` for the first."""
        return _tail(self.redis.xread(_ids(self.last_ids), count=count, block=block_ms), self.last_ids)


class AsyncEventTail:
    """``EventTail`` on ``redis.asyncio``."""

    def __init__(self, redis: AsyncRedis, last_ids: dict[str, str]) -> None:
        self.redis = redis
        self.last_ids = last_ids

    async def read(self, block_ms: int = 1000, count: int = 100) -> list[JobEvent]:
        return _tail(await self.redis.xread(_ids(self.last_ids), count=count, block=block_ms), self.last_ids)


# --- reading Redis's answers, for both kinds of reader ---------------------------------------------------


def _ids(positions: dict[str, str]) -> Any:
    """Stream -> id, as redis-py's stream reads take it (a copy: they must not see later changes)."""
    return dict(positions)


def _receipt(stream: str, entry_id: bytes | str) -> str:
    return f"{stream}:{_text(entry_id)}"


def _split(receipt: str, default_stream: str) -> tuple[str, str]:
    """A receipt -> (stream, entry id); a bare entry id is one of ``default_stream``."""
    stream, _, entry = receipt.rpartition(":")
    return stream or default_stream, entry


def _by_stream(receipts: Iterable[str], default_stream: str) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for receipt in receipts:
        if receipt:
            stream, entry = _split(receipt, default_stream)
            grouped.setdefault(stream, []).append(entry)
    return grouped


def _order(entry_id: str) -> tuple[int, int]:
    """An entry id's place in time, comparable across streams."""
    milliseconds, _, sequence = entry_id.rpartition(":")[2].partition("-")
    return int(milliseconds), int(sequence or 0)


def _parse(stream: str, entries: Iterable[tuple[Any, Any]]) -> list[JobEvent]:
    return [JobEvent.from_fields(_receipt(stream, entry_id), fields) for entry_id, fields in entries if fields]


def _sorted(events: list[JobEvent]) -> list[JobEvent]:
    return sorted(events, key=lambda event: _order(event.id or "0-0"))


def _read_backlog(response: Any, cursors: dict[str, str]) -> tuple[list[JobEvent], list[str]]:
    """A backlog read (XREADGROUP from ``cursors``): its events, and the receipts of entries trimmed away from
    the stream meanwhile (nothing to hand out: acknowledged). Moves ``cursors`` past what was read."""
    gone = [
        _receipt(_text(raw_stream), entry_id)
        for raw_stream, entries in response or []
        for entry_id, fields in entries
        if not fields
    ]
    return _tail(response, cursors), gone


def _new_events(response: Any) -> list[JobEvent]:
    """The events of an XREADGROUP answer for new events (``>``)."""
    return _sorted([event for raw_stream, entries in response or [] for event in _parse(_text(raw_stream), entries)])


def _claimed_events(streams: Sequence[str], responses: list[Any]) -> tuple[list[JobEvent], list[str]]:
    """The events of one XAUTOCLAIM answer per stream ((next start, entries[, deleted ids])), and the receipts
    of entries trimmed away meanwhile (Redis 6.2 still hands them out, empty)."""
    events: list[JobEvent] = []
    gone: list[str] = []
    for stream, response in zip(streams, responses, strict=True):
        entries = response[1] if response else []
        events += _parse(stream, entries)
        gone += [_receipt(stream, entry_id) for entry_id, fields in entries if not fields]
    return _sorted(events), gone


def _ranges(events: list[JobEvent]) -> list[tuple[str, str, str, int]]:
    """Per stream: (stream, first entry id, last entry id, count) of ``events``."""
    found: dict[str, list[str]] = {}
    for event in events:
        stream, entry = _split(event.id or "", "")
        found.setdefault(stream, []).append(entry)
    return [(stream, min(ids, key=_order), max(ids, key=_order), len(ids)) for stream, ids in found.items()]


def _with_deliveries(
    events: list[JobEvent], ranges: list[tuple[str, str, str, int]], answers: list[Any]
) -> list[JobEvent]:
    """``events`` with their delivery counts from one XPENDING answer per range."""
    counts: dict[str, int] = {}
    for (stream, *_), answer in zip(ranges, answers, strict=True):
        for item in answer or []:
            counts[_receipt(stream, item["message_id"])] = int(item["times_delivered"])
    return [replace(event, deliveries=counts.get(event.id or "", event.deliveries)) for event in events]


def _dead_fields(group: str, event: JobEvent, reason: str) -> dict[Any, Any]:
    """What the dead-letter stream keeps of an event (not its preview image)."""
    fields = {key: value for key, value in event.fields().items() if key != "preview"}
    return {**fields, "group": group, "receipt": event.id or "", "deliveries": str(event.deliveries),
            "reason": reason[:500]}  # fmt: skip


def _tail(response: Any, last_ids: dict[str, str]) -> list[JobEvent]:
    """The events of an XREAD answer; moves ``last_ids`` past them."""
    events: list[JobEvent] = []
    for raw_stream, entries in response or []:
        stream = _text(raw_stream)
        if entries:
            last_ids[stream] = _text(entries[-1][0])
        events += _parse(stream, entries)
    return _sorted(events)


def _newest_id(response: Any) -> str:
    """The id of the newest entry (an XREVRANGE answer of one), or the start of the stream."""
    return _text(response[0][0]) if response else "0-0"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
