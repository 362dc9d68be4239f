"""The picture of the demo model in docs/demo-model.md: ``python -m devtools.demo.figure docs/images/demo-kinds.png``.

One row per shape kind for the prompt "a large red <kind> in the centre on a white background --seed 3":
the renderer's own drawing of that scene, then the four images of the model's grid.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from devtools.demo.evaluate import demo_engine
from devtools.demo.scenes import KINDS, NATIVE_SIZE, Scene, Shape, render
from engine.prompt import parse

__all__ = ["kinds_figure", "main"]

MARGIN = (240, 240, 240)


def kinds_figure(model: Path | None = None, seed: int = 3) -> Image.Image:
    engine = demo_engine(model)
    width, height = NATIVE_SIZE
    figure = Image.new("RGB", (5 * width, len(KINDS) * height), MARGIN)
    for row, kind in enumerate(KINDS):
        scene = Scene("white", (Shape(kind, "red", "large", "centre"),))
        figure.paste(render(scene), (0, row * height))
        result = engine.imagine(parse(f"a large red {kind} in the centre on a white background --seed {seed}"))
        for column, image in enumerate(result.images, start=1):
            figure.paste(image.resize(NATIVE_SIZE), (column * width, row * height))
    return figure


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo.figure", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--model", type=Path, help="a folder in the diffusers layout (default: the shipped model)")
    args = parser.parse_args(argv)
    kinds_figure(args.model).save(args.out, optimize=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
