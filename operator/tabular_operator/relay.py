"""The outbox relay: lifecycle events from ``tab_outbox`` to Kafka, at least once (DESIGN §5).

:class:`~tabular_operator.mirror_pg.PostgresPublisher` appends one outbox row per applied
transition, in the transaction of the mirror row; only committed rows are ever visible here,
so nothing of a rolled-back transaction is sent. :class:`OutboxRelay` loops: read unsent rows
(per tenant, in insertion order, which is each job's ``seq`` order), send each to the topic
``<prefix>.lifecycle`` with the job uid as key (one partition per job: its order is kept), wait
for every acknowledgement (``acks=all``, idempotent producer), then mark the rows sent.

At least once: a relay stopped between sending and marking sends those rows again on its next
pass; the event id is stable (UUIDv5 of uid and phase), so consumers dedupe by it. When Kafka
cannot be reached the relay backs off and retries; the outbox grows meanwhile and drains when
the broker is back. One relay per database is assumed (the operator runs one active replica);
two would only duplicate, never lose or reorder a job's events after dedup by id.

Events are CloudEvents 1.0 JSON in structured mode, built with the CloudEvents SDK
(:func:`cloud_event`, :func:`kafka_message`: ``cloudevents.kafka.to_structured``); the JSON
Schema of each type is generated from :class:`LifecycleEvent` into ``docs/events/``.

The crash point ``relay-after-send`` (:mod:`tabular_operator.faults`) kills the process after
the broker acknowledged a batch and before it is marked sent: the at-least-once case.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.helpers import create_ssl_context
from cloudevents.abstract import AnyCloudEvent
from cloudevents.http import CloudEvent
from cloudevents.kafka import KafkaMessage, to_structured
from pydantic import BaseModel, ConfigDict, Field, create_model
from sqlalchemy import Engine, create_engine, text

from tabular_operator.events import EVENT_TYPES
from tabular_operator.faults import Faults
from tabular_operator.ledger_pg import engine_url

log = logging.getLogger("tabular_operator.relay")

TYPE_PREFIX = "aumos.tabular."
"""CloudEvents ``type`` = this + the outbox type (``aumos.tabular.generation.job.queued``)."""
SOURCE = "/aumos/tabular-operator"
CONTENT_TYPE = b"application/cloudevents+json"


@dataclass(frozen=True)
class OutboxEvent:
    """One unsent outbox row."""

    id: int
    event_id: uuid.UUID
    tenant: str
    job_uid: str
    seq: int
    type: str
    payload: Mapping[str, Any]


def topic(prefix: str) -> str:
    """The lifecycle topic: one topic, so that a job's events share a partition (its order)."""
    return f"{prefix}.lifecycle"


def cloud_event(event: OutboxEvent) -> CloudEvent:
    """The CloudEvent of an outbox row (every attribute set here: nothing generated)."""
    data = {k: v for k, v in event.payload.items() if k != "time"}
    attributes = {
        "specversion": "1.0",
        "id": str(event.event_id),
        "source": SOURCE,
        "type": TYPE_PREFIX + event.type,
        "subject": f"namespaces/{event.tenant}/synthesisjobs/{data.get('name', '')}",
        "time": event.payload["time"],
        "datacontenttype": "application/json",
        "partitionkey": event.job_uid,
    }
    return CloudEvent(attributes, data)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _key(event: AnyCloudEvent) -> bytes:
    return str(event["partitionkey"]).encode()


def kafka_message(event: OutboxEvent) -> KafkaMessage:
    """The Kafka record of an outbox row: structured mode, key = job uid.

    ``to_structured`` writes the event's ``datacontenttype`` into the ``content-type`` header;
    the Kafka protocol binding (§3.2) wants the event format's media type there in structured
    mode, which is how a consumer tells structured from binary mode, so the header is set here.
    """
    message = to_structured(cloud_event(event), envelope_marshaller=_compact, key_mapper=_key)
    return KafkaMessage({"content-type": CONTENT_TYPE}, message.key, message.value)


# ------------------------------------------------------------------------------- schemas

_Phase = Literal["QUEUED", "TRAINING", "GENERATING", "VALIDATING", "COMPLETE", "FAILED"]


