"""The engine's /imagine on tiny pipelines loaded through the real registry and loading code."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from PIL import Image

from engine.errors import BannedPrompt, Cancelled, ModelLoadError, UnknownModel, UnsafeImages
from engine.generate import Engine
from engine.jobs import Action
from engine.prompt import parse
from engine.recipe import Recipe
from engine.registry import Registry
from engine.safety import Blocklist


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def distance(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())


# --- loading -------------------------------------------------------------------------------------


def test_models_load_once_and_related_pipelines_share_the_weights(engine):
    loaded = engine.load("v6")
    assert engine.load(None) is loaded, "the default is v6, already loaded"
    assert engine.load("v6") is loaded
    img2img, inpaint = loaded.img2img(), loaded.inpaint()
    assert loaded.img2img() is img2img
    assert img2img.unet is loaded.pipe.unet
    assert inpaint.unet is loaded.pipe.unet
    assert inpaint.vae is loaded.pipe.vae
    assert inpaint.text_encoder is loaded.pipe.text_encoder


def test_loading_picks_device_dtype_and_sdpa_attention(engine):
    loaded = engine.load("v6")
    assert (loaded.device.type, loaded.dtype) == ("cpu", torch.float32)
    assert loaded.record.dtype == "float32"
    assert loaded.record.scheduler == "EulerDiscreteScheduler"
    processors = loaded.pipe.unet.attn_processors.values()
    assert processors
    assert all(isinstance(p, AttnProcessor2_0) for p in processors)


def test_speed_switches_in_the_registry_entry_are_applied(tiny_models, tmp_path):
    path = tmp_path / "models.toml"
    path.write_text(
        f'[models.fast]\nsource = "{tiny_models["sd15"]}"\nnative_size = [64, 64]\nsize_multiple = 16\n'
        "channels_last = true\nvae_tiling = true\n"
    )
    loaded = Engine(Registry.from_toml(path)).load()
    weight = next(p for p in loaded.pipe.unet.parameters() if p.dim() == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert loaded.pipe.vae.use_tiling


def test_a_model_that_cannot_load_says_where_it_looked(tmp_path):
    registry = Registry.from_mapping({"models": {"gone": {"source": str(tmp_path / "missing")}}})
    expected = r"cannot load model 'gone': there is no folder at .*missing; point source at a folder in the diffusers"
    with pytest.raises(ModelLoadError, match=expected):
        Engine(registry).imagine(parse("a cat"))
    offline = Registry.from_mapping({"models": {"hub": {"source": "someone/not-in-the-cache"}}})
    expected = r"(?s)cannot load model 'hub' from someone/not-in-the-cache: .*Offline, set source to a folder"
    with pytest.raises(ModelLoadError, match=expected):
        Engine(offline).imagine(parse("a cat"))


def test_an_unknown_version_lists_the_models(engine):
    with pytest.raises(UnknownModel, match="Unknown model 'v7': known models are v6, niji, turbo"):
        engine.imagine(parse("a cat --v 7"))


# --- one batched call, deterministic seeds ---------------------------------------------------------


def test_imagine_renders_four_images_in_one_batched_call(engine):
    unet = engine.load("v6").pipe.unet
    batches: list[int] = []
    hook = unet.register_forward_hook(lambda module, args, output: batches.append(args[0].shape[0]))
    try:
        result = engine.imagine(parse("a lighthouse at dusk --ar 16:9 --seed 7"))
    finally:
        hook.remove()
    assert batches == [8] * 4, "4 steps, each one UNet call on 4 images x (conditional, unconditional)"
    assert len(result.images) == 4
    assert all(image.size == (80, 48) for image in result.images)
    assert result.grid is not None
    assert result.grid.size == (160, 48 * 2)
    for n, image in enumerate(result.images):
        left, top = (n % 2) * 80, (n // 2) * 48
        assert result.grid.crop((left, top, left + 80, top + 48)).tobytes() == image.tobytes()


def test_the_same_request_and_seed_reproduce_the_same_pixels(engine):
    first = engine.imagine(parse("a red bird --seed 7"))
    again = engine.imagine(parse("a red bird --seed 7"))
    other = engine.imagine(parse("a red bird --seed 8"))
    assert first.seeds == (7, 8, 9, 10)
    assert [i.tobytes() for i in first.images] == [i.tobytes() for i in again.images]
    assert first.images[0].tobytes() != other.images[0].tobytes()


def test_a_random_seed_is_recorded_and_reproduces(engine):
    drawn = engine.imagine(parse("a red bird"))
    replay = engine.imagine(parse(f"a red bird --seed {drawn.recipe.seed}"))
    assert drawn.images[2].tobytes() == replay.images[2].tobytes()


# --- every parameter acts as documented --------------------------------------------------------------


def test_quality_and_stop_set_the_steps_run(engine):
    def steps_of(text):
        seen = []
        engine.imagine(parse(text), progress=lambda step, total, preview: seen.append((step, total)))
        return seen

    assert steps_of("x --seed 1") == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert steps_of("x --seed 1 --q 2") == [(i, 8) for i in range(1, 9)]
    assert steps_of("x --seed 1 --q .5") == [(1, 2), (2, 2)]
    assert steps_of("x --seed 1 --stop 50") == [(1, 2), (2, 2)]


def test_stop_truncates_the_schedule_and_lands_on_a_clean_image(engine):
    stopped = engine.imagine(parse("x --seed 3 --stop 50"))
    assert stopped.recipe.settings["stop_method"] == "schedule truncated, last step to a clean image"
    assert stopped.recipe.settings["steps_run"] == 2
    assert stopped.images[0].tobytes() != engine.imagine(parse("x --seed 3")).images[0].tobytes()


def test_stylize_sets_the_guidance_the_pipeline_runs_with(engine):
    pipe = engine.load("v6").pipe
    engine.imagine(parse("x --seed 1 --s 1000"))
    assert pipe.guidance_scale == 14.0
    engine.imagine(parse("x --seed 1 --s 0"))
    assert pipe.guidance_scale == 4.25


def test_a_guidance_free_model_runs_one_unet_pass_per_image(engine):
    unet = engine.load("turbo").pipe.unet
    batches: list[int] = []
    hook = unet.register_forward_hook(lambda module, args, output: batches.append(args[0].shape[0]))
    try:
        result = engine.imagine(dataclasses.replace(parse("x --seed 1 --no red"), model="turbo"))
    finally:
        hook.remove()
    assert batches == [4, 4], "2 steps, no unconditional half"
    assert (result.recipe.settings["push_away"], result.recipe.settings["negative_prompt"]) == ("red", None)


def test_no_changes_the_picture(engine):
    plain = engine.imagine(parse("a street --seed 5"))
    without_cars = engine.imagine(parse("a street --seed 5 --no cars"))
    assert plain.images[0].tobytes() != without_cars.images[0].tobytes()
    assert without_cars.recipe.settings["negative_prompt"] == "cars"


@pytest.mark.parametrize(
    ("one", "two"),
    [
        ("x --seed 2", "x --seed 2 --c 100"),
        ("x --seed 2", "x --seed 2 --w 3000"),
        ("x --seed 2", "x::2 y --seed 2"),
        ("x --seed 2", "x --seed 2 --ar 2:1"),
    ],
)
def test_parameters_change_the_picture(engine, one, two):
    first, second = engine.imagine(parse(one)), engine.imagine(parse(two))
    assert first.images[1].tobytes() != second.images[1].tobytes()


def test_chaos_makes_the_four_images_differ_more(engine):
    def spread(text):
        images = engine.imagine(parse(text)).images
        return np.mean([distance(images[i], images[j]) for i in range(4) for j in range(i + 1, 4)])

    calm = np.mean([spread(f"a red bird --seed {s}") for s in range(3)])
    wild = np.mean([spread(f"a red bird --seed {s} --c 100") for s in range(3)])
    assert wild > calm


def test_tile_makes_left_and_right_edges_meet(engine):
    result = engine.imagine(parse("a pattern --tile --seed 11"))
    for image in result.images:
        a = pixels(image)
        seam = np.abs(a[:, 0] - a[:, -1]).mean()
        neighbours = np.abs(np.diff(a, axis=1)).mean(axis=(0, 2))  # mean step between adjacent columns
        assert seam <= 1.5 * np.median(neighbours), "the wrap-around seam looks like any other column step"
        top_bottom = np.abs(a[0] - a[-1]).mean()
        assert top_bottom <= 1.5 * np.median(np.abs(np.diff(a, axis=0)).mean(axis=(1, 2)))


def test_tile_is_a_true_wrap_around(engine):
    """With circular padding the whole network commutes with shifts: rolling the starting noise by two latent
    columns (the UNet's downsampling) rolls the picture by two columns times the VAE factor."""
    from engine.conditioning import PromptEncoder
    from engine.plan import plan_generation
    from engine.seamless import seamless

    loaded = engine.load("v6")
    pipe = loaded.pipe
    plan = plan_generation(parse("a pattern --tile"), loaded.entry.profile, seed=4)
    embeds = PromptEncoder(pipe).condition(plan, 1).kwargs()
    latents = torch.randn((1, 4, 32, 32), generator=torch.Generator().manual_seed(0))

    def run(start):
        return pipe(**embeds, latents=start, height=64, width=64, num_inference_steps=3).images[0]

    def render(start):
        with seamless((pipe.unet, pipe.vae)):
            return pixels(run(start))

    plain, rolled = render(latents), render(torch.roll(latents, shifts=2, dims=3))
    factor = pipe.vae_scale_factor
    assert np.abs(np.roll(plain, shift=2 * factor, axis=1) - rolled).max() <= 2, "equal up to rounding"
    assert pixels(run(latents)).tobytes() != plain.tobytes(), "the padding is restored after the block"


def test_image_prompts_start_the_generation(engine):
    red = Image.new("RGB", (100, 100), (220, 30, 30))
    result = engine.imagine(parse("https://example.com/red.png a bird --seed 3 --iw 3"), image_prompts=[red])
    assert result.recipe.settings["image_prompts"] == 1
    assert result.recipe.settings["init_strength"] == 0.25
    unrelated = engine.imagine(parse("a bird --seed 3"))
    assert distance(result.images[0], red.resize((64, 64))) < distance(unrelated.images[0], red.resize((64, 64)))
    with pytest.raises(ValueError, match="pass them as image_prompts"):
        engine.imagine(parse("https://example.com/red.png a bird"))


def test_sdxl_grids(engine):
    result = engine.imagine(parse("a red bird --niji --seed 1 --no blue --ar 3:2"))
    assert result.recipe.model.family == "sdxl"
    assert result.images[0].size == (80, 48)
    assert len(result.images) == 4


# --- progress, previews, cancel ----------------------------------------------------------------------


def test_progress_reports_every_step_with_small_previews(registry_file, tiny_models):
    engine = Engine(Registry.from_toml(registry_file), preview_every=2, preview_size=32)
    reports = []
    engine.imagine(parse("x --seed 1 --q 2"), progress=lambda *report: reports.append(report))
    assert [(s, t) for s, t, _ in reports] == [(i, 8) for i in range(1, 9)]
    with_previews = [s for s, _, p in reports if p is not None]
    assert with_previews == [2, 4, 6], "every 2nd step, none at the last step (the result follows)"
    preview = reports[1][2]
    assert isinstance(preview, Image.Image)
    assert max(preview.size) <= 32


def test_previews_use_the_tiny_autoencoder_when_configured(tiny_models, tmp_path):
    path = tmp_path / "models.toml"
    path.write_text(
        f'[models.v6]\nsource = "{tiny_models["sd15"]}"\nnative_size = [64, 64]\nsize_multiple = 16\nsteps = 4\n'
        f'preview_decoder = "{tiny_models["taesd"]}"\n'
    )
    engine = Engine(Registry.from_toml(path), preview_every=1)
    decoder = engine.load().preview_decoder()
    assert decoder is not None
    calls = []
    hook = decoder.decoder.register_forward_hook(lambda *args: calls.append(1))
    previews = []
    try:
        engine.imagine(parse("x --seed 1"), progress=lambda s, t, p: previews.append(p))
    finally:
        hook.remove()
    assert len(calls) == 3
    assert all(isinstance(p, Image.Image) for p in previews[:3])


def test_cancel_stops_within_one_step(engine):
    steps = []
    flag = {"cancel": False}

    def progress(step, total, preview):
        steps.append(step)
        if step == 2:
            flag["cancel"] = True

    with pytest.raises(Cancelled, match="Cancelled at step 3 of 8") as caught:
        engine.imagine(parse("x --seed 1 --q 2"), progress=progress, cancel=lambda: flag["cancel"])
    assert caught.value.step == 3
    assert steps == [1, 2], "no step ran past the one in which the cancel was seen"
    assert len(engine.imagine(parse("x --seed 1")).images) == 4, "the engine is usable afterwards"


def test_a_job_cancelled_before_it_starts_does_no_work(engine):
    with pytest.raises(Cancelled):
        engine.imagine(parse("x"), cancel=lambda: True)


# --- safety ------------------------------------------------------------------------------------------


def test_blocked_prompts_and_images(registry_file):
    engine = Engine(Registry.from_toml(registry_file), blocklist=Blocklist(["gore", "bad word"]))
    with pytest.raises(BannedPrompt, match="'bad word' is not allowed here"):
        engine.imagine(parse("a very Bad   Word here"))
    assert len(engine.imagine(parse("a badword --no gore --seed 1")).images) == 4, "whole words only; --no is exempt"
    flag_the_third = lambda images: [i == 2 for i in range(len(images))]  # noqa: E731
    checked = Engine(Registry.from_toml(registry_file), image_checker=flag_the_third)
    with pytest.raises(UnsafeImages, match="withheld 1 of 4 images"):
        checked.imagine(parse("a cat --seed 1"))


# --- results -----------------------------------------------------------------------------------------


def test_results_carry_timings_and_a_complete_recipe(engine, tiny_models):
    result = engine.imagine(parse("a lighthouse --ar 16:9 --seed 7 --no fog"), parent="job-0")
    timings = result.timings
    assert timings.encode > 0
    assert timings.denoise > 0
    assert timings.decode > 0
    assert timings.total >= timings.encode + timings.denoise + timings.decode
    recipe = result.recipe
    assert recipe.action is Action.IMAGINE
    assert (recipe.seed, recipe.image_seeds, recipe.parent) == (7, (7, 8, 9, 10), "job-0")
    assert recipe.model.source == str(tiny_models["sd15"])
    assert (recipe.settings["width"], recipe.settings["height"], recipe.settings["negative_prompt"]) == (80, 48, "fog")
    assert set(recipe.versions) == {"dreamloom", "torch", "diffusers", "transformers"}
    stored = json.loads(json.dumps(recipe.to_dict()))
    assert Recipe.from_dict(stored).to_dict() == stored
    assert stored["prompt_text"] == "a lighthouse --ar 16:9 --seed 7 --no fog"
    replay = engine.imagine(parse(stored["prompt_text"]))
    assert replay.images[0].tobytes() == result.images[0].tobytes(), "the recipe reproduces the pixels"


def test_the_model_s_own_safety_checker_is_kept_only_when_asked_for(tmp_path):
    from devtools.tiny_pipelines import save_tiny_pipeline

    folder = save_tiny_pipeline(tmp_path / "with-checker", "sd15", safety_checker=True)
    tiny = 'native_size = [64, 64]\nsize_multiple = 16\nsteps = 2\nscheduler = "euler"\n'
    path = tmp_path / "models.toml"
    plain = f'[models.plain]\nsource = "{folder}"\n{tiny}'
    path.write_text(f'{plain}\n[models.checked]\nsource = "{folder}"\n{tiny}safety_checker = true\n')
    engine = Engine(Registry.from_toml(path))
    assert engine.load("plain").pipe.safety_checker is None, "not loaded unless the entry asks for it"
    checker = engine.load("checked").pipe.safety_checker
    assert checker is not None
    checker.concept_embeds_weights.data.fill_(-10.0)  # make every image look unsafe to it
    with pytest.raises(UnsafeImages, match="withheld 4 of 4 images"):
        engine.imagine(dataclasses.replace(parse("a cat --seed 1"), model="checked"))


def test_fused_attention_gives_the_same_pictures(tiny_models, tmp_path, engine):
    path = tmp_path / "models.toml"
    path.write_text(
        f'[models.v6]\nsource = "{tiny_models["sd15"]}"\nnative_size = [64, 64]\nsize_multiple = 16\nsteps = 4\n'
        'scheduler = "euler"\nfuse_qkv = true\n'
    )
    fused = Engine(Registry.from_toml(path))
    processors = {type(p).__name__ for p in fused.load().pipe.unet.attn_processors.values()}
    assert processors == {"FusedAttnProcessor2_0"}
    request = parse("a lighthouse --seed 3")
    difference = distance(fused.imagine(request).images[0], engine.imagine(request).images[0])
    assert difference < 1.0, "fusing the projections changes rounding only"
