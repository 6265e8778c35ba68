"""S3 credentials from a mounted OpenFaaS secret, and the bucket created or refused by name (moto server)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ftg_common.settings import Settings
from ftg_common.store import open_store
from ftg_common.store import s3 as s3_module
from ftg_common.store.s3 import BucketUnavailableError, S3Store, read_credentials, resolve_credentials_file


def _credentials_file(path: Path, key_id: str, profile: str = "default") -> Path:
    path.write_text(f"[{profile}]\naws_access_key_id = {key_id}\naws_secret_access_key = s3cr3t-{key_id}\n")
    return path


def _bucket() -> str:
    return f"ftg-test-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def no_env_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Only a credentials file can sign: the environment's keys are gone for the test."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/ftg-test-credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/ftg-test-config")
    yield


def _signing_key_ids(store: S3Store) -> list[str]:
    """The access key id of every request the store's client sends, from its SigV4 Authorization header."""
    seen: list[str] = []

    def record(request: Any, **_: Any) -> None:
        auth = request.headers.get("Authorization", b"")
        auth = auth.decode() if isinstance(auth, bytes) else auth
        seen.append(auth.split("Credential=", 1)[1].split("/", 1)[0])

    store._client.meta.events.register("before-send.s3", record)
    return seen


def test_store_signs_with_the_configured_credentials_file(
    s3_endpoint: str, tmp_path: Path, no_env_credentials: None
) -> None:
    creds = _credentials_file(tmp_path / "ftg-s3", "from-file", profile="ftg")
    settings = Settings(
        s3_endpoint_url=s3_endpoint, s3_credentials_file=str(creds), s3_profile="ftg", s3_create_bucket=True
    )
    store = open_store(f"s3://{_bucket()}/exp", settings=settings)
    assert isinstance(store, S3Store)
    key_ids = _signing_key_ids(store)
    store.put_bytes("runs/r1/config.json", b"{}")
    assert store.get_bytes("runs/r1/config.json") == b"{}"
    assert key_ids == ["from-file", "from-file"]


def test_the_mounted_openfaas_secret_is_the_default(
    s3_endpoint: str, tmp_path: Path, no_env_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    mounted = _credentials_file(tmp_path / "ftg-s3", "mounted")
    monkeypatch.setattr(s3_module, "OPENFAAS_CREDENTIALS_FILE", mounted)
    assert resolve_credentials_file(None) == mounted
    # An empty setting opts out of the secret (boto3's own chain); an explicit one wins over it.
    assert resolve_credentials_file("") is None
    assert resolve_credentials_file("/etc/other") == Path("/etc/other")
    store = open_store(f"s3://{_bucket()}", settings=Settings(s3_endpoint_url=s3_endpoint))
    assert isinstance(store, S3Store)
    key_ids = _signing_key_ids(store)
    store.put_bytes("k", b"v")
    assert key_ids == ["mounted"]


def test_without_a_secret_mounted_boto3_chooses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_module, "OPENFAAS_CREDENTIALS_FILE", tmp_path / "absent")
    assert resolve_credentials_file(None) is None


def test_a_missing_bucket_is_created(s3_endpoint: str) -> None:
    bucket = _bucket()
    store = open_store(f"s3://{bucket}/state", settings=Settings(s3_endpoint_url=s3_endpoint))
    store.put_bytes("a", b"1")
    assert S3Store(bucket, endpoint_url=s3_endpoint).get_bytes("state/a") == b"1"


def test_a_missing_bucket_is_refused_by_name_when_creation_is_off(s3_endpoint: str) -> None:
    bucket = _bucket()
    settings = Settings(s3_endpoint_url=s3_endpoint, s3_create_bucket=False)
    with pytest.raises(BucketUnavailableError) as info:
        open_store(f"s3://{bucket}/state", settings=settings)
    assert repr(bucket) in str(info.value) and "FTG_S3_CREATE_BUCKET" in str(info.value)
    # Once it exists (the cluster's bucket Job), the same settings open it.
    S3Store(bucket, endpoint_url=s3_endpoint, create_bucket=True)
    assert open_store(f"s3://{bucket}/state", settings=settings).list("") == []


def test_credentials_file_errors_name_the_file_and_never_the_secret(tmp_path: Path) -> None:
    good = _credentials_file(tmp_path / "good", "id-1")
    assert read_credentials(good) == {"aws_access_key_id": "id-1", "aws_secret_access_key": "s3cr3t-id-1"}
    with pytest.raises(ValueError, match=r"has no \[other\] profile"):
        read_credentials(good, profile="other")
    with pytest.raises(ValueError, match="cannot be read"):
        read_credentials(tmp_path / "absent")
    partial = tmp_path / "partial"
    partial.write_text("[default]\naws_access_key_id = id-2\n")
    with pytest.raises(ValueError, match="lacks aws_secret_access_key") as info:
        read_credentials(partial)
    assert str(partial) in str(info.value)
    garbled = tmp_path / "garbled"
    garbled.write_text("aws_secret_access_key = leaked\n")
    with pytest.raises(ValueError) as info:
        read_credentials(garbled)
    assert "leaked" not in str(info.value) and str(garbled) in str(info.value)
