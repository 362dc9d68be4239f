"""``./dev``, the README's two commands: what it installs before it runs the service."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.servers import ROOT


def test_dev_up_installs_the_emoji_font_the_playground_needs(tmp_path):
    """Without Debian's emoji font, the playground's 🔄 and arrow buttons render as boxes."""
    fakes = tmp_path / "bin"
    fakes.mkdir()
    calls = tmp_path / "apt-get.calls"
    (fakes / "dpkg").write_text("#!/bin/sh\nexit 1\n")  # every package is missing
    (fakes / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (fakes / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    for fake in fakes.iterdir():
        fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fakes}:{os.environ['PATH']}"}
    result = subprocess.run([str(ROOT / "dev"), "up", "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "usage: dreamloom up" in result.stdout, "it went on to run `dreamloom up` (here, its help)"
    installed = Path(calls).read_text().splitlines()
    assert any(line.startswith("install") and "fonts-noto-color-emoji" in line.split() for line in installed), installed
