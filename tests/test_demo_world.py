"""The demo model's world without the model: renderer, captions, tokenizer and the evaluator's checker."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from devtools.demo.captions import WORDS, caption, full_caption
from devtools.demo.checker import colour_share, read, score
from devtools.demo.scenes import (
    COLOURS,
    KINDS,
    POSITIONS,
    Scene,
    Shape,
    contrast,
    heldout_scenes,
    render,
    sample_scene,
    scene_key,
    training_scenes,
)


def scenes(count: int, seed: int = 0) -> list[Scene]:
    rng = random.Random(seed)
    return [sample_scene(rng) for _ in range(count)]


# --- the renderer ----------------------------------------------------------------------------------


def test_a_scene_always_renders_to_the_same_pixels():
    for scene in scenes(20):
        assert render(scene).tobytes() == render(scene).tobytes()
    one = Scene("blue", (Shape("circle", "red", "large", "top left"),), jitter=1)
    other = Scene("blue", (Shape("circle", "red", "large", "top left"),), jitter=2)
    assert render(one).tobytes() != render(other).tobytes(), "the jitter seed moves the shape a little"


def test_the_renderer_draws_what_the_scene_says():
    scene = Scene("blue", (Shape("square", "red", "large", "top left"),))
    pixels = np.asarray(render(scene))
    assert tuple(pixels[60, 60]) == COLOURS["blue"]
    assert tuple(pixels[16, 16]) == COLOURS["red"], "the anchor of 'top left' is a quarter in from each side"
    wide = render(scene, (80, 48))
    assert wide.size == (80, 48)
    assert tuple(np.asarray(wide)[12, 20]) == COLOURS["red"]
    gradient = np.asarray(render(Scene("white", (), "black")))
    assert gradient[0, 0].mean() > 230
    assert gradient[-1, 0].mean() < 35


def test_sampled_scenes_cover_the_world_and_keep_shapes_visible_and_apart():
    drawn = scenes(600)
    shapes = [s for scene in drawn for s in scene.shapes]
    assert {s.kind for s in shapes} == set(KINDS)
    assert {s.colour for s in shapes} == set(COLOURS)
    assert {s.position for s in shapes} == set(POSITIONS)
    assert {len(scene.shapes) for scene in drawn} == {0, 1, 2}
    assert any(scene.gradient for scene in drawn)
    for scene in drawn:
        for shape in scene.shapes:
            assert contrast(shape.colour, scene.background, scene.bottom) >= 90
        if len(scene.shapes) == 2:
            assert scene.shapes[0].position != scene.shapes[1].position


def test_held_out_descriptions_never_reach_training():
    held_out = heldout_scenes(200)
    assert len(held_out) == 200
    assert all(len(scene.shapes) == 1 for scene in held_out)
    keys = {scene_key(h.background, h.background_bottom, h.shapes[0]) for h in held_out}
    assert len(keys) == 200
    trained = training_scenes(2000, seed=0, held_out=held_out)
    assert not any(scene_key(t.background, t.background_bottom, s) in keys for t in trained for s in t.shapes)
    assert heldout_scenes(200) == held_out, "the held-out set is fixed"


# --- captions and tokenizer --------------------------------------------------------------------------


def test_captions_vary_and_use_only_the_vocabulary():
    rng = random.Random(1)
    scene = Scene("blue", (Shape("star", "yellow", "small", "top left"),), jitter=3)
    texts = {caption(scene, rng) for _ in range(300)}
    assert len(texts) > 100, "many phrasings of one scene"
    assert any("backdrop" in t for t in texts)
    assert any(t.startswith("blue") for t in texts), "the background first, sometimes"
    assert any("star" in t and "yellow" in t and "top left" in t and "blue" in t for t in texts)
    words = set(WORDS)
    for scene in scenes(300, seed=2):
        text = caption(scene, rng)
        assert set(re.findall(r"[a-z]+", text)) <= words, text
    assert full_caption(scene) == full_caption(scene)
    assert full_caption(Scene("orange", (Shape("ring", "white", "large", "centre"),))) == (
        "a large white ring in the centre on an orange background"
    )


def test_every_domain_word_is_one_token_and_other_text_is_spelled():
    from devtools.demo.vocab import tokenizer

    tok = tokenizer()
    for word in WORDS:
        ids = tok(word, add_special_tokens=False).input_ids
        assert len(ids) == 1, f"{word!r} is {tok.convert_ids_to_tokens(ids)}"
    spelled = tok("zebra", add_special_tokens=False).input_ids
    assert tok.convert_ids_to_tokens(spelled) == ["z", "e", "b", "r", "a</w>"]
    assert tok.model_max_length == 40


# --- the checker ------------------------------------------------------------------------------------


def test_the_checker_reads_rendered_scenes_back():
    marks: dict[str, list[bool]] = {}
    for index, scene in enumerate(scenes(150, seed=3)):
        size = [(64, 64), (80, 48), (48, 80)][index % 3]
        for name, correct in score(scene, read(render(scene, size))).items():
            marks.setdefault(name, []).append(correct)
    accuracy = {name: sum(v) / len(v) for name, v in marks.items()}
    assert min(accuracy.values()) >= 0.98, accuracy


def test_the_checker_reports_what_it_sees():
    scene = Scene("green", (Shape("triangle", "pink", "large", "bottom right"),), jitter=5)
    reading = read(render(scene))
    assert (reading.background, reading.background_bottom) == ("green", None)
    assert [s.as_shape() for s in reading.shapes] == [scene.shapes[0]]
    wrong = Scene("green", (Shape("star", "pink", "large", "bottom right"),))
    assert score(wrong, reading) == {
        "background": True,
        "count": True,
        "colour": True,
        "kind": False,
        "position": True,
        "size": True,
    }


@pytest.mark.parametrize("colour", ["red", "white"])
def test_colour_share(colour):
    scene = Scene("blue", (Shape("square", colour, "large", "centre"),))
    share = colour_share(render(scene), colour)
    assert 0.05 < share < 0.3
    assert colour_share(render(scene), "green") == 0.0
