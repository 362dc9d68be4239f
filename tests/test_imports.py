"""The import rules of ARCHITECTURE.md, checked in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ["torch", "diffusers", "transformers", "discord", "celery", "redis", "boto3"]


def modules_loaded_by(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return {name.split(".")[0] for name in json.loads(output)}


@pytest.mark.parametrize("module", ["engine.prompt", "engine.plan", "engine.null", "engine.callbacks"])
def test_pure_engine_imports_nothing_heavy(module):
    loaded = modules_loaded_by(f"import {module}")
    assert "engine" in loaded, "the child interpreter must really have imported the module"
    assert not loaded & set(HEAVY), f"{module} pulled in {sorted(loaded & set(HEAVY))}"


def test_bot_never_imports_torch():
    loaded = modules_loaded_by("import bot, bot.cli.main")
    assert "bot" in loaded
    assert "torch" not in loaded
    assert "diffusers" not in loaded
