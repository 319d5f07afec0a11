"""The PostgreSQL privacy-budget ledger (DESIGN §4; docs/adr/0005-budget-ledger.md).

Three tables (migrations in ``tabular_operator/migrations``, applied by :func:`migrate`):
``tab_budget_caps`` (one row per PrivacyBudget), ``tab_budget_allocations`` (one row per job
key) and ``tab_budget_audit`` (append-only, one row per change). Amounts are integers: ε in
micro-ε, δ in units of 10⁻¹² (:data:`~tabular_operator.budget.EPSILON_UNIT`,
:data:`~tabular_operator.budget.DELTA_UNIT`), so sums are exact. Composition is basic
sequential: a cap's usage is the sum of the ε (and δ) of the allocations it covers.

Concurrency (READ COMMITTED): ``allocate``, ``set_cap`` and ``remove_cap`` first take a
transaction-scoped advisory lock on the tenant, in a statement of its own, so that the
statements after it see everything committed before it. One tenant's allocations therefore run
one at a time, a replayed key finds the first allocation, and no cap changes under an
allocation; the default budget, which has no row, is covered too. ``allocate`` then reads the
applicable caps with their usage in one statement that also locks those cap rows ``FOR
UPDATE`` in id order. ``consume``/``release`` lock only their allocation row: they lower usage,
never raise it, so an allocation that overlaps them can only over-count, never over-grant.

Every row carries ``tenant_id`` and every query filters by it: an allocation id is
``<tenant>/<uuid>``, so ``consume``/``release`` know the tenant without a lookup.

The clock is the constructor's ``clock`` callable, read once per call at the edge and passed
down, so tests move time (periods) without sleeping.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, Row, TextClause, create_engine, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from tabular_operator.budget import (
    DELTA_UNIT,
    EPSILON_UNIT,
    PERIODS,
    BudgetCap,
    BudgetError,
    BudgetRefused,
    BudgetSummary,
    BudgetUnavailable,
    delta_units,
    epsilon_units,
    no_budget_message,
    period_start,
    refusal_message,
    remaining_units,
)

T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations"
#: Advisory-lock namespaces (the two-int4 form): migrations, and per-tenant allocation.
_LOCK_MIGRATE = 0x7AB0
_LOCK_TENANT = 0x7AB1
_DEFAULT_CAP = "the operator's default budget"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def engine_url(database_url: str) -> str:
    """The URL with the psycopg 3 driver (``postgresql://`` is accepted too)."""
    url = make_url(database_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def migrate(database_url: str) -> None:
    """Bring the schema to the newest revision (``alembic upgrade head``), idempotently.

    Safe when several operators start at once: the upgrade runs in one transaction that first
    takes an advisory lock, so the second waits and then finds nothing left to do.

    Raises:
        BudgetUnavailable: the database cannot be reached.
    """
    engine = create_engine(engine_url(database_url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:ns, 0)"), {"ns": _LOCK_MIGRATE})
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except OperationalError as exc:
        raise BudgetUnavailable(f"cannot migrate the ledger database: {exc.orig}") from exc
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Drift:
    """An allocation whose ledger state differs from what a job's status says."""

    allocation_id: str
    expected: str
    actual: str | None
    """``allocated | consumed | released``, or ``None``: the ledger has no such allocation."""


@dataclass(frozen=True)
class AuditEntry:
    """One row of the append-only trail."""

    op: str
    allocation_id: str | None
    cap_name: str | None
    epsilon: float | None
    delta: float | None
    job_key: str | None
    at: datetime


def _split_id(allocation_id: str) -> tuple[str, uuid.UUID] | None:
    tenant, sep, raw = allocation_id.rpartition("/")
    if not sep or not tenant:
        return None
    try:
        return tenant, uuid.UUID(raw)
    except ValueError:
        return None


def _period_params(now: datetime) -> dict[str, Any]:
    return {f"start_{p}": period_start(p, now) for p in PERIODS if p != "none"}


# The period start of cap ``c`` as SQL: its value comes from budget.period_start (one source).
_START = (
    "CASE c.period WHEN 'daily' THEN CAST(:start_daily AS timestamptz)"
    " WHEN 'weekly' THEN CAST(:start_weekly AS timestamptz)"
    " WHEN 'monthly' THEN CAST(:start_monthly AS timestamptz)"
    " WHEN 'yearly' THEN CAST(:start_yearly AS timestamptz)"
    " ELSE '-infinity'::timestamptz END"
)


def _caps_with_usage(where: str, lock: str = "") -> TextClause:
    """Caps of ``:tenant`` matching ``where``, each with its usage in its current period."""
    return text(
        f"""
        SELECT c.id, c.name, c.epsilon_micro, c.delta_scaled, c.period, c.updated_at,
               u.spent, u.reserved, u.delta_used, u.allocations, u.last_change
        FROM tab_budget_caps c
        CROSS JOIN LATERAL (
            SELECT coalesce(sum(a.consumed_micro) FILTER (WHERE a.state = 'consumed'), 0)::bigint
                       AS spent,
                   coalesce(sum(a.epsilon_micro) FILTER (WHERE a.state = 'allocated'), 0)::bigint
                       AS reserved,
                   coalesce(sum(a.delta_scaled), 0)::bigint AS delta_used,
                   count(*) AS allocations,
                   greatest(max(a.created_at), max(a.settled_at)) AS last_change
            FROM tab_budget_allocations a
            WHERE a.tenant_id = c.tenant_id
              AND a.state <> 'released'
              AND (c.dataset IS NULL OR a.dataset = c.dataset)
              AND a.created_at >= {_START}
        ) u
        WHERE c.tenant_id = :tenant AND {where}
        ORDER BY c.id
        {lock}
        """
    )


# The caps an allocation must fit (with their usage), locked in id order. Under the tenant
# lock no other allocation or cap change of the tenant runs; the row locks also hold back
# anyone who edits a cap row without taking that lock (an administrator with psql).
_ALLOCATION_CAPS = _caps_with_usage(
    "(c.dataset IS NULL OR c.dataset = :dataset)", "FOR UPDATE OF c"
)
_SUMMARY = _caps_with_usage("c.name = :name")
_TENANT_LOCK = text("SELECT pg_advisory_xact_lock(:ns, hashtext(:tenant))")

_USAGE_ALL = text(
    """
    SELECT coalesce(sum(coalesce(consumed_micro, epsilon_micro)), 0)::bigint,
           coalesce(sum(delta_scaled), 0)::bigint
    FROM tab_budget_allocations
    WHERE tenant_id = :tenant AND state <> 'released'
    """
)

_INSERT_ALLOCATION = text(
    """
    WITH a AS (
        INSERT INTO tab_budget_allocations
            (id, tenant_id, dataset, key, epsilon_micro, delta_scaled, state, created_at)
        VALUES (:id, :tenant, :dataset, :key, :eps, :delta, 'allocated', :now)
        RETURNING id
    )
    INSERT INTO tab_budget_audit
        (tenant_id, op, allocation_id, cap_name, dataset, epsilon_micro, delta_scaled, job_key, at)
    SELECT :tenant, 'allocate', a.id, :caps, :dataset, :eps, :delta, :key, :now FROM a
    """
)

_SETTLE = text(
    """
    WITH a AS (
        UPDATE tab_budget_allocations
        SET state = :state, consumed_micro = :consumed, settled_at = :now
        WHERE tenant_id = :tenant AND id = :id AND state = 'allocated'
        RETURNING id, key, dataset, delta_scaled
    )
    INSERT INTO tab_budget_audit
        (tenant_id, op, allocation_id, dataset, epsilon_micro, delta_scaled, job_key, at)
    SELECT :tenant, :op, a.id, a.dataset, :audit_eps, a.delta_scaled, a.key, :now FROM a
    """
)

_UPSERT_CAP = text(
    """
    WITH c AS (
        INSERT INTO tab_budget_caps AS c
            (tenant_id, name, dataset, epsilon_micro, delta_scaled, period, created_at, updated_at)
        VALUES (:tenant, :name, :dataset, :eps, :delta, :period, :now, :now)
        ON CONFLICT (tenant_id, name) DO UPDATE
        SET dataset = EXCLUDED.dataset, epsilon_micro = EXCLUDED.epsilon_micro,
            delta_scaled = EXCLUDED.delta_scaled, period = EXCLUDED.period,
            updated_at = EXCLUDED.updated_at
        WHERE (c.dataset, c.epsilon_micro, c.delta_scaled, c.period)
              IS DISTINCT FROM
              (EXCLUDED.dataset, EXCLUDED.epsilon_micro, EXCLUDED.delta_scaled, EXCLUDED.period)
        RETURNING c.id
    )
    INSERT INTO tab_budget_audit
        (tenant_id, op, cap_name, dataset, epsilon_micro, delta_scaled, at)
    SELECT :tenant, 'set_cap', :name, :dataset, :eps, :delta, :now FROM c
    """
)

_DELETE_CAP = text(
    """
    WITH c AS (
        DELETE FROM tab_budget_caps WHERE tenant_id = :tenant AND name = :name
        RETURNING name, dataset, epsilon_micro, delta_scaled
    )
    INSERT INTO tab_budget_audit
        (tenant_id, op, cap_name, dataset, epsilon_micro, delta_scaled, at)
    SELECT :tenant, 'remove_cap', c.name, c.dataset, c.epsilon_micro, c.delta_scaled, :now FROM c
    """
)


class PostgresLedger:
    """The :class:`~tabular_operator.budget.Ledger` port over PostgreSQL.

    Args:
        database_url: a SQLAlchemy URL (``postgresql+psycopg://…``; ``postgresql://`` too).
        default_epsilon: ε a tenant may spend (all time) when no cap applies to a job; ``None``
            (the default): such a job is refused with how to create a PrivacyBudget.
        default_delta: δ of that default budget.
        clock: the time source (UTC-aware); read once per call.
        pool_size: connections, and worker threads that run the blocking calls.
    """

    def __init__(
        self,
        database_url: str,
        *,
        default_epsilon: float | None = None,
        default_delta: float = 1e-5,
        clock: Callable[[], datetime] = _utcnow,
        pool_size: int = 10,
    ) -> None:
        self.engine: Engine = create_engine(
            engine_url(database_url),
            pool_size=pool_size,
            max_overflow=0,
            pool_pre_ping=True,
            pool_timeout=30,
        )
        self.default_epsilon = default_epsilon
        self.default_delta = default_delta
        self.clock = clock
        # Own workers, as many as connections: asyncio's default pool has cpu+4 threads.
        self._executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="ledger")

    def close(self) -> None:
        """Close the connections and the worker threads."""
        self._executor.shutdown(wait=True)
        self.engine.dispose()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except OperationalError as exc:
            raise BudgetUnavailable(f"the PostgreSQL ledger is unavailable: {exc.orig}") from exc
        except DBAPIError as exc:
            raise BudgetError(f"the PostgreSQL ledger failed: {exc.orig}") from exc

    # ------------------------------------------------------------------ the port

    async def allocate(
        self, tenant: str, dataset: str | None, epsilon: float, delta: float, key: str
    ) -> str:
        """Reserve ε/δ under every cap that applies; the same id for the same ``key``.

        Raises:
            BudgetRefused: a cap would be exceeded, or no cap applies (and there is no
                default); nothing was reserved.
            BudgetError: a negative amount.
            BudgetUnavailable: the database cannot be reached.
        """
        if epsilon < 0 or delta < 0:
            raise BudgetError(f"ε and δ must be ≥ 0 (got ε {epsilon:g}, δ {delta:g})")
        return await self._call(self._allocate, tenant, dataset, epsilon, delta, key, self.clock())

    async def consume(self, allocation_id: str, epsilon: float) -> None:
        """Charge ``min(epsilon, allocated)`` once; a repeat is a no-op.

        Raises:
            BudgetError: unknown allocation, released allocation, or a negative ε.
        """
        if epsilon < 0:
            raise BudgetError(f"ε spent must be ≥ 0 (got {epsilon:g})")
        await self._call(self._settle, allocation_id, epsilon, self.clock())

    async def release(self, allocation_id: str) -> None:
        """Return a never-consumed allocation; a repeat (or an unknown id) is a no-op.

        Raises:
            BudgetError: the allocation was consumed.
        """
        await self._call(self._settle, allocation_id, None, self.clock())

    async def set_cap(self, cap: BudgetCap) -> BudgetSummary:
        """Create or change a cap (idempotent: an identical cap changes and audits nothing).

        Raises:
            BudgetError: an unknown period or a negative amount.
        """
        if cap.period not in PERIODS:
            raise BudgetError(f"unknown budget period {cap.period!r}; one of {', '.join(PERIODS)}")
        if cap.epsilon < 0 or cap.delta < 0:
            raise BudgetError(f"a cap's ε and δ must be ≥ 0 (PrivacyBudget {cap.name})")
        return await self._call(self._set_cap, cap, self.clock())

    async def remove_cap(self, tenant: str, name: str) -> None:
        """Delete the cap; its allocations and audit stay."""
        await self._call(self._remove_cap, tenant, name, self.clock())

    async def summary(self, tenant: str, name: str) -> BudgetSummary | None:
        """The cap's figures in its current period, or None without such a cap."""
        return await self._call(self._summary, tenant, name, self.clock())

    # ------------------------------------------------------------------ reconciliation

    async def drift(self, job_allocations: Mapping[str, str]) -> list[Drift]:
        """Compare ``{allocation_id: expected_state}`` (from job statuses) with the ledger.

        Returns:
            One :class:`Drift` per allocation whose state differs (or that is missing),
            in the order given.
        """
        return await self._call(self._drift, dict(job_allocations))

    async def audit(self, tenant: str) -> list[AuditEntry]:
        """The tenant's audit trail, oldest first."""
        return await self._call(self._audit, tenant)

    # ------------------------------------------------------------------ blocking bodies

    def _allocate(
        self,
        tenant: str,
        dataset: str | None,
        epsilon: float,
        delta: float,
        key: str,
        now: datetime,
    ) -> str:
        eps, dlt = epsilon_units(epsilon), delta_units(delta)
        with self.engine.begin() as conn:
            # Its own statement: a later statement's snapshot then sees every allocation of
            # the tenant committed before we got the lock (READ COMMITTED).
            conn.execute(_TENANT_LOCK, {"ns": _LOCK_TENANT, "tenant": tenant})
            existing = conn.execute(
                text("SELECT id FROM tab_budget_allocations WHERE tenant_id = :t AND key = :k"),
                {"t": tenant, "k": key},
            ).scalar()
            if existing is not None:
                return f"{tenant}/{existing}"
            caps = conn.execute(
                _ALLOCATION_CAPS, {"tenant": tenant, "dataset": dataset, **_period_params(now)}
            ).all()
            if caps:
                self._check_caps(tenant, caps, epsilon, eps, delta, dlt)
                cap_names = ",".join(row.name for row in caps)
            else:
                self._check_default(conn, tenant, dataset, epsilon, eps, delta, dlt)
                cap_names = "default"
            allocation = uuid.uuid4()
            conn.execute(
                _INSERT_ALLOCATION,
                {
                    "id": allocation,
                    "tenant": tenant,
                    "dataset": dataset,
                    "key": key,
                    "eps": eps,
                    "delta": dlt,
                    "now": now,
                    "caps": cap_names,
                },
            )
        return f"{tenant}/{allocation}"

    @staticmethod
    def _check_caps(
        tenant: str,
        caps: Sequence[Row[Any]],
        epsilon: float,
        eps: int,
        delta: float,
        dlt: int,
    ) -> None:
        for row in caps:
            where = f"PrivacyBudget {row.name} (namespace {tenant})"
            used = row.spent + row.reserved
            if used + eps > row.epsilon_micro:
                raise BudgetRefused(
                    refusal_message(
                        quantity="ε",
                        requested=epsilon,
                        remaining=remaining_units(row.epsilon_micro, row.spent, row.reserved)
                        / EPSILON_UNIT,
                        cap=row.epsilon_micro / EPSILON_UNIT,
                        where=where,
                    )
                )
            if row.delta_used + dlt > row.delta_scaled:
                raise BudgetRefused(
                    refusal_message(
                        quantity="δ",
                        requested=delta,
                        remaining=remaining_units(row.delta_scaled, row.delta_used, 0) / DELTA_UNIT,
                        cap=row.delta_scaled / DELTA_UNIT,
                        where=where,
                    )
                )

    def _check_default(
        self,
        conn: Connection,
        tenant: str,
        dataset: str | None,
        epsilon: float,
        eps: int,
        delta: float,
        dlt: int,
    ) -> None:
        if self.default_epsilon is None:
            raise BudgetRefused(no_budget_message(tenant, dataset))
        cap_eps, cap_dlt = epsilon_units(self.default_epsilon), delta_units(self.default_delta)
        row = conn.execute(_USAGE_ALL, {"tenant": tenant}).one()
        used_eps, used_dlt = int(row[0]), int(row[1])
        where = f"{_DEFAULT_CAP} (namespace {tenant}; no PrivacyBudget applies)"
        if used_eps + eps > cap_eps:
            raise BudgetRefused(
                refusal_message(
                    quantity="ε",
                    requested=epsilon,
                    remaining=remaining_units(cap_eps, used_eps, 0) / EPSILON_UNIT,
                    cap=self.default_epsilon,
                    where=where,
                )
            )
        if used_dlt + dlt > cap_dlt:
            raise BudgetRefused(
                refusal_message(
                    quantity="δ",
                    requested=delta,
                    remaining=remaining_units(cap_dlt, used_dlt, 0) / DELTA_UNIT,
                    cap=self.default_delta,
                    where=where,
                )
            )

    def _settle(self, allocation_id: str, epsilon: float | None, now: datetime) -> None:
        """Consume (``epsilon`` given) or release (``None``) one allocation."""
        verb = "consume" if epsilon is not None else "release"
        parsed = _split_id(allocation_id)
        if parsed is None:
            if epsilon is None:
                return  # nothing of ours is reserved under that id
            raise BudgetError(f"{verb} of {allocation_id!r}: not an allocation of this ledger")
        tenant, allocation = parsed
        with self.engine.begin() as conn:
            row = conn.execute(
                text(
                    "SELECT state, epsilon_micro FROM tab_budget_allocations"
                    " WHERE tenant_id = :t AND id = :id FOR UPDATE"
                ),
                {"t": tenant, "id": allocation},
            ).one_or_none()
            if row is None:
                if epsilon is None:
                    return
                raise BudgetError(f"consume of unknown allocation {allocation_id!r}")
            if epsilon is not None:
                if row.state == "consumed":
                    return
                if row.state == "released":
                    raise BudgetError(f"consume after release of {allocation_id!r}")
                charged = min(epsilon_units(epsilon), row.epsilon_micro)
                params = {"state": "consumed", "consumed": charged, "audit_eps": charged}
            else:
                if row.state == "released":
                    return
                if row.state == "consumed":
                    raise BudgetError(f"release after consume of {allocation_id!r}")
                params = {"state": "released", "consumed": None, "audit_eps": row.epsilon_micro}
            conn.execute(
                _SETTLE, {"tenant": tenant, "id": allocation, "op": verb, "now": now, **params}
            )

    def _set_cap(self, cap: BudgetCap, now: datetime) -> BudgetSummary:
        with self.engine.begin() as conn:
            conn.execute(_TENANT_LOCK, {"ns": _LOCK_TENANT, "tenant": cap.tenant})
            conn.execute(
                _UPSERT_CAP,
                {
                    "tenant": cap.tenant,
                    "name": cap.name,
                    "dataset": cap.dataset,
                    "eps": epsilon_units(cap.epsilon),
                    "delta": delta_units(cap.delta),
                    "period": cap.period,
                    "now": now,
                },
            )
            summary = self._summary_on(conn, cap.tenant, cap.name, now)
        assert summary is not None  # upserted in this transaction
        return summary

    def _remove_cap(self, tenant: str, name: str, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(_TENANT_LOCK, {"ns": _LOCK_TENANT, "tenant": tenant})
            conn.execute(_DELETE_CAP, {"tenant": tenant, "name": name, "now": now})

    def _summary(self, tenant: str, name: str, now: datetime) -> BudgetSummary | None:
        with self.engine.connect() as conn:
            return self._summary_on(conn, tenant, name, now)

    @staticmethod
    def _summary_on(
        conn: Connection, tenant: str, name: str, now: datetime
    ) -> BudgetSummary | None:
        row = conn.execute(
            _SUMMARY, {"tenant": tenant, "name": name, **_period_params(now)}
        ).one_or_none()
        if row is None:
            return None
        changes = [t for t in (row.updated_at, row.last_change) if t is not None]
        return BudgetSummary(
            epsilon=row.epsilon_micro / EPSILON_UNIT,
            spent=row.spent / EPSILON_UNIT,
            reserved=row.reserved / EPSILON_UNIT,
            remaining=remaining_units(row.epsilon_micro, row.spent, row.reserved) / EPSILON_UNIT,
            allocations=row.allocations,
            period_start=period_start(row.period, now),
            last_change=max(changes).astimezone(UTC) if changes else None,
        )

    def _drift(self, expected: dict[str, str]) -> list[Drift]:
        by_tenant: dict[str, list[uuid.UUID]] = {}
        for allocation_id in expected:
            parsed = _split_id(allocation_id)
            if parsed is not None:
                by_tenant.setdefault(parsed[0], []).append(parsed[1])
        actual: dict[str, str] = {}
        with self.engine.connect() as conn:
            for tenant, ids in by_tenant.items():
                rows = conn.execute(
                    text(
                        "SELECT id, state FROM tab_budget_allocations"
                        " WHERE tenant_id = :t AND id = ANY(:ids)"
                    ),
                    {"t": tenant, "ids": ids},
                )
                actual |= {f"{tenant}/{r.id}": r.state for r in rows}
        return [
            Drift(allocation_id, state, actual.get(allocation_id))
            for allocation_id, state in expected.items()
            if actual.get(allocation_id) != state
        ]

    def _audit(self, tenant: str) -> list[AuditEntry]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT op, allocation_id, cap_name, epsilon_micro, delta_scaled, job_key, at"
                    " FROM tab_budget_audit WHERE tenant_id = :t ORDER BY id"
                ),
                {"t": tenant},
            )
            return [
                AuditEntry(
                    op=r.op,
                    allocation_id=f"{tenant}/{r.allocation_id}" if r.allocation_id else None,
                    cap_name=r.cap_name,
                    epsilon=None if r.epsilon_micro is None else r.epsilon_micro / EPSILON_UNIT,
                    delta=None if r.delta_scaled is None else r.delta_scaled / DELTA_UNIT,
                    job_key=r.job_key,
                    at=r.at.astimezone(UTC),
                )
                for r in rows
            ]
