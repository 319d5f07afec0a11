"""Pure builders of the stage Jobs a SynthesisJob runs as (DESIGN §3).

``build_stage_job(job, stage, settings) -> dict`` returns a ``batch/v1`` Job manifest and does
no I/O, so the operator's handlers can create it idempotently (deterministic name
``<job>-<stage>``, create-if-absent, 409 is success) and tests can table-check it.

What every stage Job carries, and why:

* an ownerReference to the SynthesisJob (``controller: true``), so deleting the job
  garbage-collects its stages;
* ``restartPolicy: Never`` with a ``podFailurePolicy`` that fails the Job at once on the
  runner's permanent exit codes (2 bad input, 3 gate failed) and retries anything else
  (OOM, preemption) within ``backoffLimit``;
* no Kubernetes credentials (``automountServiceAccountToken: false``) and the Pod Security
  Standard ``restricted`` security context;
* the job itself as ``AUMOS_JOB_JSON`` and S3 credentials only through ``secretKeyRef``:
  never a secret value in the manifest. Two identities, never mixed: the tenant store
  identity (``AUMOS_S3_*``, from the Secret the operator writes into the namespace) writes and
  reads artifacts; the job's own ``source.secretRef`` (``AUMOS_SOURCE_S3_*``) reads only its
  sources, so a source identity needs no access to the tenant bucket and the store identity
  none to the source bucket;
* the result channel: the container's termination message at ``/dev/termination-log``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tabular_runner.engines import image_for_stage
from tabular_runner.errors import PERMANENT_EXIT_CODES
from tabular_runner.spec import API_VERSION, GeneratorType, SynthesisJob

STAGES = ("train", "generate", "validate")
CONTAINER = "runner"
TERMINATION_LOG = "/dev/termination-log"
JOB_LABEL = "tabular.aumos.io/job"
STAGE_LABEL = "tabular.aumos.io/stage"
STEP_LABEL = "tabular.aumos.io/step"
UID_LABEL = "tabular.aumos.io/job-uid"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


@dataclass(frozen=True)
class StageSettings:
    """Operator configuration that shapes every stage Job (from the chart's values)."""

    images: Mapping[str, str]
    """Engine name → runner image (``core`` always; ``argn`` for TabularARGN)."""
    service_account: str
    pull_policy: str = "IfNotPresent"
    ttl_seconds_after_finished: int = 86400
    active_deadline_seconds: int = 86400
    backoff_limit: int = 2
    s3_endpoint: str | None = None
    s3_region: str | None = None
    """Signed into every S3 request of a stage (the runner's default is ``us-east-1``)."""
    s3_secret_name: str | None = None
    """Secret in the job's namespace with ``accessKey``/``secretKey`` for the artifact store
    (the operator writes it there): ``AUMOS_S3_ACCESS_KEY``/``SECRET_KEY`` of every stage."""
    bucket_template: str = "aumos-tab-{tenant}"
    """``{tenant}`` (the namespace; ``{namespace}`` is accepted too) names the tenant's bucket."""
    default_cpu: str | None = None
    """CPU request/limit of a stage whose job sets none (so a burst of jobs queues)."""
    default_memory: str | None = None
    extra_labels: Mapping[str, str] = field(default_factory=dict)


NAME_LIMIT = 63


def stage_job_name(job_name: str, suffix: str) -> str:
    """Deterministic child name ``<job>-<suffix>``, at most 63 characters.

    ``suffix`` is a stage (``train``, ``generate``, ``validate``) or a handoff step
    (``train-argn``). A name that would be too long keeps its head and gets a short hash of
    the whole job name, so two long job names never share a child.
    """
    stage = suffix.split("-", 1)[0]
    if stage not in STAGES:
        raise ValueError(f"unknown stage {suffix!r}")
    return child_name(job_name, suffix, NAME_LIMIT)


def child_name(parent: str, suffix: str, limit: int) -> str:
    """``<parent>-<suffix>`` within ``limit`` characters (a hash of ``parent`` when cut)."""
    name = f"{parent}-{suffix}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(parent.encode()).hexdigest()[:8]
    head = parent[: limit - len(suffix) - len(digest) - 2].rstrip("-.")
    return f"{head}-{digest}-{suffix}"


def tenant_bucket(namespace: str, template: str) -> str:
    """The tenant's bucket: ``template`` with ``{tenant}`` (or ``{namespace}``) filled in."""
    return template.format(tenant=namespace, namespace=namespace)


def store_uri(namespace: str, uid: str, template: str) -> str:
    """``s3://<tenant bucket>/tab-jobs/<job uid>``: where one job's artifacts live."""
    return f"s3://{tenant_bucket(namespace, template)}/tab-jobs/{uid}"


def artifact_store_uri(job: SynthesisJob, settings: StageSettings) -> str:
    """Where a job's artifacts live: ``s3://<tenant bucket>/tab-jobs/<job uid>``."""
    namespace, uid = _identity(job)
    return store_uri(namespace, uid, settings.bucket_template)


def _identity(job: SynthesisJob) -> tuple[str, str]:
    if not job.metadata.namespace or not job.metadata.uid:
        raise ValueError("a stage Job needs the SynthesisJob's namespace and uid")
    return job.metadata.namespace, job.metadata.uid


def _quantities(stage_resources: Any, settings: StageSettings) -> dict[str, Any]:
    amounts: dict[str, str] = {}
    cpu = stage_resources.cpu or settings.default_cpu
    memory = stage_resources.memory or settings.default_memory
    if cpu:
        amounts["cpu"] = cpu
    if memory:
        amounts["memory"] = memory
    if stage_resources.gpu:
        amounts["nvidia.com/gpu"] = str(stage_resources.gpu)
    # Requests equal limits: stage pods get a predictable (Guaranteed when both set) QoS.
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def _env(
    job: SynthesisJob, settings: StageSettings, schema: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    wire = job.to_wire()
    wire.pop("status", None)
    env: list[dict[str, Any]] = [
        {"name": "AUMOS_JOB_JSON", "value": json.dumps(wire, separators=(",", ":"))},
        {"name": "AUMOS_TERMINATION_LOG", "value": TERMINATION_LOG},
    ]
    if schema is not None:
        env.append(
            {"name": "AUMOS_SCHEMA_JSON", "value": json.dumps(schema, separators=(",", ":"))}
        )
    if settings.s3_endpoint:
        env.append({"name": "AUMOS_S3_ENDPOINT", "value": settings.s3_endpoint})
    if settings.s3_region:
        env.append({"name": "AUMOS_S3_REGION", "value": settings.s3_region})
    for prefix, secret in (
        ("AUMOS_S3", settings.s3_secret_name),
        ("AUMOS_SOURCE_S3", source_secret(job, schema)),
    ):
        if secret:
            env += [
                {
                    "name": f"{prefix}_{name}",
                    "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
                }
                for name, key in (("ACCESS_KEY", "accessKey"), ("SECRET_KEY", "secretKey"))
            ]
    return env


def source_secret(job: SynthesisJob, schema: Mapping[str, Any] | None) -> str | None:
    """The Secret whose keys read the job's sources, if it names one.

    ``spec.source.secretRef`` of a single-table job; for a multi-table job the ``secretRef``
    of its schema's tables (wire form): the first one named, since one stage pod reads all
    tables with one identity (the runner refuses tables that name different Secrets).
    """
    source = job.spec.source
    if source is not None and source.secret_ref is not None:
        return source.secret_ref.name
    tables = ((schema or {}).get("spec") or {}).get("tables") or []
    for table in tables:
        name = ((table.get("source") or {}).get("secretRef") or {}).get("name")
        if name:
            return str(name)
    return None


def build_stage_job(
    job: SynthesisJob,
    stage: str,
    settings: StageSettings,
    *,
    generator: GeneratorType | str | None = None,
    suffix: str | None = None,
    schema: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the ``batch/v1`` Job that runs ``stage`` of ``job``.

    Args:
        job: The SynthesisJob as read from the API (``metadata.namespace`` and ``uid`` set;
            profile already resolved).
        stage: ``train``, ``generate`` or ``validate``.
        settings: Operator configuration.
        generator: The generator the train stage chose, for ``auto`` jobs whose later stages
            must run in that generator's engine; defaults to the spec's.
        suffix: The child's name suffix when it is not the stage (``train-argn``: the second
            train Job of an ``auto`` job that handed off to another engine).
        schema: The MultiTableSchema (wire form) of a multi-table job, as ``AUMOS_SCHEMA_JSON``.

    Raises:
        ValueError: on an unknown stage, a job without identity, or a missing engine image.
    """
    namespace, uid = _identity(job)
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    name = stage_job_name(job.metadata.name, suffix or stage)
    kind = generator or (job.spec.generator.type if job.spec.generator else GeneratorType.AUTO)
    image = image_for_stage(stage, kind, settings.images)
    resources = getattr(job.spec.resources, "validate_" if stage == "validate" else stage)
    labels = {
        "app.kubernetes.io/name": "aumos-tabular-runner",
        "app.kubernetes.io/component": stage,
        "app.kubernetes.io/managed-by": "aumos-tabular-operator",
        JOB_LABEL: job.metadata.name,
        UID_LABEL: uid,
        STAGE_LABEL: stage,
        STEP_LABEL: suffix or stage,
        **settings.extra_labels,
    }
    if job.spec.queue_name:
        labels[KUEUE_QUEUE_LABEL] = job.spec.queue_name
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": settings.pull_policy,
        "command": ["tabular-runner", "stage", stage],
        "args": [
            "--store",
            artifact_store_uri(job, settings),
            "--termination-log",
            TERMINATION_LOG,
        ],
        "env": _env(job, settings, schema),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    quantities = _quantities(resources, settings)
    if quantities:
        container["resources"] = quantities
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": settings.service_account,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if resources.node_selector:
        pod_spec["nodeSelector"] = dict(resources.node_selector)
    if resources.tolerations:
        pod_spec["tolerations"] = [t.to_wire() for t in resources.tolerations]
    if resources.priority_class_name:
        pod_spec["priorityClassName"] = resources.priority_class_name
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "SynthesisJob",
                    "name": job.metadata.name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "backoffLimit": settings.backoff_limit,
            "activeDeadlineSeconds": settings.active_deadline_seconds,
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            # Kueue admits a queued Job by un-suspending it.
            "suspend": bool(job.spec.queue_name) or job.spec.suspend,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": list(PERMANENT_EXIT_CODES),
                        },
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                ]
            },
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
