"""The PostgreSQL ε ledger against a real PostgreSQL (docs/adr/0005-budget-ledger.md).

Real: PostgreSQL (the platform's ``database_url``), SQLAlchemy, psycopg, Alembic, threads.
Not real: the clock — a settable :class:`Clock` the ledger reads once per call, so periods
renew without waiting. Each test works in its own tenant (namespace), so tests share one
migrated database and never see each other's rows.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tabular_operator.budget import (
    BudgetCap,
    BudgetError,
    BudgetRefused,
    BudgetSummary,
    epsilon_units,
    period_start,
)
from tabular_operator.ledger_pg import PostgresLedger, migrate

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 12, 15, 30, tzinfo=UTC)  # a Wednesday


class Clock:
    """A settable UTC clock."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def migrated(database_url: str) -> str:
    migrate(database_url)
    return database_url


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def ledger(migrated: str, clock: Clock) -> Iterator[PostgresLedger]:
    ledger = PostgresLedger(migrated, clock=clock, pool_size=48)
    yield ledger
    ledger.close()


@pytest.fixture
def tenant(clock: Clock) -> str:
    clock.now = T0
    return f"t-{uuid.uuid4().hex[:10]}"


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- migrations


def test_migrate_is_idempotent_and_safe_when_two_processes_start_at_once(migrated: str) -> None:
    # Run: two "operators" start together, then one restarts
    errors: list[BaseException] = []

    def start() -> None:
        try:
            migrate(migrated)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    migrate(migrated)
    # Assert
    assert errors == []


# ---------------------------------------------------------------------- concurrency


def test_200_concurrent_allocations_fill_the_cap_exactly_and_never_go_negative(
    ledger: PostgresLedger, tenant: str
) -> None:
    async def scenario() -> tuple[list[object], list[BudgetSummary]]:
        await ledger.set_cap(BudgetCap(tenant, "team-budget", 10.0, 1e-3))
        samples: list[BudgetSummary] = []
        done = asyncio.Event()

        async def sample() -> None:
            while not done.is_set():
                summary = await ledger.summary(tenant, "team-budget")
                assert summary is not None
                samples.append(summary)

        sampler = asyncio.create_task(sample())
        results = await asyncio.gather(
            *(ledger.allocate(tenant, None, 0.3, 1e-6, f"job-{i}") for i in range(200)),
            return_exceptions=True,
        )
        done.set()
        await sampler
        samples.append(await ledger.summary(tenant, "team-budget"))  # type: ignore[arg-type]
        return list(results), samples

    # Run
    results, samples = asyncio.run(scenario())
    # Assert
    granted = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, BudgetRefused)]
    assert len(granted) == 33 and len(set(granted)) == 33
    assert len(refused) == 167, [r for r in results if not isinstance(r, str | BudgetRefused)]
    final = samples[-1]
    assert final.spent + final.reserved == pytest.approx(9.9)
    assert final.remaining == pytest.approx(0.1) and final.allocations == 33
    assert len(samples) > 5
    assert min(s.remaining for s in samples) >= 0
    # Every sample is one consistent snapshot: what is reserved plus what remains is the cap.
    assert all(epsilon_units(s.reserved + s.remaining) == 10_000_000 for s in samples)
    assert "requested ε 0.3 but 0.1 of 10 remains in PrivacyBudget team-budget" in str(refused[0])


def test_one_key_replayed_1000_times_concurrently_is_one_allocation(
    ledger: PostgresLedger, tenant: str
) -> None:
    async def scenario() -> list[str]:
        await ledger.set_cap(BudgetCap(tenant, "b", 5.0, 1e-3))
        return await asyncio.gather(
            *(ledger.allocate(tenant, None, 1.0, 1e-6, "job-uid") for _ in range(1000))
        )

    # Run
    ids = asyncio.run(scenario())
    # Assert
    assert len(set(ids)) == 1
    summary = run(ledger.summary(tenant, "b"))
    assert isinstance(summary, BudgetSummary)
    assert (summary.reserved, summary.allocations) == (1.0, 1)
    assert [e.op for e in run(ledger.audit(tenant))] == ["set_cap", "allocate"]  # type: ignore[attr-defined]


