"""``StoreProgress``: a stage's progress in ``stages/progress.json``, throttled, best-effort.

Real: a :class:`LocalStore` in a temporary folder. Fake: the clocks (so the throttle is tested
without sleeping) and, in one test, a store whose every write fails (a full disk, S3 down).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tabular_runner.pipeline import compact_result
from tabular_runner.progress import PROGRESS_KEY, StoreProgress
from tabular_runner.storage.local import LocalStore


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _wall() -> datetime:
    return datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def _read(store: LocalStore) -> dict[str, object]:
    data: dict[str, object] = json.loads(store.get_bytes(PROGRESS_KEY))
    return data


@pytest.mark.parametrize(
    ("calls", "expected_done", "expected_writes"),
    [
        # (seconds since start, done, total): first call written at once
        ([(0.0, 1, 300)], 1, 1),
        # within 5 s: held back
        ([(0.0, 1, 300), (1.0, 2, 300), (4.9, 3, 300)], 1, 1),
        # 5 s after the last write: written
        ([(0.0, 1, 300), (1.0, 2, 300), (5.0, 3, 300)], 3, 2),
        # the final call (done == total) is written even inside the interval
        ([(0.0, 1, 300), (0.1, 300, 300)], 300, 2),
        # the interval counts from the last write, not the last call
        ([(0.0, 1, 9), (4.0, 2, 9), (6.0, 3, 9), (9.0, 4, 9), (11.0, 5, 9)], 5, 3),
    ],
    ids=["first", "throttled", "after-interval", "final", "from-last-write"],
)
def test_throttle(
    tmp_path: Path,
    calls: list[tuple[float, int, int]],
    expected_done: int,
    expected_writes: int,
) -> None:
    # Setup
    clock = FakeClock()
    store = LocalStore(tmp_path)
    progress = StoreProgress(store, interval_s=5.0, clock=clock, now=_wall)
    start = clock.now

    # Run
    for at, done, total in calls:
        clock.now = start + at
        progress("train", done, total, f"epoch {done}/{total}")

    # Assert
    document = _read(store)
    assert document["done"] == expected_done
    assert progress.writes == expected_writes


def test_document_shape(tmp_path: Path) -> None:
    # Setup
    store = LocalStore(tmp_path)
    progress = StoreProgress(store, clock=FakeClock(), now=_wall)

    # Run
    progress("train", 12, 300, "epoch 12/300")

    # Assert
    assert _read(store) == {
        "stage": "train",
        "done": 12,
        "total": 300,
        "message": "epoch 12/300",
        "updatedAt": "2025-01-02T03:04:05+00:00",
    }
    assert store.list() == [PROGRESS_KEY]


def test_flush_writes_the_last_held_back_call(tmp_path: Path) -> None:
    # Setup
    clock = FakeClock()
    store = LocalStore(tmp_path)
    progress = StoreProgress(store, clock=clock, now=_wall)
    progress("generate", 0, 3, "loading model")
    clock.now += 1
    progress("generate", 2, 3, "enforcing constraints")
    assert _read(store)["done"] == 0

    # Run
    progress.flush()
    progress.flush()  # nothing pending any more: no second write

    # Assert
    assert _read(store)["message"] == "enforcing constraints"
    assert progress.writes == 2


class FailingStore(LocalStore):
    """A store whose writes all fail, as on a full disk or with S3 down."""

    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str:
        raise OSError(28, "No space left on device")


def test_a_failing_write_never_fails_the_stage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Setup
    progress = StoreProgress(FailingStore(tmp_path), clock=FakeClock(), now=_wall)

    # Run
    progress("train", 1, 300, "epoch 1/300")
    progress("train", 300, 300, "epoch 300/300")
    progress.flush()

    # Assert
    assert progress.writes == 0
    assert "could not write stages/progress.json" in caplog.text


def test_compact_result_drops_the_largest_detail_first() -> None:
    # Setup: a multi-table generate result with a big per-table detail and a small one
    result = {
        "stage": "generate",
        "rowsGenerated": 10,
        "tables": {"a": 4, "b": 6},
        "outputs": {f"table_{i}": f"s3://bucket/tab-jobs/x/table_{i}.parquet" for i in range(200)},
    }

    # Run
    text = compact_result(result)

    # Assert
    compact = json.loads(text)
    assert len(text.encode()) <= 4096
    assert compact["tables"] == {"a": 4, "b": 6}
    assert "outputs" not in compact
    assert compact["truncated"] is True
