"""The playground's aiohttp application: the page, a JSON API over ``JobClient``, live events, the images.

    GET  /                          the page (static/index.html, app.js, style.css)
    GET  /api/info                  who you are, the models, the notice about a placeholder or demo model
    GET  /api/jobs?limit=50         your jobs, newest first (the channel's history and the gallery)
    GET  /api/jobs/{id}             one job, with its recipe, notes and lineage once it is done
    POST /api/imagine               {"prompt": "...", "mode": "fast"}: one job per prompt of {…} and --repeat
    POST /api/jobs/{id}/actions     {"action": "separate", "index": 1, ...}: a button
    POST /api/jobs/{id}/cancel
    GET  /api/events                server-sent events: every job event, as it happens
    GET  /files/{id}/{name}         grid.jpg, 1.webp-4.webp (lossless), preview.webp, job.json

Expected errors (``engine.errors.DreamloomError``) answer ``{"title": ..., "error": ...}`` with their own HTTP
status. The client is synchronous: every call to it runs in a thread; live events are read on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from bot.web.guard import AllowedHosts, add_security_headers, guard_middlewares
from bot.web.jobviews import job_view
from engine.actions import FollowUpOptions
from engine.errors import DreamloomError, Refusal, UnknownJob
from engine.jobs import Action, JobStatus, PanDirection
from engine.prompt import requests_of
from engine.registry import ModelNotice
from tasks.artifacts import ARTIFACT_NAMES, content_type, file_name
from tasks.client import JobClient
from tasks.events import AsyncEventBus, AsyncEventTail, JobEvent
from tasks.health import run_checks
from tasks.metrics import exposition, registry_for
from tasks.ops_server import health_response
from tasks.records import MODES, Job

__all__ = ["PLAYGROUND_CHANNEL", "Playground", "create_app"]

log = logging.getLogger(__name__)
T = TypeVar("T")

STATIC = Path(__file__).parent / "static"
PLAYGROUND_CHANNEL = "playground"
MAX_LISTED = 200
_FILES = {file_name(name): name for name in ARTIFACT_NAMES}
_HEARTBEAT_SECONDS = 15.0


class BadRequest(Refusal):
    """A request this API cannot read: the message names the field to fix."""

    title = "Bad request"


class Hub:
    """Fans live events out to every open page."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[dict[str, Any] | None]] = set()

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=1000)
        self.queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self.queues.discard(queue)

    def publish(self, message: dict[str, Any]) -> None:
        for queue in list(self.queues):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # a page that stopped reading: it reloads its jobs when it reconnects
                self.queues.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)

    def close(self) -> None:
        for queue in list(self.queues):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        self.queues.clear()


