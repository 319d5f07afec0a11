"""LocalStore and open_store on a real temporary directory (nothing mocked)."""

from __future__ import annotations

import os
import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tabular_runner.errors import UserInputError
from tabular_runner.storage import ArtifactStore, LocalStore, local_path, open_store
from tabular_runner.storage.local import validate_key

pytestmark = pytest.mark.unit


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Make writes past ``limit`` bytes fail with EFBIG: a real mid-write failure (disk full)."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills us
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_local_store_satisfies_the_port(tmp_path: Path) -> None:
    assert isinstance(LocalStore(tmp_path), ArtifactStore)


def test_put_get_list_delete_roundtrip(tmp_path: Path) -> None:
    # Setup
    store = LocalStore(tmp_path / "root")

    # Run
    uri = store.put_bytes("stages/train.json", b'{"ok": true}')
    store.put_bytes("model.pkl", b"\x00\x01")
    store.put_bytes("stages/generate.json", b"{}")

    # Assert
    assert uri == (tmp_path / "root" / "stages" / "train.json").as_uri()
    assert store.get_bytes("stages/train.json") == b'{"ok": true}'
    assert store.list() == ["model.pkl", "stages/generate.json", "stages/train.json"]
    assert store.list("stages/") == ["stages/generate.json", "stages/train.json"]
    assert store.list("stages/t") == ["stages/train.json"]
    assert store.exists("model.pkl")
    store.delete("model.pkl")
    store.delete("model.pkl")  # absent: no error
    assert not store.exists("model.pkl")
    with pytest.raises(FileNotFoundError):
        store.get_bytes("model.pkl")


def test_overwrite_replaces_content(tmp_path: Path) -> None:
    # Setup
    store = LocalStore(tmp_path)
    store.put_bytes("a.csv", b"x\n1\n" * 1000)

    # Run
    store.put_bytes("a.csv", b"x\n2\n")

    # Assert
    assert store.get_bytes("a.csv") == b"x\n2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_put_file_and_get_file(tmp_path: Path) -> None:
    # Setup
    store = LocalStore(tmp_path / "store")
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 << 20))

    # Run
    store.put_file("blobs/big.bin", src)
    out = store.get_file("blobs/big.bin", tmp_path / "out" / "copy.bin")

    # Assert
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(FileNotFoundError):
        store.get_file("blobs/absent.bin", tmp_path / "never.bin")
    assert not (tmp_path / "never.bin").exists()


def test_failed_write_leaves_old_object_and_no_partial_file(tmp_path: Path) -> None:
    # Setup
    store = LocalStore(tmp_path)
    store.put_bytes("output.csv", b"old")
    big = b"y" * (4 << 20)

    # Run: the write fails with EFBIG after 1 MiB has reached the temporary file.
    with file_size_limit(1 << 20), pytest.raises(OSError) as info:
        store.put_bytes("output.csv", big)

    # Assert
    assert info.value.errno is not None
    assert store.get_bytes("output.csv") == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["output.csv"]
    assert store.list() == ["output.csv"]


def test_failed_put_file_from_missing_source_changes_nothing(tmp_path: Path) -> None:
    # Setup
    store = LocalStore(tmp_path / "s")
    store.put_bytes("k", b"old")

    # Run
    with pytest.raises(FileNotFoundError):
        store.put_file("k", tmp_path / "absent")

    # Assert
    assert store.get_bytes("k") == b"old"
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["k"]


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../escape", "a/../../b", "a//b", "./a", "a/.", "a\\b", ".tmp-x.part"],
    ids=[
        "empty",
        "absolute",
        "dotdot",
        "inner-dotdot",
        "empty-segment",
        "dot",
        "trailing-dot",
        "backslash",
        "reserved-temp-name",
    ],
)
def test_invalid_keys_are_refused(tmp_path: Path, key: str) -> None:
    # Setup
    store = LocalStore(tmp_path / "root")

    # Run / Assert
    with pytest.raises(ValueError):
        store.put_bytes(key, b"x")
    with pytest.raises(ValueError):
        store.get_bytes(key)
    assert not (tmp_path / "root").exists() or store.list() == []
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize(
    "key",
    ["model.pkl", "stages/train.json", "a/b/c/d.parquet", "..hidden", "x..y"],
    ids=["flat", "nested", "deep", "leading-dots-in-name", "dots-inside"],
)
def test_valid_keys_are_accepted(key: str) -> None:
    assert validate_key(key) == key


def test_uri_is_absolute_file_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Setup: a relative root resolves against the working directory at construction.
    monkeypatch.chdir(tmp_path)

    # Run
    store = LocalStore(Path("out"))

    # Assert
    assert store.uri == f"file://{tmp_path}/out"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///data/x.csv", "/data/x.csv"),
        ("file://data/x.csv", "{base}/data/x.csv"),
        ("file://./data/../x.csv", "{base}/x.csv"),
        ("file://localhost/data/x.csv", "/data/x.csv"),
        ("file:///data/with%20space.csv", "/data/with space.csv"),
    ],
    ids=["absolute", "relative", "dot-relative", "localhost", "percent-encoded"],
)
def test_local_path_resolves_against_base_dir(tmp_path: Path, uri: str, expected: str) -> None:
    assert local_path(uri, base_dir=tmp_path) == Path(expected.format(base=tmp_path))


def test_open_store_file_uri_relative_to_base_dir(tmp_path: Path) -> None:
    # Run
    store = open_store("file://out/job1", base_dir=tmp_path)
    store.put_bytes("report.json", b"{}")

    # Assert
    assert isinstance(store, LocalStore)
    assert (tmp_path / "out" / "job1" / "report.json").read_bytes() == b"{}"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://example.com/x", "unsupported uri"),
        ("s3:///prefix", "no bucket"),
        ("s3://bucket/../x", "invalid key"),
        ("file://", "empty path"),
    ],
    ids=["http", "s3-no-bucket", "s3-dotdot", "file-empty"],
)
def test_open_store_bad_uri(tmp_path: Path, uri: str, message: str) -> None:
    with pytest.raises(UserInputError) as info:
        open_store(uri, base_dir=tmp_path, field="spec.output.uri")
    assert info.value.field == "spec.output.uri"
    assert message in info.value.problem


def test_open_store_s3_without_settings_names_the_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Setup
    for name in ("AUMOS_S3_ENDPOINT", "AUMOS_S3_ACCESS_KEY", "AUMOS_S3_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)

    # Run
    with pytest.raises(UserInputError) as info:
        open_store("s3://bucket/prefix", field="spec.output.uri")

    # Assert
    assert info.value.field == "spec.output.uri"
    for name in ("AUMOS_S3_ENDPOINT", "AUMOS_S3_ACCESS_KEY", "AUMOS_S3_SECRET_KEY"):
        assert name in info.value.hint
