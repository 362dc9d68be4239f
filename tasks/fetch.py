"""A job's image prompts (the leading URLs of an /imagine): downloaded once, checked, kept in storage.

The first job that uses a URL downloads it through ``tasks.safe_fetch`` (allowed hosts, public addresses,
one deadline and one byte budget), checks that it is an image of at most ``max_pixels`` pixels from its
header alone before decoding it, and keeps the downloaded bytes in storage next to the job
(``jobs/<id>/image-prompt-<n>``). Its ``job.json`` lists them (``image_prompts``: URL, key, size, SHA-256),
and every job made from it (a re-roll, a variation and its re-rolls, a redelivery of the same job) reads
the kept copy instead of downloading again: Discord's signed attachment links expire, and a job's
``job.json`` reproduces it with nothing outside storage.

Members read one line whatever went wrong ("Could not use the image at <url>"); the reason goes to the
worker's log (``ImagePromptError``).

    prompts = ImagePrompts(storage, policy_from_settings(settings), settings.image_max_pixels)
    images, kept = prompts.gather(job.id, request.image_urls, carried, again=job.attempts > 0)
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from engine.errors import ConfigError, ImagePromptError, StorageError
from tasks.file_storage import Storage, artifact_key
from tasks.safe_fetch import DISCORD_CDN_HOSTS, FetchPolicy, FetchRefused, fetch
from tasks.settings import ENVIRONMENT, Settings

__all__ = [
    "FORMATS",
    "ImagePrompts",
    "KeptImage",
    "decode_image",
    "image_prompt_key",
    "kept_images",
    "policy_from_settings",
]

log = logging.getLogger(__name__)

# The formats an image prompt may be in: Pillow's other decoders (EPS runs Ghostscript; PSD, TIFF, ICO ...)
# are more code than a member needs to reach.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
MAX_PIXELS = 40_000_000
# Image prompts are fitted to the generation's size (at most MAX_SIDE a side after a follow-up, and an
# /imagine is far smaller): a larger image is reduced as it is decoded, so a worker never holds it whole.
MAX_SIDE = 2048


def image_prompt_key(job_id: str, number: int) -> str:
    """Where a job keeps the bytes of its image prompt ``number`` (1 for the first URL)."""
    return artifact_key(job_id, f"image-prompt-{number}")


def policy_from_settings(settings: Settings) -> FetchPolicy:
    """The download rules a worker follows, from ``DREAMLOOM_IMAGE_*``."""
    hosts = (*DISCORD_CDN_HOSTS, *_words(settings.image_hosts))
    try:
        networks = tuple(ipaddress.ip_network(net, strict=False) for net in _words(settings.image_private_networks))
    except ValueError as exc:
        raise ConfigError(f"{ENVIRONMENT['image_private_networks']}: {exc}") from None
    try:
        return FetchPolicy(
            hosts=hosts,
            any_public_host=settings.image_any_public_host,
            trusted_networks=networks,
            deadline_seconds=settings.image_fetch_seconds,
            max_bytes=settings.image_max_mb * 1024 * 1024,
        )
    except ValueError as exc:
        raise ConfigError(f"{ENVIRONMENT['image_hosts']}: {exc}") from None


def _words(text: str) -> list[str]:
    return text.replace(",", " ").split()


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image in ``data`` as RGB, at most ``MAX_SIDE`` a side. Its size is checked from the header before
    anything is decoded; Pillow's decompression-bomb warning is an error. ``ValueError`` says why not."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise ValueError(f"{width}x{height} is more than {max_pixels} pixels")
            image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG decodes at 1/2, 1/4 or 1/8 when that is enough
            image.thumbnail((MAX_SIDE, MAX_SIDE), reducing_gap=1.0)  # loads the first frame, box-reduced first
            return image.convert("RGB")
        except ValueError:
            raise
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise ValueError(f"a decompression bomb: {exc}") from exc
        except Exception as exc:  # Pillow's decoders raise many kinds (OSError, SyntaxError, EOFError ...)
            raise ValueError(f"not an image dreamloom can read ({type(exc).__name__}: {exc})") from exc


def _download(url: str, policy: FetchPolicy, max_pixels: int) -> tuple[Image.Image, bytes, str]:
    """The image at ``url``, downloaded and checked, with its bytes and their type; or ``ImagePromptError``."""
    try:
        download = fetch(url, policy)
        image = decode_image(download.data, max_pixels)
    except (FetchRefused, ValueError) as exc:
        raise ImagePromptError(url, str(exc)) from exc
    return image, download.data, _sniffed_type(download.data)


def _sniffed_type(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            return _TYPES.get(image.format or "", "application/octet-stream")
    except Exception:
        return "application/octet-stream"


@dataclass(frozen=True)
class KeptImage:
    """An image prompt's kept copy, as ``job.json`` lists it."""

    url: str
    key: str
    bytes: int
    sha256: str
    content_type: str

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "key": self.key, "bytes": self.bytes, "sha256": self.sha256,
                "content_type": self.content_type}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KeptImage:
        return cls(str(data["url"]), str(data["key"]), int(data["bytes"]), str(data["sha256"]),
                   str(data.get("content_type", "")))  # fmt: skip


