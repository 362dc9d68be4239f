"""Which model a newcomer gets, and what the page and the CLI say about it.

- A model is configured (``DREAMLOOM_MODEL`` / ``DREAMLOOM_MODELS``): it is used, nothing is said.
- Nothing is configured: the registry's default is the built-in demo model (alias ``demo``, shipped in
  ``engine/models/demo``, so there is nothing to download or build); the notice says that it only knows
  simple coloured shapes, and how to configure a real model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from engine.registry import Registry

__all__ = ["DEMO_ALIAS", "ModelNotice", "ModelSetup", "notice_for", "prepare_models"]

DEMO_ALIAS = "demo"
HOW_TO_CONFIGURE = (
    "For real pictures, set DREAMLOOM_MODEL=stabilityai/sd-turbo (a hub id or a local diffusers folder; "
    "DREAMLOOM_MODELS=models.toml for several) and restart."
)


@dataclass(frozen=True)
class ModelNotice:
    """A plain statement about the default model, shown above the playground and after CLI jobs."""

    kind: str  # "demo": a CSS class of the playground's notice
    title: str
    text: str

    def __str__(self) -> str:
        return f"{self.title}: {self.text}"

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "title": self.title, "text": self.text}


def notice_for(registry: Registry) -> ModelNotice | None:
    """What to tell people about ``registry``'s default model (None: a real model, nothing to say)."""
    if registry.entries and registry.resolve(None).alias == DEMO_ALIAS:
        return ModelNotice(
            "demo",
            "Built-in demo model",
            "a small model that only knows simple coloured shapes on backgrounds "
            f"(try “a red circle on a blue background”). {HOW_TO_CONFIGURE}",
        )
    return None


@dataclass(frozen=True)
class ModelSetup:
    registry: Registry
    notice: ModelNotice | None


def prepare_models(environ: Mapping[str, str] | None = None) -> ModelSetup:
    """The registry to serve (the configured one, else the built-in demo model) and what to say about it."""
    registry = Registry.from_env(os.environ if environ is None else environ)
    return ModelSetup(registry, notice_for(registry))
