"""Pure decisions: (a SynthesisJob, its stage Jobs, what was resolved, now) → actions + status.

Nothing here does I/O or reads a clock: :func:`decide` takes an :class:`Observation` and
returns a :class:`Decision` (actions to carry out, then one status merge patch, then events to
post). :mod:`tabular_operator.controller` observes, calls it and acts, and calls it again
until it asks for nothing more. Every action is idempotent (deterministic child names,
create-if-absent, a ledger keyed by the job uid), so a decision carried out twice — the
operator killed between an action and the status patch — changes nothing the second time.

The lifecycle (DESIGN §3)::

    (no status) → QUEUED → TRAINING → GENERATING → VALIDATING → COMPLETE
                     └───────────┴───────────┴────────────┴────→ FAILED

``fromModel`` jobs skip TRAINING; an ``auto`` train stage that hands off to another engine
adds a second train step (``<job>-train-<engine>``) in that engine's image. The phase never
moves backwards (:func:`advance`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from tabular_operator import conditions as cond
from tabular_runner.spec import DP_GENERATORS, GeneratorType, Phase

TERMINAL = frozenset({Phase.COMPLETE, Phase.FAILED})
ORDER = {
    Phase.QUEUED: 0,
    Phase.TRAINING: 1,
    Phase.GENERATING: 2,
    Phase.VALIDATING: 3,
    Phase.COMPLETE: 4,
    Phase.FAILED: 5,
}
STAGE_PHASE = {"train": Phase.TRAINING, "generate": Phase.GENERATING, "validate": Phase.VALIDATING}
INVALID_INPUT = "InvalidInput"
"""Reason of a job whose runner refused its input (exit 2: missing source, unknown column)."""

USER_INPUT_EXIT = 2
GATE_EXIT = 3


def advance(current: Phase | None, new: Phase) -> Phase:
    """``new`` unless it would move the phase backwards (then ``current``)."""
    if current is None or current in TERMINAL:
        return new if current is None else current
    return new if ORDER[new] >= ORDER[current] else current


def _stamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------
# What is observed


@dataclass(frozen=True)
class Step:
    """One stage Job of the plan: ``suffix`` names it (``<job>-<suffix>``)."""

    stage: str
    suffix: str
    generator: str | None = None
    """Generator override for the builder (handoff target, or what ``auto`` chose)."""


@dataclass(frozen=True)
class StageRun:
    """A stage Job as observed (with its pods)."""

    suffix: str
    name: str
    active: int = 0
    succeeded: bool = False
    failed: bool = False
    failure_reason: str = ""
    failure_message: str = ""
    suspended: bool = False
    pod_started: bool = False
    """Some pod of this Job ran (or is running) its container: data may have been read."""
    pod_failures: int = 0
    exit_code: int | None = None
    result: Mapping[str, Any] | None = None
    """The stage's JSON result (termination message, or the store's copy)."""
    config_error: str = ""
    """A pod cannot start for a reason waiting will not fix (a missing Secret or key)."""
    unschedulable: str = ""
    """The scheduler's message while a pod waits for a node (capacity, taints, GPUs)."""


@dataclass(frozen=True)
class Resolved:
    """The job as it will run, fixed at start: profile folded in, references resolved."""

    spec: Mapping[str, Any]
    """The resolved ``SynthesisJobSpec`` in wire form."""
    generator: str
    profile: Mapping[str, Any] | None = None
    """``{"name", "generation"}`` of the profile folded in."""
    schema: Mapping[str, Any] | None = None
    """The MultiTableSchema (wire form) of a multi-table job."""

    def to_status(self) -> dict[str, Any]:
        """The ``status.snapshot`` form."""
        out: dict[str, Any] = {"spec": dict(self.spec), "generator": self.generator}
        if self.profile is not None:
            out["profile"] = dict(self.profile)
        if self.schema is not None:
            out["schema"] = dict(self.schema)
        return out


@dataclass(frozen=True)
class Unresolvable:
    """The job cannot start: a missing profile, schema or model, or an invalid combination."""

    reason: str
    message: str


@dataclass(frozen=True)
class Observation:
    """Everything :func:`decide` looks at."""

    generation: int
    suspend: bool
    status: Mapping[str, Any]
    runs: Mapping[str, StageRun]
    now: datetime
    resolution: Resolved | Unresolvable | None = None
    """Needed only while ``status.snapshot`` is absent."""
    progress: Mapping[str, Any] | None = None
    """The running stage's ``stages/progress.json`` from the artifact store."""


# ---------------------------------------------------------------------------------------
# What to do


