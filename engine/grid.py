"""The 2x2 grid: four images side by side at full size, and a tile back out of it. Pillow only."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

from PIL import Image

from engine.errors import InvalidFollowUp
from engine.jobs import Action
from engine.recipe import Recipe
from engine.results import GenerationResult, Timings

__all__ = ["compose_grid", "grid_tile", "separate", "separate_image"]


def compose_grid(images: Sequence[Image.Image]) -> Image.Image:
    """Four equally sized images as one 2x2 grid: 1 top left, 2 top right, 3 bottom left, 4 bottom right."""
    if len(images) != 4:
        raise ValueError(f"a grid needs 4 images (got {len(images)})")
    width, height = images[0].size
    if any(image.size != (width, height) for image in images):
        raise ValueError(f"grid images must share one size (got {[image.size for image in images]})")
    grid = Image.new("RGB", (2 * width, 2 * height))
    for index, image in enumerate(images):
        grid.paste(image.convert("RGB"), ((index % 2) * width, (index // 2) * height))
    return grid


def grid_tile(grid: Image.Image, tile: int) -> Image.Image:
    """Tile ``tile`` (1-4) of a grid, at the full size it was rendered: a lossless crop, no GPU work."""
    if tile not in (1, 2, 3, 4):
        raise InvalidFollowUp(f"Tile must be 1, 2, 3 or 4 (got {tile})")
    width, height = grid.width // 2, grid.height // 2
    left, top = ((tile - 1) % 2) * width, ((tile - 1) // 2) * height
    return grid.crop((left, top, left + width, top + height))


def separate(
    grid: Image.Image, recipe: Recipe, tile: int, parent: str | None, versions: Mapping[str, str]
) -> GenerationResult:
    """U1-U4: tile ``tile`` of a grid with a recipe of its own (the tile's seed, the parent it came from)."""
    return separate_image(grid_tile(grid, tile), recipe, tile, parent, versions)


def separate_image(
    image: Image.Image, recipe: Recipe, tile: int, parent: str | None, versions: Mapping[str, str]
) -> GenerationResult:
    """``separate`` for image ``tile`` of a grid that is at hand on its own (as stored images are)."""
    if tile not in (1, 2, 3, 4):
        raise InvalidFollowUp(f"Tile must be 1, 2, 3 or 4 (got {tile})")
    started = time.perf_counter()
    seed = recipe.image_seeds[tile - 1] if len(recipe.image_seeds) >= tile else recipe.seed
    result_recipe = dataclasses.replace(
        recipe,
        action=Action.SEPARATE,
        seed=seed,
        image_seeds=(seed,),
        settings={"tile": tile, "width": image.width, "height": image.height},
        parent=parent,
        parent_tile=tile,
        versions=dict(versions),
    )
    elapsed = time.perf_counter() - started
    return GenerationResult((image,), None, result_recipe, Timings(finish=elapsed, total=elapsed))