def test_consume_once_release_once_and_the_forbidden_orders(
    ledger: PostgresLedger, tenant: str
) -> None:
    async def scenario() -> dict[str, object]:
        await ledger.set_cap(BudgetCap(tenant, "b", 5.0, 1e-3))
        a = await ledger.allocate(tenant, None, 2.0, 1e-6, "a")
        await asyncio.gather(*(ledger.consume(a, 0.5) for _ in range(20)))
        await ledger.consume(a, 1.5)  # a second consume changes nothing
        out: dict[str, object] = {"after_consume": await ledger.summary(tenant, "b")}
        for name, call in {
            "release_after_consume": ledger.release(a),
            "consume_unknown": ledger.consume(f"{tenant}/{uuid.uuid4()}", 1.0),
            "consume_foreign_id": ledger.consume("file-job-uid", 1.0),
        }.items():
            try:
                await call
            except BudgetError as exc:
                out[name] = exc
        b = await ledger.allocate(tenant, None, 1.0, 1e-6, "b")
        await asyncio.gather(*(ledger.release(b) for _ in range(5)))
        try:
            await ledger.consume(b, 1.0)
        except BudgetError as exc:
            out["consume_after_release"] = exc
        await ledger.release(f"{tenant}/{uuid.uuid4()}")  # unknown: nothing reserved, no-op
        c = await ledger.allocate(tenant, None, 1.0, 1e-6, "c")
        await ledger.consume(c, 7.0)  # never above the allocation
        out["final"] = await ledger.summary(tenant, "b")
        out["audit"] = [(e.op, e.job_key, e.epsilon) for e in await ledger.audit(tenant)]
        return out

    # Run
    out = asyncio.run(scenario())
    # Assert
    assert out["after_consume"] == BudgetSummary(
        5.0,
        0.5,
        0.0,
        4.5,
        1,
        None,
        out["after_consume"].last_change,  # type: ignore[attr-defined]
    )
    for name in ("release_after_consume", "consume_unknown", "consume_foreign_id"):
        assert isinstance(out[name], BudgetError) and not isinstance(out[name], BudgetRefused)
    assert "release after consume" in str(out["release_after_consume"])
    assert "consume after release" in str(out["consume_after_release"])
    final = out["final"]
    assert isinstance(final, BudgetSummary)
    assert (final.spent, final.reserved, final.remaining) == (1.5, 0.0, 3.5)
    assert out["audit"] == [
        ("set_cap", None, 5.0),
        ("allocate", "a", 2.0),
        ("consume", "a", 0.5),
        ("allocate", "b", 1.0),
        ("release", "b", 1.0),
        ("allocate", "c", 1.0),
        ("consume", "c", 1.0),
    ]


# ---------------------------------------------------------------------- scope and periods


def test_tenants_are_isolated_and_dataset_caps_apply_only_to_their_dataset(
    ledger: PostgresLedger, tenant: str
) -> None:
    other = tenant + "-other"

    async def scenario() -> dict[str, object]:
        await ledger.set_cap(BudgetCap(tenant, "all", 3.0, 1e-3))
        await ledger.set_cap(BudgetCap(tenant, "census", 1.0, 1e-3, dataset="s3://d/census.csv"))
        await ledger.set_cap(BudgetCap(other, "all", 100.0, 1e-3))
        out: dict[str, object] = {}
        await ledger.allocate(tenant, "s3://d/census.csv", 1.0, 1e-6, "c1")
        try:  # the dataset cap is full…
            await ledger.allocate(tenant, "s3://d/census.csv", 0.5, 1e-6, "c2")
        except BudgetRefused as exc:
            out["census_full"] = exc
        # …other datasets only meet the tenant-wide cap (1 of 3 used)
        await ledger.allocate(tenant, "s3://d/adult.csv", 2.0, 1e-6, "a1")
        try:
            await ledger.allocate(tenant, "s3://d/adult.csv", 0.5, 1e-6, "a2")
        except BudgetRefused as exc:
            out["tenant_full"] = exc
        await ledger.allocate(other, "s3://d/census.csv", 50.0, 1e-6, "c1")  # same key, other ns
        out["ours"] = await ledger.summary(tenant, "all")
        out["census"] = await ledger.summary(tenant, "census")
        out["theirs"] = await ledger.summary(other, "all")
        out["cross"] = await ledger.summary(other, "census")
        return out

    # Run
    out = asyncio.run(scenario())
    # Assert
    assert "remains in PrivacyBudget census" in str(out["census_full"])
    assert "requested ε 0.5 but 0 of 3 remains in PrivacyBudget all" in str(out["tenant_full"])
    ours, census, theirs = out["ours"], out["census"], out["theirs"]
    assert isinstance(ours, BudgetSummary) and (ours.reserved, ours.allocations) == (3.0, 2)
    assert isinstance(census, BudgetSummary) and (census.reserved, census.allocations) == (1.0, 1)
    assert isinstance(theirs, BudgetSummary) and (theirs.reserved, theirs.allocations) == (50, 1)
    assert out["cross"] is None


