"""The node agent's pure rules (tests/platform/agent_logic.py): nodes, env, images, status.

Nothing is faked: the functions take plain Kubernetes JSON and return values.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.platform import agent_logic as logic

pytestmark = pytest.mark.unit


def pod(name: str = "p", *, phase: str = "Pending", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
        "spec": {"containers": [{"name": "c", "image": "python:3.11"}], **spec},
        "status": {"phase": phase},
    }


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


# --------------------------------------------------------------------------- nodes

GiB = 2**30
MEMINFO = "MemTotal:       24684084 kB\nMemFree:        20000000 kB\nMemAvailable:   1 kB\n"


def test_meminfo_total_reads_mem_total_in_bytes() -> None:
    assert logic.meminfo_total(MEMINFO) == 24684084 * 1024


def test_meminfo_total_rejects_text_without_it() -> None:
    with pytest.raises(ValueError, match="MemTotal"):
        logic.meminfo_total("MemFree: 1 kB\n")


@pytest.mark.parametrize(
    "machine",
    [
        logic.Machine(cpus=2, memory=24684084 * 1024, disk=64 * GiB),
        logic.Machine(cpus=16, memory=128 * GiB, disk=1000 * GiB),
        logic.Machine(cpus=1, memory=3 * GiB + 12345, disk=10 * GiB + 7),
    ],
    ids=["dev-2cpu-24g", "big", "odd-sizes"],
)
def test_nodes_share_the_machine_without_overcommitting_it(machine: logic.Machine) -> None:
    cpu, gpu = logic.plan_nodes(machine)
    for node in (cpu, gpu):
        # Capacity is the machine, as a kubelet on it would report.
        assert logic.parse_quantity(node.capacity["cpu"]) == machine.cpus
        assert logic.parse_quantity(node.capacity["memory"]) == machine.memory // 1024 * 1024
        assert node.allocatable["pods"] == "110"
    # (resource, what both nodes may share, the rounding each node's half may lose)
    for resource, whole, rounding in (
        ("cpu", Decimal(machine.cpus), Decimal("0.001")),
        ("memory", Decimal(machine.memory - logic.MEMORY_RESERVE), Decimal(1024)),
        ("ephemeral-storage", Decimal(machine.disk), Decimal(1024)),
    ):
        halves = [logic.parse_quantity(n.allocatable[resource]) for n in (cpu, gpu)]
        assert sum(halves) <= whole
        assert halves[0] == halves[1]
        assert halves[0] > whole / 2 - rounding


def test_only_the_gpu_node_has_the_gpu_its_label_and_its_taint() -> None:
    cpu, gpu = logic.plan_nodes(logic.Machine(cpus=2, memory=8 * GiB, disk=GiB))
    assert (cpu.name, gpu.name) == logic.NODE_NAMES == ("aumos-cpu-node", "aumos-gpu-node")
    assert "nvidia.com/gpu" not in cpu.capacity and "nvidia.com/gpu" not in cpu.allocatable
    assert cpu.labels == {} and cpu.taints == ()
    assert gpu.capacity["nvidia.com/gpu"] == gpu.allocatable["nvidia.com/gpu"] == "1"
    assert gpu.labels == {"nvidia.com/gpu.present": "true"}
    assert gpu.taints == ({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},)


def test_a_machine_without_memory_beyond_the_reserve_is_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        logic.plan_nodes(logic.Machine(cpus=4, memory=logic.MEMORY_RESERVE, disk=GiB))


@pytest.mark.parametrize(
    ("candidate", "mine"),
    [
        (pod(), False),
        (pod(nodeName="aumos-cpu-node"), True),
        (pod(nodeName="aumos-gpu-node"), True),
        (pod(nodeName="someone-elses-node"), False),
    ],
    ids=["unbound", "cpu-node", "gpu-node", "other-node"],
)
def test_the_agent_runs_only_pods_bound_to_its_nodes(candidate: dict[str, Any], mine: bool) -> None:
    assert logic.runs_here(candidate) is mine


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


IMAGE = logic.image_config(
    "sha256:abc",
    {
        "Entrypoint": ["python", "-m", "tabular_runner"],
        "Cmd": ["--help"],
        "User": "10001:10001",
        "WorkingDir": "/tmp",
        "Env": ["PATH=/opt/venv/bin:/usr/bin", "AUMOS_ENGINE=core"],
    },
)


@pytest.mark.parametrize(
    ("container", "argv"),
    [
        ({}, ["python", "-m", "tabular_runner", "--help"]),
        ({"args": ["stage", "train"]}, ["python", "-m", "tabular_runner", "stage", "train"]),
        (
            {"command": ["tabular-runner"], "args": ["stage", "$(S)"]},
            ["tabular-runner", "stage", "x"],
        ),
        ({"command": ["sh", "-c", "true"]}, ["sh", "-c", "true"]),
    ],
)
def test_image_argv_follows_kubernetes_command_and_args(
    container: dict[str, Any], argv: list[str]
) -> None:
    assert logic.image_argv(container, IMAGE, {"S": "x"}) == argv


def test_an_image_without_entrypoint_or_command_cannot_start() -> None:
    with pytest.raises(logic.ContainerConfigError, match="no command given"):
        logic.image_argv({"image": "x"}, logic.image_config("sha256:0", {}), {})


def test_image_config_keeps_env_user_and_workdir() -> None:
    assert IMAGE.env == {"PATH": "/opt/venv/bin:/usr/bin", "AUMOS_ENGINE": "core"}
    assert (IMAGE.user, IMAGE.working_dir) == ("10001:10001", "/tmp")


@pytest.mark.parametrize(
    ("container", "pod", "user"),
    [
        ({}, {}, "10001:10001"),
        ({}, {"securityContext": {"runAsUser": 2000}}, "2000:2000"),
        (
            {"securityContext": {"runAsUser": 3000, "runAsGroup": 4000}},
            {"securityContext": {"runAsUser": 2000}},
            "3000:4000",
        ),
    ],
)
def test_the_run_user_is_the_containers_then_the_pods_then_the_images(
    container: dict[str, Any], pod: dict[str, Any], user: str
) -> None:
    assert logic.run_user(container, pod, IMAGE) == user
