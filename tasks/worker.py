"""The worker side: the Celery task, and the JobRunner that renders, stores and finishes one job.

One worker process serves its queues with Celery's threads pool (``DREAMLOOM_WORKER_CONCURRENCY`` threads,
2 by default) and ONE engine, loaded and warmed before the first job (``tasks.warm_start``). Why threads and
a lock rather than a process per job: the GPU is the scarce part, and a second process would load every
model a second time into its memory. With one engine shared by threads, a render lock lets one job at a
time on the GPU while another thread encodes the previous job's images and uploads them, so the GPU does not
wait for the CPU (``dreamloom bench overlap`` measures it). Time limits are the worker's own
(``tasks.deadlines``): Celery's do not work in threads, and they counted model loading against the job.

A job runs to completion once:

1. a job that is already finished or cancelled is acknowledged and skipped (a redelivery);
2. a job whose ``job.json`` is already stored (a worker died after storing it) is finished from storage;
3. otherwise an attempt starts (its ``started`` event in the same step), holding the job with a heartbeat
   that a thread refreshes while it runs. A job another attempt still holds (its heartbeat is fresh and its
   process alive) is not rendered again: the delivery is retried later (``StillRunning``). A job whose
   renders keep killing its worker fails after ``max_attempts`` renders (``GivenUp``: renders, not
   deliveries, so the job beside it in an overlapping worker is not blamed);
4. the engine renders it under the render lock, with progress events and its deadline checked at every
   step; the artifacts are encoded (outside the lock) into the worker's spool folder, then go to storage
   (retried), and the job finishes with its event in one atomic step. If storing fails for good, the job
   fails with the reason and the files stay in the spool, where a redelivery picks them up. The message is
   acknowledged only after that (acks late), so a worker killed between render and upload loses nothing:
   after its restart the job is delivered again and finished from the spool.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import Celery
from PIL import Image
from redis import Redis
from redis.exceptions import RedisError

from engine.actions import ACTIONS, ResultKind, Work
from engine.contract import ImageEngine
from engine.errors import Cancelled, DreamloomError, StorageError, UnknownJob
from engine.grid import separate_image
from engine.jobs import Action, JobStatus
from engine.plan import image_prompts_used
from engine.recipe import Recipe
from engine.results import GenerationResult
from tasks.artifacts import MANIFEST, encode_preview, file_name, prepare, read_image, read_manifest, upload
from tasks.celery_app import PING_TASK, RENDER_TASK, make_celery
from tasks.deadlines import Deadline, OverTime, Watchdog
from tasks.events import EventType, JobEvent
from tasks.fetch import ImagePrompts, KeptImage, kept_images, policy_from_settings
from tasks.file_storage import Storage, artifact_key, storage_from_settings
from tasks.job_store import JobStore, StillRunning
from tasks.logs import job_context
from tasks.metrics import FINISHED, STAGE_SECONDS, record_gpu_memory, record_model_loads
from tasks.records import Job
from tasks.routing import Dispatcher, time_limits
from tasks.settings import Settings

__all__ = ["GivenUp", "JobRunner", "Spool", "WorkerRuntime", "create_worker_app", "process_gone"]

log = logging.getLogger(__name__)


def create_worker_app(
    settings: Settings | None = None, engine_factory: Callable[[], ImageEngine] | None = None
) -> Celery:
    """The Celery app a worker runs: the shared configuration plus the render task."""
    settings = settings or Settings.from_env()
    app = make_celery(settings)
    runtime = WorkerRuntime(settings, app, engine_factory)

    @app.task(name=RENDER_TASK, bind=True, shared=False)  # type: ignore[untyped-decorator]
    def render(task: Any, job_id: str) -> None:
        try:
            runtime.runner().run(job_id, worker=task.request.hostname or socket.gethostname())
        except StillRunning as busy:  # a second delivery while another worker renders it: look again later
            log.info("%s; trying again in %.0fs", busy, busy.retry_in + 1)
            raise task.retry(countdown=busy.retry_in + 1, max_retries=None) from None

    @app.task(name=PING_TASK, shared=False)  # type: ignore[untyped-decorator]
    def ping(reply_to: str) -> None:
        """Answer on the Redis list ``reply_to``: the broker's round trip with no work in it."""
        runtime.runner().store.redis.rpush(reply_to, "pong")

    app.dreamloom_runtime = runtime
    return app


