"""Pure decisions of the node agent: its nodes, env resolution, image mapping, pod status.

Everything here takes plain values (the JSON of Kubernetes objects, the machine's size) and
returns plain values, so the rules table-test without a cluster (tests/unit/test_node_agent.py);
the I/O lives in :mod:`tests.platform.node_agent`. Scheduling is not here: the real
kube-scheduler binds pods. The kubelet rules follow the kubelet closely enough for the
project's pods; what they leave out is listed in docs/testing.md.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

Obj = Mapping[str, Any]

# --------------------------------------------------------------------------- quantities

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE]?)$")


def parse_quantity(value: str | int | float) -> Decimal:
    """A Kubernetes resource quantity ("500m", "2Gi", "1e3", 4) as a Decimal."""
    text = str(value).strip()
    m = _QUANTITY.match(text)
    if not m:
        raise ValueError(f"invalid quantity {value!r}")
    number, suffix = Decimal(m.group(1)), m.group(2)
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix[:1] in ("e", "E"):
        return number * Decimal(10) ** int(suffix[1:])
    return number * _DECIMAL[suffix]


# --------------------------------------------------------------------------- nodes

CPU_NODE = "aumos-cpu-node"
GPU_NODE = "aumos-gpu-node"
NODE_NAMES = (CPU_NODE, GPU_NODE)
GPU_RESOURCE = "nvidia.com/gpu"
GPU_LABELS = {"nvidia.com/gpu.present": "true"}
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
#: Memory kept out of both nodes' allocatable for what runs beside the pods (the control plane,
#: PostgreSQL, Kafka, SeaweedFS, the agent). CPU is not reserved: it is compressible.
MEMORY_RESERVE = 1 << 30
PODS_PER_NODE = 110  # the kubelet's default --max-pods

TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True)
class Machine:
    """What the host has: CPUs (``os.cpu_count()``), memory and disk in bytes."""

    cpus: int
    memory: int
    disk: int


@dataclass(frozen=True)
class NodePlan:
    """One Node the agent registers: its labels, taints, capacity and allocatable."""

    name: str
    labels: Mapping[str, str]
    taints: tuple[Mapping[str, str], ...]
    capacity: Mapping[str, str]
    allocatable: Mapping[str, str]


def meminfo_total(text: str) -> int:
    """MemTotal of a /proc/meminfo text, in bytes."""
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB\s*$", text, re.MULTILINE)
    if not m:
        raise ValueError("no MemTotal line in /proc/meminfo")
    return int(m.group(1)) * 1024


def plan_nodes(machine: Machine) -> list[NodePlan]:
    """The CPU node and the GPU node, sharing one machine.

    Both report the machine as capacity (as a kubelet on it would). Allocatable, what the
    scheduler packs requests against, is split evenly: each node gets half the CPUs and half of
    the memory left after :data:`MEMORY_RESERVE`, so the requests the scheduler admits on both
    nodes together never exceed the machine, and either node can take a pod of half of it.
    The GPU node alone has ``nvidia.com/gpu: 1`` (there is no real GPU; it is a countable
    resource the scheduler accounts for), the GPU label and the GPU taint.
    """
    if machine.cpus < 1 or machine.memory <= MEMORY_RESERVE:
        raise ValueError(f"machine too small for two nodes: {machine}")
    cpu_milli = machine.cpus * 1000 // 2
    memory_ki = (machine.memory - MEMORY_RESERVE) // 2 // 1024
    disk_ki = machine.disk // 2 // 1024
    capacity = {
        "cpu": str(machine.cpus),
        "memory": f"{machine.memory // 1024}Ki",
        "ephemeral-storage": f"{machine.disk // 1024}Ki",
        "pods": str(PODS_PER_NODE),
    }
    allocatable = {
        "cpu": f"{cpu_milli}m",
        "memory": f"{memory_ki}Ki",
        "ephemeral-storage": f"{disk_ki}Ki",
        "pods": str(PODS_PER_NODE),
    }
    gpu = {GPU_RESOURCE: "1"}
    return [
        NodePlan(CPU_NODE, {}, (), capacity, allocatable),
        NodePlan(
            GPU_NODE,
            dict(GPU_LABELS),
            (dict(GPU_TAINT),),
            {**capacity, **gpu},
            {**allocatable, **gpu},
        ),
    ]


def is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


def runs_here(pod: Obj, node_names: Iterable[str] = NODE_NAMES) -> bool:
    """Whether ``pod`` is bound (by the scheduler) to one of the agent's nodes."""
    return (pod.get("spec") or {}).get("nodeName") in set(node_names)


# --------------------------------------------------------------------------- environment


class ContainerConfigError(Exception):
    """The container cannot start (the kubelet's CreateContainerConfigError)."""


