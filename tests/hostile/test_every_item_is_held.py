"""The hostile-input package keeps a named test for every item of the review (issue 17, items 1-20)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ITEMS = range(1, 21)


def test_every_item_of_the_review_has_a_named_test() -> None:
    """Removing or renaming an item's last test is caught here, not months later."""
    named: dict[int, list[str]] = {}
    for module in Path(__file__).parent.glob("test_*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
                found := re.fullmatch(r"test_item_(\d\d)_\w+", node.name)
            ):
                named.setdefault(int(found[1]), []).append(node.name)
    missing = [item for item in ITEMS if item not in named]
    assert not missing, f"items without a test: {missing}"
    assert set(named) <= set(ITEMS), f"tests for items the review does not have: {sorted(set(named) - set(ITEMS))}"
