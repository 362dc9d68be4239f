"""Tiny pipelines in the real diffusers layouts, built from configs with no download.

They exercise every code path of the engine (loading, batching, img2img/inpaint derivation, previews,
upscaling) in well under a second on a CPU, which is what tests need. The UNet and text encoders keep
random weights, so the pictures are noise; the autoencoder is trained for a few seconds on synthetic
colour fields so that it really reconstructs images, which is what makes variations, outpainting and
upscales comparable to their parents.

    save_tiny_pipeline("/tmp/tiny-sd", "sd15")   # then a registry entry with source = "/tmp/tiny-sd"
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    AutoencoderTiny,
    DDIMScheduler,
    DDPMScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionUpscalePipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
)

from devtools.demo.vocab import vocabulary

__all__ = [
    "TINY_NATIVE_SIZE",
    "TINY_SIZE_MULTIPLE",
    "byte_tokenizer",
    "save_tiny_pipeline",
    "save_tiny_preview_decoder",
    "save_tiny_upscaler",
]

TINY_NATIVE_SIZE = (64, 64)
TINY_SIZE_MULTIPLE = 16
_HIDDEN = 32
VAE_TRAINING_STEPS = 150  # about 7 s on 2 CPU cores; reconstruction MSE about 0.015 on [-1, 1] images


def save_tiny_pipeline(folder: str | Path, family: str = "sd15", seed: int = 0, safety_checker: bool = False) -> Path:
    """Build a tiny ``sd15``, ``sdxl``, ``sd3`` or ``flux`` text-to-image pipeline and save it in the diffusers
    layout.

    ``safety_checker`` adds a tiny ``StableDiffusionSafetyChecker`` (sd15 only), as SD 1.5 checkpoints ship one.
    """
    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = byte_tokenizer()
    if family in ("sd3", "flux"):
        _flow_matching_pipeline(family, tokenizer).save_pretrained(folder)
        return folder
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    vae = _trained_vae()
    if family == "sd15":
        checker, features = _safety_checker() if safety_checker else (None, None)
        pipe = StableDiffusionPipeline(
            unet=_unet(cross_attention_dim=_HIDDEN),
            vae=vae,
            text_encoder=CLIPTextModel(_text_config(tokenizer)),
            tokenizer=tokenizer,
            scheduler=scheduler,
            safety_checker=checker,
            feature_extractor=features,
            requires_safety_checker=safety_checker,
        )
    elif family == "sdxl":
        pipe = StableDiffusionXLPipeline(
            unet=_unet(
                cross_attention_dim=2 * _HIDDEN,
                attention_head_dim=(2, 4),
                use_linear_projection=True,
                addition_embed_type="text_time",
                addition_time_embed_dim=8,
                transformer_layers_per_block=(1, 2),
                projection_class_embeddings_input_dim=6 * 8 + _HIDDEN,
            ),
            vae=vae,
            text_encoder=CLIPTextModel(_text_config(tokenizer)),
            text_encoder_2=CLIPTextModelWithProjection(_text_config(tokenizer)),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            scheduler=scheduler,
        )
    else:
        raise ValueError(f"tiny pipelines exist for sd15, sdxl, sd3 and flux (got {family!r})")
    pipe.save_pretrained(folder)
    return folder


def _flow_matching_pipeline(family: str, tokenizer: CLIPTokenizer) -> StableDiffusion3Pipeline | FluxPipeline:
    """SD3 or FLUX in miniature: a one-block transformer over 16-channel latents, CLIP and T5 text encoders.

    T5 reads the same byte-level CLIP tokenizer (its vocabulary sized to match): the pipelines only tokenize
    and pad to a fixed length, and T5's sentencepiece model cannot be built offline. The autoencoder keeps
    random weights (16 latent channels, x2 downsampling) and the real models' scaling and shift factors.
    """
    vocab = len(tokenizer.get_vocab())
    t5 = T5EncoderModel(
        T5Config(vocab_size=vocab, d_model=2 * _HIDDEN, d_kv=8, d_ff=37, num_layers=2, num_heads=4, pad_token_id=0)
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 16],
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=16,
        sample_size=64,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=1.5305 if family == "sd3" else 0.3611,
        shift_factor=0.0609 if family == "sd3" else 0.1159,
    )
    if family == "sd3":
        return StableDiffusion3Pipeline(
            transformer=SD3Transformer2DModel(
                sample_size=32,
                patch_size=2,
                in_channels=16,
                out_channels=16,
                num_layers=1,
                attention_head_dim=8,
                num_attention_heads=4,
                caption_projection_dim=_HIDDEN,
                joint_attention_dim=2 * _HIDDEN,  # T5's width; CLIP's two embeddings (2 x 32) are padded to it
                pooled_projection_dim=2 * _HIDDEN,  # both CLIP encoders' pooled projections, concatenated
                pos_embed_max_size=32,
            ),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            vae=vae,
            text_encoder=CLIPTextModelWithProjection(_text_config(tokenizer)),
            tokenizer=tokenizer,
            text_encoder_2=CLIPTextModelWithProjection(_text_config(tokenizer)),
            tokenizer_2=tokenizer,
            text_encoder_3=t5,
            tokenizer_3=tokenizer,
        )
    return FluxPipeline(
        transformer=FluxTransformer2DModel(
            patch_size=1,
            in_channels=64,  # 16 latent channels packed 2x2
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=2 * _HIDDEN,
            pooled_projection_dim=_HIDDEN,
            guidance_embeds=True,  # as FLUX.1 [dev]: guidance is an input, not classifier-free
            axes_dims_rope=[4, 4, 8],
        ),
        scheduler=FlowMatchEulerDiscreteScheduler(
            use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096
        ),
        vae=vae,
        text_encoder=CLIPTextModel(_text_config(tokenizer)),
        tokenizer=tokenizer,
        text_encoder_2=t5,
        tokenizer_2=tokenizer,
    )


def save_tiny_upscaler(folder: str | Path, seed: int = 0) -> Path:
    """A tiny ``StableDiffusionUpscalePipeline`` (x4), as diffusers' own tests build it."""
    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = byte_tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(32, 32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=7,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=_HIDDEN,
        attention_head_dim=8,
        use_linear_projection=True,
        only_cross_attention=(True, True, False),
        num_class_embeds=100,
    )
    pipe = StableDiffusionUpscalePipeline(
        unet=unet,
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"),
        vae=_random_vae((32, 32, 64), scaling_factor=0.08333),
        text_encoder=CLIPTextModel(_text_config(tokenizer)),
        tokenizer=tokenizer,
        max_noise_level=350,
    )
    pipe.save_pretrained(folder)
    return folder


