"""Train the demo model from scratch, reproducibly: ``python -m devtools.demo.train``.

Stages, each printing its progress and time, and each resumable from the checkpoints in ``--work``:

1. autoencoder: the 4x ``AutoencoderKL`` learns to reconstruct rendered scenes (random 32x32 crops; the
   loss weighs shape pixels 10x, since shapes are what the pictures are about);
2. data: ``--scenes`` random scenes (none showing a held-out description), rendered at 64x64 and, one in
   ten each, 80x48 and 48x80 (so ``--ar`` works), encoded once to latents, with masks of where the shapes are;
3. diffusion: the CLIP text encoder and the UNet learn together to predict v for noised latents of a scene
   given one of its captions (a fresh random phrasing each time), with the caption dropped 10% of the time
   for classifier-free guidance and an exponential moving average of the weights. The plain v loss first
   (it teaches the backgrounds, which the prompt decides at the noisiest steps), then from ``--focus-from``
   on the shapes' latent pixels weigh 1 + ``--focus`` times as much: they are a small part of each picture.
   A second, small loss (``--kind-words``) asks a linear probe of the text encoder's output which shape
   kinds the caption names: without it the encoder merged "circle", "square" and "ring" (their prompts'
   encodings were 2 % apart, against 29 % for a colour change) and every kind came out as one blob;
4. export: the pipeline, in the diffusers layout with safetensors weights, to ``--out``
   (default ``engine/models/demo``);
5. evaluation: the evaluator on held-out prompts (``--evaluate``, 0 to skip).

``--init FOLDER`` starts the text encoder, UNet and autoencoder from an exported model instead (the
autoencoder stage is skipped) and trains on from there, adding the UNet's 16x16 attention when the model
lacks it (a first-recipe model; see ``export.with_attention_16``).

Every random choice comes from ``--seed`` and the step number, so a run (or a resumed run) on the same
machine and thread count reproduces the same weights. ``--quick`` is a smoke test of every stage in
about a minute (useless weights, written to ``--work``/quick unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from devtools.demo import MODEL_DIR
from devtools.demo.captions import KIND_WORDS, caption
from devtools.demo.export import (
    TEXT_WIDTH,
    Components,
    build_components,
    export,
    load_components,
    preview_factors,
    training_scheduler,
    with_attention_16,
)
from devtools.demo.scenes import (
    KINDS,
    NATIVE_SIZE,
    Scene,
    Shape,
    background_array,
    heldout_scenes,
    render,
    sample_scene,
    training_scenes,
)

__all__ = ["TrainConfig", "main", "train"]

WIDE, TALL = (80, 48), (48, 80)


@dataclass
class TrainConfig:
    out: Path = MODEL_DIR
    work: Path = Path(os.environ.get("TMPDIR", "/tmp")) / "dreamloom-demo-train"
    seed: int = 0
    vae_steps: int = 2500
    vae_batch: int = 32
    vae_lr: float = 3e-3
    scenes: int = 20_000
    steps: int = 10_000
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 200
    ema: float = 0.999
    caption_dropout: float = 0.1
    # From step ``focus_from`` on, the loss weighs the latent pixels of shapes 1 + ``focus`` times as much:
    # the backgrounds are learnt by then, and the shapes are a small part of each picture.
    focus: float = 4.0
    focus_from: int = 3000
    # 0: plain v loss. With min-SNR-5 the prompt went unlearnt: 11 % right backgrounds at 600 steps, 83 % without.
    min_snr: float = 0.0
    # The weight of the text encoder's side loss: which kinds does the caption name (0: off, the first recipe).
    kind_words: float = 1.0
    attention_16: bool = True  # the UNet's cross-attention at 16x16 (False: the first recipe's UNet)
    init: Path | None = None  # an exported model to train on from, instead of from scratch
    aspect_share: float = 0.2  # of batches on wide or tall canvases
    checkpoint_every: int = 250
    evaluate: int = 200
    threads: int | None = None

    @classmethod
    def quick(cls, **overrides: Any) -> TrainConfig:
        """Every stage, tiny: for smoke tests of the script itself."""
        settings: dict[str, Any] = {
            "vae_steps": 20,
            "vae_batch": 8,
            "scenes": 96,
            "steps": 20,
            "batch": 8,
            "warmup": 5,
            "checkpoint_every": 10,
            "evaluate": 2,
        }
        return cls(**{**settings, **overrides})


# --- the run ----------------------------------------------------------------------------------------


def train(config: TrainConfig) -> Path:
    """Run every stage (skipping finished ones, resuming unfinished ones) and return the exported folder."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    # Always set, even to the count it has: a process's first set_num_threads changes how the CPU kernels
    # split their work (and so the last bits of the weights), which made a process's first run differ.
    torch.set_num_threads(config.threads or threads)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(config)
    finally:  # a notebook or a test process goes on as it was
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(config: TrainConfig) -> Path:
    config.work.mkdir(parents=True, exist_ok=True)
    _log(f"demo model: {json.dumps(_printable(config))}")
    started = time.perf_counter()
    torch.manual_seed(config.seed)  # the initial weights too come from the seed
    if config.init is not None:
        components = load_components(config.init)
        if config.attention_16:
            components.unet = with_attention_16(components.unet)
        _log(f"autoencoder, text encoder and UNet: from {config.init}")
    else:
        components = build_components(config.attention_16)
        _train_autoencoder(components, config)
    data = _encode_scenes(components, config)
    ema = _train_diffusion(components, data, config)
    folder = export(ema, config.out, _model_card(config))
    _log(f"exported to {folder} ({_megabytes(folder):.1f} MB) after {_minutes(started)}")
    _log(f"preview factors (engine.previews, 'demo'): {_preview_factors(components, config)}")
    if config.evaluate:
        from devtools.demo.evaluate import evaluate, format_table

        with _stage("evaluation"):
            report = evaluate(folder, count=config.evaluate)
            print(format_table(report), flush=True)
    _log(f"done in {_minutes(started)}")
    return folder


