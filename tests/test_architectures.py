"""The architecture configs kept in the repo build the real networks (checked by parameter count)."""

from __future__ import annotations

import pytest

from devtools.architectures import random_pipeline

# Published parameter counts of the real models' components.
EXPECTED = {
    "sd-turbo": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_configs_build_the_real_architectures(name):
    pipe = random_pipeline(name, empty=True)
    counts = {part: sum(p.numel() for p in getattr(pipe, part).parameters()) for part in EXPECTED[name]}
    assert counts == EXPECTED[name]


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture 'sd9'; known: sd-turbo, sdxl"):
        random_pipeline("sd9")
