"""Object stores: ``open_store`` turns a ``file://`` or ``s3://`` URL into a backend."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ftg_common.store.base import InvalidKeyError, KeyNotFoundError, ObjectStore

if TYPE_CHECKING:
    from ftg_common.settings import Settings

__all__ = ["InvalidKeyError", "KeyNotFoundError", "ObjectStore", "open_store"]


def open_store(url: str | None = None, settings: Settings | None = None) -> ObjectStore:
    """``file://relative/dir`` (from the cwd), ``file:///abs/dir`` or ``s3://bucket/optional/prefix``.

    Without ``url`` the settings' ``store_url`` is used; S3 endpoint, region, credentials file and
    whether to create a missing bucket always come from settings.
    """
    if settings is None:
        from ftg_common.settings import get_settings

        settings = get_settings()
    url = url or settings.store_url
    if url.startswith("file://"):
        from ftg_common.store.file import FileStore

        location = url[len("file://") :]
        if not location:
            raise ValueError(f"object store URL {url!r} names no directory")
        # Not urlparse: it would read the first segment of a relative path as a host name.
        return FileStore(
            Path.cwd() / location if not location.startswith("/") else location, fsync=settings.store_fsync
        )
    if url.startswith("s3://"):
        from ftg_common.store.s3 import S3Store, resolve_credentials_file

        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError(f"object store URL {url!r} names no bucket")
        # The bucket is checked (once per process) so a wrong name fails here, naming the bucket, not
        # later as a missing object.
        return S3Store(
            parts.netloc,
            prefix=parts.path.strip("/"),
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            create_bucket=settings.s3_create_bucket,
            check_bucket=True,
            credentials_file=resolve_credentials_file(settings.s3_credentials_file),
            profile=settings.s3_profile,
        )
    raise ValueError(f"unsupported object store URL {url!r}: expected file://<dir> or s3://<bucket>/<prefix>")
