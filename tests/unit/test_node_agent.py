"""The node agent's pure rules (tests/platform/agent_logic.py): scheduling, env, images, status.

Nothing is faked: the functions take plain Kubernetes JSON and return values.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.platform import agent_logic as logic

pytestmark = pytest.mark.unit

NODE: dict[str, Any] = {
    "metadata": {
        "name": "n",
        "labels": {"kubernetes.io/os": "linux", "nvidia.com/gpu.present": "true", "zone": "a"},
    },
    "spec": {},
    "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "3", "nvidia.com/gpu": "1"}},
}


def pod(
    name: str = "p", *, requests: dict[str, str] | None = None, phase: str = "Pending", **spec: Any
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "python:3.11"}
    if requests:
        container["resources"] = {"requests": requests}
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
        "spec": {"containers": [container], **spec},
        "status": {"phase": phase},
    }


def tainted(*taints: dict[str, str]) -> dict[str, Any]:
    return {**NODE, "spec": {"taints": list(taints)}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("1Gi", Decimal(2**30)),
        ("1k", Decimal(1000)),
        ("1e3", Decimal(1000)),
        ("128Mi", Decimal(128 * 2**20)),
        (3, Decimal(3)),
    ],
    ids=["milli", "plain", "binary", "decimal-suffix", "exponent", "mebi", "int"],
)
def test_parse_quantity(text: str | int, expected: Decimal) -> None:
    assert logic.parse_quantity(text) == expected


def test_parse_quantity_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="invalid quantity"):
        logic.parse_quantity("lots")


def test_pod_requests_sum_containers_and_take_the_largest_init_container() -> None:
    p = pod(requests={"cpu": "1"})
    p["spec"]["containers"].append({"name": "d", "resources": {"limits": {"nvidia.com/gpu": "1"}}})
    p["spec"]["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": "3"}}}]
    assert logic.pod_requests(p) == {"cpu": Decimal(3), "nvidia.com/gpu": Decimal(1)}


@pytest.mark.parametrize(
    ("candidate", "node", "bound", "reason"),
    [
        (pod(), NODE, [], None),
        (pod(nodeSelector={"zone": "a"}), NODE, [], None),
        (
            pod(nodeSelector={"zone": "b"}),
            NODE,
            [],
            "node didn't match Pod's node affinity/selector (zone=b)",
        ),
        (
            pod(
                affinity={
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "zone", "operator": "In", "values": ["b"]}
                                    ]
                                },
                                {
                                    "matchExpressions": [
                                        {"key": "nvidia.com/gpu.present", "operator": "Exists"}
                                    ]
                                },
                            ]
                        }
                    }
                }
            ),
            NODE,
            [],
            None,
        ),
        (
            pod(
                affinity={
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "zone", "operator": "NotIn", "values": ["a"]}
                                    ]
                                }
                            ]
                        }
                    }
                }
            ),
            NODE,
            [],
            "node didn't match Pod's node affinity/selector (nodeAffinity)",
        ),
        (
            pod(),
            tainted({"key": "gpu", "value": "yes", "effect": "NoSchedule"}),
            [],
            "node had untolerated taint {gpu: yes}",
        ),
        (
            pod(tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]),
            tainted({"key": "gpu", "value": "yes", "effect": "NoSchedule"}),
            [],
            None,
        ),
        (
            pod(tolerations=[{"key": "gpu", "operator": "Equal", "value": "no"}]),
            tainted({"key": "gpu", "value": "yes", "effect": "NoSchedule"}),
            [],
            "node had untolerated taint {gpu: yes}",
        ),
        (
            pod(tolerations=[{"operator": "Exists"}]),
            tainted({"key": "x", "effect": "NoExecute"}),
            [],
            None,
        ),
        (pod(), tainted({"key": "soft", "effect": "PreferNoSchedule"}), [], None),
        (pod(requests={"nvidia.com/gpu": "1"}), NODE, [], None),
        (
            pod(requests={"nvidia.com/gpu": "1"}),
            NODE,
            [pod("other", requests={"nvidia.com/gpu": "1"}, phase="Running")],
            "Insufficient nvidia.com/gpu",
        ),
        (
            pod(requests={"nvidia.com/gpu": "1"}),
            NODE,
            [pod("done", requests={"nvidia.com/gpu": "1"}, phase="Succeeded")],
            None,
        ),
        (pod(requests={"cpu": "4500m"}), NODE, [], "Insufficient cpu"),
        (
            pod(requests={"memory": "6Gi"}),
            NODE,
            [pod("o", requests={"memory": "3Gi"}, phase="Running")],
            "Insufficient memory",
        ),
        (pod(requests={"example.com/fpga": "1"}), NODE, [], "Insufficient example.com/fpga"),
        (pod(), NODE, [pod(f"o{i}", phase="Running") for i in range(3)], "Too many pods"),
        (pod(), {**NODE, "spec": {"unschedulable": True}}, [], "node is cordoned"),
    ],
    ids=[
        "fits",
        "selector-match",
        "selector-miss",
        "affinity-terms-ored",
        "affinity-notin",
        "taint-untolerated",
        "taint-tolerated-exists",
        "taint-wrong-value",
        "tolerate-everything",
        "prefer-no-schedule-ignored",
        "gpu-free",
        "gpu-taken",
        "gpu-freed-by-finished-pod",
        "cpu-short",
        "memory-short",
        "unknown-resource",
        "pod-count",
        "cordoned",
    ],
)
def test_unschedulable_reason(
    candidate: dict[str, Any], node: dict[str, Any], bound: list[dict[str, Any]], reason: str | None
) -> None:
    assert logic.unschedulable_reason(candidate, node, bound) == reason


@pytest.mark.parametrize(
    ("candidate", "wanted"),
    [
        (pod(), True),
        (pod(nodeName="n"), False),
        ({**pod(), "metadata": {"name": "p", "deletionTimestamp": "2024-01-01T00:00:00Z"}}, False),
        (pod(phase="Failed"), False),
        (pod(schedulerName="other"), False),
        (pod(schedulingGates=[{"name": "kueue"}]), False),
    ],
    ids=["pending", "bound", "deleting", "terminal", "other-scheduler", "gated"],
)
def test_wants_binding(candidate: dict[str, Any], wanted: bool) -> None:
    assert logic.wants_binding(candidate) is wanted


# --------------------------------------------------------------------------- env

OBJECTS = {
    ("secret", "ns", "creds"): {"password": "s3cret"},
    ("configmap", "ns", "cfg"): {"LEVEL": "debug", "url": "http://x"},
}


def lookup(kind: str, namespace: str, name: str) -> dict[str, str] | None:
    return OBJECTS.get((kind, namespace, name))


def test_resolve_env_covers_value_refs_fields_and_expansion() -> None:
    p = pod("runner-0")
    container = {
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "value": "$(A)-$(MISSING)-$$(A)"},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "URL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "url"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {
                "name": "OPT",
                "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}},
            },
            {"name": "CFG_LEVEL", "value": "info"},
        ],
    }
    env = logic.resolve_env(container, p, lookup, "node-1")
    assert env == {
        "CFG_LEVEL": "info",
        "CFG_url": "http://x",
        "A": "1",
        "B": "1-$(MISSING)-$(A)",
        "PW": "s3cret",
        "URL": "http://x",
        "POD": "runner-0",
        "NS": "ns",
    }


@pytest.mark.parametrize(
    ("var", "message"),
    [
        (
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}},
            'secret "absent" not found',
        ),
        (
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope"}}},
            "couldn't find key nope",
        ),
        (
            {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.tolerations"}}},
            "unsupported fieldRef",
        ),
    ],
    ids=["missing-secret", "missing-key", "unsupported-field"],
)
def test_resolve_env_errors_are_container_config_errors(var: dict[str, Any], message: str) -> None:
    with pytest.raises(logic.ContainerConfigError, match=message):
        logic.resolve_env({"env": [var]}, pod(), lookup)


# --------------------------------------------------------------------------- images

TABLE = logic.load_image_table(
    {
        "images": [
            {
                "pattern": "*tabular-runner*",
                "entrypoint": ["python", "-m", "tabular_runner"],
                "path": ["{python_bin}"],
                "env": {"PYTHONPATH": "{repo}/runner"},
            },
            {"pattern": "python:*", "entrypoint": ["python"]},
        ]
    },
    {"python_bin": "/venv/bin", "repo": "/repo"},
)


@pytest.mark.parametrize(
    ("image", "pattern"),
    [
        ("aumos/tabular-runner:0.1.0", "*tabular-runner*"),
        ("ghcr.io/x/aumos-tabular-runner-core@sha256:ab", "*tabular-runner*"),
        ("python:3.11-slim", "python:*"),
        ("nginx:1.27", None),
    ],
    ids=["runner", "runner-registry-digest", "python", "unknown"],
)
def test_match_image(image: str, pattern: str | None) -> None:
    entry = logic.match_image(image, TABLE)
    assert (entry.pattern if entry else None) == pattern


def test_image_table_fills_placeholders() -> None:
    assert TABLE[0].path == ("/venv/bin",)
    assert TABLE[0].env == {"PYTHONPATH": "/repo/runner"}


@pytest.mark.parametrize(
    ("container", "argv"),
    [
        (
            {"args": ["train", "--job=$(JOB)"]},
            ["python", "-m", "tabular_runner", "train", "--job=j1"],
        ),
        ({"command": ["python", "-c", "print(1)"]}, ["python", "-c", "print(1)"]),
        (
            {"command": ["sh", "-c"], "args": ["echo $(JOB) $$(JOB)"]},
            ["sh", "-c", "echo j1 $(JOB)"],
        ),
    ],
    ids=["entrypoint-plus-args", "command-overrides", "expansion-and-escape"],
)
def test_container_argv(container: dict[str, Any], argv: list[str]) -> None:
    assert logic.container_argv(container, TABLE[0], {"JOB": "j1"}) == argv


# --------------------------------------------------------------------------- status


def cs(state: str, code: int | None = None, reason: str = "") -> logic.ContainerState:
    return logic.ContainerState("c", "img", state=state, exit_code=code, reason=reason)


@pytest.mark.parametrize(
    ("policy", "init", "main", "phase"),
    [
        ("Never", [], [cs("waiting", reason="ContainerCreating")], "Pending"),
        ("Never", [], [cs("running")], "Running"),
        ("Never", [], [cs("terminated", 0)], "Succeeded"),
        ("Never", [], [cs("terminated", 3)], "Failed"),
        ("OnFailure", [], [cs("terminated", 3)], "Running"),
        ("OnFailure", [], [cs("terminated", 0)], "Succeeded"),
        ("Never", [], [cs("terminated", 0), cs("running")], "Running"),
        ("Never", [], [cs("waiting", reason="ErrImagePull")], "Failed"),
        ("OnFailure", [], [cs("waiting", reason="ErrImagePull")], "Pending"),
        ("Never", [cs("terminated", 1)], [cs("waiting")], "Failed"),
        ("OnFailure", [cs("running")], [cs("waiting")], "Pending"),
        ("Always", [], [cs("terminated", 0)], "Running"),
    ],
    ids=[
        "creating",
        "running",
        "succeeded",
        "failed",
        "onfailure-restarts",
        "onfailure-done",
        "one-still-running",
        "bad-image-never",
        "bad-image-retried",
        "init-failed",
        "init-running",
        "always-never-ends",
    ],
)
def test_pod_phase(
    policy: str, init: list[logic.ContainerState], main: list[logic.ContainerState], phase: str
) -> None:
    assert logic.pod_phase(policy, init, main) == phase


def test_render_status_reports_exit_code_and_message() -> None:
    done = logic.ContainerState(
        "runner",
        "aumos/tabular-runner:1",
        state="terminated",
        exit_code=0,
        reason="Completed",
        message='{"rows":10}',
        started_at="t0",
        finished_at="t1",
    )
    status = logic.render_status("Never", [], [done], start_time="t0", now="t1")
    term = status["containerStatuses"][0]["state"]["terminated"]
    assert status["phase"] == "Succeeded"
    assert term == {
        "exitCode": 0,
        "reason": "Completed",
        "message": '{"rows":10}',
        "startedAt": "t0",
        "finishedAt": "t1",
    }
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodScheduled": "True",
        "Initialized": "True",
        "ContainersReady": "False",
        "Ready": "False",
    }


@pytest.mark.parametrize(
    ("written", "policy", "code", "expected"),
    [
        ("ok", "File", 0, "ok"),
        ("", "File", 1, ""),
        ("", "FallbackToLogsOnError", 1, "line2\nline3"),
        ("", "FallbackToLogsOnError", 0, ""),
        ("x" * 5000, "File", 0, "x" * 4096),
    ],
    ids=["file", "file-empty", "fallback-logs", "fallback-only-on-error", "truncated"],
)
def test_termination_message(written: str, policy: str, code: int, expected: str) -> None:
    assert (
        logic.termination_message(written, "line2\nline3\n", policy=policy, exit_code=code)
        == expected
    )