def test_no_budget_is_refused_with_how_to_create_one_unless_a_default_is_set(
    migrated: str, ledger: PostgresLedger, tenant: str
) -> None:
    # Setup
    with_default = PostgresLedger(migrated, default_epsilon=1.0, default_delta=1e-5, pool_size=2)
    try:
        # Run
        with pytest.raises(BudgetRefused) as refused:
            run(ledger.allocate(tenant, None, 0.1, 1e-6, "j1"))
        first = run(with_default.allocate(tenant, None, 0.6, 1e-6, "j1"))
        with pytest.raises(BudgetRefused) as over:
            run(with_default.allocate(tenant, None, 0.6, 1e-6, "j2"))
        # A PrivacyBudget replaces the default for the jobs it covers.
        run(ledger.set_cap(BudgetCap(tenant, "pb", 2.0, 1e-3)))
        second = run(with_default.allocate(tenant, None, 0.6, 1e-6, "j2"))
    finally:
        with_default.close()
    # Assert
    assert "kubectl apply" in str(refused.value) and "spec.epsilon" in str(refused.value)
    assert f"namespace '{tenant}'" in str(refused.value)
    assert "requested ε 0.6 but 0.4 of 1 remains in the operator's default budget" in str(
        over.value
    )
    assert isinstance(first, str) and isinstance(second, str)


def test_periods_renew_at_the_utc_calendar_start_and_history_stays(
    ledger: PostgresLedger, tenant: str, clock: Clock
) -> None:
    async def scenario() -> dict[str, object]:
        out: dict[str, object] = {}
        await ledger.set_cap(BudgetCap(tenant, "daily", 1.0, 1e-3, period="daily"))
        a = await ledger.allocate(tenant, None, 0.8, 1e-6, "d1")
        await ledger.consume(a, 0.7)
        try:
            await ledger.allocate(tenant, None, 0.5, 1e-6, "d2")
        except BudgetRefused as exc:
            out["same_day"] = exc
        clock.now = T0.replace(hour=23, minute=59, second=59)
        out["late"] = await ledger.summary(tenant, "daily")
        clock.now = T0 + timedelta(days=1)
        out["next_day"] = await ledger.summary(tenant, "daily")
        await ledger.allocate(tenant, None, 0.5, 1e-6, "d2")
        await ledger.set_cap(BudgetCap(tenant, "daily", 1.0, 1e-3, period="monthly"))
        out["monthly"] = await ledger.summary(tenant, "daily")
        out["audit"] = len(await ledger.audit(tenant))
        return out

    # Run
    out = asyncio.run(scenario())
    # Assert
    assert "requested ε 0.5 but 0.3 of 1 remains" in str(out["same_day"])
    late, nxt, monthly = out["late"], out["next_day"], out["monthly"]
    assert isinstance(late, BudgetSummary) and late.spent == 0.7
    assert isinstance(nxt, BudgetSummary)
    assert (nxt.spent, nxt.remaining, nxt.allocations) == (0.0, 1.0, 0)
    assert nxt.period_start == datetime(2025, 3, 13, tzinfo=UTC)
    assert isinstance(monthly, BudgetSummary)  # history was kept: the month sees both days
    assert (monthly.spent, monthly.reserved, monthly.remaining) == (0.7, 0.5, 0.0)
    assert monthly.period_start == datetime(2025, 3, 1, tzinfo=UTC)
    assert out["audit"] == 5  # set_cap, allocate, consume, allocate, set_cap


