"""The ``ArtifactStore`` port: where stage inputs and outputs live.

Keys are relative, ``/``-separated paths (``model.pkl``, ``stages/train.json``). Writes are
atomic: a reader never sees half an object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class ArtifactStore(Protocol):
    """A flat key → bytes store rooted at one prefix (a directory or an S3 prefix)."""

    @property
    def uri(self) -> str:
        """The root, as ``file:///abs/dir`` or ``s3://bucket/prefix``."""

    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str:
        """Store ``data`` at ``key`` atomically; return the object's uri."""

    def get_bytes(self, key: str) -> bytes:
        """Return the bytes at ``key``; raise ``FileNotFoundError`` if absent."""

    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> str:
        """Upload a local file to ``key`` atomically; return the object's uri."""

    def get_file(self, key: str, path: Path) -> Path:
        """Download ``key`` to ``path``; raise ``FileNotFoundError`` if absent."""

    def exists(self, key: str) -> bool:
        """True if ``key`` is present."""

    def delete(self, key: str) -> None:
        """Remove ``key`` if present (no error if absent)."""

    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix``, sorted."""
