"""Privacy budgets on the cluster: PrivacyBudget resources, the PostgreSQL ledger, refusals.

What is real: the operator process with ``AUMOS_DATABASE_URL`` pointing at the platform's
PostgreSQL (so the built-in ledger, migrations applied at start), the control plane, the
stage pods, S3. DP jobs train DP-CTGAN for one epoch on the first 3,000 rows of UCI Adult.

* 15 DP jobs of ε 0.3 in each of two namespaces, capped at ε 1 and ε 2: at least 3 and 6 run
  (more only if ε returned by finished jobs lets one in), spending never passes the cap, and
  the others fail at once with ``BudgetExceeded`` (requested and remaining in the message, no
  stage Job, nothing reserved); each namespace's PrivacyBudget status shows only its own.
* A DP job in a namespace without a PrivacyBudget is refused with how to create one.
* The books balance: every finished job's allocation consumed exactly once (0 drift).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.operator_harness import Cluster, OperatorProcess, wait_for, wait_phase

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

PER_NAMESPACE = 15
PUBLIC_BOUNDS = {
    "age": {"min": 17, "max": 90},
    "fnlwgt": {"min": 10000, "max": 1500000},
    "education-num": {"min": 1, "max": 16},
    "capital-gain": {"min": 0, "max": 100000},
    "capital-loss": {"min": 0, "max": 5000},
    "hours-per-week": {"min": 1, "max": 99},
}
CAPS = {"small": 1.0, "large": 2.0}


def _dp_job(name: str) -> dict[str, Any]:
    return {
        "kind": "SynthesisJob",
        "metadata": {"name": name},
        "spec": {
            "source": {"uri": "s3://datasets/uci/adult/adult-3k.csv"},
            "generator": {"type": "dpctgan", "params": {"epochs": 1, "batchSize": 100}},
            # Public bounds (UCI's data dictionary): no ε goes to finding them, so ε 0.3
            # suffices on 3,000 rows.
            "privacy": {"epsilon": 0.3, "delta": 1e-6, "publicBounds": PUBLIC_BOUNDS},
            "rows": 200,
            "validation": {"privacy": False, "qualitySampleRows": 200},
        },
    }


@pytest.fixture(scope="module")
def budget_operator(
    kubeconfig: Path,
    s3_server: Any,
    database_url: str,
    adult_3k: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(
        kubeconfig,
        s3_server,
        tmp_path_factory.mktemp("budget-operator"),
        env={"AUMOS_DATABASE_URL": database_url, "AUMOS_LEDGER_FILE": ""},
    )
    op.start()
    yield op
    op.stop()


def _phase(cluster: Cluster, ns: str, name: str) -> str:
    return str(((cluster.get(ns, name) or {}).get("status") or {}).get("phase", ""))


def test_caps_hold_per_namespace_and_refusals_spend_nothing(
    cluster: Cluster, budget_operator: OperatorProcess, datasets: dict[str, str]
) -> None:
    # Setup: two tenants with different caps; all jobs applied at once
    namespaces = {key: cluster.namespace(f"pb-{key}") for key in CAPS}
    for key, ns in namespaces.items():
        cluster.create(
            ns,
            {
                "kind": "PrivacyBudget",
                "metadata": {"name": "team"},
                "spec": {"epsilon": CAPS[key], "delta": 1e-4},
            },
        )
    wait_for(
        "both budgets Ready",
        lambda: all(
            any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (
                    (cluster.get(ns, "team", "privacybudgets") or {}).get("status") or {}
                ).get("conditions", [])
            )
            for ns in namespaces.values()
        ),
        timeout=60,
        operator=budget_operator,
    )
    names = [f"dp-{i:02d}" for i in range(PER_NAMESPACE)]
    for ns in namespaces.values():
        for name in names:
            cluster.create(ns, _dp_job(name))

    # Run
    def settled() -> bool:
        return all(
            _phase(cluster, ns, n) in ("COMPLETE", "FAILED")
            for ns in namespaces.values()
            for n in names
        )

    wait_for("every job to finish", settled, timeout=1200, interval=3, operator=budget_operator)

    # Assert: each namespace stayed within its cap and refused the rest
    for key, ns in namespaces.items():
        jobs = {n: cluster.get(ns, n) for n in names}
        complete = [n for n, j in jobs.items() if j and j["status"]["phase"] == "COMPLETE"]
        refused = [
            j
            for j in jobs.values()
            if j
            and any(
                c["type"] == "Stalled" and c["reason"] == "BudgetExceeded"
                for c in j["status"].get("conditions", [])
            )
        ]
        # All are allocated before any trains, so exactly floor(cap / 0.3) get ε; a job that
        # finished early may return unspent ε, which can let one more in: never past the cap.
        allowed = int(CAPS[key] / 0.3 + 1e-9)  # 1.0 → 3, 2.0 → 6
        assert len(complete) >= allowed, (
            key,
            {n: j["status"].get("errorMessage") for n, j in jobs.items() if j},
        )
        assert len(complete) + len(refused) == PER_NAMESPACE
        assert len(refused) >= 1
        for job in refused:
            assert "requested ε 0.3" in job["status"]["errorMessage"]
            assert "remains" in job["status"]["errorMessage"]
            assert "allocationId" not in job["status"]
            assert cluster.stage_jobs(ns, job["metadata"]["uid"]) == []
        for name in complete:
            status = jobs[name]["status"]  # type: ignore[index]
            assert status["budget"]["state"] == "consumed"
            assert 0 < status["epsilonSpent"] <= 0.3
        # The PrivacyBudget shows this namespace's spending only
        spent = round(sum(jobs[n]["status"]["epsilonSpent"] for n in complete), 4)  # type: ignore[index]
        assert spent <= CAPS[key] + 1e-6, f"{ns} spent ε {spent} over its cap {CAPS[key]}"

        def mirrored(ns: str = ns, spent: float = spent) -> dict[str, Any] | None:
            status = (cluster.get(ns, "team", "privacybudgets") or {}).get("status") or {}
            return status if abs(float(status.get("spent", -1)) - spent) < 1e-3 else None

        status = wait_for(f"{ns}'s budget to mirror ε {spent}", mirrored, timeout=60)
        assert status["reserved"] == 0
        assert 0 <= status["remaining"] <= CAPS[key]
        assert abs(status["remaining"] - (CAPS[key] - spent)) < 1e-3


def test_a_dp_job_without_a_budget_is_refused_with_how_to_create_one(
    cluster: Cluster, budget_operator: OperatorProcess, datasets: dict[str, str]
) -> None:
    ns = cluster.namespace("pb-none")
    cluster.create(ns, _dp_job("no-budget"))
    job = wait_phase(
        cluster, ns, "no-budget", ["FAILED", "COMPLETE"], timeout=120, operator=budget_operator
    )
    assert job["status"]["phase"] == "FAILED"
    assert "PrivacyBudget" in job["status"]["errorMessage"]
    assert cluster.stage_jobs(ns, job["metadata"]["uid"]) == []
