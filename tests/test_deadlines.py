"""The worker's own time limits (tasks.deadlines): model loading during a job is given back, a job past its
soft limit is stopped at its next step, and a render stuck past its hard limit ends the process."""

from __future__ import annotations

import threading

import pytest

from tasks.deadlines import WATCHDOG_EXIT, Deadline, OverTime, Watchdog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_seconds_spent_loading_a_model_during_the_job_are_not_counted():
    clock, loads = Clock(), {"v6": 12.0}
    deadline = Deadline(soft=5, hard=10, load_times=lambda: loads, clock=clock)
    loads["niji"] = 30.0  # a model swapped in during the job
    clock.now += 33.0
    deadline.check()  # 33 s, 30 of them loading: 3 s of work
    assert deadline.elapsed() == pytest.approx(3.0)
    clock.now += 3.0
    with pytest.raises(OverTime, match="over its limit of 5s"):
        deadline.check()


def test_a_render_stuck_past_its_hard_limit_ends_the_process_once_it_reached_a_step():
    clock = Clock()
    exits: list[int] = []
    ended = threading.Event()

    def exit(status: int) -> None:
        exits.append(status)
        ended.set()

    watchdog = Watchdog(interval=0.01, exit=exit)
    deadline = Deadline(soft=1, hard=2, load_times=dict, clock=clock)
    with watchdog.watch("job1", deadline):
        clock.now += 60.0  # loading, before the first step: never timed
        assert not ended.wait(0.1)
        deadline.armed = True  # a step was reached, then the driver hung
        assert ended.wait(5)
    assert exits == [WATCHDOG_EXIT]