#: (kind, namespace, name) -> decoded data, or None when the object does not exist.
Lookup = Callable[[str, str, str], "Mapping[str, str] | None"]

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined vars are replaced, ``$$`` escapes, others stay."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR_REF.sub(sub, text)


def _field_ref(path: str, pod: Obj, node_name: str) -> str:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName") or node_name,
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path])
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise ContainerConfigError(f"unsupported fieldRef {path!r}")


def _key_ref(kind: str, ref: Obj, namespace: str, lookup: Lookup) -> str | None:
    data = lookup(kind, namespace, ref.get("name", ""))
    optional = bool(ref.get("optional"))
    if data is None:
        if optional:
            return None
        raise ContainerConfigError(f'{kind} "{ref.get("name")}" not found')
    if ref.get("key") not in data:
        if optional:
            return None
        raise ContainerConfigError(
            f"couldn't find key {ref.get('key')} in {kind} {namespace}/{ref.get('name')}"
        )
    return data[ref["key"]]


def resolve_env(container: Obj, pod: Obj, lookup: Lookup, node_name: str = "") -> dict[str, str]:
    """The environment of ``container``: envFrom, then env (later wins), ``$(VAR)`` expanded."""
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = source.get(key)
            if ref is None:
                continue
            data = lookup(kind, namespace, ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'{kind} "{ref.get("name")}" not found')
            env.update({prefix + k: v for k, v in data.items()})
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(str(var.get("value", "")), env)
            continue
        src = var["valueFrom"]
        value: str | None
        if "secretKeyRef" in src:
            value = _key_ref("secret", src["secretKeyRef"], namespace, lookup)
        elif "configMapKeyRef" in src:
            value = _key_ref("configmap", src["configMapKeyRef"], namespace, lookup)
        elif "fieldRef" in src:
            value = _field_ref(src["fieldRef"].get("fieldPath", ""), pod, node_name)
        else:
            raise ContainerConfigError(f"unsupported valueFrom for {name}: {sorted(src)}")
        if value is not None:
            env[name] = value
    return env


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageEntry:
    """How the agent runs one family of images as local processes."""

    pattern: str
    entrypoint: tuple[str, ...] = ()
    path: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


def load_image_table(doc: Obj, placeholders: Mapping[str, str]) -> list[ImageEntry]:
    """Entries of images.yaml with ``{placeholders}`` and ``$ENV`` references filled in."""

    def fill(s: str) -> str:
        return os.path.expandvars(str(s).format(**placeholders))

    return [
        ImageEntry(
            pattern=e["pattern"],
            entrypoint=tuple(str(a) for a in e.get("entrypoint") or ()),
            path=tuple(fill(p) for p in e.get("path") or ()),
            env={k: fill(v) for k, v in (e.get("env") or {}).items()},
        )
        for e in doc.get("images") or []
    ]


def match_image(image: str, table: Sequence[ImageEntry]) -> ImageEntry | None:
    """The first entry whose pattern matches ``image`` (shell-style), or None."""
    return next((e for e in table if fnmatch.fnmatchcase(image, e.pattern)), None)


def container_argv(container: Obj, entry: ImageEntry, env: Mapping[str, str]) -> list[str]:
    """command+args, ``$(VAR)`` expanded; the image entrypoint stands in for a missing command."""
    command = list(container.get("command") or entry.entrypoint)
    argv = [expand(str(a), env) for a in command + list(container.get("args") or [])]
    if not argv:
        raise ContainerConfigError(
            f"no command given and image {container.get('image')!r} has no entrypoint"
        )
    return argv


# --------------------------------------------------------------------------- image mode


@dataclass(frozen=True)
class ImageConfig:
    """What a built image says about running it (its OCI config)."""

    image_id: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = ""
    env: Mapping[str, str] = field(default_factory=dict)


def image_config(image_id: str, oci_config: Obj) -> ImageConfig:
    """The parts of an OCI image config (``buildah inspect``'s ``OCIv1.config``) the agent uses."""
    env = {}
    for item in oci_config.get("Env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    return ImageConfig(
        image_id=image_id,
        entrypoint=tuple(str(a) for a in oci_config.get("Entrypoint") or ()),
        cmd=tuple(str(a) for a in oci_config.get("Cmd") or ()),
        user=str(oci_config.get("User") or ""),
        working_dir=str(oci_config.get("WorkingDir") or ""),
        env=env,
    )


def image_argv(container: Obj, image: ImageConfig, env: Mapping[str, str]) -> list[str]:
    """Kubernetes' rule: ``command`` replaces ENTRYPOINT, ``args`` CMD; ``$(VAR)`` expanded."""
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    if command:
        argv = command + args
    else:
        argv = list(image.entrypoint) + (args or list(image.cmd))
    if not argv:
        raise ContainerConfigError(
            f"no command given and image {container.get('image')!r} has no entrypoint or cmd"
        )
    return [expand(str(a), env) for a in argv]


