"""SD3 and FLUX honour every parameter as SD 1.5 and SDXL do, or refuse it by name: tiny pipelines of both built
from configs, loaded through the real registry and loading code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import PromptError
from engine.generate import Engine
from engine.latents import spatial_unpacker, starting_latents, truncated_schedule
from engine.plan import plan_generation
from engine.prompt import parse
from engine.registry import Registry

FAMILIES = {"sd3": "3", "flux": "7"}  # family -> the --v that picks its tiny model


@pytest.fixture(scope="module")
def dit_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """One engine serving a tiny SD3 (--v 3, the default) and a tiny FLUX (--v 7), 2 steps each."""
    from devtools.tiny_pipelines import save_tiny_pipeline

    root = tmp_path_factory.mktemp("dit-models")
    toml = ""
    for family, version in FAMILIES.items():
        folder = save_tiny_pipeline(root / f"tiny-{family}", family)
        toml += (
            f'[models.{family}]\nsource = "{folder}"\nfamily = "{family}"\naliases = ["{version}"]\n'
            "steps = 2\nnative_size = [64, 64]\nsize_multiple = 16\n\n"
        )
    path = root / "models.toml"
    path.write_text(toml)
    return Engine(Registry.from_toml(path), preview_every=1, preview_size=64)


def imagine(engine: Engine, family: str, text: str, **kwargs):
    return engine.imagine(parse(f"{text} --v {FAMILIES[family]}"), **kwargs)


def spread(images: tuple[Image.Image, ...]) -> float:
    arrays = [np.asarray(image, dtype=np.float64) for image in images]
    return float(np.mean([np.abs(arrays[i] - arrays[j]).mean() for i in range(4) for j in range(i + 1, 4)]))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_parameter_changes_the_picture(dit_engine, family):
    """--chaos, --weird, --no, :: weights and --stop each change the picture as on SD 1.5/SDXL; the plain run
    shows previews of its latents (FLUX's unpacked from its token sequence) at every step but the last."""
    previews: list[Image.Image | None] = []
    plain = imagine(dit_engine, family, "a red bird --seed 2", progress=lambda _s, _t, p: previews.append(p))
    assert plain.recipe.model.family == family
    assert len(plain.images) == 4
    assert plain.notes == ()
    assert previews[-1] is None
    assert all(p is not None for p in previews[:-1])
    assert len(previews) == 2
    first = previews[0]
    assert first is not None
    assert first.size == (64, 64), "a 2x2 grid of 32x32 latents"
    assert np.asarray(first).std() > 0, "not a blank picture"

    reports: list[tuple[int, int]] = []
    stopped = imagine(
        dit_engine, family, "a red bird --seed 2 --stop 50", progress=lambda s, t, _: reports.append((s, t))
    )
    assert stopped.recipe.settings["stop_method"] == "schedule truncated, last step to a clean image"
    assert reports == [(1, 1)], "one of the two steps runs"
    chaotic = imagine(dit_engine, family, "a red bird --seed 2 --c 100")
    assert spread(chaotic.images) > spread(plain.images), "--chaos 100: the four share no starting noise"
    without = imagine(dit_engine, family, "a red bird --seed 2 --no cars")
    if family == "sd3":
        assert without.recipe.settings["negative_prompt"] == "cars"
        assert without.notes == ()
    else:
        assert without.recipe.settings["negative_prompt"] is None, "FLUX's guidance is distilled: no negative prompt"
        assert without.recipe.settings["push_away"] == "cars"
        assert without.notes == ()
    changed = [stopped, chaotic, without]
    changed += [
        imagine(dit_engine, family, text) for text in ("a red bird --seed 2 --w 3000", "a red bird::2 a tree --seed 2")
    ]
    for result in changed:
        assert result.images[1].tobytes() != plain.images[1].tobytes(), result.recipe.request.text


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_truncated_schedule_is_the_full_one_cut_short(dit_engine, family):
    """The sigmas --stop passes go through the scheduler's shift (FLUX's depends on the image size, mu) exactly
    as the full run's do, so the steps that run are the full run's first steps, then one to sigma 0."""
    pipe = dit_engine.load(FAMILIES[family]).pipe
    scheduler = pipe.scheduler
    mu = {"mu": 0.8} if scheduler.config.use_dynamic_shifting else {}
    schedule = truncated_schedule(pipe, 8, 3)
    assert schedule is not None
    assert set(schedule) == {"sigmas"}
    if family == "flux":
        scheduler.set_timesteps(sigmas=list(np.linspace(1.0, 1 / 8, 8)), **mu)
    else:
        scheduler.set_timesteps(8, **mu)
    full = scheduler.sigmas.clone()
    scheduler.set_timesteps(sigmas=schedule["sigmas"], **mu)
    assert torch.allclose(scheduler.sigmas[:3], full[:3])
    assert scheduler.sigmas[3] == 0


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_chaos_shares_starting_noise_in_the_model_s_latent_layout(dit_engine, family):
    pipe = dit_engine.load(FAMILIES[family]).pipe
    profile = dit_engine.registry.resolve(FAMILIES[family]).profile

    def correlation(text: str) -> float:
        latents = starting_latents(pipe, plan_generation(parse(text), profile, seed=5))
        assert latents is not None
        unpack = spatial_unpacker(pipe, (64, 64))
        spatial = (unpack(latents) if unpack else latents).flatten(1)
        assert spatial.shape[0] == 4
        return float(torch.corrcoef(spatial)[0, 1])

    assert correlation("x --c 0") == pytest.approx(0.4, abs=0.1), "--chaos 0: the four share 40 % of their noise"
    assert correlation("x --c 100") == pytest.approx(0.0, abs=0.1)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tile_is_refused_by_name(dit_engine, family):
    """Refused by the registry entry (torch-free: a front door can refuse before a job exists) and by the engine."""
    entry = dit_engine.registry.resolve(FAMILIES[family])
    message = rf"--tile is not available on model '{family}' \({family}\): its transformer has no convolutions"
    with pytest.raises(PromptError, match=message) as refused:
        entry.check_supported(parse("a pattern --tile"))
    assert refused.value.param == "--tile"
    with pytest.raises(PromptError, match=message):
        imagine(dit_engine, family, "a pattern --tile")
    entry.check_supported(parse("a pattern"))


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_follow_ups_run_on_the_same_model(dit_engine, family):
    grid = imagine(dit_engine, family, "a red bird --seed 6 --no cars --c 50 --w 500")
    image = dit_engine.separate(grid.grid, grid.recipe, 2)
    varied = dit_engine.vary(image.images[0], image.recipe)
    zoomed = dit_engine.zoom_out(image.images[0], image.recipe)
    for result in (varied, zoomed):
        assert len(result.images) == 4
        assert result.recipe.model.family == family
