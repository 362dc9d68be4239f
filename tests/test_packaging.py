"""The ``dreamloom`` wheel carries what serves requests and nothing of the dev tools (training, benchmarks,
tiny test pipelines), which come with a checkout's devtools distribution instead."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.support.servers import ROOT


@pytest.mark.slow
def test_the_wheel_holds_the_serving_packages_and_the_demo_model_but_no_dev_tools(tmp_path):
    source = tmp_path / "source"  # a copy, so that the build's own folders stay out of the checkout
    for package in ("bot", "engine", "tasks"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    (source / "devtools").mkdir()  # a checkout has it beside the packages: the wheel must still leave it out
    (source / "devtools" / "__init__.py").write_text("")
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q"]
    built = subprocess.run([*command, "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("dreamloom-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.split("/")[0] for name in names}
    assert packages == {"bot", "engine", "tasks", wheel.name.split("-py3")[0] + ".dist-info"}
    for dev_tool in ("devtools/", "engine/demo/", "engine/bench.py", "engine/tiny.py", "engine/architectures.py",
                     "engine/configs/", "bot/bench_jobs.py", "tests/"):  # fmt: skip
        assert not [name for name in names if name.startswith(dev_tool)], dev_tool
    assert "engine/models/demo/unet/diffusion_pytorch_model.safetensors" in names, "the demo model's weights ship"
    assert "bot/web/static/app.js" in names
    assert (
        "License-Expression: Apache-2.0"
        in zipfile.ZipFile(wheel).read(next(name for name in names if name.endswith("METADATA"))).decode()
    ), "an SPDX license, without setuptools' deprecation warning"
    assert "BuildBackendWarning" not in built.stderr
