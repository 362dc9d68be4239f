"""The demo model's evaluator: ``python -m devtools.demo.evaluate`` prints per-attribute accuracy.

Each held-out scene's prompt (``captions.full_caption``: "a large red circle in the top left on a blue
background") goes through the engine exactly as a /imagine does (registry, loading, the 2x2 grid); the
checker reads each of the four pictures back and scores it against the scene. Held-out scenes are
descriptions the training never drew (``scenes.heldout_scenes``); by default 200 one-shape prompts, and
``--two-shape N`` adds a table for N two-shape prompts. ``--checks`` also measures what the product's
parameters do: ``--seed``, ``--no <colour>``, variations and ``--ar 2:1``.

Deterministic: prompt ``i`` runs with ``--seed i``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from devtools.demo import MODEL_DIR
from devtools.demo.captions import full_caption
from devtools.demo.checker import ATTRIBUTES, Reading, colour_share, read, score
from devtools.demo.scenes import heldout_scenes
from engine.generate import Engine
from engine.prompt import parse
from engine.registry import Registry

__all__ = ["Report", "demo_engine", "evaluate", "format_table", "main", "product_checks"]


@dataclass
class Report:
    """Correct answers per attribute, for each set of prompts."""

    tables: dict[str, dict[str, list[bool]]] = field(default_factory=dict)
    prompts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    grid_seconds: list[float] = field(default_factory=list)

    def accuracy(self, table: str, attribute: str) -> float:
        marks = self.tables[table][attribute]
        return sum(marks) / max(1, len(marks))


def demo_engine(model: str | Path | None = None, steps: int | None = None) -> Engine:
    """An engine serving ``model`` (a folder in the diffusers layout) as alias ``demo``; None: the
    registry's default with nothing configured, which is the shipped demo model."""
    if model is None and steps is None:
        return Engine(Registry.from_env({}))
    settings: dict[str, object] = {"source": str(model or MODEL_DIR), "family": "demo"}
    if steps is not None:
        settings["steps"] = steps
    return Engine(Registry.from_mapping({"models": {"demo": settings}}))


def evaluate(
    model: str | Path | None = None,
    count: int = 200,
    *,
    two_shape: int = 0,
    steps: int | None = None,
    engine: Engine | None = None,
    save: Path | None = None,
) -> Report:
    """Score the model's pictures for ``count`` held-out one-shape prompts (and ``two_shape`` two-shape ones)."""
    engine = engine or demo_engine(model, steps)
    report = Report()
    started = time.perf_counter()
    sets = [("one shape", heldout_scenes(count))]
    if two_shape:
        sets.append(("two shapes", heldout_scenes(two_shape, shape_count=2)))
    for name, scenes in sets:
        table: dict[str, list[bool]] = {attribute: [] for attribute in (*ATTRIBUTES, "all")}
        for index, scene in enumerate(scenes):
            grid_started = time.perf_counter()
            result = engine.imagine(parse(f"{full_caption(scene)} --seed {index}"))
            report.grid_seconds.append(time.perf_counter() - grid_started)
            if save is not None and result.grid is not None:
                save.mkdir(parents=True, exist_ok=True)
                result.grid.save(save / f"{name.replace(' ', '-')}-{index:03d}.png")
            for image in result.images:
                marks = score(scene, read(image))
                for attribute, correct in marks.items():
                    table[attribute].append(correct)
                table["all"].append(all(marks[a] for a in ("background", "colour", "kind", "position")))
        report.tables[name] = table
        report.prompts[name] = len(scenes)
    report.seconds = time.perf_counter() - started
    return report


