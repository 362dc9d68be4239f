"""The model registry: entries from TOML or the environment, family presets, aliases and clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import engine
from engine.errors import ConfigError, UnknownModel
from engine.registry import FAMILIES, Registry, guess_family


def registry(**models: dict[str, Any]) -> Registry:
    return Registry.from_mapping({"models": models})


def test_family_presets_fill_what_an_entry_leaves_out():
    entry = registry(v6={"source": "stabilityai/stable-diffusion-xl-base-1.0", "family": "sdxl"}).resolve("v6")
    assert (entry.native_size, entry.steps, entry.guidance) == ((1024, 1024), 30, 5.0)
    turbo = registry(turbo={"source": "stabilityai/sd-turbo", "family": "sd-turbo", "steps": 2}).resolve("turbo")
    assert (turbo.native_size, turbo.steps, turbo.guidance) == ((512, 512), 2, 0.0)
    assert turbo.profile.native_size == (512, 512)


def test_every_family_makes_a_valid_profile():
    for name in FAMILIES:
        assert registry(m={"source": "x", "family": name}).resolve("m").profile.steps >= 1


def test_requests_select_entries_by_alias():
    reg = Registry.from_mapping(
        {
            "default": "v6",
            "models": {
                "v6": {"source": "a", "aliases": ["6"]},
                "v5.2": {"source": "b"},
                "niji": {"source": "c", "aliases": ["niji6"]},
            },
        }
    )
    assert reg.resolve(None).alias == "v6"
    assert reg.resolve("v6").alias == "v6"
    assert reg.resolve("v5.2").alias == "v5.2"
    assert reg.resolve("niji").alias == "niji"
    assert reg.resolve("niji6").alias == "niji"
    assert sorted(reg.aliases) == ["6", "niji", "niji6", "v5.2", "v6"]


def test_the_first_entry_is_the_default_when_none_is_named():
    assert registry(b={"source": "b"}, a={"source": "a"}).resolve(None).alias == "b"


def test_an_unknown_alias_lists_the_known_ones():
    with pytest.raises(UnknownModel, match=r"Unknown model 'v7': known models are v6, niji") as caught:
        registry(v6={"source": "a"}, niji={"source": "b"}).resolve("v7")
    assert caught.value.known == ["v6", "niji"]


def test_an_empty_registry_says_how_to_configure_one():
    with pytest.raises(UnknownModel, match="configure DREAMLOOM_MODEL or DREAMLOOM_MODELS"):
        Registry().resolve(None)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"source": "a", "famly": "sdxl"}, "unknown setting famly"),
        ({"family": "sdxl"}, "'source' is required"),
        ({"source": "a", "family": "sd9"}, "family 'sd9' is not one of sd15, sd2-base"),
        ({"source": "a", "scheduler": "fastest"}, "scheduler 'fastest' is not one of default, euler"),
        ({"source": "a", "dtype": "fp8"}, "dtype 'fp8' is not one of auto, fp16, bf16, fp32"),
        ({"source": "a", "steps": 0}, "steps must be at least 1"),
        ({"source": "a", "native_size": [32, 512]}, "must be at least size_multiple"),
        ({"source": "a", "variation_strength": [0.3, 1.5]}, "variation_strength values must be in"),
        ({"source": "a", "aliases": ["Bad Name"]}, "alias 'Bad Name' must be"),
        ({"source": "a", "native_size": "big"}, r"\[models.m\]"),
    ],
)
def test_bad_entries_name_the_setting(settings, message):
    with pytest.raises(ConfigError, match=message):
        registry(m=settings)


def test_bad_registries_are_refused():
    with pytest.raises(ConfigError, match="used by both a and b"):
        registry(a={"source": "x", "aliases": ["same"]}, b={"source": "y", "aliases": ["same"]})
    with pytest.raises(ConfigError, match="the default model 'v9' is not an entry"):
        Registry.from_mapping({"default": "v9", "models": {"v6": {"source": "a"}}})
    with pytest.raises(ConfigError, match=r"no \[models.<alias>\] tables"):
        Registry.from_mapping({"default": "v6"})
    with pytest.raises(ConfigError, match="unknown top-level key model"):
        Registry.from_mapping({"model": {}})


def test_from_toml(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text('default = "turbo"\n[models.turbo]\nsource = "stabilityai/sd-turbo"\nfamily = "sd-turbo"\n')
    assert Registry.from_toml(path).resolve(None).source == "stabilityai/sd-turbo"
    path.write_text("[models.turbo\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        Registry.from_toml(path)
    with pytest.raises(ConfigError, match="cannot read the model registry"):
        Registry.from_toml(tmp_path / "missing.toml")


def test_from_env(tmp_path):
    demo = Registry.from_env({}).resolve(None)
    assert (demo.alias, demo.family, demo.native_size, demo.size_multiple) == ("demo", "demo", (64, 64), 16)
    assert Path(demo.source) == Path(engine.__file__).resolve().parent / "models" / "demo", "ships with the package"
    one = Registry.from_env({"DREAMLOOM_MODEL": "stabilityai/sdxl-turbo"}).resolve(None)
    assert (one.alias, one.family, one.native_size) == ("default", "sdxl-turbo", (512, 512))
    forced = Registry.from_env({"DREAMLOOM_MODEL": "/models/mine", "DREAMLOOM_MODEL_FAMILY": "sdxl"}).resolve(None)
    assert forced.family == "sdxl"
    path = tmp_path / "models.toml"
    path.write_text('[models.v6]\nsource = "a"\n')
    assert Registry.from_env({"DREAMLOOM_MODELS": str(path), "DREAMLOOM_MODEL": "ignored"}).aliases == ["v6"]


@pytest.mark.parametrize(
    ("source", "family"),
    [
        ("stabilityai/sd-turbo", "sd-turbo"),
        ("stabilityai/sdxl-turbo", "sdxl-turbo"),
        ("stabilityai/stable-diffusion-xl-base-1.0", "sdxl"),
        ("stabilityai/stable-diffusion-2-1-base", "sd2-base"),
        ("stabilityai/stable-diffusion-2-1", "sd2"),
        ("stabilityai/stable-diffusion-3-medium-diffusers", "sd3"),
        ("black-forest-labs/FLUX.1-schnell", "flux"),
        ("runwayml/stable-diffusion-v1-5", "sd15"),
    ],
)
def test_guess_family(source, family):
    assert guess_family(source) == family


def test_compile_modes_and_fused_attention():
    assert registry(m={"source": "x", "compile": True}).resolve("m").compile == "default"
    assert registry(m={"source": "x", "compile": False}).resolve("m").compile == "off"
    entry = registry(m={"source": "x", "compile": "max-autotune", "fuse_qkv": True}).resolve("m")
    assert (entry.compile, entry.fuse_qkv) == ("max-autotune", True)
    with pytest.raises(ConfigError, match="compile 'fastest' is not one of off, default, reduce-overhead"):
        registry(m={"source": "x", "compile": "fastest"})
