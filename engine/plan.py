"""How an ``ImagineRequest`` becomes concrete generation settings for one model: the ``GenerationPlan``.

Torch-free, so the bot can show a job's size and steps and the job system can size time limits without
loading a model. The "From parameters to pixels" table of docs/models.md documents every rule here; the engine
executes a plan and never reinterprets the request itself.

    plan = plan_generation(parse("a lighthouse --ar 16:9 --seed 7"), ModelProfile(native_size=(1024, 1024)))
    plan.width, plan.height, plan.steps, plan.guidance_scale, plan.image_seeds
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from fractions import Fraction

from engine.prompt import MAX_SEED, ImagineRequest, WeightedPrompt

__all__ = ["GRID_SIZE", "GenerationPlan", "ModelProfile", "fit_size", "image_prompts_used", "plan_generation"]

GRID_SIZE = 4  # images per /imagine, rendered in one batch and shown as a 2x2 grid

# --chaos: at 0 the four starting noises share this fraction of their variance (related compositions);
# at 100 they are independent and each image's prompt embedding is jittered by CHAOS_PROMPT_JITTER.
CHAOS_SHARED_NOISE = 0.4
CHAOS_PROMPT_JITTER = 0.2
# --weird 3000 pushes the prompt embedding along a seeded random direction by this much (relative).
WEIRD_MAX_OFFSET = 0.5
# --stylize 1000 gives a house style prompt (when the model has one) this share of the prompt embedding.
STYLE_MAX_WEIGHT = 0.3
# --no without classifier-free guidance: the prompt embedding is pushed away from the --no text by this.
NO_PUSH_WEIGHT = 0.5
# --iw: starting-image strength is 1 - IW_STRENGTH_STEP * iw (iw 1 -> 0.75, iw 3 -> 0.25; iw 0 ignores it).
IW_STRENGTH_STEP = 0.25
DEFAULT_IMAGE_WEIGHT = 1.0


@dataclass(frozen=True)
class ModelProfile:
    """What the plan needs to know about a model; the model registry builds one per entry."""

    native_size: tuple[int, int] = (512, 512)
    steps: int = 30
    guidance: float = 7.5  # <= 1 means the model runs without classifier-free guidance (turbo models)
    size_multiple: int = 64
    style_prompt: str | None = None  # a "house style" text blended in by --stylize; --style raw turns it off
    # False for models whose guidance is distilled into them (FLUX.1): no classifier-free guidance, so no
    # negative prompt, and --no is the embedding push even though guidance is above 1.
    negative_prompt: bool = True

    def __post_init__(self) -> None:
        width, height = self.native_size
        if self.size_multiple < 1 or width < self.size_multiple or height < self.size_multiple:
            raise ValueError(f"native size {self.native_size} must be at least size_multiple={self.size_multiple}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1 (got {self.steps})")
        if self.guidance < 0:
            raise ValueError(f"guidance must not be negative (got {self.guidance})")


@dataclass(frozen=True)
class GenerationPlan:
    """Everything the engine needs to render one 2x2 grid, derived from a request and a ModelProfile."""

    width: int
    height: int
    steps: int  # length of the noise schedule (--quality)
    steps_run: int  # steps actually run before decoding (--stop); equals steps at --stop 100
    guidance_scale: float  # classifier-free guidance; <= 1 means off
    prompt_parts: tuple[WeightedPrompt, ...]  # text embeddings to blend; weights sum to 1
    negative_prompt: str | None  # for classifier-free guidance (--no when guidance is on)
    push_away: str | None  # --no when guidance is off: embedding moved away from this text
    push_weight: float
    seed: int  # the job's seed, as shown to the user
    image_seeds: tuple[int, ...]  # one per image: seed, seed+1, ... (mod 2**32)
    shared_noise: float  # fraction of starting-noise variance shared by the four images (--chaos)
    prompt_jitter: float  # per-image relative noise on the prompt embedding (--chaos)
    weird_offset: float  # relative offset of the prompt embedding along a seeded direction (--weird)
    tile: bool  # seamless: circular padding in the UNet and VAE convolutions
    image_urls: tuple[str, ...]  # image prompts, blended into the starting image
    init_strength: float | None  # img2img strength for image prompts; None when there are none

    @property
    def use_guidance(self) -> bool:
        return self.guidance_scale > 1.0

    @property
    def work(self) -> int:
        """Pixels x steps x images: a model-independent size of the job, for time limits and ETAs."""
        return self.width * self.height * self.steps_run * GRID_SIZE


def fit_size(aspect: tuple[int, int], native_size: tuple[int, int], multiple: int = 64) -> tuple[int, int]:
    """Width and height, multiples of ``multiple``, with ratio close to ``aspect`` and area close to native.

    Of the four roundings (down/up of each side) of the exact size, keeps those no larger in area than
    the native size (so memory and time never exceed a square job) and picks the one whose ratio error,
    weighted four times, plus area error (both in log space) is smallest: 16:9 at 1024² -> 1344x768.
    """
    ratio = Fraction(*aspect)
    area = native_size[0] * native_size[1]
    ideal_w = math.sqrt(area * ratio)
    ideal_h = math.sqrt(area / ratio)

    def candidates(ideal: float) -> set[int]:
        low = max(1, math.floor(ideal / multiple)) * multiple
        return {low, low + multiple}

    def cost(size: tuple[int, int]) -> float:
        w, h = size
        return 4 * abs(math.log(w / h / ratio)) + abs(math.log(w * h / area))

    sizes = [(w, h) for w in candidates(ideal_w) for h in candidates(ideal_h)]
    # Rounding both sides down fits, unless a side had to be raised to one `multiple`: then take the smallest.
    fitting = [(w, h) for w, h in sizes if w * h <= area] or [min(sizes, key=lambda s: s[0] * s[1])]
    return min(fitting, key=cost)


def plan_generation(request: ImagineRequest, profile: ModelProfile, seed: int | None = None) -> GenerationPlan:
    """Turn a parsed request into a plan for ``profile``'s model.

    ``seed`` overrides the request's; when both are None a random seed is drawn (and recorded in the plan).
    """
    seed = request.seed if seed is None else seed
    if seed is None:
        seed = secrets.randbelow(MAX_SEED + 1)
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be from 0 to {MAX_SEED} (got {seed})")

    width, height = fit_size(request.aspect, profile.native_size, profile.size_multiple)
    steps = max(1, round(profile.steps * request.quality))
    steps_run = max(1, math.ceil(steps * request.stop / 100))
    guidance = _guidance(profile.guidance, request.stylize)
    negative = guidance > 1.0 and profile.negative_prompt  # --no as a negative prompt, else as the push

    parts = _normalised(request.parts)
    if profile.style_prompt and request.style != "raw":
        style_weight = STYLE_MAX_WEIGHT * request.stylize / 1000
        if style_weight > 0:
            parts = (
                *(WeightedPrompt(p.text, p.weight * (1 - style_weight)) for p in parts),
                WeightedPrompt(profile.style_prompt, style_weight),
            )

    image_weight = DEFAULT_IMAGE_WEIGHT if request.image_weight is None else request.image_weight
    return GenerationPlan(
        width=width,
        height=height,
        steps=steps,
        steps_run=steps_run,
        guidance_scale=guidance,
        prompt_parts=parts,
        negative_prompt=request.negative if negative else None,
        push_away=None if negative else request.negative,
        push_weight=0.0 if negative or request.negative is None else NO_PUSH_WEIGHT,
        seed=seed,
        image_seeds=tuple((seed + i) % (MAX_SEED + 1) for i in range(GRID_SIZE)),
        shared_noise=CHAOS_SHARED_NOISE * (1 - request.chaos / 100),
        prompt_jitter=CHAOS_PROMPT_JITTER * request.chaos / 100,
        weird_offset=WEIRD_MAX_OFFSET * request.weird / 3000,
        tile=request.tile,
        image_urls=request.image_urls,
        init_strength=(1 - IW_STRENGTH_STEP * image_weight) if request.image_urls else None,
    )


def image_prompts_used(request: ImagineRequest) -> bool:
    """Whether a request's image prompts shape its images: it has some, and its --iw is above 0 (at 0 they
    are ignored, so a worker does not download them)."""
    weight = DEFAULT_IMAGE_WEIGHT if request.image_weight is None else request.image_weight
    return bool(request.image_urls) and weight > 0


def _guidance(default: float, stylize: int) -> float:
    """--stylize scales guidance's distance above 1: 0 -> half of it, 100 -> the model's default, 1000 -> double.

    Models that run without guidance (default <= 1, e.g. SD-Turbo) keep their default.
    """
    if default <= 1.0:
        return default
    factor = 0.5 + 0.5 * stylize / 100 if stylize <= 100 else 1 + (stylize - 100) / 900
    return round(1 + (default - 1) * factor, 4)


def _normalised(parts: tuple[WeightedPrompt, ...]) -> tuple[WeightedPrompt, ...]:
    """Weights divided by their sum (positive, the parser guarantees it), so the blend keeps its scale."""
    total = math.fsum(p.weight for p in parts)
    return tuple(WeightedPrompt(p.text, p.weight / total) for p in parts)
