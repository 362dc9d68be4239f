"""Text conditioning and starting noise for a ``GenerationPlan``: the mapping table of docs/models.md, in tensors.

For Stable Diffusion 1.x/2.x, SDXL, SD3 and FLUX the engine encodes prompts itself and hands the pipeline
embeddings, which is what makes ``::`` weights, the ``--no`` push, ``--weird`` and ``--chaos`` exact:

- ``::`` parts: one embedding per part, blended with the plan's weights (they sum to 1);
- ``--no`` without guidance: ``(1 + w)·E(prompt) - w·E(no)``; with guidance it is the negative prompt;
- ``--weird``: an offset along a direction drawn from the job's seed, ``weird_offset * |E|`` long;
- ``--chaos``: per-image relative noise on the embedding, and starting noises that share part of their variance.

FLUX.1's guidance is distilled into its transformer (an input, not classifier-free guidance), so it has no
negative prompt: ``--no`` pushes its embedding away from the text instead, as for guidance-free models.

Other pipelines (anything else diffusers' auto pipeline loads) get text prompts; ``TextConditioning``
says which of these effects it had to approximate, and the engine puts that in the result's notes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from diffusers import (
    DiffusionPipeline,
    FluxPipeline,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
)

from engine.plan import NO_PUSH_WEIGHT, GenerationPlan

__all__ = [
    "DEFAULT_EMBEDDING_CACHE_BYTES",
    "Conditioning",
    "EmbeddingCache",
    "PromptEncoder",
    "TextConditioning",
    "encoder_for",
    "generators",
    "starting_noise",
]

# Salts give a job extra random streams, apart from its four image seeds.
_WEIRD_SALT, _JITTER_SALT, _SHARED_SALT = 1, 2, 3

# Encoded prompts a loaded model keeps, in bytes (DREAMLOOM_EMBEDDING_CACHE_MB): an SDXL prompt of the most
# texts a prompt may have (10 "::" parts, the house style, --no) is about 4 MiB in fp16; a plain one 0.3 MiB.
# FLUX's T5 sequence (512 x 4096) is 4 MiB per text in bf16: its largest prompt is about 50 MiB, a plain one 4 MiB.
DEFAULT_EMBEDDING_CACHE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Conditioning:
    """Pipeline keyword arguments: embeddings for each image and, when there is a --no prompt, its negatives."""

    positive: dict[str, torch.Tensor]
    negative: dict[str, torch.Tensor]
    notes: tuple[str, ...] = ()  # how a parameter was carried out differently from other families

    def kwargs(self) -> dict[str, torch.Tensor]:
        return {**self.positive, **self.negative}


@dataclass(frozen=True)
class TextConditioning:
    """For pipelines the engine cannot feed embeddings: plain text, and what that leaves out."""

    prompt: list[str]
    negative_prompt: list[str] | None
    approximated: tuple[str, ...]

    def kwargs(self) -> dict[str, list[str]]:
        args = {"prompt": self.prompt}
        if self.negative_prompt is not None:
            args["negative_prompt"] = self.negative_prompt
        return args


class EmbeddingCache:
    """Recently encoded prompts of one model: a re-roll or a variation skips the text encoder.

    Bounded by bytes, not entries (an entry's size grows with its texts): ``nbytes``, the tensors' bytes plus
    their texts', stays at most ``max_bytes``; the least recently used entries leave first, and an entry
    larger than the whole bound is not kept."""

    def __init__(self, max_bytes: int = DEFAULT_EMBEDDING_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be 0 or more (got {max_bytes})")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, ...], tuple[dict[str, torch.Tensor], int]] = OrderedDict()
        self.nbytes = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, texts: tuple[str, ...]) -> dict[str, torch.Tensor] | None:
        found = self._entries.get(texts)
        if found is None:
            return None
        self._entries.move_to_end(texts)
        self.hits += 1
        return found[0]

    def put(self, texts: tuple[str, ...], encoded: dict[str, torch.Tensor]) -> None:
        size = sum(t.nbytes for t in encoded.values()) + sum(len(text.encode()) for text in texts)
        self._drop(texts)
        if size > self.max_bytes:
            return
        while self._entries and self.nbytes + size > self.max_bytes:
            self._drop(next(iter(self._entries)))
        self._entries[texts] = (encoded, size)
        self.nbytes += size

    def _drop(self, texts: tuple[str, ...]) -> None:
        entry = self._entries.pop(texts, None)
        if entry is not None:
            self.nbytes -= entry[1]


class PromptEncoder:
    """Encodes texts with a Stable Diffusion (1.x/2.x) pipeline's text encoder."""

    # positive embedding argument -> the pipeline argument for its negative
    negative_names: ClassVar[dict[str, str]] = {"prompt_embeds": "negative_prompt_embeds"}

    def __init__(self, pipe: DiffusionPipeline, cache: EmbeddingCache | None = None) -> None:
        self.pipe = pipe
        self.cache = cache

    def encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        key = tuple(texts)
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            return cached
        encoded = self._encode(texts)
        if self.cache is not None:
            self.cache.put(key, encoded)
        return encoded

    def _encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        embeds, _ = self.pipe.encode_prompt(texts, self.pipe.device, 1, False)
        return {"prompt_embeds": embeds}

    def condition(self, plan: GenerationPlan, batch: int) -> Conditioning:
        """Per-image embeddings for ``plan``; everything is encoded in one text-encoder call."""
        parts = plan.prompt_parts or ()
        texts = [p.text for p in parts] or [""]
        weights = [p.weight for p in parts] or [1.0]
        extra = [t for t in (plan.push_away, plan.negative_prompt) if t]
        encoded = self.encode(texts + extra)
        positive: dict[str, torch.Tensor] = {}
        negative: dict[str, torch.Tensor] = {}
        n = len(texts)
        for name, tensor in encoded.items():
            weight = torch.tensor(weights, dtype=tensor.dtype, device=tensor.device).view(-1, *[1] * (tensor.dim() - 1))
            blended = (tensor[:n] * weight).sum(dim=0, keepdim=True)
            if plan.push_away:
                blended = (1 + plan.push_weight) * blended - plan.push_weight * tensor[n : n + 1]
            blended = _weird(blended, plan)
            positive[name] = _jitter(blended, plan, batch)
            if plan.negative_prompt:
                negative[self.negative_names[name]] = tensor[-1:].expand(batch, *tensor.shape[1:]).contiguous()
        return Conditioning(positive, negative)


class XLPromptEncoder(PromptEncoder):
    """Encodes texts with both of an SDXL pipeline's text encoders (embeddings and pooled embeddings)."""

    negative_names: ClassVar[dict[str, str]] = {
        "prompt_embeds": "negative_prompt_embeds",
        "pooled_prompt_embeds": "negative_pooled_prompt_embeds",
    }

    def _encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        embeds, _, pooled, _ = self.pipe.encode_prompt(
            prompt=texts, device=self.pipe.device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}


class SD3PromptEncoder(XLPromptEncoder):
    """Encodes texts with SD3's three text encoders: two CLIPs and T5, joined into one sequence, and the CLIPs'
    pooled embeddings."""

    def _encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        embeds, _, pooled, _ = self.pipe.encode_prompt(
            prompt=texts,
            prompt_2=None,
            prompt_3=None,
            device=self.pipe.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
        )
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}


