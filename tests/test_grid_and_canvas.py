"""The 2x2 grid and the outpainting canvases: pure Pillow geometry."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.canvas import MAX_SIDE, pan_canvas, square_canvas, zoom_canvas
from engine.errors import InvalidFollowUp
from engine.grid import compose_grid, grid_image
from engine.jobs import PanDirection


def solid(colour, size=(80, 48)):
    return Image.new("RGB", size, colour)


def test_grid_places_images_in_reading_order_and_each_comes_back_exactly():
    images = [solid(c) for c in ("red", "green", "blue", "white")]
    grid = compose_grid(images)
    assert grid.size == (160, 96)
    for n, image in enumerate(images, start=1):
        assert grid_image(grid, n).tobytes() == image.tobytes()


def test_grid_refuses_wrong_inputs():
    with pytest.raises(ValueError, match="a grid needs 4 images"):
        compose_grid([solid("red")] * 3)
    with pytest.raises(ValueError, match="must share one size"):
        compose_grid([solid("red"), solid("red"), solid("red"), solid("red", (10, 10))])
    for index in (0, 5, -1):
        with pytest.raises(InvalidFollowUp, match="Pick an image of the grid: 1, 2, 3 or 4"):
            grid_image(compose_grid([solid("red")] * 4), index)


def test_zoom_keeps_the_size_and_shrinks_the_original_into_the_middle():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8))
    canvas = zoom_canvas(image, 2.0)
    assert canvas.size == (80, 48)
    assert canvas.box == (20, 12, 60, 36)
    assert canvas.image.crop(canvas.box).tobytes() == canvas.original.tobytes()
    mask = np.asarray(canvas.mask)
    assert (mask[12:36, 20:60] == 0).all()
    assert mask.sum() == 255 * (80 * 48 - 40 * 24)


def test_custom_zoom_can_change_the_aspect_ratio():
    canvas = zoom_canvas(solid("red", (64, 64)), 1.0, aspect=(2, 1))
    assert canvas.size == (90, 46)  # the same area, 2:1
    assert canvas.original.size == (46, 46)
    with pytest.raises(InvalidFollowUp, match="leaves nothing to fill"):
        zoom_canvas(solid("red", (64, 64)), 1.0)


@pytest.mark.parametrize("scale", [0.5, 2.5, float("nan")])
def test_zoom_out_of_range(scale):
    with pytest.raises(InvalidFollowUp, match="Zoom must be from 1 to 2"):
        zoom_canvas(solid("red"), scale)


@pytest.mark.parametrize(
    ("direction", "size", "origin"),
    [
        (PanDirection.LEFT, (120, 48), (40, 0)),
        (PanDirection.RIGHT, (120, 48), (0, 0)),
        (PanDirection.UP, (80, 72), (0, 24)),
        (PanDirection.DOWN, (80, 72), (0, 0)),
    ],
)
def test_pan_grows_one_side_and_keeps_the_original(direction, size, origin):
    image = solid("red")
    canvas = pan_canvas(image, direction)
    assert canvas.size == size
    assert canvas.box[:2] == origin
    assert canvas.image.crop(canvas.box).tobytes() == image.tobytes()


def test_make_square():
    canvas = square_canvas(solid("red"))
    assert canvas.size == (80, 80)
    assert canvas.box == (0, 16, 80, 64)
    with pytest.raises(InvalidFollowUp, match="already square"):
        square_canvas(solid("red", (64, 64)))


def test_canvases_have_a_size_limit():
    with pytest.raises(InvalidFollowUp, match=f"the limit is {MAX_SIDE} px a side"):
        pan_canvas(solid("red", (3000, 100)), PanDirection.RIGHT)
