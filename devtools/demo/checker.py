"""The evaluator's eyes: read a picture of the demo world back into background, colours, shapes and places.

Deterministic and torch-free, built on the renderer's own geometry:

1. the background is measured in the top and bottom bands of the picture (both the same named colour:
   flat; two colours: a vertical gradient) and modelled as the renderer draws it, a linear fade down the rows;
2. pixels far from that background are foreground; each connected region of them is one shape;
3. a shape's colour is the named colour nearest to its purest pixels; its place is the anchor nearest to the
   centre of its bounding box; its kind is the renderer's template (circle, square, triangle, star, ring) that
   best overlaps it, drawn at the same centre with the same area (blur keeps area, so this survives a soft
   model output); its size is that template's radius, small or large.

    reading = read(image)
    reading.background, reading.shapes[0].kind, reading.shapes[0].position
    score(scene, reading)    # {"background": True, "colour": True, "kind": False, ...}
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

import numpy as np
from PIL import Image

from devtools.demo.scenes import COLOURS, KINDS, POSITIONS, RADIUS, Scene, Shape, shape_coverage

__all__ = ["ATTRIBUTES", "Reading", "SeenShape", "colour_share", "nearest_colour", "read", "score"]

ATTRIBUTES = ("background", "colour", "kind", "position", "size", "count")
FOREGROUND_DISTANCE = 42.0  # RGB distance from the background that makes a pixel foreground
MIN_AREA = 0.006  # smallest shape, as a fraction of the picture's area
_PALETTE_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[name] for name in _PALETTE_NAMES], dtype=np.float32)
_SIZE_THRESHOLD = float(np.sqrt(RADIUS["small"] * RADIUS["large"]))  # radius / shorter side
_SCALES = (0.9, 0.95, 1.0, 1.05, 1.1)
_BORDER = 2  # the border band that the background is measured on, in pixels
_AGREE = 60.0  # RGB distance within which a border pixel agrees with a background


@dataclass(frozen=True)
class SeenShape:
    kind: str
    colour: str
    size: str
    position: str
    centre: tuple[float, float]  # pixels
    area: float  # pixels covered, fractional coverage counted
    fit: float  # overlap (0..1) of the shape with the best template

    def as_shape(self) -> Shape:
        return Shape(self.kind, self.colour, self.size, self.position)


@dataclass(frozen=True)
class Reading:
    background: str  # flat colour, or a gradient's top
    background_bottom: str | None  # a gradient's bottom; None when flat
    shapes: tuple[SeenShape, ...]  # largest first

    @property
    def bottom(self) -> str:
        return self.background_bottom or self.background


def nearest_colour(rgb: np.ndarray | tuple[float, float, float]) -> str:
    """The named colour nearest to ``rgb`` (RGB distance)."""
    distances = np.linalg.norm(_PALETTE - np.asarray(rgb, dtype=np.float32), axis=-1)
    return _PALETTE_NAMES[int(np.argmin(distances))]


def colour_share(image: Image.Image, colour: str, within: float = 70.0) -> float:
    """The fraction of pixels whose nearest named colour is ``colour``, no farther than ``within``."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32).reshape(-1, 3)
    distances = np.linalg.norm(pixels[:, None, :] - _PALETTE[None, :, :], axis=-1)
    nearest = distances.argmin(axis=1)
    index = _PALETTE_NAMES.index(colour)
    return float(np.mean((nearest == index) & (distances[:, index] <= within)))


