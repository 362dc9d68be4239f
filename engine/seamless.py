"""``--tile``: circular padding in every padded convolution, so the image wraps around seamlessly."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["seamless"]


@contextmanager
def seamless(modules: Iterable[nn.Module | None], enabled: bool = True) -> Iterator[None]:
    """Within the block, the padded ``Conv2d`` layers of ``modules`` (the UNet, the VAE) pad circularly.

    The modules are shared by every job of the process, so the previous padding is always restored.
    """
    if not enabled:
        yield
        return
    convs = [
        layer
        for module in modules
        if module is not None
        for layer in module.modules()
        if isinstance(layer, nn.Conv2d) and any(p != 0 for p in layer._reversed_padding_repeated_twice)
    ]
    saved = [layer.padding_mode for layer in convs]
    for layer in convs:
        layer.padding_mode = "circular"
    try:
        yield
    finally:
        for layer, mode in zip(convs, saved, strict=True):
            layer.padding_mode = mode
