"""The README's Python example runs as written (against the tiny models instead of a real one)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_the_engine_example_runs(registry_file, tmp_path, monkeypatch, capsys):
    section = README.read_text().split("## Use the engine from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None, "the README lost its example"
    monkeypatch.setenv("DREAMLOOM_MODELS", str(registry_file))
    monkeypatch.chdir(tmp_path)
    exec(compile(code[1], "README.md", "exec"), {})
    for name in ("grid.png", "variations.png", "upscaled.png"):
        assert (tmp_path / name).stat().st_size > 0
    printed = capsys.readouterr().out
    assert "4/4" in printed
    assert "super-resolution" in printed
