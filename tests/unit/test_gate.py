"""The release gate: a table of measured scores against thresholds (pure logic, nothing mocked)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tabular_runner.quality import gate as quality_gate
from tabular_runner.spec import QualityGate

pytestmark = pytest.mark.unit

ALL = {"minFidelity": 0.8, "minDiagnostic": 0.9, "maxPrivacyRisk": 0.2, "maxDcrShare": 0.6}
GOOD: dict[str, float | None] = {
    "fidelity": 0.85,
    "diagnostic": 0.99,
    "privacy_risk": 0.05,
    "dcr_share": 0.52,
}

# (gate thresholds, measured overrides, expected passed, expected failed metrics, reason)
CASES: list[tuple[dict[str, Any], dict[str, float | None], bool, list[str], str | None]] = [
    ({}, {"fidelity": None, "privacy_risk": None}, True, [], None),
    (ALL, {}, True, [], None),
    (ALL, {"fidelity": 0.78}, False, ["fidelity"], "fidelity 0.780 < minFidelity 0.8"),
    (ALL, {"fidelity": 0.8}, True, [], None),
    (ALL, {"fidelity": 0.7999}, False, ["fidelity"], "fidelity 0.7999 < minFidelity 0.8"),
    (
        ALL | {"minFidelity": 0.999},
        {"fidelity": 0.85},
        False,
        ["fidelity"],
        "fidelity 0.850 < minFidelity 0.999",
    ),
    (ALL, {"diagnostic": 0.5}, False, ["diagnostic"], "diagnostic 0.500 < minDiagnostic 0.9"),
    (ALL, {"privacy_risk": 0.31}, False, ["privacyRisk"], "privacyRisk 0.310 > maxPrivacyRisk 0.2"),
    (ALL, {"privacy_risk": 0.2}, True, [], None),
    (ALL, {"dcr_share": 0.97}, False, ["dcrShare"], "dcrShare 0.970 > maxDcrShare 0.6"),
    (
        ALL,
        {"privacy_risk": None},
        False,
        ["privacyRisk"],
        "privacyRisk was not computed, but maxPrivacyRisk 0.2 requires it",
    ),
    (
        {"minFidelity": 0.8},
        {"fidelity": math.nan},
        False,
        ["fidelity"],
        "fidelity was not computed, but minFidelity 0.8 requires it",
    ),
    (
        ALL,
        {"fidelity": 0.1, "dcr_share": 0.9, "privacy_risk": 0.5},
        False,
        ["fidelity", "privacyRisk", "dcrShare"],
        "fidelity 0.100 < minFidelity 0.8",
    ),
    ({"maxPrivacyRisk": 0.2}, {"fidelity": 0.0, "dcr_share": 1.0}, True, [], None),
]
IDS = [
    "no-thresholds-nothing-measured-passes",
    "all-thresholds-met",
    "fidelity-below-min",
    "fidelity-equal-to-min-passes",
    "fidelity-just-below-shows-more-digits",
    "threshold-shown-as-written-not-rounded",
    "diagnostic-below-min",
    "privacy-risk-above-max",
    "privacy-risk-equal-to-max-passes",
    "dcr-share-above-max",
    "required-privacy-not-computed",
    "required-fidelity-nan",
    "several-failures-reason-is-first",
    "unset-thresholds-are-not-checked",
]


@pytest.mark.parametrize(("thresholds", "measured", "passed", "failed", "reason"), CASES, ids=IDS)
def test_gate_table(
    thresholds: dict[str, Any],
    measured: dict[str, float | None],
    passed: bool,
    failed: list[str],
    reason: str | None,
) -> None:
    # Setup
    gate = QualityGate.model_validate(thresholds)
    scores = {**GOOD, **measured}

    # Run
    result = quality_gate.evaluate(gate, **scores)

    # Assert
    assert result.passed is passed
    assert [f.metric for f in result.failures] == failed
    assert result.reason == reason
    assert len(result.checks) == len(thresholds)


def test_gate_to_dict_is_camel_case_and_json_ready() -> None:
    # Setup
    gate = QualityGate.model_validate({"minFidelity": 0.9, "maxDcrShare": 0.6})

    # Run
    out = quality_gate.evaluate(
        gate, fidelity=0.75, diagnostic=None, privacy_risk=None, dcr_share=0.5
    ).to_dict()

    # Assert
    assert out["passed"] is False
    assert out["reason"] == "fidelity 0.750 < minFidelity 0.9"
    assert out["failures"] == [
        {"metric": "fidelity", "threshold": 0.9, "actual": 0.75, "message": out["reason"]}
    ]
    assert [c["thresholdName"] for c in out["checks"]] == ["minFidelity", "maxDcrShare"]
    assert [c["passed"] for c in out["checks"]] == [False, True]