class LifecycleData(BaseModel):
    """``data`` of a lifecycle event: the job's status after the transition (no URLs)."""

    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(description="Namespace of the SynthesisJob (the tenant).")
    name: str
    uid: str
    phase: _Phase
    seq: int = Field(ge=1, description="Per-job sequence number: 1, 2, 3 … in phase order.")
    stage: str | None = None
    generator: str | None = None
    trainingTimeS: float | None = None  # noqa: N815 - the status field's name
    generationTimeS: float | None = None  # noqa: N815
    rowsGenerated: int | None = None  # noqa: N815
    fidelityScore: float | None = None  # noqa: N815
    privacyScore: float | None = None  # noqa: N815
    privacyRisk: float | None = None  # noqa: N815
    epsilonSpent: float | None = None  # noqa: N815
    allocationId: str | None = None  # noqa: N815
    errorMessage: str | None = None  # noqa: N815


class LifecycleEvent(BaseModel):
    """A lifecycle event: CloudEvents 1.0, structured mode, JSON."""

    model_config = ConfigDict(extra="forbid")

    specversion: Literal["1.0"]
    id: uuid.UUID = Field(description="Stable per transition: consumers dedupe by it.")
    source: Literal["/aumos/tabular-operator"]
    type: str
    subject: str
    time: datetime
    datacontenttype: Literal["application/json"]
    partitionkey: str = Field(description="The job uid (also the Kafka key).")
    data: LifecycleData


def event_models() -> dict[str, type[LifecycleEvent]]:
    """CloudEvents type → its model (``type`` and ``data.phase`` fixed)."""
    models: dict[str, type[LifecycleEvent]] = {}
    for phase, short in EVENT_TYPES.items():
        name = short.rsplit(".", 1)[-1].title().replace("_", "")
        full = TYPE_PREFIX + short
        # Literal types built at run time (one per type): typed Any for mypy.
        phase_type: Any = Literal[phase]
        full_type: Any = Literal[full]
        data = create_model(f"{name}Data", __base__=LifecycleData, phase=(phase_type, ...))
        models[full] = create_model(
            f"{name}Event", __base__=LifecycleEvent, type=(full_type, ...), data=(data, ...)
        )
    return models


