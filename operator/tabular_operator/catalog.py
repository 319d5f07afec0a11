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

from tabular_operator.conditions import validity_conditions
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
