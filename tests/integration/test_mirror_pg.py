"""The PostgreSQL job mirror and outbox (mirror_pg) against a real PostgreSQL.

Real: PostgreSQL (the platform's ``database_url``), SQLAlchemy, psycopg, Alembic (every
migration, through ``migrate``). Not real: the controller — records are built the way
``JobController._write`` builds them; catalog records from the status ``catalog`` computes.
Each test uses its own tenant (namespace) and job uid.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from tabular_operator.catalog import profile_status, schema_status
from tabular_operator.events import EVENT_TYPES
from tabular_operator.ledger_pg import migrate
from tabular_operator.mirror_pg import PostgresPublisher, catalog_record, event_id

pytestmark = pytest.mark.integration

LIFE = ["QUEUED", "TRAINING", "GENERATING", "VALIDATING", "COMPLETE"]


@pytest.fixture(scope="module")
def publisher(database_url: str) -> Iterator[PostgresPublisher]:
    migrate(database_url)
    publisher = PostgresPublisher(database_url)
    yield publisher
    publisher.close()


def record(tenant: str, uid: str, phase: str, **fields: Any) -> dict[str, Any]:
    """A record shaped like the one ``JobController._write`` publishes."""
    return {
        "type": EVENT_TYPES[phase],
        "namespace": tenant,
        "name": "adult-ctgan",
        "uid": uid,
        "phase": phase,
        "time": "2025-03-12T15:30:00Z",
    } | fields


def outbox(publisher: PostgresPublisher, tenant: str, uid: str) -> list[Any]:
    with publisher.engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT event_id, seq, type, payload FROM tab_outbox"
                    " WHERE tenant_id = :t AND job_uid = :u ORDER BY id"
                ),
                {"t": tenant, "u": uid},
            )
        )


@pytest.fixture
def job() -> tuple[str, str]:
    return f"t-{uuid.uuid4().hex[:10]}", str(uuid.uuid4())


def test_a_whole_life_is_mirrored_with_one_numbered_event_per_transition(
    publisher: PostgresPublisher, job: tuple[str, str]
) -> None:
    # Setup
    tenant, uid = job
    fields: dict[str, dict[str, Any]] = {
        "QUEUED": {"generator": "ctgan"},
        "TRAINING": {"stage": "train", "allocationId": f"{tenant}/x"},
        "GENERATING": {"stage": "generate", "trainingTimeS": 12.5, "epsilonSpent": 1.0},
        "VALIDATING": {"stage": "validate", "rowsGenerated": 1000, "generationTimeS": 2.0},
        "COMPLETE": {
            "stage": "done",
            "fidelityScore": 0.91,
            "privacyScore": 0.8,
            "privacyRisk": 0.02,
            "outputUri": "s3://aumos-tab-x/tab-jobs/u/output.csv",
        },
    }

    # Run
    seqs = [publisher.apply(record(tenant, uid, p, **fields[p])) for p in LIFE]

    # Assert
    assert seqs == [1, 2, 3, 4, 5]
    row = publisher.job(tenant, uid)
    assert row is not None
    assert (row["phase"], row["seq"], row["stage"], row["generator"]) == (
        "COMPLETE",
        5,
        "done",
        "ctgan",
    )
    assert (row["rows"], row["training_time_s"], row["generation_time_s"]) == (1000, 12.5, 2.0)
    assert (row["fidelity_score"], row["privacy_score"], row["privacy_risk"]) == (0.91, 0.8, 0.02)
    assert (row["epsilon_spent"], row["allocation_id"]) == (1.0, f"{tenant}/x")
    assert row["output_uri"] == "s3://aumos-tab-x/tab-jobs/u/output.csv"
    events = outbox(publisher, tenant, uid)
    assert [(e.seq, e.type) for e in events] == [
        (i + 1, EVENT_TYPES[p]) for i, p in enumerate(LIFE)
    ]
    assert [e.event_id for e in events] == [event_id(uid, p) for p in LIFE]
    assert events[-1].payload["seq"] == 5
    assert events[-1].payload["fidelityScore"] == 0.91
    assert "outputUri" not in events[-1].payload  # never a URL in an event
    assert publisher.job("another-tenant", uid) is None


@pytest.mark.parametrize(
    ("applied", "late"),
    [
        (["QUEUED", "TRAINING"], "TRAINING"),
        (["QUEUED", "TRAINING", "GENERATING"], "QUEUED"),
        (["QUEUED", "TRAINING", "GENERATING"], "TRAINING"),
        (["QUEUED", "COMPLETE"], "VALIDATING"),
        (["QUEUED", "COMPLETE"], "FAILED"),
        (["QUEUED", "FAILED"], "COMPLETE"),
        (["QUEUED", "FAILED"], "FAILED"),
    ],
    ids=[
        "replay-same-phase",
        "stale-queued",
        "stale-training",
        "after-complete",
        "complete-then-failed",
        "failed-then-complete",
        "failed-replayed",
    ],
)
def test_a_stale_or_replayed_record_never_moves_the_phase_back_nor_appends_an_event(
    publisher: PostgresPublisher, job: tuple[str, str], applied: list[str], late: str
) -> None:
    # Setup
    tenant, uid = job
    for phase in applied:
        publisher.apply(record(tenant, uid, phase, rowsGenerated=7))

    # Run
    seq = publisher.apply(record(tenant, uid, late, rowsGenerated=99, errorMessage="late"))

    # Assert
    assert seq is None
    row = publisher.job(tenant, uid)
    assert row is not None
    assert (row["phase"], row["seq"], row["rows"], row["error_message"]) == (
        applied[-1],
        len(applied),
        7,
        None,
    )
    assert [e.seq for e in outbox(publisher, tenant, uid)] == list(range(1, len(applied) + 1))


def test_the_sql_itself_is_monotonic_under_concurrent_writers(
    publisher: PostgresPublisher, job: tuple[str, str]
) -> None:
    # Setup: each phase's record written by 3 threads at once, the phases racing each other
    tenant, uid = job
    publisher.apply(record(tenant, uid, "QUEUED"))
    barrier = threading.Barrier(9)

    def write(phase: str) -> None:
        barrier.wait()
        publisher.apply(record(tenant, uid, phase))

    threads = [
        threading.Thread(target=write, args=(p,)) for p in ("TRAINING", "GENERATING", "FAILED") * 3
    ]

    # Run
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Assert: FAILED won whatever the order; no phase was appended twice, seqs have no gaps
    row = publisher.job(tenant, uid)
    assert row is not None and row["phase"] == "FAILED"
    events = outbox(publisher, tenant, uid)
    phases = [e.payload["phase"] for e in events]
    assert len(phases) == len(set(phases)) and phases[0] == "QUEUED" and phases[-1] == "FAILED"
    assert [e.seq for e in events] == list(range(1, row["seq"] + 1))


def test_a_uid_mirrored_under_one_tenant_is_not_touched_from_another(
    publisher: PostgresPublisher, job: tuple[str, str]
) -> None:
    # Setup
    tenant, uid = job
    publisher.apply(record(tenant, uid, "QUEUED"))

    # Run
    seq = publisher.apply(record("intruder", uid, "COMPLETE"))

    # Assert
    assert seq is None
    row = publisher.job(tenant, uid)
    assert row is not None and row["phase"] == "QUEUED"
    assert outbox(publisher, "intruder", uid) == []


def test_a_rolled_back_transaction_leaves_neither_mirror_nor_outbox_row(
    publisher: PostgresPublisher, job: tuple[str, str]
) -> None:
    # Setup: the transition is written inside a caller's transaction
    tenant, uid = job
    with publisher.engine.connect() as conn:
        transaction = conn.begin()
        seq = publisher.apply_on(conn, record(tenant, uid, "QUEUED"))
        assert seq == 1

        # Run
        transaction.rollback()

    # Assert
    assert publisher.job(tenant, uid) is None
    assert outbox(publisher, tenant, uid) == []


def test_an_unknown_phase_is_refused_before_any_write(
    publisher: PostgresPublisher, job: tuple[str, str]
) -> None:
    tenant, uid = job
    with pytest.raises(ValueError, match="PAUSED"):
        publisher.apply(record(tenant, uid, "QUEUED") | {"phase": "PAUSED"})
    assert publisher.job(tenant, uid) is None


# ---------------------------------------------------------------- catalog mirror (0003)

SCHEMA_SPEC = {
    "tables": [
        {"name": "p", "source": {"uri": "s3://b/p.csv"}, "primaryKey": "id"},
        {"name": "c", "source": {"uri": "s3://b/c.csv"}},
    ],
    "relationships": [{"parent": "p", "parentKey": "id", "child": "c", "childKey": "pid"}],
}


def catalog_body(
    kind: str, tenant: str, uid: str, generation: int, spec: dict[str, Any]
) -> dict[str, Any]:
    meta = {"name": "x", "namespace": tenant, "uid": uid, "generation": generation}
    return {"kind": kind, "metadata": meta, "spec": spec}


@pytest.mark.parametrize(
    ("kind", "spec", "expected"),
    [
        (
            "GenerationProfile",
            {"generator": {"type": "gaussian_copula"}},
            {"valid": True, "used_by": 1, "message": "valid"},
        ),
        ("GenerationProfile", {"generator": {"type": "aim"}}, {"valid": False, "used_by": 1}),
        (
            "MultiTableSchema",
            SCHEMA_SPEC,
            {"valid": True, "used_by": 0, "table_count": 2, "depth": 2, "message": "2 tables"},
        ),
        (
            "MultiTableSchema",
            {"tables": []},
            {"valid": False, "used_by": 0, "table_count": 0, "depth": None},
        ),
    ],
    ids=["profile", "invalid-profile", "schema", "invalid-schema"],
)
def test_a_catalog_object_is_mirrored_with_the_status_the_operator_computed(
    publisher: PostgresPublisher,
    job: tuple[str, str],
    kind: str,
    spec: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    # Setup: the status exactly as the catalog handlers compute it
    tenant, uid = job
    body = catalog_body(kind, tenant, uid, 3, spec)
    jobs = [{"spec": {"profileRef": {"name": "x"}}}]
    compute = profile_status if kind == "GenerationProfile" else schema_status
    status = compute(body, jobs, datetime(2026, 12, 1, tzinfo=UTC))

    # Run
    written = publisher.mirror_catalog(kind, catalog_record(body, status))

    # Assert
    assert written
    row = publisher.catalog(kind, tenant, uid)
    assert row is not None
    assert (row["tenant_id"], row["name"], row["generation"], row["spec"]) == (
        tenant,
        "x",
        3,
        spec,
    )
    assert {k: row[k] for k in expected} == expected
    assert publisher.catalog(kind, "another-tenant", uid) is None


@pytest.mark.parametrize(
    ("stored", "incoming", "applied"),
    [(2, 1, False), (2, 2, True), (2, 3, True)],
    ids=["older-generation-ignored", "same-generation-updates-status", "newer-generation"],
)
@pytest.mark.parametrize("kind", ["GenerationProfile", "MultiTableSchema"])
def test_the_catalog_mirror_never_goes_back_a_generation(
    publisher: PostgresPublisher,
    job: tuple[str, str],
    kind: str,
    stored: int,
    incoming: int,
    applied: bool,
) -> None:
    # Setup
    tenant, uid = job
    base = {"namespace": tenant, "name": "x", "uid": uid, "valid": True, "tableCount": 1}
    publisher.mirror_catalog(
        kind, base | {"generation": stored, "spec": {"v": stored}, "message": "a", "usedBy": 1}
    )

    # Run
    written = publisher.mirror_catalog(
        kind,
        base | {"generation": incoming, "spec": {"v": incoming}, "message": "b", "usedBy": 5},
    )

    # Assert
    assert written is applied
    row = publisher.catalog(kind, tenant, uid)
    assert row is not None
    winner = incoming if applied else stored
    assert (row["generation"], row["spec"], row["message"], row["used_by"]) == (
        winner,
        {"v": winner},
        "b" if applied else "a",
        5 if applied else 1,
    )


def test_a_catalog_uid_of_another_tenant_is_left_alone(
    publisher: PostgresPublisher, job: tuple[str, str]
) -> None:
    tenant, uid = job
    base = {"name": "x", "uid": uid, "valid": True, "message": "", "usedBy": 0, "spec": {}}
    assert publisher.mirror_catalog(
        "GenerationProfile", base | {"namespace": tenant, "generation": 1}
    )

    assert not publisher.mirror_catalog(
        "GenerationProfile", base | {"namespace": "intruder", "generation": 9}
    )

    row = publisher.catalog("GenerationProfile", tenant, uid)
    assert row is not None and row["generation"] == 1
    assert publisher.catalog("GenerationProfile", "intruder", uid) is None


@pytest.mark.parametrize(
    ("kind", "generation", "match"),
    [
        ("PrivacyBudget", 1, "PrivacyBudget"),
        ("GenerationProfile", 0, "generation 0"),
        ("GenerationProfile", None, "generation None"),
        ("GenerationProfile", "2", "generation '2'"),
    ],
    ids=["unknown-kind", "zero", "missing", "string"],
)
def test_a_bad_catalog_record_is_refused_before_any_write(
    publisher: PostgresPublisher, job: tuple[str, str], kind: str, generation: Any, match: str
) -> None:
    tenant, uid = job
    record = {"namespace": tenant, "name": "x", "uid": uid, "generation": generation}
    with pytest.raises(ValueError, match=match):
        publisher.mirror_catalog(kind, record | {"valid": True, "message": "", "usedBy": 0})
    assert publisher.catalog("GenerationProfile", tenant, uid) is None
