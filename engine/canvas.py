"""Follow-up geometry: the size each follow-up makes, and for outpainting, where the original goes on the new
canvas and which area the model must fill.

Pillow only. Zoom Out keeps the image's size and shrinks the original into the middle (MidJourney's
behaviour); Pan and Make Square grow the canvas and keep the original at full resolution; upscales double
each side. No follow-up makes an image wider or taller than ``MAX_SIDE``: the ``*_size`` functions let the
job client refuse one before it becomes a job (``engine.actions``), the canvases refuse it again here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image, ImageDraw

from engine.errors import InvalidFollowUp
from engine.jobs import PanDirection

__all__ = [
    "MAX_SIDE",
    "MAX_ZOOM",
    "MIN_ZOOM",
    "UPSCALE_FACTOR",
    "Canvas",
    "pan_canvas",
    "pan_size",
    "size_refusal",
    "square_canvas",
    "square_size",
    "upscaled_size",
    "zoom_canvas",
]

MAX_SIDE = 4096  # no follow-up makes an image wider or taller than this
PAN_FRACTION = 0.5  # a pan adds half the image's width (or height) on one side
MIN_ZOOM, MAX_ZOOM = 1.0, 2.0
UPSCALE_FACTOR = 2  # Upscale (Subtle) and (Creative) double each side


def pan_size(size: tuple[int, int], direction: PanDirection) -> tuple[int, int]:
    """The size of an image of ``size`` panned towards ``direction``."""
    width, height = size
    if direction in (PanDirection.LEFT, PanDirection.RIGHT):
        return width + _even(width * PAN_FRACTION), height
    return width, height + _even(height * PAN_FRACTION)


def square_size(size: tuple[int, int]) -> tuple[int, int]:
    side = max(size)
    return side, side


def upscaled_size(size: tuple[int, int]) -> tuple[int, int]:
    return size[0] * UPSCALE_FACTOR, size[1] * UPSCALE_FACTOR


def size_refusal(what: str, size: tuple[int, int]) -> str | None:
    """Why ``what`` may not make an image of ``size`` (too large), or None."""
    if max(size) > MAX_SIDE:
        return f"{what} would make the image {size[0]}x{size[1]}; the limit is {MAX_SIDE} px a side"
    return None


@dataclass(frozen=True)
class Canvas:
    """The image to outpaint from: the original placed at ``box`` on a canvas, and the mask of what to fill."""

    image: Image.Image  # RGB, the original at `box`, the rest filled with the original's edge colours
    mask: Image.Image  # L, 255 where the model paints, 0 where the original stays
    box: tuple[int, int, int, int]  # (left, top, right, bottom) of the original on the canvas
    original: Image.Image  # the original as placed (resized for zoom), pasted back over the result

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def zoom_canvas(image: Image.Image, scale: float, aspect: tuple[int, int] | None = None) -> Canvas:
    """Zoom out by ``scale`` (1.0-2.0): the canvas keeps the image's area (and its ratio, unless ``aspect``
    gives a new one) and the original, shrunk by ``scale``, sits in the middle."""
    if not MIN_ZOOM <= scale <= MAX_ZOOM or math.isnan(scale):
        raise InvalidFollowUp(f"Zoom must be from {MIN_ZOOM:g} to {MAX_ZOOM:g} (got {scale:g})")
    width, height = image.size
    if aspect is None:
        canvas_w, canvas_h = width, height
    else:
        ratio = aspect[0] / aspect[1]
        area = width * height
        canvas_w, canvas_h = _even(math.sqrt(area * ratio)), _even(math.sqrt(area / ratio))
    fit = min(canvas_w / width, canvas_h / height) / scale
    placed_w, placed_h = max(1, round(width * fit)), max(1, round(height * fit))
    if (placed_w, placed_h) == (canvas_w, canvas_h):
        raise InvalidFollowUp("Zoom 1 with the same aspect ratio leaves nothing to fill; choose a zoom above 1")
    left, top = (canvas_w - placed_w) // 2, (canvas_h - placed_h) // 2
    placed = image.convert("RGB").resize((placed_w, placed_h), Image.Resampling.LANCZOS)
    return _canvas(placed, (canvas_w, canvas_h), (left, top))


def pan_canvas(image: Image.Image, direction: PanDirection) -> Canvas:
    """Extend the image by half its width or height towards ``direction``, the original untouched."""
    width, height = image.size
    size = pan_size(image.size, direction)
    extra_w, extra_h = size[0] - width, size[1] - height
    _check_size(size, f"Pan {direction.value}")
    origin = (extra_w if direction == PanDirection.LEFT else 0, extra_h if direction == PanDirection.UP else 0)
    return _canvas(image.convert("RGB"), size, origin)


def square_canvas(image: Image.Image) -> Canvas:
    """Extend the shorter side to make the image square, the original centred and untouched."""
    width, height = image.size
    if width == height:
        raise InvalidFollowUp("The image is already square")
    side = max(width, height)
    _check_size(square_size(image.size), "Make Square")
    return _canvas(image.convert("RGB"), (side, side), ((side - width) // 2, (side - height) // 2))


def _canvas(placed: Image.Image, size: tuple[int, int], origin: tuple[int, int]) -> Canvas:
    left, top = origin
    box = (left, top, left + placed.width, top + placed.height)
    # Start the new area from the original's stretched edges: a neutral guess the model then repaints.
    canvas = placed.resize(size, Image.Resampling.BILINEAR)
    canvas.paste(placed, (left, top))
    mask = Image.new("L", size, 255)
    ImageDraw.Draw(mask).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=0)
    return Canvas(image=canvas, mask=mask, box=box, original=placed)


def _check_size(size: tuple[int, int], what: str) -> None:
    if (reason := size_refusal(what, size)) is not None:
        raise InvalidFollowUp(reason)


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))
