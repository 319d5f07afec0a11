"""The privacy-budget port (DESIGN §4) and the ledgers this operator ships today.

``allocate`` is idempotent on ``key`` (the job uid), ``consume`` happens once per allocation
and never above it, ``release`` returns an allocation nothing consumed. The controller calls
them in that order and records the allocation in the job's status, so a restarted operator
replays a call rather than repeating it.

Adapters here:

* :class:`UnmeteredLedger` — the default without a database: every allocation is granted,
  nothing is capped, and the allocation id is derived from the key (so it is stable across
  restarts). Honest about what it is: it records nothing.
* :class:`FileLedger` — a JSON-lines ledger in one file under an exclusive lock, with a cap per
  tenant: for a single-replica operator with a volume, and for tests that count the calls.

The PostgreSQL ledger (:mod:`tabular_operator.ledger_pg`) and the external privacy engine
(:mod:`tabular_operator.ledger_http`) implement the same port; the pure helpers below (integer
units, period starts, refusal wording) are shared by them and by their tests
(docs/adr/0005-budget-ledger.md).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol


class BudgetError(Exception):
    """Base of ledger errors."""


class BudgetRefused(BudgetError):
    """The allocation would pass the tenant's cap; nothing was reserved."""


class BudgetUnavailable(BudgetError):
    """The ledger could not be reached (database down, privacy engine unreachable).

    A :class:`BudgetError`, so a caller that fails the job on any ledger error still does; a
    caller that can wait may retry it instead (nothing was decided).
    """


@dataclass(frozen=True)
class BudgetCap:
    """A PrivacyBudget as the ledger keeps it: a cap for a tenant, or for one of its datasets."""

    tenant: str
    name: str
    epsilon: float
    delta: float
    period: str = "none"
    """``none | daily | weekly | monthly | yearly``: the cap renews at each period start."""
    dataset: str | None = None
    """A source uri: the cap applies to jobs reading it; ``None``: to every job of the tenant."""


@dataclass(frozen=True)
class BudgetSummary:
    """What a PrivacyBudget's status mirrors (ε; the current period only)."""

    epsilon: float
    spent: float
    reserved: float
    remaining: float
    allocations: int
    period_start: datetime | None = None
    last_change: datetime | None = None


class Ledger(Protocol):
    """Allocate, consume, release; and the caps PrivacyBudgets declare."""

    async def allocate(
        self, tenant: str, dataset: str | None, epsilon: float, delta: float, key: str
    ) -> str:
        """Reserve ε/δ for ``key``; return the allocation id (the same id for the same key).

        Raises:
            BudgetRefused: a cap would be exceeded, or no cap applies; nothing was reserved.
        """

    async def consume(self, allocation_id: str, epsilon: float) -> None:
        """Charge ``epsilon`` (≤ the allocation) once; the unspent rest returns."""

    async def release(self, allocation_id: str) -> None:
        """Return an allocation that was never consumed."""

    async def set_cap(self, cap: BudgetCap) -> BudgetSummary:
        """Create or change a cap (idempotent); a cap below what is spent leaves 0 remaining."""

    async def remove_cap(self, tenant: str, name: str) -> None:
        """Forget a cap (its history stays)."""

    async def summary(self, tenant: str, name: str) -> BudgetSummary | None:
        """The cap's current figures, or None if there is no such cap."""


EPSILON_UNIT = 1_000_000
"""Ledgers keep ε as integer micro-ε: ``round(ε · 10⁶)`` (sums are exact, never drift)."""
DELTA_UNIT = 1_000_000_000_000
"""…and δ as ``round(δ · 10¹²)`` (a δ below 5·10⁻¹³ counts as 0)."""
PERIODS = ("none", "daily", "weekly", "monthly", "yearly")


def epsilon_units(epsilon: float) -> int:
    """ε in integer micro-ε."""
    return round(epsilon * EPSILON_UNIT)


def delta_units(delta: float) -> int:
    """δ in integer units of 10⁻¹²."""
    return round(delta * DELTA_UNIT)


