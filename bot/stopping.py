"""Stopping background tasks for sure, which ``task.cancel(); await task`` does not do on Python 3.11.

A cancellation that arrives just as the call a task awaits completes can be lost inside a library (the
task stays "cancelling" and goes on); the bot's event reader, cancelled on shutdown while discord.py
finished posting a result, then read events for ever and the shutdown never ended. ``cancel_and_wait``
cancels once, gives the tasks ``grace`` seconds to end (an orderly close, such as the bot's, must not be
cut short), and cancels again after each further ``grace`` until every task has ended.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Task[Any], grace: float) -> None:
    """Cancel ``tasks`` and return once all have ended; their results and errors stay on the tasks."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=grace)