def event_schemas() -> dict[str, dict[str, Any]]:
    """CloudEvents type → JSON Schema (what ``docs/events/<type>.schema.json`` holds)."""
    return {
        full: {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": full}
        | model.model_json_schema()
        for full, model in event_models().items()
    }


def write_schemas(directory: Path) -> None:
    """Write one ``<type>.schema.json`` per event type into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for full, schema in event_schemas().items():
        (directory / f"{full}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")


# --------------------------------------------------------------------------------- relay


def producer_options(
    security_protocol: str = "PLAINTEXT",
    sasl_mechanism: str = "",
    sasl_username: str | None = None,
    sasl_password: str | None = None,
) -> dict[str, Any]:
    """Security options of the producer, from the operator's ``AUMOS_KAFKA_*`` settings."""
    options: dict[str, Any] = {"security_protocol": security_protocol}
    if security_protocol in ("SSL", "SASL_SSL"):
        context: ssl.SSLContext = create_ssl_context()
        options["ssl_context"] = context
    if sasl_mechanism:
        options["sasl_mechanism"] = sasl_mechanism
        options["sasl_plain_username"] = sasl_username
        options["sasl_plain_password"] = sasl_password
    return options


_TENANTS = text("SELECT DISTINCT tenant_id FROM tab_outbox WHERE sent_at IS NULL")
_UNSENT = text(
    """
    SELECT id, event_id, tenant_id, job_uid, seq, type, payload FROM tab_outbox
    WHERE tenant_id = :tenant AND sent_at IS NULL ORDER BY id LIMIT :limit
    """
)
_MARK = text(
    "UPDATE tab_outbox SET sent_at = :now"
    " WHERE tenant_id = :tenant AND id = ANY(:ids) AND sent_at IS NULL"
)


class OutboxRelay:
    """Sends unsent outbox rows to Kafka, then marks them sent.

    Run it on its own thread and event loop (:meth:`start`/:meth:`stop`, what the operator
    does) or await :meth:`run`; :meth:`fetch`, :meth:`send` and :meth:`mark_sent` are the
    steps of one pass (:meth:`drain_once`).

    Args:
        database_url: the operator database (migrated).
        bootstrap_servers: Kafka ``host:port[,host:port]``.
        topic_prefix: ``AUMOS_KAFKA_TOPIC_PREFIX``; events go to ``<prefix>.lifecycle``.
        options: further producer options (security, :func:`producer_options`).
        batch_size: rows read per tenant per pass.
        poll_interval: seconds between looks when not woken (:meth:`wake`).
        backoff: first and longest wait after a failed pass, in seconds.
        faults: armed crash points (test only; :data:`~tabular_operator.faults.RELAY_POINTS`).
    """

    def __init__(
        self,
        database_url: str,
        bootstrap_servers: str,
        *,
        topic_prefix: str = "aumos.tabular",
        options: Mapping[str, Any] | None = None,
        batch_size: int = 200,
        poll_interval: float = 1.0,
        backoff: tuple[float, float] = (0.5, 15.0),
        engine: Engine | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.engine = engine or create_engine(
            engine_url(database_url), pool_size=1, max_overflow=1, pool_pre_ping=True
        )
        self.faults = faults or Faults()
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic(topic_prefix)
        self.options = dict(options or {})
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.backoff = backoff
        self._producer: AIOKafkaProducer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- one pass -------------------------------------------------------------------------

    async def fetch(self) -> list[OutboxEvent]:
        """Unsent rows, each tenant's in insertion order (a job's in ``seq`` order)."""
        return await asyncio.to_thread(self._fetch)

    def _fetch(self) -> list[OutboxEvent]:
        events: list[OutboxEvent] = []
        with self.engine.connect() as conn:
            tenants = [r[0] for r in conn.execute(_TENANTS)]
            for tenant in sorted(tenants):
                rows = conn.execute(_UNSENT, {"tenant": tenant, "limit": self.batch_size})
                events += [
                    OutboxEvent(r.id, r.event_id, r.tenant_id, r.job_uid, r.seq, r.type, r.payload)
                    for r in rows
                ]
        return events

    async def send(self, events: list[OutboxEvent]) -> None:
        """Send ``events`` in order and wait until the broker acknowledged every one.

        Raises:
            aiokafka.errors.KafkaError: the broker cannot be reached or refused a record.
        """
        producer = await self._started_producer()
        pending = []
        for e in events:
            message = kafka_message(e)
            pending.append(
                await producer.send(
                    self.topic,
                    message.value,
                    key=message.key,
                    headers=list(message.headers.items()),
                )
            )
        await asyncio.gather(*pending)

    async def mark_sent(self, events: list[OutboxEvent]) -> None:
        """Record ``events`` as sent (after :meth:`send` returned)."""
        await asyncio.to_thread(self._mark, events)

    def _mark(self, events: list[OutboxEvent]) -> None:
        by_tenant: dict[str, list[int]] = {}
        for e in events:
            by_tenant.setdefault(e.tenant, []).append(e.id)
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            for tenant, ids in by_tenant.items():
                conn.execute(_MARK, {"tenant": tenant, "ids": ids, "now": now})

    async def drain_once(self) -> int:
        """One pass: fetch, send, mark; the number of events sent."""
        events = await self.fetch()
        if events:
            await self.send(events)
            self.faults.crash_point("relay-after-send")
            await self.mark_sent(events)
        return len(events)

    def unsent(self, tenant: str) -> int:
        """How many events of ``tenant`` wait to be sent."""
        with self.engine.connect() as conn:
            count = conn.execute(
                text("SELECT count(*) FROM tab_outbox WHERE tenant_id = :t AND sent_at IS NULL"),
                {"t": tenant},
            ).scalar_one()
        return int(count)

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Pass after pass until :meth:`stop`; failures back off, never end the loop."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        delay = self.backoff[0]
        try:
            while not self._stopping:
                try:
                    sent = await self.drain_once()
                except Exception as exc:  # noqa: BLE001 - retried; the outbox keeps the events
                    log.warning("outbox relay: %s; retrying in %.1fs", exc, delay)
                    await self._close_producer()
                    await self._sleep(delay)
                    delay = min(delay * 2, self.backoff[1])
                    continue
                delay = self.backoff[0]
                if sent < self.batch_size:
                    await self._sleep(self.poll_interval)
        finally:
            await self._close_producer()

    def wake(self) -> None:
        """Look at the outbox now (thread-safe; the publisher calls it after a commit)."""
        loop, event = self._loop, self._wake
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def start(self) -> None:
        """Run the loop on a thread of its own (its own event loop)."""
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(
            target=asyncio.run, args=(self.run(),), name="outbox-relay", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop (unsent rows stay for the next relay) and wait for it."""
        self._stopping = True
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        """Stop and release the connection pool."""
        self.stop()
        self.engine.dispose()

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers,
                client_id="aumos-tabular-operator",
                acks="all",
                enable_idempotence=True,
                request_timeout_ms=15000,
                **self.options,
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception as exc:  # noqa: BLE001 - closing a broken producer
                log.debug("closing the producer: %s", exc)
