"""An engine that renders nothing: prepared images at once, with real recipes. Torch-free.

For measuring the job system's own overhead (``dreamloom bench jobs``) and for tests about queues rather
than pictures. It has the methods of ``engine.generate.Engine`` that the worker calls.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
import time
from typing import Any

import numpy as np
from PIL import Image

from engine.callbacks import CancelCheck, ProgressCallback
from engine.errors import Cancelled
from engine.grid import compose_grid, separate
from engine.jobs import Action
from engine.plan import plan_generation
from engine.prompt import MAX_SEED, ImagineRequest
from engine.recipe import ModelRecord, Recipe
from engine.registry import Registry
from engine.results import GenerationResult, Timings

__all__ = ["NullEngine"]


class NullEngine:
    def __init__(self, registry: Registry, size: tuple[int, int] | None = None, steps: int = 1) -> None:
        self.registry = registry
        self.size = size
        self.steps = steps
        self.versions = {"dreamloom": "null-engine"}

    @classmethod
    def from_env(cls) -> NullEngine:
        return cls(Registry.from_env())

    def imagine(self, request: ImagineRequest, *, seed: int | None = None, **options: Any) -> GenerationResult:
        return self._grid(Action.IMAGINE, request, request.model, seed, **options)

    def reroll(self, recipe: Recipe, *, request: ImagineRequest | None = None, seed: int | None = None,
               **options: Any) -> GenerationResult:  # fmt: skip
        request = dataclasses.replace(request or recipe.request, seed=None)
        seed = secrets.randbelow(MAX_SEED + 1) if seed is None else seed
        return self._grid(Action.REROLL, request, recipe.model.alias, seed, **options)

    def separate(self, grid: Image.Image, recipe: Recipe, tile: int, *, parent: str | None = None) -> GenerationResult:
        return separate(grid, recipe, tile, parent, self.versions)

    def vary(self, image: Image.Image, recipe: Recipe, *, strong: bool = False, **options: Any) -> GenerationResult:
        action = Action.VARY_STRONG if strong else Action.VARY_SUBTLE
        request = options.pop("request", None) or recipe.request
        return self._grid(action, request, recipe.model.alias, options.pop("seed", None), size=image.size, **options)

    def upscale(
        self, image: Image.Image, recipe: Recipe, *, creative: bool = False, **options: Any
    ) -> GenerationResult:
        action = Action.UPSCALE_CREATIVE if creative else Action.UPSCALE_SUBTLE
        larger = image.resize((image.width * 2, image.height * 2))
        return self._single(action, recipe, larger, options)

    def zoom_out(self, image: Image.Image, recipe: Recipe, **options: Any) -> GenerationResult:
        options.pop("scale", None)
        options.pop("aspect", None)
        return self._grid(Action.ZOOM_OUT, recipe.request, recipe.model.alias, options.pop("seed", None),
                          size=image.size, **options)  # fmt: skip

    def pan(self, image: Image.Image, recipe: Recipe, direction: str, **options: Any) -> GenerationResult:
        return self._grid(Action.PAN, recipe.request, recipe.model.alias, options.pop("seed", None),
                          size=image.size, **options)  # fmt: skip

    def make_square(self, image: Image.Image, recipe: Recipe, **options: Any) -> GenerationResult:
        side = max(image.size)
        return self._grid(Action.MAKE_SQUARE, recipe.request, recipe.model.alias, options.pop("seed", None),
                          size=(side, side), **options)  # fmt: skip

    def _grid(
        self,
        action: Action,
        request: ImagineRequest,
        model: str | None,
        seed: int | None,
        *,
        size: tuple[int, int] | None = None,
        parent: str | None = None,
        parent_tile: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
        **_: Any,
    ) -> GenerationResult:
        started = time.perf_counter()
        entry = self.registry.resolve(model)
        plan = plan_generation(request, entry.profile, seed)
        self._steps(progress, cancel)
        width, height = size or self.size or (plan.width, plan.height)
        images = tuple(_prepared(s % 8, (width, height)).copy() for s in plan.image_seeds)
        recipe = Recipe(
            action=action,
            request=request,
            model=ModelRecord(alias=entry.alias, source=entry.source, family=entry.family, scheduler="none"),
            seed=plan.seed,
            image_seeds=plan.image_seeds,
            settings={"width": width, "height": height, "engine": "null"},
            parent=parent,
            parent_tile=parent_tile,
            versions=self.versions,
        )
        elapsed = time.perf_counter() - started
        return GenerationResult(images, compose_grid(images), recipe, Timings(total=elapsed))

    def _single(self, action: Action, recipe: Recipe, image: Image.Image, options: dict[str, Any]) -> GenerationResult:
        self._steps(options.get("progress"), options.get("cancel"))
        result_recipe = dataclasses.replace(
            recipe, action=action, parent=options.get("parent"), parent_tile=options.get("parent_tile")
        )
        return GenerationResult((image,), None, result_recipe, Timings())

    def _steps(self, progress: ProgressCallback | None, cancel: CancelCheck | None) -> None:
        for step in range(1, self.steps + 1):
            if cancel is not None and cancel():
                raise Cancelled(step, self.steps)
            if progress is not None:
                progress(step, self.steps, None)


@functools.cache
def _prepared(variant: int, size: tuple[int, int]) -> Image.Image:
    """A photo-like picture (smooth colour fields with fine grain), made once per variant and size, so that
    encoding and storing it costs what a rendered image costs."""
    rng = np.random.default_rng(variant)
    width, height = size
    fields = rng.integers(0, 256, (max(1, height // 16), max(1, width // 16), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(fields).resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.integers(-12, 13, (height, width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))