def format_table(report: Report) -> str:
    names = list(report.tables)
    header = "| attribute | " + " | ".join(f"{n} ({report.prompts[n]} prompts x 4 images)" for n in names) + " |"
    lines = [header, "|---|" + "---|" * len(names)]
    for attribute in (*ATTRIBUTES, "all"):
        cells = [f"{100 * report.accuracy(n, attribute):.1f} %" for n in names]
        label = {"all": "background, colour, kind and position all right", "count": "shape count"}.get(attribute)
        lines.append(f"| {label or attribute} | " + " | ".join(cells) + " |")
    grid = statistics.median(report.grid_seconds) if report.grid_seconds else 0.0
    lines.append(f"\n{report.seconds:.0f} s in all; median {grid:.2f} s per 2x2 grid")
    return "\n".join(lines)


# --- what the parameters do --------------------------------------------------------------------------


def product_checks(engine: Engine, grids: int = 8) -> dict[str, float]:
    """Numbers for --seed, --no, variations and --ar 2:1, over ``grids`` grids each (seeds 0, 1, ...)."""
    results: dict[str, float] = {}
    same = 0
    for seed in range(grids):
        first = engine.imagine(parse(f"a large star on a white background --seed {seed}"))
        again = engine.imagine(parse(f"a large star on a white background --seed {seed}"))
        same += [i.tobytes() for i in first.images] == [i.tobytes() for i in again.images]
    results["--seed reproduces (share of grids)"] = same / grids

    plain, without = [], []
    for seed in range(grids):
        plain.append(_share(engine.imagine(parse(f"a large circle --seed {seed}")).images, "red"))
        without.append(_share(engine.imagine(parse(f"a large circle --seed {seed} --no red")).images, "red"))
    results["red share, 'a large circle'"] = statistics.mean(plain)
    results["red share, 'a large circle --no red'"] = statistics.mean(without)

    kept, total = 0, 0
    scenes = heldout_scenes(grids)
    for seed, scene in enumerate(scenes):
        parent = engine.imagine(parse(f"{full_caption(scene)} --seed {seed}"))
        chosen = engine.separate(parent.grid or Image.new("RGB", (1, 1)), parent.recipe, 1)
        parent_reading = read(chosen.images[0])
        for strong in (False, True):
            varied = engine.vary(chosen.images[0], chosen.recipe, strong=strong)
            for image in varied.images:
                reading = read(image)
                total += 1
                kept += _main_attributes(reading) == _main_attributes(parent_reading)
    results["variations keep the parent's background, colour, kind and place"] = kept / max(1, total)

    wide_marks: list[bool] = []
    wide_ok = True
    for seed, scene in enumerate(scenes):
        result = engine.imagine(parse(f"{full_caption(scene)} --ar 2:1 --seed {seed}"))
        for image in result.images:
            wide_ok &= image.width > 1.5 * image.height
            marks = score(scene, read(image))
            wide_marks.append(all(marks[a] for a in ("background", "colour", "kind", "position")))
    results["--ar 2:1 pictures are wide (1 = all)"] = float(wide_ok)
    results["--ar 2:1 background, colour, kind and position all right"] = sum(wide_marks) / len(wide_marks)
    return results


def _share(images: Sequence[Image.Image], colour: str) -> float:
    return statistics.mean(colour_share(image, colour) for image in images)


def _main_attributes(reading: Reading) -> tuple[object, ...]:
    shape = reading.shapes[0] if reading.shapes else None
    return (reading.background, reading.background_bottom, shape and (shape.colour, shape.kind, shape.position))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a folder in the diffusers layout (default: the shipped model)")
    parser.add_argument("--prompts", type=int, default=200, help="held-out one-shape prompts (default 200)")
    parser.add_argument("--two-shape", type=int, default=0, help="held-out two-shape prompts (default 0)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the registry's)")
    parser.add_argument("--save", type=Path, help="save every grid in this folder")
    parser.add_argument("--checks", action="store_true", help="also measure --seed, --no, variations and --ar")
    args = parser.parse_args(argv)
    engine = demo_engine(args.model, args.steps)
    report = evaluate(count=args.prompts, two_shape=args.two_shape, engine=engine, save=args.save)
    print(format_table(report))
    if args.checks:
        for name, value in product_checks(engine).items():
            print(f"{name}: {value:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