class WorkerRuntime:
    """What a worker process keeps between jobs: connections, the engine (built once; a worker builds and
    warms it before it consumes, ``tasks.warm_start``), the render lock its threads share and the watchdog of
    stuck renders. Built again in a forked child, which must not use its parent's connections or CUDA."""

    def __init__(
        self, settings: Settings, app: Celery, engine_factory: Callable[[], ImageEngine] | None = None
    ) -> None:
        self.settings = settings
        self.app = app
        self.engine_factory = engine_factory or _import(settings.engine_factory)
        self._pid: int | None = None
        self._runner: JobRunner | None = None
        self._engine: ImageEngine | None = None
        self._engine_lock = threading.Lock()
        self.render_lock = threading.Lock()  # one job at a time on the GPU
        self.watchdog = Watchdog()

    def runner(self) -> JobRunner:
        if self._runner is None or self._pid != os.getpid():
            redis = Redis.from_url(self.settings.redis_url)
            store = JobStore(redis, self.settings.record_retention_seconds)
            self._runner = JobRunner(
                settings=self.settings,
                store=store,
                storage=storage_from_settings(self.settings),
                dispatcher=Dispatcher(self.app, store, self.settings, RENDER_TASK),
                engine=self.engine,
                render_lock=self.render_lock,
                watchdog=self.watchdog,
            )
            self._pid = os.getpid()
        return self._runner

    def engine(self) -> ImageEngine:
        with self._engine_lock:  # two threads asking at once build one engine
            if self._engine is None:
                started = time.perf_counter()
                self._engine = self.engine_factory()
                log.info("engine ready in %.2fs (pid %d)", time.perf_counter() - started, os.getpid())
            return self._engine


