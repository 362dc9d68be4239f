"""The ``dreamloom`` command line.

Subcommands:

    dreamloom parse "a lighthouse --ar 16:9 --seed 7"   how dreamloom reads a prompt, and the plan it makes

Bad prompts print the same message the bot gives and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict

from engine.plan import GenerationPlan, ModelProfile, plan_generation
from engine.prompt import ImagineRequest, PromptError, expand_permutations, parse

EXIT_BAD_INPUT = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    result: int = args.run(args)
    return result


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dreamloom", description="A self-hosted, MidJourney-style image bot.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    show = commands.add_parser(
        "parse",
        help="show how a prompt is read and the generation plan it makes",
        description="Parse an /imagine prompt exactly as the bot does and print the request and its plan.",
    )
    show.add_argument("prompt", help='the /imagine text, e.g. "a lighthouse at dusk --ar 16:9 --seed 7"')
    show.add_argument("--native", default="512x512", type=_size, help="the model's native size (default 512x512)")
    show.add_argument("--steps", default=30, type=int, help="the model's default steps (default 30)")
    show.add_argument("--guidance", default=7.5, type=float, help="the model's default guidance (default 7.5)")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.set_defaults(run=_run_parse)
    return parser


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(side) for side in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is WIDTHxHEIGHT, such as 1024x1024 (got {text!r})") from None
    return width, height


def _run_parse(args: argparse.Namespace) -> int:
    try:
        profile = ModelProfile(native_size=args.native, steps=args.steps, guidance=args.guidance)
    except ValueError as exc:
        print(f"dreamloom: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        variants = expand_permutations(args.prompt)
        parsed = [(text, parse(text)) for text in variants]
    except PromptError as exc:
        print(f"Invalid parameter: {exc}" if exc.param else f"Invalid prompt: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT

    results = [(text, request, plan_generation(request, profile)) for text, request in parsed]
    if args.json:
        print(json.dumps([{"text": t, "request": r.to_dict(), "plan": asdict(p)} for t, r, p in results], indent=2))
    else:
        for index, (text, request, plan) in enumerate(results):
            if len(results) > 1:
                print(f"# job {index + 1} of {len(results)}: {text}")
            print(_describe(request, plan))
            if index < len(results) - 1:
                print()
    return 0


def _describe(request: ImagineRequest, plan: GenerationPlan) -> str:
    rows = [
        ("prompt", request.prompt or "(image prompt only)"),
        *(("part", f"{p.weight:.3f}  {p.text}") for p in plan.prompt_parts if len(plan.prompt_parts) > 1),
        ("negative", request.negative or "-"),
        ("images", " ".join(request.image_urls) or "-"),
        ("size", f"{plan.width}x{plan.height} (--ar {request.aspect[0]}:{request.aspect[1]})"),
        ("steps", f"{plan.steps_run} of {plan.steps}"),
        ("guidance", f"{plan.guidance_scale:g}" + ("" if plan.use_guidance else " (off)")),
        ("seed", f"{plan.seed}" + ("" if request.seed is not None else " (random)")),
        ("image seeds", " ".join(map(str, plan.image_seeds))),
        ("chaos", f"shared noise {plan.shared_noise:.2f}, prompt jitter {plan.prompt_jitter:.2f}"),
        ("weird", f"{plan.weird_offset:.3f}"),
        ("tile", "yes" if plan.tile else "no"),
        ("model", request.model or "server default"),
        ("canonical", request.to_prompt()),
    ]
    return "\n".join(f"{name:<12} {value}" for name, value in rows)


if __name__ == "__main__":
    raise SystemExit(main())
