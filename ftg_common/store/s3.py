"""Object store on S3 (or MinIO / any S3-protocol server) via boto3."""

from __future__ import annotations

import threading
from typing import Any

from ftg_common.store.base import KeyNotFoundError, ObjectStore
from ftg_common.store.key_syntax import normalize_prefix, validate_key

# DeleteObjects accepts at most 1000 keys per request.
_DELETE_BATCH = 1000
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# ListObjectsV2 returns at most 1000 keys per page anyway; a named constant lets tests force paging.
_LIST_PAGE_SIZE = 1000

# One boto3 session for the process: a fresh session reloads the service model (~70 ms per store),
# which warm functions opening a store per call would pay every time. Sessions aren't thread-safe,
# so client creation is serialized; the clients themselves are thread-safe.
_session: Any = None
_session_lock = threading.Lock()


def _new_client(**kwargs: Any) -> Any:
    global _session
    import boto3

    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session.client("s3", **kwargs)


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class S3Store(ObjectStore):
    """Objects in an S3 bucket, under an optional key prefix (one store per bucket folder)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        create_bucket: bool = False,
    ) -> None:
        # boto3/botocore are imported here, not at module top: they take ~0.5 s, paid only if S3 is used.
        from botocore.config import Config

        if not bucket or "/" in bucket:
            raise ValueError(f"invalid S3 bucket name: {bucket!r}")
        self.bucket = bucket
        self.prefix = normalize_prefix(prefix)
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        # Custom endpoints (MinIO, moto) rarely have wildcard DNS for virtual-hosted buckets.
        s3_options = {"addressing_style": "path"} if endpoint_url else {}
        config = Config(s3=s3_options, retries={"max_attempts": 5, "mode": "standard"})
        self._client: Any = _new_client(endpoint_url=endpoint_url, region_name=region, config=config)
        if create_bucket:
            self._ensure_bucket(region)

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    def _ensure_bucket(self, region: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _error_code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                raise
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if region != "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._client.create_bucket(**kwargs)
        except ClientError as exc:
            # Another process may have created it between our check and our create.
            if _error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise

    def _object_name(self, key: str) -> str:
        key = validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _folder_name(self, prefix: str) -> str:
        folder = normalize_prefix(prefix)
        full = "/".join(part for part in (self.prefix, folder) if part)
        return f"{full}/" if full else ""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write the object with a single PutObject."""
        # A single PutObject is atomic on S3: readers get the old object or the new one.
        body = data if isinstance(data, bytes | bytearray) else bytes(data)
        self._client.put_object(Bucket=self.bucket, Key=self._object_name(key), Body=body)

    def get_bytes(self, key: str) -> bytes:
        """Read the object; KeyNotFoundError if absent."""
        from botocore.exceptions import ClientError

        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._object_name(key))
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                raise KeyNotFoundError(key) from None
            raise
        body: bytes = response["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        """True when a HeadObject finds the object."""
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=self._object_name(key))
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                return False
            raise
        return True

    def _list_object_names(self, prefix: str) -> list[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        names: list[str] = []
        for page in paginator.paginate(
            Bucket=self.bucket,
            Prefix=self._folder_name(prefix),
            PaginationConfig={"PageSize": _LIST_PAGE_SIZE},
        ):
            names.extend(item["Key"] for item in page.get("Contents", []))
        return names

    def list(self, prefix: str) -> list[str]:
        """Keys under the folder ``prefix`` (without the store's own prefix), sorted."""
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(name[strip:] for name in self._list_object_names(prefix))

    def delete(self, key: str) -> bool:
        """Delete the object (HeadObject first: S3's DeleteObject answers the same for an absent key)."""
        if not self.exists(key):
            return False
        self._client.delete_object(Bucket=self.bucket, Key=self._object_name(key))
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix`` in batches of 1000; return how many."""
        names = self._list_object_names(prefix)
        deleted = 0
        for start in range(0, len(names), _DELETE_BATCH):
            batch = names[start : start + _DELETE_BATCH]
            response = self._client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": name} for name in batch], "Quiet": True},
            )
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise OSError(
                    f"S3 refused to delete {len(errors)} object(s) under {self.url}, "
                    f"e.g. {first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
            deleted += len(batch)
        return deleted
