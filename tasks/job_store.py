"""Job records, status changes and per-user admission in Redis.

Every change that must not half-happen is one Lua script, so it is atomic even with many workers and
front ends: admitting a job (queued, held or refused), starting an attempt, and finishing a job, which
sets the final status, appends its event to the final-events stream and releases the owner's next held
jobs in the same step. A job therefore finishes once and emits exactly one final event, whatever crashes
around it.

An attempt holds the job with a heartbeat (a key its worker refreshes while it renders): a second
delivery of a running job (Celery's redelivery, a visibility timeout) starts another attempt only once
that heartbeat is stale, so one job is never rendered twice at the same time (``StillRunning``).

Retention: a finished job's record, its owner's list of jobs and the index of finished jobs expire after
``retention_seconds`` (``DREAMLOOM_RECORD_RETENTION_DAYS``; 0 keeps them for ever). A job's ``job.json`` in
storage outlives them: readers rebuild an expired job from it (``tasks.artifacts.stored_job``).

Keys (prefix ``dreamloom:``)::

    job:{id}                 hash: the record (tasks.records.Job)
    job:{id}:cancel          flag a running job checks at every step
    job:{id}:preview         the latest preview image (expires)
    job:{id}:heartbeat       who renders the job now (expires unless its worker refreshes it)
    user:{owner}:active      set: the owner's jobs in the queues or running (limited)
    user:{owner}:held        list: the owner's jobs waiting for a free slot, in order
    user:{owner}:jobs        sorted set: the owner's jobs by creation time (within the retention)
    done                     sorted set: done jobs by finishing time (within the retention), for front ends
                             that look for results they have not posted
    events                   stream: started and progress events (capped by length)
    events:final             stream: done, failed and cancelled events (trimmed by age only)
    events:dead              stream: events a front end gave up on (capped), for the operator
    waiting:{family}         sorted set: queued jobs in the order workers take them
    unsent                   set: admitted jobs not yet handed to the broker (recovered after a crash)
    workers:{family}         sorted set: workers by last sign of life
    model-workers:{model}    sorted set: workers that announce the model loaded, by last announcement
    load-seconds             hash: model -> seconds its latest load took (what a job that may load it allows)
    workers:{family}:warming sorted set: workers loading and warming their models (not taking jobs yet)
    stats:{family}           hash: moving average of a job's run time
    counts                   hash: how many jobs are in each status (kept by the scripts, for metrics)
    families                 set: the model families jobs were queued for
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from redis import Redis

from engine.errors import UnknownJob
from engine.jobs import JobStatus
from tasks.records import Job

__all__ = ["PREFIX", "Admission", "Finish", "JobStore", "StillRunning"]

PREFIX = "dreamloom:"
EVENT_STREAM = PREFIX + "events"
FINAL_STREAM = PREFIX + "events:final"
DEAD_STREAM = PREFIX + "events:dead"
DONE_INDEX = PREFIX + "done"
COUNTS = PREFIX + "counts"
EVENT_STREAM_MAXLEN = 50_000  # progress only: final events have a stream of their own
DEFAULT_RETENTION_SECONDS = 7 * 86_400
PREVIEW_TTL_SECONDS = 3600
CANCEL_TTL_SECONDS = 86_400
WORKER_ALIVE_SECONDS = 300

# KEYS: job, owner's active set, owner's held list, owner's jobs, unsent set, status counts
# ARGV: id, max active, max held, now, retention seconds (0: keep), record pairs...
_ADMIT = """
local retention = tonumber(ARGV[5])
if retention > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', tonumber(ARGV[4]) - retention)
end
local active = redis.call('SCARD', KEYS[2])
local status
if active < tonumber(ARGV[2]) then
  status = 'queued'
elseif redis.call('LLEN', KEYS[3]) < tonumber(ARGV[3]) then
  status = 'held'
else
  return {'full', redis.call('LLEN', KEYS[3])}
end
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'status', status)
redis.call('HINCRBY', KEYS[6], status, 1)
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
if retention > 0 then redis.call('EXPIRE', KEYS[4], math.ceil(retention) + 86400) end
if status == 'queued' then
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('SADD', KEYS[5], ARGV[1])
  redis.call('HSET', KEYS[1], 'queued_at', ARGV[4])
  return {status, active}