def read(image: Image.Image) -> Reading:
    """Background, and every shape that stands out from it, largest first."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    height, width, _ = pixels.shape
    background, background_bottom, model = _background(pixels)
    offset = pixels - model
    distance = np.linalg.norm(offset, axis=-1)
    foreground = distance > FOREGROUND_DISTANCE
    shapes = []
    for region in _regions(foreground, int(MIN_AREA * width * height)):
        shapes.append(_read_shape(pixels, model, offset, distance, region, (width, height)))
    shapes.sort(key=lambda s: -s.area)
    return Reading(background, background_bottom, tuple(shapes))


def _background(pixels: np.ndarray) -> tuple[str, str | None, np.ndarray]:
    """The background that most of the picture's border agrees with: each flat colour and each top-to-bottom
    gradient of two named colours is tried. Returns its colours and a (height, 1, 3) model of it, fitted to the
    border pixels that agree with it."""
    height, width, _ = pixels.shape
    ring = np.zeros((height, width), dtype=bool)
    ring[:_BORDER], ring[-_BORDER:], ring[:, :_BORDER], ring[:, -_BORDER:] = True, True, True, True
    ys, _ = np.nonzero(ring)
    border = pixels[ring]  # (n, 3)
    t = ((ys.astype(np.float32) + 0.5) / height)[:, None]  # (n, 1)
    tops, bottoms = _PALETTE[:, None, None, :], _PALETTE[None, :, None, :]
    predicted = tops * (1 - t) + bottoms * t  # (colours, colours, n, 3)
    agree = (np.linalg.norm(predicted - border, axis=-1) < _AGREE).sum(axis=-1)  # (colours, colours)
    agree = agree + np.eye(len(_PALETTE_NAMES), dtype=agree.dtype) * 1  # ties go to a flat background
    top_index, bottom_index = np.unravel_index(int(np.argmax(agree)), agree.shape)
    inliers = np.linalg.norm(predicted[top_index, bottom_index] - border, axis=-1) < _AGREE
    rows = ((np.arange(height, dtype=np.float32) + 0.5) / height)[:, None, None]
    if top_index == bottom_index:
        flat = np.median(border[inliers], axis=0)
        return _PALETTE_NAMES[top_index], None, np.broadcast_to(flat, (height, 1, 3)).copy()
    design = np.concatenate([1 - t[inliers], t[inliers]], axis=1)  # least squares for the two end colours
    (upper, lower), *_ = np.linalg.lstsq(design, border[inliers], rcond=None)
    return _PALETTE_NAMES[top_index], _PALETTE_NAMES[bottom_index], upper * (1 - rows) + lower * rows


def _read_shape(
    pixels: np.ndarray,
    model: np.ndarray,
    offset: np.ndarray,
    distance: np.ndarray,
    region: np.ndarray,
    size: tuple[int, int],
) -> SeenShape:
    width, height = size
    unit = min(width, height)
    ys, xs = np.nonzero(region)
    strength = distance[ys, xs]
    purest = strength >= np.percentile(strength, 75)
    rgb = np.median(pixels[ys[purest], xs[purest]], axis=0)
    colour = nearest_colour(rgb)
    # Coverage of each pixel by the shape: how far it lies from the background towards the shape's colour.
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    pad = 2
    box = (max(0, y0 - pad), min(height, y1 + pad), max(0, x0 - pad), min(width, x1 + pad))
    window = (slice(box[0], box[1]), slice(box[2], box[3]))
    direction = np.array(COLOURS[colour], dtype=np.float32) - model[window[0]]  # (rows, 1, 3)
    along = (offset[window] * direction).sum(axis=-1) / np.maximum((direction**2).sum(axis=-1), 1.0)
    coverage = np.zeros((height, width), dtype=np.float32)
    coverage[window] = np.clip(along, 0, 1) * _dilate(region)[window]
    area = float(coverage.sum())
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    best_kind, best_fit, best_radius = KINDS[0], -1.0, 0.0
    for kind in KINDS:
        radius = float(np.sqrt(area / _UNIT_AREA[kind]))
        for scale in _SCALES:
            sharp = shape_coverage(kind, cx, cy, radius * scale, size)
            for template in (sharp, _blur(sharp)):  # a soft picture is compared with soft templates too
                fit = float(np.minimum(template, coverage).sum() / max(np.maximum(template, coverage).sum(), 1e-6))
                if fit > best_fit:
                    best_kind, best_fit, best_radius = kind, fit, radius * scale
    fx, fy = cx / width, cy / height
    position = min(POSITIONS, key=lambda p: (POSITIONS[p][0] - fx) ** 2 + (POSITIONS[p][1] - fy) ** 2)
    shape_size = "large" if best_radius / unit > _SIZE_THRESHOLD else "small"
    return SeenShape(best_kind, colour, shape_size, position, (cx, cy), area, best_fit)


def _unit_areas() -> dict[str, float]:
    """Each kind's area in units of its radius squared, measured on the renderer's own drawing."""
    radius = 40.0
    return {k: float(shape_coverage(k, 50.0, 50.0, radius, (100, 100)).sum()) / radius**2 for k in KINDS}


_UNIT_AREA = _unit_areas()


def _blur(image: np.ndarray) -> np.ndarray:
    """A small Gaussian blur (sigma 1 pixel), edges repeated."""
    blurred = np.asarray(image, dtype=np.float32)
    for axis in (0, 1):
        padded = np.pad(blurred, [(2, 2) if a == axis else (0, 0) for a in range(2)], mode="edge")
        length = image.shape[axis]
        total = np.zeros_like(blurred)
        for i, w in enumerate(_BLUR_KERNEL):
            total += w * np.take(padded, np.arange(i, i + length), axis=axis)
        blurred = total
    return blurred


_GAUSS = np.exp(-0.5 * np.arange(-2, 3) ** 2)
_BLUR_KERNEL = tuple(float(w) for w in _GAUSS / _GAUSS.sum())


def _dilate(mask: np.ndarray) -> np.ndarray:
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def _regions(mask: np.ndarray, min_area: int) -> list[np.ndarray]:
    """8-connected regions of ``mask`` with at least ``min_area`` pixels, as boolean masks."""
    height, width = mask.shape
    labels = np.zeros(mask.shape, dtype=np.int32)
    regions = []
    label = 0
    for start in zip(*np.nonzero(mask), strict=True):
        if labels[start]:
            continue
        label += 1
        labels[start] = label
        queue = deque([start])
        members = []
        while queue:
            y, x = queue.popleft()
            members.append((y, x))
            for dy, dx in itertools.product((-1, 0, 1), repeat=2):
                ny, nx = y + dy, x + dx
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = label
                    queue.append((ny, nx))
        if len(members) >= min_area:
            regions.append(labels == label)
    return regions


def score(scene: Scene, reading: Reading) -> dict[str, bool]:
    """Which attributes of ``scene`` the picture shows: background (flat colour, or both ends of the gradient),
    and the colour, kind, position and size of its shapes (all of them must be right), and the shape count.

    A one-shape scene is judged on the largest shape seen; two shapes on the pairing of the two largest seen
    shapes that agrees best."""
    result = {
        "background": (reading.background, reading.background_bottom) == (scene.background, scene.background_bottom)
    }
    result["count"] = len(reading.shapes) == len(scene.shapes)
    expected = scene.shapes
    if not expected:
        for name in ("colour", "kind", "position", "size"):
            result[name] = not reading.shapes
        return result
    seen = reading.shapes[: len(expected)]
    names = ("colour", "kind", "position", "size")
    best, best_agreement = dict.fromkeys(names, False), -1
    for order in itertools.permutations(range(len(expected))):
        pairs = [(expected[i], seen[k]) for k, i in enumerate(order[: len(seen)])]
        agreement = sum(getattr(e, n) == getattr(s, n) for e, s in pairs for n in ("colour", "kind", "position"))
        if agreement > best_agreement:
            complete = len(pairs) == len(expected)
            best = {n: complete and all(getattr(e, n) == getattr(s, n) for e, s in pairs) for n in names}
            best_agreement = agreement
    result.update(best)
    return result
