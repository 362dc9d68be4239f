"""Optional safety: a prompt blocklist (here) and an image checker hook (``ImageChecker``, used by the engine).

A banned prompt raises ``engine.errors.BannedPrompt`` (a refusal); withheld images raise
``engine.errors.UnsafeImages`` (the job fails). Each message says what a user can do.

Phrases are matched on a normalised form of the text (``normalise``): NFKC (fullwidth and styled letters
become plain ones), invisible characters removed (format characters such as zero-width spaces and joiners,
variation selectors, fillers), case-folded, and letters of other scripts that look like Latin ones (Cyrillic
``\\u0430``, Greek ``\\u03bf``) read as those. Check a prompt after ``{…}`` expansion and a member's preferences, so
``bad{}word`` and a /settings suffix are seen as the text the model gets.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence

from PIL import Image

from engine.errors import BannedPrompt
from engine.prompt import ImagineRequest

__all__ = ["Blocklist", "ImageChecker", "normalise"]

# Given the images of a result, says for each whether it must be withheld.
ImageChecker = Callable[[Sequence[Image.Image]], Sequence[bool]]

# Invisible characters that are not of category Cf: variation selectors, Mongolian free variation selectors,
# the combining grapheme joiner, Hangul fillers and the Braille blank.
_INVISIBLE = frozenset(
    [*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0), *range(0x180B, 0x1810), 0x034F, 0x115F, 0x1160, 0x3164,
     0xFFA0, 0x2800]
)  # fmt: skip
# Lower-case letters of other scripts that look like a Latin letter (after case folding).
_LOOK_ALIKES = str.maketrans(
    "аеорсухіјѕԁһԛԝӏɑɡıοαικνρτυχ",  # Cyrillic, then Latin alphas and dotless i, then Greek
    "aeopcyxijsdhqwlagioaikvptux",
)


def normalise(text: str) -> str:
    """``text`` as phrases are matched: NFKC, invisible characters removed, case-folded, look-alikes read as
    the Latin letters they imitate. ``normalise("\\uff22ad\\u200bword") == "badword"``."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if ord(c) not in _INVISIBLE and unicodedata.category(c) != "Cf")
    return unicodedata.normalize("NFKC", text.casefold()).translate(_LOOK_ALIKES)


class Blocklist:
    """Words and phrases that may not appear in a prompt, matched whole-word on the ``normalise``d text."""

    def __init__(self, phrases: Iterable[str] = ()) -> None:
        self.phrases = tuple(sorted({" ".join(normalise(p).split()) for p in phrases if normalise(p).strip()}))
        words = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in self.phrases)
        self._pattern = re.compile(rf"(?<!\w)({words})(?!\w)", re.IGNORECASE) if words else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Blocklist:
        """``DREAMLOOM_BLOCKLIST``: comma-separated phrases."""
        env = os.environ if environ is None else environ
        return cls(env.get("DREAMLOOM_BLOCKLIST", "").split(","))

    def find(self, text: str) -> str | None:
        """The listed phrase that ``text`` uses (whatever its case, spacing, invisible characters or look-alike
        letters there), or None."""
        if self._pattern is None:
            return None
        match = self._pattern.search(normalise(text))
        return " ".join(match[1].split()) if match else None

    def find_in(self, request: ImagineRequest) -> str | None:
        """The listed phrase that ``request``'s prompt uses (the --no text is exempt), or None. The ``::`` parts
        are read joined too, so ``bad:: word`` is seen as ``bad word``."""
        return self.find(request.prompt) or self.find(" ".join(part.text for part in request.parts))

    def check(self, request: ImagineRequest, where: str = "here") -> None:
        """Raise ``BannedPrompt`` when the prompt (the --no text is exempt) uses a blocked phrase."""
        if found := self.find_in(request):
            raise BannedPrompt(f"'{found}' is not allowed {where}; rephrase the prompt without it")
