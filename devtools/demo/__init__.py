"""dreamloom's own demo model: a tiny text-to-image model of a narrow, synthetic world, trained here.

The world is drawn by a procedural renderer: one or two shapes (circle, square, triangle, star, ring) in
ten named colours, small or large, at nine places, on a flat or gradient background. The model is a
standard Stable Diffusion pipeline in the diffusers layout (tokenizer, CLIP text encoder, UNet, VAE,
scheduler), trained from scratch on the renderer's pictures and their captions. Its weights ship in
``engine/models/demo`` as the default model of a server with nothing configured; the code that made them
stays here, with the dev tools.

Torch-free modules (usable without the worker extra):

- ``devtools.demo.scenes``: the scene description, a random scene sampler and the renderer;
- ``devtools.demo.captions``: varied English prompts for a scene, and the vocabulary they use;
- ``devtools.demo.vocab``: a CLIP BPE tokenizer whose every domain word is one token;
- ``devtools.demo.checker``: reads a picture back into colours, shapes and places (the evaluator's eyes).

Heavy modules: ``devtools.demo.train`` (``python -m devtools.demo.train``), ``devtools.demo.export`` and
``devtools.demo.evaluate`` (``python -m devtools.demo.evaluate``).
"""

from __future__ import annotations

from engine.registry import DEMO_MODEL

__all__ = ["MODEL_DIR"]

MODEL_DIR = DEMO_MODEL  # where the registry finds the shipped weights
