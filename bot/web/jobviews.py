"""A job as the playground shows it: the message line, its status, its images and its buttons.

The buttons are the bot's, from the same table (``engine.actions.buttons``): under a grid U1-U4, 🔄 and
V1-V4; under a single image the upscales, the variations, the zooms, Make Square and the four pans, less
what cannot start from that image.
"""

from __future__ import annotations

from typing import Any

from engine.actions import ACTIONS, Button, ResultKind, buttons
from engine.jobs import JobStatus
from tasks.artifacts import MANIFEST, file_name
from tasks.client import QueueInfo
from tasks.records import Job, short_id

__all__ = ["button_view", "job_view"]


def button_view(button: Button) -> dict[str, Any]:
    """A button as the page draws it; the page sends ``action``, ``index``, ``scale`` and ``direction`` back
    to ``POST /api/jobs/{id}/actions`` when it is clicked (``ask``: a form first)."""
    view: dict[str, Any] = {
        "label": " ".join(part for part in (button.emoji, button.label) if part),
        "title": button.description or button.label,
        "action": button.action.value,
    }
    if button.index is not None:
        view["index"] = button.index
    if button.options.scale is not None:
        view["scale"] = button.options.scale
    if button.options.direction is not None:
        view["direction"] = button.options.direction.value
    if button.asks:
        view["ask"] = "zoom"
    return view


def job_view(job: Job, queue: QueueInfo | None = None) -> dict[str, Any]:
    """The JSON the page renders a job message (and a gallery card) from."""
    done = job.status is JobStatus.DONE
    grid = job.kind is ResultKind.GRID
    files = {name: f"/files/{job.id}/{file_name(name)}" for name in sorted(job.files) if name != MANIFEST}
    if done:
        files[MANIFEST] = f"/files/{job.id}/{file_name(MANIFEST)}"
    view: dict[str, Any] = {
        "id": job.id,
        "short": short_id(job.id),
        "action": job.action.value,
        "label": job.label,
        "prompt": job.request.to_prompt(),
        "owner": job.owner,
        "model": job.model,
        "seed": job.seed if ACTIONS[job.action].renders else None,  # a separated image keeps its grid's seeds
        "mode": job.mode,
        "status": job.status.value,
        "progress": job.progress,
        "error": job.error,
        "parent": job.parent,
        "index": job.index,
        "params": job.params,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "kind": job.kind.value,
        "files": files if done else {},
        "image": (files.get("grid") if grid else files.get("1")) if done else None,
        "buttons": [[button_view(b) for b in row] for row in buttons(job.kind, job.size)] if done else [],
    }
    if queue is not None:
        view["position"] = queue.position
        view["eta_seconds"] = queue.eta_seconds
    return view