def test_a_cap_lowered_below_spending_leaves_zero_and_remove_keeps_history(
    ledger: PostgresLedger, tenant: str
) -> None:
    async def scenario() -> tuple[object, ...]:
        await ledger.set_cap(BudgetCap(tenant, "b", 5.0, 1e-3))
        a = await ledger.allocate(tenant, None, 3.0, 1e-6, "a")
        await ledger.consume(a, 3.0)
        again = await ledger.set_cap(BudgetCap(tenant, "b", 5.0, 1e-3))  # identical: no change
        lowered = await ledger.set_cap(BudgetCap(tenant, "b", 1.0, 1e-3))
        await ledger.remove_cap(tenant, "b")
        await ledger.remove_cap(tenant, "b")
        gone = await ledger.summary(tenant, "b")
        audit = [e.op for e in await ledger.audit(tenant)]
        drift = await ledger.drift({a: "consumed"})
        return again, lowered, gone, audit, drift

    # Run
    again, lowered, gone, audit, drift = asyncio.run(scenario())
    # Assert
    assert isinstance(again, BudgetSummary) and again.remaining == 2.0
    assert isinstance(lowered, BudgetSummary)
    assert (lowered.epsilon, lowered.spent, lowered.remaining) == (1.0, 3.0, 0.0)
    assert gone is None
    assert audit == ["set_cap", "allocate", "consume", "set_cap", "remove_cap"]
    assert drift == []


def test_drift_reports_what_differs_from_the_job_statuses(
    ledger: PostgresLedger, tenant: str
) -> None:
    async def scenario() -> tuple[list[str], list[object]]:
        await ledger.set_cap(BudgetCap(tenant, "b", 5.0, 1e-3))
        ids = [await ledger.allocate(tenant, None, 1.0, 1e-6, f"k{i}") for i in range(3)]
        await ledger.consume(ids[0], 1.0)
        await ledger.release(ids[1])
        missing = f"{tenant}/{uuid.uuid4()}"
        drift = await ledger.drift(
            {ids[0]: "consumed", ids[1]: "allocated", ids[2]: "allocated", missing: "consumed"}
        )
        return [*ids, missing], list(drift)

    # Run
    ids, drift = asyncio.run(scenario())
    # Assert
    assert [(d.allocation_id, d.expected, d.actual) for d in drift] == [  # type: ignore[attr-defined]
        (ids[1], "allocated", "released"),
        (ids[3], "consumed", None),
    ]


# ---------------------------------------------------------------------- property


@dataclass
class Model:
    """What the ledger must answer, computed the slow, obvious way."""

    now: datetime
    cap: int = 0
    period: str = "none"
    allocations: dict[str, dict[str, object]] = field(default_factory=dict)
    changes: int = 0
    lowered: bool = False

    def in_period(self) -> list[dict[str, object]]:
        start = period_start(self.period, self.now)
        return [
            a
            for a in self.allocations.values()
            if a["state"] != "released" and (start is None or a["created"] >= start)  # type: ignore[operator]
        ]

    def spent(self) -> int:
        return sum(int(a["consumed"]) for a in self.in_period() if a["state"] == "consumed")  # type: ignore[call-overload]

    def reserved(self) -> int:
        return sum(int(a["eps"]) for a in self.in_period() if a["state"] == "allocated")  # type: ignore[call-overload]


