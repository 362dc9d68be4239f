"""The 2x2 grid: four images side by side at full size, and one image back out of it. Pillow only."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

from PIL import Image

from engine.errors import InvalidFollowUp
from engine.jobs import Action
from engine.plan import GRID_SIZE
from engine.recipe import Recipe
from engine.results import GenerationResult, Timings

__all__ = ["compose_grid", "grid_image", "separate", "separate_image"]


def compose_grid(images: Sequence[Image.Image]) -> Image.Image:
    """Four equally sized images as one 2x2 grid: 1 top left, 2 top right, 3 bottom left, 4 bottom right."""
    if len(images) != GRID_SIZE:
        raise ValueError(f"a grid needs 4 images (got {len(images)})")
    width, height = images[0].size
    if any(image.size != (width, height) for image in images):
        raise ValueError(f"grid images must share one size (got {[image.size for image in images]})")
    grid = Image.new("RGB", (2 * width, 2 * height))
    for index, image in enumerate(images):
        grid.paste(image.convert("RGB"), ((index % 2) * width, (index // 2) * height))
    return grid


def grid_image(grid: Image.Image, index: int) -> Image.Image:
    """Image ``index`` (1-4) of a grid, at the full size it was rendered: a lossless crop, no GPU work."""
    _check_index(index)
    width, height = grid.width // 2, grid.height // 2
    left, top = ((index - 1) % 2) * width, ((index - 1) // 2) * height
    return grid.crop((left, top, left + width, top + height))


def separate(
    grid: Image.Image, recipe: Recipe, index: int, parent: str | None, versions: Mapping[str, str]
) -> GenerationResult:
    """U1-U4: image ``index`` of a grid with a recipe of its own (that image's seed, the parent it came from)."""
    return separate_image(grid_image(grid, index), recipe, index, parent, versions)


def separate_image(
    image: Image.Image, recipe: Recipe, index: int, parent: str | None, versions: Mapping[str, str]
) -> GenerationResult:
    """``separate`` for image ``index`` of a grid that is at hand on its own (as stored images are)."""
    _check_index(index)
    started = time.perf_counter()
    seed = recipe.image_seeds[index - 1] if len(recipe.image_seeds) >= index else recipe.seed
    result_recipe = dataclasses.replace(
        recipe,
        action=Action.SEPARATE,
        seed=seed,
        image_seeds=(seed,),
        settings={"index": index, "width": image.width, "height": image.height},
        parent=parent,
        parent_index=index,
        versions=dict(versions),
    )
    elapsed = time.perf_counter() - started
    return GenerationResult((image,), None, result_recipe, Timings(finish=elapsed, total=elapsed))


def _check_index(index: int) -> None:
    if index not in range(1, GRID_SIZE + 1):
        raise InvalidFollowUp(f"Pick an image of the grid: 1, 2, 3 or 4 (got {index})")
