"""Every button's follow-up, each starting from a stored image and its recipe."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from engine.errors import InvalidFollowUp
from engine.generate import Engine
from engine.jobs import Action
from engine.prompt import parse
from engine.recipe import Recipe
from engine.registry import Registry


def distance(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).mean())


@pytest.fixture(scope="module")
def grid(engine):
    return engine.imagine(parse("a lighthouse at dusk --ar 16:9 --seed 7"), parent=None)


@pytest.fixture(scope="module")
def separated(engine, grid):
    """U2, as the job system would hand it on: the image and its recipe, through JSON."""
    separated = engine.separate(grid.grid, grid.recipe, 2, parent="grid-job")
    return separated.images[0], Recipe.from_dict(json.loads(json.dumps(separated.recipe.to_dict())))


def test_separate_is_the_image_at_full_size(engine, grid):
    for n in (1, 2, 3, 4):
        result = engine.separate(grid.grid, grid.recipe, n, parent="grid-job")
        assert result.images[0].tobytes() == grid.images[n - 1].tobytes()
        assert result.grid is None
        recipe = result.recipe
        assert (recipe.action, recipe.parent, recipe.parent_index) == (Action.SEPARATE, "grid-job", n)
        assert result.recipe.seed == 6 + n, "the image keeps its own seed"
    with pytest.raises(InvalidFollowUp, match="Pick an image of the grid: 1, 2, 3 or 4"):
        engine.separate(grid.grid, grid.recipe, 5)


@pytest.mark.parametrize("strong", [False, True])
def test_variations_differ_from_their_parent_but_stay_closer_than_an_unrelated_image(engine, separated, strong):
    image, recipe = separated
    result = engine.vary(image, recipe, strong=strong, seed=21, parent="image-job")
    unrelated = engine.imagine(parse("a blue fish --ar 16:9 --seed 99")).images[0]
    assert len(result.images) == 4
    assert all(v.size == image.size for v in result.images)
    for variation in result.images:
        assert variation.tobytes() != image.tobytes()
        assert distance(variation, image) < distance(unrelated, image)
    recipe_out = result.recipe
    assert recipe_out.action is (Action.VARY_STRONG if strong else Action.VARY_SUBTLE)
    assert recipe_out.parent == "image-job"
    assert recipe_out.settings["strength"] == (0.7 if strong else 0.35)
    assert recipe_out.request == recipe.request


def test_strong_variations_move_further_than_subtle_ones(engine, separated):
    image, recipe = separated
    subtle = engine.vary(image, recipe, seed=5)
    strong = engine.vary(image, recipe, strong=True, seed=5)
    assert np.mean([distance(v, image) for v in strong.images]) > np.mean([distance(v, image) for v in subtle.images])


def test_variation_strength_is_configurable(tiny_models, tmp_path, separated):
    path = tmp_path / "models.toml"
    path.write_text(
        f'[models.v6]\nsource = "{tiny_models["sd15"]}"\nnative_size = [64, 64]\nsize_multiple = 16\nsteps = 4\n'
        "variation_strength = [0.5, 0.9]\n"
    )
    image, recipe = separated
    assert Engine(Registry.from_toml(path)).vary(image, recipe).recipe.settings["strength"] == 0.5


def test_remix_varies_with_an_edited_prompt(engine, separated):
    image, recipe = separated
    remixed = engine.vary(image, recipe, request=parse("a lighthouse at dawn --ar 16:9"), seed=3)
    assert remixed.recipe.request.prompt == "a lighthouse at dawn"
    assert remixed.images[0].tobytes() != engine.vary(image, recipe, seed=3).images[0].tobytes()


def test_reroll_is_the_same_request_with_a_new_seed(engine, grid):
    result = engine.reroll(grid.recipe, parent="grid-job")
    assert result.recipe.action is Action.REROLL
    assert result.recipe.seed != grid.recipe.seed
    assert result.recipe.request.prompt == grid.recipe.request.prompt
    assert result.recipe.request.seed is None, "the old --seed no longer describes the new images"
    assert result.images[0].size == grid.images[0].size
    assert result.images[0].tobytes() != grid.images[0].tobytes()
    again = engine.reroll(grid.recipe, seed=result.recipe.seed)
    assert again.images[0].tobytes() == result.images[0].tobytes()


def test_upscale_subtle_uses_the_configured_super_resolution_model(engine, separated):
    image, recipe = separated
    steps = []
    result = engine.upscale(image, recipe, seed=1, parent="image-job", progress=lambda s, t, p: steps.append((s, t)))
    assert steps == [(i, 20) for i in range(1, 21)], "one batch of patches, 20 upscaler steps"
    assert result.images[0].size == (image.width * 2, image.height * 2)
    assert result.recipe.action is Action.UPSCALE_SUBTLE
    assert "super-resolution (StableDiffusionUpscalePipeline" in result.recipe.settings["method"]
    assert any("super-resolution" in note for note in result.notes)


def test_upscale_subtle_without_a_model_resamples_and_says_so(engine, separated):
    image, recipe = separated
    xl_recipe = Recipe.from_dict({**recipe.to_dict(), "model": {**recipe.to_dict()["model"], "alias": "niji"}})
    result = engine.upscale(image, xl_recipe)
    assert result.images[0].size == (image.width * 2, image.height * 2)
    assert result.recipe.settings["method"] == "Lanczos resample with unsharp mask"
    assert "no super-resolution model is configured" in result.notes[0]
    small = result.images[0].resize(image.size, Image.Resampling.LANCZOS)
    assert distance(small, image) < 8, "a resample stays faithful to the original"


def test_upscale_creative_is_img2img_at_twice_the_size_in_patches(engine, separated):
    image, recipe = separated
    steps = []
    result = engine.upscale(image, recipe, creative=True, seed=2, progress=lambda s, t, p: steps.append((s, t)))
    assert result.images[0].size == (image.width * 2, image.height * 2)
    assert result.recipe.action is Action.UPSCALE_CREATIVE
    assert "6 patches of 64px" in result.recipe.settings["method"]
    assert steps == [(1, 2), (2, 2)], "2 batches of patches x 1 step (4 steps at strength 0.35), one job"
    small = result.images[0].resize(image.size, Image.Resampling.LANCZOS)
    unrelated = engine.imagine(parse("a blue fish --ar 16:9 --seed 99")).images[0]
    assert distance(small, image) < distance(unrelated, image)


def test_upscales_have_a_size_limit(engine, separated):
    _, recipe = separated
    with pytest.raises(InvalidFollowUp, match="the limit is 4096 px a side"):
        engine.upscale(Image.new("RGB", (2100, 64)), recipe)


@pytest.mark.parametrize("scale", [2.0, 1.5])
def test_zoom_out_keeps_the_original_pixels_inside_the_old_area(engine, separated, scale):
    image, recipe = separated
    result = engine.zoom_out(image, recipe, scale=scale, seed=4, parent="image-job")
    assert result.recipe.action is Action.ZOOM_OUT
    assert len(result.images) == 4
    shrunk = image.resize((round(image.width / scale), round(image.height / scale)), Image.Resampling.LANCZOS)
    left, top = (image.width - shrunk.width) // 2, (image.height - shrunk.height) // 2
    for zoomed in result.images:
        assert zoomed.size == image.size
        inside = zoomed.crop((left, top, left + shrunk.width, top + shrunk.height))
        assert inside.tobytes() == shrunk.tobytes()
        assert zoomed.tobytes() != image.tobytes()


def test_custom_zoom_can_change_the_aspect_ratio(engine, separated):
    image, recipe = separated
    result = engine.zoom_out(image, recipe, scale=1.2, aspect=(1, 1), seed=4)
    assert result.recipe.request.aspect == (1, 1)
    assert abs(result.images[0].width - result.images[0].height) <= 2
    with pytest.raises(InvalidFollowUp, match="Zoom must be from 1 to 2"):
        engine.zoom_out(image, recipe, scale=3)


@pytest.mark.parametrize(("direction", "size", "origin"), [("left", (120, 48), (40, 0)), ("down", (80, 72), (0, 0))])
def test_pan_extends_one_side_and_keeps_the_original(engine, separated, direction, size, origin):
    image, recipe = separated
    result = engine.pan(image, recipe, direction, seed=6)
    assert result.recipe.settings["direction"] == direction
    for panned in result.images:
        assert panned.size == size
        assert panned.crop((*origin, origin[0] + image.width, origin[1] + image.height)).tobytes() == image.tobytes()


def test_pan_refuses_a_bad_direction(engine, separated):
    image, recipe = separated
    with pytest.raises(InvalidFollowUp, match="Pan direction must be left, right, up or down"):
        engine.pan(image, recipe, "sideways")


def test_make_square(engine, separated):
    image, recipe = separated
    result = engine.make_square(image, recipe, seed=8)
    assert result.recipe.request.aspect == (1, 1)
    for squared in result.images:
        assert squared.size == (80, 80)
        assert squared.crop((0, 16, 80, 64)).tobytes() == image.tobytes()


def test_sdxl_follow_ups(engine):
    grid = engine.imagine(parse("a red bird --niji --seed 2"))
    separated = engine.separate(grid.grid, grid.recipe, 1)
    varied = engine.vary(separated.images[0], separated.recipe, seed=1)
    assert varied.recipe.model.family == "sdxl"
    zoomed = engine.zoom_out(separated.images[0], separated.recipe, scale=2.0, seed=1)
    assert zoomed.images[0].size == separated.images[0].size


def test_a_reroll_reuses_the_encoded_prompt(engine, grid):
    cache = engine.load("v6").embeddings
    hits = cache.hits
    engine.reroll(grid.recipe)
    assert cache.hits == hits + 1