class FluxPromptEncoder(XLPromptEncoder):
    """Encodes texts with FLUX's T5 (the sequence) and CLIP (the pooled embedding)."""

    def _encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        embeds, pooled, _ = self.pipe.encode_prompt(
            prompt=texts, prompt_2=None, device=self.pipe.device, num_images_per_prompt=1
        )
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def condition(self, plan: GenerationPlan, batch: int) -> Conditioning:
        """FLUX ignores a negative prompt (diffusers uses one only with ``true_cfg_scale``, which doubles the work
        and which guidance-distilled models were not trained for): --no is the embedding push. A registry
        entry's plan says so already (``ModelProfile.negative_prompt``); this covers a plan made without it."""
        if not plan.negative_prompt:
            return super().condition(plan, batch)
        pushed = dataclasses.replace(
            plan, negative_prompt=None, push_away=plan.negative_prompt, push_weight=NO_PUSH_WEIGHT
        )
        note = "--no: FLUX has no negative prompt; the prompt's embedding was pushed away from the --no text"
        return dataclasses.replace(super().condition(pushed, batch), notes=(note,))


def encoder_for(pipe: DiffusionPipeline, cache: EmbeddingCache | None = None) -> PromptEncoder | None:
    """The embedding encoder for ``pipe``'s family, or None when only text prompts are possible."""
    if isinstance(pipe, FluxPipeline):
        return FluxPromptEncoder(pipe, cache)
    if isinstance(pipe, StableDiffusion3Pipeline):
        return SD3PromptEncoder(pipe, cache)
    if isinstance(pipe, StableDiffusionXLPipeline):
        return XLPromptEncoder(pipe, cache)
    if isinstance(pipe, StableDiffusionPipeline):
        return PromptEncoder(pipe, cache)
    return None