end
redis.call('RPUSH', KEYS[3], ARGV[1])
return {status, redis.call('LLEN', KEYS[3]) - 1}
"""

# KEYS: job, family waiting set, unsent set, status counts, family workers, stream, heartbeat
# ARGV: id, now, worker, max attempts, stream maxlen, heartbeat token ('' for none), heartbeat ms,
#       the stale holder this attempt takes over ('' for none), event pairs...
_BEGIN = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return {0, status or ''} end
local holder = redis.call('GET', KEYS[7])
if status == 'running' and holder and holder ~= ARGV[8] then
  return {-1, holder, redis.call('PTTL', KEYS[7])}
end
if ARGV[6] ~= '' then
  redis.call('SET', KEYS[7], ARGV[6], 'PX', ARGV[7])
elseif holder then
  redis.call('DEL', KEYS[7])
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[2], 'worker', ARGV[3])
if status == 'queued' then
  redis.call('HINCRBY', KEYS[4], 'queued', -1)
  redis.call('HINCRBY', KEYS[4], 'running', 1)
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[3])
if attempts <= tonumber(ARGV[4]) and #ARGV > 8 then
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[5], '*', unpack(ARGV, 9))
end
return {attempts, status}
"""

_DURATION = """
local previous = redis.call('HGET', KEYS[1], 'seconds')
local value = tonumber(ARGV[1])
if previous then value = 0.8 * tonumber(previous) + 0.2 * value end
redis.call('HSET', KEYS[1], 'seconds', string.format('%.3f', value))
"""

# KEYS: job, final-events stream, owner's active set, owner's held list, family waiting set, unsent set,
#       status counts, done index
# ARGV: id, allowed statuses (comma-separated), new status, now, max active, job key prefix,
#       retention seconds (0: keep), oldest final event kept (a stream id; '' to keep all),
#       number of field pairs, field pairs..., event pairs...
_FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {-1} end
local allowed = false
for s in string.gmatch(ARGV[2], '[^,]+') do
  if s == status then allowed = true end
end
if not allowed then return {0, status} end
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'finished_at', ARGV[4])
redis.call('HINCRBY', KEYS[7], status, -1)
redis.call('HINCRBY', KEYS[7], ARGV[3], 1)
local i = 10
for j = 1, tonumber(ARGV[9]) do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local event = {}
while i <= #ARGV do
  table.insert(event, ARGV[i])
  i = i + 1
end
if #event > 0 then
  if ARGV[8] ~= '' then
    redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[8], '*', unpack(event))
  else
    redis.call('XADD', KEYS[2], '*', unpack(event))
  end
end
local retention = tonumber(ARGV[7])
if ARGV[3] == 'done' then redis.call('ZADD', KEYS[8], ARGV[4], ARGV[1]) end
if retention > 0 then
  redis.call('EXPIRE', KEYS[1], math.ceil(retention))
  redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', tonumber(ARGV[4]) - retention)
end
redis.call('LREM', KEYS[4], 0, ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('SREM', KEYS[6], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
local result = {1, status}
while redis.call('SCARD', KEYS[3]) < tonumber(ARGV[5]) do
  local next_id = redis.call('LPOP', KEYS[4])
  if not next_id then break end
  local key = ARGV[6] .. next_id
  if redis.call('HGET', key, 'status') == 'held' then
    local rank = redis.call('SCARD', KEYS[3])
    redis.call('SADD', KEYS[3], next_id)
    redis.call('SADD', KEYS[6], next_id)
    redis.call('HSET', key, 'status', 'queued', 'queued_at', ARGV[4])
    redis.call('HINCRBY', KEYS[7], 'held', -1)
    redis.call('HINCRBY', KEYS[7], 'queued', 1)
    table.insert(result, next_id)
    table.insert(result, rank)
  end
end
return result
"""


# KEYS: heartbeat; ARGV: token, ms. Refresh a heartbeat if it is still this attempt's (1), else 0.
_BEAT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: heartbeat; ARGV: token. Remove a heartbeat if it is still this attempt's.
_STOP_BEAT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
"""

# KEYS: job; ARGV: only if unset (1/0), field pairs... Set fields of an existing record (an expired one is
# not brought back as a record of marks alone). Returns 1 when set.
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '1' then return redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3]) end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""


class StillRunning(Exception):
    """Another attempt holds the job and its heartbeat is fresh: try again in ``retry_in`` seconds."""

    def __init__(self, job_id: str, holder: str, retry_in: float) -> None:
        super().__init__(f"job {job_id} is running at {holder}; its heartbeat ends in {retry_in:.1f}s")
        self.job_id = job_id
        self.holder = holder
        self.retry_in = retry_in


