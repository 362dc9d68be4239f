"""What the bot says: job lines, result details, and one short titled embed per kind of error.

Torch-free; no I/O. Errors follow MidJourney's style: a title ("Invalid parameter", "Banned prompt",
"Queue full", "Job failed") and one line that says what to change.
"""

from __future__ import annotations

import logging
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
    "job_line",
    "reply_error",
    "result_content",
    "result_embed",
    "status_text",
]

ERROR_COLOUR = discord.Colour.red()
INFO_COLOUR = discord.Colour.blurple()
_MAX_PROMPT_SHOWN = 1500


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


def prompt_shown(job: Job) -> str:
    text = job.request.to_prompt()
    if len(text) > _MAX_PROMPT_SHOWN:
        text = text[: _MAX_PROMPT_SHOWN - 1] + "…"
    return discord.utils.escape_markdown(text)


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


def info_embed(title: str, rows: list[tuple[str, str]], description: str | None = None) -> discord.Embed:
    embed = discord.Embed(title=title, description=description, colour=INFO_COLOUR)
    for name, value in rows:
        embed.add_field(name=name, value=value or "-", inline=True)
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
