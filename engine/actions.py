"""Every kind of job in one table: what it starts from, what it makes, its buttons, and the engine call.

Torch-free. The job client's validation (``tasks.client``), the worker's dispatch (``tasks.worker``), the
buttons of Discord and of the playground, and the command line all read this table, so a new follow-up is
an entry here and a method of the engine (``engine.contract.ImageEngine``).

    spec = ACTIONS[Action.ZOOM_OUT]
    spec.starts_from          # {ResultKind.SINGLE}: Zoom Out works on a single image
    spec.title                # "Zoom Out": what its result says
    check_follow_up(ResultKind.SINGLE, (1024, 1024), Action.ZOOM_OUT, None, FollowUpOptions(scale=1.5))
    rows = buttons(ResultKind.SINGLE, (1024, 1024))   # what to show under that image (no Make Square: it is square)
    result = spec.run(engine, work)                  # what a worker does
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from PIL import Image

from engine.callbacks import CancelCheck, ProgressCallback
from engine.canvas import MAX_ZOOM, MIN_ZOOM, pan_size, size_refusal, square_size, upscaled_size
from engine.contract import ImageEngine
from engine.errors import InvalidFollowUp
from engine.grid import separate_image
from engine.jobs import Action, PanDirection
from engine.plan import GRID_SIZE
from engine.prompt import MAX_ASPECT_RATIO, ImagineRequest
from engine.recipe import Recipe
from engine.results import GenerationResult

__all__ = [
    "ACTIONS",
    "ALL_BUTTONS",
    "ActionSpec",
    "Button",
    "FollowUpOptions",
    "ResultKind",
    "Work",
    "buttons",
    "check_follow_up",
    "describe",
]


class ResultKind(StrEnum):
    GRID = "grid"  # four images in a 2x2 grid
    SINGLE = "single"  # one image


@dataclass(frozen=True)
class FollowUpOptions:
    """What a follow-up carries besides its parent: Zoom Out's scale and new aspect ratio, Pan's direction."""

    scale: float | None = None
    aspect: tuple[int, int] | None = None
    direction: PanDirection | None = None

    def to_params(self) -> dict[str, Any]:
        """The job record's ``params``."""
        params: dict[str, Any] = {}
        if self.scale is not None:
            params["scale"] = self.scale
        if self.aspect is not None:
            params["aspect"] = list(self.aspect)
        if self.direction is not None:
            params["direction"] = self.direction.value
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> FollowUpOptions:
        aspect = params.get("aspect")
        direction = params.get("direction")
        return cls(
            scale=float(params["scale"]) if params.get("scale") is not None else None,
            aspect=(int(aspect[0]), int(aspect[1])) if aspect else None,
            direction=PanDirection(direction) if direction else None,
        )


@dataclass(frozen=True)
class Work:
    """What one job's engine call needs, as a worker gathered it."""

    request: ImagineRequest
    seed: int
    progress: ProgressCallback | None = None
    cancel: CancelCheck | None = None
    parent: str | None = None  # the job it follows up
    index: int | None = None  # which image of the parent's grid it starts from (1-4)
    image: Image.Image | None = None  # the image it starts from
    recipe: Recipe | None = None  # that image's recipe (a re-roll: the parent grid's)
    image_prompts: Sequence[Image.Image] = ()  # the request's image URLs, downloaded
    options: FollowUpOptions = field(default_factory=FollowUpOptions)

    def source(self) -> tuple[Image.Image, Recipe]:
        if self.image is None or self.recipe is None:
            raise ValueError("a follow-up of an image needs the image and its recipe")
        return self.image, self.recipe

    def parent_recipe(self) -> Recipe:
        if self.recipe is None:
            raise ValueError("a re-roll needs the recipe of the grid it rolls again")
        return self.recipe


Run = Callable[[ImageEngine, Work], GenerationResult]


@dataclass(frozen=True)
class ActionSpec:
    """One kind of job."""

    action: Action
    name: str  # what people call it: the button's words, e.g. "Vary (Strong)"
    title: str  # what its result says after the prompt, e.g. "Variations (Strong)" ("" for /imagine)
    makes: ResultKind
    starts_from: frozenset[ResultKind]  # empty: a prompt; else the kinds of result it follows up
    run: Run  # the engine call, in a worker
    from_prompt: bool = False  # it renders from the request's text and image prompts, not from an image
    picks_image: bool = False  # on a grid it starts from one image, numbered 1-4
    remixable: bool = False  # with remix on, the prompt opens for editing first
    renders: bool = True  # False: no GPU work, done at once by the job client; the image keeps its seed (U1-U4)
    work_factor: int = 1  # its work relative to its parent's, for time limits and ETAs
    # When it runs past its time limit: what the person who asked can do about it.
    too_slow: str = "try again when the server is less busy; if it keeps happening, tell the server's operator"
    # The request its job records, from the parent's (or a remixed) request and its options.
    request_for: Callable[[ImagineRequest, FollowUpOptions], ImagineRequest] = lambda request, _options: request
    # Why these options are not valid for it (a zoom out of range, a pan without a direction), or None.
    options_refusal: Callable[[FollowUpOptions], str | None] = lambda _options: None
    # Why it cannot start from an image of this size with these options (too large, already square), or None.
    refusal: Callable[[tuple[int, int], FollowUpOptions], str | None] = lambda _size, _options: None


