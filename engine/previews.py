"""Live progress: a per-step callback that reports ``(step, total, preview)``, checks for cancellation and
makes small previews cheaply, without a full VAE decode.

Previews come from the registry entry's tiny autoencoder when one is configured (``preview_decoder``),
else from a linear latent-to-RGB approximation for the model family (SD 1.x/2.x, SDXL and demo factors; other
latent layouts are shown from their first three channels).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from PIL import Image

from engine.callbacks import CancelCheck, ProgressCallback
from engine.errors import Cancelled
from engine.grid import compose_grid

__all__ = ["LatentPreviewer", "StepReporter"]

# Least-squares fits of RGB from latents, as used by several open-source UIs for step previews.
_LATENT_RGB: dict[str, tuple[list[list[float]], list[float]]] = {
    "sd": (
        [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]],
        [0.0, 0.0, 0.0],
    ),
    "sdxl": (
        [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]],
        [0.1084, -0.0175, -0.0011],
    ),
    # dreamloom's demo model (engine/models/demo): printed by ``python -m devtools.demo.train`` at export.
    "demo": (
        [[-0.0914, 0.1397, 0.4229], [-0.1576, -0.5858, 0.2221], [0.6559, 0.1642, 1.1337], [0.1481, -0.3833, -0.5212]],
        [-0.1283, 0.5978, -0.2662],
    ),
}


class LatentPreviewer:
    """Latents (B, C, h, w) -> a small 2x2 (or 1-image) preview, at most ``size`` pixels on its longer side."""

    def __init__(self, factors: str, decoder: Any = None, size: int = 256) -> None:
        self.factors = _LATENT_RGB.get(factors)
        self.decoder = decoder
        self.size = size

    @torch.inference_mode()
    def __call__(self, latents: torch.Tensor) -> Image.Image | None:
        if latents.dim() != 4:
            return None  # packed latents (FLUX) have no spatial layout to show
        if self.decoder is not None:
            rgb = self.decoder.decode(latents.to(self.decoder.dtype)).sample.float().clamp(-1, 1) * 0.5 + 0.5
        elif self.factors is not None and latents.shape[1] == len(self.factors[0]):
            weight = torch.tensor(self.factors[0], dtype=torch.float32, device=latents.device)
            bias = torch.tensor(self.factors[1], dtype=torch.float32, device=latents.device)
            rgb = torch.einsum("bchw,cr->brhw", latents.float(), weight) + bias.view(1, 3, 1, 1)
            rgb = (rgb.clamp(-1, 1) + 1) / 2
        else:
            first = latents[:, :3].float()
            low, high = first.amin(dim=(1, 2, 3), keepdim=True), first.amax(dim=(1, 2, 3), keepdim=True)
            rgb = (first - low) / (high - low).clamp_min(1e-6)
        arrays = (rgb.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
        images = [Image.fromarray(a) for a in arrays]
        preview = compose_grid(images) if len(images) == 4 else images[0]
        preview.thumbnail((self.size, self.size), Image.Resampling.BILINEAR)
        return preview


class StepReporter:
    """The ``callback_on_step_end`` of a diffusers pipeline call: progress, previews, cancel and ``--stop``."""

    def __init__(
        self,
        total: int,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
        previewer: LatentPreviewer | None = None,
        preview_every: int = 1,
        stop_after: int | None = None,
        offset: int = 0,
        overall: int | None = None,
    ) -> None:
        self.total = total
        self.progress = progress
        self.cancel = cancel
        self.previewer = previewer
        self.preview_every = max(1, preview_every)
        self.stop_after = stop_after  # interrupt after this many steps (for schedulers without custom timesteps)
        self.offset = offset  # steps already done by earlier calls of the same job (tiled work)
        self.overall = overall or total
        self.steps_done = 0
        self.last_step_at: float | None = None

    def __call__(self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.steps_done = step + 1
        self.last_step_at = time.perf_counter()
        done = self.offset + self.steps_done
        if self.cancel is not None and self.cancel():
            raise Cancelled(done, self.overall)
        if self.stop_after is not None and self.steps_done >= self.stop_after:
            pipe._interrupt = True  # the pipeline skips the remaining steps and decodes what it has
        if self.progress is not None:
            preview = None
            final = self.steps_done >= (self.stop_after or self.total)
            if self.previewer is not None and not final and self.steps_done % self.preview_every == 0:
                preview = self.previewer(kwargs["latents"])
            self.progress(done, self.overall, preview)
        return kwargs
