"""Row-level security of the operator database (migration 0003, ADR 0006), on a real PostgreSQL.

Real: PostgreSQL, its roles and policies, SQLAlchemy, psycopg, Alembic, the mirror and the
ledger writing the rows. The deployment is built the way ADR 0006 describes it: a database
owned by a plain login role (no superuser, no CREATEROLE) that runs the migrations and writes
every tenant, and tenant readers, login roles that are members of ``tab_tenant``. The platform's
superuser only creates those roles and the database (and runs the first migration of the
session's main database, which creates ``tab_tenant``).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Connection, Engine, create_engine, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from tabular_operator.budget import BudgetCap
from tabular_operator.events import EVENT_TYPES
from tabular_operator.ledger_pg import PostgresLedger, engine_url, migrate
from tabular_operator.mirror_pg import PostgresPublisher
from tabular_operator.tenant_pg import TENANT_TABLES, tenant_session

pytestmark = pytest.mark.integration


@dataclass
class Deployment:
    url: str
    """The operator's URL (the owner of the tables)."""
    owner: Engine
    reader: Engine
    """A login role in tab_tenant."""
    outsider: Engine
    """A login role that is not in tab_tenant."""
    tenants: tuple[str, str]


def _url(base: str, user: str, password: str, database: str) -> str:
    url = make_url(engine_url(base)).set(username=user, password=password, database=database)
    return url.render_as_string(hide_password=False)


def _fill(url: str, tenant: str) -> None:
    """Rows of ``tenant`` in every table under row-level security, written as the operator."""
    publisher = PostgresPublisher(url)
    uid = str(uuid.uuid4())
    try:
        for phase in ("QUEUED", "TRAINING"):
            publisher.apply(
                {
                    "type": EVENT_TYPES[phase],
                    "namespace": tenant,
                    "name": "adult",
                    "uid": uid,
                    "phase": phase,
                    "time": "2025-03-12T15:30:00Z",
                }
            )
        identity = {"namespace": tenant, "name": "p", "generation": 1, "spec": {"x": tenant}}
        publisher.mirror_catalog(
            "GenerationProfile",
            identity | {"uid": str(uuid.uuid4()), "valid": True, "message": "valid", "usedBy": 1},
        )
        publisher.mirror_catalog(
            "MultiTableSchema",
            identity
            | {"uid": str(uuid.uuid4()), "valid": True, "message": "2 tables", "usedBy": 0}
            | {"tableCount": 2, "depth": 2},
        )
    finally:
        publisher.close()

    async def budget() -> None:
        ledger = PostgresLedger(url, pool_size=1)
        try:
            await ledger.set_cap(BudgetCap(tenant, "team", 10.0, 1e-5))
            await ledger.allocate(tenant, None, 1.0, 1e-6, uid)
        finally:
            ledger.close()

    asyncio.run(budget())


