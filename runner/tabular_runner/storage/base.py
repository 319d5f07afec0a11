"""The ``ArtifactStore`` port: where stage inputs and outputs live.

Keys are relative, ``/``-separated paths (``model.pkl``, ``stages/train.json``). Writes are
atomic: a reader never sees half an object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tabular_runner.errors import TabularError


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


def put_json(store: ArtifactStore, key: str, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON under ``key``."""
    store.put_bytes(key, json.dumps(payload, indent=2, default=str).encode(), "application/json")


def get_json(store: ArtifactStore, key: str, needed_by: str) -> dict[str, Any]:
    """Read the JSON artifact ``key`` that an earlier stage wrote.

    Raises:
        TabularError: naming ``needed_by`` and the missing key.
    """
    try:
        data: dict[str, Any] = json.loads(store.get_bytes(key))
    except FileNotFoundError:
        raise TabularError(
            f"{needed_by}: artifact {key!r} is missing from {store.uri}; "
            "run the earlier stage first"
        ) from None
    return data
