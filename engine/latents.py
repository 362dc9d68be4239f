"""The latent layouts of the denoisers, and the schedules they take: what ``--chaos``, ``--stop`` and the
previews need to know about a family's pipeline.

- a UNet (SD 1.x/2.x, SDXL) and SD3's transformer denoise latents of shape (B, C, h, w);
- FLUX packs each 2x2 patch of its (B, C, h, w) latents into one token: (B, h/2 * w/2, 4C). Starting noise is
  drawn in the spatial layout (so --chaos's shared component means the same thing in every family) and then
  packed; previews unpack.

``--stop`` truncates the noise schedule and lets the last step land on a clean image. UNet pipelines take the
truncated schedule as ``timesteps``; the flow-matching pipelines (SD3, FLUX) take no timesteps, but take
``sigmas``, which their scheduler shifts as it shifts its own (FLUX's shift depends on the image size, ``mu``,
which the pipeline computes from the packed sequence length itself).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from diffusers import (
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
    FluxImg2ImgPipeline,
    FluxInpaintPipeline,
    FluxPipeline,
    StableDiffusion3Pipeline,
)

from engine.conditioning import starting_noise
from engine.plan import GenerationPlan

__all__ = ["spatial_unpacker", "starting_latents", "truncated_schedule"]

_FLUX_PIPELINES = (FluxPipeline, FluxImg2ImgPipeline, FluxInpaintPipeline)


def starting_latents(pipe: DiffusionPipeline, plan: GenerationPlan) -> torch.Tensor | None:
    """The plan's four starting noises (CPU, float32) in ``pipe``'s latent layout; None for a layout not known
    here (the pipeline then draws per-image noise from the generators, and --chaos shares none of it)."""
    factor = pipe.vae_scale_factor
    unet = getattr(pipe, "unet", None)
    if unet is not None:
        return starting_noise(plan, (unet.config.in_channels, plan.height // factor, plan.width // factor))
    if isinstance(pipe, StableDiffusion3Pipeline):
        channels = pipe.transformer.config.in_channels
        return starting_noise(plan, (channels, plan.height // factor, plan.width // factor))
    if isinstance(pipe, FluxPipeline):
        channels = pipe.transformer.config.in_channels // 4
        height, width = 2 * (plan.height // (factor * 2)), 2 * (plan.width // (factor * 2))
        noise = starting_noise(plan, (channels, height, width))
        packed: torch.Tensor = pipe._pack_latents(noise, noise.shape[0], channels, height, width)
        return packed
    return None


def spatial_unpacker(
    pipe: DiffusionPipeline, size: tuple[int, int] | None
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """For FLUX pipelines rendering ``size`` (width, height): packed latents -> (B, C, h, w). None otherwise
    (their latents are spatial already)."""
    if size is None or not isinstance(pipe, _FLUX_PIPELINES):
        return None
    width, height = size
    factor = pipe.vae_scale_factor

    def unpack(latents: torch.Tensor) -> torch.Tensor:
        spatial: torch.Tensor = pipe._unpack_latents(latents, height, width, factor)
        return spatial

    return unpack


def truncated_schedule(pipe: DiffusionPipeline, steps: int, steps_run: int) -> dict[str, Any] | None:
    """--stop: pipeline arguments that run the first ``steps_run`` steps of the ``steps``-step schedule and land
    the last one on a clean (blurrier) image; None when the pipeline cannot take a custom schedule (the engine
    then interrupts the run and decodes the latents as they stand)."""
    scheduler = pipe.scheduler
    accepted = inspect.signature(pipe.__call__).parameters
    if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
        if "sigmas" not in accepted or scheduler.config.get("use_flow_sigmas"):
            return None
        return {"sigmas": [float(s) for s in _flow_sigmas(pipe, steps)[:steps_run]]}
    if "timesteps" not in accepted or "timesteps" not in inspect.signature(scheduler.set_timesteps).parameters:
        return None
    if getattr(scheduler, "order", 1) != 1:
        return None
    scheduler.set_timesteps(steps, device="cpu")
    return {"timesteps": [int(t) for t in scheduler.timesteps[:steps_run]]}


def _flow_sigmas(pipe: DiffusionPipeline, steps: int) -> np.ndarray:
    """The unshifted sigmas a flow-matching pipeline uses for ``steps`` steps when given none (the scheduler
    shifts what it is given in the same way, so a prefix of these is a prefix of the full run)."""
    if isinstance(pipe, _FLUX_PIPELINES):
        return np.linspace(1.0, 1 / steps, steps)
    scheduler = pipe.scheduler
    start, end = scheduler._sigma_to_t(scheduler.sigma_max), scheduler._sigma_to_t(scheduler.sigma_min)
    sigmas: np.ndarray = np.linspace(start, end, steps) / scheduler.config.num_train_timesteps
    return sigmas
