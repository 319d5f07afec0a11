"""The outbox relay against a real PostgreSQL and a real Kafka 4.1 broker (KRaft).

Real: PostgreSQL, Kafka, aiokafka (the relay's producer and the tests' consumer groups), the
CloudEvents SDK (encoding, and decoding on the consumer side), SQLAlchemy, psycopg, the mirror
writing the outbox. Not real: the controller — records are built the way
``JobController._write`` builds them. Each test uses its own tenant, job uids and topic prefix;
the relay sends every tenant's unsent rows, so consumers keep only their tenant's.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from cloudevents.kafka import KafkaMessage, from_structured
from pydantic import SecretStr

from tabular_operator.bootstrap import build_publisher
from tabular_operator.events import EVENT_TYPES, LogPublisher
from tabular_operator.ledger_pg import migrate
from tabular_operator.mirror_pg import PostgresPublisher, event_id
from tabular_operator.relay import OutboxRelay, event_models, event_schemas, topic
from tabular_operator.settings import OperatorSettings

pytestmark = pytest.mark.integration

LIFE = ["QUEUED", "TRAINING", "GENERATING", "VALIDATING", "COMPLETE"]
DOCS = Path(__file__).parents[2] / "docs" / "events"
MODELS = event_models()


@pytest.fixture(scope="module")
def migrated(database_url: str) -> str:
    migrate(database_url)
    return database_url


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}.aumos.tabular"


@pytest.fixture
def publisher(migrated: str) -> Iterator[PostgresPublisher]:
    publisher = PostgresPublisher(migrated)
    yield publisher
    publisher.close()


def relay_for(url: str, bootstrap: str, prefix: str, **kwargs: Any) -> OutboxRelay:
    return OutboxRelay(url, bootstrap, topic_prefix=prefix, poll_interval=0.2, **kwargs)


def record(tenant: str, uid: str, phase: str, **fields: Any) -> dict[str, Any]:
    """A record shaped like the one ``JobController._write`` publishes."""
    return {
        "type": EVENT_TYPES[phase],
        "namespace": tenant,
        "name": f"job-{uid[:8]}",
        "uid": uid,
        "phase": phase,
        "time": "2025-03-12T15:30:00Z",
    } | fields


def new_group(bootstrap: str, name: str) -> AIOKafkaConsumer:
    """A consumer of topic ``name`` in a new consumer group, from the earliest record."""
    return AIOKafkaConsumer(
        name,
        bootstrap_servers=bootstrap,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )


def consume(bootstrap: str, prefix: str, tenant: str, expected: int) -> list[dict[str, Any]]:
    """Events of ``tenant`` read by a fresh consumer group until ``expected`` arrived (+0.5 s).

    Each is validated against the JSON-Schema model of its type; the Kafka key must be the uid.
    """

    async def read() -> list[dict[str, Any]]:
        consumer = new_group(bootstrap, topic(prefix))
        await consumer.start()
        events: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + 30
            settle: float | None = None
            while time.monotonic() < deadline and (settle is None or time.monotonic() < settle):
                batches = await consumer.getmany(timeout_ms=250)
                for messages in batches.values():
                    for m in messages:
                        assert m.value is not None and m.key is not None
                        assert dict(m.headers)["content-type"] == b"application/cloudevents+json"
                        event = json.loads(m.value)
                        MODELS[event["type"]].model_validate(event, strict=False)
                        # The CloudEvents SDK reads it back (it takes the header's media type
                        # for datacontenttype: its own reading of structured mode).
                        sdk = from_structured(KafkaMessage(dict(m.headers), m.key, m.value))
                        assert (sdk["id"], sdk["type"], sdk.data) == (
                            event["id"],
                            event["type"],
                            event["data"],
                        )
                        assert m.key.decode() == event["data"]["uid"] == event["partitionkey"]
                        if event["data"]["tenant"] == tenant:
                            events.append(event)
                if len(events) >= expected and settle is None:
                    settle = time.monotonic() + 0.5
        finally:
            await consumer.stop()
        return events

    return asyncio.run(read())


def dedupe(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for e in events:
        if e["id"] not in seen:
            seen.add(e["id"])
            out.append(e)
    return out


def per_job(events: list[dict[str, Any]]) -> dict[str, list[int]]:
    jobs: dict[str, list[int]] = {}
    for e in events:
        jobs.setdefault(e["data"]["uid"], []).append(e["data"]["seq"])
    return jobs


def test_the_schemas_in_docs_are_the_generated_ones() -> None:
    for full, schema in event_schemas().items():
        path = DOCS / f"{full}.schema.json"
        assert path.exists(), f"missing {path}: run relay.write_schemas(Path('docs/events'))"
        assert json.loads(path.read_text()) == schema, f"{path} is stale: run write_schemas"
    assert len(list(DOCS.glob("*.schema.json"))) == len(EVENT_TYPES)


def test_a_whole_life_reaches_a_consumer_group_in_order_once_per_transition(
    migrated: str, kafka_bootstrap: str, tenant: str, prefix: str
) -> None:
    # Setup: the operator's wiring — the publisher wakes a relay running on its own thread
    relay = relay_for(migrated, kafka_bootstrap, prefix)
    publisher = PostgresPublisher(migrated, on_commit=relay.wake)
    uids = [str(uuid.uuid4()) for _ in range(2)]
    relay.start()
    try:
        # Run: two jobs interleaved, every record replayed, a stale one late
        for phase in LIFE:
            for uid in uids:
                fields = {"rowsGenerated": 500, "fidelityScore": 0.9} if phase == "COMPLETE" else {}
                publisher.publish(record(tenant, uid, phase, **fields))
                publisher.publish(record(tenant, uid, phase, **fields))
        publisher.publish(record(tenant, uids[0], "TRAINING"))
        events = consume(kafka_bootstrap, prefix, tenant, expected=10)
    finally:
        relay.close()
        publisher.close()

    # Assert: each job's five events, in order, once; the mirror at COMPLETE
    assert len(events) == 10
    assert per_job(events) == {uid: [1, 2, 3, 4, 5] for uid in uids}
    first = next(e for e in events if e["data"]["uid"] == uids[0])
    assert first["type"] == "aumos.tabular.generation.job.queued"
    assert first["id"] == str(event_id(uids[0], "QUEUED"))
    last = [e for e in events if e["data"]["uid"] == uids[0]][-1]
    assert last["type"] == "aumos.tabular.generation.job.complete"
    assert last["data"]["rowsGenerated"] == 500 and last["data"]["fidelityScore"] == 0.9
    assert last["subject"] == f"namespaces/{tenant}/synthesisjobs/job-{uids[0][:8]}"
    assert relay.unsent(tenant) == 0
    for uid in uids:
        row = PostgresPublisher(migrated, engine=relay.engine).job(tenant, uid)
        assert row is not None and (row["phase"], row["seq"]) == ("COMPLETE", 5)


def test_without_kafka_the_outbox_grows_and_drains_once_the_broker_is_reachable(
    migrated: str, kafka_bootstrap: str, tenant: str, prefix: str, publisher: PostgresPublisher
) -> None:
    # Setup: a bootstrap address where nothing listens
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    down = relay_for(migrated, dead, prefix, backoff=(0.1, 0.3))
    publisher.on_commit = down.wake
    uid = str(uuid.uuid4())
    down.start()
    try:
        for phase in LIFE:
            publisher.publish(record(tenant, uid, phase))
        time.sleep(1.0)  # several failed passes

        # Assert: nothing lost, nothing marked
        assert down.unsent(tenant) == 5
    finally:
        down.close()

    # Run: a relay that reaches the broker
    up = relay_for(migrated, kafka_bootstrap, prefix)
    try:
        asyncio.run(up.drain_once())
        assert up.unsent(tenant) == 0
    finally:
        up.close()

    # Assert
    events = consume(kafka_bootstrap, prefix, tenant, expected=5)
    assert per_job(events) == {uid: [1, 2, 3, 4, 5]}


def test_a_relay_stopped_between_send_and_mark_resends_and_dedup_leaves_no_duplicate(
    migrated: str, kafka_bootstrap: str, tenant: str, prefix: str, publisher: PostgresPublisher
) -> None:
    # Setup: three transitions of a job in the outbox
    uid = str(uuid.uuid4())
    for phase in LIFE[:3]:
        publisher.publish(record(tenant, uid, phase))
    first = relay_for(migrated, kafka_bootstrap, prefix)

    async def send_without_marking() -> None:
        try:
            await first.send([e for e in await first.fetch() if e.tenant == tenant])
        finally:
            await first._close_producer()  # the process died here: nothing marked

    asyncio.run(send_without_marking())
    first.engine.dispose()
    assert first.unsent(tenant) == 3
    for phase in LIFE[3:]:
        publisher.publish(record(tenant, uid, phase))

    # Run: the next relay
    second = relay_for(migrated, kafka_bootstrap, prefix)
    try:
        asyncio.run(second.drain_once())
        assert second.unsent(tenant) == 0
    finally:
        second.close()

    # Assert: the three re-delivered, and after dedup by id each transition once, in order
    events = consume(kafka_bootstrap, prefix, tenant, expected=8)
    assert per_job(events) == {uid: [1, 2, 3, 1, 2, 3, 4, 5]}
    assert per_job(dedupe(events)) == {uid: [1, 2, 3, 4, 5]}


def test_nothing_of_a_rolled_back_transaction_is_ever_sent(
    migrated: str, kafka_bootstrap: str, tenant: str, prefix: str, publisher: PostgresPublisher
) -> None:
    # Setup
    doomed, marker = str(uuid.uuid4()), str(uuid.uuid4())
    relay = relay_for(migrated, kafka_bootstrap, prefix)
    try:
        with publisher.engine.connect() as conn:
            transaction = conn.begin()
            assert publisher.apply_on(conn, record(tenant, doomed, "QUEUED")) == 1

            # Run: a pass while the transaction is open, then it rolls back, then another pass
            asyncio.run(relay.drain_once())
            transaction.rollback()
        publisher.publish(record(tenant, marker, "QUEUED"))
        asyncio.run(relay.drain_once())
    finally:
        relay.close()

    # Assert: only the committed job's event reached the topic
    events = consume(kafka_bootstrap, prefix, tenant, expected=1)
    assert [e["data"]["uid"] for e in events] == [marker]


def test_the_composition_root_wires_mirror_and_relay_from_the_settings(
    migrated: str, kafka_bootstrap: str, tenant: str, prefix: str
) -> None:
    # Setup: what the chart sets (AUMOS_DATABASE_URL, AUMOS_KAFKA_*)
    settings = OperatorSettings(
        database_url=SecretStr(migrated),
        kafka_enabled=True,
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic_prefix=prefix,
    )
    publisher, relay, kind = build_publisher(settings)
    assert isinstance(publisher, PostgresPublisher) and relay is not None
    assert kind == f"postgresql mirror + outbox → kafka {prefix}.lifecycle"
    uid = str(uuid.uuid4())

    # Run
    relay.start()
    try:
        publisher.publish(record(tenant, uid, "QUEUED"))
        events = consume(kafka_bootstrap, prefix, tenant, expected=1)
    finally:
        relay.close()
        publisher.close()

    # Assert
    assert [e["data"]["uid"] for e in events] == [uid]


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, "log"), ({"kafka_enabled": False}, "postgresql mirror + outbox")],
    ids=["no-database", "database-without-kafka"],
)
def test_without_kafka_there_is_no_relay_and_without_a_database_only_log_lines(
    migrated: str, env: dict[str, Any], expected: str
) -> None:
    database: dict[str, Any] = {"database_url": migrated} if env else {}
    settings = OperatorSettings.model_validate(
        database | {"kafka_bootstrap_servers": "127.0.0.1:1"} | env
    )
    publisher, relay, kind = build_publisher(settings)
    assert relay is None and kind == expected
    assert isinstance(publisher, PostgresPublisher if env else LogPublisher)
