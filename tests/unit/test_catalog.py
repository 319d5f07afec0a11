"""Pure status of the describing kinds: GenerationProfile, MultiTableSchema, PrivacyBudget."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tabular_operator.budget import BudgetSummary
from tabular_operator.catalog import (
    CAP_BELOW_SPENT,
    budget_status,
    profile_status,
    schema_depth,
    schema_status,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _body(kind: str, spec: dict[str, Any], name: str = "x", generation: int = 2) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": "a", "generation": generation},
        "spec": spec,
    }


def _ready(patch: dict[str, Any]) -> tuple[str, str]:
    cond = next(c for c in patch["conditions"] if c["type"] == "Ready")
    return cond["status"], cond["reason"]


@pytest.mark.parametrize(
    ("tables", "relationships", "depth"),
    [
        (["a"], [], 1),
        (["a", "b"], [{"parent": "a", "child": "b"}], 2),
        (["a", "w", "f"], [{"parent": "a", "child": "w"}, {"parent": "w", "child": "f"}], 3),
        (["a", "b", "f"], [{"parent": "a", "child": "f"}, {"parent": "b", "child": "f"}], 2),
        (["a", "b"], [{"parent": "a", "child": "b"}, {"parent": "b", "child": "a"}], 2),
    ],
    ids=["single", "parent-child", "chain", "two-parents", "cycle"],
)
def test_schema_depth(tables: list[str], relationships: list[dict[str, str]], depth: int) -> None:
    assert schema_depth(tables, relationships) == depth


def test_schema_status_counts_tables_and_users() -> None:
    spec = {
        "tables": [
            {"name": "p", "source": {"uri": "s3://b/p.csv"}, "primaryKey": "id"},
            {"name": "c", "source": {"uri": "s3://b/c.csv"}},
        ],
        "relationships": [{"parent": "p", "parentKey": "id", "child": "c", "childKey": "pid"}],
    }
    jobs = [{"spec": {"schemaRef": {"name": "x"}}}, {"spec": {"schemaRef": {"name": "y"}}}]
    patch = schema_status(_body("MultiTableSchema", spec), jobs, NOW)
    assert (patch["valid"], patch["tableCount"], patch["depth"], patch["usedBy"]) == (True, 2, 2, 1)
    assert patch["observedGeneration"] == 2 and _ready(patch) == ("True", "Valid")


def test_invalid_profile_is_not_ready_and_says_why() -> None:
    patch = profile_status(_body("GenerationProfile", {"generator": {"type": "aim"}}), [], NOW)
    assert _ready(patch) == ("False", "Invalid")
    assert (
        "privacy.epsilon"
        in next(c for c in patch["conditions"] if c["type"] == "Stalled")["message"]
    )


def test_budget_status_mirrors_the_ledger() -> None:
    summary = BudgetSummary(10.0, 3.5, 0.3, 6.2, 5, period_start=NOW, last_change=NOW)
    patch = budget_status(_body("PrivacyBudget", {"epsilon": 10}), summary, NOW, enforced=True)
    assert (patch["spent"], patch["reserved"], patch["remaining"], patch["allocations"]) == (
        3.5,
        0.3,
        6.2,
        5,
    )
    assert patch["periodStart"] == "2026-12-01T12:00:00Z" and _ready(patch) == ("True", "Valid")


def test_a_cap_lowered_below_spending_is_flagged_never_negative() -> None:
    summary = BudgetSummary(2.0, 3.5, 0.0, 0.0, 4)
    patch = budget_status(_body("PrivacyBudget", {"epsilon": 2}), summary, NOW, enforced=True)
    assert patch["remaining"] == 0.0
    assert _ready(patch) == ("False", CAP_BELOW_SPENT)


def test_unenforced_budget_says_so() -> None:
    patch = budget_status(_body("PrivacyBudget", {"epsilon": 2}), None, NOW, enforced=False)
    assert _ready(patch)[0] == "False"
    assert "not enforced" in next(c for c in patch["conditions"] if c["type"] == "Ready")["message"]
