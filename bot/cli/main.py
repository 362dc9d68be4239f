"""The ``dreamloom`` command line.

Subcommands:

    dreamloom up                                       everything on this machine: open the page it names
    dreamloom worker | web | bot                       one part alone, configured from the environment
    dreamloom imagine "a lighthouse --ar 16:9 --seed 7"   a job, with a progress bar; prints the grid's path
    dreamloom upscale JOB 1 | vary JOB 2 --strong | reroll JOB | zoom JOB | pan JOB left | square JOB
    dreamloom jobs | cancel JOB                        your jobs; cancel one
    dreamloom health                                   is the running service well? (Redis, storage, workers)
    dreamloom parse "a lighthouse --ar 16:9 --seed 7"   how dreamloom reads a prompt, and the plan it makes
    dreamloom bench ...                                benchmarks (a source checkout's dev tools)

Every command finds the service it talks to the same way (``bot.cli.connect``). Every expected error is a
``DreamloomError``: its title and message go to stderr, and the exit status is its own: 2 for a refusal (a
request that cannot run as written; no job was made), 1 for a failure. Heavy parts (the worker) run in
subprocesses: this package never imports torch.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from bot.cli.settings import ServiceSettings, model_names
from engine.actions import FollowUpOptions
from engine.errors import DreamloomError
from engine.jobs import Action, PanDirection
from engine.plan import GenerationPlan, ModelProfile, plan_generation
from engine.prompt import ImagineRequest, expand_permutations, parse

EXIT_BAD_INPUT = 2
MAX_LISTED = 500  # jobs `dreamloom jobs` lists at most


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        result: int = args.run(args)
    except DreamloomError as exc:  # every expected error: its title, the whole message, its exit status
        print(f"{exc.title}: {exc}", file=sys.stderr)
        return exc.exit_code
    return result


def _service(args: argparse.Namespace) -> ServiceSettings:
    """The environment's settings, with the command line's overrides."""
    service = ServiceSettings.from_env()
    overrides = {
        name: value
        for name, value in (
            ("data_dir", getattr(args, "data_dir", None)),
            ("web_host", getattr(args, "host", None)),
            ("web_port", getattr(args, "port", None)),
            ("worker_concurrency", getattr(args, "concurrency", None)),
        )
        if value is not None
    }
    if "data_dir" in overrides:
        overrides["data_dir_given"] = True
    return replace(service, **overrides)


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

    _add_service_commands(commands)
    _add_job_commands(commands)
    _add_plugin_commands(commands)
    return parser


# Commands that come with a checkout's dev tools (devtools/), not with the wheel: what to say without them.
DEV_COMMANDS = {"bench": "benchmarks"}


def _add_plugin_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands other installed distributions add through the ``dreamloom.commands`` entry point: in a
    checkout, the dev tools add ``bench``. Without them, ``bench`` says where it comes from."""
    added = set()
    for entry in importlib.metadata.entry_points(group="dreamloom.commands"):
        entry.load()(commands)
        added.add(entry.name)
    for name, what in DEV_COMMANDS.items():
        if name not in added:
            missing = commands.add_parser(name, help=f"{what} (in a source checkout only)", add_help=False)
            missing.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            missing.set_defaults(run=lambda _args, name=name: _dev_command_missing(name))


def _dev_command_missing(name: str) -> int:
    print(
        f"dreamloom: `dreamloom {name}` is a development tool: it runs from a source checkout of dreamloom "
        "after `./dev install`",
        file=sys.stderr,
    )
    return EXIT_BAD_INPUT


def _add_service_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = commands.add_parser(
        "up",
        help="run everything on this machine: job system, worker, web playground (and the bot with DISCORD_TOKEN)",
        description="Run dreamloom on this machine with nothing to configure: a private Redis (unless REDIS_URL "
        "is set), a worker, the web playground, and the Discord bot when DISCORD_TOKEN is set. Ctrl-C stops it all.",
    )
    _data_dir_option(up)
    _web_options(up)
    up.set_defaults(run=_run_up)

    worker = commands.add_parser(
        "worker",
        help="run a Celery worker for the configured models (production)",
        description="Run a GPU worker: celery worker on the queues of the registry's model families.",
    )
    worker.add_argument(
        "--concurrency",
        type=int,
        help="jobs in hand at once: one renders on the GPU while the others encode and upload "
        "(default DREAMLOOM_WORKER_CONCURRENCY or 2; 1: no overlap)",
    )
    worker.add_argument("--families", help="comma-separated model families to serve (default: the registry's)")
    worker.add_argument(
        "--models",
        help="comma-separated models to serve from their own queues, besides their families' (default "
        "DREAMLOOM_WORKER_MODELS, else every registry model of the families)",
    )
    worker.add_argument(
        "--modes", default="fast,relax", help="queues to serve: fast, relax or both (default fast,relax)"
    )
    worker.add_argument("--loglevel", default="INFO", help="celery's log level (default INFO)")
    worker.set_defaults(run=_run_worker)

    health = commands.add_parser(
        "health",
        help="check Redis, storage and workers, and say what is wrong",
        description="Check the job system other commands use (the running `dreamloom up`, found as they find "
        "it, else REDIS_URL's): Redis, storage and workers. Exit status 1 when something is wrong.",
    )
    health.add_argument("--json", action="store_true", help="print the checks as JSON")
    _data_dir_option(health)
    health.set_defaults(run=_run_health)

    web = commands.add_parser(
        "web", help="run the web playground alone (production)", description="Serve the web playground."
    )
    _web_options(web)
    web.set_defaults(run=_run_web)

    bot = commands.add_parser(
        "bot", help="run the Discord bot alone (production)", description="Run the Discord bot (needs DISCORD_TOKEN)."
    )
    bot.set_defaults(run=_run_bot)