def text_conditioning(plan: GenerationPlan, batch: int) -> TextConditioning:
    """The closest plain-text form of ``plan``: the positive parts joined, --no as the negative prompt."""
    approximated = []
    weights = [p.weight for p in plan.prompt_parts]
    if len(weights) > 1:
        approximated.append("multi-prompt weights (parts joined as text)")
    if plan.push_away:
        approximated.append("--no without guidance (sent as a negative prompt)")
    if plan.weird_offset:
        approximated.append("--weird")
    if plan.prompt_jitter:
        approximated.append("--chaos prompt variation")
    text = ", ".join(p.text for p in plan.prompt_parts if p.weight > 0)
    negative = plan.negative_prompt or plan.push_away
    return TextConditioning(
        prompt=[text] * batch,
        negative_prompt=[negative] * batch if negative else None,
        approximated=tuple(approximated),
    )


def generators(seeds: Sequence[int], salt: int = 0) -> list[torch.Generator]:
    """One CPU generator per seed: CPU noise is the same on every machine, so a seed reproduces anywhere.

    A non-zero ``salt`` derives a different stream from the same seed. (torch seeds its CPU generator from
    the low 32 bits only, so the salt is hashed into those bits rather than added above them.)
    """
    return [torch.Generator("cpu").manual_seed(_salted(seed, salt)) for seed in seeds]


def _salted(seed: int, salt: int) -> int:
    if salt == 0:
        return seed
    digest = hashlib.blake2b(f"{seed}/{salt}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def starting_noise(plan: GenerationPlan, shape: tuple[int, ...]) -> torch.Tensor:
    """Unit-variance starting latents for the plan's images (CPU, float32), ``shape`` per image.

    Each image's noise comes from its own seed; ``plan.shared_noise`` of the variance is a component all
    four share (--chaos 0 gives related compositions), mixed so every image's noise stays unit-variance.
    """
    own = torch.stack([torch.randn(shape, generator=g) for g in generators(plan.image_seeds)])
    if plan.shared_noise <= 0:
        return own
    shared = torch.randn(shape, generator=generators([plan.seed], _SHARED_SALT)[0])
    return math.sqrt(1 - plan.shared_noise) * own + math.sqrt(plan.shared_noise) * shared


def _weird(embeds: torch.Tensor, plan: GenerationPlan) -> torch.Tensor:
    if plan.weird_offset <= 0:
        return embeds
    direction = torch.randn(embeds.shape, generator=generators([plan.seed], _WEIRD_SALT)[0])
    direction = direction.to(embeds.device, embeds.dtype)
    offset: torch.Tensor = plan.weird_offset * embeds.norm() / direction.norm() * direction
    return embeds + offset


def _jitter(embeds: torch.Tensor, plan: GenerationPlan, batch: int) -> torch.Tensor:
    expanded = embeds.expand(batch, *embeds.shape[1:])
    if plan.prompt_jitter <= 0:
        return expanded.contiguous()
    seeds = plan.image_seeds[:batch]
    noise = torch.stack([torch.randn(embeds.shape[1:], generator=g) for g in generators(seeds, _JITTER_SALT)])
    return expanded + plan.prompt_jitter * embeds.std() * noise.to(embeds.device, embeds.dtype)