@pytest.fixture(scope="module")
def deployment(database_url: str) -> Iterator[Deployment]:
    migrate(database_url)  # as the superuser: creates the cluster-wide role tab_tenant
    run = secrets.token_hex(4)
    operator, reader, outsider = f"op_{run}", f"reader_{run}", f"outsider_{run}"
    password = secrets.token_hex(12)
    database = f"rls_{run}"
    admin = create_engine(
        engine_url(database_url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(
            text(f"CREATE ROLE {operator} LOGIN NOSUPERUSER NOCREATEROLE PASSWORD '{password}'")
        )
        conn.execute(text(f"CREATE ROLE {reader} LOGIN IN ROLE tab_tenant PASSWORD '{password}'"))
        conn.execute(text(f"CREATE ROLE {outsider} LOGIN PASSWORD '{password}'"))
        conn.execute(text(f"CREATE DATABASE {database} OWNER {operator}"))
    url = _url(database_url, operator, password, database)
    engines: list[Engine] = []
    try:
        migrate(url)
        tenants = (f"rls-a-{run}", f"rls-b-{run}")
        for tenant in tenants:
            _fill(url, tenant)
        engines = [
            create_engine(_url(database_url, user, password, database), poolclass=NullPool)
            for user in (operator, reader, outsider)
        ]
        yield Deployment(url, *engines, tenants=tenants)
    finally:
        for engine in engines:
            engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            for role in (reader, outsider, operator):
                conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


def _counts(conn: Connection) -> dict[str, dict[str, int]]:
    """Rows per table per tenant_id, as the connection sees them."""
    return {
        table: dict(
            conn.execute(text(f"SELECT tenant_id, count(*) FROM {table} GROUP BY tenant_id"))
            .tuples()
            .all()
        )
        for table in TENANT_TABLES
    }


def test_the_operator_owns_the_tables_and_reads_and_writes_every_tenant(
    deployment: Deployment,
) -> None:
    with deployment.owner.connect() as conn:
        seen = _counts(conn)

    for table in TENANT_TABLES:
        for tenant in deployment.tenants:
            assert seen[table].get(tenant, 0) >= 1, f"{table} has no row of {tenant}"


@pytest.mark.parametrize("side", [0, 1], ids=["tenant-a", "tenant-b"])
def test_a_reader_sees_its_tenant_rows_and_none_of_the_other_in_every_table(
    deployment: Deployment, side: int
) -> None:
    # Setup
    mine, theirs = deployment.tenants[side], deployment.tenants[1 - side]
    with deployment.owner.connect() as conn:
        expected = {table: counts[mine] for table, counts in _counts(conn).items()}

    # Run
    with tenant_session(deployment.reader, mine) as conn:
        seen = _counts(conn)
        by_uid = conn.execute(
            text("SELECT count(*) FROM tab_generation_jobs WHERE tenant_id = :t"), {"t": theirs}
        ).scalar_one()

    # Assert: exactly its own rows, table by table; asking for the other's by name finds none
    assert seen == {table: {mine: n} for table, n in expected.items()}
    assert by_uid == 0


def test_without_the_setting_a_reader_sees_nothing(deployment: Deployment) -> None:
    with deployment.reader.connect() as conn:
        seen = _counts(conn)
        conn.execute(text("SELECT set_config('aumos.tenant_id', '', false)"))
        seen_empty = _counts(conn)

    assert seen == {table: {} for table in TENANT_TABLES}
    assert seen_empty == {table: {} for table in TENANT_TABLES}


@pytest.mark.parametrize(
    "value",
    [
        "{a}' OR '1'='1",
        "{a}'; SET aumos.tenant_id = '{b}",
        "{a} ",
        "{A}",
        "%",
        "{a},{b}",
        "' OR tenant_id IS NOT NULL OR '",
    ],
    ids=[
        "or-true",
        "stacked-set",
        "trailing-space",
        "uppercase",
        "wildcard",
        "list",
        "or-not-null",
    ],
)
def test_injection_like_tenant_values_are_refused_and_match_nothing_in_sql(
    deployment: Deployment, value: str
) -> None:
    a, b = deployment.tenants
    value = value.format(a=a, b=b, A=a.upper())

    # The helper refuses what is not a namespace name before asking the database.
    with pytest.raises(ValueError, match="not a namespace name"):
        with tenant_session(deployment.reader, value):
            pass

    # Set as a bound value without the helper, it is one string that is no tenant: no row.
    with deployment.reader.begin() as conn:
        conn.execute(text("SELECT set_config('aumos.tenant_id', :v, true)"), {"v": value})
        seen = _counts(conn)
    assert seen == {table: {} for table in TENANT_TABLES}


def test_the_setting_does_not_outlive_the_transaction_on_a_pooled_connection(
    deployment: Deployment,
) -> None:
    # Setup: a pool of one connection, reused
    engine = create_engine(deployment.reader.url, pool_size=1)
    try:
        with tenant_session(engine, deployment.tenants[0]) as conn:
            assert sum(_counts(conn)["tab_outbox"].values()) >= 1

        # Run
        with engine.connect() as conn:
            seen = _counts(conn)
    finally:
        engine.dispose()

    # Assert
    assert seen == {table: {} for table in TENANT_TABLES}


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO tab_outbox (event_id, tenant_id, job_uid, seq, type, payload, created_at)"
        " VALUES (gen_random_uuid(), :t, 'u', 1, 'x', '{}', now())",
        "UPDATE tab_generation_jobs SET phase = 'FAILED' WHERE tenant_id = :t",
        "DELETE FROM tab_budget_allocations WHERE tenant_id = :t",
    ],
    ids=["insert", "update", "delete"],
)
def test_readers_cannot_write(deployment: Deployment, statement: str) -> None:
    tenant = deployment.tenants[0]
    with pytest.raises(DBAPIError, match="permission denied"):
        with tenant_session(deployment.reader, tenant) as conn:
            conn.execute(text(statement), {"t": tenant})


def test_a_role_outside_tab_tenant_reads_nothing_even_with_the_setting(
    deployment: Deployment,
) -> None:
    with pytest.raises(DBAPIError, match="permission denied"):
        with tenant_session(deployment.outsider, deployment.tenants[0]) as conn:
            conn.execute(text("SELECT count(*) FROM tab_generation_jobs"))


def test_every_table_with_a_tenant_id_is_under_row_level_security(deployment: Deployment) -> None:
    with deployment.owner.connect() as conn:
        with_tenant = set(
            conn.scalars(
                text(
                    "SELECT table_name FROM information_schema.columns"
                    " WHERE table_schema = current_schema() AND column_name = 'tenant_id'"
                )
            )
        )
        protected = set(
            conn.scalars(
                text(
                    "SELECT c.relname FROM pg_class c JOIN pg_policy p ON p.polrelid = c.oid"
                    " WHERE c.relrowsecurity AND p.polname = 'tab_tenant_isolation'"
                )
            )
        )

    assert with_tenant == protected == set(TENANT_TABLES)