def save_tiny_preview_decoder(folder: str | Path, seed: int = 0) -> Path:
    """A tiny ``AutoencoderTiny`` (the TAESD architecture) for live previews."""
    folder = Path(folder)
    torch.manual_seed(seed)
    AutoencoderTiny(
        encoder_block_out_channels=(16, 16),
        decoder_block_out_channels=(16, 16),
        num_encoder_blocks=(1, 1),
        num_decoder_blocks=(1, 1),
        latent_channels=4,
    ).save_pretrained(folder)
    return folder


def _safety_checker() -> tuple[StableDiffusionSafetyChecker, CLIPImageProcessor]:
    tiny = {"hidden_size": _HIDDEN, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    config = CLIPConfig(
        text_config={**tiny, "vocab_size": 100, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        vision_config={**tiny, "image_size": 32, "patch_size": 4},
        projection_dim=_HIDDEN,
    )
    features = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return StableDiffusionSafetyChecker(config), features


def _unet(**options: object) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **options,
    )


def _random_vae(channels: tuple[int, ...], scaling_factor: float) -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=list(channels),
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * len(channels),
        up_block_types=["UpDecoderBlock2D"] * len(channels),
        latent_channels=4,
        sample_size=64,
        scaling_factor=scaling_factor,
    )


def _small_vae() -> AutoencoderKL:
    """A small autoencoder: x2 downsampling, 4 latent channels, cheap enough to train in seconds."""
    return AutoencoderKL(
        block_out_channels=[16, 32],
        layers_per_block=1,
        norm_num_groups=8,
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        sample_size=64,
        force_upcast=False,
    )


def _trained_vae() -> AutoencoderKL:
    """The small autoencoder with weights that reconstruct images (trained once per process)."""
    vae = _small_vae()
    state, latent_std = _trained_vae_state()
    vae.load_state_dict(state)
    vae.register_to_config(scaling_factor=1 / latent_std)  # unit-variance latents, as diffusers expects
    return vae


@functools.cache
def _trained_vae_state() -> tuple[dict[str, torch.Tensor], float]:
    generator = torch.Generator().manual_seed(1)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        vae = _small_vae()
    optimizer = torch.optim.Adam(vae.parameters(), lr=5e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=5e-3, total_steps=VAE_TRAINING_STEPS)
    for _ in range(VAE_TRAINING_STEPS):
        images = _colour_fields(8, 32, generator)
        latents = vae.encode(images).latent_dist.mean
        loss = F.mse_loss(vae.decode(latents).sample, images)
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        latent_std = float(vae.encode(_colour_fields(8, 64, generator)).latent_dist.mean.std())
    return {k: v.detach().clone() for k, v in vae.state_dict().items()}, latent_std


def _colour_fields(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Smooth random colour gradients, each with one flat rectangle: enough variety to learn reconstruction."""
    low = torch.rand(count, 3, 3, 3, generator=generator) * 2 - 1
    images = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    for image in images:
        left, top = torch.randint(0, size - size // 4, (2,), generator=generator).tolist()
        width, height = torch.randint(size // 8, size // 2, (2,), generator=generator).tolist()
        image[:, top : top + height, left : left + width] = torch.rand(3, 1, 1, generator=generator) * 2 - 1
    return images.clamp(-1, 1)


def _text_config(tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    vocab = tokenizer.get_vocab()
    return CLIPTextConfig(
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
        hidden_size=_HIDDEN,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=5,
        vocab_size=len(vocab),
        projection_dim=_HIDDEN,
        hidden_act="gelu",
    )


def byte_tokenizer() -> CLIPTokenizer:
    """A CLIP BPE tokenizer over single bytes (no merges): every text tokenizes, nothing is downloaded."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "vocab.json").write_text(json.dumps(vocabulary([])))  # the byte symbols, start and end
        (folder / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
