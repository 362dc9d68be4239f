"""Turning a result into stored files: the images, the grid, the last preview and ``job.json``.

``prepare`` encodes everything (the bytes a worker can keep on its own disk until they are stored);
``upload`` stores them with ``job.json`` last: its presence means every other file of the job is stored,
which is how a redelivered job knows that its result already exists. Used by workers and, for separating
a tile (no GPU work), by the client itself.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from PIL import Image

from engine.results import GenerationResult
from tasks.records import Job
from tasks.storage import Storage, artifact_key

__all__ = ["GRID", "MANIFEST", "PREVIEW", "encode_png", "encode_preview", "prepare", "read_manifest", "upload"]

GRID, MANIFEST, PREVIEW = "grid", "manifest", "preview"
_FILES = {GRID: "grid.png", MANIFEST: "job.json", PREVIEW: "preview.webp"}
_CONTENT_TYPES = {MANIFEST: "application/json", PREVIEW: "image/webp"}
PREVIEW_SIDE = 256


def file_name(name: str) -> str:
    """The file an artifact name is stored as: "1" -> "1.png", "grid" -> "grid.png" ..."""
    return _FILES.get(name, f"{name}.png")


def image_name(number: int) -> str:
    return str(number)


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def encode_preview(image: Image.Image) -> bytes:
    """A small WebP for live progress: at most PREVIEW_SIDE pixels a side, a few kilobytes."""
    small = image.convert("RGB")
    small.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    buffer = io.BytesIO()
    small.save(buffer, format="WEBP", quality=60)
    return buffer.getvalue()


def prepare(
    job: Job, result: GenerationResult, lineage: Sequence[str], preview: bytes | None = None
) -> dict[str, bytes]:
    """Artifact name -> bytes: the images, the grid, the last live preview, and ``job.json``."""
    encoded = {image_name(n): encode_png(image) for n, image in enumerate(result.images, start=1)}
    if result.grid is not None:
        encoded[GRID] = encode_png(result.grid)
    if preview is not None:
        encoded[PREVIEW] = preview
    files = {name: artifact_key(job.id, file_name(name)) for name in [*encoded, MANIFEST]}
    encoded[MANIFEST] = json.dumps(manifest(job, result, files, lineage), indent=2).encode()
    return encoded


def upload(storage: Storage, job_id: str, artifacts: dict[str, bytes]) -> dict[str, str]:
    """Store prepared artifacts, ``job.json`` last; returns artifact name -> storage key."""
    files = {name: artifact_key(job_id, file_name(name)) for name in artifacts}
    for name, data in artifacts.items():
        if name != MANIFEST:
            storage.put(files[name], data, _CONTENT_TYPES.get(name, "image/png"))
    storage.put(files[MANIFEST], artifacts[MANIFEST], _CONTENT_TYPES[MANIFEST])
    return files


def manifest(job: Job, result: GenerationResult, files: dict[str, str], lineage: Sequence[str]) -> dict[str, Any]:
    """``job.json``: everything needed to understand and reproduce the job without Redis."""
    return {
        "id": job.id,
        "action": job.action.value,
        "owner": job.owner,
        "guild": job.guild,
        "channel": job.channel,
        "mode": job.mode,
        "parent": job.parent,
        "parent_tile": job.tile,
        "lineage": [*lineage],  # ancestors, oldest first
        "params": job.params,
        "created_at": job.created_at,
        "finished_at": time.time(),
        "recipe": result.recipe.to_dict(),
        "notes": list(result.notes),
        "timings": asdict(result.timings),
        "files": {name: key for name, key in files.items() if name != MANIFEST},
    }


def read_manifest(storage: Storage, job_id: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(storage.get(artifact_key(job_id, file_name(MANIFEST))))
    return document