def run_user(container: Obj, pod_spec: Obj, image: ImageConfig) -> str:
    """``uid[:gid]`` the container runs as: its securityContext, the pod's, else the image's."""
    for ctx in (container.get("securityContext") or {}, pod_spec.get("securityContext") or {}):
        uid = ctx.get("runAsUser")
        if uid is not None:
            gid = ctx.get("runAsGroup", uid)
            return f"{int(uid)}:{int(gid)}"
    return image.user or "0:0"


# --------------------------------------------------------------------------- status


@dataclass
class ContainerState:
    """What the agent knows of one container; rendered into a containerStatus."""

    name: str
    image: str
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str = ""
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    restart_count: int = 0
    image_id: str = ""
    """Image mode: the built image's id (``sha256:…``); empty for a local process."""


def should_restart(restart_policy: str, exit_code: int) -> bool:
    return restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)


def pod_phase(
    restart_policy: str, init: Sequence[ContainerState], main: Sequence[ContainerState]
) -> str:
    """The pod phase the kubelet would report for these container states."""
    if any(
        c.state == "terminated"
        and c.exit_code not in (0, None)
        and not should_restart(restart_policy, c.exit_code or 0)
        for c in init
    ):
        return "Failed"
    if any(
        c.state == "waiting"
        and c.reason in ("ErrImagePull", "CreateContainerConfigError")
        and restart_policy == "Never"
        for c in [*init, *main]
    ):
        return "Failed"
    if main and all(c.state == "terminated" for c in main):
        if restart_policy == "Always":
            return "Running"  # restarted after a back-off; such a pod ends only by deletion
        if all(c.exit_code == 0 for c in main):
            return "Succeeded"
        if restart_policy == "Never" or all(
            c.exit_code == 0 or not should_restart(restart_policy, c.exit_code or 0) for c in main
        ):
            return "Failed"
    if any(c.state in ("running", "terminated") for c in main):
        return "Running"
    return "Pending"


def _container_status(c: ContainerState) -> dict[str, Any]:
    state: dict[str, Any]
    if c.state == "running":
        state = {"running": {"startedAt": c.started_at}}
    elif c.state == "terminated":
        state = {
            "terminated": {
                "exitCode": c.exit_code,
                "reason": c.reason,
                "message": c.message or None,
                "startedAt": c.started_at,
                "finishedAt": c.finished_at,
            }
        }
        state["terminated"] = {k: v for k, v in state["terminated"].items() if v is not None}
    else:
        state = {"waiting": {"reason": c.reason, **({"message": c.message} if c.message else {})}}
    return {
        "name": c.name,
        "image": c.image,
        "imageID": f"buildah://sha256:{c.image_id}" if c.image_id else f"aumos-local://{c.image}",
        "ready": c.state == "running",
        "started": c.state == "running",
        "restartCount": c.restart_count,
        "state": state,
        **({"containerID": f"aumos-local://{c.name}"} if c.state != "waiting" else {}),
    }


def render_status(
    restart_policy: str,
    init: Sequence[ContainerState],
    main: Sequence[ContainerState],
    *,
    start_time: str,
    now: str,
) -> dict[str, Any]:
    """The full pod ``status`` written through the status subresource (a merge patch)."""
    phase = pod_phase(restart_policy, init, main)
    initialized = all(c.state == "terminated" and c.exit_code == 0 for c in init)
    ready = phase == "Running" and all(c.state == "running" for c in main)

    def cond(kind: str, ok: bool, reason: str | None = None) -> dict[str, Any]:
        out = {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": now}
        if not ok and reason:
            out["reason"] = reason
        return out

    done_reason = "PodCompleted" if phase in TERMINAL_PHASES else "ContainersNotReady"
    return {
        "phase": phase,
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}],
        "startTime": start_time,
        "conditions": [
            cond("PodScheduled", True),
            cond("Initialized", initialized, "ContainersNotInitialized"),
            cond("ContainersReady", ready, done_reason),
            cond("Ready", ready, done_reason),
        ],
        "initContainerStatuses": [_container_status(c) for c in init],
        "containerStatuses": [_container_status(c) for c in main],
    }


def termination_message(written: str, log_tail: str, *, policy: str, exit_code: int) -> str:
    """state.terminated.message: the file, else (FallbackToLogsOnError) the log tail."""
    if written:
        return written[-4096:]
    if policy == "FallbackToLogsOnError" and exit_code != 0:
        lines = log_tail.splitlines()[-80:]
        return "\n".join(lines)[-2048:]
    return ""
