"""The buttons under results, which keep working forever: each ``custom_id`` carries what to do.

    dl:<code>:<job id>[:<argument>]      e.g. dl:u:3f2a…e1:2 (U2), dl:z:3f2a…e1:1.5 (Zoom Out 1.5x)

``JobButton`` is a discord.py ``DynamicItem`` whose template matches every ``dl:`` id, so after any restart
a click on any old message reaches it; ids that do not parse (forged, truncated) get a clear error rather
than Discord's silent "This interaction failed". The click itself is handled by the Buttons cog.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import discord

from engine.jobs import Action

__all__ = ["BUTTONS", "ButtonSpec", "JobButton", "grid_view", "mark_used", "single_view"]

_JOB_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class ButtonSpec:
    code: str  # in the custom_id
    action: Action
    argument: str | None = None  # fixed argument (zoom scale, pan direction); tiles are added per button
    label: str | None = None
    emoji: str | None = None


BUTTONS: dict[str, ButtonSpec] = {
    spec.code: spec
    for spec in (
        ButtonSpec("u", Action.SEPARATE),
        ButtonSpec("v", Action.VARY_STRONG),  # V1-V4: subtle or strong per the clicker's /settings
        ButtonSpec("r", Action.REROLL, emoji="🔄"),
        ButtonSpec("us", Action.UPSCALE_SUBTLE, label="Upscale (Subtle)"),
        ButtonSpec("uc", Action.UPSCALE_CREATIVE, label="Upscale (Creative)"),
        ButtonSpec("vs", Action.VARY_SUBTLE, label="Vary (Subtle)"),
        ButtonSpec("vx", Action.VARY_STRONG, label="Vary (Strong)"),
        ButtonSpec("z", Action.ZOOM_OUT),
        ButtonSpec("zc", Action.ZOOM_OUT, label="Custom Zoom", emoji="🔍"),
        ButtonSpec("p", Action.PAN),
        ButtonSpec("sq", Action.MAKE_SQUARE, label="Make Square", emoji="↔️"),
    )
}
_ZOOMS = {"2": "Zoom Out 2x", "1.5": "Zoom Out 1.5x"}
_PANS = {"left": "⬅️", "right": "➡️", "up": "⬆️", "down": "⬇️"}


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"dl:(?P<payload>.*)"):
    """A button of a job. ``problem`` is set when its id did not parse; the click then only explains."""

    def __init__(
        self,
        code: str,
        job_id: str,
        argument: str | None = None,
        *,
        label: str | None = None,
        emoji: str | discord.PartialEmoji | None = None,
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
        row: int | None = None,
        problem: str | None = None,
    ) -> None:
        custom_id = ":".join(["dl", code, job_id, *([argument] if argument else [])])
        super().__init__(discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=custom_id[:100]), row=row)
        self.code = code
        self.job_id = job_id
        self.argument = argument
        self.problem = problem

    @property
    def spec(self) -> ButtonSpec:
        return BUTTONS[self.code]

    @property
    def tile(self) -> int | None:
        return int(self.argument) if self.code in ("u", "v") and self.argument else None

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> JobButton:
        code, job_id, argument, problem = parse_custom_id(match["payload"])
        style = getattr(item, "style", discord.ButtonStyle.secondary)
        label, emoji = getattr(item, "label", None), getattr(item, "emoji", None)
        return cls(code, job_id, argument, label=label, emoji=emoji, style=style, problem=problem)

    async def callback(self, interaction: discord.Interaction) -> None:
        handler = interaction.client.get_cog("Buttons")  # type: ignore[attr-defined]
        await handler.clicked(interaction, self)


def parse_custom_id(payload: str) -> tuple[str, str, str | None, str | None]:
    """(code, job id, argument, problem): problem says what is wrong with a forged or broken id."""
    parts = payload.split(":")
    code, job_id = [*parts, "", ""][:2]
    argument = parts[2] if len(parts) > 2 else None
    if code not in BUTTONS or len(parts) > 3:
        return code, job_id, argument, "This button is not one of dreamloom's; it may come from an old version"
    if not _JOB_ID.fullmatch(job_id):
        return code, job_id, argument, "This button does not name a valid job"
    if code in ("u", "v") and argument not in ("1", "2", "3", "4"):
        return code, job_id, argument, "This button names no image of the grid (1-4)"
    if code == "z" and argument not in _ZOOMS:
        return code, job_id, argument, "This zoom button has no valid scale"
    if code == "p" and argument not in _PANS:
        return code, job_id, argument, "This pan button has no valid direction"
    if code not in ("u", "v", "z", "p") and argument is not None:
        return code, job_id, argument, "This button carries an argument it does not take"
    return code, job_id, argument, None


def grid_view(job_id: str) -> discord.ui.View:
    """U1-U4 and 🔄 on the first row, V1-V4 on the second, as MidJourney lays them out."""
    view = discord.ui.View(timeout=None)
    for tile in range(1, 5):
        view.add_item(JobButton("u", job_id, str(tile), label=f"U{tile}", row=0))
    view.add_item(JobButton("r", job_id, emoji="🔄", row=0))
    for tile in range(1, 5):
        view.add_item(JobButton("v", job_id, str(tile), label=f"V{tile}", row=1))
    return view


def single_view(job_id: str) -> discord.ui.View:
    """The follow-ups of one image: upscales and variations, zooms and square, then the four pans."""
    view = discord.ui.View(timeout=None)
    for code in ("us", "uc", "vs", "vx"):
        view.add_item(JobButton(code, job_id, label=BUTTONS[code].label, row=0))
    for scale, label in _ZOOMS.items():
        view.add_item(JobButton("z", job_id, scale, label=label, emoji="🔍", row=1))
    view.add_item(JobButton("zc", job_id, label="Custom Zoom", emoji="🔍", row=1))
    view.add_item(JobButton("sq", job_id, label="Make Square", emoji="↔️", row=1))
    for direction, emoji in _PANS.items():
        view.add_item(JobButton("p", job_id, direction, emoji=emoji, row=2))
    return view


def mark_used(message: discord.Message, custom_id: str) -> discord.ui.View:
    """The message's buttons with the clicked one highlighted, as MidJourney marks a used U or V."""
    view = discord.ui.View.from_message(message, timeout=None)
    for item in view.children:
        if isinstance(item, discord.ui.Button) and item.custom_id == custom_id:
            item.style = discord.ButtonStyle.primary
    return view


