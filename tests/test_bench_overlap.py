"""``dreamloom bench overlap`` runs the real worker (supervisor, threads pool, private Redis) with overlap off
and on; here at a tiny size, for the report's shape (its speed is the benchmark's to print, not a test's)."""

from __future__ import annotations

import json

import pytest

from tests.support.playground import clean_env, dreamloom


@pytest.mark.slow
def test_the_overlap_benchmark_runs_every_job_with_overlap_off_and_on(tmp_path):
    out = tmp_path / "overlap.json"
    result = dreamloom("bench", "overlap", "--size", "64", "--jobs", "3", "--gpu", "0.05", "--json", str(out),
                       env=clean_env(), cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1/GPU-time" in result.stdout
    report = json.loads(out.read_text())
    assert (report["gpu_seconds"], report["size"]) == (0.05, 64)
    assert [(r["concurrency"], r["overlap"]) for r in report["results"]] == [(1, False), (2, True)]
    for run in report["results"]:
        assert run["done"] == run["jobs"] == 3, "every job finished"
        assert run["jobs_per_second"] > 0
        assert run["of_ideal"] == pytest.approx(run["jobs_per_second"] * 0.05)


def test_the_overlap_benchmark_refuses_bad_options(tmp_path):
    result = dreamloom("bench", "overlap", "--gpu", "0", env=clean_env(), cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "--gpu in (0, 60] seconds" in result.stderr
