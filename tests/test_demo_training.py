"""The demo model's training script, at a smoke-test size: every stage runs, the export loads through the
registry like any diffusers model, and the same seed gives the same weights."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch

from devtools.demo.export import build_unet, with_attention_16
from devtools.demo.train import TrainConfig, train
from engine.generate import Engine
from engine.prompt import parse
from engine.registry import Registry

pytestmark = pytest.mark.slow  # trains the demo pipeline for a few steps


def smoke(tmp_path, name: str) -> TrainConfig:
    return TrainConfig.quick(
        work=tmp_path / name, out=tmp_path / name / "model", vae_steps=4, scenes=24, steps=4, evaluate=1
    )


def weights(folder) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*.safetensors"))
    }


def test_training_runs_every_stage_and_exports_a_pipeline_the_engine_loads(tmp_path, capsys):
    folder = train(smoke(tmp_path, "first"))
    printed = capsys.readouterr().out
    for stage in ("autoencoder: finished", "data: finished", "diffusion: finished", "exported to", "evaluation"):
        assert stage in printed, printed
    assert "| background |" in printed, "the evaluator's table"
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert set(weights(folder)) == {
        "text_encoder/model.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    }
    assert "python -m devtools.demo.train" in (folder / "README.md").read_text()

    engine = Engine(Registry.from_mapping({"models": {"demo": {"source": str(folder), "family": "demo"}}}))
    result = engine.imagine(parse("a red circle on a blue background --seed 3 --ar 2:1"))
    assert [image.size for image in result.images] == [(80, 48)] * 4, "2:1 in multiples of 16, as trained"

    again = train(smoke(tmp_path, "second"))
    assert weights(again) == weights(folder), "the same seed reproduces the same weights"
    capsys.readouterr()
    train(dataclasses.replace(smoke(tmp_path, "second"), evaluate=0))
    printed = capsys.readouterr().out
    for stage in ("autoencoder: trained earlier, loaded", "data: encoded earlier, loaded"):
        assert stage in printed, printed
    assert "diffusion: trained earlier, loaded" in printed, "a finished run is picked up, not redone"


def test_attention_added_at_16x16_starts_out_computing_what_the_first_recipe_did():
    torch.manual_seed(0)
    first = build_unet(attention_16=False).eval()
    extended = with_attention_16(first).eval()
    assert extended.config.down_block_types[0] == "CrossAttnDownBlock2D"
    assert sum(p.numel() for p in extended.parameters()) > sum(p.numel() for p in first.parameters())
    latents, text = torch.randn(2, 4, 16, 16), torch.randn(2, 8, 128)
    with torch.no_grad():
        before = first(latents, torch.tensor([10, 700]), text).sample
        after = extended(latents, torch.tensor([10, 700]), text).sample
    torch.testing.assert_close(after, before)


def test_init_trains_on_from_an_exported_first_recipe_model(tmp_path, capsys):
    first = train(dataclasses.replace(smoke(tmp_path, "first"), attention_16=False, kind_words=0.0, evaluate=0))
    assert json.loads((first / "unet" / "config.json").read_text())["down_block_types"][0] == "DownBlock2D"
    capsys.readouterr()
    folder = train(dataclasses.replace(smoke(tmp_path, "on"), init=first, evaluate=0))
    printed = capsys.readouterr().out
    assert f"from {first}" in printed, printed
    assert "autoencoder: starting" not in printed, printed
    assert "diffusion: finished" in printed, printed
    assert json.loads((folder / "unet" / "config.json").read_text())["down_block_types"][0] == "CrossAttnDownBlock2D"
    assert not [c for c in folder.glob("*/config.json") if "_name_or_path" in c.read_text()], "no scratch paths"
    assert (
        weights(folder)["vae/diffusion_pytorch_model.safetensors"]
        == weights(first)["vae/diffusion_pytorch_model.safetensors"]
    ), "the autoencoder comes from the model trained on"
    result = Engine(Registry.from_mapping({"models": {"demo": {"source": str(folder), "family": "demo"}}})).imagine(
        parse("a small green star on the left --seed 5")
    )
    assert len(result.images) == 4
