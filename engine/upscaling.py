"""Upscale (Subtle): a super-resolution pipeline when the registry entry names one, else a careful resample.

Super-resolution runs diffusers' upscaler pipelines (``StableDiffusionUpscalePipeline``, x4, or
``StableDiffusionLatentUpscalePipeline``, x2) over overlapping patches, then brings the result to exactly 2x.
"""

from __future__ import annotations

from collections.abc import Callable

from diffusers import DiffusionPipeline, StableDiffusionLatentUpscalePipeline, StableDiffusionUpscalePipeline
from PIL import Image, ImageFilter

from engine.canvas import UPSCALE_FACTOR, upscaled_size
from engine.conditioning import generators
from engine.patches import by_patches, patch_boxes

__all__ = ["RESAMPLE_METHOD", "SuperResolution", "resample"]

RESAMPLE_METHOD = "Lanczos resample with unsharp mask"


def resample(image: Image.Image, factor: int = UPSCALE_FACTOR) -> Image.Image:
    """A high-quality resample: Lanczos to ``factor`` times the size, then a light unsharp mask."""
    larger = image.convert("RGB").resize((image.width * factor, image.height * factor), Image.Resampling.LANCZOS)
    return larger.filter(ImageFilter.UnsharpMask(radius=1.0, percent=40, threshold=2))


class SuperResolution:
    """A diffusers upscaler pipeline applied patch by patch."""

    STEPS = 20

    def __init__(self, pipe: DiffusionPipeline, source: str) -> None:
        if isinstance(pipe, StableDiffusionUpscalePipeline):
            self.scale, self.patch, self.overlap = 4, 128, 16
        elif isinstance(pipe, StableDiffusionLatentUpscalePipeline):
            self.scale, self.patch, self.overlap = 2, 512, 64
        else:
            raise TypeError(f"{source} is a {type(pipe).__name__}, not a diffusers upscaler pipeline")
        self.pipe = pipe
        self.source = source

    @property
    def method(self) -> str:
        return f"super-resolution ({type(self.pipe).__name__}, {self.source})"

    def patches_for(self, image: Image.Image) -> int:
        return len(patch_boxes(image.size, self.patch, self.overlap))

    def __call__(
        self,
        image: Image.Image,
        prompt: str,
        seed: int,
        on_step: Callable[[int, int, object], None] | None = None,
    ) -> Image.Image:
        def process(patches: list[Image.Image]) -> list[Image.Image]:
            output = self.pipe(
                prompt=[prompt] * len(patches),
                image=patches,
                num_inference_steps=self.STEPS,
                guidance_scale=0.0,
                generator=generators([seed] * len(patches)),
                callback=on_step,
                callback_steps=1,
            )
            return list(output.images)

        upscaled = by_patches(image.convert("RGB"), self.patch, self.overlap, process, scale=self.scale)
        target = upscaled_size(image.size)
        return upscaled if upscaled.size == target else upscaled.resize(target, Image.Resampling.LANCZOS)
