"""The PostgreSQL job mirror and lifecycle outbox: a :class:`~tabular_operator.events.Publisher`.

DESIGN §5: every phase transition of a SynthesisJob updates its row in ``tab_generation_jobs``
and, in the same transaction, appends one event to ``tab_outbox``; :mod:`tabular_operator.relay`
sends the outbox to Kafka. Tables come from migration ``0002`` (applied by
:func:`tabular_operator.ledger_pg.migrate`).

Monotonic by construction, in SQL: the upsert keyed by ``uid`` applies a record only when its
phase ranks above the stored one (``tab_phase_rank``; COMPLETE and FAILED rank equal and last),
``ON CONFLICT (uid) DO UPDATE … WHERE``. A stale or replayed record therefore changes nothing,
and because the outbox row is inserted from the upsert's ``RETURNING``, it appends nothing
either. The row's ``seq`` counts the transitions applied; the outbox row carries it, so a
consumer sees a job's events numbered 1, 2, 3 … The event id is a UUIDv5 of ``uid`` and phase:
the same transition always has the same id, even if a mirror were rebuilt.

Every row carries ``tenant_id`` (the namespace) and every query filters by it; a record whose
uid is already mirrored under another tenant is ignored.

GenerationProfiles and MultiTableSchemas are mirrored too (:meth:`PostgresPublisher.mirror_catalog`,
migration ``0003``): one row per object, keyed by ``uid``, monotonic by ``metadata.generation``
(an older generation never overwrites a newer one; the same generation updates the status). They
append no event. Readers other than the operator see the rows through row-level security
(:mod:`tabular_operator.tenant_pg`; docs/adr/0006-row-level-security.md).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, TextClause, create_engine, text

from tabular_operator.events import EVENT_TYPES
from tabular_operator.ledger_pg import engine_url

EVENT_NAMESPACE = uuid.UUID("6d1f3c7e-2b1a-5c6e-9a0f-7a62756c6172")
"""UUIDv5 namespace of lifecycle event ids (``uuid5(EVENT_NAMESPACE, f"{uid}/{phase}")``)."""

FIELDS: dict[str, str] = {
    "stage": "stage",
    "generator": "generator",
    "trainingTimeS": "training_time_s",
    "generationTimeS": "generation_time_s",
    "rowsGenerated": "rows",
    "fidelityScore": "fidelity_score",
    "privacyScore": "privacy_score",
    "privacyRisk": "privacy_risk",
    "epsilonSpent": "epsilon_spent",
    "allocationId": "allocation_id",
    "outputUri": "output_uri",
    "errorMessage": "error_message",
}
"""Optional record keys (the controller's status names) → mirror columns."""

DATA_FIELDS = tuple(k for k in FIELDS if k != "outputUri")
"""Record keys an event carries: everything but the output location (never a URL in events)."""

_COLUMNS = ", ".join(FIELDS.values())
_VALUES = ", ".join(f":{c}" for c in FIELDS.values())
# A column keeps its value when a later record does not carry it (status fields accumulate).
_UPDATES = ",\n            ".join(f"{c} = coalesce(EXCLUDED.{c}, j.{c})" for c in FIELDS.values())

_PUBLISH = text(
    f"""
    WITH job AS (
        INSERT INTO tab_generation_jobs AS j
            (tenant_id, name, uid, phase, {_COLUMNS}, seq, created_at, updated_at)
        VALUES (:tenant, :name, :uid, :phase, {_VALUES}, 1, :now, :now)
        ON CONFLICT (uid) DO UPDATE SET
            phase = EXCLUDED.phase,
            {_UPDATES},
            seq = j.seq + 1,
            updated_at = EXCLUDED.updated_at
        WHERE j.tenant_id = EXCLUDED.tenant_id
          AND tab_phase_rank(j.phase) < tab_phase_rank(EXCLUDED.phase)
        RETURNING j.tenant_id, j.uid, j.seq
    )
    INSERT INTO tab_outbox (event_id, tenant_id, job_uid, seq, type, payload, created_at)
    SELECT :event_id, job.tenant_id, job.uid, job.seq, :type,
           CAST(:data AS jsonb) || jsonb_build_object('seq', job.seq), :now
    FROM job
    ON CONFLICT DO NOTHING
    RETURNING seq
    """
)

CATALOG_TABLES: dict[str, str] = {
    "GenerationProfile": "tab_generation_profiles",
    "MultiTableSchema": "tab_multi_table_schemas",
}
"""Mirrored catalog kinds → their tables."""

_CATALOG_FIELDS: dict[str, dict[str, str]] = {
    "GenerationProfile": {"valid": "valid", "message": "message", "usedBy": "used_by"},
    "MultiTableSchema": {
        "valid": "valid",
        "message": "message",
        "usedBy": "used_by",
        "tableCount": "table_count",
        "depth": "depth",
    },
}
"""Status keys of a catalog record → columns, per kind."""


def _catalog_sql(table: str, fields: Mapping[str, str]) -> tuple[TextClause, TextClause]:
    columns = ", ".join(fields.values())
    values = ", ".join(f":{c}" for c in fields.values())
    updates = "".join(f"{c} = EXCLUDED.{c}, " for c in fields.values())
    upsert = text(
        f"""
        INSERT INTO {table} AS t
            (tenant_id, name, uid, generation, {columns}, spec, created_at, updated_at)
        VALUES (:tenant, :name, :uid, :generation, {values}, CAST(:spec AS jsonb), :now, :now)
        ON CONFLICT (uid) DO UPDATE SET
            name = EXCLUDED.name, generation = EXCLUDED.generation, {updates}
            spec = EXCLUDED.spec, updated_at = EXCLUDED.updated_at
        WHERE t.tenant_id = EXCLUDED.tenant_id AND t.generation <= EXCLUDED.generation
        RETURNING t.generation
        """
    )
    select = text(
        f"""
        SELECT tenant_id, name, uid, generation, {columns}, spec, created_at, updated_at
        FROM {table} WHERE tenant_id = :tenant AND uid = :uid
        """
    )
    return upsert, select


_CATALOG = {
    kind: _catalog_sql(table, _CATALOG_FIELDS[kind]) for kind, table in CATALOG_TABLES.items()
}

_JOB = text(
    f"""
    SELECT tenant_id, name, uid, phase, {_COLUMNS}, seq, created_at, updated_at
    FROM tab_generation_jobs WHERE tenant_id = :tenant AND uid = :uid
    """
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def event_id(uid: str, phase: str) -> uuid.UUID:
    """The id of a job's transition into ``phase`` (stable across replays)."""
    return uuid.uuid5(EVENT_NAMESPACE, f"{uid}/{phase}")


def event_data(record: Mapping[str, Any]) -> dict[str, Any]:
    """The ``data`` of a lifecycle event, from a controller record (``seq`` is added in SQL)."""
    data: dict[str, Any] = {
        "tenant": record["namespace"],
        "name": record["name"],
        "uid": record["uid"],
        "phase": record["phase"],
        "time": record["time"],
    }
    data |= {k: record[k] for k in DATA_FIELDS if record.get(k) is not None}
    return data


def catalog_record(body: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
    """The record :meth:`PostgresPublisher.mirror_catalog` takes, from an object and its status.

    Args:
        body: The GenerationProfile or MultiTableSchema as read from the API.
        status: Its status patch (``catalog.profile_status`` / ``catalog.schema_status``).
    """
    meta = body["metadata"]
    conditions: list[Mapping[str, Any]] = list(status.get("conditions") or [])
    ready: Mapping[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    record: dict[str, Any] = {
        "namespace": meta["namespace"],
        "name": meta["name"],
        "uid": meta["uid"],
        "generation": meta.get("generation") or 1,
        "spec": dict(body.get("spec") or {}),
        "valid": status.get("valid", ready.get("status") == "True"),
        "message": status.get("message", ready.get("message", "")),
        "usedBy": status.get("usedBy", 0),
    }
    if "tableCount" in status:
        record |= {"tableCount": status["tableCount"], "depth": status.get("depth")}
    return record


class PostgresPublisher:
    """Mirror row + outbox row per transition, in one transaction (the ``Publisher`` port).

    Args:
        database_url: SQLAlchemy or libpq URL of the operator database (migrated).
        clock: UTC clock read once per ``publish`` (``created_at``/``updated_at``).
        on_commit: called after a transaction that appended an event (the relay's ``wake``).
    """

    def __init__(
        self,
        database_url: str,
        *,
        clock: Callable[[], datetime] = _utcnow,
        on_commit: Callable[[], None] | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.engine = engine or create_engine(
            engine_url(database_url), pool_size=2, max_overflow=4, pool_pre_ping=True
        )
        self.clock = clock
        self.on_commit = on_commit

    def publish(self, record: Mapping[str, Any]) -> None:
        """Apply one transition record; a stale or replayed one changes nothing.

        Raises:
            ValueError: the record's phase is not a SynthesisJob phase.
            sqlalchemy.exc.SQLAlchemyError: the database refused or cannot be reached (the
                controller logs it; the next transition, or a replay, catches up).
        """
        self.apply(record)

    def apply(self, record: Mapping[str, Any]) -> int | None:
        """Like :meth:`publish`; returns the ``seq`` of the event appended, ``None`` if none."""
        with self.engine.begin() as conn:
            seq = self.apply_on(conn, record)
        if seq is not None and self.on_commit is not None:
            self.on_commit()
        return seq

    def apply_on(self, conn: Connection, record: Mapping[str, Any]) -> int | None:
        """Write one transition on ``conn``, inside the caller's transaction (not committed).

        Returns:
            The ``seq`` of the event appended, ``None`` when the record changed nothing.

        Raises:
            ValueError: the record's phase is not a SynthesisJob phase.
        """
        phase = str(record["phase"])
        if phase not in EVENT_TYPES:
            raise ValueError(f"record phase {phase!r}: not one of {', '.join(EVENT_TYPES)}")
        params = self._params(record, FIELDS) | {
            "phase": phase,
            "event_id": event_id(str(record["uid"]), phase),
            "type": EVENT_TYPES[phase],
            "data": json.dumps(event_data(record)),
        }
        seq = conn.execute(_PUBLISH, params).scalar_one_or_none()
        return None if seq is None else int(seq)

    def mirror_catalog(self, kind: str, record: Mapping[str, Any]) -> bool:
        """Upsert the mirror row of a GenerationProfile or MultiTableSchema (synchronous).

        Keyed by ``uid``; a record whose ``generation`` is below the stored one changes nothing,
        the same generation updates the status columns, and a uid mirrored under another
        tenant is left alone. The record (:func:`catalog_record` builds it)::

            {"namespace": "team-a", "name": "adult", "uid": "…", "generation": 3,
             "spec": {…}, "valid": True, "message": "valid", "usedBy": 2,
             # MultiTableSchema only:
             "tableCount": 4, "depth": 3}        # depth: None when the schema is not valid

        Args:
            kind: ``GenerationProfile`` or ``MultiTableSchema``.
            record: The object's identity, generation, spec and computed status.

        Returns:
            Whether the row was written (False: a newer generation is already mirrored).

        Raises:
            ValueError: an unknown kind, or a generation that is not a positive integer.
            sqlalchemy.exc.SQLAlchemyError: the database refused or cannot be reached.
        """
        if kind not in _CATALOG:
            raise ValueError(f"kind {kind!r}: not one of {', '.join(CATALOG_TABLES)}")
        generation = record.get("generation")
        if not isinstance(generation, int) or isinstance(generation, bool) or generation < 1:
            raise ValueError(f"record generation {generation!r}: a positive integer is needed")
        params = self._params(record, _CATALOG_FIELDS[kind]) | {
            "generation": generation,
            "spec": json.dumps(record.get("spec") or {}),
        }
        params["valid"] = bool(params["valid"])
        params["message"] = str(params["message"] or "")
        params["used_by"] = int(params["used_by"] or 0)
        if "table_count" in params:
            params["table_count"] = int(params["table_count"] or 0)
        with self.engine.begin() as conn:
            written = conn.execute(_CATALOG[kind][0], params).scalar_one_or_none()
        return written is not None

    def forget_catalog(self, kind: str, tenant: str, uid: str) -> bool:
        """Delete the mirror row of a deleted GenerationProfile or MultiTableSchema.

        Returns:
            Whether a row of ``tenant`` was deleted.

        Raises:
            ValueError: an unknown kind.
        """
        if kind not in CATALOG_TABLES:
            raise ValueError(f"kind {kind!r}: not one of {', '.join(CATALOG_TABLES)}")
        statement = text(
            f"DELETE FROM {CATALOG_TABLES[kind]} WHERE tenant_id = :tenant AND uid = :uid"
        )
        with self.engine.begin() as conn:
            deleted = conn.execute(statement, {"tenant": tenant, "uid": uid}).rowcount
        return bool(deleted)

    def catalog(self, kind: str, tenant: str, uid: str) -> dict[str, Any] | None:
        """The mirror row of a catalog object ``uid`` in ``tenant`` (column → value), or None."""
        return self._row(_CATALOG[kind][1], tenant, uid)

    def job(self, tenant: str, uid: str) -> dict[str, Any] | None:
        """The mirror row of ``uid`` in ``tenant`` (column → value), or ``None``."""
        return self._row(_JOB, tenant, uid)

    def _params(self, record: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
        """Identity, clock and the optional ``fields`` (record key → column) of a record."""
        params: dict[str, Any] = {
            "tenant": record["namespace"],
            "name": record["name"],
            "uid": record["uid"],
            "now": self.clock(),
        }
        return params | {column: record.get(key) for key, column in fields.items()}

    def _row(self, statement: TextClause, tenant: str, uid: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(statement, {"tenant": tenant, "uid": uid}).mappings().one_or_none()
        return None if row is None else dict(row)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()
