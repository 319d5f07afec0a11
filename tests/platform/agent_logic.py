"""Pure decisions of the node agent: scheduling predicates, env resolution, image mapping, status.

Everything here takes plain dicts (the JSON of Kubernetes objects) and returns plain values,
so the rules table-test without a cluster (tests/unit/test_node_agent.py); the I/O lives in
:mod:`tests.platform.node_agent`. The rules follow the kube-scheduler and kubelet closely
enough for the project's pods; what they leave out is listed in docs/testing.md.
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


def _container_requests(c: Obj) -> dict[str, Decimal]:
    res = c.get("resources") or {}
    # The apiserver defaults requests from limits; do the same for objects built by hand.
    merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
    return {k: parse_quantity(v) for k, v in merged.items()}


def pod_requests(pod: Obj) -> dict[str, Decimal]:
    """Effective requests: the sum over containers, raised to the largest init container."""
    spec = pod.get("spec") or {}
    total: dict[str, Decimal] = {}
    for c in spec.get("containers") or []:
        for k, v in _container_requests(c).items():
            total[k] = total.get(k, Decimal(0)) + v
    for c in spec.get("initContainers") or []:
        for k, v in _container_requests(c).items():
            total[k] = max(total.get(k, Decimal(0)), v)
    return total


# --------------------------------------------------------------------------- scheduling

TERMINAL_PHASES = ("Succeeded", "Failed")


def is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


def wants_binding(pod: Obj, scheduler_name: str = "default-scheduler") -> bool:
    """True for a live, unbound, pending pod that the default scheduler should place."""
    spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
    return (
        not spec.get("nodeName")
        and not meta.get("deletionTimestamp")
        and not is_terminal(pod)
        and spec.get("schedulerName", "default-scheduler") == scheduler_name
        and not spec.get("schedulingGates")
    )


def tolerates(tolerations: Iterable[Obj], taint: Obj) -> bool:
    """Whether one of ``tolerations`` tolerates ``taint`` (the core/v1 matching rules)."""
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        op = t.get("operator", "Equal")
        if not t.get("key"):
            if op == "Exists":
                return True
            continue
        if t["key"] != taint.get("key"):
            continue
        if op == "Exists" or t.get("value", "") == taint.get("value", ""):
            return True
    return False


def _match_expression(expr: Obj, labels: Mapping[str, str]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator"), list(expr.get("values") or [])
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and key in labels and values:
        try:
            have, want = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def _node_affinity_ok(spec: Obj, labels: Mapping[str, str]) -> bool:
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    # Terms are ORed, expressions within a term ANDed.
    return any(
        all(_match_expression(e, labels) for e in (t.get("matchExpressions") or [])) for t in terms
    )


def unschedulable_reason(pod: Obj, node: Obj, bound: Sequence[Obj]) -> str | None:
    """Why ``pod`` cannot go to ``node`` given the pods ``bound`` to it, or None when it fits."""
    spec = pod.get("spec") or {}
    labels: Mapping[str, str] = (node.get("metadata") or {}).get("labels") or {}
    node_spec = node.get("spec") or {}
    if node_spec.get("unschedulable"):
        return "node is cordoned"
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return f"node didn't match Pod's node affinity/selector ({k}={v})"
    if not _node_affinity_ok(spec, labels):
        return "node didn't match Pod's node affinity/selector (nodeAffinity)"
    for taint in node_spec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(
            spec.get("tolerations") or [], taint
        ):
            return f"node had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"
    allocatable = {
        k: parse_quantity(v)
        for k, v in ((node.get("status") or {}).get("allocatable") or {}).items()
    }
    live = [p for p in bound if not is_terminal(p)]
    if "pods" in allocatable and len(live) + 1 > allocatable["pods"]:
        return "Too many pods"
    used: dict[str, Decimal] = {}
    for p in live:
        for k, v in pod_requests(p).items():
            used[k] = used.get(k, Decimal(0)) + v
    for k, want in sorted(pod_requests(pod).items()):
        if want <= 0:
            continue
        have = allocatable.get(k, Decimal(0)) - used.get(k, Decimal(0))
        if want > have:
            return f"Insufficient {k}"
    return None


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
        "imageID": f"aumos-local://{c.image}",
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
