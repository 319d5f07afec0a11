"""The operator's store: retention rule decisions, presign limits, a store without lifecycle.

What is real: the minio SDK and, for the server that does not implement lifecycle rules, a
local HTTP server that answers like one (``501 NotImplemented`` to ``?lifecycle``; SeaweedFS
implements them, see tests/integration/test_bucket_lifecycle.py). The rest is pure.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from minio.commonconfig import ENABLED, Filter
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from tabular_operator.store import (
    NoStore,
    S3Store,
    StoreNotConfiguredError,
    presign_ttl,
    retention_change,
    retention_rule,
)

pytestmark = pytest.mark.unit

OTHER = Rule(ENABLED, rule_filter=Filter(prefix="x/"), rule_id="x", expiration=Expiration(days=2))

RETENTION_CASES = [
    # (id, existing rules, days, expected change: None = leave the bucket alone)
    ("fresh-bucket", None, 30, [retention_rule(30)]),
    ("already-kept", [retention_rule(30)], 30, None),
    ("days-changed", [OTHER, retention_rule(30)], 7, [OTHER, retention_rule(7)]),
    ("others-kept", [OTHER], 30, [OTHER, retention_rule(30)]),
    ("off-removes-ours", [OTHER, retention_rule(30)], 0, [OTHER]),
    ("off-last-rule", [retention_rule(30)], 0, []),
    ("off-nothing-there", None, 0, None),
    ("off-others-only", [OTHER], 0, None),
]


@pytest.mark.parametrize(
    ("existing", "days", "expected"),
    [case[1:] for case in RETENTION_CASES],
    ids=[case[0] for case in RETENTION_CASES],
)
def test_retention_change(existing: list[Rule] | None, days: int, expected: list[Rule]) -> None:
    config = LifecycleConfig(existing) if existing is not None else None
    assert retention_change(config, days) == expected


@pytest.mark.parametrize(
    ("ttl", "ok"),
    [(1, True), (3600, True), (604800, True), (0, False), (-1, False), (604801, False)],
    ids=["1s", "1h", "7d", "zero", "negative", "past-7d"],
)
def test_presign_ttl_is_one_second_to_seven_days(ttl: int, ok: bool) -> None:
    if ok:
        assert presign_ttl(ttl) == timedelta(seconds=ttl)
    else:
        with pytest.raises(ValueError, match="1 to 604800 seconds"):
            presign_ttl(ttl)


def test_presigning_needs_no_server() -> None:
    # Setup: nothing listens on port 9
    store = S3Store("http://127.0.0.1:9", "ak", "sk")

    # Run
    url = store.presign_get("s3://aumos-tab-team-a/tab-jobs/u1", "output.csv", 3600)

    # Assert
    assert url.startswith("http://127.0.0.1:9/aumos-tab-team-a/tab-jobs/u1/output.csv?")
    assert "X-Amz-Expires=3600" in url


def test_urls_are_signed_for_the_public_endpoint_when_one_is_set() -> None:
    store = S3Store("http://minio.minio:9000", "ak", "sk", public_endpoint="https://s3.example.com")

    url = store.presign_get("s3://aumos-tab-team-a/tab-jobs/u1", "output.csv", 60)

    assert url.startswith("https://s3.example.com/aumos-tab-team-a/tab-jobs/u1/output.csv?")
    assert "minio.minio" not in url


def test_without_a_store_nothing_is_listed_or_signed() -> None:
    store = NoStore()
    assert store.list_keys("s3://b/tab-jobs/u1") == []
    with pytest.raises(StoreNotConfiguredError, match="no object-store credentials"):
        store.presign_get("s3://b/tab-jobs/u1", "output.csv", 60)
    with pytest.raises(ValueError):
        store.presign_get("s3://b/tab-jobs/u1", "output.csv", 0)


class _NoLifecycle(BaseHTTPRequestHandler):
    """An S3 server whose buckets all exist and which does not implement lifecycle rules."""

    requests: list[str] = []

    def do_HEAD(self) -> None:  # noqa: N802 - the http.server protocol
        self.requests.append(f"HEAD {self.path}")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self.requests.append(f"GET {self.path}")
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code>'
            b"<Message>A header you provided implies functionality that is not implemented"
            b"</Message></Error>"
        )
        self.send_response(501)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet."""


@pytest.fixture
def no_lifecycle_server() -> Iterator[str]:
    _NoLifecycle.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoLifecycle)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_store_without_lifecycle_rules_warns_once_and_keeps_going(
    no_lifecycle_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Setup
    store = S3Store(no_lifecycle_server, "ak", "sk", retention_days=30)

    # Run
    with caplog.at_level(logging.DEBUG, logger="tabular_operator.store"):
        store.ensure_bucket("aumos-tab-team-a")
        store.ensure_bucket("aumos-tab-team-b")

    # Assert: both buckets are ready, one warning, and lifecycle was asked about only once
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "NotImplemented" in warnings[0] and "tab-jobs/" in warnings[0]
    assert [r for r in _NoLifecycle.requests if "lifecycle" in r] == [
        "GET /aumos-tab-team-a?lifecycle="
    ]
    assert "HEAD /aumos-tab-team-b" in _NoLifecycle.requests
