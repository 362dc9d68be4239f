"""The ``dreamloom`` console script, run as a user runs it."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys

import pytest


def dreamloom(*args: str) -> subprocess.CompletedProcess[str]:
    command = shutil.which("dreamloom")
    argv = [command] if command else [sys.executable, "-m", "bot.cli"]
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


def test_every_command_and_option_says_what_it_is_for():
    """`dreamloom -h` and `dreamloom COMMAND -h` explain every command, argument and option."""
    from bot.cli.main import _build_parser

    parser = _build_parser()
    [commands] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    helps = {choice.dest: choice.help for choice in commands._choices_actions}
    assert set(helps) == set(commands.choices)
    undocumented = []
    for name, command in commands.choices.items():
        if not helps[name] or not command.description:
            undocumented.append(name)
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction) and action.help != argparse.SUPPRESS and not action.help:
                undocumented.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not undocumented, f"no help text: {undocumented}"


@pytest.mark.parametrize("limit", ["0", "-3", "501", "lots", "1e9"])
def test_jobs_takes_a_bounded_limit(limit):
    result = dreamloom("jobs", "--limit", limit)
    assert result.returncode == 2
    assert f"argument --limit: a whole number from 1 to 500 (got '{limit}')" in result.stderr


def test_bench_from_a_wheel_says_it_is_a_development_tool(monkeypatch, capsys):
    """Installed from the wheel (no devtools distribution), `dreamloom bench` explains where it comes from."""
    from bot.cli.main import main

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [])
    assert main(["bench", "jobs", "--jobs", "5"]) == 2
    assert "`dreamloom bench` is a development tool: it runs from a source checkout" in capsys.readouterr().err