class Playground:
    def __init__(self, client: JobClient, user: str, notice: ModelNotice | None) -> None:
        self.client = client
        self.user = user
        self.notice = notice
        self.hub = Hub()
        self.stopping = False

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(function, *args, **kwargs)

    async def follow_events(self, _app: web.Application) -> AsyncIterator[None]:
        """Runs for the application's lifetime: the events stream, tailed on the event loop (its own asyncio
        Redis connection, closed when the application stops), into the hub."""
        async with AsyncRedis.from_url(self.client.settings.redis_url, client_name="dreamloom-web") as redis:
            task = asyncio.create_task(self._tail(AsyncEventBus(redis)))
            yield
            self.stopping = True
            self.hub.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close_streams(self, _app: web.Application) -> None:
        self.stopping = True
        self.hub.close()

    async def _tail(self, events_bus: AsyncEventBus) -> None:
        tail: AsyncEventTail | None = None
        while not self.stopping:
            try:
                if tail is None:
                    tail = await events_bus.tail()
                events = await tail.read(1000)
            except RedisError as exc:
                log.warning("playground: cannot read job events (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            for event in events:
                if event.owner == self.user:
                    self.hub.publish(_event_message(event))


PLAYGROUND = web.AppKey("playground", Playground)


def create_app(
    client: JobClient, *, user: str, notice: ModelNotice | None = None, allowed_hosts: AllowedHosts | None = None
) -> web.Application:
    """The playground over ``client``, submitting as ``user``. It answers only requests for ``allowed_hosts``
    (default: the loopback names), takes changes only from its own page, and is never framed (bot.web.guard)."""
    middlewares = [_errors, *guard_middlewares(allowed_hosts or AllowedHosts()), _json_posts_only]
    app = web.Application(middlewares=middlewares)
    app.on_response_prepare.append(add_security_headers)
    playground = Playground(client, user, notice)
    app[PLAYGROUND] = playground
    app.cleanup_ctx.append(playground.follow_events)
    app.on_shutdown.append(playground.close_streams)
    app.add_routes(
        [
            web.get("/", _index),
            web.get("/api/info", _info),
            web.get("/api/jobs", _jobs),
            web.get("/api/jobs/{job}", _job),
            web.post("/api/imagine", _imagine),
            web.post("/api/jobs/{job}/actions", _action),
            web.post("/api/jobs/{job}/cancel", _cancel),
            web.get("/api/events", _events),
            web.get("/files/{job}/{name}", _file),
            web.get("/metrics", _metrics),
            web.get("/healthz", _healthz),
            web.get("/livez", _livez),
            web.static("/static", STATIC),
        ]
    )
    return app


# --- middlewares ---------------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except DreamloomError as exc:
        return web.json_response(_error_body(exc), status=exc.http_status)


@web.middleware
async def _json_posts_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "POST" and request.content_type != "application/json":
        return _bad("Bad request", "send JSON (Content-Type: application/json)", 415)
    return await handler(request)


# --- handlers ------------------------------------------------------------------------------------------


async def _metrics(request: web.Request) -> web.StreamResponse:
    playground = request.app[PLAYGROUND]
    body = await playground.call(exposition, registry_for(playground.client.store))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.StreamResponse:
    playground = request.app[PLAYGROUND]
    status, body = health_response(await playground.call(run_checks, playground.client.settings))
    return web.Response(body=body, status=status, content_type="application/json")


async def _livez(_request: web.Request) -> web.StreamResponse:
    """For liveness probes: the process answers (a Redis outage must not get it restarted)."""
    return web.Response(text="ok\n")


async def _index(_request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def _info(request: web.Request) -> web.StreamResponse:
    playground = request.app[PLAYGROUND]
    registry = playground.client.registry
    default = registry.resolve(None).alias if registry.entries else None
    return web.json_response(
        {
            "user": playground.user,
            "models": registry.aliases,
            "default_model": default,
            "notice": playground.notice.to_dict() if playground.notice else None,
            "example": registry.example,  # a prompt that fits the served model
            # Where files are kept is the operator's business (paths, buckets, endpoints): only which kind.
            "storage": "local" if playground.client.storage.keeps_files_locally else "s3",
        }
    )


async def _jobs(request: web.Request) -> web.StreamResponse:
    playground = request.app[PLAYGROUND]
    try:
        limit = max(1, min(MAX_LISTED, int(request.query.get("limit", "50"))))
    except ValueError:
        raise BadRequest("limit must be a whole number") from None
    jobs = await playground.call(playground.client.jobs_of, playground.user, None, limit)
    return web.json_response({"jobs": [job_view(job) for job in jobs]})


async def _job(request: web.Request) -> web.StreamResponse:
    playground = request.app[PLAYGROUND]
    return web.json_response(await playground.call(_detail, playground.client, request.match_info["job"]))


def _detail(client: JobClient, job_id: str) -> dict[str, Any]:
    job = client.get(job_id)
    waiting = job.status in (JobStatus.QUEUED, JobStatus.HELD, JobStatus.RUNNING)
    view = job_view(job, client.queue_info(job.id) if waiting else None)
    if job.status is JobStatus.DONE:
        manifest = client.manifest(job.id)
        recipe = manifest.get("recipe", {})
        view["lineage"] = manifest.get("lineage", [])
        view["settings"] = recipe.get("settings", {})
        view["seed"] = recipe.get("seed", view["seed"])
        view["image_seeds"] = recipe.get("image_seeds", [])
        view["model_source"] = recipe.get("model", {}).get("source")
        view["notes"] = manifest.get("notes", [])
        view["timings"] = manifest.get("timings", {})
    return view


async def _imagine(request: web.Request) -> web.StreamResponse:
    playground = request.app[PLAYGROUND]
    body = await _body(request)
    prompt = body.get("prompt", "")
    if not isinstance(prompt, str):
        raise BadRequest("prompt must be a string")
    text = prompt.strip()
    mode = _mode(body)
    submitted: list[Job] = []
    try:
        for imagine in requests_of(text):  # every prompt is checked before the first is submitted
            submitted.append(
                await playground.call(
                    playground.client.submit, imagine, owner=playground.user, channel=PLAYGROUND_CHANNEL, mode=mode
                )
            )
    except DreamloomError as exc:
        if not submitted:
            raise
        body = {**_error_body(exc), "jobs": [job_view(job) for job in submitted]}
        return web.json_response(body, status=exc.http_status)
    return web.json_response({"jobs": [job_view(job) for job in submitted]})


async def _action(request: web.Request) -> web.StreamResponse:
    playground = request.app[PLAYGROUND]
    body = await _body(request)
    try:
        action = Action(str(body.get("action")))
        index = int(body["index"]) if body.get("index") is not None else None
        options = FollowUpOptions(
            scale=float(body["scale"]) if body.get("scale") is not None else None,
            aspect=_aspect(body.get("aspect")),
            direction=PanDirection(str(body["direction"])) if body.get("direction") is not None else None,
        )
    except (ValueError, TypeError, OverflowError):  # OverflowError: an index of 1e400 reads as infinity
        raise BadRequest("action, index, scale, aspect or direction is not valid") from None
    if action is Action.IMAGINE:
        raise BadRequest("use /api/imagine for a new prompt")
    mode = _mode(body)
    job = await playground.call(
        playground.client.follow_up,
        request.match_info["job"],
        action,
        owner=playground.user,
        index=index,
        channel=PLAYGROUND_CHANNEL,
        mode=mode,
        options=options,
    )
    return web.json_response({"job": job_view(job)})


async def _cancel(request: web.Request) -> web.StreamResponse:
    playground = request.app[PLAYGROUND]
    job = await playground.call(playground.client.cancel, request.match_info["job"], playground.user)
    return web.json_response({"job": job_view(job)})


async def _events(request: web.Request) -> web.StreamResponse:
    playground = request.app[PLAYGROUND]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    queue = playground.hub.subscribe()
    try:
        await response.write(b"retry: 1000\n: connected\n\n")
        while not playground.stopping:
            try:
                message = await asyncio.wait_for(queue.get(), _HEARTBEAT_SECONDS)
            except TimeoutError:
                await response.write(b": heartbeat\n\n")
                continue
            if message is None:
                break
            await response.write(f"data: {json.dumps(message)}\n\n".encode())
    except ConnectionResetError:
        pass
    finally:
        playground.hub.unsubscribe(queue)
    return response


async def _file(request: web.Request) -> web.StreamResponse:
    playground = request.app[PLAYGROUND]
    name = _FILES.get(request.match_info["name"])
    if name is None:
        raise web.HTTPNotFound(text=f"no such file: a job has {', '.join(_FILES)}")
    job_id = request.match_info["job"]
    try:
        data = await playground.call(playground.client.artifact, job_id, name)
    except UnknownJob:
        raise web.HTTPNotFound(text=f"unknown job {job_id}") from None
    return web.Response(
        body=data,
        content_type=content_type(name, data),
        headers={"Cache-Control": "private, max-age=31536000, immutable"},
    )


# --- helpers -------------------------------------------------------------------------------------------


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    except RecursionError:
        raise BadRequest("the body nests too deeply; send a flat JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _mode(body: dict[str, Any]) -> str:
    mode = str(body.get("mode", "fast"))
    if mode not in MODES:
        raise BadRequest(f"mode must be one of {', '.join(MODES)}")
    return mode


def _aspect(value: Any) -> tuple[int, int] | None:
    if value in (None, ""):
        return None
    width, height = (int(side) for side in str(value).split(":"))
    return width, height


def _error_body(exc: DreamloomError) -> dict[str, str]:
    return {"title": exc.title, "error": exc.public}


def _bad(title: str, message: str, status: int) -> web.Response:
    return web.json_response({"title": title, "error": message}, status=status)


def _event_message(event: JobEvent) -> dict[str, Any]:
    preview = None
    if event.preview:
        preview = "data:image/webp;base64," + base64.b64encode(event.preview).decode()
    return {
        "type": event.type.value,
        "job": event.job_id,
        "owner": event.owner,
        "percent": event.percent,
        "message": event.message,
        "preview": preview,
        "at": event.at,
    }
