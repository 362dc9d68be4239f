"""The demo world: a scene description, a random scene sampler and a deterministic renderer (Pillow + NumPy).

A ``Scene`` is one or two ``Shape``s (kind, colour, size, position) on a flat or vertical-gradient
background. ``render(scene, size)`` draws it at any size: positions are fractions of the canvas, sizes
fractions of its shorter side, so a wide canvas gets the same scene spread out. Small offsets and size
changes come from the scene's ``jitter`` seed, so a scene always renders to the same pixels.

    scene = Scene("blue", (Shape("circle", "red", "large", "top left"),))
    render(scene).save("scene.png")                  # 64x64
    render(scene, (80, 48))                          # the same scene on a wide canvas
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "COLOURS",
    "KINDS",
    "NATIVE_SIZE",
    "POSITIONS",
    "SIZES",
    "Scene",
    "Shape",
    "background_array",
    "contrast",
    "heldout_scenes",
    "placement",
    "render",
    "sample_scene",
    "scene_key",
    "shape_coverage",
    "training_scenes",
]

NATIVE_SIZE = (64, 64)

# Ten colours, far apart in RGB so that both the model and the checker can tell them apart.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 30),
    "orange": (250, 140, 10),
    "yellow": (250, 230, 40),
    "green": (30, 165, 55),
    "blue": (30, 70, 220),
    "purple": (130, 40, 180),
    "pink": (250, 130, 200),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "grey": (128, 128, 128),
}
KINDS = ("circle", "square", "triangle", "star", "ring")
SIZES = ("small", "large")
# Anchor of each place as fractions of the canvas width and height.
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (0.25, 0.25),
    "top": (0.5, 0.25),
    "top right": (0.75, 0.25),
    "left": (0.25, 0.5),
    "centre": (0.5, 0.5),
    "right": (0.75, 0.5),
    "bottom left": (0.25, 0.75),
    "bottom": (0.5, 0.75),
    "bottom right": (0.75, 0.75),
}
# Radius of a shape as a fraction of the canvas' shorter side.
RADIUS = {"small": 0.13, "large": 0.21}
JITTER_OFFSET = 0.03  # largest offset from the anchor, as a fraction of the shorter side
JITTER_SCALE = 0.1  # largest relative change of the radius
MIN_CONTRAST = 90.0  # least RGB distance between a shape's colour and the background under it
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class Shape:
    kind: str  # one of KINDS
    colour: str  # one of COLOURS
    size: str  # one of SIZES
    position: str  # one of POSITIONS

    def __post_init__(self) -> None:
        for value, known, name in (
            (self.kind, KINDS, "kind"),
            (self.colour, COLOURS, "colour"),
            (self.size, SIZES, "size"),
            (self.position, POSITIONS, "position"),
        ):
            if value not in known:
                raise ValueError(f"shape {name} must be one of {', '.join(known)} (got {value!r})")


@dataclass(frozen=True)
class Scene:
    background: str  # the colour of a flat background, or the top of a gradient
    shapes: tuple[Shape, ...] = ()
    background_bottom: str | None = None  # a vertical gradient's colour at the bottom; None: flat
    jitter: int = 0  # seed of the small offsets and size changes

    def __post_init__(self) -> None:
        for colour in (self.background, self.background_bottom or self.background):
            if colour not in COLOURS:
                raise ValueError(f"background colour must be one of {', '.join(COLOURS)} (got {colour!r})")
        if self.background_bottom == self.background:
            raise ValueError("a gradient needs two different colours; leave background_bottom None for a flat one")

    @property
    def gradient(self) -> bool:
        return self.background_bottom is not None

    @property
    def bottom(self) -> str:
        return self.background_bottom or self.background


def placement(scene: Scene, size: tuple[int, int]) -> list[tuple[float, float, float]]:
    """Centre x, centre y and radius in pixels of each shape of ``scene`` on a canvas of ``size``."""
    width, height = size
    unit = min(width, height)
    rng = random.Random(scene.jitter)
    placed = []
    for shape in scene.shapes:
        fx, fy = POSITIONS[shape.position]
        dx, dy = (rng.uniform(-JITTER_OFFSET, JITTER_OFFSET) * unit for _ in range(2))
        radius = RADIUS[shape.size] * unit * rng.uniform(1 - JITTER_SCALE, 1 + JITTER_SCALE)
        placed.append((fx * width + dx, fy * height + dy, radius))
    return placed


def render(scene: Scene, size: tuple[int, int] = NATIVE_SIZE) -> Image.Image:
    """The scene as an RGB image of ``size`` (width, height), anti-aliased; the same scene gives the same pixels."""
    canvas = background_array(scene.background, scene.bottom, size)
    for shape, (cx, cy, radius) in zip(scene.shapes, placement(scene, size), strict=True):
        coverage = shape_coverage(shape.kind, cx, cy, radius, size)[..., None]
        colour = np.array(COLOURS[shape.colour], dtype=np.float32)
        canvas = canvas * (1 - coverage) + colour * coverage
    return Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))


def background_array(top: str, bottom: str, size: tuple[int, int]) -> np.ndarray:
    """A (height, width, 3) float array: ``top`` fading linearly to ``bottom`` down the rows."""
    width, height = size
    t = ((np.arange(height, dtype=np.float32) + 0.5) / height)[:, None, None]
    upper = np.array(COLOURS[top], dtype=np.float32)
    lower = np.array(COLOURS[bottom], dtype=np.float32)
    return np.broadcast_to(upper * (1 - t) + lower * t, (height, width, 3)).copy()


def shape_coverage(kind: str, cx: float, cy: float, radius: float, size: tuple[int, int]) -> np.ndarray:
    """How much of each pixel a shape covers (0..1), as a (height, width) float array; its bounding box is
    centred on (cx, cy). The checker uses the same geometry for its templates."""
    width, height = size
    s = _SUPERSAMPLE
    mask = Image.new("L", (width * s, height * s), 0)
    draw = ImageDraw.Draw(mask)
    x, y, r = cx * s, cy * s, radius * s
    if kind == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    elif kind == "square":
        half = r * _EXTENTS["square"][0] / 2
        draw.rectangle((x - half, y - half, x + half, y + half), fill=255)
    elif kind == "triangle":
        half_width, half_height = (e * r / 2 for e in _EXTENTS["triangle"])
        draw.polygon([(x, y - half_height), (x + half_width, y + half_height), (x - half_width, y + half_height)], 255)
    elif kind == "star":
        draw.polygon(_star_points(x, y, r), fill=255)
    elif kind == "ring":
        outer = r * _EXTENTS["ring"][0] / 2
        inner = outer * _RING_HOLE
        draw.ellipse((x - outer, y - outer, x + outer, y + outer), fill=255)
        draw.ellipse((x - inner, y - inner, x + inner, y + inner), fill=0)
    else:
        raise ValueError(f"shape kind must be one of {', '.join(KINDS)} (got {kind!r})")
    small = mask.resize((width, height), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


_STAR_OUTER = 1.2  # the star's outer radius, in units of the shape radius
_STAR_INNER = 0.45  # inner radius as a fraction of the outer one
_RING_HOLE = 0.5  # the ring's hole as a fraction of its outer radius


def _star_points(x: float, y: float, r: float) -> list[tuple[float, float]]:
    outer = _STAR_OUTER * r
    points = []
    for i in range(10):
        reach = outer if i % 2 == 0 else outer * _STAR_INNER
        angle = math.pi * i / 5
        points.append((x + reach * math.sin(angle), y - reach * math.cos(angle)))
    top = min(py for _, py in points)
    bottom = max(py for _, py in points)
    shift = y - (top + bottom) / 2  # centre the bounding box, as for every other kind
    return [(px, py + shift) for px, py in points]


def _star_extent() -> tuple[float, float]:
    points = _star_points(0.0, 0.0, 1.0)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return max(xs) - min(xs), max(ys) - min(ys)


_EXTENTS: dict[str, tuple[float, float]] = {
    "circle": (2.0, 2.0),
    "square": (1.8, 1.8),
    "triangle": (2.3, 2.0),
    "star": _star_extent(),
    "ring": (2.1, 2.1),
}


def contrast(colour: str, top: str, bottom: str) -> float:
    """RGB distance from ``colour`` to the nearest colour of the background between ``top`` and ``bottom``."""
    point = np.array(COLOURS[colour], dtype=np.float64)
    a = np.array(COLOURS[top], dtype=np.float64)
    b = np.array(COLOURS[bottom], dtype=np.float64)
    span = b - a
    t = 0.0 if not span.any() else float(np.clip(np.dot(point - a, span) / np.dot(span, span), 0, 1))
    return float(np.linalg.norm(point - (a + t * span)))


def sample_scene(
    rng: random.Random,
    *,
    shape_count: int | None = None,
    gradient: bool | None = None,
    gradient_share: float = 0.2,
    shape_counts: Sequence[tuple[int, float]] = ((0, 0.04), (1, 0.68), (2, 0.28)),
) -> Scene:
    """A random scene: every colour, kind, size and place equally likely, shapes that stand out from the
    background and never overlap. ``shape_count`` and ``gradient`` fix those choices."""
    if shape_count is None:
        counts, weights = zip(*shape_counts, strict=True)
        shape_count = rng.choices(counts, weights)[0]
    if gradient is None:
        gradient = rng.random() < gradient_share
    names = list(COLOURS)
    top = rng.choice(names)
    bottom = None
    if gradient:
        bottom = rng.choice([c for c in names if c != top and _distance(c, top) >= MIN_CONTRAST])
    jitter = rng.randrange(2**31)
    while True:
        shapes = []
        for _ in range(shape_count):
            colours = [c for c in names if contrast(c, top, bottom or top) >= MIN_CONTRAST]
            shapes.append(Shape(rng.choice(KINDS), rng.choice(colours), rng.choice(SIZES), rng.choice(list(POSITIONS))))
        scene = Scene(top, tuple(shapes), bottom, jitter)
        if _apart(scene):
            return scene


def _distance(a: str, b: str) -> float:
    return float(np.linalg.norm(np.subtract(COLOURS[a], COLOURS[b], dtype=np.float64)))


def _apart(scene: Scene) -> bool:
    """Whether every two shapes keep clear of each other on the native canvas (and so on every other)."""
    placed = placement(scene, NATIVE_SIZE)
    for i in range(len(placed)):
        for j in range(i + 1, len(placed)):
            (x1, y1, r1), (x2, y2, r2) = placed[i], placed[j]
            if scene.shapes[i].position == scene.shapes[j].position:
                return False
            if math.hypot(x1 - x2, y1 - y2) < 1.25 * (r1 + r2) + 2:
                return False
    return True


HELDOUT_SEED = 20240601  # the held-out evaluation scenes; training never draws their descriptions


def scene_key(background: str, bottom: str | None, shape: Shape) -> tuple[str, ...]:
    """What makes a one-shape scene description: its background and the shape's four attributes."""
    return (background, bottom or "", shape.kind, shape.colour, shape.size, shape.position)


