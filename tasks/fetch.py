"""Downloading image prompts (the leading URLs of an /imagine) on the worker, with size and time limits."""

from __future__ import annotations

import io
import urllib.error
import urllib.request

from PIL import Image, UnidentifiedImageError

from engine.errors import ImagePromptError

__all__ = ["fetch_image"]

MAX_IMAGE_BYTES = 20 * 1024 * 1024
TIMEOUT_SECONDS = 15


def fetch_image(url: str, max_bytes: int = MAX_IMAGE_BYTES, timeout: float = TIMEOUT_SECONDS) -> Image.Image:
    """The image at ``url``, or ``ImagePromptError`` saying why it could not be used."""
    request = urllib.request.Request(url, headers={"User-Agent": "dreamloom (image prompt)"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read(max_bytes + 1)
    except (urllib.error.URLError, TimeoutError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ImagePromptError(f"Could not download the image prompt {url}: {reason}") from exc
    if len(data) > max_bytes:
        raise ImagePromptError(f"The image prompt {url} is larger than {max_bytes // (1024 * 1024)} MB")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise ImagePromptError(f"The image prompt {url} is not an image dreamloom can read") from exc
    return image.convert("RGB")
