"""What the engine returns: images, the grid, timings per stage and the recipe."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from engine.recipe import Recipe

__all__ = ["GenerationResult", "Timings"]


@dataclass(frozen=True)
class Timings:
    """Seconds per stage. ``denoise`` runs from the pipeline call to its last step; ``decode`` from there
    to images (VAE decode and conversion); ``finish`` is the engine's own work after that (grid, compositing)."""

    encode: float = 0.0
    denoise: float = 0.0
    decode: float = 0.0
    finish: float = 0.0
    total: float = 0.0


@dataclass(frozen=True)
class GenerationResult:
    images: tuple[Image.Image, ...]
    grid: Image.Image | None  # the 2x2 grid for four-image results, None for a single image
    recipe: Recipe
    timings: Timings
    notes: tuple[str, ...] = ()  # what a user should know, e.g. which upscaler was used

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.recipe.image_seeds
