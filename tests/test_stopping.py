"""``bot.stopping.cancel_and_wait``: background tasks end even when a cancellation is lost on the way."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from bot.stopping import cancel_and_wait


async def _loses_first_cancellation(ends: list[str]) -> None:
    with contextlib.suppress(asyncio.CancelledError):  # lost: the task goes on, as under Python 3.11 it can
        await asyncio.sleep(60)
    try:
        while True:
            await asyncio.sleep(0.01)
    finally:
        ends.append("ended")


@pytest.mark.anyio
async def test_a_task_that_lost_a_cancellation_is_cancelled_again_until_it_ends():
    ends: list[str] = []
    task = asyncio.create_task(_loses_first_cancellation(ends))
    await asyncio.sleep(0)
    task.cancel()  # what the bot did before: cancel once, then wait
    _, pending = await asyncio.wait({task}, timeout=0.3)
    assert pending == {task}, "a single cancel ends it, so this test shows nothing"

    await asyncio.wait_for(cancel_and_wait(task, grace=0.05), 10)
    assert task.cancelled()
    assert ends == ["ended"]


@pytest.mark.anyio
async def test_results_and_errors_stay_on_the_tasks():
    async def fails() -> None:
        raise ValueError("boom")

    async def returns() -> int:
        return 7

    failing, returning = asyncio.create_task(fails()), asyncio.create_task(returns())
    await asyncio.sleep(0)
    await cancel_and_wait(failing, returning, grace=1)
    assert isinstance(failing.exception(), ValueError)
    assert returning.result() == 7
    await cancel_and_wait(grace=1)  # nothing to stop is fine


@pytest.mark.anyio
async def test_an_orderly_close_within_the_grace_is_not_cut_short():
    """The bot closes its cogs, gateway and Redis when cancelled; a second cancel then would leave them half
    closed (its event reader saw Redis closed under it), so none comes within the grace."""
    steps: list[str] = []

    async def closes_in_order() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.3)  # closing takes a while
            steps.append("closed")

    task = asyncio.create_task(closes_in_order())
    await asyncio.sleep(0)
    await cancel_and_wait(task, grace=5)
    assert steps == ["closed"]
    assert task.cancelled()
