"""The import rules of docs/architecture.md, checked in fresh interpreters as the code really runs
(import-linter checks the same rules statically, in ./dev lint)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import bot

HEAVY = ["torch", "diffusers", "transformers", "discord", "celery", "redis", "boto3"]
ML = {"torch", "diffusers", "transformers"}


def modules_loaded_by(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return {name.split(".")[0] for name in json.loads(output)}


@pytest.mark.parametrize(
    "module", ["engine.prompt", "engine.plan", "engine.null", "engine.callbacks", "engine.actions", "engine.contract"]
)
def test_pure_engine_imports_nothing_heavy(module):
    loaded = modules_loaded_by(f"import {module}")
    assert "engine" in loaded, "the child interpreter must really have imported the module"
    assert not loaded & set(HEAVY), f"{module} pulled in {sorted(loaded & set(HEAVY))}"


def every_bot_module() -> list[str]:
    return sorted(
        info.name for info in pkgutil.walk_packages(bot.__path__, "bot.") if not info.name.endswith("__main__")
    )


def test_every_front_door_module_imports_on_its_own_and_never_loads_torch():
    """Each module of bot/ is imported first, on its own (dreamloom's packages forgotten in between, so an
    import cycle that another import order hides still shows), and none brings in torch, diffusers or
    transformers."""
    modules = every_bot_module()
    assert {"bot.discord.launcher", "bot.web.app", "bot.cli.main", "bot.cli.up"} <= set(modules)
    code = f"""
import json, sys
from prometheus_client import REGISTRY
heavy = {{}}
for module in {modules!r}:
    for name in [n for n in sys.modules if n.split(".")[0] in ("bot", "tasks", "engine")]:
        del sys.modules[name]
    for collector in list(REGISTRY._collector_to_names):  # tasks.metrics registers its metrics at import
        REGISTRY.unregister(collector)
    __import__(module)
    heavy[module] = sorted({{n.split(".")[0] for n in sys.modules}} & set({sorted(ML)!r}))
print(json.dumps(heavy))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout)
    assert set(loaded) == set(modules)
    assert {module: found for module, found in loaded.items() if found} == {}, "the front doors never load torch"
