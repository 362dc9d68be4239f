"""Imagine and every follow-up on one device, in each of its half precisions: part one of ``dreamloom bench gpu``.

The engine's tests run on a CPU in float32; a GPU worker runs the same code in float16 or bfloat16 on CUDA,
where other things go wrong: a tensor left on the CPU, a generator on the wrong device, an fp16 overflow
that decodes to black. This check loads the tiny pipelines (SD 1.5 with an x4 upscaler and a preview
decoder, and SDXL) on the device in each dtype, renders a grid, and runs every entry of
``engine.actions.ACTIONS`` from it the way a worker does (``spec.run(engine, work)``), so a new follow-up is
checked as soon as it is in the table. Forward hooks on every network (text encoders, denoiser, VAE
encoder and decoder, upscaler, preview decoder) catch a NaN or infinity where it appears, before it is
rounded into a black picture.

    rows = check_engine("cuda", ("fp16", "bf16"), Path("/tmp/gpu-check"), print)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from devtools.bench.engine_speed import CONFIGS, model_folder
from devtools.tiny_pipelines import save_tiny_preview_decoder, save_tiny_upscaler
from engine.actions import ACTIONS, FollowUpOptions, ResultKind, Work, check_follow_up
from engine.generate import Engine
from engine.jobs import Action, PanDirection
from engine.loading import LoadedModel
from engine.prompt import parse
from engine.registry import Registry
from engine.results import GenerationResult

__all__ = ["DTYPES", "MODELS", "ActionRow", "check_engine", "tiny_models"]

DTYPES = {"cuda": ("fp16", "bf16"), "cpu": ("fp32",)}  # what a worker on each kind of device runs in
MODELS = ("v6", "niji")  # tiny SD 1.5 (with upscaler and previews) and tiny SDXL
PROMPT = "a lighthouse at dusk --ar 16:9 --seed 7"  # not square, so Make Square has work to do
OPTIONS = {
    Action.ZOOM_OUT: FollowUpOptions(scale=1.5),
    Action.PAN: FollowUpOptions(direction=PanDirection.LEFT),
}
MIN_SPREAD = 0.5  # below this (0-255) an image is one flat colour: not drawn


@dataclass(frozen=True)
class ActionRow:
    """One engine call on the device."""

    dtype: str
    model: str
    action: str
    seconds: float
    images: int
    width: int
    height: int
    grid: bool  # a grid image came with the result
    finite: bool  # every network's every output was free of NaN and infinity
    spread_min: float  # the smallest standard deviation of an image's pixels (0-255)
    steps: int  # progress reports
    previews: int  # of which carried a preview image
    ok: bool
    problem: str = ""


def tiny_models(workdir: Path, device: str) -> dict[str, Path]:
    """The tiny pipelines under ``workdir`` (built on first use; ``bench engine``'s tiny configs reuse them)."""
    upscaler, taesd = workdir / "tiny-x4-upscaler", workdir / "tiny-taesd"
    if not (upscaler / "model_index.json").exists():
        save_tiny_upscaler(upscaler)
    if not (taesd / "config.json").exists():
        save_tiny_preview_decoder(taesd)
    return {
        "sd15": model_folder(CONFIGS["tiny"], workdir, device),
        "sdxl": model_folder(CONFIGS["tiny-sdxl"], workdir, device),
        "upscaler": upscaler,
        "taesd": taesd,
    }


def tiny_registry(models: dict[str, Path], dtype: str, steps: int = 4, upscaler: bool = True) -> Registry:
    """v6 (SD 1.5 with previews, and the x4 upscaler unless ``upscaler`` is False) and niji (SDXL)."""
    tiny = {"native_size": [64, 64], "size_multiple": 16, "scheduler": "euler", "steps": steps, "dtype": dtype}
    v6 = {"source": str(models["sd15"]), "family": "sd15", "preview_decoder": str(models["taesd"]), **tiny}
    if upscaler:
        v6["upscaler"] = str(models["upscaler"])
    niji = {"source": str(models["sdxl"]), "family": "sdxl", **tiny}
    return Registry.from_mapping({"default": "v6", "models": {"v6": v6, "niji": niji}}, "the GPU check's tiny models")


class FiniteWatch:
    """Forward hooks that note every module whose output holds a NaN or an infinity."""

    def __init__(self) -> None:
        self.bad: list[str] = []
        self._watched: set[int] = set()

    def watch_model(self, loaded: LoadedModel) -> None:
        pipelines = {"": loaded.pipe, "upscaler.": loaded.upscaler()}
        for prefix, pipe in pipelines.items():
            if pipe is None:
                continue
            for name in ("text_encoder", "text_encoder_2", "unet", "transformer"):
                self._watch(prefix + name, getattr(pipe, name, None))
            vae = getattr(pipe, "vae", None)
            if vae is not None:
                self._watch(prefix + "vae.encoder", getattr(vae, "encoder", None))
                self._watch(prefix + "vae.decoder", getattr(vae, "decoder", None))
        self._watch("preview_decoder", loaded.preview_decoder())

    def _watch(self, name: str, module: Any) -> None:
        if not isinstance(module, torch.nn.Module) or id(module) in self._watched:
            return
        self._watched.add(id(module))

        def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
            if any(not bool(torch.isfinite(t).all()) for t in _tensors(output) if t.is_floating_point()):
                self.bad.append(name)

        module.register_forward_hook(hook)


def _tensors(output: Any) -> Iterator[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, dict):  # diffusers' and transformers' ModelOutput are ordered dicts
        for value in output.values():
            yield from _tensors(value)
    elif isinstance(output, list | tuple):
        for value in output:
            yield from _tensors(value)
    elif hasattr(output, "sample") and isinstance(output.sample, torch.Tensor):  # e.g. DecoderOutput
        yield output.sample


def check_engine(
    device: str,
    dtypes: Sequence[str],
    workdir: Path,
    log: Callable[[str], None],
    follow_ups: Sequence[str] = MODELS,
    light: bool = False,
) -> Iterator[ActionRow]:
    """Imagine on every tiny model in every dtype, and every follow-up on the models in ``follow_ups``;
    yields one row per engine call as it finishes. ``light``: 2 steps and no super-resolution model (Upscale
    (Subtle) resamples), for a CPU."""
    models = tiny_models(workdir, device)
    for dtype in dtypes:
        registry = tiny_registry(models, dtype, steps=2 if light else 4, upscaler=not light)
        engine = Engine(registry, device=device, max_loaded=len(MODELS), preview_every=1)
        watch = FiniteWatch()
        for alias in MODELS:
            log(f"engine check: {alias} in {dtype} on {device}")
            watch.watch_model(engine.load(alias))
            yield from _actions(engine, alias, dtype, watch, every=alias in follow_ups)


def _actions(engine: Engine, alias: str, dtype: str, watch: FiniteWatch, every: bool) -> Iterator[ActionRow]:
    request = parse(f"{PROMPT} --v 6" if alias == "v6" else f"{PROMPT} --niji")
    grid: GenerationResult | None = None
    single: GenerationResult | None = None
    for action, spec in ACTIONS.items():
        options = OPTIONS.get(action, FollowUpOptions())
        if action is Action.IMAGINE:
            work = Work(request=request, seed=7)
        elif action is Action.REROLL or action is Action.SEPARATE:
            assert grid is not None  # IMAGINE comes first in the table
            check_follow_up(ResultKind.GRID, None, action, 2 if spec.picks_image else None, options)
            work = Work(request=spec.request_for(grid.recipe.request, options), seed=11, parent="grid", index=2,
                        image=grid.images[1], recipe=grid.recipe)  # fmt: skip
        else:
            assert single is not None  # SEPARATE comes before the follow-ups of one image
            image = single.images[0]
            check_follow_up(ResultKind.SINGLE, image.size, action, None, options)
            work = Work(request=spec.request_for(single.recipe.request, options), seed=13, parent="single",
                        image=image, recipe=single.recipe, options=options)  # fmt: skip
        row, result = _run(engine, spec.run, work, alias, dtype, action, spec.makes, watch)
        yield row
        if action is Action.IMAGINE:
            grid = result
        elif action is Action.SEPARATE:
            single = result
        if not every or (result is None and action in (Action.IMAGINE, Action.SEPARATE)):
            return  # imagine alone, or nothing to follow up


def _run(
    engine: Engine,
    run: Callable[[Engine, Work], GenerationResult],
    work: Work,
    alias: str,
    dtype: str,
    action: Action,
    makes: ResultKind,
    watch: FiniteWatch,
) -> tuple[ActionRow, GenerationResult | None]:
    reports: list[bool] = []

    def progress(step: int, total: int, preview: Image.Image | None) -> None:
        reports.append(preview is not None)

    work = dataclasses.replace(work, progress=progress)
    before = len(watch.bad)
    started = time.perf_counter()
    try:
        result = run(engine, work)
    except Exception as exc:  # reported as the row's problem: the check goes on with the next action
        row = ActionRow(dtype, alias, action.value, time.perf_counter() - started, 0, 0, 0, False, True, 0.0,
                        len(reports), sum(reports), False, f"{type(exc).__name__}: {exc}")  # fmt: skip
        return row, None
    seconds = time.perf_counter() - started
    images = list(result.images)
    bad = sorted(set(watch.bad[before:]))
    spread = min(float(np.asarray(image, dtype=np.float32).std()) for image in images) if images else 0.0
    problems = []
    if bad:
        problems.append(f"NaN or infinity out of {', '.join(bad)}")
    expected = 4 if makes is ResultKind.GRID else 1
    if len(images) != expected or (result.grid is not None) != (makes is ResultKind.GRID):
        problems.append(f"{len(images)} images (grid: {result.grid is not None}); expected {expected}")
    if spread < MIN_SPREAD:
        problems.append(f"an image is one flat colour (pixel spread {spread:.2f})")
    width, height = images[0].size if images else (0, 0)
    row = ActionRow(dtype, alias, action.value, seconds, len(images), width, height, result.grid is not None,
                    not bad, spread, len(reports), sum(reports), not problems, "; ".join(problems))  # fmt: skip
    return row, result
