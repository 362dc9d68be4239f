"""Turning a result into stored files: the images, the grid, the last preview and ``job.json``.

``prepare`` encodes everything (the bytes a worker can keep on its own disk until they are stored);
``upload`` stores them with ``job.json`` last: its presence means every other file of the job is stored,
which is how a redelivered job knows that its result already exists. Used by workers and, for separating
an image of a grid (no GPU work), by the client itself.

The images are kept losslessly as WebP (libwebp's fastest lossless setting: the size of PNG at its fastest
zlib level, encoded three to four times faster); the grid, which is only those images side by side, is
kept as the JPEG the bot posts, so posting needs no decoding or encoding. Large images are encoded in
threads (libwebp and libjpeg release the GIL), and so are uploads to a remote store and large local writes
(a file system's write is CPU work in the kernel: 1.6 ms for a 575 KB file on ext4 on the 2-core machine);
small images and small local files are handled in the calling thread, where handing work to a thread
costs more than it saves. Readers find a job's files through its record, so jobs stored with other names
(PNG originals, before) keep working.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from PIL import Image

from engine.errors import PromptError, StorageError
from engine.results import GenerationResult
from tasks.file_storage import Storage, artifact_key
from tasks.records import Job

__all__ = [
    "ARTIFACT_NAMES",
    "GRID",
    "MANIFEST",
    "PREVIEW",
    "content_type",
    "encode_grid",
    "encode_original",
    "encode_preview",
    "file_name",
    "prepare",
    "read_image",
    "read_manifest",
    "stored_job",
    "upload",
]

GRID, MANIFEST, PREVIEW = "grid", "manifest", "preview"
ARTIFACT_NAMES = ("1", "2", "3", "4", GRID, PREVIEW, MANIFEST)
_FILES = {GRID: "grid.jpg", MANIFEST: "job.json", PREVIEW: "preview.webp"}
_CONTENT_TYPES = {GRID: "image/jpeg", MANIFEST: "application/json", PREVIEW: "image/webp"}
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"RIFF", "image/webp"))
PREVIEW_SIDE = 256
_THREADS = min(8, os.cpu_count() or 2)
# Below this many pixels in all, encoding in the calling thread beats handing the images to threads.
_PARALLEL_PIXELS = 4 * 256 * 256
# Below this many bytes in all, writing local files in the calling thread beats handing them to threads.
_PARALLEL_BYTES = 1 << 20
_pool: tuple[int, ThreadPoolExecutor] | None = None


def _threads() -> ThreadPoolExecutor:
    """This process's encoding and upload threads (started once; a forked child starts its own)."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(_THREADS, thread_name_prefix="dreamloom-artifacts"))
    return _pool[1]


def file_name(name: str) -> str:
    """The file an artifact name is stored as: "1" -> "1.webp", "grid" -> "grid.jpg" ..."""
    return _FILES.get(name, f"{name}.webp")


