"""Table tests of the operator's pure decisions (tabular_operator.reconcile).

Nothing is mocked: ``decide`` is a pure function of an Observation; the clock is a fixed
datetime passed in. Each case states the observed world and what must (not) happen.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tabular_operator import conditions as cond
from tabular_operator.reconcile import (
    INVALID_INPUT,
    Allocate,
    Consume,
    CreateStage,
    DeleteStage,
    Observation,
    PublishDownloads,
    Release,
    Resolved,
    StageRun,
    SuspendStage,
    Unresolvable,
    advance,
    decide,
    plan,
    settle,
    waiting,
)
from tabular_runner.spec import Phase

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
GC_SPEC = {"source": {"uri": "s3://raw/adult.csv"}, "generator": {"type": "gaussian_copula"}}
DP_SPEC = {
    "source": {"uri": "s3://raw/adult.csv"},
    "generator": {"type": "aim"},
    "privacy": {"epsilon": 1.0, "delta": 1e-6},
}


def snap(spec: dict[str, Any], generator: str | None = None) -> dict[str, Any]:
    return {"spec": spec, "generator": generator or spec["generator"]["type"]}


def status(phase: Phase | None, spec: dict[str, Any] = GC_SPEC, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"snapshot": snap(spec), "generator": spec["generator"]["type"]}
    if phase is not None:
        out["phase"] = phase.value
    return out | extra


def obs(st: dict[str, Any], *runs: StageRun, **kw: Any) -> Observation:
    return Observation(
        generation=kw.pop("generation", 1),
        suspend=kw.pop("suspend", False),
        status=st,
        runs={r.suffix: r for r in runs},
        now=NOW,
        **kw,
    )


def ok(suffix: str, **result: Any) -> StageRun:
    return StageRun(suffix, f"job-{suffix}", succeeded=True, pod_started=True, result=result)


def running(suffix: str, **kw: Any) -> StageRun:
    return StageRun(suffix, f"job-{suffix}", active=1, pod_started=True, **kw)


def conds(decision_status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in decision_status["conditions"]}


def test_new_job_is_queued_with_a_snapshot() -> None:
    # Setup
    resolved = Resolved(
        spec=GC_SPEC, generator="gaussian_copula", profile={"name": "p", "generation": 3}
    )

    # Run
    d = decide(obs({}, resolution=resolved))

    # Assert
    assert d.phase is Phase.QUEUED and not d.actions
    assert d.status["snapshot"]["profile"] == {"name": "p", "generation": 3}
    assert d.status["generator"] == "gaussian_copula"
    assert d.status["observedGeneration"] == 1
    assert conds(d.status)[cond.READY] == ("False", "QUEUED")
    assert conds(d.status)[cond.RECONCILING] == ("True", "QUEUED")
    assert {e.reason for e in d.events} == {"Queued", "ProfileResolved"}


def test_unresolvable_job_fails_at_once_naming_the_field() -> None:
    message = "spec.profileRef.name: GenerationProfile 'x' not found in namespace 'a'"
    d = decide(obs({}, resolution=Unresolvable(cond.INVALID_SPEC, message)))
    assert d.phase is Phase.FAILED and not d.actions
    assert d.status["errorMessage"] == message
    assert conds(d.status)[cond.STALLED] == ("True", cond.INVALID_SPEC)
    assert conds(d.status)[cond.READY] == ("False", cond.FAILED)
    assert d.events[0].type == "Warning"


def test_queued_job_creates_its_train_job() -> None:
    d = decide(obs(status(Phase.QUEUED)))
    assert d.actions == [CreateStage(plan(snap(GC_SPEC), {})[0])]
    assert d.phase is Phase.TRAINING
    assert d.status["startedAt"] == "2026-12-01T12:00:00Z"
    assert d.status["stage"] == "train"


def test_dp_job_allocates_before_any_train_job() -> None:
    d = decide(obs(status(Phase.QUEUED, DP_SPEC)))
    assert d.actions == [Allocate(1.0, 1e-6, "s3://raw/adult.csv")]
    assert not d.status  # the allocation is recorded by the controller, then decide again


def test_dp_job_with_allocation_creates_the_train_job() -> None:
    budget = {"allocationId": "a1", "epsilon": 1.0, "delta": 1e-6, "state": "allocated"}
    d = decide(obs(status(Phase.QUEUED, DP_SPEC, budget=budget, allocationId="a1")))
    assert [type(a) for a in d.actions] == [CreateStage]


def test_train_success_consumes_what_was_spent_then_generates() -> None:
    budget = {"allocationId": "a1", "epsilon": 1.0, "delta": 1e-6, "state": "allocated"}
    st = status(Phase.TRAINING, DP_SPEC, budget=budget)
    d = decide(obs(st, ok("train", generator="aim", trainingTimeS=12.5, epsilonSpent=0.97)))
    assert d.actions[0] == Consume("a1", 0.97)
    assert isinstance(d.actions[1], CreateStage) and d.actions[1].step.suffix == "generate"
    assert d.status["budget"]["state"] == "consumed"
    assert d.status["epsilonSpent"] == 0.97 and d.status["trainingTimeS"] == 12.5
    assert d.status["completed"] == ["train"]
    assert d.phase is Phase.GENERATING


def test_consume_never_exceeds_the_allocation() -> None:
    budget = {"allocationId": "a1", "epsilon": 1.0, "delta": 1e-6, "state": "allocated"}
    st = status(Phase.TRAINING, DP_SPEC, budget=budget)
    d = decide(obs(st, ok("train", generator="aim", epsilonSpent=1.3)))
    assert d.actions[0] == Consume("a1", 1.0)


def test_consumed_allocation_is_not_consumed_again() -> None:
    budget = {"allocationId": "a1", "epsilon": 1.0, "state": "consumed", "consumed": 0.9}
    st = status(Phase.GENERATING, DP_SPEC, budget=budget, completed=["train"])
    d = decide(obs(st, ok("train", epsilonSpent=0.9), running("generate")))
    assert not any(isinstance(a, Consume) for a in d.actions)


def test_auto_handoff_adds_a_train_job_in_the_other_engine() -> None:
    spec = {"source": {"uri": "s3://raw/a.csv"}, "generator": {"type": "auto"}}
    st = status(Phase.TRAINING, spec)
    d = decide(obs(st, ok("train", handoff="argn", generator="tabularargn")))
    create = d.actions[-1]
    assert isinstance(create, CreateStage)
    assert create.step.suffix == "train-argn" and create.step.generator == "tabularargn"
    assert d.status["handoff"] == "argn" and d.status["generator"] == "tabularargn"
    assert "HandedOff" in {e.reason for e in d.events}


def test_after_handoff_generate_runs_with_the_chosen_generator() -> None:
    spec = {"source": {"uri": "s3://raw/a.csv"}, "generator": {"type": "auto"}}
    st = status(Phase.TRAINING, spec, handoff="argn", generator="tabularargn", completed=["train"])
    d = decide(obs(st, ok("train", handoff="argn"), ok("train-argn", generator="tabularargn")))
    create = d.actions[-1]
    assert isinstance(create, CreateStage)
    assert (create.step.suffix, create.step.generator) == ("generate", "tabularargn")


FAILURES = [
    # (label, run, reason, words in the message)
    (
        "bad-input",
        StageRun(
            "train",
            "j-train",
            failed=True,
            exit_code=2,
            result={"error": "spec.source.uri: not found"},
        ),
        INVALID_INPUT,
        "spec.source.uri: not found",
    ),
    (
        "deadline",
        StageRun("train", "j-train", failed=True, failure_reason="DeadlineExceeded"),
        cond.DEADLINE_EXCEEDED,
        "deadline",
    ),
    (
        "retries-exhausted",
        StageRun(
            "train",
            "j-train",
            failed=True,
            exit_code=4,
            pod_failures=3,
            failure_reason="BackoffLimitExceeded",
            result={"error": "engine crashed"},
        ),
        cond.STAGE_FAILED,
        "after 3 attempt(s): engine crashed",
    ),
]


@pytest.mark.parametrize(
    ("label", "run", "reason", "words"), FAILURES, ids=[f[0] for f in FAILURES]
)
def test_stage_failure_fails_the_job_with_its_reason(
    label: str, run: StageRun, reason: str, words: str
) -> None:
    d = decide(obs(status(Phase.TRAINING), run))
    assert d.phase is Phase.FAILED
    assert conds(d.status)[cond.STALLED] == ("True", reason)
    assert words in d.status["errorMessage"]
    assert d.status["finishedAt"] == "2026-12-01T12:00:00Z"


def test_gate_failure_keeps_its_scores() -> None:
    st = status(Phase.VALIDATING, completed=["train", "generate"])
    run = StageRun(
        "validate",
        "j-validate",
        failed=True,
        exit_code=3,
        pod_started=True,
        result={
            "error": "quality gate failed: fidelity 0.61 < 0.9",
            "fidelityScore": 0.6123,
            "privacyRisk": 0.01,
        },
    )
    d = decide(obs(st, run))
    assert conds(d.status)[cond.STALLED] == ("True", cond.GATE_FAILED)
    assert d.status["fidelityScore"] == 0.6123 and d.status["privacyRisk"] == 0.01
    assert "fidelity 0.61" in d.status["errorMessage"]


@pytest.mark.parametrize(
    ("started", "expected"),
    [(True, Consume("a1", 1.0)), (False, Release("a1"))],
    ids=["training-pod-ran-charges-all", "no-training-pod-releases"],
)
def test_failed_dp_job_settles_its_allocation(started: bool, expected: object) -> None:
    budget = {"allocationId": "a1", "epsilon": 1.0, "delta": 1e-6, "state": "allocated"}
    run = StageRun("train", "j-train", failed=True, exit_code=2, pod_started=started)
    d = decide(obs(status(Phase.TRAINING, DP_SPEC, budget=budget), run))
    assert d.actions == [expected]
    assert d.status["budget"]["state"] == ("consumed" if started else "released")


def test_progress_is_shown_as_a_fraction_and_a_message() -> None:
    st = status(Phase.TRAINING, stage="train")
    progress = {"stage": "train", "done": 3, "total": 10, "message": "epoch 3/10"}
    d = decide(obs(st, running("train"), progress=progress))
    assert d.status["progress"] == 0.3
    assert d.status["message"] == "train: epoch 3/10"
    assert not d.actions


def test_a_quiet_running_job_writes_nothing() -> None:
    base = status(Phase.TRAINING, stage="train")
    first = decide(obs(base, running("train")))
    assert first.status  # conditions and message are written once
    settled = base | first.status
    again = decide(obs(settled, running("train")))
    assert again.idle


def test_suspended_job_starts_no_new_stage() -> None:
    st = status(Phase.TRAINING, stage="train")
    d = decide(obs(st, ok("train", generator="gaussian_copula"), suspend=True))
    assert not any(isinstance(a, CreateStage) for a in d.actions)
    assert conds(d.status)[cond.RECONCILING] == ("True", cond.SUSPENDED)
    assert d.status["completed"] == ["train"]  # the finished stage's results are kept


def test_suspend_and_resume_a_running_stage() -> None:
    st = status(Phase.TRAINING, stage="train")
    paused = decide(obs(st, running("train"), suspend=True))
    assert paused.actions == [SuspendStage("train", True)]
    st2 = st | {"suspendedStages": ["train"]}
    resumed = decide(obs(st2, running("train", suspended=True)))
    assert resumed.actions == [SuspendStage("train", False)]


def test_all_stages_done_completes_the_job() -> None:
    st = status(Phase.VALIDATING, completed=["train", "generate"])
    d = decide(obs(st, ok("validate", fidelityScore=0.9012, privacyRisk=0.02, privacyScore=0.98)))
    assert d.phase is Phase.COMPLETE
    assert conds(d.status)[cond.READY] == ("True", cond.COMPLETE)
    assert conds(d.status)[cond.STALLED] == ("False", cond.COMPLETE)
    assert d.status["fidelityScore"] == 0.9012 and d.status["progress"] == 1.0
    assert d.actions == [PublishDownloads()]  # the URLs are written before the phase is


def test_a_failed_job_offers_no_downloads() -> None:
    st = status(Phase.VALIDATING, completed=["train", "generate"])
    run = StageRun("validate", "j-validate", failed=True, exit_code=3, pod_started=True)
    d = decide(obs(st, run))
    assert d.phase is Phase.FAILED
    assert not any(isinstance(a, PublishDownloads) for a in d.actions)


@pytest.mark.parametrize("phase", [Phase.COMPLETE, Phase.FAILED], ids=["complete", "failed"])
def test_a_finished_job_is_left_alone(phase: Phase) -> None:
    assert decide(obs(status(phase), running("train"))).idle


def test_from_model_job_skips_training_and_spends_nothing() -> None:
    spec = DP_SPEC | {"fromModel": {"uri": "s3://b/tab-jobs/u1"}}
    d = decide(obs(status(Phase.QUEUED, spec)))
    assert isinstance(d.actions[0], CreateStage)
    assert d.actions[0].step.suffix == "generate"
    assert d.phase is Phase.GENERATING


def test_observed_generation_follows_the_spec() -> None:
    d = decide(
        obs(
            status(Phase.TRAINING, stage="train", observedGeneration=1),
            running("train"),
            generation=2,
        )
    )
    assert d.status["observedGeneration"] == 2
    assert all(c["observedGeneration"] == 2 for c in d.status["conditions"])


@pytest.mark.parametrize(
    ("current", "new", "expected"),
    [
        (None, Phase.QUEUED, Phase.QUEUED),
        (Phase.GENERATING, Phase.TRAINING, Phase.GENERATING),
        (Phase.TRAINING, Phase.VALIDATING, Phase.VALIDATING),
        (Phase.COMPLETE, Phase.FAILED, Phase.COMPLETE),
        (Phase.FAILED, Phase.COMPLETE, Phase.FAILED),
    ],
)
def test_phase_never_moves_backwards(current: Phase | None, new: Phase, expected: Phase) -> None:
    assert advance(current, new) is expected


def test_settle_is_none_once_settled() -> None:
    assert settle({"budget": {"allocationId": "a", "epsilon": 1, "state": "consumed"}}, {}) is None
    assert settle({}, {}) is None


def test_a_pod_that_cannot_start_fails_the_job_and_releases_its_budget() -> None:
    budget = {"allocationId": "a1", "epsilon": 1.0, "delta": 1e-6, "state": "allocated"}
    run = StageRun(
        "train", "j-train", config_error='CreateContainerConfigError: secret "s3" not found'
    )
    d = decide(obs(status(Phase.TRAINING, DP_SPEC, budget=budget), run))
    assert d.phase is Phase.FAILED
    assert conds(d.status)[cond.STALLED] == ("True", cond.INVALID_SPEC)
    assert 'secret "s3" not found' in d.status["errorMessage"]
    assert "spec.source.secretRef" in d.status["errorMessage"]
    assert d.actions == [DeleteStage("train"), Release("a1")]


def test_a_job_created_suspended_says_so_after_it_is_queued() -> None:
    # Setup: the first decision queues it (a phase change), the next one must say "suspended"
    resolved = Resolved(spec=GC_SPEC, generator="gaussian_copula")
    first = decide(obs({}, resolution=resolved, suspend=True))
    assert first.phase is Phase.QUEUED

    # Run
    second = decide(obs(dict(first.status), suspend=True))

    # Assert
    assert not second.actions
    assert conds(second.status)[cond.RECONCILING] == ("True", cond.SUSPENDED)
    assert second.status["message"] == "suspended before train"


def test_a_stage_waiting_for_a_node_says_why() -> None:
    run = StageRun(
        "train", "j-train", active=1, unschedulable="0/2 nodes are available: 1 Insufficient cpu"
    )
    d = decide(obs(status(Phase.TRAINING, stage="train"), run))
    assert (
        d.status["message"]
        == "train: waiting for a node: 0/2 nodes are available: 1 Insufficient cpu"
    )
    assert not d.actions  # it waits: capacity may free up


def test_a_ledger_outage_keeps_the_job_waiting_not_failed() -> None:
    st = status(Phase.QUEUED, DP_SPEC)
    d = waiting(obs(st), cond.BUDGET_UNAVAILABLE, "waiting for the privacy ledger: down")
    assert d.phase is None and d.status.get("phase", "QUEUED") == "QUEUED"
    assert conds(d.status)[cond.READY] == ("False", cond.BUDGET_UNAVAILABLE)
    assert conds(d.status)[cond.RECONCILING] == ("True", cond.BUDGET_UNAVAILABLE)
    assert conds(d.status)[cond.STALLED][0] == "False"
    # The same outage seen again writes nothing new.
    again = waiting(obs(st | d.status), cond.BUDGET_UNAVAILABLE, d.status["message"])
    assert again.idle
