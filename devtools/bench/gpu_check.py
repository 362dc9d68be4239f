"""``dreamloom bench gpu``: the prepared check of a CUDA machine, one command, at most 8 minutes.

    dreamloom bench gpu                  # on a CUDA machine; the report goes to $OUT, else ./gpu-check
    dreamloom bench gpu --tiny           # the same parts on this CPU with the tiny pipelines (as the tests run it)

Parts, in this order, each in a process of its own with a time budget of its own:

    engine     imagine and every follow-up on the device in fp16 and bf16: no NaN or infinity out of any
               network, grids of four, every action of engine.actions.ACTIONS (devtools.bench.device_engine_check)
    job        one real job through a private redis-server and a Celery worker on the device, SD-Turbo's
               architecture with random weights (devtools.bench.device_job)
    sd-turbo   `bench engine` A (plain diffusers) vs B (dreamloom's settings) on SD-Turbo's architecture,
               4x512², 1 step, random weights, fixed seeds
    sdxl       the same on SDXL's architecture, 4x1024², 30 steps

For each it reports its status (passed, failed, timed out, or skipped when the run's budget had too little
left for it), its figures, and its peak memory: the part's own GPU memory as torch's allocator counts it
and the whole device's as nvidia-smi sees it (the job's worker process included), and host RSS. Warm-up
and compile time are reported apart from the measured grids; A's and B's images must agree within
``--tolerance`` (mean absolute difference, 0-255). It writes ``gpu-check.json``, ``gpu-check.md`` (tables)
and ``gpu-check.log`` (every part's output) to the output folder; the exit status is 0 only when every part
passed. A part runs in its own process so that one that outruns its budget can be stopped while the rest
still run, and a CUDA error or an out-of-memory in one part leaves the device clean for the next.

Carrying it to a machine with no package index (a lent GPU machine that has torch, where at most 64 MiB
travel): ``devtools/bench/carry_wheels.sh`` builds the wheels, and ``devtools/bench/README.md`` gives the
one-line command to run there.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from devtools.bench.gpu_report import markdown

__all__ = ["PARTS", "Part", "main"]

RUN_BUDGET = 450.0  # seconds for the parts on a GPU: with the CUDA probe and the report, under 8 minutes
TINY_RUN_BUDGET = 280.0
TINY_MINIMUM = 5.0  # seconds a part needs at least at tiny sizes
STOP_GRACE = 10.0  # seconds a part has to unwind after SIGTERM (its worker and redis-server stop) before SIGKILL


@dataclass(frozen=True)
class Part:
    name: str
    what: str
    budget: float  # seconds on a GPU
    minimum: float  # skipped when less than this is left of the run's budget

    def budget_for(self, tiny: bool, run_budget: float) -> float:
        """At tiny sizes on a CPU, a busy machine's slowness is no finding: only the run's budget holds."""
        return run_budget if tiny else self.budget

    def minimum_for(self, tiny: bool) -> float:
        return TINY_MINIMUM if tiny else self.minimum


PARTS = (
    Part("engine", "imagine and every follow-up on the device, each half precision", 60, 30),
    Part("job", "one real job through Redis and a Celery worker on the device", 70, 40),
    Part("sd-turbo", "bench engine A vs B: SD-Turbo's architecture, 4x512², 1 step", 110, 60),
    Part("sdxl", "bench engine A vs B: SDXL's architecture, 4x1024², 30 steps", 200, 100),
)


class DeviceMemory:
    """The device's used memory, every process's, sampled by nvidia-smi twice a second while a part runs."""

    def __init__(self) -> None:
        self.binary = shutil.which("nvidia-smi")
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DeviceMemory:
        if self.binary:
            self._thread = threading.Thread(target=self._sample, name="gpu-check-memory", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _sample(self) -> None:
        assert self.binary is not None
        while not self._stop.is_set():
            with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
                query = [self.binary, "--query-gpu=memory.used", "--format=csv,noheader,nounits", "--id=0"]
                used = subprocess.run(query, capture_output=True, text=True, timeout=5, check=True).stdout
                self.peak_mib = max(self.peak_mib, float(used.split()[0]))
            self._stop.wait(0.5)


def run_part(
    part: Part, options: dict[str, Any], run_budget: float, deadline: float, workdir: Path, log: IO[str]
) -> dict[str, Any]:
    """Run one part in its own process, within its budget and the run's; its report entry."""
    tiny = bool(options["tiny"])
    budget = part.budget_for(tiny, run_budget)
    entry: dict[str, Any] = {"what": part.what, "budget_seconds": budget, "seconds": 0.0, "reason": ""}
    left = deadline - time.monotonic()
    if left < part.minimum_for(tiny):
        return {**entry, "status": "skipped", "reason": f"skipped for time: {max(0.0, left):.0f} s of the run's "
                f"budget left, it needs at least {part.minimum_for(tiny):.0f} s"}  # fmt: skip
    timeout = min(budget, left)
    options_file, result_file = workdir / f"{part.name}.options.json", workdir / f"{part.name}.result.json"
    options_file.write_text(json.dumps(options))
    result_file.unlink(missing_ok=True)
    print(f"== {part.name}: {part.what} (budget {timeout:.0f} s)", file=log, flush=True)
    command = [sys.executable, "-m", "devtools.bench.gpu_parts", part.name, str(options_file), str(result_file)]
    started = time.monotonic()
    with DeviceMemory() as memory:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})  # fmt: skip
        timed_out = False
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(process)
    entry["seconds"] = time.monotonic() - started
    result = _read(result_file)
    result.setdefault("peak", {})
    if memory.binary:
        result["peak"]["device_used_bytes"] = int(memory.peak_mib * 2**20)
    if timed_out:
        status, reason = "timed_out", f"stopped at the end of its {timeout:.0f} s budget"
    elif process.returncode == 0 and result.get("ok"):
        status, reason = "passed", ""
    else:
        status = "failed"
        reason = "; ".join(result.get("problems") or []) or f"exit status {process.returncode}; see the log"
    print(f"== {part.name}: {status} in {entry['seconds']:.1f} s {reason}", file=log, flush=True)
    return {**entry, **result, "status": status, "reason": reason}


