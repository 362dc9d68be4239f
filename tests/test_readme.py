"""The documentation holds: the engine's Python example in docs/models.md runs as written (against the tiny
models instead of a real one), every relative link in README.md and docs/ points to a file that exists,
and the README stays short and inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MODELS_DOC = DOCS / "models.md"
EXAMPLE_HEADING = re.compile(r"^## .*engine from Python", re.MULTILINE)
MAX_README_LINES = 120

# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def documents() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def links_of(document: Path) -> list[str]:
    """The link targets of a Markdown file, leaving out its code blocks and inline code."""
    text = FENCE.sub("", document.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)
    return LINK.findall(text)


def is_relative(target: str) -> bool:
    return not re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) and not target.startswith("#")


@pytest.mark.slow
def test_the_engine_example_runs(registry_file, tmp_path, monkeypatch, capsys):
    text = MODELS_DOC.read_text(encoding="utf-8")
    heading = EXAMPLE_HEADING.search(text)
    assert heading is not None, "docs/models.md lost its section on using the engine from Python"
    code = re.search(r"```python\n(.*?)```", text[heading.end() :], re.DOTALL)
    assert code is not None, "docs/models.md lost its example"
    monkeypatch.setenv("DREAMLOOM_MODELS", str(registry_file))
    monkeypatch.chdir(tmp_path)
    exec(compile(code[1], "docs/models.md", "exec"), {})
    for name in ("grid.png", "variations.png", "upscaled.png"):
        assert (tmp_path / name).stat().st_size > 0
    printed = capsys.readouterr().out
    assert "4/4" in printed
    assert "super-resolution" in printed


@pytest.mark.parametrize("document", documents(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_points_to_a_file_that_exists(document):
    targets = [target for target in links_of(document) if is_relative(target)]
    missing = [
        target for target in targets if not (document.parent / target.split("#", 1)[0].split("?", 1)[0]).exists()
    ]
    assert not missing, f"{document.relative_to(ROOT)} links to files that do not exist: {missing}"


def test_the_link_checker_sees_links():
    """The link test must not pass by finding nothing: the README links to the docs."""
    targets = links_of(README)
    assert "docs/architecture.md" in targets
    assert "docs/images/demo-kinds.png" in targets
    assert not is_relative("https://discord.com/developers")
    assert not is_relative("#the-families")


def test_the_readme_stays_short_and_inside_the_repository():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < MAX_README_LINES, "the README is a front page: move details to docs/"
    outside = [target for target in links_of(README) if target.startswith("../") or "/../" in target]
    assert not outside, f"the README links outside the repository: {outside}"
    assert "../" not in text, "the README names a path outside the repository"