@dataclass(frozen=True)
class Allocate:
    """Reserve the job's ε/δ in the ledger (idempotent on the job uid)."""

    epsilon: float
    delta: float
    dataset: str | None


@dataclass(frozen=True)
class CreateStage:
    """Create the stage Job of ``step`` if absent."""

    step: Step


@dataclass(frozen=True)
class SuspendStage:
    """Set ``spec.suspend`` of a stage Job."""

    suffix: str
    suspend: bool


@dataclass(frozen=True)
class Consume:
    """Charge ``epsilon`` (≤ the allocation) to the ledger, exactly once per allocation."""

    allocation_id: str
    epsilon: float


@dataclass(frozen=True)
class Release:
    """Return an allocation no training pod ever used."""

    allocation_id: str


@dataclass(frozen=True)
class Emit:
    """A Kubernetes Event on the job (and a lifecycle record for the mirrors)."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class DeleteStage:
    """Delete a stage Job whose pods can never start (so nothing waits on it forever)."""

    suffix: str


@dataclass(frozen=True)
class PublishDownloads:
    """Write the Secret ``<job>-download`` with presigned URLs of the job's outputs."""


Action = Allocate | CreateStage | SuspendStage | Consume | Release | DeleteStage | PublishDownloads


@dataclass
class Decision:
    """Actions to carry out in order, then the status merge patch, then the events."""

    actions: list[Action] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Emit] = field(default_factory=list)
    phase: Phase | None = None
    """The phase after this decision, when it changed."""

    @property
    def idle(self) -> bool:
        """Nothing to do and nothing to write."""
        return not (self.actions or self.status or self.events)


# ---------------------------------------------------------------------------------------
# Helpers over the status


def current_phase(status: Mapping[str, Any]) -> Phase | None:
    """The recorded phase, if any."""
    value = status.get("phase")
    return Phase(value) if value else None


def is_dp(spec: Mapping[str, Any]) -> bool:
    """Whether the resolved job spends ε (a DP generator, or privacy set on an optional one)."""
    generator = (spec.get("generator") or {}).get("type")
    if spec.get("fromModel"):
        return False  # re-sampling a DP model is post-processing: no new ε
    return generator in {g.value for g in DP_GENERATORS} or bool(spec.get("privacy"))


def plan(snapshot: Mapping[str, Any], status: Mapping[str, Any]) -> list[Step]:
    """The stage Jobs of this job, in order (depends on a recorded handoff)."""
    spec = snapshot["spec"]
    chosen = status.get("generator") or snapshot.get("generator")
    later = str(chosen) if chosen and chosen != GeneratorType.AUTO.value else None
    if spec.get("fromModel"):
        return [Step("generate", "generate", later), Step("validate", "validate", later)]
    steps = [Step("train", "train")]
    handoff = status.get("handoff")
    if handoff:
        steps.append(Step("train", f"train-{handoff}", later))
    steps += [Step("generate", "generate", later), Step("validate", "validate", later)]
    return steps


def _base(obs: Observation) -> dict[str, Any]:
    return {"observedGeneration": obs.generation}


def failed(
    obs: Observation, reason: str, message: str, extra: Mapping[str, Any] | None = None
) -> Decision:
    """The decision that fails the job now (terminal; the reason goes to ``Stalled``)."""
    phase = current_phase(obs.status)
    patch = _base(obs) | dict(extra or {})
    patch |= {
        "phase": Phase.FAILED.value,
        "finishedAt": _stamp(obs.now),
        "errorMessage": message,
        "message": message,
        "conditions": cond.job_conditions(
            list(obs.status.get("conditions", [])),
            Phase.FAILED,
            generation=obs.generation,
            now=obs.now,
            reason=reason,
            message=message,
        ),
    }
    if obs.status.get("stage") and phase is not None:
        patch["stage"] = obs.status["stage"]
    return Decision(status=patch, events=[Emit("Warning", reason, message)], phase=Phase.FAILED)


def waiting(obs: Observation, reason: str, message: str) -> Decision:
    """The job stays in its phase and says what it waits for (retried; never failed for it).

    For outages of what the operator depends on (the privacy ledger's database or engine):
    ``Ready=False`` and ``Reconciling=True`` carry ``reason``; ``Stalled`` stays False.
    """
    phase = current_phase(obs.status) or Phase.QUEUED
    conditions = cond.job_conditions(
        list(obs.status.get("conditions", [])),
        phase,
        generation=obs.generation,
        now=obs.now,
        message=message,
    )
    conditions = cond.set_condition(
        conditions, cond.READY, False, reason, message, generation=obs.generation, now=obs.now
    )
    conditions = cond.set_condition(
        conditions, cond.RECONCILING, True, reason, message, generation=obs.generation, now=obs.now
    )
    patch = _base(obs) | {"phase": phase.value, "message": message, "conditions": conditions}
    return _only_changes(obs, Decision(status=patch))