EPS = st.integers(1, 30).map(lambda n: n / 10)
OPS = st.one_of(
    st.tuples(st.just("allocate"), st.integers(0, 4), EPS),
    st.tuples(st.just("consume"), st.integers(0, 4), EPS),
    st.tuples(st.just("release"), st.integers(0, 4), st.just(0.0)),
    st.tuples(st.just("set_cap"), st.sampled_from(("none", "daily", "monthly")), EPS),
    st.tuples(st.just("advance"), st.sampled_from((0, 1, 9, 40)), st.just(0.0)),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(first_cap=EPS.map(lambda e: e * 2), ops=st.lists(OPS, min_size=3, max_size=25))
def test_random_sequences_keep_every_invariant(
    ledger: PostgresLedger, clock: Clock, first_cap: float, ops: list[tuple[str, object, float]]
) -> None:
    tenant = f"p-{uuid.uuid4().hex[:10]}"  # a fresh tenant per example
    clock.now = T0
    model = Model(now=T0)

    async def step(op: str, arg: object, eps: float) -> None:
        if op == "allocate":
            key = f"k{arg}"
            usage = model.spent() + model.reserved()
            try:
                allocation_id = await ledger.allocate(tenant, None, eps, 0.0, key)
            except BudgetRefused:
                assert key not in model.allocations and model.cap > 0
                assert usage + epsilon_units(eps) > model.cap
                return
            if key in model.allocations:
                assert model.allocations[key]["id"] == allocation_id
                return
            assert usage + epsilon_units(eps) <= model.cap
            model.allocations[key] = {
                "id": allocation_id,
                "eps": epsilon_units(eps),
                "state": "allocated",
                "consumed": 0,
                "created": model.now,
            }
            model.changes += 1
        elif op in ("consume", "release"):
            a = model.allocations.get(f"k{arg}")
            if a is None:
                return
            forbidden = "released" if op == "consume" else "consumed"
            try:
                if op == "consume":
                    await ledger.consume(str(a["id"]), eps)
                else:
                    await ledger.release(str(a["id"]))
            except BudgetError:
                assert a["state"] == forbidden
                return
            assert a["state"] != forbidden
            if a["state"] == "allocated":
                a["state"] = op + "d" if op == "release" else "consumed"
                a["consumed"] = min(epsilon_units(eps), int(a["eps"])) if op == "consume" else 0  # type: ignore[call-overload]
                model.changes += 1
        elif op == "set_cap":
            new = epsilon_units(eps)
            model.changes += (new, arg) != (model.cap, model.period)
            model.cap, model.period = new, str(arg)
            await ledger.set_cap(BudgetCap(tenant, "b", eps, 0.5, period=str(arg)))
            model.lowered |= model.spent() + model.reserved() > model.cap
        else:
            model.now = clock.now = model.now + timedelta(days=int(arg))  # type: ignore[call-overload]

    async def scenario() -> None:
        for op, arg, eps in [("set_cap", "none", first_cap), *ops]:
            await step(op, arg, eps)
            summary = await ledger.summary(tenant, "b")
            assert summary is not None
            assert summary.remaining >= 0
            assert epsilon_units(summary.spent) == model.spent()
            assert epsilon_units(summary.reserved) == model.reserved()
            assert epsilon_units(summary.remaining) == max(
                0, model.cap - model.spent() - model.reserved()
            )
            if not model.lowered:
                assert model.spent() + model.reserved() <= model.cap
        audit = await ledger.audit(tenant)
        assert len(audit) == model.changes
        settled = [e.allocation_id for e in audit if e.op in ("consume", "release")]
        assert len(settled) == len(set(settled))

    asyncio.run(scenario())


def test_bootstrap_migrates_and_builds_the_postgres_ledger(migrated: str) -> None:
    # Setup
    from tabular_operator.bootstrap import build_ledger
    from tabular_operator.settings import OperatorSettings

    settings = OperatorSettings(database_url=migrated, default_budget_epsilon=3.0)  # type: ignore[arg-type]
    # Run
    ledger, described = build_ledger(settings)
    # Assert
    try:
        assert isinstance(ledger, PostgresLedger)
        assert described == "postgresql (default ε 3 without a PrivacyBudget)"
        tenant = f"b-{uuid.uuid4().hex[:8]}"
        assert run(ledger.allocate(tenant, None, 3.0, 1e-6, "k")).startswith(f"{tenant}/")  # type: ignore[union-attr]
    finally:
        ledger.close()
