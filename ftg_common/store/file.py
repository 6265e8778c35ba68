"""Object store on a local directory: one file per key, written atomically (temp file + rename)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from ftg_common.store.base import InvalidKeyError, KeyNotFoundError, ObjectStore
from ftg_common.store.key_syntax import is_valid_key, normalize_prefix, validate_key

# Temp files end in '~', a character keys may not contain, so a half-written object can never be
# mistaken for (or collide with) a real key, even if its writer crashed and left it behind.
_TMP_SUFFIX = ".tmp~"
# A concurrent delete_prefix may remove a directory between our mkdir and our open; retrying is enough.
_CREATE_ATTEMPTS = 5


class FileStore(ObjectStore):
    """Objects as files under ``root``; ``fsync`` makes every write durable before it returns."""

    def __init__(self, root: str | Path, fsync: bool = False) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.url = f"file://{self.root.as_posix()}"

    def __repr__(self) -> str:
        return f"FileStore({self.url!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write to a temp file in the key's folder, then rename it over the key."""
        path = self._path(key)
        tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}{_TMP_SUFFIX}"
        fd = self._create_exclusive(key, tmp)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            try:
                os.replace(tmp, path)
            except IsADirectoryError as exc:
                raise InvalidKeyError(f"object key {key!r} names an existing folder of keys") from exc
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        if self.fsync:
            # The rename is only durable once the directory entry itself reaches the disk.
            _fsync_dir(path.parent)

    def _create_exclusive(self, key: str, tmp: Path) -> int:
        error: FileNotFoundError | None = None
        for _ in range(_CREATE_ATTEMPTS):
            try:
                tmp.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as exc:
                raise InvalidKeyError(
                    f"object key {key!r} needs a folder where an object already exists"
                ) from exc
            try:
                # 0o666 lets the process umask decide permissions, as for any ordinary file.
                return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileNotFoundError as exc:
                error = exc
        assert error is not None
        raise error

    def get_bytes(self, key: str) -> bytes:
        """Read the key's file; KeyNotFoundError if absent."""
        path = self._path(key)
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyNotFoundError(key) from None

    def exists(self, key: str) -> bool:
        """True when the key's file exists."""
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        """Valid keys under the folder ``prefix``, sorted; temp files are skipped."""
        folder = normalize_prefix(prefix)
        base = self.root.joinpath(*folder.split("/")) if folder else self.root
        if not base.is_dir():
            return []
        keys = []
        for dirpath, _dirnames, filenames in os.walk(base):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                # Skips in-flight temp files and anything not written through this API.
                if is_valid_key(key):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> bool:
        """Remove the key's file (its emptied folders stay: the next write would recreate them)."""
        path = self._path(key)
        if path.is_dir():  # a folder of keys is not an object
            return False
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix`` and prune emptied folders; return how many keys."""
        folder = normalize_prefix(prefix)
        deleted = 0
        for key in self.list(folder):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(key))
                deleted += 1
        base = self.root.joinpath(*folder.split("/")) if folder else self.root
        if base.is_dir():
            # Prune folders left empty; non-empty ones (a writer's temp file, a concurrent put) stay.
            for dirpath, _dirnames, _filenames in os.walk(base, topdown=False):
                if Path(dirpath) != self.root:
                    with contextlib.suppress(OSError):
                        os.rmdir(dirpath)
        return deleted


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
