"""The buttons under results, which keep working forever: each ``custom_id`` carries what to do.

    dl:<key>:<job id>[:<argument>]      e.g. dl:u:3f2a…e1:2 (U2), dl:z:3f2a…e1:1.5 (Zoom Out 1.5x)

The buttons, their keys and arguments come from the table every front door shares
(``engine.actions.buttons``). ``JobButton`` is a discord.py ``DynamicItem`` whose template matches every
``dl:`` id, so after any restart a click on any old message reaches it; ids that do not parse (forged,
truncated) get a clear error rather than Discord's silent "This interaction failed". A click goes to the
bot's ``followups`` (``bot.discord.followups.FollowUps``).
"""

from __future__ import annotations

import re
from typing import Any, Protocol, runtime_checkable

import discord

from engine.actions import ALL_BUTTONS, Button, ResultKind, buttons

__all__ = [
    "ClickHandler",
    "JobButton",
    "RemixModal",
    "ZoomModal",
    "custom_id",
    "mark_used",
    "parse_custom_id",
    "view_for",
]

MAX_CUSTOM_ID = 100  # Discord's limit
_JOB_ID = re.compile(r"[0-9a-f]{32}")
_BY_ID = {(button.key, button.argument): button for button in ALL_BUTTONS}
_KEYS = {button.key for button in ALL_BUTTONS}


class ClickHandler(Protocol):
    """What handles a click and the forms it opens (``bot.discord.followups.FollowUps``)."""

    async def clicked(self, interaction: discord.Interaction, button: JobButton) -> None: ...

    async def follow_up(
        self,
        interaction: discord.Interaction,
        button: JobButton,
        remix: str | None = None,
        zoom: tuple[str, str] | None = None,
    ) -> None: ...


@runtime_checkable
class _HasFollowUps(Protocol):
    followups: ClickHandler


def _handler(interaction: discord.Interaction) -> ClickHandler:
    client = interaction.client
    if not isinstance(client, _HasFollowUps):
        raise TypeError("dreamloom's buttons need the dreamloom bot (a client with `followups`)")
    return client.followups


def custom_id(button: Button, job_id: str) -> str:
    return ":".join(["dl", button.key, job_id, *([button.argument] if button.argument else [])])


def parse_custom_id(payload: str) -> tuple[Button | None, str, str | None]:
    """(the button, the job id, a problem) for the part of a custom_id after ``dl:``; problem says what is
    wrong with a forged or broken id, and the button is None then."""
    parts = payload.split(":")
    key, job_id = [*parts, "", ""][:2]
    argument = parts[2] if len(parts) > 2 else None
    if key not in _KEYS or len(parts) > 3:
        return None, job_id, "This button is not one of dreamloom's; it may come from an old version"
    if not _JOB_ID.fullmatch(job_id):
        return None, job_id, "This button does not name a valid job"
    button = _BY_ID.get((key, argument))
    if button is None:
        return None, job_id, _wrong_argument(key)
    return button, job_id, None


def _wrong_argument(key: str) -> str:
    kinds = [b for b in ALL_BUTTONS if b.key == key]
    if any(b.index is not None for b in kinds):
        return "This button names no image of the grid (1-4)"
    if any(b.options.scale is not None for b in kinds):
        return "This zoom button has no valid scale"
    if any(b.options.direction is not None for b in kinds):
        return "This pan button has no valid direction"
    return "This button carries an argument it does not take"


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"dl:(?P<payload>.*)"):
    """A button of a job. ``problem`` is set when its id did not parse; the click then only explains."""

    def __init__(
        self,
        job_id: str,
        button: Button | None,
        *,
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
        row: int | None = None,
        problem: str | None = None,
        raw_id: str | None = None,
    ) -> None:
        shown = custom_id(button, job_id) if button is not None else (raw_id or "dl:")
        label = button.label if button is not None else None
        emoji = button.emoji if button is not None else None
        super().__init__(discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=shown[:MAX_CUSTOM_ID]),
                         row=row)  # fmt: skip
        self.job_id = job_id
        self.button = button
        self.problem = problem

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> JobButton:
        button, job_id, problem = parse_custom_id(match["payload"])
        style = getattr(item, "style", discord.ButtonStyle.secondary)
        return cls(job_id, button, style=style, problem=problem, raw_id=match.string)

    async def callback(self, interaction: discord.Interaction) -> None:
        await _handler(interaction).clicked(interaction, self)


def view_for(job_id: str, kind: ResultKind, size: tuple[int, int] | None) -> discord.ui.View:
    """The buttons under a result, laid out as MidJourney does: under a grid U1-U4 and 🔄, then V1-V4; under
    a single image the upscales and variations, the zooms and Make Square, then the four pans (less what
    cannot start from an image of ``size``)."""
    view = discord.ui.View(timeout=None)
    for row_number, row in enumerate(buttons(kind, size)):
        for button in row:
            view.add_item(JobButton(job_id, button, row=row_number))
    return view


def mark_used(message: discord.Message, clicked: str) -> discord.ui.View:
    """The message's buttons with the clicked one highlighted, as MidJourney marks a used U or V."""
    view = discord.ui.View.from_message(message, timeout=None)
    for item in view.children:
        if isinstance(item, discord.ui.Button) and item.custom_id == clicked:
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
        await _handler(interaction).follow_up(interaction, self.button, remix=str(self.prompt.value))


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
        zoom = (str(self.scale.value), str(self.aspect.value))
        await _handler(interaction).follow_up(interaction, self.button, zoom=zoom)
