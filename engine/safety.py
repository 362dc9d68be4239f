"""Optional safety: a prompt blocklist (here) and an image checker hook (``ImageChecker``, used by the engine).

A banned prompt raises ``engine.errors.BannedPrompt`` (a refusal); withheld images raise
``engine.errors.UnsafeImages`` (the job fails). Each message says what a user can do.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from PIL import Image

from engine.errors import BannedPrompt
from engine.prompt import ImagineRequest

__all__ = ["Blocklist", "ImageChecker"]

# Given the images of a result, says for each whether it must be withheld.
ImageChecker = Callable[[Sequence[Image.Image]], Sequence[bool]]


class Blocklist:
    """Words and phrases that may not appear in a prompt, matched whole-word and case-insensitively."""

    def __init__(self, phrases: Iterable[str] = ()) -> None:
        self.phrases = tuple(sorted({" ".join(p.lower().split()) for p in phrases if p.strip()}))
        words = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in self.phrases)
        self._pattern = re.compile(rf"(?<!\w)({words})(?!\w)", re.IGNORECASE) if words else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Blocklist:
        """``DREAMLOOM_BLOCKLIST``: comma-separated phrases."""
        env = os.environ if environ is None else environ
        return cls(env.get("DREAMLOOM_BLOCKLIST", "").split(","))

    def find(self, text: str) -> str | None:
        """The listed phrase that ``text`` uses (whatever its case and spacing there), or None."""
        match = self._pattern.search(text) if self._pattern else None
        return " ".join(match[1].lower().split()) if match else None

    def check(self, request: ImagineRequest) -> None:
        """Raise ``BannedPrompt`` when the prompt (the --no text is exempt) uses a blocked phrase."""
        if found := self.find(request.prompt):
            raise BannedPrompt(f"'{found}' is not allowed here; rephrase the prompt without it")
