"""Metadata stores: ``open_meta`` turns a ``sqlite://`` or ``redis://`` URL into a backend."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ftg_common.meta.base import MetaStore, RunNotFoundError

if TYPE_CHECKING:
    from ftg_common.settings import Settings

__all__ = ["MetaStore", "RunNotFoundError", "open_meta"]

_SQLITE = "sqlite:///"
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def open_meta(
    url: str | None = None, settings: Settings | None = None, clock: Callable[[], float] = time.time
) -> MetaStore:
    """Open the metadata store a URL names.

    Args:
        url: ``sqlite:///relative/path.db`` (from the cwd), ``sqlite:////abs/path.db`` or
            ``redis://host:port/db``. Without it the settings' ``meta_url`` is used. The SQLite file's
            folder is created if missing.
        settings: Where ``meta_url`` comes from when ``url`` is None; the process settings by default.
        clock: Seconds since the epoch, for record timestamps and lease expiry (tests pass a fake one).

    Raises:
        ValueError: The URL names no supported backend or no database file.
    """
    if url is None:
        if settings is None:
            from ftg_common.settings import get_settings

            settings = get_settings()
        url = settings.meta_url
    if url.startswith(_SQLITE):
        from ftg_common.meta.sqlite import SqliteMeta

        # SQLAlchemy's convention: three slashes then the path, so an absolute path shows four.
        path = url[len(_SQLITE) :]
        if not path:
            raise ValueError(f"metadata URL {url!r} names no database file")
        return SqliteMeta(path, clock=clock)
    if url.startswith(_REDIS_SCHEMES):
        from ftg_common.meta.redis import RedisMeta

        return RedisMeta(url, clock=clock)
    raise ValueError(
        f"unsupported metadata URL {url!r}: expected sqlite:///<path.db> or redis://host:port/db"
    )
