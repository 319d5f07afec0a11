"""Pure: stage Jobs and pods as the API returns them → :class:`~.reconcile.StageRun`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from tabular_operator.manifests import CONTAINER, STEP_LABEL
from tabular_operator.reconcile import StageRun

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def _condition(job: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in job.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            state = status.get("state", {}).get("terminated")
            return dict(state) if state else None
    return None


def _started(pod: Mapping[str, Any]) -> bool:
    """Whether the runner container ever ran in this pod."""
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status.get("name") != CONTAINER:
            continue
        state = status.get("state", {})
        last = status.get("lastState", {})
        if state.get("running") or state.get("terminated") or last.get("terminated"):
            return True
    return pod.get("status", {}).get("phase") in ("Running", "Succeeded")


CONFIG_ERRORS = ("CreateContainerConfigError", "InvalidImageName")
"""Container waiting reasons that never resolve by waiting (a missing Secret or key)."""


def _config_error(pod: Mapping[str, Any]) -> str:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        waiting = status.get("state", {}).get("waiting") or {}
        if waiting.get("reason") in CONFIG_ERRORS:
            return f"{waiting['reason']}: {waiting.get('message', '')}".strip()
    return ""


def _unschedulable(pod: Mapping[str, Any]) -> str:
    """The scheduler's reason a pod waits for a node (empty when it does not)."""
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return str(cond.get("message") or cond.get("reason") or "unschedulable")
    return ""


def parse_result(message: str | None) -> dict[str, Any] | None:
    """A stage's termination message as JSON (None if empty; ``error`` if not JSON)."""
    if not message:
        return None
    try:
        value = json.loads(message)
    except ValueError:
        return {"error": message.strip().splitlines()[-1][:500] if message.strip() else ""}
    return value if isinstance(value, dict) else None


def stage_runs(
    jobs: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> dict[str, StageRun]:
    """One :class:`StageRun` per stage Job, keyed by its step (``train``, ``train-argn``…)."""
    by_job: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        owner = pod.get("metadata", {}).get("labels", {}).get(JOB_NAME_LABEL)
        if owner:
            by_job.setdefault(owner, []).append(pod)
    runs: dict[str, StageRun] = {}
    for job in jobs:
        meta = job.get("metadata", {})
        if meta.get("deletionTimestamp"):
            continue
        name = meta["name"]
        step = meta.get("labels", {}).get(STEP_LABEL) or name.rsplit("-", 1)[-1]
        status = job.get("status", {})
        complete = _condition(job, "Complete")
        failed = _condition(job, "Failed")
        job_pods = sorted(
            by_job.get(name, []),
            key=lambda p: (_terminated(p) or {}).get("finishedAt") or "",
        )
        result: dict[str, Any] | None = None
        exit_code: int | None = None
        terminated = [t for t in (_terminated(p) for p in job_pods) if t]
        if complete:
            done = [t for t in terminated if t.get("exitCode") == 0]
            if done:
                result = parse_result(done[-1].get("message"))
                exit_code = 0
        elif failed and terminated:
            last = terminated[-1]
            exit_code = int(last.get("exitCode", 1))
            result = parse_result(last.get("message"))
        runs[step] = StageRun(
            suffix=step,
            name=name,
            active=int(status.get("active") or 0),
            succeeded=complete is not None,
            failed=failed is not None,
            failure_reason=str((failed or {}).get("reason", "")),
            failure_message=str((failed or {}).get("message", "")),
            suspended=bool(job.get("spec", {}).get("suspend")),
            pod_started=any(_started(p) for p in job_pods) or bool(status.get("succeeded")),
            pod_failures=int(status.get("failed") or 0),
            exit_code=exit_code,
            result=result,
            config_error=next((e for e in map(_config_error, job_pods) if e), ""),
            unschedulable=next((u for u in map(_unschedulable, job_pods) if u), ""),
        )
    return runs