def allocated_status(
    obs: Observation, allocation_id: str, epsilon: float, delta: float
) -> dict[str, Any]:
    """Status patch recording a fresh allocation (written before the train Job exists)."""
    return _base(obs) | {
        "allocationId": allocation_id,
        "budget": {
            "allocationId": allocation_id,
            "epsilon": epsilon,
            "delta": delta,
            "state": "allocated",
        },
    }


def settle(status: Mapping[str, Any], runs: Mapping[str, StageRun]) -> Consume | Release | None:
    """How to settle an open allocation of a job that will not finish normally.

    A training pod that ever ran may have read the data: its whole allocation is charged.
    An allocation no training pod touched is released.
    """
    budget = status.get("budget") or {}
    if budget.get("state") != "allocated":
        return None
    allocation = str(budget["allocationId"])
    started = budget.get("trainPodStarted") or any(
        r.pod_started for s, r in runs.items() if s.startswith("train")
    )
    if started:
        return Consume(allocation, float(budget["epsilon"]))
    return Release(allocation)


def _settled(action: Consume | Release | None) -> dict[str, Any]:
    if action is None:
        return {}
    if isinstance(action, Consume):
        return {"state": "consumed", "consumed": action.epsilon}
    return {"state": "released"}


# ---------------------------------------------------------------------------------------
# Results → status


def _round(value: Any, digits: int = 4) -> Any:
    return round(float(value), digits) if isinstance(value, int | float) else value


def result_fields(step: Step, result: Mapping[str, Any]) -> dict[str, Any]:
    """Status fields a successful stage result sets."""
    out: dict[str, Any] = {}
    if step.stage == "train":
        if result.get("generator"):
            out["generator"] = str(result["generator"])
        if result.get("handoff"):
            out["handoff"] = str(result["handoff"])
        if "trainingTimeS" in result:
            out["trainingTimeS"] = _round(result["trainingTimeS"], 3)
        if "epsilonSpent" in result:
            out["epsilonSpent"] = _round(result["epsilonSpent"], 6)
    elif step.stage == "generate":
        if "rowsGenerated" in result:
            out["rowsGenerated"] = int(result["rowsGenerated"])
        if "generationTimeS" in result:
            out["generationTimeS"] = _round(result["generationTimeS"], 3)
        if result.get("outputUri"):
            out["output"] = {"uri": str(result["outputUri"])}
            if result.get("outputFormat"):
                out["output"]["format"] = str(result["outputFormat"])
    else:
        for key in ("fidelityScore", "privacyScore", "privacyRisk", "diagnosticScore"):
            if result.get(key) is not None:
                out[key] = _round(result[key])
        if result.get("reportUri"):
            out["reportUri"] = str(result["reportUri"])
    return out


def _failure(step: Step, run: StageRun) -> tuple[str, str]:
    if run.config_error:
        return cond.INVALID_SPEC, (
            f"{step.stage} cannot start: {run.config_error} — check spec.source.secretRef "
            "(a Secret in this namespace with accessKey and secretKey)"
        )
    error = str((run.result or {}).get("error") or "").strip()
    if run.exit_code == GATE_EXIT:
        return cond.GATE_FAILED, error or "the quality gate refused the synthetic data"
    if run.exit_code == USER_INPUT_EXIT:
        return INVALID_INPUT, f"{step.stage} refused its input: {error or run.failure_message}"
    if run.failure_reason == "DeadlineExceeded":
        return cond.DEADLINE_EXCEEDED, (
            f"{step.stage} ran past its deadline (activeDeadlineSeconds) and was stopped"
        )
    detail = error or run.failure_message or run.failure_reason or "no message"
    attempts = f" after {run.pod_failures} attempt(s)" if run.pod_failures else ""
    return cond.STAGE_FAILED, f"{step.stage} failed{attempts}: {detail}"


# ---------------------------------------------------------------------------------------
# The decision