def _add_job_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    imagine = commands.add_parser(
        "imagine",
        help="run an /imagine job and print where its grid is",
        description="Run an /imagine job through the job system (the running `dreamloom up`, REDIS_URL's, "
        "or one started for this command) and follow it with a progress bar.",
    )
    imagine.add_argument("prompt", help='the /imagine text, e.g. "a lighthouse at dusk --ar 16:9 --seed 7"')
    _job_options(imagine)
    imagine.set_defaults(run=_run_imagine)

    upscale = _follow_up_parser(commands, "upscale", "U1-U4 on a grid; Upscale (Subtle/Creative) on an image")
    upscale.add_argument("--subtle", dest="upscale", action="store_const", const=Action.UPSCALE_SUBTLE,
                         help="2x, close to the original (on a grid: after separating image N)")  # fmt: skip
    upscale.add_argument("--creative", dest="upscale", action="store_const", const=Action.UPSCALE_CREATIVE,
                         help="2x, adding detail (on a grid: after separating image N)")  # fmt: skip
    upscale.set_defaults(run=_run_upscale)

    vary = _follow_up_parser(commands, "vary", "four variations of image N of a grid, or of a single image")
    vary.add_argument("--strong", action="store_true", help="Vary (Strong) instead of Vary (Subtle)")
    vary.set_defaults(run=_run_vary)

    reroll = commands.add_parser(
        "reroll",
        help="🔄: the same prompt again with a new seed",
        description="🔄 on a grid: the same prompt again with a new seed, as a new job of four images.",
    )
    reroll.add_argument("job", help="a grid's job id, or the start of one (see `dreamloom jobs`)")
    _job_options(reroll)
    reroll.set_defaults(run=_run_reroll)

    zoom = _follow_up_parser(commands, "zoom", "Zoom Out: outpaint around the image")
    zoom.add_argument("--scale", type=float, default=2.0, help="1.0-2.0 (default 2)")
    zoom.add_argument("--ar", type=_aspect, help="a new aspect ratio W:H for the zoomed-out image")
    zoom.set_defaults(run=_run_zoom)

    pan = commands.add_parser(
        "pan",
        help="extend the image to one side",
        description="Pan: extend an image by half its width or height towards DIRECTION, the original untouched; "
        "four new images. On a grid, image N is separated first.",
    )
    pan.add_argument("job", help="a job id, or the start of one (see `dreamloom jobs`)")
    pan.add_argument("direction", choices=[d.value for d in PanDirection], help="where to extend the image")
    pan.add_argument("n", nargs="?", type=_image_number, help="on a grid: which image (1-4)")
    _job_options(pan)
    pan.set_defaults(run=_run_pan)

    square = _follow_up_parser(commands, "square", "Make Square: outpaint the image to 1:1")
    square.set_defaults(run=_run_square)

    jobs = commands.add_parser(
        "jobs",
        help="list your jobs, newest first",
        description="List your jobs (DREAMLOOM_USER's), newest first: id, status, prompt, what made it, its parent.",
    )
    jobs.add_argument("--limit", type=_limit, default=20, help=f"how many to list, 1-{MAX_LISTED} (default 20)")
    _data_dir_option(jobs)
    jobs.set_defaults(run=_run_jobs)

    cancel = commands.add_parser(
        "cancel",
        help="cancel a waiting or running job",
        description="Cancel one of your jobs: a waiting one at once, a running one at its next step. Prints how "
        "the job ended.",
    )
    cancel.add_argument("job", help="a job id, or the start of one (see `dreamloom jobs`)")
    _data_dir_option(cancel)
    cancel.set_defaults(run=_run_cancel)


def _follow_up_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=summary, description=f"{summary}. Starts a follow-up job of JOB.")
    parser.add_argument("job", help="a job id, or the start of one (see `dreamloom jobs`)")
    parser.add_argument("n", nargs="?", type=_image_number, help="on a grid: which image (1-4)")
    _job_options(parser)
    return parser


