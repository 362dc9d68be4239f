"""Artifact storage: a local folder and an S3 server over HTTP (moto), with retries and clear errors."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest

from engine.errors import StorageError
from tasks.file_storage import LocalStorage, S3Storage, storage_from_settings
from tasks.settings import Secret, Settings
from tests.conftest import S3_CREDENTIALS


def s3(s3_server, bucket, **options) -> S3Storage:
    return S3Storage(bucket, endpoint_url=s3_server.url, addressing_style="path", **S3_CREDENTIALS_ARGS, **options)


S3_CREDENTIALS_ARGS: dict[str, Any] = {
    "access_key_id": S3_CREDENTIALS["aws_access_key_id"],
    "secret_access_key": S3_CREDENTIALS["aws_secret_access_key"],
}


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_put_get_exists_url(kind, tmp_path, s3_server, bucket):
    storage = LocalStorage(tmp_path) if kind == "local" else s3(s3_server, bucket)
    assert not storage.exists("jobs/a/1.png")
    storage.put("jobs/a/1.png", b"\x89PNG...", "image/png")
    assert storage.exists("jobs/a/1.png")
    assert storage.get("jobs/a/1.png") == b"\x89PNG..."
    with urllib.request.urlopen(storage.url("jobs/a/1.png", expires=60)) as response:
        assert response.read() == b"\x89PNG..."
    with pytest.raises(StorageError, match=r"Nothing stored for jobs/a/2\.png") as caught:
        storage.get("jobs/a/2.png")
    assert caught.value.missing


def test_presigned_urls_expire(s3_server, bucket):
    url = s3(s3_server, bucket).url("jobs/a/grid.png", expires=120)
    assert "X-Amz-Expires=120" in url
    assert "X-Amz-Signature=" in url


def test_local_storage_refuses_keys_outside_its_folder(tmp_path):
    with pytest.raises(StorageError, match="outside the storage folder"):
        LocalStorage(tmp_path / "store").put("../escape.png", b"x", "image/png")


def test_a_permanent_s3_error_fails_at_once_and_says_what_to_check(s3_server):
    storage = s3(s3_server, "no-such-bucket", retry_seconds=30)
    with pytest.raises(StorageError, match=r"Storage refused to store jobs/a/1\.png: NoSuchBucket") as caught:
        storage.put("jobs/a/1.png", b"x", "image/png")
    assert not caught.value.transient


def test_an_unreachable_endpoint_is_retried_then_reported(bucket):
    from tests.support.servers import free_port

    storage = S3Storage(
        bucket, endpoint_url=f"http://127.0.0.1:{free_port()}", retry_seconds=1.0, **S3_CREDENTIALS_ARGS
    )
    with pytest.raises(StorageError, match="Storage unreachable for 1 s while trying to store") as caught:
        storage.put("jobs/a/1.png", b"x", "image/png")
    assert caught.value.transient


def test_settings_choose_the_storage(tmp_path, s3_server, bucket):
    assert isinstance(storage_from_settings(Settings(data_dir=tmp_path)), LocalStorage)
    chosen = storage_from_settings(
        Settings(
            s3_bucket=bucket,
            s3_endpoint_url=s3_server.url,
            s3_access_key_id=Secret("k"),
            s3_secret_access_key=Secret("s"),
        )
    )
    assert isinstance(chosen, S3Storage)
    assert chosen.describe() == f"bucket {bucket} at {s3_server.url}"


def test_half_set_credentials_name_the_missing_variable(bucket):
    with pytest.raises(StorageError, match="AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"):
        storage_from_settings(Settings(s3_bucket=bucket, s3_access_key_id=Secret("k")))
