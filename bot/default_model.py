"""Which model a newcomer gets, and what the page and the CLI say about it.

- A model is configured (``DREAMLOOM_MODEL`` / ``DREAMLOOM_MODELS``): it is used, nothing is said.
- Nothing is configured and the registry's default is the built-in demo model (alias ``demo``): it is used,
  and the notice says it only knows simple coloured shapes and how to configure a real model.
- Nothing is configured and the registry is empty: a tiny random-weight pipeline is built once under
  ``<data dir>/models/placeholder`` (in a subprocess: this package never imports torch) and registered by
  ``<data dir>/models/placeholder.toml``, which the worker gets as ``DREAMLOOM_MODELS``; the notice says
  that it is a placeholder that draws noise and how to configure a real model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.registry import Registry

__all__ = ["DEMO_ALIAS", "PLACEHOLDER_ALIAS", "ModelNotice", "ModelSetup", "notice_for", "prepare_models"]

DEMO_ALIAS = "demo"
PLACEHOLDER_ALIAS = "placeholder"
HOW_TO_CONFIGURE = (
    "For real pictures, set DREAMLOOM_MODEL=stabilityai/sd-turbo (a hub id or a local diffusers folder; "
    "DREAMLOOM_MODELS=models.toml for several) and restart."
)
_BUILD = "import sys; from engine.tiny import save_tiny_pipeline; save_tiny_pipeline(sys.argv[1], 'sd15')"


@dataclass(frozen=True)
class ModelNotice:
    """A plain statement about the default model, shown above the playground and after CLI jobs."""

    kind: str  # "placeholder", "demo" or "none"
    title: str
    text: str

    def __str__(self) -> str:
        return f"{self.title}: {self.text}"

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "title": self.title, "text": self.text}


def notice_for(registry: Registry) -> ModelNotice | None:
    """What to tell people about ``registry``'s default model (None: a real model, nothing to say)."""
    if not registry.entries:
        return ModelNotice(
            "none",
            "No model configured",
            f"jobs cannot run until one is. {HOW_TO_CONFIGURE}",
        )
    default = registry.resolve(None).alias
    if default == PLACEHOLDER_ALIAS:
        return ModelNotice(
            "placeholder",
            "Placeholder model",
            "no model is configured, so dreamloom runs a tiny random-weight pipeline that draws noise, "
            f"just to show the whole flow. {HOW_TO_CONFIGURE}",
        )
    if default == DEMO_ALIAS:
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
    env: dict[str, str] = field(default_factory=dict)  # what a worker needs to serve ``registry``


def prepare_models(
    data_dir: Path, environ: Mapping[str, str] | None = None, say: Callable[[str], None] = print
) -> ModelSetup:
    """The registry to serve: the configured one, or the placeholder (built on first use)."""
    env = os.environ if environ is None else environ
    registry = Registry.from_env(env)
    if registry.entries:
        return ModelSetup(registry, notice_for(registry))
    models = data_dir.resolve() / "models"
    folder = models / PLACEHOLDER_ALIAS
    if not (folder / "model_index.json").is_file():
        say(f"building the placeholder model in {folder}: first run only, 10 s to a few minutes ...")
        _build(folder)
    registry_file = models / f"{PLACEHOLDER_ALIAS}.toml"
    registry_file.write_text(_placeholder_toml(folder))
    registry = Registry.from_toml(registry_file)
    return ModelSetup(registry, notice_for(registry), {"DREAMLOOM_MODELS": str(registry_file)})


def _build(folder: Path) -> None:
    """Build into a temporary folder and rename it into place, so an interrupted build leaves nothing."""
    partial = folder.with_name(f".{folder.name}-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(
            [sys.executable, "-c", _BUILD, str(partial)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"could not build the placeholder model (is torch installed?):\n{tail}")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _placeholder_toml(folder: Path) -> str:
    return (
        "# Written by dreamloom because no model is configured: a tiny random-weight pipeline that draws noise,\n"
        "# so that the whole flow runs. Set DREAMLOOM_MODEL or DREAMLOOM_MODELS to serve a real model.\n"
        f'default = "{PLACEHOLDER_ALIAS}"\n\n'
        f"[models.{PLACEHOLDER_ALIAS}]\n"
        f"source = {_toml_string(str(folder))}\n"
        'family = "sd15"\n'
        "native_size = [64, 64]\n"
        "size_multiple = 16\n"
        "steps = 4\n"
        'scheduler = "euler"\n'
        'description = "placeholder: a tiny random-weight pipeline that draws noise"\n'
    )


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
