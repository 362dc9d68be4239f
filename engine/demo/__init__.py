"""dreamloom's own demo model: a tiny text-to-image model of a narrow, synthetic world, trained here.

The world is drawn by a procedural renderer: one or two shapes (circle, square, triangle, star, ring) in
ten named colours, small or large, at nine places, on a flat or gradient background. The model is a
standard Stable Diffusion pipeline in the diffusers layout (tokenizer, CLIP text encoder, UNet, VAE,
scheduler), trained from scratch on the renderer's pictures and their captions, and shipped in
``engine/models/demo`` as the default model of a server with nothing configured.

Torch-free modules (usable without the worker extra):

- ``engine.demo.scenes``: the scene description, a random scene sampler and the renderer;
- ``engine.demo.captions``: varied English prompts for a scene, and the vocabulary they use;
- ``engine.demo.vocab``: a CLIP BPE tokenizer whose every domain word is one token;
- ``engine.demo.checker``: reads a picture back into colours, shapes and places (the evaluator's eyes).

Heavy modules: ``engine.demo.train`` (``python -m engine.demo.train``), ``engine.demo.export`` and
``engine.demo.evaluate`` (``python -m engine.demo.evaluate``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MODEL_DIR"]

MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "demo"