def _job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--relax", dest="mode", action="store_const", const="relax", default="fast",
                        help="relax mode: runs when no fast job waits")  # fmt: skip
    _data_dir_option(parser)


def _data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="the data folder of the dreamloom to use (default DREAMLOOM_DATA_DIR; without either, the running "
        "`dreamloom up` is found wherever it runs)",
    )


def _web_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="the playground's address (default DREAMLOOM_WEB_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="the playground's port (default DREAMLOOM_WEB_PORT or 8188)")


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_LISTED:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_LISTED} (got {text!r})")
    return int(text)


def _image_number(text: str) -> int:
    if text not in ("1", "2", "3", "4"):
        raise argparse.ArgumentTypeError(f"an image of a grid is 1, 2, 3 or 4 (got {text!r})")
    return int(text)


def _aspect(text: str) -> tuple[int, int]:
    try:
        width, height = (int(side) for side in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"an aspect ratio is W:H such as 16:9 (got {text!r})") from None
    return width, height


# --- running the commands ---------------------------------------------------------------------------


def _run_up(args: argparse.Namespace) -> int:
    from bot.cli.up import run_up

    return run_up(_service(args))


def _run_worker(args: argparse.Namespace) -> int:
    from bot.cli.parts import run_worker

    families = [family.strip() for family in args.families.split(",") if family.strip()] if args.families else None
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in ("fast", "relax")]
    if unknown or not modes:
        print(f"dreamloom: --modes takes fast, relax or both (got {args.modes!r})", file=sys.stderr)
        return EXIT_BAD_INPUT
    models = list(model_names(args.models, "--models")) if args.models else None  # a ConfigError names it
    return run_worker(_service(args), families, args.loglevel, modes, models)


def _run_health(args: argparse.Namespace) -> int:
    from bot.cli.connect import job_system_of
    from bot.cli.services import NoService, find_running
    from engine.registry import Registry
    from tasks.health import run_checks
    from tasks.settings import Settings

    record = find_running(_service(args), os.environ)
    if record is not None:
        settings, registry = job_system_of(record, os.environ)
        print(f"checking the dreamloom up running on {record.data_dir} (pid {record.pid})", file=sys.stderr)
    elif os.environ.get("REDIS_URL"):
        settings, registry = Settings.from_env(), Registry.from_env()
    else:
        raise NoService(
            "No dreamloom is running on this machine to check: `dreamloom up` starts one (or pass --data-dir with "
            "its folder); for a deployment, set REDIS_URL and its storage settings"
        )
    checks = run_checks(settings, sorted({entry.family for entry in registry.entries}), storage_max_age=0)
    if args.json:
        print(json.dumps([vars(check) for check in checks], indent=1))
    else:
        for check in checks:
            print(f"{'ok  ' if check.ok else 'FAIL'} {check.name:<8} {check.detail}")
    return 0 if all(check.ok for check in checks) else 1


def _run_web(args: argparse.Namespace) -> int:
    from bot.cli.parts import run_web

    return run_web(_service(args))


def _run_bot(args: argparse.Namespace) -> int:
    from bot.cli.parts import run_bot

    return run_bot()


def _run_imagine(args: argparse.Namespace) -> int:
    from bot.cli.jobs import imagine

    return imagine(_service(args), args.prompt, args.mode)


def _follow_up(
    args: argparse.Namespace, action: Action | None, index: int | None, options: FollowUpOptions | None = None
) -> int:
    from bot.cli.jobs import FollowUp, follow_up

    return follow_up(_service(args), args.job, FollowUp(action, index, options or FollowUpOptions()), args.mode)


def _run_upscale(args: argparse.Namespace) -> int:
    return _follow_up(args, args.upscale, args.n)  # no --subtle/--creative: as the U buttons do


def _run_vary(args: argparse.Namespace) -> int:
    return _follow_up(args, Action.VARY_STRONG if args.strong else Action.VARY_SUBTLE, args.n)


def _run_reroll(args: argparse.Namespace) -> int:
    return _follow_up(args, Action.REROLL, None)


def _run_zoom(args: argparse.Namespace) -> int:
    return _follow_up(args, Action.ZOOM_OUT, args.n, FollowUpOptions(scale=args.scale, aspect=args.ar))


def _run_pan(args: argparse.Namespace) -> int:
    return _follow_up(args, Action.PAN, args.n, FollowUpOptions(direction=PanDirection(args.direction)))


def _run_square(args: argparse.Namespace) -> int:
    return _follow_up(args, Action.MAKE_SQUARE, args.n)


def _run_jobs(args: argparse.Namespace) -> int:
    from bot.cli.jobs import list_jobs

    return list_jobs(_service(args), args.limit)


def _run_cancel(args: argparse.Namespace) -> int:
    from bot.cli.jobs import cancel

    return cancel(_service(args), args.job)


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
    parsed = [(text, parse(text)) for text in expand_permutations(args.prompt)]

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