class Spool:
    """A job's prepared artifacts on the worker's own disk, kept until storage has them."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, job_id: str, artifacts: dict[str, bytes]) -> Path:
        folder = self.root / job_id
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in artifacts.items():
            (folder / file_name(name)).write_bytes(data)
        (folder / "names.json").write_text(json.dumps(sorted(artifacts)))  # written last: the spool is complete
        return folder

    def load(self, job_id: str) -> dict[str, bytes] | None:
        folder = self.root / job_id
        try:
            names = json.loads((folder / "names.json").read_text())
            return {name: (folder / file_name(name)).read_bytes() for name in names}
        except (OSError, ValueError):
            return None

    def discard(self, job_id: str) -> None:
        shutil.rmtree(self.root / job_id, ignore_errors=True)


class GivenUp(DreamloomError):
    """A job whose renders keep ending their worker (a driver fault, memory): given up after ``max_attempts``.

    Counted in renders that never ended, not in deliveries: with overlap a job is also cut down when the job
    beside it kills the worker while it waits for the GPU or encodes and stores its files, and that must not
    count against it. Deliveries
    are still capped (``DELIVERIES_PER_RENDER`` times as many), for a job that ends its worker before it
    reaches the GPU."""

    def __init__(self, times: int) -> None:
        super().__init__(f"The job stopped its worker {times} times and was given up; it may be too large for this "
                         "server, try a smaller size or fewer steps")  # fmt: skip


DELIVERIES_PER_RENDER = 2


class JobRunner:
    """Runs one job from its record to its final status and event."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: JobStore,
        storage: Storage,
        dispatcher: Dispatcher,
        engine: Callable[[], ImageEngine],
        render_lock: threading.Lock | None = None,
        watchdog: Watchdog | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage
        self.dispatcher = dispatcher
        self.engine = engine
        self.render_lock = render_lock or threading.Lock()
        self._delivery_cap = DELIVERIES_PER_RENDER * settings.max_attempts
        self.watchdog = watchdog or Watchdog()
        self.spool = Spool(settings.spool_dir)
        self.image_prompts = ImagePrompts(storage, policy_from_settings(settings), settings.image_max_pixels)

    def run(self, job_id: str, worker: str) -> None:
        """Run the job to its end; raises ``StillRunning`` when another attempt holds it now."""
        heartbeat = Heartbeat(self.store, job_id, self.settings.heartbeat_seconds)
        with job_context(job_id), heartbeat:
            self._run(job_id, worker, heartbeat)

    def _run(self, job_id: str, worker: str, heartbeat: Heartbeat) -> None:
        try:
            job = self.store.get(job_id)
        except UnknownJob:
            log.warning("job %s: no record; acknowledged without running", job_id)
            return
        if job.finished or job.status is JobStatus.HELD:
            log.info("job %s: already %s; acknowledged without running", job.id, job.status.value)
            return
        # Only a job that was attempted before can have stored its result already (saves a round trip).
        try:
            if job.attempts > 0 and self.storage.exists(artifact_key(job.id, file_name(MANIFEST))):
                log.info("job %s: its result is already stored; finishing it without rendering again", job.id)
                stored_manifest = read_manifest(self.storage, job.id)
                self._finish_done(job, _files_of(stored_manifest), stored_manifest)
                return
        except StorageError as exc:
            log.warning("job %s: cannot look for its stored result: %s", job.id, exc)
            self._fail(job, exc.public)
            return
        started_event = JobEvent(EventType.STARTED, job.id, job.owner, job.channel, percent=0)
        attempts = self._begin(job, worker, started_event, heartbeat)
        if attempts == 0:
            log.info("job %s: cancelled or finished before it started", job.id)
            return
        if attempts > self._delivery_cap:
            self._fail(job, str(GivenUp(attempts - 1)))
            return
        log.info("attempt %d on %s (%s, %s)", attempts, worker, job.action.value, job.model)
        if attempts == 1 and job.queued_at is not None:
            STAGE_SECONDS.labels(stage="wait").observe(max(0.0, time.time() - job.queued_at))
        started = time.monotonic()
        try:
            artifacts = self.spool.load(job.id)  # a previous attempt rendered it but could not store it
            if artifacts is None:
                artifacts = self._render(job)
                if not self.storage.keeps_files_locally:  # a local folder is this disk already
                    self.spool.save(job.id, artifacts)
                STAGE_SECONDS.labels(stage="render").observe(time.monotonic() - started)
        except Cancelled:
            self._finish(job, JobStatus.CANCELLED, EventType.CANCELLED, "Cancelled")
            return
        except DreamloomError as exc:
            if exc.public != str(exc):  # the details (paths, hosts) are for the operator only
                log.warning("job %s: %s: %s", job.id, type(exc).__name__, exc)
            self._fail(job, exc.public)
            return
        except OverTime as exc:
            log.info("job %s: %s", job.id, exc)
            self._fail(job, f"The job took longer than its time limit; {ACTIONS[job.action].too_slow}")
            return
        except Exception as exc:
            log.exception("job %s: unexpected error", job.id)
            self._fail(job, f"Internal error ({type(exc).__name__}); the server log has the details")
            return
        stored = time.monotonic()
        try:
            files = upload(self.storage, job.id, artifacts)
        except StorageError as exc:
            log.error("job %s: could not store its images (%s); they are kept on %s in %s", job.id, exc, worker,
                      self.settings.spool_dir / job.id)  # fmt: skip
            self._fail(job, "The images were made but the image store could not take them; the worker keeps them "
                            "for the server's operator. Try again in a moment")  # fmt: skip
            return
        STAGE_SECONDS.labels(stage="store").observe(time.monotonic() - stored)
        if self._finish_done(job, files, json.loads(artifacts[MANIFEST])):
            self.store.record_duration(job.family, time.monotonic() - started)
        self.spool.discard(job.id)

    def _begin(self, job: Job, worker: str, started: JobEvent, heartbeat: Heartbeat) -> int:
        """Start an attempt held by ``heartbeat``; a holder whose process is gone is taken over at once."""
        hold = (heartbeat.token, heartbeat.seconds)
        try:
            attempts, _ = self.store.begin(job, worker, self._delivery_cap, started.fields(), hold)
        except StillRunning as busy:
            if not process_gone(busy.holder):
                raise
            log.info("job %s: its last attempt's process is gone; taking it over", job.id)
            attempts, _ = self.store.begin(job, worker, self._delivery_cap, started.fields(), hold,
                                           take_over=busy.holder)  # fmt: skip
        if attempts > 0:
            heartbeat.start()
        return attempts

    # --- rendering --------------------------------------------------------------------------------------

    def _render(self, job: Job) -> dict[str, bytes]:
        reporter = _Progress(self, job)
        result, kept = self._execute(job, reporter)
        record_model_loads(self.engine().load_times())
        self.store.record_load_times(self.engine().load_times())  # for the limits of jobs that may load it
        record_gpu_memory()
        lineage = self._lineage(job)
        return prepare(job, result, lineage, reporter.last_preview, [image.to_dict() for image in kept])

    def _execute(self, job: Job, reporter: _Progress) -> tuple[GenerationResult, list[KeptImage]]:
        """Gather what the job's engine call needs, then make that call as its entry in the table of actions
        says: a prompt's image prompts (kept copies, or downloaded and kept), or the image a follow-up starts
        from, with its recipe. Also returns the kept image prompts its ``job.json`` lists."""
        spec = ACTIONS[job.action]
        work = Work(
            request=job.request,
            seed=job.seed,
            progress=reporter,
            cancel=lambda: self.store.cancel_requested(job.id),
            parent=job.parent,
            index=job.index,
            options=job.options,
        )
        parent_manifest = read_manifest(self.storage, job.parent) if job.parent is not None else None
        carried = {kept.url: kept for kept in kept_images(parent_manifest)}
        kept = [carried[url] for url in job.request.image_urls if url in carried]  # passed on, for later jobs
        if spec.from_prompt and image_prompts_used(job.request):  # else they are not downloaded at all
            images, kept = self.image_prompts.gather(job.id, job.request.image_urls, kept, again=job.attempts > 0)
            work = dataclasses.replace(work, image_prompts=images)
        if parent_manifest is not None:
            recipe = Recipe.from_dict(parent_manifest["recipe"])
            if spec.from_prompt:
                work = dataclasses.replace(work, recipe=recipe)
            else:
                image, recipe = self._source_image(job, parent_manifest, recipe)
                work = dataclasses.replace(work, image=image, recipe=recipe)
        engine = self.engine()
        soft, hard = time_limits(job.work, self.settings)
        with self.render_lock:  # the clock starts when the job has the GPU, not while it waits for it
            died = self.store.render_begins(job.id)
            if died >= self.settings.max_attempts:  # its earlier renders ended their worker
                raise GivenUp(died)
            # an engine that loads nothing may leave load_times out (the tests' minimal engines do)
            deadline = Deadline(soft, hard, getattr(engine, "load_times", dict))
            asked_to_cancel = work.cancel
            work = dataclasses.replace(work, cancel=lambda: _checked(deadline, asked_to_cancel))
            try:
                with self.watchdog.watch(job.id, deadline):
                    return spec.run(engine, work), kept
            finally:
                self.store.render_ended(job.id)

    def _source_image(self, job: Job, parent_manifest: dict[str, Any], recipe: Recipe) -> tuple[Image.Image, Recipe]:
        """The image a follow-up starts from: image N of the parent's grid (stored losslessly on its own), or the
        parent's single image."""
        if ACTIONS[Action(parent_manifest["action"])].makes is ResultKind.GRID:
            index = job.index or 1
            image = read_image(self.storage, parent_manifest, index)
            separated = separate_image(image, recipe, index, job.parent, recipe.versions)
            return separated.images[0], separated.recipe
        return read_image(self.storage, parent_manifest, 1), recipe

    def _lineage(self, job: Job) -> list[str]:
        if not job.parent:
            return []
        return [*read_manifest(self.storage, job.parent).get("lineage", []), job.parent]

    # --- finishing --------------------------------------------------------------------------------------

    def _finish_done(self, job: Job, files: dict[str, str], manifest: dict[str, Any]) -> bool:
        """Done: where its files are, and the size of its images (from its ``job.json``)."""
        fields = {"files": json.dumps(files), "progress": "100"}
        if manifest.get("size"):
            fields["size"] = json.dumps(manifest["size"])
        event = JobEvent(EventType.DONE, job.id, job.owner, job.channel, percent=100)
        return self._finish(job, JobStatus.DONE, EventType.DONE, None, fields, event)

    def _fail(self, job: Job, reason: str) -> None:
        log.warning("job %s failed: %s", job.id, reason)
        self._finish(job, JobStatus.FAILED, EventType.FAILED, reason, {"error": reason})

    def _finish(
        self,
        job: Job,
        status: JobStatus,
        kind: EventType,
        message: str | None,
        fields: dict[str, str] | None = None,
        event: JobEvent | None = None,
    ) -> bool:
        event = event or JobEvent(kind, job.id, job.owner, job.channel, message=message)
        outcome = self.store.finish(
            job,
            status,
            (JobStatus.RUNNING, JobStatus.QUEUED),
            self.settings.max_running_per_user,
            fields=fields,
            event=event.fields(),
        )
        if outcome.won:
            FINISHED.labels(status=status.value).inc()
        else:
            log.info("job %s: already %s, not marked %s again", job.id, outcome.previous, status.value)
        for released, rank in outcome.released:
            self.dispatcher.send(self.store.get(released), rank)
        return outcome.won