def decide(obs: Observation) -> Decision:
    """What to do next for one SynthesisJob."""
    status = obs.status
    phase = current_phase(status)
    if phase in TERMINAL:
        return Decision()
    snapshot = status.get("snapshot")
    if snapshot is None:
        return _start(obs)
    spec = snapshot["spec"]
    completed = list(status.get("completed", []))
    patch: dict[str, Any] = {}
    actions: list[Action] = []
    events: list[Emit] = []
    steps = plan(snapshot, status)
    i = 0
    while i < len(steps):
        step = steps[i]
        i += 1
        if step.suffix in completed:
            continue
        run = obs.runs.get(step.suffix)
        if run is None:
            return _create(obs, step, spec, patch, actions, events)
        if run.failed:
            return _fail_stage(obs, step, run, patch)
        if run.config_error and not run.succeeded:
            # Waiting will not create a missing Secret: fail now, and remove the Job so that
            # nothing keeps retrying its pod.
            decision = _fail_stage(obs, step, replace(run, failed=True), patch)
            decision.actions.insert(0, DeleteStage(step.suffix))
            return decision
        if run.succeeded and run.result is not None:
            fields = result_fields(step, run.result)
            patch |= fields
            completed.append(step.suffix)
            patch["completed"] = completed
            if step.stage == "train" and not fields.get("handoff"):
                budget = status.get("budget") or {}
                if budget.get("state") == "allocated":
                    spent = float(run.result.get("epsilonSpent", budget["epsilon"]))
                    spent = min(spent, float(budget["epsilon"]))
                    actions.append(Consume(str(budget["allocationId"]), spent))
                    patch["budget"] = dict(budget) | {"state": "consumed", "consumed": spent}
            if fields.get("handoff"):
                events.append(
                    Emit(
                        "Normal",
                        "HandedOff",
                        f"auto chose {fields.get('generator')}; training continues in the "
                        f"{fields['handoff']} engine",
                    )
                )
                steps = plan(snapshot, dict(status) | patch)
            continue
        return _running(obs, step, run, patch, actions, events)
    return _complete(obs, patch, actions, events)


def _start(obs: Observation) -> Decision:
    res = obs.resolution
    if res is None:
        return Decision()  # the controller resolves first
    if isinstance(res, Unresolvable):
        return failed(obs, res.reason, res.message)
    phase = advance(current_phase(obs.status), Phase.QUEUED)
    message = "queued: waiting for its first stage"
    patch = _base(obs) | {
        "phase": phase.value,
        "snapshot": res.to_status(),
        "generator": res.generator,
        "message": message,
        "conditions": cond.job_conditions(
            list(obs.status.get("conditions", [])),
            phase,
            generation=obs.generation,
            now=obs.now,
            message=message,
        ),
    }
    events = [Emit("Normal", "Queued", f"generator {res.generator}")]
    if res.profile is not None:
        events.append(
            Emit(
                "Normal",
                "ProfileResolved",
                f"GenerationProfile {res.profile['name']} (generation "
                f"{res.profile['generation']}) snapshotted; later edits do not change this job",
            )
        )
    return Decision(status=patch, events=events, phase=phase)


def _with_phase(
    obs: Observation, patch: dict[str, Any], phase: Phase, message: str, *, suspended: bool = False
) -> tuple[dict[str, Any], Phase | None]:
    current = current_phase(obs.status)
    new = advance(current, phase)
    patch = _base(obs) | patch | {"phase": new.value, "message": message}
    patch["conditions"] = cond.job_conditions(
        list(obs.status.get("conditions", [])),
        new,
        generation=obs.generation,
        now=obs.now,
        message=message,
        suspended=suspended,
    )
    return patch, (new if new is not current else None)


def _create(
    obs: Observation,
    step: Step,
    spec: Mapping[str, Any],
    patch: dict[str, Any],
    actions: list[Action],
    events: list[Emit],
) -> Decision:
    if obs.suspend:
        message = f"suspended before {step.stage}"
        new_patch, changed = _with_phase(obs, patch, _phase_or_queued(obs), message, suspended=True)
        new_patch["stage"] = obs.status.get("stage") or step.stage
        return _only_changes(obs, Decision(actions, new_patch, events, changed))
    budget = (obs.status.get("budget") or {}) | (patch.get("budget") or {})
    if step.stage == "train" and is_dp(spec) and not budget.get("allocationId"):
        privacy = spec.get("privacy") or {}
        source = (spec.get("source") or {}).get("uri")
        return Decision(
            actions=[Allocate(float(privacy["epsilon"]), float(privacy.get("delta", 1e-6)), source)]
        )
    actions = [*actions, CreateStage(step)]
    phase = STAGE_PHASE[step.stage]
    message = f"{step.stage}: starting"
    patch = patch | {"stage": step.stage, "progress": 0.0}
    if not obs.status.get("startedAt"):
        patch["startedAt"] = _stamp(obs.now)
    new_patch, changed = _with_phase(obs, patch, phase, message)
    events = [*events, Emit("Normal", phase.value.capitalize(), f"stage Job {step.suffix} created")]
    return Decision(actions, new_patch, events, changed)


