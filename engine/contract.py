"""What a worker calls on an engine, as a Protocol: the real engine (``engine.generate.Engine``), the null
engine (``engine.null.NullEngine``) and the tests' engines all provide it.

Torch-free, so the worker and the table of actions (``engine.actions``) can name it without loading a model.
Every method takes the image and recipe it starts from (follow-ups), ``seed`` (None: a random one, which
the result's recipe records), the ``parent`` job and which image of its grid (``parent_index``, 1-4) for
the lineage, and the ``progress`` and ``cancel`` callbacks; each returns a ``GenerationResult``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from PIL import Image

from engine.callbacks import CancelCheck, ProgressCallback
from engine.jobs import PanDirection
from engine.prompt import ImagineRequest
from engine.recipe import Recipe
from engine.results import GenerationResult

__all__ = ["ImageEngine"]


class ImageEngine(Protocol):
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
        """/imagine: four images and their 2x2 grid. ``image_prompts``: the request's image URLs, downloaded."""
        ...

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
        """🔄: the recipe's request (or a remixed ``request``) with a new seed, on the same model."""
        ...

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
        """V1-V4, Vary (Subtle/Strong): four variations of ``image``; ``request`` is a remixed prompt."""
        ...

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
        """Upscale (Subtle/Creative): ``image`` at twice its size, one image."""
        ...

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
        """Zoom Out 2x / 1.5x / Custom: ``image`` shrunk into a canvas the model paints around; four images."""
        ...

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
        """⬅️ ➡️ ⬆️ ⬇️: ``image`` extended by half its width or height; four images."""
        ...

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
        """Make Square: ``image``'s shorter side extended until it is square; four images."""
        ...

    def load_times(self) -> Mapping[str, float]:
        """Seconds each model this engine has loaded took to load, by alias (for metrics; empty for none)."""
        ...
