"""The documented mapping from a request to generation settings (docs/models.md: "From parameters to pixels")."""

from __future__ import annotations

import math

import pytest

from engine.plan import ModelProfile, fit_size, plan_generation
from engine.prompt import WeightedPrompt, parse

SD15 = ModelProfile(native_size=(512, 512), steps=30, guidance=7.5)
SDXL = ModelProfile(native_size=(1024, 1024), steps=30, guidance=5.0)
TURBO = ModelProfile(native_size=(512, 512), steps=1, guidance=0.0)


def plan(text, profile=SD15, seed=1):
    return plan_generation(parse(text), profile, seed=seed)


@pytest.mark.parametrize(
    ("aspect", "native", "expected"),
    [
        ((1, 1), (512, 512), (512, 512)),
        ((1, 1), (1024, 1024), (1024, 1024)),
        ((16, 9), (1024, 1024), (1344, 768)),  # SDXL's own training buckets
        ((9, 16), (1024, 1024), (768, 1344)),
        ((2, 3), (1024, 1024), (832, 1216)),
        ((3, 2), (1024, 1024), (1216, 832)),
        ((4, 1), (512, 512), (1024, 256)),
    ],
)
def test_fit_size_known_answers(aspect, native, expected):
    assert fit_size(aspect, native) == expected


@pytest.mark.parametrize("native", [(512, 512), (768, 768), (1024, 1024)])
@pytest.mark.parametrize("aspect", [(1, 1), (16, 9), (9, 16), (2, 1), (1, 2), (4, 3), (21, 9), (4, 1), (1, 4), (7, 5)])
def test_fit_size_rules(aspect, native):
    width, height = fit_size(aspect, native)
    assert width % 64 == 0
    assert height % 64 == 0
    area = native[0] * native[1]
    assert 0.8 <= width * height / area <= 1.0, "area stays close to, and not above, the model's native area"
    assert abs(math.log(width / height / (aspect[0] / aspect[1]))) < 0.15, "ratio stays close to --ar"
    assert (width > height) == (aspect[0] > aspect[1]) or aspect[0] == aspect[1]


def test_fit_size_never_exceeds_the_native_area_unless_a_side_is_at_its_minimum():
    assert fit_size((16, 9), (512, 512)) == (640, 384)
    assert fit_size((1, 4), (64, 64)) == (64, 128)


def test_fit_size_honours_other_multiples():
    assert fit_size((16, 9), (1024, 1024), multiple=16) == (1360, 768)


def test_quality_scales_steps_and_stop_cuts_the_schedule():
    assert (plan("x").steps, plan("x").steps_run) == (30, 30)
    assert plan("x --q .25").steps == 8
    assert plan("x --q .5").steps == 15
    assert plan("x --q 2").steps == 60
    assert (plan("x --stop 50").steps, plan("x --stop 50").steps_run) == (30, 15)
    assert plan("x --stop 10").steps_run == 3
    assert (plan("x --q .25", TURBO).steps, plan("x --stop 10", TURBO).steps_run) == (1, 1), "never below one step"


def test_stylize_scales_guidance_above_one():
    assert plan("x").guidance_scale == 7.5
    assert plan("x --s 0").guidance_scale == 4.25  # half the distance above 1
    assert plan("x --s 1000").guidance_scale == 14.0  # double the distance above 1
    scales = [plan(f"x --s {s}").guidance_scale for s in (0, 50, 100, 250, 500, 1000)]
    assert scales == sorted(scales)
    assert len(set(scales)) == len(scales)
    assert plan("x --s 1000", TURBO).guidance_scale == 0.0, "guidance-free models stay guidance-free"


def test_no_is_a_negative_prompt_with_guidance_and_a_push_without():
    with_cfg = plan("a street --no cars")
    assert (with_cfg.negative_prompt, with_cfg.push_away, with_cfg.push_weight) == ("cars", None, 0.0)
    turbo = plan("a street --no cars", TURBO)
    assert (turbo.negative_prompt, turbo.push_away, turbo.push_weight) == (None, "cars", 0.5)
    assert plan("a street", TURBO).push_weight == 0.0
    distilled = plan("a street --no cars", ModelProfile(guidance=3.5, negative_prompt=False))  # FLUX.1
    assert (distilled.negative_prompt, distilled.push_away, distilled.push_weight) == (None, "cars", 0.5)
    assert distilled.guidance_scale == 3.5, "its distilled guidance still applies"


def test_weights_are_normalised_to_sum_one():
    assert plan("space::3 ship").prompt_parts == (WeightedPrompt("space", 0.75), WeightedPrompt("ship", 0.25))
    assert plan("fruit bowl:: apples::-0.5").prompt_parts == (
        WeightedPrompt("fruit bowl", 2.0),
        WeightedPrompt("apples", -1.0),
    )


def test_house_style_follows_stylize_and_raw_turns_it_off():
    styled = ModelProfile(style_prompt="cinematic lighting")
    parts = plan("a cat --s 1000", styled).prompt_parts
    assert parts == (WeightedPrompt("a cat", 0.7), WeightedPrompt("cinematic lighting", 0.3))
    assert math.isclose(sum(p.weight for p in parts), 1.0)
    assert plan("a cat --s 1000 --style raw", styled).prompt_parts == (WeightedPrompt("a cat", 1.0),)
    assert plan("a cat --s 0", styled).prompt_parts == (WeightedPrompt("a cat", 1.0),)


def test_seed_gives_four_image_seeds():
    assert plan("x --seed 7", seed=None).image_seeds == (7, 8, 9, 10)
    assert plan("x --seed 4294967295", seed=None).image_seeds == (4294967295, 0, 1, 2)
    assert plan("x --seed 7", seed=9).seed == 9, "an explicit seed overrides the request's (re-roll)"


def test_random_seed_is_drawn_and_recorded():
    seeds = {plan_generation(parse("x"), SD15).seed for _ in range(20)}
    assert len(seeds) > 1
    assert all(0 <= s <= 4294967295 for s in seeds)


def test_chaos_trades_shared_noise_for_prompt_jitter():
    calm, wild = plan("x --c 0"), plan("x --c 100")
    assert (calm.shared_noise, calm.prompt_jitter) == (0.4, 0.0)
    assert (wild.shared_noise, wild.prompt_jitter) == (0.0, 0.2)


def test_weird_tile_and_image_prompts():
    assert plan("x").weird_offset == 0
    assert plan("x --w 3000").weird_offset == 0.5
    assert plan("x --tile").tile
    assert not plan("x").tile
    assert plan("x").init_strength is None
    assert plan("https://a.b/c.png x").init_strength == 0.75
    assert plan("https://a.b/c.png x --iw 3").init_strength == 0.25
    assert plan("https://a.b/c.png x --iw 0").init_strength == 1.0


def test_work_counts_pixels_steps_and_images():
    assert plan("x --q .5").work == 512 * 512 * 15 * 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"native_size": (32, 512)}, "must be at least size_multiple"),
        ({"steps": 0}, "steps must be at least 1"),
        ({"guidance": -1.0}, "guidance must not be negative"),
    ],
)
def test_bad_profiles_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelProfile(**kwargs)


def test_out_of_range_seed_is_refused():
    with pytest.raises(ValueError, match="seed must be from 0 to 4294967295"):
        plan_generation(parse("x"), SD15, seed=2**32)