def content_type(name: str, data: bytes = b"") -> str:
    """The media type of an artifact: what ``data`` is when given (a job stored before originals were WebP
    has PNG files), else what ``name`` is stored as."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    return _CONTENT_TYPES.get(name, "image/webp")


def image_name(number: int) -> str:
    return str(number)


def encode_original(image: Image.Image) -> bytes:
    """Lossless WebP at the least effort (quality 0, method 0): at 1024² about 30 ms and 2.3 MB, where PNG at
    zlib level 1 takes about 140 ms for the same size (figures from a 2-core machine)."""
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", lossless=True, quality=0, method=0)
    return buffer.getvalue()


def encode_grid(grid: Image.Image) -> bytes:
    """The grid as the bot posts it: JPEG quality 90 without chroma subsampling (tens of ms at 2048²)."""
    buffer = io.BytesIO()
    grid.convert("RGB").save(buffer, format="JPEG", quality=90, subsampling=0)
    return buffer.getvalue()


def encode_preview(image: Image.Image) -> bytes:
    """A small WebP for live progress: at most PREVIEW_SIDE pixels a side, a few kilobytes."""
    small = image.convert("RGB")
    small.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    buffer = io.BytesIO()
    small.save(buffer, format="WEBP", quality=60)
    return buffer.getvalue()


def prepare(
    job: Job,
    result: GenerationResult,
    lineage: Sequence[str],
    preview: bytes | None = None,
    image_prompts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, bytes]:
    """Artifact name -> bytes: the images, the grid, the last live preview, and ``job.json``.
    ``image_prompts``: the kept copies of the request's image prompts (``tasks.fetch.KeptImage``), listed in
    ``job.json`` so that the jobs made from this one read them instead of downloading them again."""
    work: dict[str, tuple[Callable[[Image.Image], bytes], Image.Image]] = {
        image_name(n): (encode_original, image) for n, image in enumerate(result.images, start=1)
    }
    if result.grid is not None:
        work[GRID] = (encode_grid, result.grid)
    if sum(image.width * image.height for _, image in work.values()) < _PARALLEL_PIXELS:
        encoded = {name: encode(image) for name, (encode, image) in work.items()}
    else:
        futures = {name: _threads().submit(encode, image) for name, (encode, image) in work.items()}
        encoded = {name: future.result() for name, future in futures.items()}
    if preview is not None:
        encoded[PREVIEW] = preview
    files = {name: artifact_key(job.id, file_name(name)) for name in [*encoded, MANIFEST]}
    encoded[MANIFEST] = json.dumps(manifest(job, result, files, lineage, image_prompts), indent=2).encode()
    return encoded


def upload(storage: Storage, job_id: str, artifacts: dict[str, bytes]) -> dict[str, str]:
    """Store prepared artifacts, ``job.json`` last; returns artifact name -> storage key."""
    files = {name: artifact_key(job_id, file_name(name)) for name in artifacts}
    others = [name for name in artifacts if name != MANIFEST]
    if storage.keeps_files_locally and sum(len(artifacts[n]) for n in others) < _PARALLEL_BYTES:
        for name in others:
            storage.put(files[name], artifacts[name], content_type(name))
    else:
        for done in [_threads().submit(storage.put, files[n], artifacts[n], content_type(n)) for n in others]:
            done.result()  # raises the first failure; job.json is then not written
    storage.put(files[MANIFEST], artifacts[MANIFEST], content_type(MANIFEST))
    return files


def manifest(
    job: Job,
    result: GenerationResult,
    files: dict[str, str],
    lineage: Sequence[str],
    image_prompts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """``job.json``: everything needed to understand and reproduce the job without Redis, or anything else
    outside storage (its image prompts are kept copies)."""
    return {
        "id": job.id,
        "action": job.action.value,
        "owner": job.owner,
        "guild": job.guild,
        "channel": job.channel,
        "mode": job.mode,
        "parent": job.parent,
        "parent_index": job.index,
        "lineage": [*lineage],  # ancestors, oldest first
        "params": job.params,
        "size": list(result.images[0].size),  # of each image
        "created_at": job.created_at,
        "finished_at": time.time(),
        "recipe": result.recipe.to_dict(),
        "notes": list(result.notes),
        "timings": asdict(result.timings),
        "files": {name: key for name, key in files.items() if name != MANIFEST},
        "image_prompts": [dict(kept) for kept in image_prompts],  # url, key, bytes, sha256, content_type
    }


def read_manifest(storage: Storage, job_id: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(storage.get(artifact_key(job_id, file_name(MANIFEST))))
    return document


def stored_job(storage: Storage, job_id: str) -> Job | None:
    """A done job rebuilt from its ``job.json`` (its record expired), or None when storage has none."""
    try:
        document = read_manifest(storage, job_id)
        files = {**document.get("files", {}), MANIFEST: artifact_key(job_id, file_name(MANIFEST))}
        return Job.from_manifest(document, files) if document.get("id") == job_id else None
    except StorageError as exc:
        if not exc.missing:
            raise
        return None
    except (KeyError, TypeError, ValueError, PromptError):
        return None


def read_image(storage: Storage, manifest: dict[str, Any], index: int) -> Image.Image:
    """Image ``index`` of a stored job (its ``job.json`` is ``manifest``), as RGB: what a follow-up starts from."""
    return Image.open(io.BytesIO(storage.get(manifest["files"][str(index)]))).convert("RGB")
