"""How the command line finds the dreamloom that runs on this machine.

Each ``dreamloom up`` owns one data folder. While it runs it holds the folder's lock (``service.lock``) and
publishes how to reach it in ``service.json`` (the Redis URL with its password, the page's URL, the models
file; readable by the owner only). It also names the folder in this user's list of running services
(``$XDG_STATE_HOME/dreamloom/running/``, by default ``~/.local/state/dreamloom/running/``), so a command run
from any folder finds it. An entry whose folder's lock is free is stale (an ``up`` that was killed): it is
skipped and removed.

``find_running`` is the one way every command (``imagine``, the buttons, ``jobs``, ``cancel``, ``health``)
picks the service it talks to.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bot.cli.settings import ServiceSettings
from engine.errors import DreamloomError

__all__ = [
    "DataFolder",
    "NoService",
    "RunningServices",
    "Say",
    "ServiceError",
    "ServiceRecord",
    "find_running",
    "say",
]

Say = Callable[[str], None]


def say(line: str) -> None:
    """One line of what the command line tells its user."""
    print(line, flush=True)


class ServiceError(DreamloomError):
    """Something that stops dreamloom from starting; the message says what to do."""

    title = "Cannot start"


class NoService(DreamloomError):
    """A command cannot tell which dreamloom to use, or none runs; the message says how to choose or start one."""

    title = "No service"


@dataclass(frozen=True)
class ServiceRecord:
    """What ``service.json`` says about a running ``dreamloom up``."""

    pid: int
    redis_url: str = dataclasses.field(repr=False)  # holds the password
    data_dir: str
    web_url: str | None = None
    models: str | None = None  # the DREAMLOOM_MODELS file its worker serves, so commands use the same registry


class DataFolder:
    def __init__(self, path: Path, running_list: RunningServices | None = None) -> None:
        self.path = path.resolve()
        self.running_list = running_list
        self._lock: IO[str] | None = None

    @property
    def record_file(self) -> Path:
        return self.path / "service.json"

    def acquire(self) -> bool:
        """Become the one process that runs the job system on this folder (False: another one does)."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)  # a new one: its owner's alone
        handle = os.fdopen(os.open(self.path / "service.lock", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._lock = handle
        return True

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    def publish(self, record: ServiceRecord) -> None:
        """Tell other commands how to reach this folder's running service (and list it for this user)."""
        _write_private(self.record_file, json.dumps(dataclasses.asdict(record)))  # holds the Redis password
        if self.running_list is not None:
            self.running_list.add(self.path)

    def unpublish(self) -> None:
        if self.running_list is not None:
            self.running_list.remove(self.path)
        self.record_file.unlink(missing_ok=True)

    def running(self) -> ServiceRecord | None:
        """The running ``up`` on this folder, or None (none, or one that died without cleaning up)."""
        try:
            record = ServiceRecord(**json.loads(self.record_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if self._lock is not None:
            return record
        probe = DataFolder(self.path)
        if probe.acquire():  # nobody holds the lock: the record is stale
            probe.release()
            return None
        return record


class RunningServices:
    """This user's list of running ``dreamloom up`` services: one small file per data folder, naming it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def of_user(cls, environ: Mapping[str, str] | None = None) -> RunningServices:
        env = os.environ if environ is None else environ
        state = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
        return cls(Path(state) / "dreamloom" / "running")

    def add(self, data_dir: Path) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(self._entry(data_dir), str(data_dir.resolve()))

    def remove(self, data_dir: Path) -> None:
        self._entry(data_dir).unlink(missing_ok=True)

    def running(self) -> list[ServiceRecord]:
        """The services that run now, oldest entry first; stale entries are removed."""
        found = []
        entries = sorted(self.folder.glob("*.folder"), key=_age) if self.folder.is_dir() else []
        for entry in entries:
            try:
                record = DataFolder(Path(entry.read_text().strip())).running()
            except OSError:
                record = None
            if record is None:
                entry.unlink(missing_ok=True)
            else:
                found.append(record)
        return found

    def _entry(self, data_dir: Path) -> Path:
        digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
        return self.folder / f"{digest}.folder"


def find_running(service: ServiceSettings, environ: Mapping[str, str] | None = None) -> ServiceRecord | None:
    """The running ``dreamloom up`` a command talks to: the one on its data folder when the folder was named
    (``--data-dir``, DREAMLOOM_DATA_DIR) or runs here (./dreamloom-data); else this user's only running one.
    None when none runs; ``NoService`` when several run and none was named."""
    here = DataFolder(service.data_dir).running()
    if here is not None or service.data_dir_given:
        return here
    elsewhere = RunningServices.of_user(environ).running()
    if len(elsewhere) > 1:
        listed = "; ".join(record.data_dir for record in elsewhere)
        raise NoService(f"{len(elsewhere)} dreamloom services are running ({listed}): pass --data-dir to pick one")
    return elsewhere[0] if elsewhere else None


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, replacing it at once."""
    partial = path.with_name(path.name + ".tmp")
    partial.touch(mode=0o600)
    partial.write_text(text)
    os.replace(partial, path)


def _age(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
