"""Artifact storage behind one interface: S3-compatible (AWS S3, MinIO, R2) via boto3, or a local folder.

Per job, under ``jobs/{id}/``: the images (``1.webp`` ..., lossless), ``grid.jpg``, ``preview.webp`` and ``job.json``,
the full recipe and lineage, written last so that its presence means the job's artifacts are complete.
Transient errors (the endpoint unreachable, timeouts, 5xx, throttling) are retried with exponential backoff
for up to ``retry_seconds``; anything else fails at once with a message that says what to check.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from engine.errors import StorageError
from tasks.settings import Settings

__all__ = ["LocalStorage", "S3Storage", "Storage", "artifact_key", "storage_from_settings"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "Throttling", "ThrottlingException", "InternalError",
                    "ServiceUnavailable", "RequestTimeTooSkewed"}  # fmt: skip
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


def artifact_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/{name}"


class Storage(ABC):
    """Bytes by key, and a time-limited URL for a key."""

    # True when storing writes to this machine's own disk (a worker then needs no spool copy first).
    keeps_files_locally = False

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes under ``key``; ``StorageError`` when there are none or they cannot be read."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def url(self, key: str, expires: int = 3600) -> str:
        """A URL a browser or Discord can fetch: presigned on S3, a file URL for a local folder."""

    @abstractmethod
    def describe(self) -> str:
        """Where artifacts go, in words, without secrets."""


class LocalStorage(Storage):
    """A folder: the embedded default. Writes are atomic (a temporary file renamed into place). What it
    creates is its owner's alone (folders 0700, files 0600): the images and recipes are the members'."""

    keeps_files_locally = True

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self._writes = itertools.count()

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        # A name no other writer uses (process, thread, call), so concurrent puts of one key never collide.
        partial = path.with_name(f".tmp-{path.name}.{os.getpid()}.{threading.get_ident()}.{next(self._writes)}")
        try:
            try:
                _write_new(partial, data)
            except FileNotFoundError:  # the job's first file: make its folder
                self._make_folders(path.parent)
                _write_new(partial, data)
            os.replace(partial, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            reason = f"Cannot write {path}: {exc.strerror}; check the data folder's space and rights"
            raise StorageError(reason) from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise StorageError(f"Nothing stored for {key} in {self.root}", missing=True) from None
        except OSError as exc:
            raise StorageError(f"Cannot read {key} from {self.root}: {exc.strerror}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def url(self, key: str, expires: int = 3600) -> str:
        return self._path(key).as_uri()

    def describe(self) -> str:
        return f"local folder {self.root}"

    def _make_folders(self, folder: Path) -> None:
        """``folder`` and every missing folder between it and the root (the root too), each 0700."""
        chain = [folder, *folder.parents]  # folder is the root or inside it (_path)
        for each in reversed(chain[: chain.index(self.root) + 1]):
            each.mkdir(mode=0o700, parents=each == self.root, exist_ok=True)

    def _path(self, key: str) -> Path:
        # Lexical, without touching the disk: keys are ours ("<job>/<file>"), this only stops a forged one
        # ("../x", "/etc/x") from leaving the folder.
        path = Path(os.path.normpath(self.root / key))
        if self.root not in path.parents:
            raise StorageError(f"Artifact key {key!r} points outside the storage folder")
        return path


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to a file that must not exist yet, readable by its owner only."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
        handle.write(data)


class S3Storage(Storage):
    """An S3-compatible bucket, spoken to with boto3."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        prefix: str = "",
        addressing_style: str = "auto",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        retry_seconds: float = 60.0,
    ) -> None:
        if (access_key_id is None) != (secret_access_key is None):
            given, missing = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")[:: 1 if access_key_id else -1]
            raise StorageError(f"S3 credentials are half set: {given} is set but {missing} is not; set both or neither")
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.prefix = prefix
        self.retry_seconds = retry_seconds
        config = Config(
            signature_version="s3v4",  # what MinIO and R2 require, and the only one AWS offers new regions
            s3={"addressing_style": addressing_style},
            connect_timeout=2,
            read_timeout=20,
            retries={"max_attempts": 1, "mode": "standard"},  # retries are ours: with backoff and a time budget
        )
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region or "us-east-1",
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )

    def put(self, key: str, data: bytes, content_type: str) -> None:
        def upload() -> Any:
            return self.client.put_object(
                Bucket=self.bucket, Key=self.prefix + key, Body=data, ContentType=content_type
            )

        self._retry(f"store {key}", upload)

    def get(self, key: str) -> bytes:
        def read() -> bytes:  # the body streams after the answer: a connection lost mid-body is retried too
            response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            body: bytes = response["Body"].read()
            return body

        return self._retry(f"read {key}", read)

    def exists(self, key: str) -> bool:
        try:
            self._retry(f"look up {key}", lambda: self.client.head_object(Bucket=self.bucket, Key=self.prefix + key))
        except StorageError as exc:
            if exc.missing:
                return False
            raise
        return True

    def url(self, key: str, expires: int = 3600) -> str:
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.prefix + key}, ExpiresIn=expires
        )
        return url

    def describe(self) -> str:
        where = self.endpoint_url or "AWS S3"
        return f"bucket {self.bucket} at {where}"

    def _retry(self, what: str, call: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.2
        while True:
            try:
                return call()
            except (ClientError, BotoCoreError) as exc:
                transient, missing, reason = _classify(exc)
                if missing:
                    where = what.split(" ", 1)[1]
                    raise StorageError(f"Nothing stored for {where} in {self.describe()}", missing=True) from exc
                if not transient:
                    raise StorageError(f"Storage refused to {what}: {reason}; check {self.describe()}") from exc
                if time.monotonic() + delay > deadline:
                    raise StorageError(
                        f"Storage unreachable for {self.retry_seconds:g} s while trying to {what}: {reason}",
                        transient=True,
                    ) from exc
                log.warning("storage: could not %s (%s); retrying in %.1f s", what, reason, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def _classify(exc: Exception) -> tuple[bool, bool, str]:
    """(transient, missing, reason) for a boto3 error."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        reason = f"{code or status} {error.get('Message', '')}".strip()
        return status >= 500 or code in _TRANSIENT_CODES, code in _MISSING_CODES, reason
    # Connection errors, read timeouts and a body cut off mid-stream (ResponseStreamingError) pass.
    return isinstance(exc, (BotoConnectionError, HTTPClientError)), False, type(exc).__name__


def storage_from_settings(settings: Settings) -> Storage:
    """S3 when a bucket is configured, else the local data folder."""
    if settings.s3_bucket:
        return S3Storage(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            prefix=settings.s3_prefix,
            addressing_style=settings.s3_addressing_style,
            access_key_id=settings.s3_access_key_id.reveal() if settings.s3_access_key_id else None,
            secret_access_key=settings.s3_secret_access_key.reveal() if settings.s3_secret_access_key else None,
            retry_seconds=settings.storage_retry_seconds,
        )
    return LocalStorage(settings.data_dir / "artifacts")
