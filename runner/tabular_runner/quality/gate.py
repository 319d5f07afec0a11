"""The release gate: compare measured quality and privacy with ``spec.qualityGate``.

Pure logic, no I/O: the validate stage passes the scores it measured and gets back a verdict
with one :class:`GateFailure` per missed threshold. Thresholds are checked in a fixed order
(fidelity, diagnostic, privacy risk, DCR share) so that :attr:`GateResult.reason`, the first
failure, is stable from run to run.

A threshold the gate asks for but whose metric could not be measured (``None`` or NaN, for
instance when Anonymeter could not run) is a failure: a release gate that silently passes
unmeasured data would not be a gate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from tabular_runner.spec import QualityGate

Direction = Literal["min", "max"]


@dataclass(frozen=True)
class GateCheck:
    """One threshold of the gate and what was measured against it."""

    metric: str
    threshold_name: str
    direction: Direction
    threshold: float
    actual: float | None
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase form."""
        return {
            "metric": self.metric,
            "thresholdName": self.threshold_name,
            "direction": self.direction,
            "threshold": self.threshold,
            "actual": self.actual,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class GateFailure:
    """A threshold that was missed (or could not be checked)."""

    metric: str
    threshold: float
    actual: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase form."""
        return {
            "metric": self.metric,
            "threshold": self.threshold,
            "actual": self.actual,
            "message": self.message,
        }


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict: passed, or the list of failures (first one = :attr:`reason`)."""

    passed: bool
    failures: list[GateFailure] = field(default_factory=list)
    checks: list[GateCheck] = field(default_factory=list)

    @property
    def reason(self) -> str | None:
        """One line naming the first failed threshold, or ``None`` when the gate passed."""
        return self.failures[0].message if self.failures else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase form (goes into ``report.json``)."""
        return {
            "passed": self.passed,
            "reason": self.reason,
            "failures": [f.to_dict() for f in self.failures],
            "checks": [c.to_dict() for c in self.checks],
        }


def _measured(value: float | None) -> float | None:
    if value is None or math.isnan(value):
        return None
    return float(value)


def _pair(actual: float, threshold: float) -> tuple[str, str]:
    """Show the threshold as the user wrote it, and the actual value precisely enough.

    A threshold of 0.999 must not print as 1.00, and an actual value that misses it must
    not print as equal to it.
    """
    limit = f"{threshold:g}"
    decimals = len(limit.split(".")[1]) if "." in limit else 0
    for digits in range(max(3, decimals), 9):
        shown = f"{actual:.{digits}f}"
        if float(shown) != threshold:
            return shown, limit
    return repr(actual), limit


def evaluate(
    gate: QualityGate,
    *,
    fidelity: float | None,
    diagnostic: float | None,
    privacy_risk: float | None,
    dcr_share: float | None,
) -> GateResult:
    """Check measured scores against the gate's thresholds.

    Args:
        gate: The job's ``spec.qualityGate``; unset thresholds are not checked.
        fidelity: SDMetrics quality score (0..1, higher is better), or ``None`` if not computed.
        diagnostic: SDMetrics diagnostic score (0..1, higher is better), or ``None``.
        privacy_risk: Highest Anonymeter risk (0..1, lower is better), or ``None``.
        dcr_share: Share of synthetic rows closer to training than to holdout rows
            (0..1, 0.5 is ideal, lower is safer), or ``None``.

    Returns:
        The verdict. ``passed`` is true when every set threshold holds. A set threshold whose
        metric is ``None`` or NaN counts as a failure.
    """
    specs: list[tuple[str, str, Direction, float | None, float | None]] = [
        ("fidelity", "minFidelity", "min", gate.min_fidelity, fidelity),
        ("diagnostic", "minDiagnostic", "min", gate.min_diagnostic, diagnostic),
        ("privacyRisk", "maxPrivacyRisk", "max", gate.max_privacy_risk, privacy_risk),
        ("dcrShare", "maxDcrShare", "max", gate.max_dcr_share, dcr_share),
    ]
    checks: list[GateCheck] = []
    failures: list[GateFailure] = []
    for metric, name, direction, threshold, raw in specs:
        if threshold is None:
            continue
        actual = _measured(raw)
        if actual is None:
            passed = False
            message = f"{metric} was not computed, but {name} {threshold:g} requires it"
        else:
            passed = actual >= threshold if direction == "min" else actual <= threshold
            shown, limit = _pair(actual, threshold)
            op = "<" if direction == "min" else ">"
            message = f"{metric} {shown} {op} {name} {limit}"
        checks.append(GateCheck(metric, name, direction, float(threshold), actual, passed))
        if not passed:
            failures.append(GateFailure(metric, float(threshold), actual, message))
    return GateResult(passed=not failures, failures=failures, checks=checks)
