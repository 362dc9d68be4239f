"""``dreamloom bench jobs`` runs the real job path (private Redis, a prefork worker, both storages)."""

from __future__ import annotations

import json

from tests.playground import clean_env, dreamloom


def test_the_jobs_benchmark_measures_overhead_throughput_and_grid_encoding(tmp_path):
    out = tmp_path / "bench.json"
    result = dreamloom("bench", "jobs", "--engine", "null", "--jobs", "5", "--latency-jobs", "3", "--json", str(out),
                       env=clean_env(), cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "overhead p50" in result.stdout
    assert "grid 2048x2048 compose + encode" in result.stdout
    report = json.loads(out.read_text())
    assert [(r["storage"], r["engine"]) for r in report["results"]] == [("local", "null"), ("s3", "null")]
    for run in report["results"]:
        assert 0 < run["reference_ms"]["p50"] < run["submit_to_done_ms"]["p50"]
        assert run["jobs_per_second"] > 0
    grid = report["grid_encoding"]
    assert grid["dreamloom_jpeg_q90_ms"] < grid["pillow_default_png_ms"]
