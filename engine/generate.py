"""The engine: everything the buttons do, on any diffusers text-to-image model, with no Redis and no Discord.

    from engine.generate import Engine
    from engine.prompt import parse

    engine = Engine.from_env()                          # the model registry from DREAMLOOM_MODEL(S)
    grid = engine.imagine(parse("a lighthouse at dusk --ar 16:9 --seed 7"))
    grid.grid.save("grid.png")
    image = engine.separate(grid.grid, grid.recipe, 2)   # U2
    variations = engine.vary(image.images[0], image.recipe, strong=True)
    bigger = engine.upscale(image.images[0], image.recipe)

Each generative call reads like a recipe: check the input, plan (engine.plan), encode the prompt, prepare
the starting noise, denoise with progress and cancel checks, decode, then build the typed result. Follow-ups
start from an image and the recipe it was made with, and use the same model (by the recipe's alias).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline
from PIL import Image, ImageOps

from engine.callbacks import CancelCheck, ProgressCallback
from engine.canvas import UPSCALE_FACTOR, Canvas, pan_canvas, size_refusal, square_canvas, upscaled_size, zoom_canvas
from engine.conditioning import DEFAULT_EMBEDDING_CACHE_BYTES, encoder_for, generators, text_conditioning
from engine.errors import Cancelled, ConfigError, InvalidFollowUp, UnsafeImages
from engine.grid import compose_grid, separate
from engine.jobs import Action, PanDirection
from engine.latents import spatial_unpacker, starting_latents, truncated_schedule
from engine.loading import LoadedModel, ModelCache, library_versions, pick_device
from engine.patches import by_patches, patch_boxes
from engine.plan import GRID_SIZE, GenerationPlan, fit_size, image_prompts_used, plan_generation
from engine.previews import LatentPreviewer, StepReporter
from engine.prompt import MAX_SEED, ImagineRequest, check_limits
from engine.recipe import Recipe
from engine.registry import ModelEntry, Registry
from engine.results import GenerationResult, Timings
from engine.safety import Blocklist, ImageChecker
from engine.seamless import seamless
from engine.upscaling import RESAMPLE_METHOD, SuperResolution, resample

__all__ = ["Engine"]

log = logging.getLogger(__name__)

CREATIVE_STRENGTH = 0.35  # Upscale (Creative): how much img2img may change the 2x image


class Engine:
    """Renders grids and every follow-up. One instance per process; models load once and stay loaded."""

    def __init__(
        self,
        registry: Registry,
        *,
        device: str | torch.device | None = None,
        max_loaded: int = 2,
        blocklist: Blocklist | None = None,
        image_checker: ImageChecker | None = None,
        preview_every: int = 2,
        preview_size: int = 256,
        creative_strength: float = CREATIVE_STRENGTH,
        embedding_cache_bytes: int = DEFAULT_EMBEDDING_CACHE_BYTES,
    ) -> None:
        self.registry = registry
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.models = ModelCache(self.device, max_loaded, embedding_cache_bytes)
        self.blocklist = blocklist or Blocklist()
        self.image_checker = image_checker
        self.preview_every = preview_every
        self.preview_size = preview_size
        self.creative_strength = creative_strength
        self.versions = library_versions()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Engine:
        """Settings from the environment: the registry (DREAMLOOM_MODEL/DREAMLOOM_MODELS), DREAMLOOM_DEVICE,
        DREAMLOOM_BLOCKLIST, DREAMLOOM_PREVIEW_EVERY, DREAMLOOM_MAX_LOADED_MODELS and
        DREAMLOOM_EMBEDDING_CACHE_MB (each loaded model's cache of encoded prompts, in MiB)."""
        env = os.environ if environ is None else environ
        cache_mib = _int_setting(env, "DREAMLOOM_EMBEDDING_CACHE_MB", DEFAULT_EMBEDDING_CACHE_BYTES // 2**20)
        return cls(
            Registry.from_env(env),
            device=env.get("DREAMLOOM_DEVICE"),
            max_loaded=_int_setting(env, "DREAMLOOM_MAX_LOADED_MODELS", 2),
            blocklist=Blocklist.from_env(env),
            preview_every=_int_setting(env, "DREAMLOOM_PREVIEW_EVERY", 2),
            embedding_cache_bytes=cache_mib * 2**20,
        )

    def load_times(self) -> Mapping[str, float]:
        """Seconds each loaded model took to load, by alias."""
        return self.models.load_times()

    def load(self, model: str | None = None) -> LoadedModel:
        """The loaded model for an alias (None: the server default), loading it on first use."""
        return self.models.get(self.registry.resolve(model))

    # --- a new grid ------------------------------------------------------------------------------

    def imagine(
        self,
        request: ImagineRequest,
        *,
        seed: int | None = None,
        image_prompts: Sequence[Image.Image] | None = None,
        parent: str | None = None,
        parent_index: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> GenerationResult:
        """Four images in one batched call, and their 2x2 grid. ``image_prompts``: the request's image URLs,
        downloaded by the caller (the engine does no network I/O)."""
        entry = self.registry.resolve(request.model)
        return self._imagine(
            Action.IMAGINE, request, entry, seed, image_prompts, parent, parent_index, progress, cancel
        )

    def reroll(
        self,
        recipe: Recipe,
        *,
        request: ImagineRequest | None = None,
        seed: int | None = None,
        image_prompts: Sequence[Image.Image] | None = None,
        parent: str | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> GenerationResult:
        """🔄: the recipe's request (or a remixed one) with a new seed, on the same model."""
        request = dataclasses.replace(request or recipe.request, seed=None)
        entry = self._entry_for(recipe, request)
        seed = secrets.randbelow(MAX_SEED + 1) if seed is None else seed
        return self._imagine(Action.REROLL, request, entry, seed, image_prompts, parent, None, progress, cancel)

    # --- follow-ups of one image ------------------------------------------------------------------

    def separate(self, grid: Image.Image, recipe: Recipe, index: int, *, parent: str | None = None) -> GenerationResult:
        """U1-U4: image ``index`` (1-4) of a grid at the size it was rendered. No GPU work."""
        return separate(grid, recipe, index, parent, self.versions)

    def vary(
        self,
        image: Image.Image,
        recipe: Recipe,
        *,
        strong: bool = False,
        request: ImagineRequest | None = None,
        seed: int | None = None,
        parent: str | None = None,
        parent_index: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> GenerationResult:
        """V1-V4, Vary (Subtle/Strong): four img2img images from ``image``; ``request`` is a remixed prompt."""
        started = time.perf_counter()
        request = request or recipe.request
        entry = self._entry_for(recipe, request)
        strength = entry.variation_strength[1 if strong else 0]
        action = Action.VARY_STRONG if strong else Action.VARY_SUBTLE
        loaded, plan = self._prepare(request, entry, seed, cancel)
        size = self._working_size(image.size, entry)
        source = image.convert("RGB")
        if source.size != size:
            source = source.resize(size, Image.Resampling.LANCZOS)
        conditioning, notes, encode = self._condition(loaded, plan, GRID_SIZE)
        steps = _img2img_steps(plan.steps, strength)
        kwargs = {
            **conditioning,
            "image": [source] * GRID_SIZE,
            "strength": strength,
            "num_inference_steps": steps,
            "guidance_scale": plan.guidance_scale,
            "generator": generators(plan.image_seeds),
        }
        total = _steps_run(steps, strength)
        images, denoise, decode = self._run(loaded, loaded.img2img(), kwargs, total, progress, cancel, request.tile)
        finish_started = time.perf_counter()
        grid = compose_grid(images)
        settings = {**_plan_settings(plan), "width": size[0], "height": size[1], "strength": strength, "steps": steps}
        result_recipe = self._recipe(action, request, loaded, plan, settings, parent, parent_index)
        timings = _timings(started, encode, denoise, decode, finish_started)
        return GenerationResult(tuple(images), grid, result_recipe, timings, notes)

    def upscale(
        self,
        image: Image.Image,
        recipe: Recipe,
        *,
        creative: bool = False,
        seed: int | None = None,
        parent: str | None = None,
        parent_index: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> GenerationResult:
        """Upscale (Subtle): 2x by super-resolution when configured, else a careful resample.
        Upscale (Creative): 2x with img2img adding detail, in patches of the model's native size."""
        started = time.perf_counter()
        target = upscaled_size(image.size)
        if (reason := size_refusal("Upscaling", target)) is not None:
            raise InvalidFollowUp(reason)
        entry = self._entry_for(recipe, recipe.request)
        if creative:
            return self._upscale_creative(image, recipe, entry, seed, parent, parent_index, progress, cancel, started)
        if entry.upscaler is None:
            # No model: no GPU work, and the plan only supplies the seed that the recipe records.
            plan = plan_generation(recipe.request, entry.profile, seed)
            finish_started = time.perf_counter()
            upscaled = resample(image)
            settings = {"method": RESAMPLE_METHOD, "width": target[0], "height": target[1]}
            result_recipe = self._recipe(
                Action.UPSCALE_SUBTLE, recipe.request, None, plan, settings, parent, parent_index, recipe
            )
            note = (
                f"Upscaled with a {RESAMPLE_METHOD}: no super-resolution model is configured "
                f"(set `upscaler` for model '{entry.alias}' in the model registry)"
            )
            timings = _timings(started, 0.0, 0.0, 0.0, finish_started)
            return GenerationResult((upscaled,), None, result_recipe, timings, (note,))

        loaded, plan = self._prepare(recipe.request, entry, seed, cancel)
        upscaler = loaded.upscaler()
        assert upscaler is not None  # entry.upscaler is set
        sr = SuperResolution(upscaler, entry.upscaler)
        per_call = SuperResolution.STEPS
        calls = math.ceil(sr.patches_for(image) / 4)
        reporter = StepReporter(per_call, progress, cancel, overall=per_call * calls)

        def on_step(step: int, timestep: object, latents: object) -> None:
            reporter(sr.pipe, step, timestep, {"latents": latents})
            if step + 1 == per_call:  # a batch of patches is done; the next one continues the count
                reporter.offset += per_call

        denoise_started = time.perf_counter()
        with torch.inference_mode():
            upscaled = sr(image, text_conditioning(plan, 1).prompt[0], plan.seed, on_step)
        finish_started = time.perf_counter()
        self._check_images([upscaled])
        settings = {"method": sr.method, "width": target[0], "height": target[1], "steps": per_call}
        result_recipe = self._recipe(
            Action.UPSCALE_SUBTLE, recipe.request, loaded, plan, settings, parent, parent_index
        )
        timings = _timings(started, 0.0, finish_started - denoise_started, 0.0, finish_started)
        return GenerationResult((upscaled,), None, result_recipe, timings, (f"Upscaled with {sr.method}",))

    def zoom_out(
        self,
        image: Image.Image,
        recipe: Recipe,
        *,
        scale: float = 2.0,
        aspect: tuple[int, int] | None = None,
        seed: int | None = None,
        parent: str | None = None,
        parent_index: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> GenerationResult:
        """Zoom Out 2x / 1.5x / Custom (1.0-2.0, optionally a new --ar): the image shrinks into the middle of
        a canvas of the same area and the model paints the new border. Four results, as a grid."""
        canvas = zoom_canvas(image, scale, aspect)
        request = recipe.request if aspect is None else dataclasses.replace(recipe.request, aspect=aspect)
        settings = {"scale": scale, "aspect": list(aspect) if aspect else None}
        return self._outpaint(
            Action.ZOOM_OUT, canvas, settings, recipe, request, seed, parent, parent_index, progress, cancel
        )

    def pan(
        self,
        image: Image.Image,
        recipe: Recipe,
        direction: PanDirection | str,
        *,
        seed: int | None = None,
        parent: str | None = None,
        parent_index: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> GenerationResult:
        """⬅️ ➡️ ⬆️ ⬇️: extend the image by half its width or height, the original untouched."""
        try:
            direction = PanDirection(direction)
        except ValueError:
            raise InvalidFollowUp(f"Pan direction must be left, right, up or down (got {direction!r})") from None
        canvas = pan_canvas(image, direction)
        settings = {"direction": direction.value}
        request = recipe.request
        return self._outpaint(
            Action.PAN, canvas, settings, recipe, request, seed, parent, parent_index, progress, cancel
        )

    def make_square(
        self,
        image: Image.Image,
        recipe: Recipe,
        *,
        seed: int | None = None,
        parent: str | None = None,
        parent_index: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> GenerationResult:
        """Make Square: extend the shorter side until the image is square."""
        canvas = square_canvas(image)
        request = dataclasses.replace(recipe.request, aspect=(1, 1))
        return self._outpaint(
            Action.MAKE_SQUARE, canvas, {}, recipe, request, seed, parent, parent_index, progress, cancel
        )

    # --- the steps every generation shares --------------------------------------------------------

    def _imagine(
        self,
        action: Action,
        request: ImagineRequest,
        entry: ModelEntry,
        seed: int | None,
        image_prompts: Sequence[Image.Image] | None,
        parent: str | None,
        parent_index: int | None,
        progress: ProgressCallback | None,
        cancel: CancelCheck | None,
    ) -> GenerationResult:
        started = time.perf_counter()
        if image_prompts_used(request) and not image_prompts:
            raise ValueError("This request has image prompts: download its image_urls and pass them as image_prompts")
        loaded, plan = self._prepare(request, entry, seed, cancel)
        conditioning, notes, encode = self._condition(loaded, plan, GRID_SIZE)
        kwargs: dict[str, Any] = {**conditioning, "guidance_scale": plan.guidance_scale}
        stop_after = None
        settings = _plan_settings(plan)
        if image_prompts and plan.init_strength is not None and plan.init_strength < 1:
            pipe = loaded.img2img()
            steps = _img2img_steps(plan.steps, plan.init_strength)
            kwargs.update(
                image=[_blend(image_prompts, (plan.width, plan.height))] * GRID_SIZE,
                strength=plan.init_strength,
                num_inference_steps=steps,
                generator=generators(plan.image_seeds),
            )
            total = _steps_run(steps, plan.init_strength)
            settings["image_prompts"] = len(image_prompts)
        else:
            pipe = loaded.pipe
            kwargs.update(height=plan.height, width=plan.width, num_inference_steps=plan.steps)
            kwargs.update(self._noise(loaded, plan))
            total = plan.steps_run
            if plan.steps_run < plan.steps:
                schedule = truncated_schedule(pipe, plan.steps, plan.steps_run)
                if schedule is not None:
                    kwargs.pop("num_inference_steps")
                    kwargs.update(schedule)
                    settings["stop_method"] = "schedule truncated, last step to a clean image"
                else:
                    stop_after = plan.steps_run
                    settings["stop_method"] = "interrupted, decoded as it stood"
        images, denoise, decode = self._run(loaded, pipe, kwargs, total, progress, cancel, request.tile, stop_after)
        finish_started = time.perf_counter()
        grid = compose_grid(images)
        result_recipe = self._recipe(action, request, loaded, plan, settings, parent, parent_index)
        timings = _timings(started, encode, denoise, decode, finish_started)
        return GenerationResult(tuple(images), grid, result_recipe, timings, notes)

    def _upscale_creative(
        self,
        image: Image.Image,
        recipe: Recipe,
        entry: ModelEntry,
        seed: int | None,
        parent: str | None,
        parent_index: int | None,
        progress: ProgressCallback | None,
        cancel: CancelCheck | None,
        started: float,
    ) -> GenerationResult:
        loaded, plan = self._prepare(recipe.request, entry, seed, cancel)
        larger = resample(image)
        side = min(entry.native_size)
        overlap = max(entry.size_multiple, side // 8)
        boxes = patch_boxes(larger.size, side, overlap)
        strength = self.creative_strength
        steps = _img2img_steps(plan.steps, strength)
        per_call = _steps_run(steps, strength)
        overall = per_call * math.ceil(len(boxes) / GRID_SIZE)
        conditioning, notes, encode = self._condition(loaded, plan, GRID_SIZE)
        denoise_total, decode_total, steps_done = 0.0, 0.0, 0

        def process(patches: list[Image.Image]) -> list[Image.Image]:
            nonlocal denoise_total, decode_total, steps_done
            count = len(patches)
            kwargs = {
                **{name: value[:count] for name, value in conditioning.items()},
                "image": patches,
                "strength": strength,
                "num_inference_steps": steps,
                "guidance_scale": plan.guidance_scale,
                "generator": generators([plan.seed] * count),
            }
            images, denoise, decode = self._run(
                loaded,
                loaded.img2img(),
                kwargs,
                per_call,
                progress,
                cancel,
                False,
                None,
                steps_done,
                overall,
            )
            denoise_total += denoise
            decode_total += decode
            steps_done += per_call
            return images

        upscaled = by_patches(larger, side, overlap, process)
        finish_started = time.perf_counter()
        settings = {
            "method": f"img2img at {UPSCALE_FACTOR}x, strength {strength}, {len(boxes)} patches of {side}px",
            "width": larger.width,
            "height": larger.height,
            "strength": strength,
            "steps": steps,
        }
        result_recipe = self._recipe(
            Action.UPSCALE_CREATIVE, recipe.request, loaded, plan, settings, parent, parent_index
        )
        timings = _timings(started, encode, denoise_total, decode_total, finish_started)
        return GenerationResult((upscaled,), None, result_recipe, timings, notes)

    def _outpaint(
        self,
        action: Action,
        canvas: Canvas,
        settings: dict[str, Any],
        recipe: Recipe,
        request: ImagineRequest,
        seed: int | None,
        parent: str | None,
        parent_index: int | None,
        progress: ProgressCallback | None,
        cancel: CancelCheck | None,
    ) -> GenerationResult:
        started = time.perf_counter()
        entry = self._entry_for(recipe, request)
        loaded, plan = self._prepare(request, entry, seed, cancel)
        width, height = self._working_size(canvas.size, entry)
        conditioning, notes, encode = self._condition(loaded, plan, GRID_SIZE)
        kwargs = {
            **conditioning,
            "image": [canvas.image.resize((width, height), Image.Resampling.LANCZOS)] * GRID_SIZE,
            "mask_image": [canvas.mask.resize((width, height), Image.Resampling.NEAREST)] * GRID_SIZE,
            "height": height,
            "width": width,
            "strength": 1.0,
            "num_inference_steps": plan.steps,
            "guidance_scale": plan.guidance_scale,
            "generator": generators(plan.image_seeds),
        }
        images, denoise, decode = self._run(
            loaded, loaded.inpaint(), kwargs, plan.steps, progress, cancel, request.tile
        )
        finish_started = time.perf_counter()
        finished = [_composite(image, canvas) for image in images]
        grid = compose_grid(finished)
        full = {**_plan_settings(plan), **settings, "width": canvas.size[0], "height": canvas.size[1]}
        full["working_size"] = [width, height]
        result_recipe = self._recipe(action, request, loaded, plan, full, parent, parent_index)
        timings = _timings(started, encode, denoise, decode, finish_started)
        return GenerationResult(tuple(finished), grid, result_recipe, timings, notes)

    def _prepare(
        self, request: ImagineRequest, entry: ModelEntry, seed: int | None, cancel: CancelCheck | None
    ) -> tuple[LoadedModel, GenerationPlan]:
        """Check the request, load the model, make the plan."""
        check_limits(request)
        entry.check_supported(request)
        self.blocklist.check(request)
        if cancel is not None and cancel():
            raise Cancelled(0, 0)
        loaded = self.models.get(entry)
        return loaded, plan_generation(request, entry.profile, seed)

    def _condition(
        self, loaded: LoadedModel, plan: GenerationPlan, batch: int
    ) -> tuple[dict[str, Any], tuple[str, ...], float]:
        """Pipeline keyword arguments for the prompt, notes on anything approximated, and seconds spent."""
        started = time.perf_counter()
        encoder = encoder_for(loaded.pipe, loaded.embeddings)
        if encoder is not None:
            with torch.inference_mode():
                conditioning = encoder.condition(plan, batch)
            return conditioning.kwargs(), conditioning.notes, time.perf_counter() - started
        text = text_conditioning(plan, batch)
        notes = (f"Approximated for this model: {', '.join(text.approximated)}",) if text.approximated else ()
        return dict(text.kwargs()), notes, time.perf_counter() - started

    def _noise(self, loaded: LoadedModel, plan: GenerationPlan) -> dict[str, Any]:
        """Starting latents with --chaos's shared component, in the denoiser's latent layout (engine.latents);
        per-image generators for a layout it does not know (the pipeline then draws the noise itself)."""
        latents = starting_latents(loaded.pipe, plan)
        if latents is None:
            return {"generator": generators(plan.image_seeds)}
        return {"latents": latents.to(loaded.device, loaded.dtype)}

    def _run(
        self,
        loaded: LoadedModel,
        pipe: DiffusionPipeline,
        kwargs: dict[str, Any],
        total: int,
        progress: ProgressCallback | None,
        cancel: CancelCheck | None,
        seamless_edges: bool,  # --tile
        stop_after: int | None = None,
        offset: int = 0,
        overall: int | None = None,
    ) -> tuple[list[Image.Image], float, float]:
        """Denoise and decode with progress, previews and cancel checks. Returns images, denoise and decode seconds."""
        unpack = spatial_unpacker(pipe, _output_size(kwargs))
        previewer = LatentPreviewer(loaded.entry.preview_factors, loaded.preview_decoder(), self.preview_size, unpack)
        reporter = StepReporter(total, progress, cancel, previewer, self.preview_every, stop_after, offset, overall)
        with seamless((loaded.denoiser, loaded.pipe.vae), seamless_edges), torch.inference_mode():
            begun = time.perf_counter()
            output = pipe(**kwargs, callback_on_step_end=reporter, output_type="pil")
            ended = time.perf_counter()
        last_step = reporter.last_step_at or begun
        images = list(output.images)
        self._check_images(images, getattr(output, "nsfw_content_detected", None))
        return images, last_step - begun, ended - last_step

    def _check_images(self, images: Sequence[Image.Image], flagged: Sequence[bool] | None = None) -> None:
        flags = [bool(f) for f in flagged] if flagged else [False] * len(images)
        if self.image_checker is not None:
            flags = [a or bool(b) for a, b in zip(flags, self.image_checker(images), strict=True)]
        if any(flags):
            raise UnsafeImages(
                f"The safety checker withheld {sum(flags)} of {len(flags)} images; try a different prompt or seed"
            )

    def _entry_for(self, recipe: Recipe, request: ImagineRequest) -> ModelEntry:
        """A follow-up runs on its parent's model, unless a remixed request picks another with --v/--niji."""
        if request.model != recipe.request.model:
            return self.registry.resolve(request.model)
        return self.registry.resolve(recipe.model.alias)

    @staticmethod
    def _working_size(size: tuple[int, int], entry: ModelEntry) -> tuple[int, int]:
        """The size to run the model at for an image of ``size``: itself when the model can take it as is,
        else the same shape fitted to the model's native area."""
        width, height = size
        multiple = entry.size_multiple
        native_area = entry.native_size[0] * entry.native_size[1]
        if width % multiple == 0 and height % multiple == 0 and width * height <= native_area:
            return size
        return fit_size((width, height), entry.native_size, multiple)

    def _recipe(
        self,
        action: Action,
        request: ImagineRequest,
        loaded: LoadedModel | None,
        plan: GenerationPlan,
        settings: dict[str, Any],
        parent: str | None,
        parent_index: int | None,
        source: Recipe | None = None,
    ) -> Recipe:
        model = loaded.record if loaded is not None else source.model if source is not None else None
        if model is None:
            raise ValueError("a recipe needs the model it was made with")
        return Recipe(
            action=action,
            request=request,
            model=model,
            seed=plan.seed,
            image_seeds=plan.image_seeds,
            settings=settings,
            parent=parent,
            parent_index=parent_index,
            versions=self.versions,
        )


def _plan_settings(plan: GenerationPlan) -> dict[str, Any]:
    settings = dataclasses.asdict(plan)
    settings.pop("seed")
    settings.pop("image_seeds")
    return settings


def _img2img_steps(steps: int, strength: float) -> int:
    """Enough schedule steps that img2img runs at least one (turbo models default to a single step)."""
    return max(steps, math.ceil(1 / strength))


def _steps_run(steps: int, strength: float) -> int:
    """How many steps diffusers' img2img runs for a schedule of ``steps`` at ``strength``."""
    return min(int(steps * strength), steps)


def _output_size(kwargs: Mapping[str, Any]) -> tuple[int, int] | None:
    """The (width, height) a pipeline call renders: its size arguments, else its starting image's size."""
    if "width" in kwargs and "height" in kwargs:
        return int(kwargs["width"]), int(kwargs["height"])
    images = kwargs.get("image")
    return images[0].size if images else None


def _blend(images: Sequence[Image.Image], size: tuple[int, int]) -> Image.Image:
    """Image prompts, each cropped to ``size``'s shape and resized, averaged into one starting image."""
    fitted = [ImageOps.fit(image.convert("RGB"), size, Image.Resampling.LANCZOS) for image in images]
    arrays = [np.asarray(image, dtype=np.float32) for image in fitted]
    return Image.fromarray(np.mean(arrays, axis=0).round().astype(np.uint8))


def _composite(image: Image.Image, canvas: Canvas) -> Image.Image:
    """A generated canvas at full size with the original pasted back exactly where it was."""
    full = image.resize(canvas.size, Image.Resampling.LANCZOS) if image.size != canvas.size else image.copy()
    full.paste(canvas.original, canvas.box[:2])
    return full


def _timings(started: float, encode: float, denoise: float, decode: float, finish_started: float) -> Timings:
    now = time.perf_counter()
    return Timings(encode=encode, denoise=denoise, decode=decode, finish=now - finish_started, total=now - started)


def _int_setting(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (got {value!r})") from None
