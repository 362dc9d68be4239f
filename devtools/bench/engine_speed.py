"""``dreamloom bench engine``: plain diffusers (A) against dreamloom's engine path (B), side by side.

    python -m devtools.bench.engine_speed --device cuda                          # SD-Turbo 1 and 4 steps, SDXL 30 steps
    python -m devtools.bench.engine_speed --device cpu --configs tiny            # a smoke run anywhere

Both load the same random-weight model (the real architectures of ``devtools/configs``), built once and saved
to a temporary folder, and render the same prompts from the same starting latents. After the same warm-up
they alternate, one grid each, so drift in clocks or temperature hits both alike. A is
``pipe(prompt, num_images_per_prompt=4)`` as diffusers documents it (fp16 on CUDA, SDPA, eager); B is
``Engine.imagine`` with the registry entry's optimisations (``--compile``, ``--fuse-qkv``,
``--channels-last``). Printed per configuration: images/s, seconds per grid, the stages (text encode,
denoise, decode, grid encode as the bot posts it), peak GPU memory, warm-up (compile) time, the ratio B/A
and the mean pixel difference between A's and B's images.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoPipelineForText2Image
from PIL import Image

from devtools.architectures import save_random_pipeline
from devtools.tiny_pipelines import TINY_SIZE_MULTIPLE, save_tiny_pipeline
from engine.conditioning import starting_noise
from engine.generate import Engine
from engine.grid import compose_grid
from engine.loading import dtype_kwargs, pick_dtype
from engine.plan import GRID_SIZE, plan_generation
from engine.prompt import parse
from engine.registry import ModelEntry, Registry

__all__ = ["CONFIGS", "TINY_ARCHITECTURES", "BenchConfig", "main", "model_folder", "run"]


@dataclass(frozen=True)
class BenchConfig:
    architecture: str  # "sd-turbo", "sdxl" (devtools/configs) or "tiny"
    family: str
    size: int
    steps: int
    guidance: float


CONFIGS = {
    "sd-turbo-1": BenchConfig("sd-turbo", "sd-turbo", 512, 1, 0.0),
    "sd-turbo-4": BenchConfig("sd-turbo", "sd-turbo", 512, 4, 0.0),
    "sdxl-30": BenchConfig("sdxl", "sdxl", 1024, 30, 5.0),
    "tiny": BenchConfig("tiny", "sd15", 64, 4, 7.5),
    # `dreamloom bench gpu --tiny`: SD-Turbo's and SDXL's settings on the tiny pipelines, for a CPU run.
    "tiny-turbo": BenchConfig("tiny", "sd-turbo", 64, 1, 0.0),
    "tiny-sdxl": BenchConfig("tiny-sdxl", "sdxl", 64, 2, 5.0),
}
TINY_ARCHITECTURES = {"tiny": "sd15", "tiny-sdxl": "sdxl"}  # architecture -> save_tiny_pipeline's family


@dataclass
class Timing:
    total: float
    encode: float
    denoise: float
    decode: float
    grid: float
    peak_bytes: int


@dataclass
class PathResult:
    warmup_seconds: float
    runs: list[Timing] = field(default_factory=list)

    def median(self, name: str) -> float:
        return float(statistics.median(float(getattr(run, name)) for run in self.runs))


def run(
    name: str,
    device: str,
    iterations: int,
    compile_mode: str,
    fuse_qkv: bool,
    channels_last: bool,
    workdir: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    config = CONFIGS[name]
    folder = model_folder(config, workdir, device)
    entry = ModelEntry.build(
        "bench",
        {
            "source": str(folder),
            "family": config.family,
            "native_size": [config.size, config.size],
            "steps": config.steps,
            "guidance": config.guidance,
            "size_multiple": TINY_SIZE_MULTIPLE if config.architecture in TINY_ARCHITECTURES else 64,
            "compile": compile_mode,
            "fuse_qkv": fuse_qkv,
            "channels_last": channels_last,
        },
        "bench",
    )
    torch_device = torch.device(device)
    dtype = pick_dtype(entry, torch_device)
    log(f"{name}: loading A (plain diffusers) and B (dreamloom engine) on {device} as {dtype}")
    started = time.perf_counter()
    plain = AutoPipelineForText2Image.from_pretrained(str(folder), **dtype_kwargs(dtype)).to(torch_device)
    plain.set_progress_bar_config(disable=True)
    a_load = time.perf_counter() - started
    engine = Engine(Registry((entry,), "bench"), device=torch_device, preview_every=10**9)
    started = time.perf_counter()
    engine.load("bench")
    b_load = time.perf_counter() - started

    prompts = [f"a lighthouse at dusk, study {n}" for n in range(iterations + 1)]
    a, b = PathResult(0.0), PathResult(0.0)
    a_images, b_images = None, None
    for index, prompt in enumerate(prompts):  # index 0 is the warm-up of both paths
        timing_b, images_b = _timed(functools.partial(_engine_grid, engine, prompt), torch_device)
        timing_a, images_a = _timed(functools.partial(_plain_grid, plain, engine, prompt), torch_device)
        if index == 0:
            a.warmup_seconds, b.warmup_seconds = timing_a.total, timing_b.total
            a_images, b_images = images_a, images_b
            log(f"{name}: warm-up done (A {timing_a.total:.2f} s, B {timing_b.total:.2f} s, B's compile included)")
            continue
        a.runs.append(timing_a)
        b.runs.append(timing_b)
    assert a_images is not None
    assert b_images is not None
    difference = [
        float(np.abs(np.asarray(x, dtype=np.float32) - np.asarray(y, dtype=np.float32)).mean())
        for x, y in zip(a_images, b_images, strict=True)
    ]
    rerolled = _timed(functools.partial(_engine_grid, engine, prompts[-1]), torch_device)[0]
    return {
        "config": name,
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "size": config.size,
        "steps": config.steps,
        "optimisations": {"compile": compile_mode, "fuse_qkv": fuse_qkv, "channels_last": channels_last},
        "A": {"load_seconds": a_load, "warmup_seconds": a.warmup_seconds, "runs": [asdict(r) for r in a.runs]},
        "B": {"load_seconds": b_load, "warmup_seconds": b.warmup_seconds, "runs": [asdict(r) for r in b.runs]},
        "summary": {
            **_summary(a, b, difference, rerolled),
            # A constant image (NaNs decode to black) would match its twin: the spread says it was drawn.
            "A_pixel_spread_min": min(_spread(image) for image in a_images),
            "B_pixel_spread_min": min(_spread(image) for image in b_images),
        },
    }


def model_folder(config: BenchConfig, workdir: Path, device: str) -> Path:
    """The configuration's model saved under ``workdir`` (built on first use, then reused)."""
    folder = workdir / config.architecture
    if not (folder / "model_index.json").exists():
        if config.architecture in TINY_ARCHITECTURES:
            save_tiny_pipeline(folder, TINY_ARCHITECTURES[config.architecture])
        else:
            dtype = torch.float16 if device.startswith("cuda") else torch.float32
            save_random_pipeline(config.architecture, folder, dtype=dtype, device=device)
    return folder


