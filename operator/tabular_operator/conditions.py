"""Condition types, reasons and the pure function that writes them (docs/api.md, "Conditions").

Kueue's ``setFinishedCondition(w, now, reason, msg) -> bool`` is the model: edit memory only,
take ``now`` as an argument, keep ``lastTransitionTime`` when the status of a condition does
not change. The reasons are defined here once; docs and tests spell them this way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tabular_runner.spec import Phase

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"

# Reasons of Ready/Stalled on a finished job.
COMPLETE = "Complete"
FAILED = "Failed"
# Why a job failed (Stalled=True carries one of these).
BUDGET_EXCEEDED = "BudgetExceeded"
BUDGET_UNAVAILABLE = "BudgetUnavailable"
GATE_FAILED = "GateFailed"
INVALID_SPEC = "InvalidSpec"
STAGE_FAILED = "StageFailed"
DEADLINE_EXCEEDED = "DeadlineExceeded"
# Reconciling=True while paused.
SUSPENDED = "Suspended"
# Other kinds.
VALID = "Valid"
INVALID = "Invalid"

FAILURE_REASONS = (
    BUDGET_EXCEEDED,
    BUDGET_UNAVAILABLE,
    GATE_FAILED,
    INVALID_SPEC,
    STAGE_FAILED,
    DEADLINE_EXCEEDED,
)


def _stamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, Any]],
    kind: str,
    status: bool,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """Return ``conditions`` with ``kind`` set; the transition time moves only on a change."""
    value = "True" if status else "False"
    out: list[dict[str, Any]] = []
    found = False
    for cond in conditions:
        if cond.get("type") != kind:
            out.append(dict(cond))
            continue
        found = True
        changed = cond.get("status") != value
        out.append(
            {
                "type": kind,
                "status": value,
                "reason": reason,
                "message": message,
                "lastTransitionTime": _stamp(now)
                if changed
                else cond.get("lastTransitionTime", _stamp(now)),
                "observedGeneration": generation,
            }
        )
    if not found:
        out.append(
            {
                "type": kind,
                "status": value,
                "reason": reason,
                "message": message,
                "lastTransitionTime": _stamp(now),
                "observedGeneration": generation,
            }
        )
    return out


def job_conditions(
    conditions: list[dict[str, Any]],
    phase: Phase,
    *,
    generation: int | None,
    now: datetime,
    reason: str | None = None,
    message: str = "",
    suspended: bool = False,
) -> list[dict[str, Any]]:
    """The three conditions of a SynthesisJob in ``phase`` (the table in docs/api.md)."""
    if phase is Phase.COMPLETE:
        out = set_condition(
            conditions, READY, True, COMPLETE, message, generation=generation, now=now
        )
        out = set_condition(out, RECONCILING, False, COMPLETE, "", generation=generation, now=now)
        return set_condition(out, STALLED, False, COMPLETE, "", generation=generation, now=now)
    if phase is Phase.FAILED:
        why = reason or STAGE_FAILED
        out = set_condition(
            conditions, READY, False, FAILED, message, generation=generation, now=now
        )
        out = set_condition(out, RECONCILING, False, FAILED, "", generation=generation, now=now)
        return set_condition(out, STALLED, True, why, message, generation=generation, now=now)
    why = SUSPENDED if suspended else phase.value
    out = set_condition(
        conditions, READY, False, phase.value, message, generation=generation, now=now
    )
    out = set_condition(out, RECONCILING, True, why, message, generation=generation, now=now)
    return set_condition(out, STALLED, False, why, "", generation=generation, now=now)


def validity_conditions(
    conditions: list[dict[str, Any]],
    valid: bool,
    message: str,
    *,
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """``Ready``/``Stalled`` of a GenerationProfile or MultiTableSchema."""
    reason = VALID if valid else INVALID
    out = set_condition(conditions, READY, valid, reason, message, generation=generation, now=now)
    return set_condition(
        out, STALLED, not valid, reason, "" if valid else message, generation=generation, now=now
    )
