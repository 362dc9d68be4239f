"""Varied English prompts for demo scenes, and the vocabulary they are written in.

``caption(scene, rng)`` writes one of many phrasings of a scene: word order, synonyms ("big", "disc",
"backdrop", "gray", "center"), articles and prefixes vary, and some attributes are left out (the model then
learns to choose them itself), so that people's own wordings work:

    a large red circle in the top left on a blue background
    blue backdrop, small yellow star top left
    an orange triangle at the bottom and a small white ring on the right, on a green to black gradient

``full_caption(scene)`` is one fixed phrasing that states everything, for evaluation prompts.
``WORDS`` lists every word a caption can contain; the tokenizer makes each of them one token.
"""

from __future__ import annotations

import random
import re

from devtools.demo.scenes import Scene, Shape

__all__ = ["WORDS", "caption", "full_caption", "shape_phrase"]

COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red",),
    "orange": ("orange",),
    "yellow": ("yellow",),
    "green": ("green",),
    "blue": ("blue",),
    "purple": ("purple", "violet"),
    "pink": ("pink",),
    "white": ("white",),
    "black": ("black",),
    "grey": ("grey", "gray"),
}
KIND_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "disk"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "star": ("star",),
    "ring": ("ring", "donut"),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "large": ("large", "big"),
}
# Where a shape is, after the shape ("a red circle ..."); the first phrase is the plain one.
POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("in the top left", "top left", "in the upper left", "in the top left corner", "at the top left"),
    "top": ("at the top", "top", "at the top centre", "near the top", "up top"),
    "top right": ("in the top right", "top right", "in the upper right", "in the top right corner", "at the top right"),
    "left": ("on the left", "left", "at the left", "to the left", "on the left side"),
    "centre": ("in the centre", "in the center", "in the middle", "centre", "center", "centred", "centered"),
    "right": ("on the right", "right", "at the right", "to the right", "on the right side"),
    "bottom left": (
        "in the bottom left",
        "bottom left",
        "in the lower left",
        "in the bottom left corner",
        "at the bottom left",
    ),
    "bottom": ("at the bottom", "bottom", "at the bottom centre", "near the bottom", "down below"),
    "bottom right": (
        "in the bottom right",
        "bottom right",
        "in the lower right",
        "in the bottom right corner",
        "at the bottom right",
    ),
}
# Backgrounds, after the shapes ("... on a blue background") and before them ("blue background, ...").
FLAT_AFTER = ("on a {c} background", "on {c}", "against a {c} backdrop", "on a {c} backdrop", "with a {c} background")
FLAT_BEFORE = ("{c} background", "{c} backdrop", "a {c} background", "plain {c} background")
GRADIENT_AFTER = ("on a {a} to {b} gradient", "on a gradient from {a} to {b}", "against a {a} to {b} gradient")
GRADIENT_BEFORE = ("{a} to {b} gradient background", "gradient from {a} to {b}", "{a} fading to {b}")
EMPTY = ("an empty {bg}", "a plain {bg}", "just a {bg}", "nothing on a {bg}", "a {bg}")
PREFIXES = ("a picture of", "an image of", "a drawing of", "a simple drawing of", "illustration of")


def shape_phrase(shape: Shape, rng: random.Random | None = None, *, size: bool = True, colour: bool = True) -> str:
    """``a large red circle``: the first synonyms without ``rng``, random ones with it."""
    words = []
    if size:
        words.append(_pick(SIZE_WORDS[shape.size], rng))
    if colour:
        words.append(_pick(COLOUR_WORDS[shape.colour], rng))
    words.append(_pick(KIND_WORDS[shape.kind], rng))
    return _article(" ".join(words))


def full_caption(scene: Scene) -> str:
    """One fixed phrasing that states every attribute, as the evaluation's prompts do."""
    shapes = " and ".join(f"{shape_phrase(s)} {POSITION_PHRASES[s.position][0]}" for s in scene.shapes)
    background = _background(scene, None, after=True)
    if not shapes:
        return _article(f"empty {_background(scene, None, after=False)}")
    return f"{shapes} {background}"


def caption(scene: Scene, rng: random.Random) -> str:
    """A random phrasing of ``scene``; about one in six leaves something out, a few are one word."""
    roll = rng.random()
    if roll < 0.03:  # one word: lets a prompt or a --no of just "red" mean "something red"
        return _fragment(scene, rng)
    if not scene.shapes:
        return _articles(rng.choice(EMPTY).format(bg=_background(scene, rng, after=False).removeprefix("a ")))
    if roll < 0.07:  # the background alone: any shapes on it
        return _background(scene, rng, after=False)
    show_background = rng.random() > 0.08
    parts = []
    for shape in scene.shapes:
        phrase = shape_phrase(shape, rng, size=rng.random() > 0.15, colour=rng.random() > 0.06)
        if rng.random() > 0.08:
            phrase = f"{phrase} {rng.choice(POSITION_PHRASES[shape.position])}"
        parts.append(phrase)
    rng.shuffle(parts)
    shapes = _join(parts, rng)
    if rng.random() < 0.1:
        shapes = f"{rng.choice(PREFIXES)} {shapes}"
    if not show_background:
        return shapes
    if rng.random() < 0.6:
        return f"{shapes}{rng.choice(('', ','))} {_background(scene, rng, after=True)}"
    return f"{_background(scene, rng, after=False)}{rng.choice((',', ' with', ' and'))} {shapes}"


def _fragment(scene: Scene, rng: random.Random) -> str:
    colours = [scene.background, scene.bottom, *(s.colour for s in scene.shapes)]
    choices = [_pick(COLOUR_WORDS[c], rng) for c in colours]
    choices += [_pick(KIND_WORDS[s.kind], rng) for s in scene.shapes]
    return rng.choice(choices)


def _background(scene: Scene, rng: random.Random | None, *, after: bool) -> str:
    top = _pick(COLOUR_WORDS[scene.background], rng)
    if scene.background_bottom is None:
        return _articles(_pick(FLAT_AFTER if after else FLAT_BEFORE, rng).format(c=top))
    bottom = _pick(COLOUR_WORDS[scene.background_bottom], rng)
    return _articles(_pick(GRADIENT_AFTER if after else GRADIENT_BEFORE, rng).format(a=top, b=bottom))


def _join(parts: list[str], rng: random.Random) -> str:
    if len(parts) == 1:
        return parts[0]
    return f"{parts[0]}{rng.choice((' and', ', and', ','))} {parts[1]}"


def _pick(options: tuple[str, ...], rng: random.Random | None) -> str:
    return options[0] if rng is None else rng.choice(options)


def _article(phrase: str) -> str:
    return f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"


def _articles(text: str) -> str:
    """``a orange`` -> ``an orange`` wherever a template put an article before a colour."""
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def _words() -> tuple[str, ...]:
    texts = [
        *(w for words in (*COLOUR_WORDS.values(), *KIND_WORDS.values(), *SIZE_WORDS.values()) for w in words),
        *(p for phrases in POSITION_PHRASES.values() for p in phrases),
        *FLAT_AFTER,
        *FLAT_BEFORE,
        *GRADIENT_AFTER,
        *GRADIENT_BEFORE,
        *EMPTY,
        *PREFIXES,
        "a an and with",
    ]
    return tuple(sorted({w for text in texts for w in re.findall(r"[a-z]+", re.sub(r"\{\w+\}", "", text))}))


WORDS = _words()
