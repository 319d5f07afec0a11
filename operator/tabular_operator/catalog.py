"""Pure: the status of GenerationProfiles and MultiTableSchemas (valid, depth, usedBy).

Both kinds only describe; they run nothing. Their status says whether the apiserver-accepted
object also passes the runner's own checks (the same pydantic models ``tabular-runner check``
uses), how many SynthesisJobs of the namespace use it, and for a schema its table count and
depth (the number of levels in the longest parent → child chain; one table alone is depth 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from tabular_operator.conditions import set_condition, validity_conditions
from tabular_runner.spec import (
    GenerationProfileSpec,
    MultiTableSchemaSpec,
    describe_validation_error,
)


def schema_depth(tables: Iterable[str], relationships: Iterable[Mapping[str, Any]]) -> int:
    """Levels of the longest parent → child chain (cycles count once)."""
    children: dict[str, set[str]] = {t: set() for t in tables}
    has_parent: set[str] = set()
    for rel in relationships:
        children.setdefault(rel["parent"], set()).add(rel["child"])
        has_parent.add(rel["child"])

    def longest(node: str, seen: frozenset[str]) -> int:
        below = [longest(c, seen | {c}) for c in children.get(node, ()) if c not in seen]
        return 1 + max(below, default=0)

    roots = [t for t in children if t not in has_parent] or list(children)
    return max((longest(r, frozenset({r})) for r in roots), default=0)


def used_by(jobs: Iterable[Mapping[str, Any]], ref_field: str, name: str) -> int:
    """How many SynthesisJobs name ``name`` in ``spec.<ref_field>.name``."""
    return sum(1 for j in jobs if ((j.get("spec") or {}).get(ref_field) or {}).get("name") == name)


def _check(model: Any, spec: Mapping[str, Any]) -> str | None:
    try:
        model.model_validate(dict(spec))
    except ValidationError as exc:
        return describe_validation_error(exc, "spec").message
    return None


def profile_status(
    body: Mapping[str, Any], jobs: Iterable[Mapping[str, Any]], now: datetime
) -> dict[str, Any]:
    """Status patch of a GenerationProfile."""
    meta = body["metadata"]
    problem = _check(GenerationProfileSpec, body.get("spec") or {})
    generation = meta.get("generation")
    message = problem or "valid"
    return {
        "observedGeneration": generation,
        "usedBy": used_by(jobs, "profileRef", meta["name"]),
        "conditions": validity_conditions(
            list((body.get("status") or {}).get("conditions", [])),
            problem is None,
            message,
            generation=generation,
            now=now,
        ),
    }


def schema_status(
    body: Mapping[str, Any], jobs: Iterable[Mapping[str, Any]], now: datetime
) -> dict[str, Any]:
    """Status patch of a MultiTableSchema."""
    meta = body["metadata"]
    spec = body.get("spec") or {}
    problem = _check(MultiTableSchemaSpec, spec)
    generation = meta.get("generation")
    tables = [t.get("name", "") for t in spec.get("tables", [])]
    patch: dict[str, Any] = {
        "observedGeneration": generation,
        "valid": problem is None,
        "tableCount": len(tables),
        "message": problem or f"{len(tables)} tables",
        "usedBy": used_by(jobs, "schemaRef", meta["name"]),
        "conditions": validity_conditions(
            list((body.get("status") or {}).get("conditions", [])),
            problem is None,
            problem or "valid",
            generation=generation,
            now=now,
        ),
    }
    if problem is None:
        patch["depth"] = schema_depth(tables, spec.get("relationships", []))
    return patch


CAP_BELOW_SPENT = "CapBelowSpent"
"""Ready=False reason of a PrivacyBudget lowered below what its period already spent."""


def budget_status(
    body: Mapping[str, Any], summary: Any, now: datetime, *, enforced: bool
) -> dict[str, Any]:
    """Status patch of a PrivacyBudget: the ledger's figures for the current period.

    Args:
        body: The PrivacyBudget as read from the API.
        summary: The ledger's :class:`~tabular_operator.budget.BudgetSummary` (None: unknown).
        now: The time of this observation.
        enforced: Whether the configured ledger enforces caps (the unmetered one does not).
    """
    meta = body["metadata"]
    generation = meta.get("generation")
    conditions = list((body.get("status") or {}).get("conditions", []))
    patch: dict[str, Any] = {"observedGeneration": generation}
    if not enforced or summary is None:
        message = (
            "not enforced: no budget ledger is configured (chart: postgres.existingSecret)"
            if not enforced
            else "no figures yet"
        )
        patch["conditions"] = validity_conditions(
            conditions, False, message, generation=generation, now=now
        )
        return patch
    spent = round(float(summary.spent), 6)
    patch |= {
        "spent": spent,
        "reserved": round(float(summary.reserved), 6),
        "remaining": round(max(float(summary.remaining), 0.0), 6),
        "allocations": int(summary.allocations),
    }
    if summary.period_start is not None:
        patch["periodStart"] = summary.period_start.strftime("%Y-%m-%dT%H:%M:%SZ")
    if summary.last_change is not None:
        patch["lastChange"] = summary.last_change.strftime("%Y-%m-%dT%H:%M:%SZ")
    cap = float((body.get("spec") or {}).get("epsilon", summary.epsilon))
    if spent > cap + 1e-9:
        message = (
            f"the cap ε {cap:g} is below the ε {spent:g} already spent this period: "
            "nothing remains until the period renews (history is kept)"
        )
        out = set_condition(
            conditions, "Ready", False, CAP_BELOW_SPENT, message, generation=generation, now=now
        )
        patch["conditions"] = set_condition(
            out, "Stalled", False, CAP_BELOW_SPENT, "", generation=generation, now=now
        )
    else:
        patch["conditions"] = validity_conditions(
            conditions,
            True,
            f"ε {patch['remaining']:g} of {cap:g} remains",
            generation=generation,
            now=now,
        )
    return patch
