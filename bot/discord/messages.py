"""What the bot says: job lines, result details, and one short titled embed per kind of error.

Torch-free; no I/O. Errors follow MidJourney's style: a title ("Invalid parameter", "Banned prompt",
"Queue full", "Job failed") and one line that says what to change.

Prompts are a member's text: where the bot echoes one, its mention syntax (``<@id>``, ``<@&id>``,
``@everyone``, ``@here``) is broken with a zero-width space, and the messages allow only the job's owner to be
pinged (``owner_mentions``; the bot's default allows no one), so a prompt never pings anyone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import discord

from engine.errors import DreamloomError, Refusal
from engine.jobs import Action, JobStatus
from tasks.client import QueueInfo
from tasks.records import Job

log = logging.getLogger(__name__)

__all__ = [
    "NotHere",
    "describe_error",
    "error_embed",
    "fit_list",
    "job_line",
    "neutralise_mentions",
    "owner_mentions",
    "reply_error",
    "result_content",
    "result_embed",
    "shown_text",
    "status_text",
]

ERROR_COLOUR = discord.Colour.red()
INFO_COLOUR = discord.Colour.blurple()
_MAX_PROMPT_SHOWN = 1500
# Discord's embed limits: a field's value, the description, and all text of an embed together.
FIELD_LIMIT, DESCRIPTION_LIMIT, EMBED_LIMIT = 1024, 4096, 6000
_MENTION = re.compile(r"@(everyone|here|[!&]?\d)", re.IGNORECASE)


class NotHere(Refusal):
    """The server's admins limited dreamloom to other channels."""

    title = "Not here"
    http_status = 403


def error_embed(title: str, line: str) -> discord.Embed:
    return discord.Embed(title=title, description=line, colour=ERROR_COLOUR)


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(title, one line) as a member may see an error: a ``DreamloomError``'s own title and public line;
    anything else is a bug, which the caller logs, and the member reads "Something went wrong"."""
    if isinstance(exc, DreamloomError):
        return exc.title, exc.public
    return "Something went wrong", "That did not work; the bot's log has the details. Try again in a moment"


def neutralise_mentions(text: str) -> str:
    """A member's text as it reads, but with no mention Discord would resolve: ``<@111>``, ``<@!111>``,
    ``<@&222>``, ``@everyone`` and ``@here`` get a zero-width space after the ``@``."""
    return _MENTION.sub("@\u200b\\1", text)


def owner_mentions(job: Job) -> discord.AllowedMentions:
    """Who a message about ``job`` may ping: its owner, no one else (not @everyone, no role)."""
    users = [discord.Object(int(job.owner))] if job.owner.isdigit() else False
    return discord.AllowedMentions(everyone=False, users=users, roles=False, replied_user=False)


def prompt_shown(job: Job, limit: int = _MAX_PROMPT_SHOWN) -> str:
    """The job's prompt as the bot echoes it: shortened to ``limit``, markdown and mentions escaped."""
    return shown_text(job.request.to_prompt(), limit)


def shown_text(text: str, limit: int) -> str:
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return neutralise_mentions(discord.utils.escape_markdown(text))


def status_text(job: Job, info: QueueInfo | None = None, percent: int | None = None) -> str:
    """The part in brackets: "Waiting to start", "queued, position 3", "37%" ..."""
    if job.status is JobStatus.HELD:
        behind = info.held_behind if info and info.held_behind is not None else 0
        return (
            f"held: waiting for {behind + 1} of your earlier jobs" if behind else "held: waiting for your earlier job"
        )
    if job.status is JobStatus.QUEUED:
        if info and info.position:
            eta = f", about {max(1, round(info.eta_seconds))} s" if info.eta_seconds else ""
            return f"queued, position {info.position}{eta}"
        return "Waiting to start"
    if job.status is JobStatus.RUNNING:
        return f"{percent if percent is not None else job.progress}%"
    return job.status.value.capitalize()


def job_line(job: Job, status: str) -> str:
    """**a lighthouse --ar 16:9** - <@123> (queued, position 2) (fast)"""
    prefix = f"{job.label} of " if job.label and job.action is not Action.REROLL else ""
    return f"{prefix}**{prompt_shown(job)}** - <@{job.owner}> ({status}) ({job.mode})"


def result_content(job: Job) -> str:
    if job.action is Action.SEPARATE:
        return f"**{prompt_shown(job)}** - {job.label} <@{job.owner}>"
    suffix = f" - {job.label}" if job.label else ""
    return f"**{prompt_shown(job)}** - <@{job.owner}>{suffix} ({job.mode})"


def result_embed(job: Job, manifest: dict[str, Any], filename: str) -> discord.Embed:
    """The picture, with the seed and settings in the footer so anyone can reproduce it."""
    recipe = manifest.get("recipe", {})
    settings = recipe.get("settings", {})
    model = recipe.get("model", {})
    size = f"{settings['width']}x{settings['height']}" if "width" in settings else None
    parts = [f"seed {recipe.get('seed')}", size, f"model {model.get('alias')}", f"job {job.id}"]
    embed = discord.Embed(colour=INFO_COLOUR)
    embed.set_image(url=f"attachment://{filename}")
    embed.set_footer(text=" · ".join(p for p in parts if p))
    notes = manifest.get("notes") or []
    if notes:
        embed.description = "\n".join(notes)[:1000]
    return embed


def fit_list(items: Sequence[str], limit: int = FIELD_LIMIT, separator: str = ", ") -> str:
    """``items`` joined, as many as fit in ``limit`` characters, then "… and N more" for the rest."""
    if len(separator.join(items)) <= limit:
        return separator.join(items)
    used = [0]  # used[k]: the length of the first k items joined
    for item in items:
        used.append(used[-1] + len(item) + (len(separator) if len(used) > 1 else 0))
    for count in range(len(items) - 1, 0, -1):
        more = f"… and {len(items) - count} more"
        if used[count] + len(separator) + len(more) <= limit:
            return separator.join([*items[:count], more])
    return f"… and {len(items)} more"[:limit]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def info_embed(title: str, rows: list[tuple[str, str]], description: str | None = None) -> discord.Embed:
    """A titled embed of fields, inside Discord's limits: a value past 1,024 characters (a description past
    4,096) is cut with "…", and the longest values are cut further until the whole embed fits 6,000."""
    description = _clip(description, DESCRIPTION_LIMIT) if description else description
    values = [_clip(value or "-", FIELD_LIMIT) for _, value in rows]
    budget = EMBED_LIMIT - len(title) - len(description or "") - sum(len(name) for name, _ in rows)
    if sum(map(len, values)) > budget:  # every value cut to the longest length that lets them all fit
        low, high = 1, FIELD_LIMIT
        while low < high:
            cap = (low + high + 1) // 2
            low, high = (cap, high) if sum(min(len(v), cap) for v in values) <= budget else (low, cap - 1)
        values = [_clip(value, low) for value in values]
    embed = discord.Embed(title=title, description=description, colour=INFO_COLOUR)
    for (name, _), value in zip(rows, values, strict=True):
        embed.add_field(name=name, value=value, inline=True)
    return embed


async def reply_error(interaction: discord.Interaction, title: str, line: str) -> None:
    """An ephemeral error, whether or not the interaction was answered already."""
    embed = error_embed(title, line)
    try:
        if interaction.response.is_done():
            await interaction.followup.send(embed=embed, ephemeral=True)
        else:
            await interaction.response.send_message(embed=embed, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not tell the user about an error: %s: %s", title, line)
