"""The shipped demo model, loaded as a server with nothing configured loads it: it follows prompts, and the
product's parameters visibly act on its pictures (checked by the evaluator's checker)."""

from __future__ import annotations

import statistics

import pytest

from devtools.demo import MODEL_DIR
from devtools.demo.captions import full_caption
from devtools.demo.checker import Reading, colour_share, read, score
from devtools.demo.figure import kinds_figure
from devtools.demo.scenes import KINDS, NATIVE_SIZE, Scene, Shape, render
from engine.generate import Engine
from engine.prompt import parse
from engine.registry import Registry

FAST = "--q .5"  # half the default steps: enough for these checks, and quick


@pytest.fixture(scope="module")
def demo() -> Engine:
    return Engine(Registry.from_env({}))


def main_attributes(reading: Reading) -> tuple[object, ...]:
    """Background, and the main shape's colour, kind and place."""
    shape = reading.shapes[0] if reading.shapes else None
    return (reading.background, reading.background_bottom, shape and (shape.colour, shape.kind, shape.position))


def test_the_model_is_small_safetensors_in_the_diffusers_layout():
    files = {p.relative_to(MODEL_DIR).as_posix(): p.stat().st_size for p in MODEL_DIR.rglob("*") if p.is_file()}
    for needed in ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json"):
        assert needed in files
    weights = [name for name in files if name.endswith(".safetensors")]
    assert sorted(weights) == [
        "text_encoder/model.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    assert not [name for name in files if name.endswith((".bin", ".pt", ".ckpt"))]
    assert sum(files.values()) <= 20_000_000


def test_nothing_configured_serves_the_demo_model(demo):
    loaded = demo.load()
    assert loaded.entry.alias == "demo"
    assert loaded.entry.source == str(MODEL_DIR)
    assert type(loaded.pipe).__name__ == "StableDiffusionPipeline"
    assert loaded.pipe.tokenizer("a large red circle", add_special_tokens=False).input_ids == [
        loaded.pipe.tokenizer.get_vocab()[f"{w}</w>"] for w in ("a", "large", "red", "circle")
    ]


@pytest.mark.parametrize(
    "scene",
    [
        Scene("blue", (Shape("circle", "red", "large", "centre"),)),
        Scene("white", (Shape("square", "black", "large", "left"),)),
        Scene("yellow", (Shape("triangle", "purple", "large", "top"),)),
        Scene("grey", (Shape("star", "orange", "large", "bottom right"),)),
        Scene("green", (Shape("ring", "white", "large", "top left"),)),
    ],
    ids=[
        "red-circle-on-blue",
        "black-square-on-white",
        "purple-triangle-on-yellow",
        "orange-star-on-grey",
        "white-ring-on-green",
    ],
)
def test_a_grid_follows_its_prompt(demo, scene):
    result = demo.imagine(parse(f"{full_caption(scene)} --seed 1 {FAST}"))
    marks = [score(scene, read(image)) for image in result.images]
    assert sum(m["background"] for m in marks) >= 3, marks
    assert sum(m["colour"] for m in marks) >= 3, marks
    assert sum(m["position"] for m in marks) >= 3, marks
    assert sum(m["kind"] for m in marks) >= 3, marks


def test_the_seed_reproduces_and_another_seed_differs(demo):
    prompt = "a small green star in the top right on a pink background"
    first = demo.imagine(parse(f"{prompt} --seed 5 {FAST}"))
    again = demo.imagine(parse(f"{prompt} --seed 5 {FAST}"))
    other = demo.imagine(parse(f"{prompt} --seed 6 {FAST}"))
    assert [i.tobytes() for i in first.images] == [i.tobytes() for i in again.images]
    assert first.images[0].tobytes() != other.images[0].tobytes()


def test_no_lowers_that_colour_s_share(demo):
    def red_share(text: str) -> float:
        images = [image for seed in (1, 2) for image in demo.imagine(parse(f"{text} --seed {seed} {FAST}")).images]
        return statistics.mean(colour_share(image, "red") for image in images)

    plain = red_share("a large circle")
    without = red_share("a large circle --no red")
    assert plain > 0.02, "with no colour asked for, some pictures have red in them"
    assert without < plain / 2


def test_a_wide_aspect_gives_a_wide_scene_that_still_follows_the_prompt(demo):
    scene = Scene("green", (Shape("circle", "white", "large", "right"),))
    result = demo.imagine(parse(f"{full_caption(scene)} --ar 2:1 --seed 3 {FAST}"))
    assert all(image.width >= 1.5 * image.height for image in result.images)
    marks = [score(scene, read(image)) for image in result.images]
    assert sum(m["background"] and m["colour"] and m["kind"] and m["position"] for m in marks) >= 3, marks


def test_a_variation_keeps_the_parent_s_main_attributes(demo):
    parent = demo.imagine(parse(f"a large orange ring on the left on a blue background --seed 2 {FAST}"))
    assert parent.grid is not None
    chosen = demo.separate(parent.grid, parent.recipe, 1)
    expected = main_attributes(read(chosen.images[0]))
    subtle = demo.vary(chosen.images[0], chosen.recipe)
    kept = [main_attributes(read(image)) == expected for image in subtle.images]
    assert sum(kept) >= 3, [main_attributes(read(image)) for image in subtle.images]
    assert any(image.tobytes() != chosen.images[0].tobytes() for image in subtle.images)


@pytest.mark.slow
def test_the_readme_figure_shows_the_renderer_then_the_model_for_each_kind():
    figure = kinds_figure()
    side = NATIVE_SIZE[0]
    assert figure.size == (5 * side, len(KINDS) * side)
    for row, kind in enumerate(KINDS):
        drawing = render(Scene("white", (Shape(kind, "red", "large", "centre"),)))
        assert figure.crop((0, row * side, side, (row + 1) * side)).tobytes() == drawing.tobytes()
        cells = [figure.crop((c * side, row * side, (c + 1) * side, (row + 1) * side)) for c in range(1, 5)]
        readings = [read(cell) for cell in cells]
        assert all(r.shapes and r.shapes[0].colour == "red" for r in readings), (kind, readings)
