"""S3Store and s3:// table IO against a real S3 server.

What is real: the S3 server (SeaweedFS ``weed mini`` on 127.0.0.1, from the platform plugin's
``s3_server`` fixture), the minio SDK, plain HTTP for presigned URLs. Nothing is mocked. The
tests marked ``unit`` at the top need no server: endpoint parsing and presigning are local.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tabular_runner import datasets
from tabular_runner.errors import TabularError, UserInputError
from tabular_runner.spec import DataFormat
from tabular_runner.storage import ArtifactStore, open_store
from tabular_runner.storage.s3 import S3Settings, S3Store, parse_endpoint
from tabular_runner.storage.tables import read_table, table_bytes, write_table

# --------------------------------------------------------------------------- no server needed


@pytest.mark.unit
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://127.0.0.1:8333", ("127.0.0.1:8333", False)),
        ("https://s3.example.com", ("s3.example.com", True)),
        ("https://s3.example.com:9000/", ("s3.example.com:9000", True)),
        ("minio.minio.svc:9000", ("minio.minio.svc:9000", True)),
        ("  http://h:1  ", ("h:1", False)),
    ],
    ids=["http", "https", "https-trailing-slash", "bare-host-port", "whitespace"],
)
def test_parse_endpoint(value: str, expected: tuple[str, bool]) -> None:
    assert parse_endpoint(value) == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    "value",
    ["ftp://h:21", "http://h:1/bucket", "http://user:pw@h:1", "", "h:1/path"],
    ids=["ftp", "path", "credentials", "empty", "bare-with-path"],
)
def test_parse_endpoint_refuses(value: str) -> None:
    with pytest.raises(UserInputError) as info:
        parse_endpoint(value)
    assert info.value.field == "AUMOS_S3_ENDPOINT"


@pytest.mark.unit
def test_settings_from_env() -> None:
    # Run
    settings = S3Settings.from_env(
        {
            "AUMOS_S3_ENDPOINT": "http://127.0.0.1:9000",
            "AUMOS_S3_ACCESS_KEY": "ak",
            "AUMOS_S3_SECRET_KEY": "sk",
            "AUMOS_S3_REGION": "eu-west-1",
        }
    )

    # Assert
    assert settings == S3Settings("127.0.0.1:9000", "ak", "sk", secure=False, region="eu-west-1")
    assert "sk" not in repr(settings)


@pytest.mark.unit
def test_settings_from_env_unset_is_none() -> None:
    assert S3Settings.from_env({"AUMOS_S3_REGION": "eu-west-1", "HOME": "/root"}) is None


@pytest.mark.unit
def test_settings_from_env_partial_names_the_missing_variables() -> None:
    with pytest.raises(UserInputError) as info:
        S3Settings.from_env({"AUMOS_S3_ENDPOINT": "http://h:1", "AUMOS_S3_ACCESS_KEY": "ak"})
    assert info.value.field == "AUMOS_S3_SECRET_KEY"
    assert "AUMOS_S3_SECRET_KEY" in info.value.problem


@pytest.mark.unit
def test_presign_needs_no_network() -> None:
    # Setup: nothing listens on port 9 of this address; presigning must not try to connect.
    store = S3Store("bucket", "jobs/j1", S3Settings("127.0.0.1:9", "ak", "sk", False).client())

    # Run
    url = store.presign_get("output.parquet")

    # Assert
    assert url.startswith("http://127.0.0.1:9/bucket/jobs/j1/output.parquet?")
    assert "X-Amz-Expires=3600" in url
    assert store.uri == "s3://bucket/jobs/j1"
    with pytest.raises(ValueError):
        store.presign_get("output.parquet", expires=timedelta(days=8))


# --------------------------------------------------------------------------- real server

integration = pytest.mark.integration


@pytest.fixture
def settings(s3_server: Any) -> S3Settings:
    return S3Settings(
        endpoint=s3_server.endpoint,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=s3_server.secure,
        region=s3_server.region,
    )


@pytest.fixture(scope="module")
def bucket(s3_server: Any) -> str:
    """One bucket for this module; each test works under its own prefix.

    Not a bucket per test: SeaweedFS gives every bucket its own volumes, and the test server
    has few volume slots, so many buckets would exhaust it.
    """
    settings = S3Settings(
        s3_server.endpoint,
        s3_server.access_key,
        s3_server.secret_key,
        s3_server.secure,
        s3_server.region,
    )
    name = f"t-{uuid.uuid4().hex[:12]}"
    S3Store(name, "", settings.client()).ensure_bucket()
    return name


@pytest.fixture
def prefix() -> str:
    return f"tab-jobs/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(settings: S3Settings, bucket: str, prefix: str) -> S3Store:
    return S3Store(bucket, prefix, settings.client())


@pytest.fixture(scope="module")
def adult_sample() -> pd.DataFrame:
    return datasets.load("adult").sample(500, random_state=3).reset_index(drop=True)


@integration
def test_put_get_list_delete(
    store: S3Store, settings: S3Settings, bucket: str, prefix: str
) -> None:
    # Setup: a neighbour store in the same bucket must stay invisible.
    neighbour = S3Store(bucket, prefix + "-2", settings.client())
    neighbour.put_bytes("model.pkl", b"other")

    # Run
    uri = store.put_bytes("stages/train.json", b'{"ok":true}', content_type="application/json")
    store.put_bytes("model.pkl", b"\x00" * 10)

    # Assert
    assert isinstance(store, ArtifactStore)
    assert uri == f"s3://{bucket}/{prefix}/stages/train.json"
    assert store.get_bytes("stages/train.json") == b'{"ok":true}'
    assert store.list() == ["model.pkl", "stages/train.json"]
    assert store.list("stages/") == ["stages/train.json"]
    assert store.exists("model.pkl") and not store.exists("absent")
    store.delete("model.pkl")
    store.delete("model.pkl")  # absent: still no error
    assert store.list() == ["stages/train.json"]
    assert neighbour.get_bytes("model.pkl") == b"other"
    with pytest.raises(FileNotFoundError):
        store.get_bytes("model.pkl")


@integration
def test_put_file_get_file_multipart(store: S3Store, tmp_path: Path) -> None:
    # Setup: above the SDK's 5 MiB part size, so the upload is multipart.
    src = tmp_path / "model.bin"
    src.write_bytes(bytes(range(256)) * (24 * 1024 + 7))

    # Run
    store.put_file("model.bin", src)
    out = store.get_file("model.bin", tmp_path / "dl" / "model.bin")

    # Assert
    assert out.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.bin"]
    with pytest.raises(FileNotFoundError):
        store.get_file("absent.bin", tmp_path / "absent.bin")
    with pytest.raises(FileNotFoundError):
        store.put_file("x", tmp_path / "no-such-file")


@integration
def test_overwrite_is_atomic_for_concurrent_readers(store: S3Store) -> None:
    # Setup
    size = 3 << 20
    versions = [b"a" * size, b"b" * size]
    store.put_bytes("output.csv", versions[0])
    seen: list[bytes] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                seen.append(store.get_bytes("output.csv"))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    # Run: overwrite back and forth while another thread reads.
    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(6):
        store.put_bytes("output.csv", versions[(i + 1) % 2])
    done.set()
    thread.join(timeout=60)

    # Assert: every read is one whole version, never a mix or a truncation.
    assert errors == []
    assert seen
    assert all(data in versions for data in seen)
    assert store.get_bytes("output.csv") == versions[0]


@integration
def test_presigned_get_with_plain_http(store: S3Store) -> None:
    # Setup
    store.put_bytes("report.html", b"<h1>report</h1>", content_type="text/html")

    # Run
    url = store.presign_get("report.html")
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read()

    # Assert
    assert body == b"<h1>report</h1>"
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(url.split("?", 1)[0], timeout=10)
    assert unsigned.value.code == 403


@integration
@pytest.mark.parametrize(
    "tamper",
    [
        lambda url: url.replace("report.html", "secret.html"),
        lambda url: url[:-1] + ("0" if url[-1] != "0" else "1"),
        lambda url: url.replace("X-Amz-Expires=3600", "X-Amz-Expires=7200"),
    ],
    ids=["other-key", "signature", "longer-expiry"],
)
def test_tampered_presigned_url_is_refused(store: S3Store, tamper: Any) -> None:
    # Setup
    store.put_bytes("report.html", b"public")
    store.put_bytes("secret.html", b"private")
    url = tamper(store.presign_get("report.html"))

    # Run
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=10)

    # Assert
    assert info.value.code == 403


@integration
def test_expired_presigned_url_is_refused(store: S3Store) -> None:
    # Setup
    store.put_bytes("output.csv", b"a\n1\n")
    url = store.presign_get("output.csv", expires=timedelta(seconds=1))

    # Run
    time.sleep(2.5)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=10)

    # Assert
    assert info.value.code == 403


@integration
def test_missing_bucket_is_a_user_input_error(settings: S3Settings) -> None:
    # Setup: reads only; SeaweedFS creates a missing bucket on PUT for an admin identity.
    missing = f"absent-{uuid.uuid4().hex[:8]}"
    store = S3Store(missing, "p", settings.client())

    # Run / Assert
    for operation in (
        lambda: store.get_bytes("k"),
        lambda: store.list(),
        lambda: store.delete("k"),
    ):
        with pytest.raises(UserInputError) as info:
            operation()
        assert info.value.problem == f"bucket {missing!r} does not exist"
        assert missing in info.value.hint


@integration
def test_ensure_bucket_is_idempotent(settings: S3Settings) -> None:
    # Setup
    name = f"t-{uuid.uuid4().hex[:12]}"
    store = S3Store(name, "", settings.client())

    # Run
    store.ensure_bucket()
    store.ensure_bucket()

    # Assert
    assert store.put_bytes("k", b"v") == f"s3://{name}/k"


@integration
def test_wrong_secret_is_a_user_input_error(settings: S3Settings, bucket: str) -> None:
    # Setup
    bad = S3Settings(
        settings.endpoint,
        settings.access_key,
        "wrong" + settings.secret_key,
        settings.secure,
        settings.region,
    )

    # Run
    with pytest.raises(UserInputError) as info:
        S3Store(bucket, "", bad.client()).put_bytes("k", b"x")

    # Assert
    assert "refused" in info.value.problem
    assert "AUMOS_S3_SECRET_KEY" in info.value.hint


@integration
def test_tls_to_plain_http_server_says_so(settings: S3Settings, bucket: str) -> None:
    # Setup
    tls = S3Settings(
        settings.endpoint, settings.access_key, settings.secret_key, True, settings.region
    )

    # Run
    with pytest.raises(UserInputError) as info:
        S3Store(bucket, "", tls.client()).get_bytes("k")

    # Assert
    assert info.value.field == "AUMOS_S3_ENDPOINT"
    assert "http://host:port" in info.value.hint


@integration
def test_unreachable_server_is_transient(settings: S3Settings) -> None:
    # Setup: port 9 (discard) is closed on the loopback address.
    down = S3Settings("127.0.0.1:9", settings.access_key, settings.secret_key, False)
    started = time.monotonic()

    # Run
    with pytest.raises(TabularError) as info:
        S3Store("bucket", "", down.client()).get_bytes("k")

    # Assert: not a permanent user error, so the operator retries the stage.
    assert not isinstance(info.value, UserInputError)
    assert "cannot reach the S3 server" in str(info.value)
    assert time.monotonic() - started < 15


@integration
@pytest.mark.parametrize("fmt", list(DataFormat), ids=[f.value for f in DataFormat])
def test_read_table_from_s3(
    settings: S3Settings, bucket: str, prefix: str, adult_sample: pd.DataFrame, fmt: DataFormat
) -> None:
    # Setup
    store = open_store(f"s3://{bucket}/{prefix}", s3=settings)
    uri = write_table(adult_sample, store, f"adult.{fmt.value}", fmt)

    # Run
    frame = read_table(uri, fmt, s3=settings)

    # Assert
    assert uri == f"s3://{bucket}/{prefix}/adult.{fmt.value}"
    pd.testing.assert_frame_equal(frame, adult_sample, check_dtype=False)


@integration
@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("absent.csv", "object not found: s3://{bucket}/{prefix}/absent.csv"),
        ("empty.csv", "s3://{bucket}/{prefix}/empty.csv is empty"),
        ("data.csv", "looks like parquet, not csv"),
    ],
    ids=["missing-object", "empty-object", "parquet-bytes-as-csv"],
)
def test_read_table_bad_s3_object(
    settings: S3Settings,
    bucket: str,
    prefix: str,
    adult_sample: pd.DataFrame,
    path: str,
    problem: str,
) -> None:
    # Setup
    store = S3Store(bucket, prefix, settings.client())
    store.put_bytes("empty.csv", b"")
    store.put_bytes("data.csv", table_bytes(adult_sample.head(5), DataFormat.PARQUET))

    # Run
    with pytest.raises(UserInputError) as info:
        read_table(f"s3://{bucket}/{prefix}/{path}", DataFormat.CSV, s3=settings)

    # Assert
    assert info.value.field == "spec.source.uri"
    assert problem.format(bucket=bucket, prefix=prefix) in info.value.problem


@integration
def test_read_table_missing_bucket_names_field_and_bucket(settings: S3Settings) -> None:
    with pytest.raises(UserInputError) as info:
        read_table("s3://no-such-bucket-aumos/x.csv", DataFormat.CSV, s3=settings)
    assert info.value.field == "spec.source.uri"
    assert "bucket 'no-such-bucket-aumos' does not exist" in info.value.problem
