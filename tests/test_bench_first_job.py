"""``dreamloom bench first-job`` times a newcomer's first ``dreamloom imagine`` as they would run it."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.playground import clean_env, dreamloom


@pytest.mark.slow
def test_the_first_job_benchmark_times_a_cold_command_and_says_where_the_time_went(tmp_path):
    out = tmp_path / "runs.json"
    result = dreamloom("bench", "first-job", "--runs", "1", "--warm-runs", "0", "--json", str(out),
                       env=clean_env(), cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dreamloom imagine 'a large red circle in the top left on a blue background'" in result.stdout
    assert re.search(r"^cold +\d+\.\d s +\d+\.\d s +\d+\.\d s +\d+\.\d s$", result.stdout, re.MULTILINE)
    [run] = json.loads(out.read_text())
    assert run["ok"]
    assert 0 < run["render"] < run["seconds"]
    assert 0 < run["worker_ready"] < run["seconds"], "the worker's own start, from its log"


@pytest.mark.parametrize("argv", [["--runs", "0", "--warm-runs", "0"], ["--runs", "-1"], ["--runs", "many"]])
def test_the_first_job_benchmark_refuses_nonsense_counts(argv, tmp_path):
    result = dreamloom("bench", "first-job", *argv, env=clean_env(), cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "--runs" in result.stderr
