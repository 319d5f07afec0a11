"""A stage that runs past ``activeDeadlineSeconds`` ends the job as FAILED, with the reason.

The operator here runs with ``AUMOS_STAGE_ACTIVE_DEADLINE_SECONDS=20`` (the chart's
``runner.activeDeadlineSeconds``); a CTGAN training of thousands of epochs cannot finish in
that time. The Job controller stops the pod at the deadline; the job must be FAILED with
reason ``DeadlineExceeded``, and nothing may keep running. Real: as in ``test_operator.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.operator_harness import (
    Cluster,
    OperatorProcess,
    penguins_job,
    runner_processes,
    wait_for,
    wait_phase,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def strict_operator(
    kubeconfig: Path, s3_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(
        kubeconfig,
        s3_server,
        tmp_path_factory.mktemp("deadline-operator"),
        env={"AUMOS_STAGE_ACTIVE_DEADLINE_SECONDS": "20"},
    )
    op.start()
    yield op
    op.stop()


def test_a_stage_past_its_deadline_fails_the_job(
    cluster: Cluster, tenant: str, datasets: dict[str, str], strict_operator: OperatorProcess
) -> None:
    # Setup
    obj = cluster.create(
        tenant, penguins_job("too-slow", generator={"type": "ctgan", "params": {"epochs": 5000}})
    )
    uid = obj["metadata"]["uid"]

    # Run
    job = wait_phase(
        cluster, tenant, "too-slow", ["COMPLETE", "FAILED"], timeout=240, operator=strict_operator
    )

    # Assert
    conditions = {c["type"]: (c["status"], c["reason"]) for c in job["status"]["conditions"]}
    assert conditions["Stalled"] == ("True", "DeadlineExceeded")
    assert "deadline" in job["status"]["errorMessage"]
    assert job["status"]["stage"] == "train"
    wait_for(
        "the train process to be stopped", lambda: runner_processes(uid, "train") == [], timeout=60
    )