def _stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM to the part's process group (it unwinds, stopping its own children), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _read(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"ok": False, "problems": [], "figures": {}, "peak": {}, "progress": []}
    return data


def environment(device: str) -> dict[str, Any]:
    """What ran: the device, and the versions of what ran on it."""
    versions = {}
    for name in ("dreamloom", "torch", "diffusers", "transformers", "celery", "redis"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    info: dict[str, Any] = {"device": device, "name": "CPU", "cpus": os.cpu_count(), "versions": versions}
    smi = shutil.which("nvidia-smi")
    if device.startswith("cuda") and smi:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            query = [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits", "--id=0"]
            name, total, driver = (
                field.strip()
                for field in subprocess.run(query, capture_output=True, text=True, timeout=10).stdout.split(",")
            )
            info.update(name=name, memory_bytes=int(float(total) * 2**20), driver=driver)
    return info


def _cuda_problem(device: str) -> str | None:
    """Why ``device`` cannot run here, or None. Asked in a child process: this one keeps no CUDA context."""
    if not device.startswith("cuda"):
        return None
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)"
    status = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    if status.returncode == 3:
        return "torch sees no CUDA GPU here: run `dreamloom bench gpu --tiny` for the CPU run at tiny sizes"
    if status.returncode != 0:
        return f"torch would not start: {status.stderr.strip().splitlines()[-1:]}"
    return None


@contextlib.contextmanager
def _workdir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
    else:
        with tempfile.TemporaryDirectory(prefix="dreamloom-gpu-check-") as scratch:
            yield Path(scratch)


def check(options: dict[str, Any], names: Sequence[str], out: Path, budget: float, workdir: Path) -> dict[str, Any]:
    """Run the parts, write the reports; the report's data."""
    started = time.monotonic()
    deadline = started + budget
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "check": "dreamloom bench gpu",
        "mode": "tiny" if options["tiny"] else "full",
        "environment": environment(options["device"]),
        "budget_seconds": budget,
        "options": {key: value for key, value in options.items() if key != "workdir"},
        "parts": {},
    }
    with (out / "gpu-check.log").open("w") as log:
        for part in PARTS:
            if part.name in names:
                report["parts"][part.name] = run_part(part, options, budget, deadline, workdir, log)
                print(f"{part.name}: {report['parts'][part.name]['status']}", file=sys.stderr, flush=True)
            else:
                report["parts"][part.name] = {"what": part.what, "status": "skipped", "seconds": 0.0,
                                              "budget_seconds": part.budget_for(options["tiny"], budget),
                                              "reason": "not asked for (--parts)"}  # fmt: skip
    report["seconds"] = time.monotonic() - started
    report["peak"] = _peaks(report["parts"])
    report["ok"] = all(part["status"] == "passed" for part in report["parts"].values())
    (out / "gpu-check.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    (out / "gpu-check.md").write_text(markdown(report))
    return report


def _peaks(parts: dict[str, Any]) -> dict[str, int]:
    """The largest of each memory figure over the parts."""
    peak: dict[str, int] = {}
    for part in parts.values():
        for name, value in part.get("peak", {}).items():
            if isinstance(value, int):
                peak[name] = max(peak.get(name, 0), value)
    return peak


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dreamloom bench gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny pipelines on the CPU (a smoke run, as in tests)")
    parser.add_argument("--device", help="cuda (default), cuda:N, or cpu (the default with --tiny)")
    parser.add_argument("--out", type=Path, help="the reports' folder (default: $OUT if set, else ./gpu-check)")
    parser.add_argument("--parts", default=",".join(p.name for p in PARTS), help="comma-separated (default: all)")
    parser.add_argument("--budget", type=float, help=f"seconds for the whole run (default {RUN_BUDGET:g}; "
                        f"{TINY_RUN_BUDGET:g} with --tiny)")  # fmt: skip
    parser.add_argument("--compile", help="B's torch.compile mode (default: default on CUDA, off on a CPU)")
    parser.add_argument("--iterations", type=int, help="measured grids per path (default 5 SD-Turbo, 1 SDXL, 1 tiny)")
    parser.add_argument("--tolerance", type=float, default=3.0, help="A vs B mean pixel difference allowed (0-255)")
    parser.add_argument("--workdir", type=Path, help="where the models are saved (kept; default: a temporary folder)")
    args = parser.parse_args(argv)
    names = [name for name in args.parts.split(",") if name]
    unknown = sorted(set(names) - {part.name for part in PARTS})
    if unknown or not names:
        parser.error(f"--parts takes names from {', '.join(p.name for p in PARTS)} (got {args.parts!r})")
    device = args.device or ("cpu" if args.tiny else "cuda")
    if not re.fullmatch(r"cpu|cuda(:[0-9]{1,2})?", device):
        parser.error(f"--device takes cpu, cuda or cuda:N (got {device!r})")
    if args.iterations is not None and not 1 <= args.iterations <= 50:
        parser.error("--iterations must be from 1 to 50")
    budget = args.budget if args.budget is not None else (TINY_RUN_BUDGET if args.tiny else RUN_BUDGET)
    if not 1 <= budget <= 3600:
        parser.error("--budget must be from 1 to 3600 seconds")
    if not 0 <= args.tolerance <= 255:
        parser.error("--tolerance must be from 0 to 255")
    if problem := _cuda_problem(device):
        print(f"dreamloom bench gpu: {problem}", file=sys.stderr)
        return 2
    out = args.out or Path(os.environ.get("OUT") or "gpu-check")
    with _workdir(args.workdir) as workdir:
        options = {"device": device, "tiny": args.tiny, "workdir": str(workdir), "compile": args.compile,
                   "iterations": args.iterations, "tolerance": args.tolerance}  # fmt: skip
        report = check(options, names, out, budget, workdir)
    print((out / "gpu-check.md").read_text())
    print(f"reports: {out / 'gpu-check.json'}, {out / 'gpu-check.md'}, {out / 'gpu-check.log'}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