def _phase_or_queued(obs: Observation) -> Phase:
    return current_phase(obs.status) or Phase.QUEUED


def _fail_stage(obs: Observation, step: Step, run: StageRun, patch: dict[str, Any]) -> Decision:
    reason, message = _failure(step, run)
    extra = dict(patch)
    if reason == cond.GATE_FAILED and run.result is not None:
        extra |= result_fields(Step("validate", "validate"), run.result)
    decision = failed(obs, reason, message, extra)
    settle_action = settle(
        dict(obs.status) | ({"budget": patch["budget"]} if "budget" in patch else {}),
        obs.runs,
    )
    if settle_action is not None:
        budget = dict(obs.status.get("budget") or {}) | _settled(settle_action)
        decision.actions.append(settle_action)
        decision.status["budget"] = budget
    return decision


def _running(
    obs: Observation,
    step: Step,
    run: StageRun,
    patch: dict[str, Any],
    actions: list[Action],
    events: list[Emit],
) -> Decision:
    suspended_stages = list(obs.status.get("suspendedStages", []))
    if obs.suspend and not run.suspended:
        actions = [*actions, SuspendStage(step.suffix, True)]
        patch["suspendedStages"] = sorted(set(suspended_stages) | {step.suffix})
        events = [*events, Emit("Normal", cond.SUSPENDED, f"stage Job {run.name} suspended")]
    elif not obs.suspend and run.suspended and step.suffix in suspended_stages:
        actions = [*actions, SuspendStage(step.suffix, False)]
        patch["suspendedStages"] = [s for s in suspended_stages if s != step.suffix]
        events = [*events, Emit("Normal", "Resumed", f"stage Job {run.name} resumed")]
    budget = (obs.status.get("budget") or {}) | (patch.get("budget") or {})
    if run.pod_started and step.stage == "train" and budget.get("state") == "allocated":
        if not budget.get("trainPodStarted"):
            patch["budget"] = dict(budget) | {"trainPodStarted": True}
    if run.pod_failures > int(obs.status.get("retries", 0)):
        patch["retries"] = run.pod_failures
        events = [
            *events,
            Emit("Warning", "StageRetried", f"{run.name}: pod failed; retry {run.pod_failures}"),
        ]
    progress = obs.progress or {}
    message = f"{step.stage}: running"
    fraction = obs.status.get("progress")
    if progress.get("stage") == step.stage:
        total = float(progress.get("total") or 0)
        done = float(progress.get("done") or 0)
        if total > 0:
            fraction = round(min(max(done / total, 0.0), 1.0), 4)
        if progress.get("message"):
            message = f"{step.stage}: {progress['message']}"
    if run.unschedulable and not run.pod_started:
        message = f"{step.stage}: waiting for a node: {run.unschedulable}"[:300]
    if obs.suspend:
        message = f"{step.stage}: suspended"
    patch = patch | {"stage": step.stage}
    if fraction is not None:
        patch["progress"] = fraction
    new_patch, changed = _with_phase(
        obs, patch, STAGE_PHASE[step.stage], message, suspended=obs.suspend
    )
    return _only_changes(obs, Decision(actions, new_patch, events, changed))


def _complete(
    obs: Observation, patch: dict[str, Any], actions: list[Action], events: list[Emit]
) -> Decision:
    message = "complete"
    patch = patch | {"finishedAt": _stamp(obs.now), "progress": 1.0, "stage": "done"}
    new_patch, changed = _with_phase(obs, patch, Phase.COMPLETE, message)
    rows = new_patch.get("rowsGenerated", obs.status.get("rowsGenerated"))
    fidelity = new_patch.get("fidelityScore", obs.status.get("fidelityScore"))
    events = [*events, Emit("Normal", cond.COMPLETE, f"{rows} rows, fidelity {fidelity}")]
    return Decision([*actions, PublishDownloads()], new_patch, events, changed)


def _only_changes(obs: Observation, decision: Decision) -> Decision:
    """Drop status keys whose value is already recorded (a quiet job writes nothing)."""
    keep = {
        k: v
        for k, v in decision.status.items()
        if k != "observedGeneration" and obs.status.get(k) != v
    }
    if keep or decision.actions or decision.events:
        decision.status = (
            {"observedGeneration": obs.generation} | keep if keep or decision.actions else {}
        )
        if obs.status.get("observedGeneration") != obs.generation:
            decision.status["observedGeneration"] = obs.generation
    else:
        decision.status = (
            {"observedGeneration": obs.generation}
            if obs.status.get("observedGeneration") != obs.generation
            else {}
        )
    return decision
