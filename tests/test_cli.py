"""The ``dreamloom`` console script, run as a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest


def dreamloom(*args: str) -> subprocess.CompletedProcess[str]:
    command = shutil.which("dreamloom")
    argv = [command] if command else [sys.executable, "-m", "bot.cli.main"]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60)


def test_parse_prints_the_request_and_its_plan():
    result = dreamloom("parse", "a lighthouse at dusk --ar 16:9 --seed 7 --no people", "--native", "1024x1024")
    assert result.returncode == 0, result.stderr
    assert "prompt       a lighthouse at dusk" in result.stdout
    assert "size         1344x768 (--ar 16:9)" in result.stdout
    assert "image seeds  7 8 9 10" in result.stdout
    assert "negative     people" in result.stdout


def test_parse_json_expands_permutations():
    result = dreamloom("parse", "a {red, green} bird --seed 3", "--json")
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)
    assert [job["request"]["prompt"] for job in jobs] == ["a red bird", "a green bird"]
    assert jobs[0]["plan"]["image_seeds"] == [3, 4, 5, 6]


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("a cat --chaos 150", "Invalid parameter: --chaos must be a whole number from 0 to 100 (got 150)"),
        ("a {cat", "Invalid prompt: Unbalanced braces"),
    ],
)
def test_bad_prompt_exits_2_with_the_message(prompt, message):
    result = dreamloom("parse", prompt)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_no_command_prints_help_and_exits_2():
    result = dreamloom()
    assert result.returncode == 2
    assert "parse" in result.stdout
