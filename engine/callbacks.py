"""The callbacks an engine takes while it renders: progress (with an optional preview) and cancellation.

Torch-free, so that engines that render nothing (``engine.null``) and the worker can name them without
loading torch.
"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image

__all__ = ["CancelCheck", "ProgressCallback"]

# (step, total, preview or None): step counts from 1; a preview comes at most every `preview_every` steps.
ProgressCallback = Callable[[int, int, Image.Image | None], None]
CancelCheck = Callable[[], bool]