def heldout_scenes(count: int = 200, *, shape_count: int = 1, seed: int = HELDOUT_SEED) -> list[Scene]:
    """``count`` scenes kept out of training: one-shape scenes by default (two with ``shape_count=2``), with
    flat and gradient backgrounds as the sampler draws them. The one-shape ones are distinct descriptions."""
    rng = random.Random(f"{seed}-{shape_count}")
    scenes: list[Scene] = []
    keys: set[tuple[str, ...]] = set()
    while len(scenes) < count:
        scene = sample_scene(rng, shape_count=shape_count)
        new = {scene_key(scene.background, scene.background_bottom, s) for s in scene.shapes}
        if shape_count == 1 and new <= keys:
            continue
        keys |= new
        scenes.append(scene)
    return scenes


def training_scenes(count: int, seed: int, held_out: Sequence[Scene]) -> list[Scene]:
    """``count`` random scenes, none of which shows a held-out scene's background with one of its shapes."""
    banned = {scene_key(h.background, h.background_bottom, s) for h in held_out for s in h.shapes}
    rng = random.Random(seed)
    scenes: list[Scene] = []
    while len(scenes) < count:
        scene = sample_scene(rng)
        if not any(scene_key(scene.background, scene.background_bottom, s) in banned for s in scene.shapes):
            scenes.append(scene)
    return scenes
