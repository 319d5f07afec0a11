"""Pure: what a SynthesisJob will run, given the objects it refers to (or their absence).

The controller looks up the GenerationProfile, MultiTableSchema and earlier SynthesisJob a
job names (same namespace only: a namespace is a tenant) and hands them here; the result is
snapshotted into ``status.snapshot`` when the job is queued, so a later edit of a profile or
schema changes nothing in a running job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from tabular_operator import conditions as cond
from tabular_operator.manifests import store_uri
from tabular_operator.reconcile import Resolved, Unresolvable
from tabular_runner.errors import UserInputError
from tabular_runner.profiles import resolve_profile
from tabular_runner.spec import (
    GenerationProfile,
    MultiTableSchema,
    Phase,
    SynthesisJob,
    describe_validation_error,
)


def _clean(body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an API object the spec models read (no status, no server fields)."""
    meta = body.get("metadata", {})
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "uid", "labels", "annotations") if k in meta
        },
        "spec": body.get("spec", {}),
    }


def resolve(
    body: Mapping[str, Any],
    *,
    profile: Mapping[str, Any] | None,
    schema: Mapping[str, Any] | None,
    model_job: Mapping[str, Any] | None,
    bucket_template: str,
) -> Resolved | Unresolvable:
    """Fold the profile in and resolve ``schemaRef`` and ``fromModel.jobName``.

    Args:
        body: The SynthesisJob as read from the API.
        profile: The GenerationProfile ``spec.profileRef`` names, None if absent (or unset).
        schema: The MultiTableSchema ``spec.schemaRef`` names, None if absent (or unset).
        model_job: The SynthesisJob ``spec.fromModel.jobName`` names, None if absent.
        bucket_template: The tenant bucket template (the model's store is derived from it).
    """
    namespace = body.get("metadata", {}).get("namespace", "")
    try:
        job = SynthesisJob.model_validate(_clean(body))
    except ValidationError as exc:
        return Unresolvable(cond.INVALID_SPEC, describe_validation_error(exc, "spec").message)
    spec = job.spec
    profile_ref: dict[str, Any] | None = None
    if spec.profile_ref is not None:
        name = spec.profile_ref.name
        if profile is None:
            return Unresolvable(
                cond.INVALID_SPEC,
                f"spec.profileRef.name: GenerationProfile {name!r} not found in namespace "
                f"{namespace!r} — create it there or fix the name",
            )
        try:
            parsed = GenerationProfile.model_validate(_clean(profile))
            job = resolve_profile(job, [parsed])
        except ValidationError as exc:
            message = describe_validation_error(exc, "spec").message
            return Unresolvable(
                cond.INVALID_SPEC, f"spec.profileRef.name: GenerationProfile {name!r}: {message}"
            )
        except UserInputError as exc:
            return Unresolvable(cond.INVALID_SPEC, exc.message)
        profile_ref = {
            "name": name,
            "generation": profile.get("metadata", {}).get("generation"),
        }
    schema_wire: dict[str, Any] | None = None
    if spec.schema_ref is not None:
        name = spec.schema_ref.name
        if schema is None:
            return Unresolvable(
                cond.INVALID_SPEC,
                f"spec.schemaRef.name: MultiTableSchema {name!r} not found in namespace "
                f"{namespace!r} — create it there or fix the name",
            )
        try:
            schema_wire = MultiTableSchema.model_validate(_clean(schema)).to_wire()
        except ValidationError as exc:
            message = describe_validation_error(exc, "spec").message
            return Unresolvable(
                cond.INVALID_SPEC, f"spec.schemaRef.name: MultiTableSchema {name!r}: {message}"
            )
    wire = job.spec.to_wire()
    generator = wire.get("generator", {}).get("type", "auto")
    if spec.from_model is not None and spec.from_model.job_name is not None:
        uri = _model_uri(spec.from_model.job_name, namespace, model_job, bucket_template)
        if isinstance(uri, Unresolvable):
            return uri
        wire["fromModel"] = {"uri": uri}
        trained = ((model_job or {}).get("status") or {}).get("generator")
        if generator == "auto" and trained:
            # Sample in the engine that trained the model (auto may have chosen argn).
            generator = str(trained)
    return Resolved(spec=wire, generator=str(generator), profile=profile_ref, schema=schema_wire)


def _model_uri(
    name: str, namespace: str, model_job: Mapping[str, Any] | None, bucket_template: str
) -> str | Unresolvable:
    field = "spec.fromModel.jobName"
    if model_job is None:
        return Unresolvable(
            cond.INVALID_SPEC,
            f"{field}: SynthesisJob {name!r} not found in namespace {namespace!r} — name a job "
            "of this namespace that finished training, or set fromModel.uri",
        )
    status = model_job.get("status") or {}
    trained = any(str(s).startswith("train") for s in status.get("completed", []))
    if not trained and status.get("phase") != Phase.COMPLETE.value:
        return Unresolvable(
            cond.INVALID_SPEC,
            f"{field}: SynthesisJob {name!r} has no trained model (phase "
            f"{status.get('phase') or 'none'}) — wait until it is COMPLETE",
        )
    earlier = ((status.get("snapshot") or {}).get("spec") or {}).get("fromModel") or {}
    if earlier.get("uri"):
        return str(earlier["uri"])  # that job re-sampled a model itself: use the original
    uid = model_job.get("metadata", {}).get("uid", "")
    return store_uri(namespace, uid, bucket_template)
