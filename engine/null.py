"""An engine that renders nothing: prepared images at once, with real recipes. Torch-free.

For measuring the job system's own overhead (``dreamloom bench jobs``) and for tests about queues rather
than pictures. It is an ``engine.contract.ImageEngine``, like the real engine; tests that want pictures a
person can tell apart override ``picture`` (and ``steps`` for live progress).
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
import time
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from engine.callbacks import CancelCheck, ProgressCallback
from engine.canvas import square_size, upscaled_size
from engine.errors import Cancelled
from engine.grid import compose_grid, separate
from engine.jobs import Action, PanDirection
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
        self.step_count = steps
        self.versions = {"dreamloom": "null-engine"}

    @classmethod
    def from_env(cls) -> NullEngine:
        return cls(Registry.from_env())

    def load_times(self) -> Mapping[str, float]:
        return {}

    # --- what a worker calls (engine.contract.ImageEngine) -------------------------------------------------

    def imagine(
        self,
        request: ImagineRequest,
        *,
        seed: int | None = None,
        image_prompts: Sequence[Image.Image] | None = None,
        parent: str | None = None,
        parent_index: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> GenerationResult:
        return self._grid(Action.IMAGINE, request, request.model, seed, None, parent, parent_index, progress, cancel)

    def reroll(
        self,
        recipe: Recipe,
        *,
        request: ImagineRequest | None = None,
        seed: int | None = None,
        image_prompts: Sequence[Image.Image] | None = None,
        parent: str | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> GenerationResult:
        request = dataclasses.replace(request or recipe.request, seed=None)
        seed = secrets.randbelow(MAX_SEED + 1) if seed is None else seed
        return self._grid(Action.REROLL, request, recipe.model.alias, seed, None, parent, None, progress, cancel)

    def separate(self, grid: Image.Image, recipe: Recipe, index: int, *, parent: str | None = None) -> GenerationResult:
        return separate(grid, recipe, index, parent, self.versions)

    def vary(
        self,
        image: Image.Image,
        recipe: Recipe,
        *,
        strong: bool = False,
        request: ImagineRequest | None = None,
        seed: int | None = None,
        parent: str | None = None,
        parent_index: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> GenerationResult:
        action = Action.VARY_STRONG if strong else Action.VARY_SUBTLE
        return self._grid(action, request or recipe.request, recipe.model.alias, seed, image.size, parent,
                          parent_index, progress, cancel)  # fmt: skip

    def upscale(
        self,
        image: Image.Image,
        recipe: Recipe,
        *,
        creative: bool = False,
        seed: int | None = None,
        parent: str | None = None,
        parent_index: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> GenerationResult:
        self.steps(progress, cancel, seed or 0)
        action = Action.UPSCALE_CREATIVE if creative else Action.UPSCALE_SUBTLE
        larger = image.resize(upscaled_size(image.size))
        result_recipe = dataclasses.replace(recipe, action=action, parent=parent, parent_index=parent_index)
        return GenerationResult((larger,), None, result_recipe, Timings())

    def zoom_out(
        self,
        image: Image.Image,
        recipe: Recipe,
        *,
        scale: float = 2.0,
        aspect: tuple[int, int] | None = None,
        seed: int | None = None,
        parent: str | None = None,
        parent_index: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> GenerationResult:
        return self._grid(Action.ZOOM_OUT, recipe.request, recipe.model.alias, seed, image.size, parent,
                          parent_index, progress, cancel)  # fmt: skip

    def pan(
        self,
        image: Image.Image,
        recipe: Recipe,
        direction: PanDirection | str,
        *,
        seed: int | None = None,
        parent: str | None = None,
        parent_index: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> GenerationResult:
        return self._grid(Action.PAN, recipe.request, recipe.model.alias, seed, image.size, parent, parent_index,
                          progress, cancel)  # fmt: skip

    def make_square(
        self,
        image: Image.Image,
        recipe: Recipe,
        *,
        seed: int | None = None,
        parent: str | None = None,
        parent_index: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> GenerationResult:
        return self._grid(Action.MAKE_SQUARE, recipe.request, recipe.model.alias, seed, square_size(image.size),
                          parent, parent_index, progress, cancel)  # fmt: skip

    # --- what a subclass may change ---------------------------------------------------------------------

    def picture(self, seed: int, size: tuple[int, int]) -> Image.Image:
        """The image for ``seed``: a prepared photo-like picture (one of eight)."""
        return _prepared(seed % 8, size).copy()

    def steps(self, progress: ProgressCallback | None, cancel: CancelCheck | None, seed: int) -> None:
        """The "denoising": ``step_count`` steps with progress and cancel checks, no work."""
        for step in range(1, self.step_count + 1):
            if cancel is not None and cancel():
                raise Cancelled(step, self.step_count)
            if progress is not None:
                progress(step, self.step_count, None)

    # --- the grid every grid-making action shares --------------------------------------------------------

    def _grid(
        self,
        action: Action,
        request: ImagineRequest,
        model: str | None,
        seed: int | None,
        size: tuple[int, int] | None,
        parent: str | None,
        parent_index: int | None,
        progress: ProgressCallback | None,
        cancel: CancelCheck | None,
    ) -> GenerationResult:
        started = time.perf_counter()
        entry = self.registry.resolve(model)
        plan = plan_generation(request, entry.profile, seed)
        self.steps(progress, cancel, plan.seed)
        width, height = size or self.size or (plan.width, plan.height)
        images = tuple(self.picture(image_seed, (width, height)) for image_seed in plan.image_seeds)
        recipe = Recipe(
            action=action,
            request=request,
            model=ModelRecord(alias=entry.alias, source=entry.source, family=entry.family, scheduler="none"),
            seed=plan.seed,
            image_seeds=plan.image_seeds,
            settings={"width": width, "height": height, "engine": "null"},
            parent=parent,
            parent_index=parent_index,
            versions=self.versions,
        )
        elapsed = time.perf_counter() - started
        return GenerationResult(images, compose_grid(images), recipe, Timings(total=elapsed))


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
