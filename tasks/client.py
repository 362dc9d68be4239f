"""The front ends' API to the job system: the bot, the CLI and the web playground use only this.

    client = JobClient.from_env()
    job = client.submit(parse("a lighthouse --ar 16:9"), owner="1234", channel="5678")
    for event in client.events.read("bot", "bot-1"): ...
    child = client.follow_up(job.id, Action.VARY_STRONG, owner="1234", index=2)

Torch-free. Submitting admits the job for its owner (queued, held behind their earlier jobs, or refused
when too many wait) and hands queued jobs to the workers of the model's family. What a follow-up may start
from, and what it records, is its entry in ``engine.actions.ACTIONS``. Separating an image of a grid needs
no GPU, so the client does it at once and the job is done when ``follow_up`` returns.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from redis import Redis

from engine.actions import ACTIONS, FollowUpOptions, check_follow_up
from engine.errors import InvalidFollowUp, NotAllowed, PromptError, QueueFull, StorageError, UnknownJob
from engine.grid import separate_image
from engine.jobs import Action, JobStatus
from engine.plan import GRID_SIZE, plan_generation
from engine.prompt import MAX_SEED, ImagineRequest, check_limits
from engine.recipe import Recipe
from engine.registry import Registry
from engine.safety import Blocklist
from tasks.artifacts import file_name, prepare, read_image, read_manifest, stored_job, upload
from tasks.celery_app import RENDER_TASK, make_celery
from tasks.events import EventBus, EventType, JobEvent
from tasks.file_storage import Storage, artifact_key, storage_from_settings
from tasks.job_store import JobStore
from tasks.records import FAST, MODES, Job, new_job_id
from tasks.routing import Dispatcher
from tasks.settings import Settings

__all__ = ["JobClient", "QueueInfo"]

log = logging.getLogger(__name__)

UNSENT_GRACE_SECONDS = 30.0  # an admitted job not in the broker after this long is sent again by recover()
SEPARATED_FIELD = "separated:{}"  # on a grid's record: the job that separated its image N (U1-U4 reuse it)
_CLAIM_WAIT_SECONDS = 1.0  # how long a U click waits for the record of a separation another click just claimed


@dataclass(frozen=True)
class QueueInfo:
    """Where a job stands, for "queued, position 4" and a rough ETA."""

    status: JobStatus
    position: int | None  # 1 = next to start; None when not waiting in the queue
    held_behind: int | None  # held jobs of the same owner ahead of this one
    eta_seconds: float | None  # until it starts (waiting) or finishes (running); None when unknown


class JobClient:
    def __init__(
        self,
        settings: Settings,
        *,
        redis: Redis | None = None,
        storage: Storage | None = None,
        registry: Registry | None = None,
        blocklist: Blocklist | None = None,
        celery: Any = None,
    ) -> None:
        self.settings = settings
        self.redis = redis or Redis.from_url(settings.redis_url)
        self.storage = storage or storage_from_settings(settings)
        # A record that has expired is read back from the job's stored job.json.
        self.store = JobStore(self.redis, settings.record_retention_seconds, archive=partial(stored_job, self.storage))
        self.events = EventBus(self.redis)
        self.registry = registry or Registry.from_env()
        self.blocklist = blocklist or Blocklist.from_env()
        self.dispatcher = Dispatcher(celery or make_celery(settings), self.store, settings, RENDER_TASK)

    @classmethod
    def from_env(cls) -> JobClient:
        return cls(Settings.from_env())

    def close(self) -> None:
        """Close the client's Redis connections (the broker's close with the process)."""
        self.redis.close()

    def __enter__(self) -> JobClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- new jobs ------------------------------------------------------------------------------------

    def submit(
        self,
        request: ImagineRequest,
        *,
        owner: str,
        guild: str | None = None,
        channel: str | None = None,
        mode: str = FAST,
        model: str | None = None,
    ) -> Job:
        """An /imagine. ``model`` is the owner's default model alias, used when the prompt has no --v/--niji.
        Raises ``PromptError`` (a prompt over the size limits, an unknown mode), ``QueueFull``, ``UnknownModel``
        or ``BannedPrompt`` (refusals: no job is made). Every front door submits here, so the limits of
        ``engine.prompt.check_limits`` hold for all of them."""
        check_limits(request)
        self.blocklist.check(request)
        entry = self.registry.resolve(request.model or model)
        entry.check_supported(request)  # e.g. --tile on a transformer model: refused before a job exists
        seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1)
        job = Job(
            id=new_job_id(),
            action=Action.IMAGINE,
            owner=owner,
            request=request,
            model=entry.alias,
            family=entry.family,
            seed=seed,
            mode=_mode(mode),
            guild=guild,
            channel=channel,
            work=plan_generation(request, entry.profile, seed).work,
        )
        return self._admit(job)

    def follow_up(
        self,
        parent_id: str,
        action: Action,
        *,
        owner: str,
        index: int | None = None,
        guild: str | None = None,
        channel: str | None = None,
        mode: str = FAST,
        request: ImagineRequest | None = None,
        options: FollowUpOptions | None = None,
    ) -> Job:
        """A button on a finished job. ``index`` (1-4) picks an image of a grid; ``request`` is a remixed
        prompt (variations and re-rolls); ``options`` carry Zoom Out's scale and aspect, Pan's direction.
        What cannot start from that result is refused (``InvalidFollowUp``) before any job exists.

        U1-U4 (separating image ``index``) happen once per image: a second click on the same image, by anyone,
        gets the job the first made. Every other click is admitted as /imagine is, and a member whose queue is
        full is refused (``QueueFull``) a new separation too."""
        options = options or FollowUpOptions()
        parent = self.store.get(parent_id)
        if parent.status is not JobStatus.DONE:
            state = "failed" if parent.status is JobStatus.FAILED else f"is {parent.status.value}"
            raise InvalidFollowUp(f"The job {state}; only a finished job's images can be used")
        check_follow_up(parent.kind, self._image_size(parent), action, index, options)
        if request is not None:
            check_limits(request)
            self.blocklist.check(request)
        spec = ACTIONS[action]
        new_request = spec.request_for(request or parent.request, options)
        if spec.renders:  # a parent admitted before the limits were lowered renders no more than they allow
            check_limits(new_request)
        entry = self.registry.resolve(new_request.model if request is not None and request.model else parent.model)
        if spec.renders:
            entry.check_supported(new_request)
        # A grid's images have seeds seed, seed+1 ...: a separated image keeps its own; other follow-ups draw one.
        seed = (parent.seed + (index or 1) - 1) % (MAX_SEED + 1) if not spec.renders else None
        job = Job(
            id=new_job_id(),
            action=action,
            owner=owner,
            request=new_request,
            model=entry.alias,
            family=entry.family,
            seed=secrets.randbelow(MAX_SEED + 1) if seed is None else seed,
            mode=_mode(mode),
            guild=guild,
            channel=channel,
            parent=parent.id,
            index=index,
            params=options.to_params(),
            work=_follow_up_work(parent, spec.work_factor, entry.profile.steps),
        )
        if not spec.renders:
            return self._separate(job)
        return self._admit(job)

    def cancel(self, job_id: str, by: str) -> Job:
        """Cancel a held, queued or running job of ``by``. A running job stops at its next step."""
        job = self.store.get(job_id)
        if job.owner != by:
            raise NotAllowed("Only the person who started a job can cancel it")
        if job.finished:
            raise InvalidFollowUp(f"This job is already {job.status.value}; there is nothing to cancel")
        if job.status is JobStatus.RUNNING:
            self.store.request_cancel(job.id)
            return self.store.get(job.id)
        event = JobEvent(EventType.CANCELLED, job.id, job.owner, job.channel, message="Cancelled")
        outcome = self.store.finish(
            job,
            JobStatus.CANCELLED,
            (JobStatus.HELD, JobStatus.QUEUED),
            self.settings.max_running_per_user,
            event=event.fields(),
        )
        self._send_released(outcome.released)
        if not outcome.won and outcome.previous == JobStatus.RUNNING.value:
            self.store.request_cancel(job.id)  # it started in between
        return self.store.get(job.id)

    # --- reading ---------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        return self.store.get(job_id)

    def jobs_of(self, owner: str, statuses: set[JobStatus] | None = None, limit: int = 50) -> list[Job]:
        jobs = self.store.jobs_of(owner, limit)
        return [job for job in jobs if statuses is None or job.status in statuses]

    def queue_info(self, job_id: str) -> QueueInfo:
        job = self.store.get(job_id)
        typical = self.store.typical_duration(job.family)
        workers = max(1, self.store.workers(job.family))
        if job.status is JobStatus.QUEUED:
            position = self.store.waiting_position(job)
            eta = None
            if position is not None and typical is not None:
                eta = math.ceil(position / workers) * typical
            return QueueInfo(job.status, position, None, eta)
        if job.status is JobStatus.HELD:
            held = self.store.held_jobs(job.owner)
            behind = held.index(job.id) if job.id in held else None
            waiting = self.store.waiting_count(job.family)
            eta = None if typical is None else math.ceil((waiting + (behind or 0) + 1) / workers) * typical
            return QueueInfo(job.status, None, behind, eta)
        if job.status is JobStatus.RUNNING and typical is not None and job.started_at is not None:
            return QueueInfo(job.status, None, None, max(0.0, typical - (time.time() - job.started_at)))
        return QueueInfo(job.status, None, None, None)

    def artifact(self, job_id: str, name: str) -> bytes:
        """The bytes of a job's artifact: "1"-"4", "grid", "preview" or "manifest"."""
        job = self.store.get(job_id)
        return self.storage.get(job.files.get(name) or artifact_key(job.id, file_name(name)))

    def artifact_url(self, job_id: str, name: str) -> str:
        job = self.store.get(job_id)
        key = job.files.get(name) or artifact_key(job.id, file_name(name))
        return self.storage.url(key, self.settings.url_expiry_seconds)

    def manifest(self, job_id: str) -> dict[str, Any]:
        return read_manifest(self.storage, self.store.get(job_id).id)

    def preview(self, job_id: str) -> bytes | None:
        return self.store.preview(job_id)

    # --- front-end bookkeeping ------------------------------------------------------------------------

    def set_message(self, job_id: str, message_id: str) -> None:
        """Remember the Discord message (or page element) that shows the job."""
        self.store.update(self.store.get(job_id).id, message_id=message_id)

    def get_mark(self, job_id: str, name: str) -> str | None:
        """A front end's note on a job, e.g. which Discord message shows its result."""
        return self.store.get_field(self.store.get(job_id).id, f"mark:{name}")

    def set_mark(self, job_id: str, name: str, value: str) -> None:
        self.store.update(self.store.get(job_id).id, **{f"mark:{name}": value})

    def claim_mark(self, job_id: str, name: str, value: str) -> bool:
        """Set a mark only if it is unset: True for exactly one caller (e.g. who posts a job's result)."""
        return self.store.claim_field(self.store.get(job_id).id, f"mark:{name}", value)

    def unmarked_results(self, name: str) -> list[tuple[str, str]]:
        """(job id, channel) of the done jobs still on record that have no mark ``name``, oldest first: the
        results a front end that starts has not shown yet (e.g. their events were set aside)."""
        return self.store.unmarked(0.0, name)

    def recover(self, older_than: float = UNSENT_GRACE_SECONDS) -> list[str]:
        """Send again admitted jobs that never reached the broker (their sender crashed); returns their ids.
        Safe to call from any process at any time: a job delivered twice runs once."""
        sent = []
        for job_id in self.store.unsent():
            try:
                job = self.store.get(job_id)
            except UnknownJob:
                continue
            if job.status is JobStatus.QUEUED and (job.queued_at or 0) < time.time() - older_than:
                self.dispatcher.send(job, 0)
                sent.append(job.id)
        return sent

    # --- internals -------------------------------------------------------------------------------------

    def _admit(self, job: Job) -> Job:
        admission = self.store.admit(job, self.settings.max_running_per_user, self.settings.max_queued_per_user)
        if admission.status == "full":
            raise _queue_full(admission.rank)
        if admission.status == "queued":
            self.dispatcher.send(self.store.get(job.id), admission.rank)
        return self.store.get(job.id)

    def _send_released(self, released: list[tuple[str, int]]) -> None:
        for job_id, rank in released:
            self.dispatcher.send(self.store.get(job_id), rank)

    def _image_size(self, parent: Job) -> tuple[int, int] | None:
        """The size of the images of a finished job: its record's, or for jobs finished before records kept
        it, its recipe's (None when the stored files are gone)."""
        if parent.size is not None:
            return parent.size
        try:
            settings = read_manifest(self.storage, parent.id)["recipe"]["settings"]
            return int(settings["width"]), int(settings["height"])
        except (StorageError, KeyError, TypeError, ValueError):
            return None

    def _separated(self, parent_id: str, index: int) -> Job | None:
        """The job that separated image ``index`` of ``parent_id`` already (None when none did, or it failed)."""
        job_id = self.store.get_field(parent_id, SEPARATED_FIELD.format(index))
        if job_id is None:
            return None
        deadline = time.monotonic() + _CLAIM_WAIT_SECONDS
        while True:  # a click that has just claimed the image writes its record a moment later
            try:
                job = self.store.get(job_id)
            except UnknownJob:
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.02)
                continue
            return None if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) else job

    def _separate(self, job: Job) -> Job:
        """U1-U4 on the spot: read the grid's stored image, store it as a job of its own, finish with its event.
        An image separated before is that job again; a new one needs room in the owner's queue."""
        parent_id, index = job.parent or "", job.index or 1
        existing = self._separated(parent_id, index)
        if existing is not None:
            return existing
        held = self.store.full(job.owner, self.settings.max_running_per_user, self.settings.max_queued_per_user)
        if held is not None:
            raise _queue_full(held)
        claim = SEPARATED_FIELD.format(index)
        if not self.store.claim_field(parent_id, claim, job.id):
            existing = self._separated(parent_id, index)
            if existing is not None:
                return existing
            self.store.update(parent_id, **{claim: job.id})  # the earlier one failed or is gone: this one replaces it
        self.store.create_running(job)
        try:
            parent_manifest = read_manifest(self.storage, parent_id)
            image = read_image(self.storage, parent_manifest, index)
            recipe = Recipe.from_dict(parent_manifest["recipe"])
            result = separate_image(image, recipe, index, job.parent, recipe.versions)
            lineage = [*parent_manifest.get("lineage", []), job.parent or ""]
            kept = parent_manifest.get("image_prompts", [])  # passed on, so a later re-roll reads them too
            files = upload(self.storage, job.id, prepare(job, result, lineage, image_prompts=kept))
        except (StorageError, KeyError) as exc:
            log.warning("job %s: could not separate image %s of %s: %r", job.id, job.index, job.parent, exc)
            reason = exc.public if isinstance(exc, StorageError) else "the parent's files are incomplete"
            event = JobEvent(EventType.FAILED, job.id, job.owner, job.channel, message=f"Job failed: {reason}")
            self.store.finish(job, JobStatus.FAILED, (JobStatus.RUNNING,), self.settings.max_running_per_user,
                              fields={"error": reason}, event=event.fields())  # fmt: skip
            return self.store.get(job.id)
        event = JobEvent(EventType.DONE, job.id, job.owner, job.channel, percent=100)
        self.store.finish(
            job,
            JobStatus.DONE,
            (JobStatus.RUNNING,),
            self.settings.max_running_per_user,
            fields={"files": json.dumps(files), "progress": "100", "size": json.dumps(list(image.size))},
            event=event.fields(),
        )
        return self.store.get(job.id)


def _queue_full(held: int) -> QueueFull:
    return QueueFull(f"Queue full: you already have {held} jobs waiting; wait for one to finish or cancel one")


def _mode(mode: str) -> str:
    if mode not in MODES:
        shown = mode if len(mode) <= 20 else mode[:19] + "…"
        raise PromptError("mode", f"mode must be one of {', '.join(MODES)} (got {shown!r})")
    return mode


def _follow_up_work(parent: Job, factor: int, steps: int) -> int:
    """A rough size of a follow-up's work (for time limits): its parent's pixels, times the steps and the
    action's own factor (an upscale makes four times the pixels)."""
    pixels = parent.work // max(1, steps * GRID_SIZE) if parent.work else 1024 * 1024
    return pixels * steps * GRID_SIZE * factor
