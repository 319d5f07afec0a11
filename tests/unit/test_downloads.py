"""What a finished job offers for download, for how long, under which Secret name (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tabular_operator import downloads

pytestmark = pytest.mark.unit


def test_only_the_outputs_and_reports_are_offered() -> None:
    keys = [
        "analysis.json",
        "model.pkl",
        "stages/train.json",
        "stages/progress.json",
        "output.parquet",
        "constraints.json",
        "report.json",
        "report.html",
        "flights.csv",
        "weird name.csv",
    ]
    assert downloads.files(keys) == [
        "constraints.json",
        "flights.csv",
        "output.parquet",
        "report.html",
        "report.json",
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, 3600),
        ({"output": {}}, 3600),
        ({"output": {"downloadTtlSeconds": 60}}, 60),
        ({"output": {"downloadTtlSeconds": 10**7}}, 604800),
    ],
)
def test_the_ttl_is_the_jobs_or_the_default_and_never_past_seven_days(
    spec: dict[str, object] | None, expected: int
) -> None:
    assert downloads.ttl_seconds(spec, 3600) == expected


def test_secret_names_fit_and_never_collide() -> None:
    assert downloads.secret_name("adult") == "adult-download"
    a, b = downloads.secret_name("x" * 250 + "a"), downloads.secret_name("x" * 250 + "b")
    assert len(a) <= 253 and len(b) <= 253 and a != b
    assert a.endswith("-download")


def test_status_names_the_secret_and_the_expiry_never_a_url() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    expiry = downloads.expires_at(now, 3600)
    assert expiry == "2026-12-01T13:00:00Z"
    out = downloads.status("j-download", ["report.html"], expiry, None)
    assert out == {"secretName": "j-download", "files": ["report.html"], "expiresAt": expiry}
    assert downloads.status("j-download", [], expiry, "r1")["refreshedFor"] == "r1"
