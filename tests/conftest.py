"""Shared test set-up. Nothing in the suite may reach a model hub; heavy fixtures are built once per session."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny SD 1.5 and SDXL pipelines, an x4 upscaler and a preview decoder, saved in the diffusers layout."""
    from engine.tiny import save_tiny_pipeline, save_tiny_preview_decoder, save_tiny_upscaler

    root = tmp_path_factory.mktemp("models")
    return {
        "sd15": save_tiny_pipeline(root / "tiny-sd15", "sd15"),
        "sdxl": save_tiny_pipeline(root / "tiny-sdxl", "sdxl"),
        "upscaler": save_tiny_upscaler(root / "tiny-x4-upscaler"),
        "taesd": save_tiny_preview_decoder(root / "tiny-taesd"),
    }


def tiny_registry_toml(models: dict[str, Path], **extra: str) -> str:
    """A models.toml serving the tiny pipelines: v6 (SD 1.5, with upscaler), niji (SDXL), turbo (no guidance)."""
    tiny = 'native_size = [64, 64]\nsize_multiple = 16\nscheduler = "euler"\n'
    return (
        'default = "v6"\n\n'
        f'[models.v6]\nsource = "{models["sd15"]}"\nfamily = "sd15"\nsteps = 4\n{tiny}'
        f'upscaler = "{models["upscaler"]}"\n{extra.get("v6", "")}\n'
        f'[models.niji]\nsource = "{models["sdxl"]}"\nfamily = "sdxl"\nsteps = 4\n{tiny}\n'
        f'[models.turbo]\nsource = "{models["sd15"]}"\nfamily = "sd-turbo"\nsteps = 2\n{tiny}'
    )


@pytest.fixture(scope="session")
def registry_file(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "models.toml"
    path.write_text(tiny_registry_toml(tiny_models))
    return path


@pytest.fixture(scope="session")
def engine(registry_file: Path):
    """One engine for the session, as a worker process has: models load once and stay loaded."""
    from engine.generate import Engine
    from engine.registry import Registry

    return Engine(Registry.from_toml(registry_file), max_loaded=3)
