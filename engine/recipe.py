"""What a result was made from, completely enough that a later job or a person can reproduce it.

Torch-free: recipes travel through job records and ``job.json`` as plain JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import PromptError
from engine.jobs import Action
from engine.prompt import ImagineRequest

__all__ = ["ModelRecord", "Recipe"]


@dataclass(frozen=True)
class ModelRecord:
    """The model a result came from, as loaded."""

    alias: str
    source: str
    family: str
    revision: str | None = None
    scheduler: str = "default"  # the scheduler class that ran, e.g. "EulerDiscreteScheduler"
    dtype: str = "float32"
    device: str = "cpu"


@dataclass(frozen=True)
class Recipe:
    """Everything a result was made from: the request, the model, the seeds, every setting, the lineage."""

    action: Action
    request: ImagineRequest
    model: ModelRecord
    seed: int
    image_seeds: tuple[int, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)  # what ran: size, steps, strength, method ...
    parent: str | None = None  # the job this one started from (an id the job system assigns)
    parent_index: int | None = None  # 1-4: which image of the parent's grid it started from
    versions: Mapping[str, str] = field(default_factory=dict)  # dreamloom, torch, diffusers, transformers

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "request": self.request.to_dict(),
            "prompt_text": self.request.to_prompt(),
            "model": vars(self.model).copy(),
            "seed": self.seed,
            "image_seeds": list(self.image_seeds),
            "settings": dict(self.settings),
            "parent": self.parent,
            "parent_index": self.parent_index,
            "versions": dict(self.versions),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        try:
            return cls(
                action=Action(data["action"]),
                request=ImagineRequest.from_dict(data["request"]),
                model=ModelRecord(**data["model"]),
                seed=int(data["seed"]),
                image_seeds=tuple(int(s) for s in data["image_seeds"]),
                settings=dict(data.get("settings", {})),
                parent=data.get("parent"),
                parent_index=data.get("parent_index", data.get("parent_tile")),  # (older recipes: parent_tile)
                versions=dict(data.get("versions", {})),
            )
        except (KeyError, TypeError, ValueError, PromptError) as exc:
            raise ValueError(f"Not a dreamloom recipe: {exc}") from exc
