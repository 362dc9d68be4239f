"""The job record: what a job is, who asked, where it stands. Stored as a Redis hash of strings."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from engine.actions import ACTIONS, FollowUpOptions, ResultKind, describe
from engine.jobs import Action, JobStatus
from engine.prompt import ImagineRequest

__all__ = ["FAST", "MODES", "RELAX", "Job", "new_job_id", "short_id"]

FAST, RELAX = "fast", "relax"
MODES = (FAST, RELAX)


def new_job_id() -> str:
    return uuid.uuid4().hex


def short_id(job_id: str) -> str:
    """The start of a job id that people type and read (the command line takes any unique start)."""
    return job_id[:8]


@dataclass(frozen=True)
class Job:
    """One job: an /imagine or a button's follow-up, with its status and where its artifacts are."""

    id: str
    action: Action
    owner: str
    request: ImagineRequest
    model: str  # registry alias
    family: str  # model family: selects the worker queue
    seed: int  # fixed at submission, so a redelivered job renders the same pixels
    status: JobStatus = JobStatus.QUEUED
    mode: str = FAST
    guild: str | None = None
    channel: str | None = None
    parent: str | None = None
    index: int | None = None  # 1-4: which image of the parent's grid it starts from
    params: dict[str, Any] = field(default_factory=dict)  # FollowUpOptions.to_params(): scale, aspect, direction
    work: int = 0  # pixels x steps x images: sizes time limits and ETAs
    attempts: int = 0
    progress: int = 0  # percent
    files: dict[str, str] = field(default_factory=dict)  # artifact name -> storage key
    size: tuple[int, int] | None = None  # of each image of the result, once done
    error: str | None = None
    message_id: str | None = None  # the Discord message that shows the job
    worker: str | None = None
    created_at: float = field(default_factory=time.time)
    queued_at: float | None = None
    sent_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.status.finished

    @property
    def image_count(self) -> int:
        return sum(1 for name in self.files if name.isdigit())

    @property
    def kind(self) -> ResultKind:
        """What the job makes: a grid of four images, or one image."""
        return ACTIONS[self.action].makes

    @property
    def options(self) -> FollowUpOptions:
        return FollowUpOptions.from_params(self.params)

    @property
    def label(self) -> str:
        """What its result says after the prompt: "Image #2", "Zoom Out 1.5x", "Variations (Strong)" ..."""
        return describe(self.action, self.index, self.options)

    def to_redis(self) -> dict[str, str]:
        data = asdict(self)
        data["request"] = self.request.to_dict()
        encoded = {}
        for key, value in data.items():
            if value is None:
                continue
            if key in _JSON_FIELDS:
                encoded[key] = json.dumps(value)
            else:
                encoded[key] = str(value.value if hasattr(value, "value") else value)
        return encoded

    @classmethod
    def from_redis(cls, raw: Mapping[bytes | str, bytes | str]) -> Job:
        data = {_text(k): _text(v) for k, v in raw.items()}
        if "tile" in data:  # records written before the image of a grid was called its index
            data.setdefault("index", data.pop("tile"))
        values: dict[str, Any] = {}
        for item in fields(cls):
            text = data.get(item.name)
            if text is None:
                continue
            if item.name in _JSON_FIELDS:
                values[item.name] = json.loads(text)
            elif item.name in _INT_FIELDS:
                values[item.name] = int(text)
            elif item.name in _FLOAT_FIELDS:
                values[item.name] = float(text)
            else:
                values[item.name] = text
        values["request"] = ImagineRequest.from_dict(values["request"])
        values["action"] = Action(values["action"])
        values["status"] = JobStatus(values["status"])
        if values.get("size") is not None:
            values["size"] = tuple(values["size"])
        return cls(**values)

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], files: Mapping[str, str]) -> Job:
        """A done job as its ``job.json`` tells it (``files``: artifact name -> storage key, ``job.json`` too):
        what readers use once its record has expired."""
        recipe = manifest["recipe"]
        settings = recipe.get("settings") or {}
        size = manifest.get("size")
        pixels = int(settings.get("width", 0)) * int(settings.get("height", 0))
        return cls(
            id=manifest["id"],
            action=Action(manifest["action"]),
            owner=manifest["owner"],
            request=ImagineRequest.from_dict(recipe["request"]),
            model=recipe["model"]["alias"],
            family=recipe["model"]["family"],
            seed=int(recipe["seed"]),
            status=JobStatus.DONE,
            mode=manifest.get("mode") or FAST,
            guild=manifest.get("guild"),
            channel=manifest.get("channel"),
            parent=manifest.get("parent"),
            index=manifest.get("parent_index"),
            params=dict(manifest.get("params") or {}),
            work=pixels * int(settings.get("steps", 0)) * max(1, len(recipe.get("image_seeds", ()))),
            progress=100,
            files=dict(files),
            size=(int(size[0]), int(size[1])) if size else None,
            created_at=float(manifest.get("created_at") or 0.0),
            finished_at=manifest.get("finished_at"),
        )

    def with_changes(self, **changes: Any) -> Job:
        return replace(self, **changes)


_JSON_FIELDS = {"request", "params", "files", "size"}
_INT_FIELDS = {"seed", "index", "work", "attempts", "progress"}
_FLOAT_FIELDS = {"created_at", "queued_at", "sent_at", "started_at", "finished_at"}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
