"""Image mode of the node agent: a pod runs inside its built image (``make test-images``).

Runs only when the platform's node agent runs containers inside images
(``AUMOS_NODE_AGENT_CONTAINERS=image``, which ``make test-images`` sets after ``make images``):
the image's root file system, environment and user, the pod's command, env and security
context. The operator and stage pods of the e2e modules that ``make test-images`` selects then
run from the same images.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.e2e.test_platform_smoke import wait_for
from tests.platform import paths

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not paths.image_mode(),
        reason="image mode only (make test-images: AUMOS_NODE_AGENT_CONTAINERS=image)",
    ),
]

PROBE = (
    "import os, sys, json; "
    "open('/dev/termination-log', 'w').write(json.dumps("
    "{'python': sys.executable, 'uid': os.getuid(), 'cwd': os.getcwd(), "
    "'engine': os.environ.get('AUMOS_ENGINE'), 'pod_env': os.environ.get('FROM_POD')}))"
)


@pytest.fixture(scope="module")
def core(kubeconfig: Path) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    name = f"img-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def _pod(name: str, image: str, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001},
            "containers": [{"name": "main", "image": image, **container}],
        },
    }


def _terminated(core: client.CoreV1Api, ns: str, name: str) -> Any:
    pod = core.read_namespaced_pod(name, ns)
    statuses = pod.status.container_statuses or []
    if statuses and statuses[0].state.terminated is not None:
        return statuses[0].state.terminated
    return None


@pytest.mark.parametrize("component", ["operator", "core", "argn"])
def test_a_pod_runs_inside_its_image_as_the_pod_says(
    core: client.CoreV1Api, namespace: str, component: str
) -> None:
    import json

    image = paths.chart_image(component)
    core.create_namespaced_pod(
        namespace,
        _pod(
            "probe",
            image,
            command=["python", "-c", PROBE],
            env=[{"name": "FROM_POD", "value": "yes"}],
        ),
    )
    done = wait_for("the probe pod to finish", lambda: _terminated(core, namespace, "probe"), 120)
    assert done.exit_code == 0, done.message
    seen = json.loads(done.message)
    assert seen["python"] == "/opt/venv/bin/python"  # the image's interpreter, not the host's
    assert seen["uid"] == 10001 and seen["pod_env"] == "yes"
    assert seen["cwd"] == "/tmp"  # the image's WORKDIR
    assert seen["engine"] == (None if component == "operator" else component)


def test_an_image_that_was_not_built_cannot_be_pulled(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, _pod("ghost", "ghcr.io/aumos/never-built:0.0.0"))

    def waiting() -> Any:
        statuses = core.read_namespaced_pod("ghost", namespace).status.container_statuses or []
        state = statuses[0].state.waiting if statuses else None
        return state if state is not None and state.reason == "ErrImagePull" else None

    state = wait_for("ErrImagePull", waiting, 60)
    assert "make images" in state.message


def test_deleting_a_pod_stops_its_process_inside_the_image(
    core: client.CoreV1Api, namespace: str
) -> None:
    marker = f"aumos-sleeper-{uuid.uuid4().hex[:8]}"
    script = f"import time  # {marker}\ntime.sleep(600)"
    core.create_namespaced_pod(
        namespace, _pod("sleeper", paths.chart_image("operator"), command=["python", "-c", script])
    )

    def running() -> bool:
        return bool(_processes(marker))

    wait_for("the process inside the image", running, 120)
    core.delete_namespaced_pod("sleeper", namespace, grace_period_seconds=1)
    wait_for("the process to stop", lambda: not _processes(marker), 60)


def _processes(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline and b"buildah" not in cmdline:
                found.append(int(entry.name))
    return found
