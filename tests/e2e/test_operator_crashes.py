"""The crash matrix: the operator killed (SIGKILL) at every named crash point, restarted.

One operator process has every crash point of ``tabular_operator.faults.POINTS`` armed, each
to fire once (marker files). The test applies differentially private jobs (each allocates and
consumes ε), deletes one while it trains, and restarts the operator whenever it dies, until
every job is COMPLETE (or deleted). Then it checks what must not be lost or doubled:

* every crash point fired (the operator really died there), and each job still finished;
* one Job per stage, one pod per Job (nothing created twice);
* the ledger: exactly one allocate and one consume per finished job, and for the deleted job
  one allocate and one settlement; the status names the ledger's allocation;
* the status matches the store's report (fidelity, rows).

What is real: as in ``test_operator.py`` (apiserver, controllers, pods, S3, the operator).
The ledger is the operator's file ledger (``AUMOS_LEDGER_FILE``), read back here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tabular_operator.faults import POINTS
from tests.e2e.operator_harness import (
    Cluster,
    OperatorProcess,
    runner_processes,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

DP_JOBS = ("dp-a", "dp-b", "dp-c")


@pytest.fixture(scope="module")
def world(
    cluster: Cluster,
    kubeconfig: Path,
    s3_server: Any,
    s3_client: Any,
    adult_3k: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Cluster, str, OperatorProcess, Any]]:
    ns = cluster.namespace("crash")
    work = tmp_path_factory.mktemp("crash-operator")
    op = OperatorProcess(
        kubeconfig,
        s3_server,
        work,
        env={"AUMOS_FAULT_POINTS": ",".join(POINTS), "AUMOS_FAULT_ONCE_DIR": str(work / "faults")},
    )
    op.start()
    yield cluster, ns, op, s3_client
    op.stop()


def _dp_job(name: str, epochs: int = 2) -> dict[str, Any]:
    generator = {"type": "dpctgan", "params": {"epochs": epochs, "batchSize": 500}}
    return {
        "kind": "SynthesisJob",
        "metadata": {"name": name},
        "spec": {
            "source": {"uri": "s3://datasets/uci/adult/adult-3k.csv"},
            "generator": generator,
            "privacy": {"epsilon": 3.0, "delta": 1e-6},
            "rows": 1000,
            "validation": {"privacy": False, "qualitySampleRows": 2000},
        },
    }


def _supervise(op: OperatorProcess, until: Any, timeout: float) -> int:
    """Restart the operator each time it dies, until ``until()``; return the restarts."""
    restarts = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not op.alive():
            restarts += 1
            op.start()
        if until():
            return restarts
        time.sleep(0.5)
    raise AssertionError(f"not done after {timeout:.0f}s\n--- operator log ---\n{op.tail(80)}")


def test_every_crash_point_loses_and_doubles_nothing(
    world: tuple[Cluster, str, OperatorProcess, Any],
) -> None:
    cluster, ns, op, s3 = world
    # Setup: three DP jobs, and one that will be deleted while it trains
    uids = {name: cluster.create(ns, _dp_job(name))["metadata"]["uid"] for name in DP_JOBS}
    doomed = cluster.create(ns, _dp_job("dp-deleted", epochs=500))["metadata"]["uid"]

    def phases() -> dict[str, str | None]:
        return {
            name: ((cluster.get(ns, name) or {}).get("status") or {}).get("phase")
            for name in DP_JOBS
        }

    # Run: delete the slow one once it trains, restart the operator whenever it dies
    _supervise(op, lambda: bool(runner_processes(doomed, "train")), timeout=600)
    cluster.delete(ns, "dp-deleted")
    restarts = _supervise(
        op,
        lambda: (
            cluster.get(ns, "dp-deleted") is None
            and all(p in ("COMPLETE", "FAILED") for p in phases().values())
        ),
        timeout=900,
    )

    # Assert: every crash point fired once, and the operator came back each time
    fired = sorted(p.stem for p in (op.workdir / "faults").glob("*.fired"))
    assert fired == sorted(POINTS), f"crash points that never fired: {set(POINTS) - set(fired)}"
    assert op.starts >= len(POINTS) + 1 and restarts >= 1
    assert all(p == "COMPLETE" for p in phases().values()), (phases(), op.tail(80))

    ledger = op.ledger()
    for name, uid in uids.items():
        job = cluster.get(ns, name)
        assert job is not None
        status = job["status"]
        # one Job per stage, one pod per Job
        jobs = cluster.stage_jobs(ns, uid)
        assert sorted(j.metadata.labels["tabular.aumos.io/step"] for j in jobs) == [
            "generate",
            "train",
            "validate",
        ]
        assert all(j.status.succeeded == 1 and not j.status.failed for j in jobs)
        assert len(cluster.stage_pods(ns, uid)) == 3
        # exactly one allocate and one consume, and the status names that allocation
        mine = [r for r in ledger if r["id"] == f"file-{uid}"]
        assert [r["op"] for r in mine] == ["allocate", "consume"], mine
        assert status["allocationId"] == f"file-{uid}"
        assert status["budget"]["state"] == "consumed"
        assert 0 < mine[1]["epsilon"] <= 3.0
        assert abs(status["epsilonSpent"] - mine[1]["epsilon"]) < 1e-6
        # status matches the store
        report = json.loads(s3.get_object(f"aumos-tab-{ns}", f"tab-jobs/{uid}/report.json").read())
        assert round(report["fidelityScore"], 4) == status["fidelityScore"]
        assert report["rowsGenerated"] == status["rowsGenerated"] == 1000

    settled = [r["op"] for r in ledger if r["id"] == f"file-{doomed}"]
    assert settled in (["allocate", "consume"], ["allocate", "release"]), settled
    assert cluster.stage_jobs(ns, doomed) == []
