"""The parts of ``dreamloom bench gpu``, each run in a process of its own by ``devtools.bench.gpu_check``.

    python -m devtools.bench.gpu_parts PART OPTIONS.json RESULT.json

A part writes its result file as it goes (each engine call, each benchmark stage), so a part stopped at the
end of its time budget still says how far it got. SIGTERM (the budget's end) unwinds the part, so the
redis-server and Celery worker of the job part are stopped. Every result has ``ok``, ``problems`` (what
failed, in words), ``figures`` (numbers only: the JSON and Markdown reports read them), ``peak`` (memory) and
``progress`` (what it did, in order).
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

__all__ = ["AB_CONFIGS", "PARTS", "main"]

# The A/B parts: (the benchmark's config on a GPU, its config at tiny sizes, the target for B/A).
AB_CONFIGS = {"sd-turbo": ("sd-turbo-1", "tiny-turbo", 1.5), "sdxl": ("sdxl-30", "tiny-sdxl", 1.3)}
MIN_SPREAD = 0.5  # pixel standard deviation (0-255) below which an image is one flat colour (NaNs decode so)


class Result:
    """A part's result file, rewritten after every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"ok": False, "problems": [], "figures": {}, "peak": {}, "progress": []}
        self.started = time.perf_counter()
        self.save()

    def log(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        self.data["progress"].append(f"{time.perf_counter() - self.started:7.1f} s  {line}")
        self.save()

    def save(self) -> None:
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(_finite(self.data, "result", []), indent=1, allow_nan=False))
        os.replace(partial, self.path)


def engine_part(options: dict[str, Any], result: Result) -> None:
    from devtools.bench.device_engine_check import DTYPES, MODELS, check_engine

    device = options["device"]
    dtypes = options.get("dtypes") or DTYPES["cuda" if device.startswith("cuda") else "cpu"]
    follow_ups = ("v6",) if options["tiny"] else MODELS  # at tiny sizes on a CPU: SDXL renders a grid only
    rows: list[dict[str, Any]] = []
    result.data["rows"] = rows
    for row in check_engine(device, dtypes, Path(options["workdir"]), result.log, follow_ups, light=options["tiny"]):
        rows.append(asdict(row))
        if not row.ok:
            result.data["problems"].append(f"{row.action} on {row.model} in {row.dtype}: {row.problem}")
        result.save()
    result.data["figures"] = {
        "engine_calls": len(rows),
        "failed_calls": sum(not row["ok"] for row in rows),
        "non_finite_calls": sum(not row["finite"] for row in rows),
        "seconds_in_engine": sum(row["seconds"] for row in rows),
        "dtypes": len(dtypes),
    }
    result.data["ok"] = bool(rows) and all(row["ok"] for row in rows)


def job_part(options: dict[str, Any], result: Result) -> None:
    from devtools.bench.device_job import run_job

    device, workdir = options["device"], Path(options["workdir"])
    if options["tiny"]:
        from devtools.bench.device_engine_check import tiny_models

        model, family = tiny_models(workdir, device)["sd15"], "sd15"
    else:  # SD-Turbo's architecture, saved once for this part and the sd-turbo part
        import torch

        from devtools.bench.engine_speed import CONFIGS, model_folder

        result.log("job: saving SD-Turbo's architecture with random weights")
        model, family = model_folder(CONFIGS["sd-turbo-1"], workdir, device), "sd-turbo"
        torch.cuda.empty_cache()  # the worker, not this process, needs the memory now
    figures = run_job(device, model, family, workdir / "job", result.log, tiny=options["tiny"])
    result.data["model"] = figures.pop("model")
    result.data["job"] = figures.pop("job")
    result.data["figures"] = figures
    result.data["ok"] = True


