"""The CLI's job commands: ``imagine``, the buttons as commands (``upscale``, ``vary`` ...), ``jobs``, ``cancel``.

Each goes through the same job system as the bot and the playground, found as every command finds it
(``bot.cli.connect``): a running ``dreamloom up``, the job system of REDIS_URL, or one started for the
command. A job is followed to its end with a progress bar; Ctrl-C cancels it. Exit status: 0 done, 1
failed, 2 a request that cannot run as written (a refusal: the message says why, and no job was made),
130 interrupted.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import unquote, urlparse

from bot.cli.connect import Connection, connect
from bot.cli.progress import ProgressBar
from bot.cli.settings import ServiceSettings
from engine.actions import ACTIONS, FollowUpOptions, ResultKind, check_follow_up
from engine.errors import DreamloomError, InvalidFollowUp, UnknownJob
from engine.jobs import Action, JobStatus
from engine.prompt import ImagineRequest, requests_of
from tasks.client import JobClient
from tasks.events import EventTail
from tasks.records import Job, short_id

__all__ = ["FollowUp", "cancel", "find_job", "follow_up", "imagine", "list_jobs"]

CLI_CHANNEL = "cli"
CANCEL_WAIT_SECONDS = 15.0  # a running job stops at its next step; a step takes well under this
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130
_ID_LENGTH = 32


@dataclass(frozen=True)
class FollowUp:
    """A button as a command: which action, on which image of a grid, with which settings. No action is
    ``upscale`` as the U buttons do it: U1-U4 on a grid, Upscale (Subtle) on a single image."""

    action: Action | None
    index: int | None = None
    options: FollowUpOptions = field(default_factory=FollowUpOptions)


def imagine(service: ServiceSettings, text: str, mode: str, out: TextIO = sys.stdout) -> int:
    requests = requests_of(text)
    return _with_connection(service, out, lambda connection: _imagine(connection, service, requests, mode, out))


def _imagine(
    connection: Connection, service: ServiceSettings, requests: list[ImagineRequest], mode: str, out: TextIO
) -> int:
    tail = connection.client.events.tail()
    jobs = [
        connection.client.submit(request, owner=service.user, channel=CLI_CHANNEL, mode=mode) for request in requests
    ]
    return _follow(connection, service, jobs, tail, out)


def follow_up(service: ServiceSettings, job: str, step: FollowUp, mode: str, out: TextIO = sys.stdout) -> int:
    return _with_connection(service, out, lambda connection: _follow_up(connection, service, job, step, mode, out),
                            needs_data=True)  # fmt: skip


def _follow_up(
    connection: Connection, service: ServiceSettings, job_text: str, step: FollowUp, mode: str, out: TextIO
) -> int:
    client = connection.client
    parent = find_job(client, job_text, service.user)
    tail = client.events.tail()
    where: dict[str, Any] = {"owner": service.user, "channel": CLI_CHANNEL, "mode": mode}
    is_grid = parent.kind is ResultKind.GRID
    action = step.action or (Action.SEPARATE if is_grid else Action.UPSCALE_SUBTLE)
    index = step.index
    if is_grid and ResultKind.GRID not in ACTIONS[action].starts_from:  # a single image's button: U1-U4 first
        if index is None:
            raise InvalidFollowUp(f"Job {short_id(parent.id)} is a grid: say which image (1-4)")
        check_follow_up(ResultKind.SINGLE, parent.size, action, None, step.options)  # refused before separating
        parent = client.follow_up(parent.id, Action.SEPARATE, index=index, **where)
        if parent.status is not JobStatus.DONE:
            return _report(connection, parent, out)
        index = None
    elif not is_grid and index is not None:
        raise InvalidFollowUp(f"Job {short_id(parent.id)} is a single image: leave out the image number")
    child = client.follow_up(parent.id, action, index=index, options=step.options, **where)
    return _follow(connection, service, [child], tail, out)


def list_jobs(service: ServiceSettings, limit: int, out: TextIO = sys.stdout) -> int:
    def show(connection: Connection) -> int:
        jobs = connection.client.jobs_of(service.user, limit=limit)
        if not jobs:
            out.write(f'No jobs yet for {service.user}: try dreamloom imagine "{connection.client.registry.example}"\n')
        for job in jobs:
            what = f" ({job.label})" if job.label else ""
            parent = f"  from {short_id(job.parent)}" if job.parent else ""
            out.write(f"{job.id}  {job.status.value:<9} {job.request.to_prompt()}{what}{parent}\n")
        return 0

    return _with_connection(service, out, show, worker=False, needs_data=True)


def cancel(service: ServiceSettings, job_text: str, out: TextIO = sys.stdout) -> int:
    """Cancel a job and say how it ended: a waiting job at once, a running one at its next step (waited for,
    up to ``CANCEL_WAIT_SECONDS``)."""

    def cancel_job(connection: Connection) -> int:
        client = connection.client
        job = find_job(client, job_text, service.user)
        tail = client.events.tail()
        job = client.cancel(job.id, by=service.user)
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        while not job.finished and time.monotonic() < deadline:
            tail.read(block_ms=500)
            job = client.get(job.id)
        if job.finished:
            out.write(f"job {job.id} {job.status.value}\n")
        else:
            out.write(f"job {job.id} is stopping: it ends at its next step\n")
        return 0

    return _with_connection(service, out, cancel_job, worker=False, needs_data=True)


def find_job(client: JobClient, text: str, owner: str) -> Job:
    """A job by its id, or by the start of the id of one of ``owner``'s jobs."""
    text = text.strip().lower()
    if len(text) == _ID_LENGTH:
        return client.get(text)
    matches = [job for job in client.jobs_of(owner, limit=500) if job.id.startswith(text)] if text else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise InvalidFollowUp(f"{text!r} starts {len(matches)} job ids; give more of the id")
    raise UnknownJob(text)


