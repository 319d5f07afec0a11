"""The operator under test, run as a local process against the platform, and helpers.

What is real: kube-apiserver, the Job and garbage-collector controllers, the node agent's
pods (each stage is a real ``tabular-runner stage`` process), SeaweedFS S3, the operator
(``python -m tabular_operator``, Kopf and all) — started, killed with SIGKILL and restarted by
the tests. Nothing is mocked. The chart-installed operator pod is covered by
``tests/e2e/test_operator_chart.py``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.platform import paths

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "tabular.aumos.io", "v1alpha1"
UID_LABEL = "tabular.aumos.io/job-uid"
# Process mode maps these names to this checkout (tests/platform/images.yaml); image mode
# (make test-images) runs the chart's images as `make images` built them.
RUNNER_IMAGE_CORE = (
    paths.chart_image("core") if paths.image_mode() else "aumos/tabular-runner:e2e-core"
)
RUNNER_IMAGE_ARGN = (
    paths.chart_image("argn") if paths.image_mode() else "aumos/tabular-runner:e2e-argn"
)


def kubectl_binary() -> str:
    """The platform's kubectl (or one on PATH)."""
    from tests.e2e.test_api import _kubectl_binary

    return _kubectl_binary()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OperatorProcess:
    """``python -m tabular_operator`` with the platform's settings; start, kill, restart."""

    kubeconfig: Path
    s3: Any
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    metrics_port: int = field(default_factory=free_port)

    @property
    def log(self) -> Path:
        return self.workdir / "operator.log"

    def start(self, **extra: str) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AUMOS_")},
            "PYTHONPATH": f"{REPO / 'operator'}:{REPO / 'runner'}",
            "KUBECONFIG": str(self.kubeconfig),
            "AUMOS_S3_ENDPOINT": self.s3.url,
            "AUMOS_S3_ACCESS_KEY": self.s3.access_key,
            "AUMOS_S3_SECRET_KEY": self.s3.secret_key,
            "AUMOS_S3_REGION": self.s3.region,
            "AUMOS_RUNNER_IMAGE_CORE": RUNNER_IMAGE_CORE,
            "AUMOS_RUNNER_IMAGE_ARGN": RUNNER_IMAGE_ARGN,
            "AUMOS_RUNNER_SERVICE_ACCOUNT": "aumos-runner",
            "AUMOS_RECONCILE_INTERVAL_SECONDS": "3",
            "AUMOS_METRICS_PORT": str(self.metrics_port),
            "AUMOS_STAGE_BACKOFF_LIMIT": "2",
            "AUMOS_LEDGER_FILE": str(self.workdir / "ledger.jsonl"),
            **self.env,
            **extra,
        }
        self.starts += 1
        with self.log.open("ab") as fh:
            fh.write(f"\n=== start {self.starts} ===\n".encode())
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tabular_operator",
                    f"--liveness=http://127.0.0.1:{free_port()}/healthz",
                    "--log-format=plain",
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def ledger(self) -> list[dict[str, Any]]:
        path = self.workdir / "ledger.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Cluster:
    """The admin client and the few calls the tests make."""

    def __init__(self, kubeconfig: Path) -> None:
        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.custom = client.CustomObjectsApi(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.core = client.CoreV1Api(self.api)

    def namespace(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        self.core.create_namespaced_service_account(
            name,
            client.V1ServiceAccount(
                metadata=client.V1ObjectMeta(name="aumos-runner"),
                automount_service_account_token=False,
            ),
        )
        return name

    def secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        self.core.create_namespaced_secret(
            namespace,
            client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=dict(data)),
        )

    def create(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        plural = body["kind"].lower() + "s"
        body = dict(body) | {"apiVersion": f"{GROUP}/{VERSION}"}
        obj: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, body
        )
        return obj

    def get(
        self, namespace: str, name: str, plural: str = "synthesisjobs"
    ) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def patch(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "synthesisjobs", name, dict(body)
        )

    def delete(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "synthesisjobs", name
        )

    def stage_jobs(self, namespace: str, uid: str) -> list[Any]:
        return list(
            self.batch.list_namespaced_job(namespace, label_selector=f"{UID_LABEL}={uid}").items
        )

    def stage_pods(self, namespace: str, uid: str) -> list[Any]:
        return list(
            self.core.list_namespaced_pod(namespace, label_selector=f"{UID_LABEL}={uid}").items
        )

    def events(self, namespace: str, name: str) -> list[Any]:
        return [
            e
            for e in self.core.list_namespaced_event(namespace).items
            if e.involved_object.name == name and e.involved_object.kind == "SynthesisJob"
        ]


def penguins_job(name: str, **spec: Any) -> dict[str, Any]:
    """A small SynthesisJob on Palmer penguins in S3 (``datasets`` fixture); ``spec`` overrides."""
    body: dict[str, Any] = {
        "source": {
            "uri": "s3://datasets/penguins/penguins.csv",
            "secretRef": {"name": "datasets-s3"},
        },
        "generator": {"type": "gaussian_copula"},
        "rows": 300,
        "validation": {"attacks": 50},
    }
    body.update(spec)
    return {"kind": "SynthesisJob", "metadata": {"name": name}, "spec": body}


def wait_for(
    what: str,
    probe: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 0.5,
    operator: OperatorProcess | None = None,
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with the operator's log tail."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    tail = f"\n--- operator log ---\n{operator.tail()}" if operator else ""
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r}){tail}"
    )


def wait_phase(
    cluster: Cluster,
    namespace: str,
    name: str,
    phases: Iterable[str],
    *,
    timeout: float = 300,
    operator: OperatorProcess | None = None,
) -> dict[str, Any]:
    wanted = set(phases)

    def probe() -> dict[str, Any] | None:
        obj = cluster.get(namespace, name)
        phase = ((obj or {}).get("status") or {}).get("phase")
        return obj if phase in wanted else None

    result: dict[str, Any] = wait_for(
        f"{namespace}/{name} to reach {sorted(wanted)}", probe, timeout=timeout, operator=operator
    )
    return result


def wait_complete(
    cluster: Cluster,
    namespace: str,
    name: str,
    *,
    timeout: float = 300,
    operator: OperatorProcess | None = None,
) -> dict[str, Any]:
    """The job once it has finished, asserted COMPLETE (else its error message is shown)."""
    job = wait_phase(
        cluster, namespace, name, ["COMPLETE", "FAILED"], timeout=timeout, operator=operator
    )
    status = job["status"]
    assert status["phase"] == "COMPLETE", status.get("errorMessage")
    return job


def runner_processes(uid: str, stage: str) -> list[int]:
    """PIDs of the stage processes (``tabular-runner stage <stage>``) of the job with ``uid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"stage" in cmd and stage.encode() in cmd and uid.encode() in env:
            found.append(int(entry.name))
    return found


def built_image_id(component: str) -> str:
    """Image mode: the pod ``imageID`` the node agent reports for the chart's built image."""
    out = subprocess.run(
        [
            "buildah",
            "inspect",
            "--type",
            "image",
            "--format",
            "{{.FromImageID}}",
            paths.chart_image(component),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return f"buildah://sha256:{out.stdout.strip()}"


def step_image_ids(cluster: Cluster, namespace: str, uid: str) -> dict[str, set[str]]:
    """Step (``train``, ``train-argn`` …) → the imageIDs its pods reported."""
    out: dict[str, set[str]] = {}
    for pod in cluster.stage_pods(namespace, uid):
        step = pod.metadata.labels.get("tabular.aumos.io/step", "?")
        out.setdefault(step, set()).update(c.image_id for c in pod.status.container_statuses or [])
    return out