def period_start(period: str, now: datetime) -> datetime | None:
    """The UTC calendar start of the period holding ``now``; ``None`` for ``none`` (all time).

    Weeks start on Monday (ISO 8601). ``now`` must be timezone-aware.

    Raises:
        ValueError: an unknown period, or a naive ``now``.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "none":
        return None
    if period == "daily":
        return day
    if period == "weekly":
        return day - timedelta(days=day.weekday())
    if period == "monthly":
        return day.replace(day=1)
    if period == "yearly":
        return day.replace(month=1, day=1)
    raise ValueError(f"unknown budget period {period!r}; one of {', '.join(PERIODS)}")


def remaining_units(cap: int, spent: int, reserved: int) -> int:
    """What is left of a cap; never negative (a cap lowered below what is spent leaves 0)."""
    return max(0, cap - spent - reserved)


def refusal_message(
    *, quantity: str, requested: float, remaining: float, cap: float, where: str
) -> str:
    """The one wording of a refusal: what was asked, what remains of which cap."""
    return f"requested {quantity} {requested:g} but {remaining:g} of {cap:g} remains in {where}"


def no_budget_message(tenant: str, dataset: str | None) -> str:
    """A refusal when no PrivacyBudget applies, telling how to create one."""
    scope = f" for dataset {dataset}" if dataset else ""
    return (
        f"no PrivacyBudget applies to namespace {tenant!r}{scope}: create one, e.g. "
        f"`kubectl apply -n {tenant} -f budget.yaml` with kind: PrivacyBudget "
        "(apiVersion tabular.aumos.io/v1alpha1) and spec.epsilon set to the ε the namespace "
        "may spend"
    )


class UnmeteredLedger:
    """Grants everything and records nothing (no database configured)."""

    async def allocate(
        self, tenant: str, dataset: str | None, epsilon: float, delta: float, key: str
    ) -> str:
        """A stable id derived from the key."""
        return f"unmetered-{key}"

    async def consume(self, allocation_id: str, epsilon: float) -> None:
        """Nothing is recorded."""

    async def release(self, allocation_id: str) -> None:
        """Nothing is recorded."""

    async def set_cap(self, cap: BudgetCap) -> BudgetSummary:
        """Caps are not enforced: the summary says nothing was spent."""
        return BudgetSummary(cap.epsilon, 0.0, 0.0, cap.epsilon, 0)

    async def remove_cap(self, tenant: str, name: str) -> None:
        """Nothing to forget."""

    async def summary(self, tenant: str, name: str) -> BudgetSummary | None:
        """Unknown: nothing is recorded."""
        return None


class FileLedger:
    """A JSON-lines ledger: one line per change, replayed to answer every call."""

    def __init__(self, path: str | Path, caps: Mapping[str, float] | None = None) -> None:
        self.path = Path(path)
        self.caps = dict(caps or {})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)

    @contextmanager
    def _locked(self) -> Iterator[list[dict[str, Any]]]:
        with self.path.open("r+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                lines = [json.loads(line) for line in fh.read().splitlines() if line.strip()]
                yield lines
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _append(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(record | {"at": time.time()}) + "\n")

    @staticmethod
    def _state(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        allocations: dict[str, dict[str, Any]] = {}
        for line in lines:
            if line["op"] == "allocate":
                allocations[line["id"]] = dict(line, state="allocated")
            elif line["id"] in allocations:
                allocations[line["id"]]["state"] = line["op"] + "d"
                allocations[line["id"]]["consumed"] = line.get("epsilon", 0.0)
        return allocations

    async def allocate(
        self, tenant: str, dataset: str | None, epsilon: float, delta: float, key: str
    ) -> str:
        """Idempotent on ``key``; refused when the tenant's cap would be passed."""
        return await asyncio.to_thread(self._allocate, tenant, dataset, epsilon, delta, key)

    async def consume(self, allocation_id: str, epsilon: float) -> None:
        """Once per allocation; a repeat is a no-op; never above the allocation."""
        await asyncio.to_thread(self._consume, allocation_id, epsilon)

    async def release(self, allocation_id: str) -> None:
        """Only an allocation never consumed; a repeat is a no-op."""
        await asyncio.to_thread(self._release, allocation_id)

    async def set_cap(self, cap: BudgetCap) -> BudgetSummary:
        """Caps are the constructor's (a file ledger serves tests and single replicas)."""
        self.caps[cap.tenant] = cap.epsilon
        return BudgetSummary(cap.epsilon, 0.0, 0.0, cap.epsilon, 0)

    async def remove_cap(self, tenant: str, name: str) -> None:
        """Forget the tenant's cap."""
        self.caps.pop(tenant, None)

    async def summary(self, tenant: str, name: str) -> BudgetSummary | None:
        """Not kept per cap by this ledger."""
        return None

    def _allocate(
        self, tenant: str, dataset: str | None, epsilon: float, delta: float, key: str
    ) -> str:
        allocation_id = f"file-{key}"
        with self._locked() as lines:
            state = self._state(lines)
            if allocation_id in state:
                return allocation_id
            cap = self.caps.get(tenant)
            if cap is not None:
                used = sum(
                    a["consumed"] if a["state"] == "consumed" else a["epsilon"]
                    for a in state.values()
                    if a["tenant"] == tenant and a["state"] != "released"
                )
                if used + epsilon > cap + 1e-12:
                    raise BudgetRefused(
                        f"requested ε {epsilon:g} but only {max(cap - used, 0.0):g} of "
                        f"{cap:g} remains for namespace {tenant!r}"
                    )
            self._append(
                {
                    "op": "allocate",
                    "id": allocation_id,
                    "tenant": tenant,
                    "dataset": dataset,
                    "epsilon": epsilon,
                    "delta": delta,
                    "key": key,
                }
            )
        return allocation_id

    def _consume(self, allocation_id: str, epsilon: float) -> None:
        with self._locked() as lines:
            state = self._state(lines).get(allocation_id)
            if state is None:
                raise BudgetError(f"consume of unknown allocation {allocation_id}")
            if state["state"] == "consumed":
                return
            if state["state"] == "released":
                raise BudgetError(f"consume after release of {allocation_id}")
            self._append(
                {"op": "consume", "id": allocation_id, "epsilon": min(epsilon, state["epsilon"])}
            )

    def _release(self, allocation_id: str) -> None:
        with self._locked() as lines:
            state = self._state(lines).get(allocation_id)
            if state is None or state["state"] == "released":
                return
            if state["state"] == "consumed":
                raise BudgetError(f"release after consume of {allocation_id}")
            self._append({"op": "release", "id": allocation_id})

    def records(self) -> list[dict[str, Any]]:
        """Every change, in order (for audits and tests)."""
        with self._locked() as lines:
            return list(lines)