@dataclass(frozen=True)
class Admission:
    status: str  # "queued", "held" or "full"
    rank: int  # queued: the owner's jobs already active; held: jobs held before it; full: jobs held


@dataclass(frozen=True)
class Finish:
    won: bool  # this call made the change (False: the job had another status already)
    previous: str | None  # the status before the call (None: no such job)
    released: list[tuple[str, int]]  # held jobs of the owner now queued, with their rank


class JobStore:
    """Job records and their status changes."""

    def __init__(
        self,
        redis: Redis,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        archive: Callable[[str], Job | None] | None = None,
    ) -> None:
        """``archive`` finds a finished job whose record has expired (from its stored ``job.json``)."""
        self.redis = redis
        self.retention_seconds = retention_seconds
        self.archive = archive
        self._admit = redis.register_script(_ADMIT)
        self._begin = redis.register_script(_BEGIN)
        self._finish = redis.register_script(_FINISH)
        self._duration = redis.register_script(_DURATION)
        self._beat = redis.register_script(_BEAT)
        self._stop_beat = redis.register_script(_STOP_BEAT)
        self._update = redis.register_script(_UPDATE)

    # --- records -------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job's record; once it has expired, the job as its stored ``job.json`` tells it (``archive``)."""
        raw = self.redis.hgetall(_job_key(job_id)) if _valid_id(job_id) else {}
        if raw:
            return Job.from_redis(raw)
        stored = self.archive(job_id) if self.archive is not None and _valid_id(job_id) else None
        if stored is None:
            raise UnknownJob(job_id)
        return stored

    def exists(self, job_id: str) -> bool:
        return _valid_id(job_id) and bool(self.redis.exists(_job_key(job_id)))

    def update(self, job_id: str, **fields: Any) -> None:
        """Set plain fields of a record (not its status: that goes through the scripts); nothing once the
        record has expired."""
        encoded = {k: str(v) for k, v in fields.items() if v is not None}
        if encoded:
            self._update(keys=[_job_key(job_id)], args=["0", *_pairs(encoded)])

    def get_field(self, job_id: str, name: str) -> str | None:
        value = cast(bytes | None, self.redis.hget(_job_key(job_id), name))
        return None if value is None else value.decode()

    def claim_field(self, job_id: str, name: str, value: str) -> bool:
        """Set a field only if it is unset; True when this call set it (e.g. who posts a result)."""
        return bool(self._update(keys=[_job_key(job_id)], args=["1", name, value]))

    def jobs_of(self, owner: str, limit: int = 50) -> list[Job]:
        ids = cast(list[bytes], self.redis.zrevrange(_user_key(owner, "jobs"), 0, limit - 1))
        jobs = []
        for raw_id in ids:
            raw = self.redis.hgetall(_job_key(_text(raw_id)))
            if raw:
                jobs.append(Job.from_redis(raw))
        return jobs

    # --- status changes ------------------------------------------------------------------------------

    def admit(self, job: Job, max_active: int, max_held: int) -> Admission:
        """Write a new job as queued (the owner has a free slot), held (in line behind their earlier jobs)
        or refuse it (full), atomically."""
        pairs = _pairs({key: value for key, value in job.to_redis().items() if key != "status"})
        keys = [
            _job_key(job.id),
            _user_key(job.owner, "active"),
            _user_key(job.owner, "held"),
            _user_key(job.owner, "jobs"),
            PREFIX + "unsent",
            COUNTS,
        ]
        args = [job.id, max_active, max_held, time.time(), self.retention_seconds, *pairs]
        status, rank = self._admit(keys=keys, args=args)
        return Admission(_text(status), int(rank))

    def create_running(self, job: Job) -> None:
        """Record a job the caller runs itself (no queue, no admission), e.g. separating an image of a grid."""
        mapping = {**job.to_redis(), "status": JobStatus.RUNNING.value, "started_at": str(time.time())}
        with self.redis.pipeline() as pipe:
            pipe.hset(_job_key(job.id), mapping=cast(Any, mapping))
            pipe.zadd(_user_key(job.owner, "jobs"), {job.id: job.created_at})
            pipe.hincrby(COUNTS, JobStatus.RUNNING.value, 1)
            pipe.execute()

    def mark_sent(self, job: Job, priority: int, queue: str | None = None) -> None:
        """The job is in the broker (on ``queue``): remember when and where, and its place in the family's
        waiting order."""
        sequence = self.redis.incr(PREFIX + "sequence")
        with self.redis.pipeline() as pipe:
            pipe.hset(_job_key(job.id), "sent_at", str(time.time()))
            if queue is not None:
                pipe.hset(_job_key(job.id), "queue", queue)
            pipe.zadd(_waiting_key(job.family), {job.id: priority * 10**13 + sequence})
            pipe.srem(PREFIX + "unsent", job.id)
            pipe.sadd(PREFIX + "families", job.family)
            pipe.execute()

    def begin(
        self,
        job: Job,
        worker: str,
        max_attempts: int,
        event: dict[str, str | bytes] | None = None,
        heartbeat: tuple[str, float] | None = None,
        take_over: str = "",
    ) -> tuple[int, str]:
        """Start an attempt: (attempts so far including this one, previous status), or (0, status) when the
        job must not run (finished, cancelled meanwhile). In the same step the worker is marked alive and,
        when the attempt may run (at most ``max_attempts``), ``event`` goes to the stream.

        ``heartbeat`` (token, seconds) holds the job for this attempt until it ends or stops refreshing it
        (``beat``). A running job whose heartbeat is fresh is not started again: ``StillRunning`` says whose
        it is and when it ends; ``take_over`` names a holder known to be gone (its process ended)."""
        keys = [
            _job_key(job.id),
            _waiting_key(job.family),
            PREFIX + "unsent",
            COUNTS,
            _workers_key(job.family),
            EVENT_STREAM,
            _heartbeat_key(job.id),
        ]
        token, seconds = heartbeat or ("", 0.0)
        args = [job.id, time.time(), worker, max_attempts, EVENT_STREAM_MAXLEN, token, max(1, int(seconds * 1000)),
                take_over, *_pairs(event or {})]  # fmt: skip
        result = self._begin(keys=keys, args=args)
        if int(result[0]) == -1:
            raise StillRunning(job.id, _text(result[1]), max(0.0, int(result[2]) / 1000))
        return int(result[0]), _text(result[1])

    def render_begins(self, job_id: str) -> int:
        """A render of the job begins (it holds the GPU): how many of its earlier renders began and never
        ended, since they died with their worker (``render_ended`` was never called for them)."""
        return int(self.redis.hincrby(_job_key(job_id), "unended-renders", 1)) - 1

    def render_ended(self, job_id: str) -> None:
        """The render that began last ended in this process (with images or with an error)."""
        self.redis.hincrby(_job_key(job_id), "unended-renders", -1)

    def beat(self, job_id: str, token: str, seconds: float) -> bool:
        """Refresh this attempt's heartbeat; False when it is no longer this attempt's (it lapsed and another
        attempt took the job over)."""
        return bool(self._beat(keys=[_heartbeat_key(job_id)], args=[token, max(1, int(seconds * 1000))]))

    def end_heartbeat(self, job_id: str, token: str) -> None:
        self._stop_beat(keys=[_heartbeat_key(job_id)], args=[token])

    def finish(
        self,
        job: Job,
        status: JobStatus,
        allowed: tuple[JobStatus, ...],
        max_active: int,
        fields: dict[str, str] | None = None,
        event: dict[str, str | bytes] | None = None,
    ) -> Finish:
        """Move ``job`` from one of ``allowed`` to the final ``status``, append ``event`` to the stream and
        release the owner's next held jobs: one atomic step."""
        pairs = _pairs(fields or {})
        keys = [
            _job_key(job.id),
            FINAL_STREAM,
            _user_key(job.owner, "active"),
            _user_key(job.owner, "held"),
            _waiting_key(job.family),
            PREFIX + "unsent",
            COUNTS,
            DONE_INDEX,
        ]
        now = time.time()
        retention = self.retention_seconds
        args = [
            job.id,
            ",".join(s.value for s in allowed),
            status.value,
            now,
            max_active,
            PREFIX + "job:",
            math.ceil(retention),
            f"{int((now - retention) * 1000)}-0" if retention > 0 else "",
            len(pairs) // 2,
            *pairs,
            *_pairs(event or {}),
        ]
        result = self._finish(keys=keys, args=args)
        if int(result[0]) == -1:
            return Finish(False, None, [])
        won = int(result[0]) == 1
        released = [(_text(result[i]), int(result[i + 1])) for i in range(2, len(result), 2)]
        return Finish(won, _text(result[1]), released)

    def unmarked(self, since: float, mark: str, batch: int = 500) -> list[tuple[str, str]]:
        """(id, channel) of the jobs done since ``since`` (within the retention) whose record has no front-end
        ``mark`` yet, oldest first: what a front end that starts still has to show."""
        ids = [_text(i) for i in cast(list[bytes], self.redis.zrangebyscore(DONE_INDEX, since, "+inf"))]
        found = []
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            with self.redis.pipeline(transaction=False) as pipe:
                for job_id in chunk:
                    pipe.hmget(_job_key(job_id), ["status", "channel", f"mark:{mark}"])
                rows = pipe.execute()
            for job_id, (status, channel, marked) in zip(chunk, rows, strict=True):
                if status == JobStatus.DONE.value.encode() and channel is not None and marked is None:
                    found.append((job_id, _text(channel)))
        return found

    # --- cancel flag, progress, previews ----------------------------------------------------------------

    def request_cancel(self, job_id: str) -> None:
        self.redis.set(_job_key(job_id) + ":cancel", "1", ex=CANCEL_TTL_SECONDS)

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.redis.exists(_job_key(job_id) + ":cancel"))

    def set_progress(
        self, job_id: str, percent: int, preview: bytes | None, event: dict[str, str | bytes] | None = None
    ) -> None:
        """Record progress (and the latest preview), appending ``event`` to the stream in the same round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(_job_key(job_id), "progress", str(percent))
            if preview is not None:
                pipe.set(_job_key(job_id) + ":preview", preview, ex=PREVIEW_TTL_SECONDS)
            if event is not None:
                pipe.xadd(EVENT_STREAM, cast(Any, event), maxlen=EVENT_STREAM_MAXLEN, approximate=True)
            pipe.execute()

    def preview(self, job_id: str) -> bytes | None:
        value = cast(bytes | None, self.redis.get(_job_key(job_id) + ":preview"))
        return value

    # --- queue order, workers, timings ------------------------------------------------------------------

    def waiting_position(self, job: Job) -> int | None:
        """1 for the next job a worker of the family takes; None when the job is not waiting in the queue."""
        rank = cast(int | None, self.redis.zrank(_waiting_key(job.family), job.id))
        return None if rank is None else rank + 1

    def waiting_count(self, family: str) -> int:
        return int(self.redis.zcard(_waiting_key(family)))

    def held_jobs(self, owner: str) -> list[str]:
        return [_text(i) for i in self.redis.lrange(_user_key(owner, "held"), 0, -1)]

    def full(self, owner: str, max_active: int, max_held: int) -> int | None:
        """The owner's held jobs when ``admit`` would refuse them another job now (every slot taken and the
        line behind them full); None when it would not."""
        with self.redis.pipeline() as pipe:
            pipe.scard(_user_key(owner, "active"))
            pipe.llen(_user_key(owner, "held"))
            active, held = pipe.execute()
        return int(held) if int(active) >= max_active and int(held) >= max_held else None

    def unsent(self) -> list[str]:
        return [_text(i) for i in self.redis.smembers(PREFIX + "unsent")]

    def worker_seen(self, family: str, worker: str) -> None:
        self.redis.zadd(_workers_key(family), {worker: time.time()})

    def workers(self, family: str) -> int:
        since = time.time() - WORKER_ALIVE_SECONDS
        return int(self.redis.zcount(_workers_key(family), since, "+inf"))

    def models_seen(self, worker: str, models: Iterable[str]) -> None:
        """``worker`` has ``models`` loaded and consumes their queues (its heartbeat, every minute): jobs for
        them go to their own queues while it is alive (``WORKER_ALIVE_SECONDS``). Entries of workers long
        gone are dropped on the way."""
        now = time.time()
        with self.redis.pipeline(transaction=False) as pipe:
            for model in models:
                pipe.zadd(_model_workers_key(model), {worker: now})
                pipe.zremrangebyscore(_model_workers_key(model), "-inf", now - 10 * WORKER_ALIVE_SECONDS)
            pipe.execute()

    def model_workers(self, model: str) -> int:
        """Live workers that announce ``model`` (see ``models_seen``)."""
        since = time.time() - WORKER_ALIVE_SECONDS
        return int(self.redis.zcount(_model_workers_key(model), since, "+inf"))

    def record_load_times(self, load_times: Mapping[str, float]) -> None:
        """Keep each model's latest load time (``ImageEngine.load_times()``), for the time limits of jobs that
        may have to load it (``tasks.routing.load_allowance``)."""
        values = {model: f"{seconds:.3f}" for model, seconds in load_times.items() if seconds >= 0}
        if values:
            self.redis.hset(PREFIX + "load-seconds", mapping=cast(Any, values))

    def load_time(self, model: str) -> float | None:
        value = cast(bytes | None, self.redis.hget(PREFIX + "load-seconds", model))
        return None if value is None else float(value)

    def waiting_for_models(self, limit: int = 1000) -> dict[str, int]:
        """Jobs waiting on a model's own queue, by model (the first ``limit`` of each family's waiting jobs):
        what no other worker takes if that model's workers are gone."""
        found: dict[str, int] = {}
        for raw in cast(set[bytes], self.redis.smembers(PREFIX + "families")):
            ids = cast(list[bytes], self.redis.zrange(_waiting_key(raw.decode()), 0, limit - 1))
            with self.redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hmget(_job_key(_text(job_id)), ["queue", "model"])
                rows = pipe.execute()
            for queue, model in rows:
                if queue is not None and model is not None and _text(queue).startswith("dreamloom.model."):
                    found[_text(model)] = found.get(_text(model), 0) + 1
        return found

    def worker_warming(self, family: str, worker: str, warming: bool = True) -> None:
        """Announce a worker that is still loading its models (``warming``), or no longer."""
        key = _workers_key(family) + ":warming"
        if warming:
            self.redis.zadd(key, {worker: time.time()})
        else:
            self.redis.zrem(key, worker)

    def warming(self, family: str) -> int:
        """Workers of the family seen recently while warming up."""
        since = time.time() - WORKER_ALIVE_SECONDS
        return int(self.redis.zcount(_workers_key(family) + ":warming", since, "+inf"))

    def heartbeat_holder(self, job_id: str) -> str | None:
        """The token of the attempt that holds the job now (``machine|pid|nonce``), or None."""
        value = cast(bytes | None, self.redis.get(_heartbeat_key(job_id)))
        return None if value is None else value.decode()

    def counts(self) -> dict[str, int]:
        """How many jobs are in each status now (queued, held, running) or ended so (done, failed, cancelled)."""
        raw = cast(dict[bytes, bytes], self.redis.hgetall(COUNTS))
        counts = {status.value: 0 for status in JobStatus}
        counts.update({key.decode(): int(value) for key, value in raw.items()})
        return counts

    def families_waiting(self) -> dict[str, dict[str, int]]:
        """Jobs waiting in the queues: family -> {"fast": n, "relax": n} (relax jobs have priority 5 and up)."""
        result: dict[str, dict[str, int]] = {}
        for raw in cast(set[bytes], self.redis.smembers(PREFIX + "families")):
            family = raw.decode()
            key = _waiting_key(family)
            relax = int(self.redis.zcount(key, 5 * 10**13, "+inf"))
            result[family] = {"fast": int(self.redis.zcard(key)) - relax, "relax": relax}
        return result

    def record_duration(self, family: str, seconds: float) -> None:
        """Fold a finished job's seconds into the family's running average (0.8 old, 0.2 new)."""
        self._duration(keys=[PREFIX + f"stats:{family}"], args=[f"{seconds:.3f}"])

    def typical_duration(self, family: str) -> float | None:
        value = self.redis.hget(PREFIX + f"stats:{family}", "seconds")
        return None if value is None else float(value)


def _job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def _user_key(owner: str, what: str) -> str:
    return f"{PREFIX}user:{owner}:{what}"


def _waiting_key(family: str) -> str:
    return f"{PREFIX}waiting:{family}"


def _pairs(mapping: Mapping[str, str | bytes]) -> list[str | bytes]:
    """``{"a": 1, "b": 2}`` -> ``["a", 1, "b", 2]``: a hash's fields as a script's arguments."""
    return [item for pair in mapping.items() for item in pair]


def _heartbeat_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}:heartbeat"


def _workers_key(family: str) -> str:
    return f"{PREFIX}workers:{family}"


def _model_workers_key(model: str) -> str:
    return f"{PREFIX}model-workers:{model}"


def _valid_id(job_id: str) -> bool:
    return 0 < len(job_id) <= 64 and job_id.isalnum()


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
