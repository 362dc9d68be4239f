"""Child processes that never outlive their parent, and that stop in order.

A child starts in a session of its own, so a Ctrl-C in the terminal reaches only dreamloom, which then
stops its children in the right order (the worker before the Redis it talks to). On Linux a child also
gets SIGTERM if dreamloom itself dies (``PR_SET_PDEATHSIG``), so even a ``kill -9`` leaves nothing behind.
Start children from the main thread: the kernel ties that signal to the thread that forked.

A child gets only the environment it needs (``child_environment``: the parent's, less every secret it
does not use, so the worker never holds the Discord token) and a private umask (``PRIVATE_UMASK``: what it
writes, images, the Redis append-only file, logs, is its owner's alone).
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

__all__ = [
    "ESCALATION",
    "IDLE_WORKER_STOP",
    "PRIVATE_UMASK",
    "child_environment",
    "die_with_parent",
    "is_secret",
    "spawn",
    "stop",
    "wait_for_ready",
    "worker_environment",
]

_PR_SET_PDEATHSIG = 1
PRIVATE_UMASK = 0o077  # files 0600, folders 0700

# What says a variable holds a secret: a word of its name (DISCORD_TOKEN, AWS_SECRET_ACCESS_KEY,
# REDIS_PASSWORD, HF_TOKEN; not TOKENIZERS_PARALLELISM), a part of it (OPENAI_API_KEY), or the name itself
# (an agent socket grants what a key would).
_SECRET_WORDS = frozenset({"TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASS", "CREDENTIAL", "CREDENTIALS", "AUTH"})
_SECRET_PARTS = ("ACCESS_KEY", "PRIVATE_KEY", "API_KEY", "SECRET_KEY")
_SECRET_NAMES = frozenset({"SSH_AUTH_SOCK", "GPG_AGENT_INFO"})
# A worker's own secrets: the model hub's token (gated models), and the bucket's keys when it stores in one.
_HUB_SECRETS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
_S3_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

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


def die_with_parent() -> None:  # runs in the child between fork and exec
    libc = _libc()
    if libc is not None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def is_secret(name: str) -> bool:
    """Whether a variable's name says it holds a secret."""
    upper = name.upper()
    return (
        upper in _SECRET_NAMES
        or not _SECRET_WORDS.isdisjoint(upper.split("_"))
        or any(part in upper for part in _SECRET_PARTS)
    )


def child_environment(environ: Mapping[str, str], keep: Sequence[str] = ()) -> dict[str, str]:
    """``environ`` without its secrets (``is_secret``), except those named in ``keep``. Everything else
    stays: a child needs its PATH, locale, proxies and CUDA settings as much as dreamloom's own."""
    return {name: value for name, value in environ.items() if name in keep or not is_secret(name)}


def worker_environment(environ: Mapping[str, str], *, s3: bool) -> dict[str, str]:
    """A worker's environment: no Discord token or other secret of the front ends; the hub token, and the
    bucket's keys only when it stores in a bucket (``s3``). (REDIS_URL is no secret by name: it stays.)"""
    return child_environment(environ, keep=(*_HUB_SECRETS, *(_S3_SECRETS if s3 else ())))


def wait_for_ready(worker: subprocess.Popen[bytes], log: Path, seconds: float) -> bool:
    """Wait until a spawned ``celery worker`` logs " ready." (after its warm start) in ``log``; False when it
    ended first or ``seconds`` passed."""
    deadline = time.monotonic() + seconds
    while " ready." not in (log.read_text(errors="replace") if log.exists() else ""):
        if worker.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def spawn(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
    umask: int = -1,
) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own session, output appended to ``log`` (or discarded; created readable by its
    owner only), with ``umask`` (-1: this process's)."""
    _libc()
    output: IO[bytes] | int = subprocess.DEVNULL
    if log is not None:
        log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        output = os.fdopen(os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
    try:
        return subprocess.Popen(
            list(args),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
            umask=umask,
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
