"""``dreamloom bench engine`` runs on a CPU at tiny sizes (its GPU figures come from GPU machines)."""

from __future__ import annotations

import json

import pytest

from devtools.bench.engine_speed import main

pytestmark = pytest.mark.slow  # builds and runs two pipelines


def test_the_engine_benchmark_compares_both_paths(tmp_path, tiny_models, capsys):
    out = tmp_path / "bench.json"
    assert main(["--device", "cpu", "--configs", "tiny", "--iterations", "1", "--json", str(out),
                 "--workdir", str(tmp_path / "models")]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "dreamloom bench engine on CPU" in printed
    assert "B/A" in printed
    result = json.loads(out.read_text())["results"][0]
    assert (result["config"], len(result["A"]["runs"]), len(result["B"]["runs"])) == ("tiny", 1, 1)
    summary = result["summary"]
    assert summary["ratio_B_over_A"] > 0
    assert summary["pixel_difference_mean"] < 1.0, "B's optimisations keep A's pixels"
    for path in ("A", "B"):
        run = result[path]["runs"][0]
        assert run["total"] >= run["denoise"] > 0
