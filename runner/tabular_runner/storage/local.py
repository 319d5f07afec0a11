"""``LocalStore``: the :class:`~tabular_runner.storage.base.ArtifactStore` port on a directory.

Writes go to a hidden temporary file in the target's own directory and are then renamed over
the target with :func:`os.replace`. A rename within one file system is atomic on POSIX, so a
reader sees either the old object or the new one, never half of one; a write that fails
midway (disk full, a killed process) leaves the old object untouched and its temporary file
removed. The temporary file must live in the same directory: a rename across file systems is
a copy and would not be atomic.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

_TMP_PREFIX = ".tmp-"
"""Temporary files start with this; :meth:`LocalStore.list` never reports them."""


def _read_umask() -> int:
    # os.umask can only be read by setting it; do it once, at import time, while the
    # process is still single-threaded, rather than racing other threads on every write.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def validate_key(key: str) -> str:
    """Check that ``key`` is a relative, ``/``-separated key that stays under the store's root.

    Args:
        key: The key to check, e.g. ``stages/train.json``.

    Returns:
        The key, unchanged.

    Raises:
        ValueError: The key is empty, absolute, contains ``..``, ``.``, empty segments or a
            backslash, or names a temporary file of the store.
    """
    if not key:
        raise ValueError("empty key")
    if "\\" in key or "\x00" in key:
        raise ValueError(f"invalid key {key!r}: use '/' as the separator, no NUL")
    if key.startswith("/") or PurePosixPath(key).is_absolute():
        raise ValueError(f"invalid key {key!r}: keys are relative to the store's root")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"invalid key {key!r}: no empty, '.' or '..' segments")
    if parts[-1].startswith(_TMP_PREFIX):
        raise ValueError(f"invalid key {key!r}: names starting {_TMP_PREFIX!r} are reserved")
    return key


class LocalStore:
    """A flat key → bytes store in a local directory (the embedded, no-cluster mode).

    Args:
        root: The directory; made absolute at once and created on the first write.
    """

    def __init__(self, root: Path) -> None:
        self._root = Path(os.path.abspath(root))

    def __repr__(self) -> str:
        return f"LocalStore({str(self._root)!r})"

    @property
    def root(self) -> Path:
        """The absolute directory of the store."""
        return self._root

    @property
    def uri(self) -> str:
        """The root as ``file:///abs/dir``."""
        return self._root.as_uri()

    def path(self, key: str) -> Path:
        """Return the local path of ``key`` (which need not exist).

        Raises:
            ValueError: ``key`` is not a valid key (see :func:`validate_key`).
        """
        return self._root.joinpath(*validate_key(key).split("/"))

    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str:
        """Store ``data`` at ``key`` atomically; return the object's ``file://`` uri.

        ``content_type`` is accepted for the port's sake; a file system does not keep it.
        """
        target = self.path(key)
        with _atomic_target(target) as fh:
            fh.write(data)
        return target.as_uri()

    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> str:
        """Copy the local file ``path`` to ``key`` atomically; return the object's uri.

        Raises:
            FileNotFoundError: ``path`` does not exist.
        """
        target = self.path(key)
        # Open the source first: a missing source must not even create a temporary file.
        with open(path, "rb") as src:
            with _atomic_target(target) as fh:
                shutil.copyfileobj(src, fh, length=1 << 20)
        return target.as_uri()

    def get_bytes(self, key: str) -> bytes:
        """Return the bytes at ``key``.

        Raises:
            FileNotFoundError: No object at ``key``.
        """
        target = self.path(key)
        if not target.is_file():
            raise FileNotFoundError(f"no object at {target.as_uri()}")
        return target.read_bytes()

    def get_file(self, key: str, path: Path) -> Path:
        """Copy ``key`` to the local file ``path`` (atomically) and return ``path``.

        Raises:
            FileNotFoundError: No object at ``key``.
        """
        source = self.path(key)
        if not source.is_file():
            raise FileNotFoundError(f"no object at {source.as_uri()}")
        with open(source, "rb") as src:
            with _atomic_target(Path(path)) as fh:
                shutil.copyfileobj(src, fh, length=1 << 20)
        return Path(path)

    def exists(self, key: str) -> bool:
        """True if an object is stored at ``key``."""
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove ``key`` if present (no error if absent)."""
        target = self.path(key)
        if target.is_dir():
            # A key that is a "folder" of other keys is not an object: nothing to delete.
            return
        target.unlink(missing_ok=True)

    def list(self, prefix: str = "") -> list[str]:
        """Keys that start with ``prefix`` (a plain string prefix, as in S3), sorted."""
        if not self._root.is_dir():
            return []
        keys: list[str] = []
        for dirpath, _dirnames, filenames in os.walk(self._root):
            rel = Path(dirpath).relative_to(self._root)
            for name in filenames:
                if name.startswith(_TMP_PREFIX):
                    continue
                key = (rel / name).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)


@contextmanager
def _atomic_target(target: Path) -> Iterator[BinaryIO]:
    """Yield a file handle whose content replaces ``target`` only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            # fsync before the rename: otherwise a crash can leave the new name pointing at
            # an empty file on some file systems (ext4 with delalloc, xfs).
            os.fsync(fh.fileno())
        # mkstemp creates the file 0600; give it the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
