"""Child processes that never outlive their parent, and that stop in order.

A child starts in a session of its own, so a Ctrl-C in the terminal reaches only dreamloom, which then
stops its children in the right order (the worker before the Redis it talks to). On Linux a child also
gets SIGTERM if dreamloom itself dies (``PR_SET_PDEATHSIG``), so even a ``kill -9`` leaves nothing behind.
Start children from the main thread: the kernel ties that signal to the thread that forked.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

__all__ = ["ESCALATION", "IDLE_WORKER_STOP", "spawn", "stop"]

_PR_SET_PDEATHSIG = 1

# (signal, seconds to wait after sending it): politely, then firmly, then at once.
ESCALATION: tuple[tuple[signal.Signals, float], ...] = (
    (signal.SIGTERM, 10.0),
    (signal.SIGQUIT, 5.0),
    (signal.SIGKILL, 5.0),
)
# A worker with nothing in hand (its caller knows no job waits or runs): half a second, then at once. Celery's
# warm shutdown of a prefork pool takes about three seconds even then (billiard sleeps a second in each
# child's exit), which whoever stops it would wait for with nothing to gain.
IDLE_WORKER_STOP: tuple[tuple[signal.Signals, float], ...] = ((signal.SIGTERM, 0.5), (signal.SIGKILL, 5.0))


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, loaded in the parent (nothing may be loaded between fork and exec)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = _libc()
    if libc is not None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own session, output appended to ``log`` (or discarded)."""
    _libc()
    output: IO[bytes] | int = subprocess.DEVNULL
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        output = log.open("ab")
    try:
        return subprocess.Popen(
            list(args),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    finally:
        if not isinstance(output, int):
            output.close()


def stop(
    process: subprocess.Popen[bytes],
    steps: Sequence[tuple[signal.Signals, float]] = ESCALATION,
    hurry: threading.Event | None = None,
) -> int:
    """Stop ``process`` and everything in its session, escalating through ``steps``; ``hurry`` (a second
    Ctrl-C) skips to the last step. Returns the exit status."""
    for number, (sent, seconds) in enumerate(steps):
        last = number == len(steps) - 1
        if hurry is not None and hurry.is_set() and not last:
            continue
        _signal_group(process, sent)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if process.poll() is not None:
                _signal_group(process, signal.SIGKILL)  # whatever it left in its session
                return process.returncode
            if hurry is not None and hurry.is_set() and not last:
                break
            time.sleep(0.05)
    return process.wait()


def _signal_group(process: subprocess.Popen[bytes], sent: signal.Signals) -> None:
    try:
        if sent is signal.SIGKILL or process.poll() is not None:
            os.killpg(process.pid, sent)  # the whole session: pool children included
        else:
            process.send_signal(sent)  # the leader alone: it stops its own children in order
    except (ProcessLookupError, PermissionError):
        pass
