"""Is dreamloom healthy? Checks of Redis, storage and workers that say what is wrong in plain words.

    for check in run_checks(Settings.from_env()):
        print(check.name, "ok" if check.ok else "FAIL", check.detail)

``dreamloom health`` prints them (exit status 1 when one fails); ``/healthz`` on the web playground, the
bot and each worker answers 200 or 503 with each check's name and ok/unavailable (``tasks.ops_server``:
the details name hosts, folders and buckets, so they stay in the operator's terminal and logs).

The storage check writes a small file and reads it back. Probes ask every few seconds, and anyone who
reaches ``/healthz`` may ask as often as they like, so a result is reused for ``STORAGE_CHECK_SECONDS``
(a failure for ``FAILED_STORAGE_CHECK_SECONDS``, so a recovery shows soon): at most one write per storage
in that time, however many ask.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis

from engine.errors import StorageError
from tasks.file_storage import storage_from_settings
from tasks.job_store import WORKER_ALIVE_SECONDS, JobStore
from tasks.settings import Settings

__all__ = ["STORAGE_CHECK_SECONDS", "Check", "check_redis", "check_storage", "check_workers", "run_checks"]

PROBE_KEY = "health/probe.txt"
STORAGE_CHECK_SECONDS = 30.0
FAILED_STORAGE_CHECK_SECONDS = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_redis(settings: Settings) -> Check:
    where = _redis_where(settings.redis_url)
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.AuthenticationError:
        return Check("redis", False, f"Redis at {where} refused the password in REDIS_URL")
    except redis.ConnectionError as exc:
        reason = str(exc).split(". ")[-1].strip(".") or "connection refused"
        return Check("redis", False, f"Redis at {where} is not reachable ({reason}); start it or fix REDIS_URL")
    finally:
        client.close()
    return Check("redis", True, f"Redis at {where} answers")


class _StorageChecks:
    """The last storage check of each storage, and when it ran; one check runs at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.results: dict[tuple[object, ...], tuple[float, Check]] = {}

    def get(self, settings: Settings, max_age: float) -> Check:
        where = (settings.s3_bucket, settings.s3_endpoint_url, settings.s3_prefix, str(settings.data_dir))
        with self.lock:  # callers that arrive while a check runs get its result
            if where in self.results:
                at, check = self.results[where]
                age = time.monotonic() - at
                if age < (max_age if check.ok else min(max_age, FAILED_STORAGE_CHECK_SECONDS)):
                    return check
            check = _probe_storage(settings)
            self.results[where] = (time.monotonic(), check)
            return check


_storage_checks = _StorageChecks()


def check_storage(settings: Settings, max_age: float = 0.0) -> Check:
    """Write and read back a small file: the storage must accept what workers will store. A check of the same
    storage younger than ``max_age`` seconds is answered again instead (see the module's docstring)."""
    return _storage_checks.get(settings, max_age)


def _probe_storage(settings: Settings) -> Check:
    try:
        storage = storage_from_settings(dataclasses.replace(settings, storage_retry_seconds=2.0))
        payload = f"dreamloom health probe {time.time():.0f}".encode()
        storage.put(PROBE_KEY, payload, "text/plain")
        if storage.get(PROBE_KEY) != payload:
            return Check("storage", False, f"{storage.describe()} returned something else than was written")
    except StorageError as exc:
        hint = "is it running, and is DREAMLOOM_S3_ENDPOINT_URL right?" if exc.transient else "check the settings"
        return Check("storage", False, f"{exc} ({hint})")
    return Check("storage", True, f"{storage.describe()} accepts and returns files")


def check_workers(settings: Settings, families: list[str]) -> Check:
    """A worker must have been seen (started or finished a job, or announced itself) recently, for every
    family, and be warm: a worker that is still loading its models says "warming" (it takes no job until it
    is warm). Every model with jobs waiting on its own queue must have a live worker that announces it: no
    other worker takes them (``tasks.routing``), so they would wait until one returns."""
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        store = JobStore(client)
        alive = {family: store.workers(family) for family in families}
        warming = [family for family, count in alive.items() if count == 0 and store.warming(family)]
        stranded = {model: count for model, count in sorted(store.waiting_for_models().items())
                    if store.model_workers(model) == 0}  # fmt: skip
    except redis.ConnectionError:
        return Check("workers", False, "cannot tell: Redis is not reachable")
    finally:
        client.close()
    missing = [family for family, count in alive.items() if count == 0 and family not in warming]
    minutes = WORKER_ALIVE_SECONDS // 60
    if warming and not missing:
        return Check("workers", False, f"warming: the worker for {', '.join(warming)} is loading and warming its "
                                       "models; it takes jobs once that is done")  # fmt: skip
    if missing:
        return Check("workers", False, f"no worker for {', '.join(missing)} seen in {minutes} minutes; start one "
                                       "with `dreamloom worker`")  # fmt: skip
    if stranded:
        listed = ", ".join(f"{model} ({count} waiting)" for model, count in stranded.items())
        return Check("workers", False, f"jobs wait on the queues of models no worker has announced in {minutes} "
                                       f"minutes: {listed}; start one with `dreamloom worker --models "
                                       f"{','.join(stranded)}`")  # fmt: skip
    listed = ", ".join(f"{family}: {count}" for family, count in alive.items()) or "no models configured"
    return Check("workers", True, f"workers seen in the last {minutes} minutes ({listed})")


def run_checks(
    settings: Settings, families: list[str] | None = None, *, storage_max_age: float = STORAGE_CHECK_SECONDS
) -> list[Check]:
    """Redis, storage (a result up to ``storage_max_age`` seconds old) and, given ``families``, the workers."""
    redis_check = check_redis(settings)
    checks = [redis_check, check_storage(settings, storage_max_age)]
    if families is not None:
        checks.append(check_workers(settings, families) if redis_check.ok else
                      Check("workers", False, "cannot tell: Redis is not reachable"))  # fmt: skip
    return checks


def _redis_where(url: str) -> str:
    """host:port/db of a Redis URL, without the password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or ''}"