class ImagePrompts:
    """Gathers a job's image prompts: kept copies where there are some, else downloads (kept at once)."""

    def __init__(self, storage: Storage, policy: FetchPolicy, max_pixels: int = MAX_PIXELS) -> None:
        self.storage = storage
        self.policy = policy
        self.max_pixels = max_pixels

    def gather(
        self, job_id: str, urls: Sequence[str], carried: Sequence[KeptImage] = (), again: bool = False
    ) -> tuple[list[Image.Image], list[KeptImage]]:
        """The images of ``urls`` and what ``job.json`` lists of them. ``carried``: the copies the job's
        parent kept (by URL); ``again``: the job was attempted before, so it may have kept some itself."""
        known = {kept.url: kept for kept in carried}
        images: list[Image.Image] = []
        kept_list: list[KeptImage] = []
        for number, url in enumerate(urls, start=1):
            kept = known.get(url)
            data = self._stored(kept.key) if kept is not None else None
            if data is None and again:  # this job kept it on an earlier attempt
                own = image_prompt_key(job_id, number)
                if (data := self._stored(own)) is not None:
                    kept = _kept(url, own, data, _sniffed_type(data))
            if data is None or kept is None:
                image, kept = self._first(job_id, number, url)
            else:
                try:
                    image = decode_image(data, self.max_pixels)
                except ValueError as exc:
                    raise ImagePromptError(url, f"its kept copy {kept.key}: {exc}") from exc
            images.append(image)
            kept_list.append(kept)
        return images, kept_list

    def _first(self, job_id: str, number: int, url: str) -> tuple[Image.Image, KeptImage]:
        """Download, check, and keep next to the job."""
        image, data, content_type = _download(url, self.policy, self.max_pixels)
        key = image_prompt_key(job_id, number)
        self.storage.put(key, data, content_type)
        log.info("image prompt %d kept as %s (%d bytes)", number, key, len(data))
        return image, _kept(url, key, data, content_type)

    def _stored(self, key: str) -> bytes | None:
        """The bytes kept under ``key``; None when nothing is (a copy deleted since: download again)."""
        try:
            return self.storage.get(key)
        except StorageError as exc:
            if exc.missing:
                return None
            raise


def _kept(url: str, key: str, data: bytes, content_type: str) -> KeptImage:
    """What ``job.json`` lists of ``data``, kept under ``key`` for the image prompt at ``url``."""
    return KeptImage(url, key, len(data), hashlib.sha256(data).hexdigest(), content_type)


def kept_images(manifest: Mapping[str, Any] | None) -> list[KeptImage]:
    """The image prompts a stored job kept (its ``job.json``), for the jobs made from it."""
    if not manifest:
        return []
    return [KeptImage.from_dict(entry) for entry in manifest.get("image_prompts", [])]