# --- the engine calls ------------------------------------------------------------------------------------


def _imagine(engine: ImageEngine, work: Work) -> GenerationResult:
    return engine.imagine(work.request, seed=work.seed, image_prompts=work.image_prompts or None,
                          progress=work.progress, cancel=work.cancel)  # fmt: skip


def _reroll(engine: ImageEngine, work: Work) -> GenerationResult:
    return engine.reroll(work.parent_recipe(), request=work.request, seed=work.seed,
                         image_prompts=work.image_prompts or None, parent=work.parent, progress=work.progress,
                         cancel=work.cancel)  # fmt: skip


def _separate(_engine: ImageEngine, work: Work) -> GenerationResult:
    image, recipe = work.source()
    return separate_image(image, recipe, work.index or 1, work.parent, recipe.versions)


def _vary(strong: bool) -> Run:
    def run(engine: ImageEngine, work: Work) -> GenerationResult:
        image, recipe = work.source()
        return engine.vary(image, recipe, strong=strong, request=work.request, seed=work.seed, parent=work.parent,
                           parent_index=work.index, progress=work.progress, cancel=work.cancel)  # fmt: skip

    return run


def _upscale(creative: bool) -> Run:
    def run(engine: ImageEngine, work: Work) -> GenerationResult:
        image, recipe = work.source()
        return engine.upscale(image, recipe, creative=creative, seed=work.seed, parent=work.parent,
                              parent_index=work.index, progress=work.progress, cancel=work.cancel)  # fmt: skip

    return run


def _zoom_out(engine: ImageEngine, work: Work) -> GenerationResult:
    image, recipe = work.source()
    return engine.zoom_out(image, recipe, scale=work.options.scale or 2.0, aspect=work.options.aspect,
                           seed=work.seed, parent=work.parent, parent_index=work.index, progress=work.progress,
                           cancel=work.cancel)  # fmt: skip


def _pan(engine: ImageEngine, work: Work) -> GenerationResult:
    image, recipe = work.source()
    if work.options.direction is None:
        raise InvalidFollowUp("Pan needs a direction: left, right, up or down")
    return engine.pan(image, recipe, work.options.direction, seed=work.seed, parent=work.parent,
                      parent_index=work.index, progress=work.progress, cancel=work.cancel)  # fmt: skip


def _make_square(engine: ImageEngine, work: Work) -> GenerationResult:
    image, recipe = work.source()
    return engine.make_square(image, recipe, seed=work.seed, parent=work.parent, parent_index=work.index,
                              progress=work.progress, cancel=work.cancel)  # fmt: skip


# --- what cannot run on an image of a given size ----------------------------------------------------------


def _upscale_refusal(size: tuple[int, int], _options: FollowUpOptions) -> str | None:
    return size_refusal("Upscaling", upscaled_size(size))


def _pan_refusal(size: tuple[int, int], options: FollowUpOptions) -> str | None:
    if options.direction is None:
        return _pan_options(options)
    return size_refusal(f"Pan {options.direction.value}", pan_size(size, options.direction))


def _pan_options(options: FollowUpOptions) -> str | None:
    return "Pan needs a direction: left, right, up or down" if options.direction is None else None


def _zoom_options(options: FollowUpOptions) -> str | None:
    scale = 2.0 if options.scale is None else options.scale
    if math.isnan(scale) or not MIN_ZOOM <= scale <= MAX_ZOOM:
        return f"Zoom must be from {MIN_ZOOM:g} to {MAX_ZOOM:g} (got {scale:g})"
    if options.aspect is not None:
        width, height = options.aspect
        if min(width, height) < 1 or max(width, height) > MAX_ASPECT_RATIO * min(width, height):
            return f"--ar must be W:H with a ratio between 1:4 and 4:1 (got {width}:{height})"
    return None


