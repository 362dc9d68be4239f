"""Real model architectures with random weights, from the JSON configs in ``devtools/configs/``.

No download: the networks are instantiated from their configs, so they cost exactly what the real models
cost to run (what speed benchmarks measure) while their pictures are noise. Text goes through the byte
tokenizer of ``devtools.tiny_pipelines`` (padded to 77 tokens like CLIP's), which changes no compute.

    pipe = random_pipeline("sdxl", dtype=torch.float16, device="cuda")
    save_random_pipeline("sd-turbo", "/tmp/sd-turbo-random")   # then load it like any model folder
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from devtools.tiny_pipelines import byte_tokenizer

__all__ = ["ARCHITECTURES", "CONFIGS", "random_pipeline", "save_random_pipeline"]

CONFIGS = Path(__file__).parent / "configs"
ARCHITECTURES = ("sd-turbo", "sdxl")
_PIPELINES = {
    "StableDiffusionPipeline": StableDiffusionPipeline,
    "StableDiffusionXLPipeline": StableDiffusionXLPipeline,
}


def random_pipeline(
    name: str,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
    empty: bool = False,
) -> Any:
    """The pipeline of architecture ``name`` with random weights; ``empty`` builds it on the meta device
    (no memory, no compute: for checking shapes and parameter counts). The weights are made on ``device``
    itself: drawing SDXL's 3.5 billion of them takes a GPU a second, a CPU most of a minute."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    folder = CONFIGS / name
    index = _read(folder / "model_index.json")
    tokenizer = byte_tokenizer()
    torch.manual_seed(seed)
    components: dict[str, Any] = {}
    with init_empty_weights() if empty else torch.device(device):
        components["unet"] = UNet2DConditionModel.from_config(_read(folder / "unet" / "config.json"))
        components["vae"] = AutoencoderKL.from_config(_read(folder / "vae" / "config.json"))
        components["text_encoder"] = CLIPTextModel(_text_config(folder / "text_encoder", tokenizer))
        if "text_encoder_2" in index:
            components["text_encoder_2"] = CLIPTextModelWithProjection(
                _text_config(folder / "text_encoder_2", tokenizer)
            )
            components["tokenizer_2"] = tokenizer
    components["tokenizer"] = tokenizer
    components["scheduler"] = EulerDiscreteScheduler.from_config(_read(folder / "scheduler" / "scheduler_config.json"))
    pipeline_class = _PIPELINES[index["_class_name"]]
    if pipeline_class is StableDiffusionPipeline:
        components.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe = pipeline_class(**components)
    return pipe if empty else pipe.to(device=device, dtype=dtype)


def save_random_pipeline(
    name: str,
    folder: str | Path,
    *,
    dtype: torch.dtype = torch.float16,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Path:
    """Save ``random_pipeline(name)`` (made on ``device``) as a model folder that the registry can load like a
    downloaded model."""
    folder = Path(folder)
    random_pipeline(name, dtype=dtype, seed=seed, device=device).save_pretrained(folder)
    return folder


def _text_config(folder: Path, tokenizer: Any) -> CLIPTextConfig:
    vocab = tokenizer.get_vocab()
    special = {
        "bos_token_id": vocab["<|startoftext|>"],
        "eos_token_id": vocab["<|endoftext|>"],
        "pad_token_id": vocab["<|endoftext|>"],
    }
    return CLIPTextConfig(**{**_read(folder / "config.json"), **special})


def _read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data
