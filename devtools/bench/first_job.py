"""``dreamloom bench first-job``: a newcomer's first ``dreamloom imagine``, timed as they would see it.

Cold: in a fresh empty folder with nothing configured and nothing running, the very command a newcomer types
(``dreamloom imagine "<the served model's example prompt>"``): it starts a private Redis and a worker for
itself, the worker loads the model, renders, and the command prints the grid's path and stops them. Each
cold run uses a new folder, so nothing of a previous run's service is reused (the operating system's file
cache is: a machine's very first run after boot also reads torch from disk, which this does not measure).
Warm: the same command against a ``dreamloom up`` that is already running, as later jobs go.

For each run it prints the wall time of the whole command and where the time went, from the worker's log:
until the worker was ready (Python, Celery, the engine's imports, and loading and warming the model: a worker
takes no job before, see tasks.warm_start), the render itself as Celery timed it,
and the rest (the command's own start, submitting, following, storing, stopping the service it started).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.registry import Registry

__all__ = ["main"]

_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
_SUCCEEDED = re.compile(r"succeeded in ([0-9.]+)s")
_URL = re.compile(r"Open (http://\S+) in your browser")


@dataclass(frozen=True)
class Run:
    kind: str  # "cold" or "warm"
    seconds: float  # the whole command, as its user waits for it
    worker_ready: float | None  # seconds from the command's start until its worker was ready (cold runs)
    render: float | None  # the job's task, as Celery timed it
    ok: bool


def _dreamloom() -> list[str]:
    found = shutil.which("dreamloom", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "bot.cli"]


def _environment(state: Path) -> dict[str, str]:
    """A newcomer's shell: none of dreamloom's variables, a state folder of its own (no running service)."""
    keep = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
    return {**keep, "XDG_STATE_HOME": str(state), "HF_HUB_OFFLINE": "1"}


def _log_times(log: Path, since: float) -> tuple[float | None, float | None]:
    """(seconds after ``since`` that the worker said it was ready, the render task's own seconds)."""
    ready = render = None
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None, None
    for line in lines:
        if " ready." in line and (stamp := _LOG_TIME.match(line)):
            at = datetime.datetime.strptime(stamp[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            ready = max(0.0, at - since)
        if "dreamloom.render" in line and (took := _SUCCEEDED.search(line)):
            render = float(took[1])
    return ready, render


def cold_run(prompt: str, root: Path, number: int) -> Run:
    folder = root / f"cold-{number}"
    folder.mkdir()
    started = time.time()
    clock = time.perf_counter()
    result = subprocess.run([*_dreamloom(), "imagine", prompt], cwd=folder, env=_environment(folder / "state"),
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    seconds = time.perf_counter() - clock
    ready, render = _log_times(folder / "dreamloom-data" / "logs" / "worker.log", started)
    if result.returncode != 0:
        print(result.stdout + result.stderr, file=sys.stderr)
    return Run("cold", seconds, ready, render, result.returncode == 0)


@contextlib.contextmanager
def running_service(root: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """``dreamloom up`` in its own folder, until the block ends; yields the folder and the shell to use it."""
    folder = root / "up"
    folder.mkdir()
    env = _environment(root / "up-state")
    with (folder / "up.log").open("w") as log:
        up = subprocess.Popen([*_dreamloom(), "up", "--port", "0"], cwd=folder, env=env, stdout=log,
                              stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not ("worker       ready" in (text := (folder / "up.log").read_text()) and _URL.search(text)):
            if up.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dreamloom up did not start:\n{text}")
            time.sleep(0.2)
        yield folder, env
    finally:
        up.terminate()
        up.wait(timeout=120)


def warm_run(prompt: str, folder: Path, env: dict[str, str]) -> Run:
    log = folder / "dreamloom-data" / "logs" / "worker.log"
    before = log.read_text(errors="replace").count("succeeded in")
    clock = time.perf_counter()
    result = subprocess.run([*_dreamloom(), "imagine", prompt], cwd=folder, env=env, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    seconds = time.perf_counter() - clock
    renders = [float(m[1]) for m in _SUCCEEDED.finditer(log.read_text(errors="replace"))][before:]
    return Run("warm", seconds, None, renders[-1] if renders else None, result.returncode == 0)


def report(runs: Sequence[Run]) -> str:
    lines = [f"{'run':<6} {'command':>9} {'worker ready':>13} {'render':>8} {'the rest':>9}", "-" * 49]
    for run in runs:
        ready = f"{run.worker_ready:.1f} s" if run.worker_ready is not None else "-"
        render = f"{run.render:.1f} s" if run.render is not None else "-"
        rest = run.seconds - (run.worker_ready or 0.0) - (run.render or 0.0)
        lines.append(f"{run.kind:<6} {run.seconds:>7.1f} s {ready:>13} {render:>8} {rest:>7.1f} s"
                     + ("" if run.ok else "  FAILED"))  # fmt: skip
    for kind in ("cold", "warm"):
        times = [run.seconds for run in runs if run.kind == kind and run.ok]
        if times:
            lines.append(f"{kind}: median {statistics.median(times):.1f} s, min {min(times):.1f} s, "
                         f"max {max(times):.1f} s over {len(times)} runs")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dreamloom bench first-job", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="cold runs, each in a new empty folder (default 3)")
    parser.add_argument("--warm-runs", type=int, default=3, help="runs against a running `dreamloom up` (default 3)")
    parser.add_argument("--prompt", help="the prompt (default: the served model's example, as a newcomer sees it)")
    parser.add_argument("--json", type=Path, help="also write the runs to this file")
    args = parser.parse_args(argv)
    if args.runs < 0 or args.warm_runs < 0 or args.runs + args.warm_runs == 0:
        parser.error("--runs and --warm-runs are 0 or more, and one of them more than 0")
    prompt = args.prompt or Registry.from_env(_environment(Path(tempfile.gettempdir()))).example
    print(f"dreamloom bench first-job on {os.cpu_count()} CPUs: dreamloom imagine {prompt!r}", flush=True)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="dreamloom-first-job-") as scratch:
        root = Path(scratch)
        for number in range(args.runs):
            runs.append(cold_run(prompt, root, number))
            print(f"cold run {number + 1}: {runs[-1].seconds:.1f} s", flush=True)
        if args.warm_runs:
            with running_service(root) as (folder, env):
                for number in range(args.warm_runs):
                    runs.append(warm_run(prompt, folder, env))
                    print(f"warm run {number + 1}: {runs[-1].seconds:.1f} s", flush=True)
    print(report(runs))
    if args.json:
        args.json.write_text(json.dumps([asdict(run) for run in runs], indent=1))
    return 0 if all(run.ok for run in runs) else 1
