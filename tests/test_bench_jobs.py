"""``dreamloom bench jobs`` runs the real job path (private Redis, a prefork worker, both storages)."""

from __future__ import annotations

import json

import pytest

from tests.support.playground import clean_env, dreamloom


@pytest.mark.slow
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


@pytest.mark.slow
def test_the_jobs_benchmark_renders_with_the_tiny_engine(tmp_path, tiny_models):
    out = tmp_path / "bench.json"
    result = dreamloom("bench", "jobs", "--engine", "tiny", "--storage", "local", "--tiny-jobs", "2",
                       "--tiny-model", str(tiny_models["sd15"]), "--json", str(out), env=clean_env(), cwd=tmp_path,
                       timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = json.loads(out.read_text())["results"]
    assert (run["storage"], run["engine"]) == ("local", "tiny")
    assert run["overhead_ms"]["p50"] < run["submit_to_done_ms"]["p50"], "the render time is taken out"
    assert run["jobs_per_second"] > 0
    assert "local    tiny" in result.stdout


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--engine", "turbo"], "--engine takes null, tiny or both, not 'turbo'"),
        (["--storage", "local,gcs"], "--storage takes local, s3 or both, not 'local,gcs'"),
        (["--size", "0"], "must be at least 1"),
    ],
)
def test_the_jobs_benchmark_refuses_bad_options(tmp_path, options, message):
    result = dreamloom("bench", "jobs", *options, env=clean_env(), cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