def _square_refusal(size: tuple[int, int], _options: FollowUpOptions) -> str | None:
    if size[0] == size[1]:
        return "The image is already square"
    return size_refusal("Make Square", square_size(size))


def _new_seed(request: ImagineRequest, _options: FollowUpOptions) -> ImagineRequest:
    return dataclasses.replace(request, seed=None)


def _new_aspect(request: ImagineRequest, options: FollowUpOptions) -> ImagineRequest:
    return request if options.aspect is None else dataclasses.replace(request, aspect=options.aspect)


def _square(request: ImagineRequest, _options: FollowUpOptions) -> ImagineRequest:
    return dataclasses.replace(request, aspect=(1, 1))


_GRID, _SINGLE = frozenset({ResultKind.GRID}), frozenset({ResultKind.SINGLE})
_SMALLER = "try it on a smaller image"

ACTIONS: dict[Action, ActionSpec] = {
    spec.action: spec
    for spec in (
        ActionSpec(
            Action.IMAGINE, "/imagine", "", ResultKind.GRID, frozenset(), _imagine, from_prompt=True,
            too_slow="try a smaller size (--ar closer to 1:1), fewer steps (--q .5) or a simpler prompt",
        ),
        ActionSpec(
            Action.REROLL, "Re-roll", "Re-roll", ResultKind.GRID, _GRID, _reroll, from_prompt=True, remixable=True,
            request_for=_new_seed, too_slow="try a new /imagine with --q .5 or a smaller --ar",
        ),
        ActionSpec(
            Action.SEPARATE, "U1-U4", "Image #{index}", ResultKind.SINGLE, _GRID, _separate, picks_image=True,
            renders=False,
        ),
        ActionSpec(
            Action.VARY_SUBTLE, "Vary (Subtle)", "Variations (Subtle)", ResultKind.GRID, _GRID | _SINGLE,
            _vary(False), picks_image=True, remixable=True,
        ),
        ActionSpec(
            Action.VARY_STRONG, "Vary (Strong)", "Variations (Strong)", ResultKind.GRID, _GRID | _SINGLE,
            _vary(True), picks_image=True, remixable=True,
        ),
        ActionSpec(
            Action.UPSCALE_SUBTLE, "Upscale (Subtle)", "Upscaled (Subtle)", ResultKind.SINGLE, _SINGLE,
            _upscale(False), work_factor=4, refusal=_upscale_refusal, too_slow=_SMALLER,
        ),
        ActionSpec(
            Action.UPSCALE_CREATIVE, "Upscale (Creative)", "Upscaled (Creative)", ResultKind.SINGLE, _SINGLE,
            _upscale(True), work_factor=4, refusal=_upscale_refusal,
            too_slow="try Upscale (Subtle), which is much lighter, or a smaller image",
        ),
        ActionSpec(
            Action.ZOOM_OUT, "Zoom Out", "Zoom Out", ResultKind.GRID, _SINGLE, _zoom_out, request_for=_new_aspect,
            options_refusal=_zoom_options, too_slow="try Zoom Out 1.5x, or a smaller image",
        ),
        ActionSpec(
            Action.PAN, "Pan", "Pan", ResultKind.GRID, _SINGLE, _pan, options_refusal=_pan_options,
            refusal=_pan_refusal, too_slow=_SMALLER,
        ),
        ActionSpec(
            Action.MAKE_SQUARE, "Make Square", "Make Square", ResultKind.GRID, _SINGLE, _make_square,
            request_for=_square, refusal=_square_refusal, too_slow=_SMALLER,
        ),
    )
}  # fmt: skip


def describe(action: Action, index: int | None = None, options: FollowUpOptions | None = None) -> str:
    """What a result says after its prompt: "Image #2", "Zoom Out 1.5x", "Pan Left", "Variations (Strong)" ..."""
    title = ACTIONS[action].title.format(index=index)
    if action is Action.ZOOM_OUT and options is not None and options.scale is not None:
        return f"{title} {options.scale:g}x"
    if action is Action.PAN and options is not None and options.direction is not None:
        return f"{title} {options.direction.value.title()}"
    return title


