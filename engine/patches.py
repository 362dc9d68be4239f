"""Processing a large image in overlapping patches and blending them back without seams (upscales)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

__all__ = ["by_patches", "patch_boxes"]


def patch_boxes(size: tuple[int, int], side: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Boxes of ``side`` x ``side`` (smaller when the image is) covering ``size``, neighbours overlapping."""
    width, height = size

    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        stride = side - overlap
        points = list(range(0, length - side, stride))
        return [*points, length - side]

    patch_w, patch_h = min(side, width), min(side, height)
    return [(x, y, x + patch_w, y + patch_h) for y in starts(height) for x in starts(width)]


def by_patches(
    image: Image.Image,
    side: int,
    overlap: int,
    process: Callable[[list[Image.Image]], list[Image.Image]],
    scale: int = 1,
    batch: int = 4,
) -> Image.Image:
    """Run ``process`` on overlapping patches of ``image`` (``batch`` at a time); it returns each patch ``scale``
    times larger.

    Patches are blended with weights that fall off linearly across the overlap, so seams do not show.
    """
    boxes = patch_boxes(image.size, side, overlap)
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
    """Weights rising from a small floor at a patch's edges to 1 at ``overlap`` pixels in."""
    width, height = size

    def axis(length: int) -> np.ndarray:
        position = np.arange(length, dtype=np.float64)
        distance = np.minimum(position + 1, length - position)
        return np.clip(distance / max(1, overlap), 1e-3, 1.0)

    weights: np.ndarray = (axis(height)[:, None] * axis(width)[None, :])[:, :, None]
    return weights