def ab_part(name: str) -> Callable[[dict[str, Any], Result], None]:
    def run(options: dict[str, Any], result: Result) -> None:
        from devtools.bench import engine_speed

        config, tiny_config, target = AB_CONFIGS[name]
        config = tiny_config if options["tiny"] else config
        on_cuda = options["device"].startswith("cuda")
        compile_mode = options.get("compile") or ("default" if on_cuda else "off")
        iterations = options.get("iterations") or (1 if options["tiny"] else (5 if name == "sd-turbo" else 1))
        measured = engine_speed.run(config, options["device"], iterations, compile_mode, True, True,
                                    Path(options["workdir"]), result.log)  # fmt: skip
        result.data["bench"] = measured
        summary = measured["summary"]
        b_grid = summary["B_seconds_per_grid"]
        peaks = [run["peak_bytes"] for path in ("A", "B") for run in measured[path]["runs"]]
        result.data["peak"]["gpu_allocated_bytes"] = max(peaks, default=0)
        tolerance = float(options.get("tolerance", 3.0))
        result.data["figures"] = {
            "A_images_per_second": summary["A_images_per_second"],
            "B_images_per_second": summary["B_images_per_second"],
            "A_seconds_per_grid": summary["A_seconds_per_grid"],
            "B_seconds_per_grid": b_grid,
            "ratio_B_over_A": summary["ratio_B_over_A"],
            "ratio_target": target,
            "pixel_difference_mean": summary["pixel_difference_mean"],
            "pixel_tolerance": tolerance,
            "A_load_seconds": measured["A"]["load_seconds"],
            "B_load_seconds": measured["B"]["load_seconds"],
            "A_warmup_seconds": measured["A"]["warmup_seconds"],
            "B_warmup_seconds": measured["B"]["warmup_seconds"],
            # B's first grid less a measured one: what torch.compile (and the first CUDA kernels) cost
            "B_compile_seconds": max(0.0, measured["B"]["warmup_seconds"] - b_grid),
            "iterations": iterations,
        }
        result.data["compile"] = compile_mode
        problems = result.data["problems"]
        if not summary["pixel_difference_mean"] <= tolerance:
            problems.append(f"A's and B's images differ by {summary['pixel_difference_mean']:.2f} on average "
                            f"(0-255), more than the tolerance {tolerance:g}")  # fmt: skip
        for path in ("A", "B"):
            if not summary[f"{path}_pixel_spread_min"] >= MIN_SPREAD:
                problems.append(f"{path} drew a flat image (NaN or overflow): pixel spread "
                                f"{summary[f'{path}_pixel_spread_min']:.2f}")  # fmt: skip
        result.data["ok"] = not problems

    return run


PARTS: dict[str, Callable[[dict[str, Any], Result], None]] = {
    "engine": engine_part,
    "job": job_part,
    "sd-turbo": ab_part("sd-turbo"),
    "sdxl": ab_part("sdxl"),
}


def _peak(result: Result, device: str) -> None:
    peak = result.data["peak"]
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # the job part's worker
    peak["host_rss_bytes"] = max(own, children)
    if device.startswith("cuda") and "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            peak.setdefault("gpu_allocated_bytes", torch.cuda.max_memory_allocated())
            peak["gpu_reserved_bytes"] = torch.cuda.max_memory_reserved()


def _finite(value: Any, where: str, problems: list[str]) -> Any:
    """``value`` with every NaN or infinity replaced by None, each one named in ``problems``."""
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{where} is {value}")
        return None
    if isinstance(value, dict):
        return {key: _finite(item, f"{where}.{key}", problems) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item, f"{where}[{n}]", problems) for n, item in enumerate(value)]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    name, options_file, result_file = argv if argv is not None else sys.argv[1:]
    options = json.loads(Path(options_file).read_text())
    result = Result(Path(result_file))

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds: the job part stops its worker and redis-server

    signal.signal(signal.SIGTERM, stop)
    try:
        PARTS[name](options, result)
    except Exception as exc:
        result.data["ok"] = False
        result.data["problems"].append(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        _peak(result, options["device"])
        problems: list[str] = []
        result.data = _finite(result.data, name, problems)
        if problems:
            result.data["ok"] = False
            result.data["problems"].extend(f"not a number: {problem}" for problem in problems)
        result.save()
    return 0 if result.data["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
