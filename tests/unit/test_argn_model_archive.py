"""The argn model archive unpacks safely with and without Python's extraction filters.

Debian bookworm's Python 3.11.2 (the images' local base) has no ``tarfile`` filters; 3.11.4+
has. Both paths must extract a model and refuse members outside the workspace or links.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tabular_runner.generators.argn_adapter import _unpack

pytestmark = pytest.mark.unit


def _archive(*members: tuple[str, bytes | None, str | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                payload = data or b""
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


@pytest.fixture(params=["filters", "bookworm-3.11.2"])
def python(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "bookworm-3.11.2":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    return str(request.param)


def test_a_model_unpacks(python: str, tmp_path: Path) -> None:
    _unpack(_archive(("ModelStore/model.pt", b"weights", None)), tmp_path / "w")
    assert (tmp_path / "w" / "ModelStore" / "model.pt").read_bytes() == b"weights"


@pytest.mark.parametrize(
    "member",
    [("../escape.txt", b"x", None), ("ModelStore/link", None, "/etc/passwd")],
    ids=["outside", "symlink"],
)
def test_members_outside_the_workspace_or_links_are_refused(
    python: str, tmp_path: Path, member: tuple[str, bytes | None, str | None]
) -> None:
    with pytest.raises((ValueError, tarfile.TarError)):
        _unpack(_archive(member), tmp_path / "w")
    assert not (tmp_path / "escape.txt").exists()