class Heartbeat:
    """An attempt's hold on its job: a thread refreshes the job's heartbeat key every third of its lifetime
    while the attempt runs; the key goes when the attempt ends (or lapses when its process dies)."""

    def __init__(self, store: JobStore, job_id: str, seconds: float) -> None:
        self.store = store
        self.job_id = job_id
        self.seconds = max(0.1, seconds)
        self.token = f"{_THIS_MACHINE or '?'}|{os.getpid()}|{uuid.uuid4().hex[:12]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name=f"dreamloom-heartbeat-{self.job_id[:8]}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                if not self.store.beat(self.job_id, self.token, self.seconds):
                    log.warning("job %s: its heartbeat lapsed and another attempt took it over", self.job_id)
                    return
            except RedisError as exc:  # Redis away for a moment: beat again at the next turn
                log.warning("job %s: could not refresh its heartbeat (%s)", self.job_id, exc)

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(self, *_: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            try:
                self.store.end_heartbeat(self.job_id, self.token)
            except RedisError as exc:  # it lapses by itself; never hide how the attempt ended
                log.warning("job %s: could not end its heartbeat (%s)", self.job_id, exc)


def _machine() -> str | None:
    """This machine and process namespace (host name, boot, pid namespace): where a process id means the
    same process; None where that cannot be told (no /proc)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{socket.gethostname()}/{boot}/{namespace}"


_THIS_MACHINE = _machine()


def process_gone(holder: str) -> bool:
    """True when a heartbeat's holder is a process of this machine that has ended (killed mid-job): its
    job need not wait for the heartbeat to lapse."""
    machine, _, rest = holder.partition("|")
    pid, _, _ = rest.partition("|")
    if _THIS_MACHINE is None or machine != _THIS_MACHINE or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists (another user's)
    return False


class _Progress:
    """The engine's progress callback: throttled progress events with the latest preview."""

    def __init__(self, runner: JobRunner, job: Job) -> None:
        self.runner = runner
        self.job = job
        self.last_sent = 0.0
        self.last_preview: bytes | None = None
        self.pending_preview = False

    def __call__(self, step: int, total: int, preview: Image.Image | None) -> None:
        if preview is not None:
            self.last_preview = encode_preview(preview)
            self.pending_preview = True
        now = time.monotonic()
        if now - self.last_sent < self.runner.settings.progress_interval and step < total:
            return
        self.last_sent = now
        percent = min(99, int(step * 100 / max(1, total)))  # 100 % is the done event
        preview_bytes = self.last_preview if self.pending_preview else None
        self.pending_preview = False
        event = JobEvent(EventType.PROGRESS, self.job.id, self.job.owner, self.job.channel, percent, preview_bytes)
        self.runner.store.set_progress(self.job.id, percent, preview_bytes, event.fields())


def _checked(deadline: Deadline, cancel: Callable[[], bool] | None) -> bool:
    """The engine's per-step cancel check, which also keeps the job's deadline (raises ``OverTime``)."""
    deadline.check()
    return cancel is not None and cancel()


def _files_of(manifest: dict[str, Any]) -> dict[str, str]:
    files: dict[str, str] = dict(manifest.get("files", {}))
    files[MANIFEST] = artifact_key(manifest["id"], file_name(MANIFEST))
    return files


def _import(path: str) -> Callable[[], ImageEngine]:
    """``"package.module:attribute.attribute"`` -> the object (an engine factory)."""
    module_name, _, attributes = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for attribute in filter(None, attributes.split(".")):
            target = getattr(target, attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"DREAMLOOM_ENGINE_FACTORY={path!r} does not name an importable callable: {exc}") from exc
    if not callable(target):
        raise ValueError(f"DREAMLOOM_ENGINE_FACTORY={path!r} is not callable")
    factory: Callable[[], ImageEngine] = target
    return factory
