"""Smoke tests of the platform's real servers: PostgreSQL, Kafka (KRaft) and SeaweedFS (S3).

Real: every server and client library. Each fixture starts only its own server unless
``make testenv`` is running (then it attaches).
"""

from __future__ import annotations

import asyncio
import io
import urllib.request
import uuid

import pytest

from tests.platform.services import S3Server

pytestmark = pytest.mark.integration


def test_postgres_accepts_a_connection_and_a_query(postgres_dsn: str) -> None:
    psycopg = pytest.importorskip("psycopg")
    # Run
    with psycopg.connect(postgres_dsn, connect_timeout=10) as conn:
        conn.execute("CREATE TEMP TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        rows = conn.execute("SELECT v FROM t ORDER BY id").fetchall()
        version = conn.execute("SHOW server_version").fetchone()
    # Assert
    assert rows == [("a",), ("b",)]
    assert version is not None


def test_database_url_is_sqlalchemy_psycopg(database_url: str) -> None:
    assert database_url.startswith("postgresql+psycopg://")
    assert "@127.0.0.1:" in database_url


def test_kafka_round_trips_a_message_with_an_idempotent_producer(kafka_bootstrap: str) -> None:
    aiokafka = pytest.importorskip("aiokafka")
    topic = f"smoke-{uuid.uuid4().hex[:8]}"

    async def round_trip() -> list[bytes]:
        producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all"
        )
        await producer.start()
        try:
            for i in range(3):
                await producer.send_and_wait(topic, f"event-{i}".encode(), key=b"k")
        finally:
            await producer.stop()
        consumer = aiokafka.AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            auto_offset_reset="earliest",
            group_id=f"g-{topic}",
        )
        await consumer.start()
        try:
            got: list[bytes] = []
            async with asyncio.timeout(30):
                async for msg in consumer:
                    got.append(msg.value)
                    if len(got) == 3:
                        break
            await consumer.commit()
        finally:
            await consumer.stop()
        return got

    assert asyncio.run(round_trip()) == [b"event-0", b"event-1", b"event-2"]


def test_s3_put_get_and_presigned_get(s3_server: S3Server) -> None:
    minio = pytest.importorskip("minio")
    # Setup
    c = minio.Minio(
        s3_server.endpoint,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=s3_server.secure,
        region=s3_server.region,
    )
    bucket = f"smoke-{uuid.uuid4().hex[:8]}"
    c.make_bucket(bucket)
    body = b"synthetic,rows\n1,2\n"
    # Run
    c.put_object(bucket, "a/b.csv", io.BytesIO(body), len(body), content_type="text/csv")
    got = c.get_object(bucket, "a/b.csv")
    try:
        data = got.read()
    finally:
        got.close()
        got.release_conn()
    url = c.presigned_get_object(bucket, "a/b.csv")
    with urllib.request.urlopen(url, timeout=10) as r:
        presigned = r.read()
    # Assert
    assert data == body
    assert presigned == body
    assert url.startswith(s3_server.url)


def test_s3_rejects_wrong_credentials(s3_server: S3Server) -> None:
    minio = pytest.importorskip("minio")
    c = minio.Minio(
        s3_server.endpoint,
        access_key="nobody",
        secret_key="wrong-secret-key",
        secure=False,
        region=s3_server.region,
    )
    with pytest.raises(minio.error.S3Error):
        c.list_buckets()
