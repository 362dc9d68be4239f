"""``dreamloom bench gpu`` runs every part on a CPU at tiny sizes and reports each in JSON and Markdown; a part
that outruns its budget is stopped and reported, and one with no time left is skipped and reported."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from devtools.bench.gpu_check import PARTS, Part, main, run_part
from engine.actions import ACTIONS

NAMES = [part.name for part in PARTS]


def numbers(value: Any, where: str = "report") -> list[tuple[str, float]]:
    """Every number in a JSON document, with where it is."""
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in numbers(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [found for n, item in enumerate(value) for found in numbers(item, f"{where}[{n}]")]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [(where, float(value))]
    return []


@pytest.mark.slow
@pytest.mark.timeout(600)  # every part at tiny sizes: about 40 s on 2 free cores, minutes on a busy machine
def test_every_part_runs_at_tiny_sizes_and_is_reported(tmp_path, tiny_models, capsys):
    workdir = tmp_path / "work"  # the session's tiny models, where the check looks for them first
    workdir.mkdir()
    folders = {"tiny": "sd15", "tiny-sdxl": "sdxl", "tiny-x4-upscaler": "upscaler", "tiny-taesd": "taesd"}
    for folder, model in folders.items():
        (workdir / folder).symlink_to(tiny_models[model])
    out = tmp_path / "out"

    status = main(["--tiny", "--out", str(out), "--workdir", str(workdir), "--budget", "540"])

    report = json.loads((out / "gpu-check.json").read_text())
    assert list(report["parts"]) == NAMES
    for name, part in report["parts"].items():
        assert part["status"] == "passed", (name, part["reason"], part.get("progress"))
        assert part["figures"], name
        for key, value in part["figures"].items():
            assert type(value) in (int, float), (name, key, value)
    assert (status, report["ok"], report["mode"]) == (0, True, "tiny")
    for where, value in numbers(report):
        assert math.isfinite(value), where
    parts = report["parts"]
    done = {row["action"] for row in parts["engine"]["rows"] if row["model"] == "v6" and row["ok"]}
    assert done == {action.value for action in ACTIONS}, "every follow-up ran on the device"
    assert all(row["finite"] for row in parts["engine"]["rows"])
    assert parts["engine"]["figures"]["non_finite_calls"] == 0
    assert parts["job"]["model"] == {
        "family": "sd15",
        "dtype": "float32",
        "device": "cpu",
        "scheduler": "EulerDiscreteScheduler",
    }
    assert parts["job"]["figures"]["stored_files"] >= 5, "four images and the grid"
    for name in ("sd-turbo", "sdxl"):
        figures = parts[name]["figures"]
        assert figures["ratio_B_over_A"] > 0
        assert figures["pixel_difference_mean"] <= figures["pixel_tolerance"]
        assert figures["B_warmup_seconds"] > 0
    assert all(part["peak"]["host_rss_bytes"] > 0 for part in parts.values())

    text = (out / "gpu-check.md").read_text()
    for name in NAMES:
        assert f"| {name} | passed |" in text
    for heading in ("## Engine: A (plain diffusers) vs B", "## Engine on the device: every action",
                    "## One job through Redis and a Celery worker"):  # fmt: skip
        assert heading in text
    assert "B/A" in text
    assert "nan" not in text.lower()
    assert text in capsys.readouterr().out
    assert "== job: passed" in (out / "gpu-check.log").read_text()


def test_parts_with_no_time_left_are_skipped_and_reported(tmp_path):
    out = tmp_path / "out"
    assert main(["--tiny", "--out", str(out), "--budget", "1"]) == 1
    report = json.loads((out / "gpu-check.json").read_text())
    assert [part["status"] for part in report["parts"].values()] == ["skipped"] * len(NAMES)
    assert all(part["reason"].startswith("skipped for time: ") for part in report["parts"].values())
    assert report["ok"] is False
    text = (out / "gpu-check.md").read_text()
    assert "**not every part passed**" in text
    assert "- **sdxl**: skipped for time" in text


@pytest.mark.slow
def test_a_part_that_outruns_its_budget_is_stopped_and_reported(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    slow = Part("job", "a real-size job on a CPU: far longer than its budget", budget=1.5, minimum=0)
    options = {"device": "cpu", "tiny": False, "workdir": str(workdir)}
    with (tmp_path / "log").open("w") as log:
        entry = run_part(slow, options, 60, float("inf"), workdir, log)
    assert entry["status"] == "timed_out"
    assert entry["reason"] == "stopped at the end of its 2 s budget"
    assert entry["seconds"] >= 1.5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--parts", "engine,gpu"], "--parts takes names from engine, job, sd-turbo, sdxl"),
        (["--budget", "99999"], "--budget must be from 1 to 3600 seconds"),
        (["--iterations", "0"], "--iterations must be from 1 to 50"),
        (["--tolerance", "nan"], "--tolerance must be from 0 to 255"),
        (["--device", "cuda; rm -rf /"], "--device takes cpu, cuda or cuda:N (got 'cuda; rm -rf /')"),
    ],
)
def test_bad_options_are_refused_with_what_to_fix(argv, message, capsys):
    with pytest.raises(SystemExit):
        main(["--tiny", *argv])
    assert message in capsys.readouterr().err


def test_the_check_is_a_bench_subcommand():
    from devtools.bench import BENCHMARKS

    assert BENCHMARKS["gpu"][0] == "devtools.bench.gpu_check"
    assert Path(__file__).parent.parent.joinpath("devtools", "bench", "carry_wheels.sh").stat().st_mode & 0o111