class RemixModal(discord.ui.Modal, title="Remix prompt"):
    """Remix mode: edit the prompt before a variation or re-roll runs."""

    prompt: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="New prompt", style=discord.TextStyle.paragraph, max_length=1800, custom_id="prompt"
    )

    def __init__(self, button: JobButton, current: str) -> None:
        super().__init__(timeout=600, custom_id=f"dl-remix:{button.job_id}")
        self.button = button
        self.prompt.default = current

    async def on_submit(self, interaction: discord.Interaction) -> None:
        handler = interaction.client.get_cog("Buttons")  # type: ignore[attr-defined]
        await handler.follow_up(interaction, self.button, remix=str(self.prompt.value))


class ZoomModal(discord.ui.Modal, title="Custom Zoom"):
    """Custom Zoom: a scale from 1.0 to 2.0, and optionally a new aspect ratio."""

    scale: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="Zoom (1.0 to 2.0)", default="1.5", max_length=6, custom_id="scale"
    )
    aspect: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="Aspect ratio (optional), e.g. 16:9", required=False, max_length=11, custom_id="aspect"
    )

    def __init__(self, button: JobButton) -> None:
        super().__init__(timeout=600, custom_id=f"dl-zoom:{button.job_id}")
        self.button = button

    async def on_submit(self, interaction: discord.Interaction) -> None:
        handler = interaction.client.get_cog("Buttons")  # type: ignore[attr-defined]
        await handler.follow_up(interaction, self.button, zoom=(str(self.scale.value), str(self.aspect.value)))