# --- 1. the autoencoder -----------------------------------------------------------------------------


def _train_autoencoder(components: Components, config: TrainConfig) -> None:
    vae = components.vae
    path = config.work / "autoencoder.pt"
    state = _load(path)
    if state is not None and state["step"] >= config.vae_steps:
        vae.load_state_dict(state["model"])
        vae.register_to_config(scaling_factor=state["scaling_factor"])
        _log("autoencoder: trained earlier, loaded")
        return
    with _stage("autoencoder"):
        torch.manual_seed(config.seed)
        vae.train()
        optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
        first = 0
        if state is not None:
            vae.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            first = state["step"]
            _log(f"autoencoder: resuming at step {first}")
        meter = _Meter("autoencoder", config.vae_steps, first)
        for step in range(first, config.vae_steps):
            rng = random.Random(f"vae-{config.seed}-{step}")
            images, weights = _crops(rng, config.vae_batch, 32)
            for group in optimizer.param_groups:
                warmup = max(1, config.vae_steps // 20)
                group["lr"] = _learning_rate(step, config.vae_steps, config.vae_lr, warmup, 0.01)
            posterior = vae.encode(images).latent_dist
            generator = torch.Generator().manual_seed(_step_seed("vae", config.seed, step))
            decoded = vae.decode(posterior.sample(generator)).sample
            error = decoded - images
            loss = ((error.abs() + error.square()) * weights).mean() + 1e-6 * posterior.kl().mean()
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimizer.step()
            meter.update(step + 1, float(loss.detach()))
            if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.vae_steps:
                _save({"step": step + 1, "model": vae.state_dict(), "optimizer": optimizer.state_dict()}, path)
        scaling_factor = _scaling_factor(components, config)
        state = {"step": config.vae_steps, "model": vae.state_dict(), "scaling_factor": scaling_factor}
        _save({**state, "optimizer": optimizer.state_dict()}, path)
        vae.register_to_config(scaling_factor=scaling_factor)
    vae.eval()


def _crops(rng: random.Random, count: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops of random scenes in [-1, 1], and per-pixel loss weights (10 on shapes, 1 elsewhere)."""
    images, weights = [], []
    for _ in range(count):
        scene = sample_scene(rng)
        pixels, shape = _rendered(scene, NATIVE_SIZE)
        y, x = (rng.randrange(0, NATIVE_SIZE[0] - size + 1, 4) for _ in range(2))
        images.append(pixels[y : y + size, x : x + size])
        weights.append(1 + 9 * shape[y : y + size, x : x + size])
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2) / 127.5 - 1
    return batch, torch.from_numpy(np.stack(weights)).float()[:, None]


def _preview_factors(components: Components, config: TrainConfig) -> tuple[list[list[float]], list[float]]:
    rng = random.Random(f"preview-{config.seed}")
    return preview_factors(components.vae.eval(), _images([sample_scene(rng) for _ in range(256)], NATIVE_SIZE))


def _rendered(scene: Scene, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The scene's pixels (float) and where its shapes are (pixels that differ from the background)."""
    pixels = np.asarray(render(scene, size), dtype=np.float32)
    background = background_array(scene.background, scene.bottom, size)
    return pixels, np.abs(pixels - background).max(axis=-1) > 8


@torch.no_grad()
def _scaling_factor(components: Components, config: TrainConfig) -> float:
    """1 / the standard deviation of latents, so the diffusion model sees unit-variance latents."""
    rng = random.Random(f"scale-{config.seed}")
    scenes = [sample_scene(rng) for _ in range(256)]
    latents = components.vae.eval().encode(_images(scenes, NATIVE_SIZE)).latent_dist.mean
    components.vae.train()
    return float(1.0 / latents.std())


def _images(scenes: Sequence[Scene], size: tuple[int, int]) -> torch.Tensor:
    return _batch([np.asarray(render(scene, size), dtype=np.float32) for scene in scenes])


def _batch(pixels: Sequence[np.ndarray]) -> torch.Tensor:
    """(height, width, 3) arrays of 0..255 as one (N, 3, height, width) batch in [-1, 1]."""
    return torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2) / 127.5 - 1


# --- 2. the data ------------------------------------------------------------------------------------


@dataclass
class _Data:
    scenes: list[Scene]
    groups: dict[tuple[int, int], tuple[torch.Tensor, list[int]]]  # canvas size -> (latents, scene indices)
    masks: dict[tuple[int, int], torch.Tensor]  # canvas size -> where the shapes are, as the latents line up


def _encode_scenes(components: Components, config: TrainConfig) -> _Data:
    path = config.work / "data.pt"
    state = _load(path)
    made_by = _fingerprint(components.vae)
    if state is not None and (state["count"], state["seed"], state.get("vae")) == (config.scenes, config.seed, made_by):
        _log("data: encoded earlier, loaded")
        scenes = [_scene_from(item) for item in json.loads(state["scenes"])]
        groups = {tuple(k): (v, idx) for k, v, idx in state["groups"]}
        return _Data(scenes, groups, {tuple(k): v for k, v in state["masks"]})
    with _stage("data"):
        scenes = training_scenes(config.scenes, config.seed, heldout_scenes())
        rng = random.Random(f"canvas-{config.seed}")
        indices: dict[tuple[int, int], list[int]] = {NATIVE_SIZE: [], WIDE: [], TALL: []}
        for index in range(len(scenes)):
            roll = rng.random()
            size = WIDE if roll < 0.1 else TALL if roll < 0.2 else NATIVE_SIZE
            indices[size].append(index)
        groups = {}
        masks: dict[tuple[int, int], torch.Tensor] = {}
        vae = components.vae.eval()
        factor = float(vae.config.scaling_factor)
        for size, members in indices.items():
            latent_chunks, mask_chunks = [], []
            with torch.no_grad():
                for start in range(0, len(members), 256):
                    rendered = [_rendered(scenes[i], size) for i in members[start : start + 256]]
                    pixels, shapes = zip(*rendered, strict=True)
                    latents = vae.encode(_batch(pixels)).latent_dist.mean
                    latent_chunks.append(latents * factor)
                    # 1 where a latent pixel covers any part of a shape
                    shape_pixels = torch.from_numpy(np.stack(shapes)).float()[:, None]
                    mask_chunks.append(F.max_pool2d(shape_pixels, size[0] // latents.shape[-1]))
            groups[size] = (torch.cat(latent_chunks) if latent_chunks else torch.empty(0), members)
            masks[size] = torch.cat(mask_chunks) if mask_chunks else torch.empty(0)
            _log(f"data: {len(members)} scenes at {size[0]}x{size[1]}")
        _save(
            {
                "count": config.scenes,
                "seed": config.seed,
                "vae": made_by,
                "scenes": json.dumps([_scene_to(s) for s in scenes]),
                "groups": [(list(k), v, idx) for k, (v, idx) in groups.items()],
                "masks": [(list(k), v) for k, v in masks.items()],
            },
            path,
        )
    return _Data(scenes, groups, masks)


def _scene_to(scene: Scene) -> dict[str, Any]:
    return asdict(scene)


def _scene_from(item: dict[str, Any]) -> Scene:
    shapes = tuple(Shape(**shape) for shape in item["shapes"])
    return Scene(item["background"], shapes, item["background_bottom"], item["jitter"])


# --- 3. text encoder and UNet -------------------------------------------------------------------------


def _train_diffusion(components: Components, data: _Data, config: TrainConfig) -> Components:
    """Train the text encoder and UNet; returns the components with the averaged (EMA) weights."""
    path = config.work / "diffusion.pt"
    text_encoder, unet = components.text_encoder, components.unet
    torch.manual_seed(config.seed)
    modules = torch.nn.ModuleDict({"text_encoder": text_encoder, "unet": unet})
    average = copy.deepcopy(modules).eval().requires_grad_(False)
    probe = torch.nn.Linear(TEXT_WIDTH, len(KINDS))  # the side loss's probe; not exported
    parameters = [*modules.parameters(), *probe.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, betas=(0.9, 0.99), weight_decay=0.01)
    first = 0
    state = _load(path)
    if state is not None:
        modules.load_state_dict(state["model"])
        if "probe" in state:  # checkpoints from before the side loss have none
            probe.load_state_dict(state["probe"])
        average.load_state_dict(state["average"])
        optimizer.load_state_dict(state["optimizer"])
        first = state["step"]
        _log(f"diffusion: resuming at step {first}" if first < config.steps else "diffusion: trained earlier, loaded")
    if first < config.steps:
        with _stage("diffusion"):
            _diffusion_steps(components, data, config, modules, average, probe, optimizer, first, path)
    result = copy.copy(components)
    result.text_encoder = average["text_encoder"]
    result.unet = average["unet"]
    return result


def _diffusion_steps(
    components: Components,
    data: _Data,
    config: TrainConfig,
    modules: torch.nn.ModuleDict,
    average: torch.nn.ModuleDict,
    probe: torch.nn.Linear,
    optimizer: torch.optim.Optimizer,
    first: int,
    path: Path,
) -> None:
    scheduler = training_scheduler()
    alphas = scheduler.alphas_cumprod
    snr = alphas / (1 - alphas)
    # min-SNR-gamma for v-prediction, or the plain v loss (weight 1), which keeps more weight on the noisiest
    # steps, where the prompt decides the whole picture
    weights = torch.clamp(snr, max=config.min_snr) / (snr + 1) if config.min_snr > 0 else torch.ones_like(snr)
    tokenizer = components.tokenizer
    sizes = [size for size, (latents, _) in data.groups.items() if len(latents) and size != NATIVE_SIZE]
    modules.train()
    meter = _Meter("diffusion", config.steps, first)
    for step in range(first, config.steps):
        rng = random.Random(f"diffusion-{config.seed}-{step}")
        generator = torch.Generator().manual_seed(_step_seed("diffusion", config.seed, step))
        size = rng.choice(sizes) if sizes and rng.random() < config.aspect_share else NATIVE_SIZE
        latents_all, members = data.groups[size]
        picks = [rng.randrange(len(members)) for _ in range(config.batch)]
        latents = latents_all[picks]
        texts = ["" if rng.random() < config.caption_dropout else caption(data.scenes[members[i]], rng) for i in picks]
        ids = tokenizer(
            texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (config.batch,), generator=generator)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        target = scheduler.get_velocity(latents, noise, timesteps)
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, config.steps, config.lr, config.warmup, 0.1)
        embeddings = modules["text_encoder"](ids)[0]
        predicted = modules["unet"](noisy, timesteps, embeddings).sample
        error = F.mse_loss(predicted, target, reduction="none")
        if step < config.focus_from:
            per_image = error.mean(dim=(1, 2, 3))
        else:  # the shapes' latent pixels weigh 1 + focus times as much as the background's
            weight = 1 + config.focus * data.masks[size][picks]
            per_image = (error.mean(dim=1, keepdim=True) * weight).sum(dim=(1, 2, 3)) / weight.sum(dim=(1, 2, 3))
        loss = (per_image * weights[timesteps]).mean()
        if config.kind_words > 0:
            loss = loss + config.kind_words * _kind_words_loss(probe, embeddings, texts)
        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        torch.nn.utils.clip_grad_norm_(modules.parameters(), 1.0)
        optimizer.step()
        decay = min(config.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for averaged, current in zip(average.parameters(), modules.parameters(), strict=True):
                averaged.lerp_(current, 1 - decay)
        meter.update(step + 1, float(loss.detach()))
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            state = {
                "step": step + 1,
                "model": modules.state_dict(),
                "average": average.state_dict(),
                "probe": probe.state_dict(),
                "optimizer": optimizer.state_dict(),
            }
            _save(state, path)
    modules.eval()


_KIND_OF_WORD = {word: KINDS.index(kind) for kind, words in KIND_WORDS.items() for word in words}


def _kind_words_loss(probe: torch.nn.Linear, embeddings: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
    """Binary cross-entropy of ``probe`` (on the mean of each caption's token encodings) saying which shape
    kinds the caption names; dropped (empty) captions don't count."""
    named = [i for i, text in enumerate(texts) if text]
    if not named:
        return embeddings.new_zeros(())
    labels = torch.zeros(len(named), len(KINDS))
    for row, index in enumerate(named):
        for word in re.findall(r"[a-z]+", texts[index].lower()):
            if word in _KIND_OF_WORD:
                labels[row, _KIND_OF_WORD[word]] = 1.0
    logits = probe(embeddings[named].mean(dim=1))
    return F.binary_cross_entropy_with_logits(logits, labels)


def _fingerprint(module: torch.nn.Module) -> str:
    """A digest of ``module``'s weights: encoded latents belong to the autoencoder that made them."""
    digest = hashlib.sha256()
    for tensor in module.state_dict().values():
        digest.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _learning_rate(step: int, total: int, peak: float, warmup: int, floor: float) -> float:
    """Linear warm-up to ``peak``, then a cosine down to ``floor`` x ``peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


# --- helpers ----------------------------------------------------------------------------------------


def _step_seed(stage: str, seed: int, step: int) -> int:
    """A seed for one step's random numbers (stable across processes, unlike hash())."""
    digest = hashlib.sha256(f"{stage}-{seed}-{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class _Meter:
    def __init__(self, name: str, total: int, first: int, every: int = 100) -> None:
        self.name, self.total, self.first, self.every = name, total, first, every
        self.started = time.perf_counter()
        self.losses: list[float] = []

    def update(self, step: int, loss: float) -> None:
        self.losses.append(loss)
        if step % self.every and step != self.total:
            return
        elapsed = time.perf_counter() - self.started
        rate = (step - self.first) / max(elapsed, 1e-9)
        left = (self.total - step) / max(rate, 1e-9)
        mean = sum(self.losses) / len(self.losses)
        self.losses.clear()
        _log(f"{self.name}: step {step}/{self.total} loss {mean:.4f} ({rate:.2f} steps/s, {left / 60:.1f} min left)")


@contextmanager
def _stage(name: str) -> Iterator[None]:
    started = time.perf_counter()
    _log(f"{name}: starting")
    yield
    _log(f"{name}: finished in {_minutes(started)}")


def _save(state: dict[str, Any], path: Path) -> None:
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)


def _load(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    state: dict[str, Any] = torch.load(path, weights_only=False)
    return state


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _minutes(started: float) -> str:
    return f"{(time.perf_counter() - started) / 60:.1f} min"


def _megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def _printable(config: TrainConfig) -> dict[str, Any]:
    return {f.name: str(v) if isinstance(v := getattr(config, f.name), Path) else v for f in fields(config)}


def _model_card(config: TrainConfig) -> str:
    settings = {k: v for k, v in _printable(config).items() if k not in ("out", "work", "threads")}
    return (
        "# dreamloom demo model\n\n"
        "A tiny Stable Diffusion pipeline trained from scratch on dreamloom's procedural scenes "
        "(`devtools/demo/scenes.py`): one or two circles, squares, triangles, stars or rings in ten colours, "
        "small or large, at nine places, on a flat or gradient background. 64x64 pixels natively.\n\n"
        "Trained by `python -m devtools.demo.train` (see docs/demo-model.md in dreamloom for the time it takes and the "
        "evaluator's figures, from `python -m devtools.demo.evaluate`) with:\n\n"
        f"```json\n{json.dumps(settings, indent=2)}\n```\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo.train", description=__doc__.split("\n\n")[0])
    defaults = TrainConfig()
    parser.add_argument("--out", type=Path, help=f"where the model goes (default {defaults.out})")
    parser.add_argument("--work", type=Path, help=f"checkpoints and data (default {defaults.work})")
    parser.add_argument("--quick", action="store_true", help="a tiny run of every stage, as a smoke test")
    for name in ("seed", "vae_steps", "scenes", "steps", "batch", "evaluate", "threads", "focus_from", "warmup"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, help=f"default {getattr(defaults, name)}")
    for name in ("lr", "vae_lr", "min_snr", "ema", "focus", "kind_words"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, help=f"default {getattr(defaults, name)}")
    parser.add_argument("--init", type=Path, help="train on from this exported model instead of from scratch")
    parser.add_argument(
        "--no-attention-16", dest="attention_16", action="store_false", default=None,
        help="the first recipe's UNet, without cross-attention at 16x16",
    )  # fmt: skip
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None and k != "quick"}
    if args.quick:
        overrides.setdefault("work", defaults.work / "quick")
        overrides.setdefault("out", Path(overrides["work"]) / "model")
        config = TrainConfig.quick(**overrides)
    else:
        config = TrainConfig(**overrides)
    train(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