def check_follow_up(
    parent_kind: ResultKind,
    parent_size: tuple[int, int] | None,
    action: Action,
    index: int | None,
    options: FollowUpOptions,
) -> None:
    """Raise ``InvalidFollowUp`` (a refusal: no job is made) unless ``action`` can start from a finished
    result of ``parent_kind`` (image ``index`` of a grid) with these options. ``parent_size``: the size of
    the image it would start from, when known."""
    spec = ACTIONS[action]
    if parent_kind not in spec.starts_from:
        on = "a grid" if parent_kind is ResultKind.GRID else "a single image"
        needs = " (separate an image with U1-U4 first)" if ResultKind.SINGLE in spec.starts_from else ""
        raise InvalidFollowUp(f"{spec.name} is not possible on {on}{needs}")
    if parent_kind is ResultKind.GRID and spec.picks_image:
        if index not in range(1, GRID_SIZE + 1):
            raise InvalidFollowUp(f"Pick an image of the grid: 1, 2, 3 or 4 (got {index})")
    elif index is not None:
        whole = "grid" if parent_kind is ResultKind.GRID else "image"
        raise InvalidFollowUp(f"{spec.name} works on the whole {whole}; it takes no image number (got {index})")
    if (reason := spec.options_refusal(options)) is not None:
        raise InvalidFollowUp(reason)
    if parent_size is not None and (reason := spec.refusal(parent_size, options)) is not None:
        raise InvalidFollowUp(reason)


# --- the buttons under a result ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Button:
    """One button under a result, as Discord and the playground show it."""

    key: str  # short and stable: Discord's custom_ids carry it (with ``argument``), so it never changes
    action: Action
    label: str | None = None
    emoji: str | None = None
    index: int | None = None  # U1-U4, V1-V4: which image of the grid
    options: FollowUpOptions = field(default_factory=FollowUpOptions)
    asks: bool = False  # opens a form first (Custom Zoom: the scale and an aspect ratio)
    description: str = ""  # a tooltip

    @property
    def argument(self) -> str | None:
        """What the custom_id carries after the job id: the image number, the zoom, or the direction."""
        if self.index is not None:
            return str(self.index)
        if self.options.scale is not None:
            return f"{self.options.scale:g}"
        if self.options.direction is not None:
            return self.options.direction.value
        return None


_PAN_EMOJI = {PanDirection.LEFT: "⬅️", PanDirection.RIGHT: "➡️", PanDirection.UP: "⬆️", PanDirection.DOWN: "⬇️"}

_GRID_ROWS: tuple[tuple[Button, ...], ...] = (
    (*(Button("u", Action.SEPARATE, f"U{n}", index=n, description=f"Image #{n} on its own") for n in range(1, 5)),
     Button("r", Action.REROLL, emoji="🔄", description="Re-roll: the same prompt with a new seed")),
    tuple(Button("v", Action.VARY_STRONG, f"V{n}", index=n, description=f"Variations of image #{n}")
          for n in range(1, 5)),
)  # fmt: skip

_SINGLE_ROWS: tuple[tuple[Button, ...], ...] = (
    (
        Button("us", Action.UPSCALE_SUBTLE, "Upscale (Subtle)", description="2x, close to the original"),
        Button("uc", Action.UPSCALE_CREATIVE, "Upscale (Creative)", description="2x, adding detail"),
        Button("vs", Action.VARY_SUBTLE, "Vary (Subtle)", description="four close variations"),
        Button("vx", Action.VARY_STRONG, "Vary (Strong)", description="four freer variations"),
    ),
    (
        Button("z", Action.ZOOM_OUT, "Zoom Out 2x", "🔍", options=FollowUpOptions(scale=2.0)),
        Button("z", Action.ZOOM_OUT, "Zoom Out 1.5x", "🔍", options=FollowUpOptions(scale=1.5)),
        Button("zc", Action.ZOOM_OUT, "Custom Zoom", "🔍", asks=True, description="a zoom from 1 to 2, and an --ar"),
        Button("sq", Action.MAKE_SQUARE, "Make Square", "↔️", description="extend the shorter side"),
    ),
    tuple(Button("p", Action.PAN, emoji=emoji, options=FollowUpOptions(direction=direction),
                 description=f"Pan {direction.value}") for direction, emoji in _PAN_EMOJI.items()),
)  # fmt: skip

ALL_BUTTONS: tuple[Button, ...] = tuple(button for rows in (_GRID_ROWS, _SINGLE_ROWS) for row in rows for button in row)


def buttons(kind: ResultKind, size: tuple[int, int] | None = None) -> list[list[Button]]:
    """The rows of buttons under a result of ``kind`` whose image is ``size`` (None: unknown), leaving out
    what cannot start from it (Make Square on a square image; an upscale past the size limit)."""
    if kind is ResultKind.GRID:
        return [list(row) for row in _GRID_ROWS]
    shown = [[button for button in row if _possible(button, size)] for row in _SINGLE_ROWS]
    return [row for row in shown if row]


def _possible(button: Button, size: tuple[int, int] | None) -> bool:
    return size is None or ACTIONS[button.action].refusal(size, button.options) is None
