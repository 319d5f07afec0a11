"""A job's profileRef folds the GenerationProfile in; the job's own fields win."""

import pytest

from tabular_runner.errors import UserInputError
from tabular_runner.pipeline import resolve_profile
from tabular_runner.spec import GenerationProfile, SynthesisJob, load_manifests

pytestmark = pytest.mark.unit

PROFILE = """\
apiVersion: tabular.aumos.io/v1alpha1
kind: GenerationProfile
metadata: {name: dp-aim}
spec:
  generator: {type: aim, params: {maxBins: 8}}
  privacy: {epsilon: 2.0}
  qualityGate: {minFidelity: 0.7}
"""
JOB = """\
apiVersion: tabular.aumos.io/v1alpha1
kind: SynthesisJob
metadata: {name: adult}
spec:
  source: {uri: file://adult.csv}
  profileRef: {name: dp-aim}
"""


def _load(extra_job: str = "") -> tuple[SynthesisJob, list[GenerationProfile]]:
    resources = load_manifests(PROFILE + "---\n" + JOB + extra_job)
    job = next(r for r in resources if isinstance(r, SynthesisJob))
    return job, [r for r in resources if isinstance(r, GenerationProfile)]


def test_profile_supplies_generator_privacy_and_gate() -> None:
    # Setup
    job, profiles = _load()

    # Run
    resolved = resolve_profile(job, profiles)

    # Assert
    assert resolved.spec.generator is not None and resolved.spec.generator.type.value == "aim"
    assert resolved.spec.privacy is not None and resolved.spec.privacy.epsilon == 2.0
    assert resolved.spec.quality_gate.min_fidelity == 0.7


def test_job_fields_win_over_the_profile() -> None:
    # Setup
    job, profiles = _load("  qualityGate: {minFidelity: 0.9}\n  privacy: {epsilon: 0.5}\n")

    # Run
    resolved = resolve_profile(job, profiles)

    # Assert
    assert resolved.spec.quality_gate.min_fidelity == 0.9
    assert resolved.spec.privacy is not None and resolved.spec.privacy.epsilon == 0.5


def test_missing_profile_names_the_field() -> None:
    # Setup
    job, _ = _load()

    # Run / Assert
    with pytest.raises(UserInputError) as caught:
        resolve_profile(job, [])
    assert caught.value.field == "spec.profileRef.name"
    assert "'dp-aim' not found" in str(caught.value)
