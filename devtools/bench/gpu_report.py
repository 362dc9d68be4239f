"""The Markdown report of ``dreamloom bench gpu``: the JSON report's figures as tables a README can quote."""

from __future__ import annotations

from typing import Any

__all__ = ["markdown"]

GIB = 2**30
_MARK = {"passed": "passed", "failed": "**FAILED**", "timed_out": "**timed out**", "skipped": "skipped"}


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items())
    verdict = "every part passed" if report["ok"] else "**not every part passed**"
    lines = [
        "# dreamloom bench gpu",
        "",
        f"{env['name']} ({env['device']}), {report['mode']} run, {report['seconds']:.0f} s of a "
        f"{report['budget_seconds']:.0f} s budget: {verdict}. {versions}.",
        "",
        "| part | status | seconds | budget | peak GPU (torch) | peak GPU (device) | peak host RSS | what |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, part in report["parts"].items():
        peak = part.get("peak", {})
        lines.append(
            f"| {name} | {_MARK.get(part['status'], part['status'])} | {part['seconds']:.1f} | "
            f"{part['budget_seconds']:.0f} | {_gib(peak.get('gpu_allocated_bytes'))} | "
            f"{_gib(peak.get('device_used_bytes'))} | {_gib(peak.get('host_rss_bytes'))} | {part['what']} |"
        )
    lines += _ab_table(report["parts"])
    lines += _engine_table(report["parts"].get("engine", {}))
    lines += _job_lines(report["parts"].get("job", {}))
    problems = [(name, part["reason"]) for name, part in report["parts"].items() if part.get("reason")]
    if problems:
        lines += ["", "## Not passed", ""] + [f"- **{name}**: {reason}" for name, reason in problems]
    return "\n".join(lines) + "\n"


def _gib(value: Any) -> str:
    return f"{value / GIB:.2f} GiB" if isinstance(value, int | float) and value else "-"


def _ab_table(parts: dict[str, Any]) -> list[str]:
    benched = [(name, part) for name, part in parts.items() if "bench" in part]
    if not benched:
        return []
    lines = [
        "",
        "## Engine: A (plain diffusers) vs B (dreamloom's settings)",
        "",
        "Medians of the measured grids; load, warm-up and B's compile time apart. Random weights, fixed seeds.",
        "",
        "| model | grid | path | images/s | s/grid | encode | denoise | decode | load s | warm-up s | peak GPU |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, part in benched:
        bench, figures = part["bench"], part["figures"]
        grid = f"4x{bench['size']}², {bench['steps']} step{'s' if bench['steps'] != 1 else ''}, {bench['dtype']}"
        for path in ("A", "B"):
            runs = bench[path]["runs"]
            lines.append(
                f"| {name if path == 'A' else ''} | {grid if path == 'A' else ''} | {path} | "
                f"{figures[f'{path}_images_per_second']:.2f} | {figures[f'{path}_seconds_per_grid']:.3f} | "
                f"{_median(runs, 'encode'):.3f} | {_median(runs, 'denoise'):.3f} | {_median(runs, 'decode'):.3f} | "
                f"{bench[path]['load_seconds']:.1f} | {bench[path]['warmup_seconds']:.1f} | "
                f"{_gib(max((run['peak_bytes'] for run in runs), default=0))} |"
            )
        met = "met" if figures["ratio_B_over_A"] >= figures["ratio_target"] else "**not met**"
        same = "within" if figures["pixel_difference_mean"] <= figures["pixel_tolerance"] else "**over**"
        lines.append(
            f"| | | **B/A {figures['ratio_B_over_A']:.2f}x** (target {figures['ratio_target']:g}x: {met}) | "
            f"pixels differ {figures['pixel_difference_mean']:.2f} ({same} {figures['pixel_tolerance']:g}) | "
            f"compile ≈ {figures['B_compile_seconds']:.1f} s ({part.get('compile', '?')}) | | | | | | |"
        )
    return lines


def _median(runs: list[dict[str, float]], key: str) -> float:
    values = sorted(run[key] for run in runs)
    if not values:
        return 0.0
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def _engine_table(part: dict[str, Any]) -> list[str]:
    rows = part.get("rows") or []
    if not rows:
        return []
    actions = list(dict.fromkeys(row["action"] for row in rows))
    lines = [
        "",
        "## Engine on the device: every action (seconds; ✗ marks a failure, named below)",
        "",
        "| dtype | model | " + " | ".join(actions) + " |",
        "|---|---|" + "---:|" * len(actions),
    ]
    by_model: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_model.setdefault((row["dtype"], row["model"]), {})[row["action"]] = row
    for (dtype, model), done in by_model.items():
        cells = [(f"{done[a]['seconds']:.2f}" if done[a]["ok"] else "✗") if a in done else "-" for a in actions]
        lines.append(f"| {dtype} | {model} | " + " | ".join(cells) + " |")
    return lines


def _job_lines(part: dict[str, Any]) -> list[str]:
    figures = part.get("figures") or {}
    if "submit_to_done_seconds" not in figures:
        return []
    model = part.get("model", {})
    return [
        "",
        "## One job through Redis and a Celery worker",
        "",
        f"Worker ready in {figures['worker_ready_seconds']:.1f} s; the job from submit to done "
        f"{figures['submit_to_done_seconds']:.2f} s, of which the render {figures['render_seconds']:.2f} s; "
        f"{figures['stored_files']} files stored ({figures['stored_bytes'] / 2**20:.2f} MiB). "
        f"Model: {model.get('family')} in {model.get('dtype')} on {model.get('device')}.",
    ]
