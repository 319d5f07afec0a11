"""Fixtures of the operator's end-to-end modules (see ``operator_harness``).

Module scope: each module gets its own tenant namespace and its own operator process, so a
module that kills its operator never disturbs another.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.operator_harness import REPO, Cluster, OperatorProcess, kubectl_binary, wait_for

minio = pytest.importorskip("minio")


@pytest.fixture(scope="module")
def cluster(kubeconfig: Path) -> Cluster:
    subprocess.run(
        [
            kubectl_binary(),
            "--kubeconfig",
            str(kubeconfig),
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            str(REPO / "crds"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    c = Cluster(kubeconfig)
    wait_for(
        "the SynthesisJob CRD to be served",
        lambda: _served(c),
        timeout=60,
    )
    return c


def _served(c: Cluster) -> bool:
    try:
        c.custom.list_cluster_custom_object("tabular.aumos.io", "v1alpha1", "synthesisjobs")
    except Exception:  # noqa: BLE001 - not yet
        return False
    return True


@pytest.fixture(scope="module")
def s3_client(s3_server: Any) -> Any:
    return minio.Minio(
        s3_server.endpoint,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
        region=s3_server.region,
    )


@pytest.fixture(scope="module")
def datasets(s3_client: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Adult and penguins in s3://datasets/ (real tables shipped in installed packages)."""
    from tabular_runner import datasets as ds
    from tabular_runner.spec import DataFormat

    if not s3_client.bucket_exists("datasets"):
        s3_client.make_bucket("datasets")
    out = tmp_path_factory.mktemp("data")
    keys = {"adult": "uci/adult/adult.csv", "penguins": "penguins/penguins.csv"}
    for name, key in keys.items():
        path = out / f"{name}.csv"
        ds.export(name, path, DataFormat.CSV)
        s3_client.fput_object("datasets", key, str(path))
    return {name: f"s3://datasets/{key}" for name, key in keys.items()}


@pytest.fixture(scope="module")
def tenant(cluster: Cluster, s3_server: Any, datasets: dict[str, str]) -> str:
    ns = cluster.namespace("op")
    cluster.secret(
        ns, "datasets-s3", {"accessKey": s3_server.access_key, "secretKey": s3_server.secret_key}
    )
    return ns


@pytest.fixture(scope="module")
def operator(
    kubeconfig: Path, s3_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(kubeconfig, s3_server, tmp_path_factory.mktemp("operator"))
    op.start()
    yield op
    op.stop()


@pytest.fixture(scope="module")
def adult_3k(s3_client: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The first 3,000 rows of UCI Adult at s3://datasets/uci/adult/adult-3k.csv (fast DP jobs)."""
    from tabular_runner import datasets as ds
    from tabular_runner.spec import DataFormat

    if not s3_client.bucket_exists("datasets"):
        s3_client.make_bucket("datasets")
    adult = tmp_path_factory.mktemp("adult") / "adult.csv"
    ds.export("adult", adult, DataFormat.CSV)
    head = adult.with_name("adult-3k.csv")
    head.write_text("".join(adult.read_text().splitlines(keepends=True)[:3001]))
    s3_client.fput_object("datasets", "uci/adult/adult-3k.csv", str(head))
    return "s3://datasets/uci/adult/adult-3k.csv"
