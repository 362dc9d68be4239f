"""Helpers for the playground and CLI tests: a painting stand-in engine, a worker thread, a server thread.

``PaintEngine`` keeps the NullEngine's real recipes and sizes but paints each image (a coloured shape on a
background, chosen by the image's seed), sends blurry previews while it "renders", and can take its time,
so a page shows live progress and grids that a person can tell apart, in milliseconds and without torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image, ImageDraw, ImageFilter

from engine.callbacks import CancelCheck, ProgressCallback
from engine.null import NullEngine
from engine.registry import Registry
from tasks.settings import Settings

JOB_DONE = re.compile(r"^job ([0-9a-f]{32}) done", re.MULTILINE)


def dreamloom_argv() -> list[str]:
    """The console script of this interpreter's environment (``python -m bot.cli`` without one)."""
    command = shutil.which("dreamloom", path=str(Path(sys.executable).parent))
    return [command] if command else [sys.executable, "-m", "bot.cli"]


def dreamloom(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*dreamloom_argv(), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh shell: none of dreamloom's variables unless given. PYTHONPATH stays, so a
    checkout run ahead of the installed one (a git worktree) runs its own code in the commands too."""
    keep = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR", "XDG_STATE_HOME", "PYTHONPATH")
            if name in os.environ}  # fmt: skip
    return {**keep, "HF_HUB_OFFLINE": "1", **extra}


NULL_MODELS_TOML = """default = "v6"

[models.v6]
source = "painted-by-the-test-engine"
family = "sd15"
native_size = [256, 256]
size_multiple = 16
steps = 4
"""

_COLOURS = [(220, 60, 60), (240, 170, 40), (60, 170, 90), (60, 120, 220), (150, 80, 200), (240, 240, 240),
            (30, 40, 60), (250, 200, 210), (20, 110, 120), (120, 70, 40)]  # fmt: skip


def null_registry(folder: Path) -> tuple[Path, Registry]:
    path = folder / "models.toml"
    path.write_text(NULL_MODELS_TOML)
    return path, Registry.from_toml(path)


def paint(seed: int, size: tuple[int, int]) -> Image.Image:
    """A coloured shape on a background, all chosen by ``seed``."""
    rng = random.Random(seed)
    background, colour = rng.sample(_COLOURS, 2)
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    width, height = size
    radius = rng.randint(min(size) // 5, min(size) // 3)
    x, y = rng.randint(radius, width - radius), rng.randint(radius, height - radius)
    box = (x - radius, y - radius, x + radius, y + radius)
    shape = rng.choice(["circle", "square", "triangle"])
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(x, y - radius), (x + radius, y + radius), (x - radius, y + radius)], fill=colour)
    return image


class PaintEngine(NullEngine):
    """A NullEngine that paints its images (a shape chosen by each image's seed) and sends blurry previews,
    taking ``step_seconds`` per step."""

    def __init__(self, registry: Registry, step_seconds: float = 0.0) -> None:
        super().__init__(registry, steps=4)
        self.step_seconds = step_seconds

    def picture(self, seed: int, size: tuple[int, int]) -> Image.Image:
        return paint(seed, size)

    def steps(self, progress: ProgressCallback | None, cancel: CancelCheck | None, seed: int) -> None:
        def slow_progress(step: int, total: int, _preview: Image.Image | None) -> None:
            time.sleep(self.step_seconds)
            preview = paint(seed, (64, 64)).filter(ImageFilter.GaussianBlur(8 - 2 * step))
            if progress is not None:
                progress(step, total, preview if step < total else None)

        super().steps(slow_progress, cancel, seed)


def local_settings(redis_url: str, folder: Path) -> Settings:
    """Job settings with local storage in ``folder / "data"`` and no progress throttling."""
    return Settings(
        redis_url=redis_url,
        data_dir=folder / "data",
        spool_dir=folder / "spool",
        progress_interval=0.0,
    )


@contextlib.contextmanager
def painting_worker(
    settings: Settings, registry: Registry, step_seconds: float = 0.0, engine: PaintEngine | None = None
) -> Iterator[None]:
    """A Celery worker in a thread (solo pool) that renders with a PaintEngine (``engine``, or a new one)."""
    from celery.contrib.testing.worker import start_worker

    from tasks.routing import worker_queues
    from tasks.worker import create_worker_app

    painter = engine or PaintEngine(registry, step_seconds)
    app = create_worker_app(settings, engine_factory=lambda: painter)
    queues = worker_queues(entry.family for entry in registry.entries)
    with start_worker(app, pool="solo", perform_ping_check=False, queues=queues, shutdown_timeout=30):
        yield


@contextlib.contextmanager
def serve_in_thread(app: web.Application) -> Iterator[str]:
    """Serve ``app`` on a free loopback port from a thread with its own event loop; yields its URL."""
    from bot.web.server import serve

    loop = asyncio.new_event_loop()
    started = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        state["stop"] = asyncio.Event()
        try:
            async with serve(app, "127.0.0.1", 0) as url:
                state["url"] = url
                started.set()
                await state["stop"].wait()
        finally:
            started.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(30)
    try:
        assert "url" in state, "the playground did not start"
        yield str(state["url"])
    finally:
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(30)
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def http(url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, parsed JSON or bytes) of a GET, or of a JSON POST when ``body`` is given."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={**({"Content-Type": "application/json"} if data else {}),
                                                              **(headers or {})})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, kind, raw = response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as error:
        status, kind, raw = error.code, error.headers.get_content_type(), error.read()
        error.close()
    return status, json.loads(raw) if kind == "application/json" else raw
