"""A job as the playground shows it: the message line, its status, its images and its buttons.

The buttons are the bot's: under a grid U1-U4, 🔄 and V1-V4; under a single image the upscales, the
variations, the zooms, Make Square and the four pans. Each is ``{"label", "action", ...arguments}``, and the
page sends the arguments back to ``POST /api/jobs/{id}/actions`` when it is clicked.
"""

from __future__ import annotations

from typing import Any

from engine.jobs import GRID_ACTIONS, Action, JobStatus
from tasks.artifacts import MANIFEST, file_name
from tasks.client import QueueInfo
from tasks.records import Job

__all__ = ["GRID_BUTTONS", "SINGLE_BUTTONS", "action_label", "job_view", "short_id"]

Button = dict[str, Any]

GRID_BUTTONS: list[list[Button]] = [
    [*({"label": f"U{n}", "action": Action.SEPARATE.value, "tile": n} for n in range(1, 5)),
     {"label": "🔄", "action": Action.REROLL.value, "title": "Re-roll"}],
    [{"label": f"V{n}", "action": Action.VARY_STRONG.value, "tile": n} for n in range(1, 5)],
]  # fmt: skip

SINGLE_BUTTONS: list[list[Button]] = [
    [
        {"label": "Upscale (Subtle)", "action": Action.UPSCALE_SUBTLE.value},
        {"label": "Upscale (Creative)", "action": Action.UPSCALE_CREATIVE.value},
        {"label": "Vary (Subtle)", "action": Action.VARY_SUBTLE.value},
        {"label": "Vary (Strong)", "action": Action.VARY_STRONG.value},
    ],
    [
        {"label": "Zoom Out 2x", "action": Action.ZOOM_OUT.value, "scale": 2.0},
        {"label": "Zoom Out 1.5x", "action": Action.ZOOM_OUT.value, "scale": 1.5},
        {"label": "Custom Zoom", "action": Action.ZOOM_OUT.value, "ask": "scale"},
        {"label": "Make Square", "action": Action.MAKE_SQUARE.value},
    ],
    [
        {"label": "⬅️", "action": Action.PAN.value, "direction": "left", "title": "Pan left"},
        {"label": "➡️", "action": Action.PAN.value, "direction": "right", "title": "Pan right"},
        {"label": "⬆️", "action": Action.PAN.value, "direction": "up", "title": "Pan up"},
        {"label": "⬇️", "action": Action.PAN.value, "direction": "down", "title": "Pan down"},
    ],
]

_LABELS = {
    Action.VARY_SUBTLE: "Variations (Subtle)",
    Action.VARY_STRONG: "Variations (Strong)",
    Action.UPSCALE_SUBTLE: "Upscaled (Subtle)",
    Action.UPSCALE_CREATIVE: "Upscaled (Creative)",
    Action.ZOOM_OUT: "Zoom Out",
    Action.MAKE_SQUARE: "Make Square",
}


def short_id(job_id: str) -> str:
    return job_id[:8]


def action_label(job: Job) -> str:
    """What the message says after the prompt, as the bot does: "Image #2", "Variations (Strong)" ..."""
    if job.action is Action.SEPARATE:
        return f"Image #{job.tile}"
    if job.action is Action.PAN:
        return f"Pan {str(job.params.get('direction', '')).title()}".strip()
    if job.action is Action.ZOOM_OUT and job.params.get("scale"):
        return f"Zoom Out {float(job.params['scale']):g}x"
    return _LABELS.get(job.action, "")


def job_view(job: Job, queue: QueueInfo | None = None) -> dict[str, Any]:
    """The JSON the page renders a job message (and a gallery card) from."""
    done = job.status is JobStatus.DONE
    grid = job.action in GRID_ACTIONS
    files = {name: f"/files/{job.id}/{file_name(name)}" for name in sorted(job.files) if name != MANIFEST}
    if done:
        files[MANIFEST] = f"/files/{job.id}/{file_name(MANIFEST)}"
    view: dict[str, Any] = {
        "id": job.id,
        "short": short_id(job.id),
        "action": job.action.value,
        "label": action_label(job),
        "prompt": job.request.to_prompt(),
        "owner": job.owner,
        "model": job.model,
        "seed": None if job.action is Action.SEPARATE else job.seed,  # a tile keeps its grid image's seed
        "mode": job.mode,
        "status": job.status.value,
        "progress": job.progress,
        "error": job.error,
        "parent": job.parent,
        "tile": job.tile,
        "params": job.params,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "kind": "grid" if grid else "single",
        "files": files if done else {},
        "image": (files.get("grid") if grid else files.get("1")) if done else None,
        "buttons": (GRID_BUTTONS if grid else SINGLE_BUTTONS) if done else [],
    }
    if queue is not None:
        view["position"] = queue.position
        view["eta_seconds"] = queue.eta_seconds
    return view
