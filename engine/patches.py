"""Processing a large image in overlapping tiles and blending them back without seams (upscales)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

__all__ = ["tile_boxes", "tiled"]


def tile_boxes(size: tuple[int, int], tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Boxes of ``tile`` x ``tile`` (smaller when the image is) covering ``size``, neighbours overlapping."""
    width, height = size

    def starts(length: int) -> list[int]:
        if length <= tile:
            return [0]
        stride = tile - overlap
        points = list(range(0, length - tile, stride))
        return [*points, length - tile]

    tile_w, tile_h = min(tile, width), min(tile, height)
    return [(x, y, x + tile_w, y + tile_h) for y in starts(height) for x in starts(width)]


def tiled(
    image: Image.Image,
    tile: int,
    overlap: int,
    process: Callable[[list[Image.Image]], list[Image.Image]],
    scale: int = 1,
    batch: int = 4,
) -> Image.Image:
    """Run ``process`` on tiles of ``image`` (``batch`` at a time); it returns each tile ``scale`` times larger.

    Tiles are blended with weights that fall off linearly across the overlap, so seams do not show.
    """
    boxes = tile_boxes(image.size, tile, overlap)
    out_w, out_h = image.width * scale, image.height * scale
    total = np.zeros((out_h, out_w, 3), dtype=np.float64)
    weights = np.zeros((out_h, out_w, 1), dtype=np.float64)
    for start in range(0, len(boxes), batch):
        chunk = boxes[start : start + batch]
        results = process([image.crop(box) for box in chunk])
        for box, result in zip(chunk, results, strict=True):
            left, top, right, bottom = (v * scale for v in box)
            expected = (right - left, bottom - top)
            if result.size != expected:
                result = result.resize(expected, Image.Resampling.LANCZOS)
            ramp = _ramp(expected, overlap * scale)
            total[top:bottom, left:right] += np.asarray(result.convert("RGB"), dtype=np.float64) * ramp
            weights[top:bottom, left:right] += ramp
    blended = total / weights
    return Image.fromarray(blended.round().clip(0, 255).astype(np.uint8))


def _ramp(size: tuple[int, int], overlap: int) -> np.ndarray:
    """Weights rising from a small floor at a tile's edges to 1 at ``overlap`` pixels in."""
    width, height = size

    def axis(length: int) -> np.ndarray:
        position = np.arange(length, dtype=np.float64)
        distance = np.minimum(position + 1, length - position)
        return np.clip(distance / max(1, overlap), 1e-3, 1.0)

    weights: np.ndarray = (axis(height)[:, None] * axis(width)[None, :])[:, :, None]
    return weights
