"""Folding a GenerationProfile into a SynthesisJob: one rule for the CLI and the operator.

Light on purpose (the spec models only), so the operator uses the same rule as
``tabular-runner run`` without importing the pipeline.
"""

from __future__ import annotations

from pydantic import ValidationError

from tabular_runner.errors import UserInputError
from tabular_runner.spec import (
    GenerationProfile,
    SynthesisJob,
    SynthesisJobSpec,
    describe_validation_error,
)


def resolve_profile(job: SynthesisJob, profiles: list[GenerationProfile]) -> SynthesisJob:
    """Return ``job`` with its ``profileRef`` folded in (job fields win over the profile's).

    Raises:
        UserInputError: if the referenced profile is not among ``profiles``.
    """
    ref = job.spec.profile_ref
    if ref is None:
        return job
    matches = [p for p in profiles if p.metadata.name == ref.name]
    if not matches:
        known = ", ".join(p.metadata.name for p in profiles) or "none"
        raise UserInputError(
            "spec.profileRef.name",
            f"GenerationProfile {ref.name!r} not found (profiles given: {known})",
            "add the GenerationProfile document to the manifest or fix the name",
        )
    profile = matches[0].spec
    merged = job.spec.model_copy(deep=True)
    explicit = job.spec.model_fields_set
    if merged.generator is None:
        merged.generator = profile.generator.model_copy(deep=True)
    if merged.privacy is None and profile.privacy is not None:
        merged.privacy = profile.privacy.model_copy()
    for name in ("quality_gate", "validation", "resources"):
        if name not in explicit:
            setattr(merged, name, getattr(profile, name).model_copy(deep=True))
    # Re-validate the combination (e.g. a DP profile generator needs privacy).
    try:
        checked = SynthesisJobSpec.model_validate(merged.model_dump(by_alias=True))
    except ValidationError as exc:
        raise describe_validation_error(exc, "spec") from None
    return job.model_copy(update={"spec": checked})
