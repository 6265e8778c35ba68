"""Object store on S3 (or MinIO / any S3-protocol server) via boto3."""

from __future__ import annotations

import configparser
import threading
from pathlib import Path
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

# Where OpenFaaS mounts the function secret `ftg-s3` (functions/stack.yml: `secrets: [ftg-s3]`).
OPENFAAS_CREDENTIALS_FILE = Path("/var/openfaas/secrets/ftg-s3")
# Buckets seen to exist, per endpoint: a warm function opens a store per call, and one HeadBucket per
# process is enough (a bucket deleted under a running stack fails the next write loudly anyway).
_known_buckets: set[tuple[str | None, str]] = set()
_known_buckets_lock = threading.Lock()


class BucketUnavailableError(OSError):
    """The store's bucket does not exist and may not be created."""


def resolve_credentials_file(configured: str | None) -> Path | None:
    """The credentials file to use: ``configured``; if unset, the mounted OpenFaaS secret when present.

    An empty ``configured`` means "none": boto3's own chain (environment, ~/.aws, instance roles).
    """
    if configured is not None:
        return Path(configured) if configured else None
    return OPENFAAS_CREDENTIALS_FILE if OPENFAAS_CREDENTIALS_FILE.is_file() else None


def read_credentials(path: str | Path, profile: str = "default") -> dict[str, str]:
    """Keys from an AWS shared credentials file, as boto3 client arguments.

    Same format and key names as ``AWS_SHARED_CREDENTIALS_FILE``; read here rather than through that
    variable because the process-wide boto3 session would otherwise cache whichever credentials it
    found first. Errors name the file and profile, never a secret.
    """
    path = Path(path)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise ValueError(f"S3 credentials file {path} cannot be read: {exc.strerror or exc}") from None
    except configparser.Error as exc:
        # configparser's messages quote the offending line, which may hold a key: name only where.
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise ValueError(
            f"S3 credentials file {path} is not an AWS shared credentials file{where}: "
            "expected [profile] sections of `key = value` lines"
        ) from None
    if not parser.has_section(profile):
        raise ValueError(f"S3 credentials file {path} has no [{profile}] profile")
    section = parser[profile]
    missing = [k for k in ("aws_access_key_id", "aws_secret_access_key") if not section.get(k, "").strip()]
    if missing:
        raise ValueError(f"S3 credentials file {path}, profile [{profile}], lacks {', '.join(missing)}")
    keys = {k: section[k].strip() for k in ("aws_access_key_id", "aws_secret_access_key")}
    if section.get("aws_session_token", "").strip():
        keys["aws_session_token"] = section["aws_session_token"].strip()
    return keys


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
        check_bucket: bool = False,
        credentials_file: str | Path | None = None,
        profile: str = "default",
    ) -> None:
        """Open the bucket folder.

        Args:
            bucket: bucket name.
            prefix: folder inside the bucket that this store owns.
            endpoint_url: a MinIO / S3-protocol server; None for AWS.
            region: the bucket's region.
            create_bucket: create the bucket when it is missing.
            check_bucket: check that the bucket exists (once per process), raising
                BucketUnavailableError naming it when it does not and may not be created.
            credentials_file: an AWS shared credentials file to take the keys from (e.g. the mounted
                OpenFaaS secret); None: boto3's default chain.
            profile: the profile of ``credentials_file`` to use.
        """
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
        keys = read_credentials(credentials_file, profile) if credentials_file is not None else {}
        self.endpoint_url = endpoint_url
        self._client: Any = _new_client(endpoint_url=endpoint_url, region_name=region, config=config, **keys)
        if create_bucket or check_bucket:
            self._ensure_bucket(region, create=create_bucket)

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    def _ensure_bucket(self, region: str, create: bool = True) -> None:
        from botocore.exceptions import ClientError

        known = (self.endpoint_url, self.bucket)
        if known in _known_buckets:
            return
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = _error_code(exc)
            if code in {"403", "AccessDenied", "Forbidden"}:
                # Keys limited to objects may not HeadBucket; the first read or write will tell.
                return
            if code not in {"404", "NoSuchBucket", "NotFound"}:
                raise
            if not create:
                where = self.endpoint_url or "AWS"
                raise BucketUnavailableError(
                    f"S3 bucket {self.bucket!r} does not exist at {where}: create it (on the cluster the "
                    f"minio-create-buckets Job does) or set FTG_S3_CREATE_BUCKET=true"
                ) from None
            self._create_bucket(region)
        with _known_buckets_lock:
            _known_buckets.add(known)

    def _create_bucket(self, region: str) -> None:
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if region != "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._client.create_bucket(**kwargs)
        except ClientError as exc:
            # Another process may have created it between our check and our create.
            if _error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise BucketUnavailableError(
                    f"S3 bucket {self.bucket!r} is missing and could not be created: {exc}"
                ) from exc

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
