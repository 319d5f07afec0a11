"""The Kafka record of a lifecycle event, byte for byte (no broker: relay.kafka_message only)."""

from __future__ import annotations

import json
import uuid

import pytest
from cloudevents.kafka import from_structured

from tabular_operator.relay import OutboxEvent, event_models, kafka_message

pytestmark = pytest.mark.unit

EVENT = OutboxEvent(
    id=7,
    event_id=uuid.UUID("6a74b250-4209-4670-96dc-82b95f4b524f"),
    tenant="team-a",
    job_uid="uid-1",
    seq=3,
    type="generation.job.generating",
    payload={
        "tenant": "team-a",
        "name": "adult",
        "uid": "uid-1",
        "phase": "GENERATING",
        "time": "2025-03-12T15:30:00Z",
        "seq": 3,
        "stage": "generate",
        "trainingTimeS": 1.5,
    },
)


def test_the_record_is_structured_mode_keyed_by_the_job_uid_with_the_documented_json() -> None:
    message = kafka_message(EVENT)

    assert message.key == b"uid-1"
    assert message.headers == {"content-type": b"application/cloudevents+json"}
    assert message.value == (
        b'{"specversion":"1.0","id":"6a74b250-4209-4670-96dc-82b95f4b524f",'
        b'"source":"/aumos/tabular-operator","type":"aumos.tabular.generation.job.generating",'
        b'"subject":"namespaces/team-a/synthesisjobs/adult","time":"2025-03-12T15:30:00Z",'
        b'"datacontenttype":"application/json","partitionkey":"uid-1",'
        b'"data":{"tenant":"team-a","name":"adult","uid":"uid-1","phase":"GENERATING","seq":3,'
        b'"stage":"generate","trainingTimeS":1.5}}'
    )
    event = json.loads(message.value)
    event_models()[event["type"]].model_validate(event, strict=False)


def test_the_sdk_reads_the_record_back() -> None:
    event = from_structured(kafka_message(EVENT))

    assert (event["id"], event["type"], event["partitionkey"]) == (
        str(EVENT.event_id),
        "aumos.tabular.generation.job.generating",
        "uid-1",
    )
    assert event.data == {k: v for k, v in EVENT.payload.items() if k != "time"}
