"""The mapping table of docs/models.md, checked on the tensors the engine hands the pipeline."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from engine.conditioning import PromptEncoder, XLPromptEncoder, encoder_for, starting_noise, text_conditioning
from engine.plan import ModelProfile, plan_generation
from engine.prompt import parse

PROFILE = ModelProfile(native_size=(64, 64), steps=4, guidance=7.5, size_multiple=16)
TURBO = dataclasses.replace(PROFILE, guidance=0.0)


@pytest.fixture(scope="module")
def encoder(engine):
    encoder = encoder_for(engine.load("v6").pipe)
    assert type(encoder) is PromptEncoder
    return encoder


def plan(text, profile=PROFILE, seed=3):
    return plan_generation(parse(text), profile, seed=seed)


def embeds(encoder, text, profile=PROFILE, batch=4):
    with torch.inference_mode():
        return encoder.condition(plan(text, profile), batch)


def test_a_plain_prompt_is_its_own_embedding_for_every_image(encoder):
    conditioning = embeds(encoder, "a red bird")
    own = encoder.encode(["a red bird"])["prompt_embeds"]
    assert conditioning.positive["prompt_embeds"].shape == (4, *own.shape[1:])
    assert torch.allclose(conditioning.positive["prompt_embeds"], own.expand(4, -1, -1))
    assert conditioning.negative == {}


def test_weighted_parts_blend_their_embeddings(encoder):
    blended = embeds(encoder, "space::3 ship").positive["prompt_embeds"][0]
    parts = encoder.encode(["space", "ship"])["prompt_embeds"]
    assert torch.allclose(blended, 0.75 * parts[0] + 0.25 * parts[1], atol=1e-6)


def test_no_with_guidance_is_the_negative_embedding(encoder):
    conditioning = embeds(encoder, "a street --no cars")
    cars = encoder.encode(["cars"])["prompt_embeds"]
    assert torch.allclose(conditioning.negative["negative_prompt_embeds"], cars.expand(4, -1, -1))


def test_no_without_guidance_pushes_the_embedding_away(encoder):
    pushed = embeds(encoder, "a street --no cars", TURBO).positive["prompt_embeds"][0]
    street, cars = encoder.encode(["a street", "cars"])["prompt_embeds"]
    assert torch.allclose(pushed, 1.5 * street - 0.5 * cars, atol=1e-6)


def test_weird_offsets_the_embedding_by_its_documented_length(encoder):
    plain = embeds(encoder, "a cat").positive["prompt_embeds"][0]
    weird = embeds(encoder, "a cat --weird 3000").positive["prompt_embeds"][0]
    assert (weird - plain).norm() / plain.norm() == pytest.approx(0.5, rel=1e-4)
    again = embeds(encoder, "a cat --weird 3000").positive["prompt_embeds"][0]
    assert torch.equal(weird, again), "the direction comes from the seed"


def test_chaos_jitters_each_image_differently(encoder):
    calm = embeds(encoder, "a cat").positive["prompt_embeds"]
    wild = embeds(encoder, "a cat --chaos 100").positive["prompt_embeds"]
    assert torch.equal(calm[0], calm[3])
    assert not torch.equal(wild[0], wild[3])
    relative = (wild[0] - calm[0]).std() / calm[0].std()
    assert relative == pytest.approx(0.2, rel=0.1)


def test_chaos_sets_how_much_starting_noise_the_four_images_share():
    def correlation(text):
        noise = starting_noise(plan(text), (4, 64, 64)).flatten(1)
        return torch.corrcoef(noise)[0, 1:].mean().item()

    assert correlation("x") == pytest.approx(0.4, abs=0.05)
    assert correlation("x --chaos 50") == pytest.approx(0.2, abs=0.05)
    assert correlation("x --chaos 100") == pytest.approx(0.0, abs=0.05)
    assert starting_noise(plan("x"), (4, 64, 64)).std().item() == pytest.approx(1.0, abs=0.05)


def test_each_image_s_noise_comes_from_its_own_seed():
    noise = starting_noise(plan("x --chaos 100", seed=10), (4, 8, 8))
    alone = starting_noise(plan("x --chaos 100", seed=12), (4, 8, 8))
    assert torch.equal(noise[2], alone[0]), "image 3 of seed 10 starts like image 1 of seed 12"


def test_sdxl_gets_pooled_embeddings_too(engine):
    encoder = encoder_for(engine.load("niji").pipe)
    assert type(encoder) is XLPromptEncoder
    with torch.inference_mode():
        conditioning = encoder.condition(plan("a cat --no dogs"), 4)
    assert set(conditioning.positive) == {"prompt_embeds", "pooled_prompt_embeds"}
    assert set(conditioning.negative) == {"negative_prompt_embeds", "negative_pooled_prompt_embeds"}
    assert conditioning.positive["pooled_prompt_embeds"].shape[0] == 4


def test_text_prompts_for_other_pipelines_say_what_they_approximate():
    text = text_conditioning(plan("space::2 ship::-0.5 --weird 10 --chaos 5 --no cars", TURBO), 4)
    assert text.prompt == ["space"] * 4
    assert text.negative_prompt == ["cars"] * 4
    assert text.approximated == (
        "multi-prompt weights (parts joined as text)",
        "--no without guidance (sent as a negative prompt)",
        "--weird",
        "--chaos prompt variation",
    )
    assert text_conditioning(plan("a cat"), 1).approximated == ()


def test_salted_streams_are_independent_of_the_image_seeds():
    from engine.conditioning import generators

    plain, salted = generators([7])[0], generators([7], salt=3)[0]
    a, b = torch.randn(10_000, generator=plain), torch.randn(10_000, generator=salted)
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item()) < 0.05
    assert torch.equal(torch.randn(10_000, generator=generators([7], salt=3)[0]), b), "and reproducible"
