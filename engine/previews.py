"""Live progress: a per-step callback that reports ``(step, total, preview)``, checks for cancellation and
makes small previews cheaply, without a full VAE decode.

Previews come from the registry entry's tiny autoencoder when one is configured (``preview_decoder``),
else from a linear latent-to-RGB approximation for the model family (SD 1.x/2.x, SDXL, SD3, FLUX and demo
factors; other latent layouts are shown from their first three channels). FLUX's packed latents are unpacked
to their spatial layout first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
    # SD3 and FLUX: 16 latent channels (the fits ComfyUI's latent_formats.py ships).
    "sd3": (
        [
            [-0.0922, -0.0175, 0.0749],
            [0.0311, 0.0633, 0.0954],
            [0.1994, 0.0927, 0.0458],
            [0.0856, 0.0339, 0.0902],
            [0.0587, 0.0272, -0.0496],
            [-0.0006, 0.1104, 0.0309],
            [0.0978, 0.0306, 0.0427],
            [-0.0042, 0.1038, 0.1358],
            [-0.0194, 0.0020, 0.0669],
            [-0.0488, 0.0130, -0.0268],
            [0.0922, 0.0988, 0.0951],
            [-0.0278, 0.0524, -0.0542],
            [0.0332, 0.0456, 0.0895],
            [-0.0069, -0.0030, -0.0810],
            [-0.0596, -0.0465, -0.0293],
            [-0.1448, -0.1463, -0.1189],
        ],
        [0.2394, 0.2135, 0.1925],
    ),
    "flux": (
        [
            [-0.0346, 0.0244, 0.0681],
            [0.0034, 0.0210, 0.0687],
            [0.0275, -0.0668, -0.0433],
            [-0.0174, 0.0160, 0.0617],
            [0.0859, 0.0721, 0.0329],
            [0.0004, 0.0383, 0.0115],
            [0.0405, 0.0861, 0.0915],
            [-0.0236, -0.0185, -0.0259],
            [-0.0245, 0.0250, 0.1180],
            [0.1008, 0.0755, -0.0421],
            [-0.0515, 0.0201, 0.0011],
            [0.0428, -0.0012, -0.0036],
            [0.0817, 0.0765, 0.0749],
            [-0.1264, -0.0522, -0.1103],
            [-0.0280, -0.0881, -0.0499],
            [-0.1262, -0.0982, -0.0778],
        ],
        [-0.0329, -0.0718, -0.0851],
    ),
    # dreamloom's demo model (engine/models/demo): printed by ``python -m devtools.demo.train`` at export.
    "demo": (
        [[-0.0914, 0.1397, 0.4229], [-0.1576, -0.5858, 0.2221], [0.6559, 0.1642, 1.1337], [0.1481, -0.3833, -0.5212]],
        [-0.1283, 0.5978, -0.2662],
    ),
}


class LatentPreviewer:
    """Latents (B, C, h, w) -> a small 2x2 (or 1-image) preview, at most ``size`` pixels on its longer side.
    ``unpack`` turns a packed layout (FLUX's token sequence) into (B, C, h, w) first."""

    def __init__(
        self,
        factors: str,
        decoder: Any = None,
        size: int = 256,
        unpack: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.factors = _LATENT_RGB.get(factors)
        self.decoder = decoder
        self.size = size
        self.unpack = unpack

    @torch.inference_mode()
    def __call__(self, latents: torch.Tensor) -> Image.Image | None:
        if latents.dim() != 4 and self.unpack is not None:
            latents = self.unpack(latents)
        if latents.dim() != 4:
            return None  # a packed layout that nothing here unpacks
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