def _spread(image: Image.Image) -> float:
    """The standard deviation of an image's pixel values (0-255)."""
    return float(np.asarray(image, dtype=np.float32).std())


def _engine_grid(engine: Engine, prompt: str) -> tuple[list[Image.Image], dict[str, float]]:
    result = engine.imagine(parse(f"{prompt} --seed 1234"))
    started = time.perf_counter()
    _encode_grid(list(result.images))
    stages = {"encode": result.timings.encode, "denoise": result.timings.denoise, "decode": result.timings.decode}
    return list(result.images), {**stages, "grid": time.perf_counter() - started}


def _plain_grid(pipe: Any, engine: Engine, prompt: str) -> tuple[list[Image.Image], dict[str, float]]:
    """The diffusers call as documented, with the engine's starting latents so the pixels can be compared."""
    loaded = engine.load("bench")
    plan = plan_generation(parse(f"{prompt} --seed 1234"), loaded.entry.profile)
    factor = pipe.vae_scale_factor
    shape = (pipe.unet.config.in_channels, plan.height // factor, plan.width // factor)
    latents = starting_noise(plan, shape).to(loaded.device, loaded.dtype)
    marks: dict[str, float] = {}

    def on_step(pipeline: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        marks.setdefault("first_step", time.perf_counter())
        marks["last_step"] = time.perf_counter()
        return kwargs

    begun = time.perf_counter()
    output = pipe(
        prompt,
        num_images_per_prompt=GRID_SIZE,
        height=plan.height,
        width=plan.width,
        num_inference_steps=plan.steps,
        guidance_scale=plan.guidance_scale,
        latents=latents,
        callback_on_step_end=on_step,
    )
    ended = time.perf_counter()
    images = list(output.images)
    started = time.perf_counter()
    _encode_grid(images)
    # The first step's end bounds text encoding from above (it includes one step); the rest is denoising.
    first, last = marks.get("first_step", ended), marks.get("last_step", ended)
    step = (last - first) / max(1, plan.steps - 1) if plan.steps > 1 else 0.0
    encode = max(0.0, first - begun - step)
    stages = {"encode": encode, "denoise": last - begun - encode, "decode": ended - last}
    return images, {**stages, "grid": time.perf_counter() - started}


def _encode_grid(images: list[Image.Image]) -> bytes:
    """The grid as the bot posts it: composed, then JPEG quality 90."""
    buffer = io.BytesIO()
    compose_grid(images).save(buffer, format="JPEG", quality=90, subsampling=0)
    return buffer.getvalue()


def _timed(
    render: Callable[[], tuple[list[Image.Image], dict[str, float]]], device: torch.device
) -> tuple[Timing, list[Image.Image]]:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    images, stages = render()
    if device.type == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
    return Timing(total=total, peak_bytes=peak, **stages), images


def _summary(a: PathResult, b: PathResult, difference: list[float], rerolled: Timing) -> dict[str, float]:
    a_grid, b_grid = a.median("total"), b.median("total")
    return {
        "A_images_per_second": GRID_SIZE / a_grid,
        "B_images_per_second": GRID_SIZE / b_grid,
        "A_seconds_per_grid": a_grid,
        "B_seconds_per_grid": b_grid,
        "ratio_B_over_A": a_grid / b_grid,
        "pixel_difference_mean": statistics.fmean(difference),
        "B_reroll_encode_seconds": rerolled.encode,
    }


def format_table(results: Sequence[dict[str, Any]]) -> str:
    header = (
        f"{'config':<12} {'path':<4} {'img/s':>7} {'s/grid':>8} {'encode':>7} {'denoise':>8} {'decode':>7} "
        f"{'grid':>6} {'peak GB':>8} {'warm-up':>8}"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        for path in ("A", "B"):
            runs = result[path]["runs"]

            def median(key: str, values: list[dict[str, float]] = runs) -> float:
                return statistics.median(run[key] for run in values)

            lines.append(
                f"{result['config'] if path == 'A' else '':<12} {path:<4} {GRID_SIZE / median('total'):>7.2f} "
                f"{median('total'):>8.3f} {median('encode'):>7.3f} {median('denoise'):>8.3f} {median('decode'):>7.3f} "
                f"{median('grid'):>6.3f} {median('peak_bytes') / 2**30:>8.2f} {result[path]['warmup_seconds']:>8.2f}"
            )
        summary = result["summary"]
        lines.append(
            f"{'':<12} B/A {summary['ratio_B_over_A']:.2f}x   pixel difference {summary['pixel_difference_mean']:.3f} "
            f"(mean, 0-255)   re-roll text encode {summary['B_reroll_encode_seconds'] * 1000:.1f} ms"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dreamloom bench engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--configs", default=None, help=f"comma-separated, from {', '.join(CONFIGS)}")
    parser.add_argument("--iterations", type=int, default=5, help="measured grids per path (after one warm-up)")
    parser.add_argument("--compile", default=None, help="B's torch.compile mode (default: max-autotune on CUDA)")
    parser.add_argument("--no-fuse-qkv", action="store_true", help="B without fused attention projections")
    parser.add_argument("--no-channels-last", action="store_true", help="B without channels-last memory format")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--workdir", type=Path, help="where the random-weight models are saved (reused)")
    args = parser.parse_args(argv)
    on_cuda = args.device.startswith("cuda")
    names = (
        args.configs.split(",") if args.configs else (["sd-turbo-1", "sd-turbo-4", "sdxl-30"] if on_cuda else ["tiny"])
    )
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown config {', '.join(unknown)}; known: {', '.join(CONFIGS)}")
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    compile_mode = args.compile or ("max-autotune" if on_cuda else "off")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dreamloom-bench-"))
    results = []
    for name in names:
        results.append(
            run(
                name,
                args.device,
                args.iterations,
                compile_mode,
                not args.no_fuse_qkv,
                not args.no_channels_last,
                workdir,
                lambda line: print(line, file=sys.stderr, flush=True),
            )
        )
    device_name = torch.cuda.get_device_name() if on_cuda else "CPU"
    print(f"dreamloom bench engine on {device_name}, torch {torch.__version__}, B: compile={compile_mode}, "
          f"fuse_qkv={not args.no_fuse_qkv}, channels_last={not args.no_channels_last}")  # fmt: skip
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps({"device": device_name, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
