"""The job vocabulary shared by every layer: what a job does (``Action``) and where it stands (``JobStatus``).

Torch-free. Button ids, job records, recipes and the engine's methods all speak these names; what each
action starts from, makes and shows is its entry in ``engine.actions.ACTIONS``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Action", "JobStatus", "PanDirection"]


class Action(StrEnum):
    IMAGINE = "imagine"
    REROLL = "reroll"  # 🔄: the same request with a new seed
    SEPARATE = "separate"  # U1-U4: one image of a grid at full size, no GPU work
    VARY_SUBTLE = "vary_subtle"
    VARY_STRONG = "vary_strong"
    UPSCALE_SUBTLE = "upscale_subtle"
    UPSCALE_CREATIVE = "upscale_creative"
    ZOOM_OUT = "zoom_out"
    PAN = "pan"
    MAKE_SQUARE = "make_square"


class PanDirection(StrEnum):
    LEFT = "left"
    RIGHT = "right"
    UP = "up"
    DOWN = "down"


class JobStatus(StrEnum):
    QUEUED = "queued"
    HELD = "held"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)