# --- following jobs ------------------------------------------------------------------------------------


def _follow(connection: Connection, service: ServiceSettings, jobs: list[Job], tail: EventTail, out: TextIO) -> int:
    client = connection.client
    bar = ProgressBar(out)
    for job in jobs:
        out.write(f"job {job.id}: {job.request.to_prompt()}{_label(job)}\n")
    if connection.notice is not None:
        out.write(f"note: {connection.notice}\n")
    out.flush()
    pending = [job.id for job in jobs if not job.finished]
    status = 0
    try:
        while pending:
            tail.read(block_ms=500)  # wakes up as soon as something happens
            for job_id in list(pending):
                job = client.get(job_id)
                if job.finished:
                    bar.done()
                    pending.remove(job_id)
                    status = max(status, _report(connection, job, out))
                elif job_id == pending[0]:
                    more = f" (+{len(pending) - 1} more)" if len(pending) > 1 else ""
                    bar.show(short_id(job.id), job.progress, _waiting(connection, job) + more)
            failure = connection.system.worker_failure() if connection.system else None
            if failure is not None:
                bar.done()
                out.write(f"dreamloom: {failure}\n")
                return EXIT_FAILED
    except KeyboardInterrupt:
        bar.done()
        for job_id in pending:
            with contextlib.suppress(DreamloomError):
                client.cancel(job_id, by=service.user)
        out.write(f"cancelled {len(pending)} job(s)\n")
        return EXIT_INTERRUPTED
    for job in jobs:
        if job.finished:  # done at once (U1-U4)
            status = max(status, _report(connection, job, out))
    return status


def _waiting(connection: Connection, job: Job) -> str:
    if job.status is JobStatus.RUNNING:
        return "running"
    if connection.system is not None and not connection.system.worker_ready():
        if connection.system.worker_warming():
            return "waiting for the worker to load its models"
        return "waiting for the worker to start"
    if job.status is JobStatus.QUEUED:
        position = connection.client.queue_info(job.id).position
        return f"queued, position {position}" if position else "queued"
    if job.status is JobStatus.HELD:
        return "waiting for your earlier jobs"
    return job.status.value


def _report(connection: Connection, job: Job, out: TextIO) -> int:
    if job.status is JobStatus.FAILED:
        out.write(f"job {job.id} failed: {job.error}\n")
        return EXIT_FAILED
    if job.status is not JobStatus.DONE:
        out.write(f"job {job.id} {job.status.value}\n")
        return EXIT_FAILED
    grid = job.kind is ResultKind.GRID
    where = _where(connection.client, job.id, "grid" if grid else "1")
    out.write(f"job {job.id} done{_label(job)}\n")
    out.write(f"  {'grid' if grid else 'image'}: {where}\n")
    if connection.web_url:
        out.write(f"  page: {connection.web_url}/#job-{job.id}\n")
    short = short_id(job.id)
    if grid:
        hints = [f"dreamloom upscale {short} 1", f"dreamloom vary {short} 2 --strong", f"dreamloom reroll {short}"]
    else:
        hints = [f"dreamloom upscale {short} --creative", f"dreamloom vary {short} --strong",
                 f"dreamloom zoom {short} --scale 1.5", f"dreamloom pan {short} left"]  # fmt: skip
    out.write(f"  next: {' | '.join(hints)}\n")
    out.flush()
    return 0


def _where(client: JobClient, job_id: str, name: str) -> str:
    """A local path for a file in the data folder, else the (presigned) URL."""
    url = client.artifact_url(job_id, name)
    parsed = urlparse(url)
    return unquote(parsed.path) if parsed.scheme == "file" else url


def _label(job: Job) -> str:
    return f" ({job.label})" if job.label else ""


# --- errors --------------------------------------------------------------------------------------------


def _with_connection(
    service: ServiceSettings,
    out: TextIO,
    work: Callable[[Connection], int],
    *,
    worker: bool = True,
    needs_data: bool = False,
) -> int:
    with connect(service, worker=worker, needs_data=needs_data) as connection:
        return work(connection)
