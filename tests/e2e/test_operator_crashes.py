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

import asyncio
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
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

DP_JOBS = ("dp-a", "dp-b", "dp-c")


class Books:
    """The ledger's record of one run, whichever ledger the operator used."""

    def __init__(self, kind: str, op: OperatorProcess, database_url: str | None) -> None:
        self.kind, self.op, self.database_url = kind, op, database_url

    def ops(self, namespace: str, allocation_id: str) -> list[tuple[str, float | None]]:
        """(op, ε) of every change of one allocation, oldest first."""
        if self.kind == "file":
            return [
                (r["op"], r.get("epsilon")) for r in self.op.ledger() if r["id"] == allocation_id
            ]
        from tabular_operator.ledger_pg import PostgresLedger

        ledger = PostgresLedger(str(self.database_url), pool_size=2)
        try:
            entries = asyncio.run(ledger.audit(namespace))
        finally:
            ledger.close()
        return [(e.op, e.epsilon) for e in entries if e.allocation_id == allocation_id]

    def drift(self, expected: dict[str, str]) -> list[Any]:
        """Allocations whose ledger state differs from the job statuses (PostgreSQL only)."""
        if self.kind == "file":
            return []
        from tabular_operator.ledger_pg import PostgresLedger

        ledger = PostgresLedger(str(self.database_url), pool_size=2)
        try:
            return asyncio.run(ledger.drift(expected))
        finally:
            ledger.close()


@pytest.fixture(scope="module", params=["file", "postgres"], ids=["file-ledger", "postgres-ledger"])
def world(
    request: pytest.FixtureRequest,
    cluster: Cluster,
    kubeconfig: Path,
    s3_server: Any,
    s3_client: Any,
    adult_3k: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Cluster, str, OperatorProcess, Any, Books]]:
    kind = request.param
    ns = cluster.namespace(f"crash-{kind[:4]}")
    work = tmp_path_factory.mktemp(f"crash-operator-{kind}")
    env = {"AUMOS_FAULT_POINTS": ",".join(POINTS), "AUMOS_FAULT_ONCE_DIR": str(work / "faults")}
    database_url = None
    if kind == "postgres":
        database_url = request.getfixturevalue("database_url")
        env |= {"AUMOS_DATABASE_URL": database_url, "AUMOS_LEDGER_FILE": ""}
        cluster.create(
            ns,
            {"kind": "PrivacyBudget", "metadata": {"name": "crash"}, "spec": {"epsilon": 100}},
        )
    op = OperatorProcess(kubeconfig, s3_server, work, env=env)
    op.start()
    yield cluster, ns, op, s3_client, Books(kind, op, database_url)
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
    world: tuple[Cluster, str, OperatorProcess, Any, Books],
) -> None:
    cluster, ns, op, s3, books = world
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
    doomed_allocation = wait_for(
        "the doomed job's allocation",
        lambda: ((cluster.get(ns, "dp-deleted") or {}).get("status") or {}).get("allocationId"),
        timeout=60,
    )
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

    expected: dict[str, str] = {}
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
        allocation = status["allocationId"]
        mine = books.ops(ns, allocation)
        assert [o for o, _ in mine] == ["allocate", "consume"], mine
        assert status["budget"]["state"] == "consumed"
        consumed = mine[1][1]
        assert consumed is not None and 0 < consumed <= 3.0
        assert abs(status["epsilonSpent"] - consumed) < 1e-6
        expected[allocation] = "consumed"
        # status matches the store
        report = json.loads(s3.get_object(f"aumos-tab-{ns}", f"tab-jobs/{uid}/report.json").read())
        assert round(report["fidelityScore"], 4) == status["fidelityScore"]
        assert report["rowsGenerated"] == status["rowsGenerated"] == 1000

    deleted = cluster.stage_jobs(ns, doomed)
    assert deleted == []
    settled = [o for o, _ in books.ops(ns, doomed_allocation)]
    assert settled in (["allocate", "consume"], ["allocate", "release"]), settled
    # the books match the job statuses: no drift
    assert books.drift(expected) == []
