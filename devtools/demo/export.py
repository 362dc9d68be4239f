"""The demo model's architecture, and its export as a Stable Diffusion pipeline in the diffusers layout.

``build_components()`` makes the untrained parts from their configs (the training script trains them);
``export(...)`` writes the trained ones to a folder that ``StableDiffusionPipeline.from_pretrained`` (and so
the engine's registry) loads like any hub model: ``model_index.json``, ``tokenizer/``, ``text_encoder/``,
``unet/``, ``vae/`` and ``scheduler/``, weights as safetensors.
"""

from __future__ import annotations

import copy
import itertools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from devtools.demo import vocab

__all__ = [
    "Components",
    "build_components",
    "export",
    "inference_scheduler",
    "load_components",
    "preview_factors",
    "training_scheduler",
    "with_attention_16",
]

LATENT_CHANNELS = 4
TEXT_WIDTH = 128  # the text encoder's width, and the UNet's cross-attention width
# The UNet's widths at 16x16, 8x8 and 4x4: 4.1 M parameters. A training step of 32 on two CPU cores takes
# about 0.58 s, 0.27 s without the attention at 16x16 (64/128/128 took 0.38 s without it; for this world more
# steps beat more width in a fixed time).
UNET_CHANNELS = (48, 96, 96)
# The noise schedule: DDPM's linear betas reach a near-zero signal at the last step (alpha_bar ~ 4e-5), so
# sampling from pure noise matches training and flat colours come out right; v-prediction.
SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "prediction_type": "v_prediction",
}


@dataclass
class Components:
    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    unet: UNet2DConditionModel
    vae: AutoencoderKL


def build_vae() -> AutoencoderKL:
    """A 4x autoencoder (64x64x3 <-> 16x16x4), convolutions only, so any multiple of 4 works."""
    channels = [16, 32, 32]
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * len(channels),
        up_block_types=["UpDecoderBlock2D"] * len(channels),
        block_out_channels=channels,
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=LATENT_CHANNELS,
        sample_size=64,
        mid_block_add_attention=False,
        force_upcast=False,
    )


def build_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    ids = tokenizer.get_vocab()
    config = CLIPTextConfig(
        vocab_size=len(ids),
        hidden_size=TEXT_WIDTH,
        intermediate_size=4 * TEXT_WIDTH,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=vocab.MAX_LENGTH,
        projection_dim=TEXT_WIDTH,
        hidden_act="gelu",
        bos_token_id=ids[vocab.BOS],
        eos_token_id=ids[vocab.EOS],
        pad_token_id=ids[vocab.EOS],
    )
    return CLIPTextModel(config)


def build_unet(attention_16: bool = True) -> UNet2DConditionModel:
    """A small conditional UNet on 16x16 latents: 16 -> 8 -> 4, cross-attention to the prompt at every
    level. Shape kinds (a star's points, a ring's hole, a square's corners) are details of one or two latent
    pixels that only the 16x16 level can draw; without attention there (``attention_16=False``, the first
    recipe) the model drew every kind as the same blob."""
    channels = UNET_CHANNELS
    top = "CrossAttn" if attention_16 else ""
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        block_out_channels=channels,
        layers_per_block=1,
        down_block_types=(f"{top}DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", f"{top}UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=[c // 32 for c in channels],
        norm_num_groups=16,
        addition_embed_type="text",  # the pooled prompt also joins the time embedding: global attributes
        addition_embed_type_num_heads=4,
    )


def with_attention_16(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """``unet`` (a first-recipe UNet without attention at 16x16) with that attention added, initialised to
    pass its input through unchanged (a zero output projection on the residual path): the result computes
    exactly what ``unet`` did, and training goes on from there."""
    if unet.config.down_block_types[0] == "CrossAttnDownBlock2D":
        return unet
    extended = build_unet(attention_16=True)
    missing, unexpected = extended.load_state_dict(unet.state_dict(), strict=False)
    if unexpected or any(".attentions." not in name for name in missing):
        raise ValueError(f"not a demo UNet: unexpected {unexpected[:3]}, missing {missing[:3]}")
    with torch.no_grad():
        for name, parameter in extended.named_parameters():
            if name in missing and ".proj_out." in name:
                parameter.zero_()
    return extended.to(unet.dtype)


def build_components(attention_16: bool = True) -> Components:
    tokenizer = vocab.tokenizer()
    return Components(tokenizer, build_text_encoder(tokenizer), build_unet(attention_16), build_vae())


def load_components(folder: str | Path) -> Components:
    """The parts of an exported demo model, in float32 for training on (``train --init``)."""
    folder = Path(folder)
    return Components(
        vocab.tokenizer(),
        CLIPTextModel.from_pretrained(folder / "text_encoder", torch_dtype=torch.float32),
        UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32),
        AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32),
    )


def training_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**SCHEDULE, clip_sample=False)


def inference_scheduler() -> DPMSolverMultistepScheduler:
    """DPM-Solver++ (2M): good pictures in 10-20 steps; the engine can swap it per registry entry."""
    return DPMSolverMultistepScheduler(**SCHEDULE, steps_offset=1)


def export(components: Components, folder: str | Path, card: str = "") -> Path:
    """Write ``components`` as a StableDiffusionPipeline to ``folder`` (replacing what was there): safetensors
    weights in float16, which loading casts to the dtype asked for (float32 on a CPU)."""
    folder = Path(folder)
    pipe = StableDiffusionPipeline(
        vae=components.vae.eval(),
        text_encoder=components.text_encoder.eval(),
        tokenizer=components.tokenizer,
        unet=components.unet.eval(),
        scheduler=inference_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    staging = folder.with_name(folder.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    with torch.no_grad():
        half = copy.deepcopy(pipe)  # float16 halves the size; loading casts to the dtype asked for
        for module in (half.unet, half.vae, half.text_encoder):
            for tensor in itertools.chain(module.parameters(), module.buffers()):
                if tensor.is_floating_point():
                    tensor.data = tensor.data.to(torch.float16)
        half.save_pretrained(staging, safe_serialization=True)
    vocab.write_tokenizer_files(staging / "tokenizer")  # the plain BPE files too, for any CLIP tokenizer
    _forget_sources(staging)
    if card:
        (staging / "README.md").write_text(card, encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)
    return folder


def _forget_sources(folder: Path) -> None:
    """Drop ``_name_or_path`` (where a part trained on with ``--init`` was loaded from: a scratch folder) from
    the exported configs."""
    for config in folder.glob("*/config.json"):
        settings = json.loads(config.read_text(encoding="utf-8"))
        if settings.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@torch.no_grad()
def preview_factors(vae: AutoencoderKL, images: torch.Tensor) -> tuple[list[list[float]], list[float]]:
    """The least-squares fit of RGB (in [-1, 1]) from the pipeline's latents (scaled as the UNet sees them),
    for live previews without a decode: ``engine.previews`` keeps the fit as its ``demo`` factors.
    ``images`` is a batch of scenes in [-1, 1]."""
    latents = vae.encode(images).latent_dist.mean * float(vae.config.scaling_factor)
    factor = images.shape[-1] // latents.shape[-1]
    colours = torch.nn.functional.avg_pool2d(images, factor)
    x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    x = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    y = colours.permute(0, 2, 3, 1).reshape(-1, 3)
    solution = torch.linalg.lstsq(x, y).solution
    weight = [[round(float(v), 4) for v in row] for row in solution[:-1]]
    return weight, [round(float(v), 4) for v in solution[-1]]
