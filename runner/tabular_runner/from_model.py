"""``spec.fromModel``: re-sample a model an earlier job trained — no training, no new ε.

The earlier job's artifact store holds what its train stage wrote: on a cluster
``s3://bucket/tab-jobs/<uid>`` (the operator resolves ``fromModel.jobName`` into that uri),
on a laptop the ``--out`` folder of a ``tabular-runner run`` (``file://``). :func:`import_model`
checks that the model fits the job and copies its artifacts into this job's store, so that
generate and validate then run exactly as they would after a train stage of their own::

    model.pkl  analysis.json  [stages/plan.json]  stages/train.json

The copy of ``stages/train.json`` gains ``fromModel`` (the uri) and ``originalEpsilonSpent``,
and its ``epsilonSpent`` becomes 0: sampling a trained model is post-processing, which costs
no ε. It is written last, so its presence marks a finished import and a second call (a
retried generate pod) copies nothing.

The original job's source (``source`` in its ``stages/train.json``) is what a fromModel job
without ``source`` reads; a job that names a source of its own must give the model's columns.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabular_runner.errors import UserInputError
from tabular_runner.spec import GeneratorType, SourceSpec, SynthesisJob
from tabular_runner.storage import LocalStore, open_store

if TYPE_CHECKING:
    from tabular_runner.analysis import TableAnalysis
    from tabular_runner.storage.base import ArtifactStore
    from tabular_runner.storage.s3 import S3Settings

FIELD = "spec.fromModel.uri"
REQUIRED_KEYS = ("model.pkl", "analysis.json", "stages/train.json")
OPTIONAL_KEYS = ("stages/plan.json",)
_HINT = (
    "point fromModel.uri at the artifact store (s3://bucket/tab-jobs/<uid>) or the --out "
    "folder (file://…) of a single-table job whose train stage finished"
)


def model_uri(job: SynthesisJob) -> str:
    """The uri of the model ``job`` re-samples.

    Raises:
        UserInputError: ``fromModel.jobName`` without a uri (only the operator resolves names).
    """
    from_model = job.spec.from_model
    assert from_model is not None
    if from_model.uri is None:
        raise UserInputError(
            "spec.fromModel.jobName",
            f"names the SynthesisJob {from_model.job_name!r}, which only the operator can "
            "resolve (on a cluster)",
            "here, use fromModel.uri instead: the earlier run's --out folder (file://…) "
            "or artifact store (s3://…)",
        )
    if not from_model.uri.startswith(("file://", "s3://")):
        raise UserInputError(FIELD, f"unsupported uri {from_model.uri!r}", _HINT)
    return from_model.uri


def import_model(
    job: SynthesisJob,
    store: ArtifactStore,
    *,
    base_dir: Path | None,
    s3: S3Settings | None,
) -> dict[str, Any]:
    """Copy the model ``job.spec.fromModel`` names into ``store``; return its train result.

    Idempotent: when ``store`` already holds this import, nothing is copied again.

    Raises:
        UserInputError: no model at the uri, a multi-table or unfinished model, or a model
            that does not fit the job (constraints on columns it lacks, another generator).
    """
    from tabular_runner.analysis import TableAnalysis

    uri = model_uri(job)
    done = _read_json(store, "stages/train.json")
    if done is not None and done.get("fromModel") == uri and store.exists("model.pkl"):
        analysis = TableAnalysis.from_dict(_required_json(store, "analysis.json", uri))
        check_fits(job, done, analysis)
        return done

    source = open_store(uri, base_dir=base_dir, s3=s3, field=FIELD)
    if source.uri.rstrip("/") == store.uri.rstrip("/"):
        raise UserInputError(FIELD, "is this job's own artifact store", _HINT)
    if isinstance(source, LocalStore) and not source.root.is_dir():
        raise UserInputError(FIELD, f"no such folder: {source.root}", _HINT)
    missing = [key for key in REQUIRED_KEYS if not source.exists(key)]
    if missing:
        raise UserInputError(
            FIELD, f"no trained model at {uri} ({', '.join(missing)} missing)", _HINT
        )
    trained = _required_json(source, "stages/train.json", uri)
    if trained.get("kind") == "multi-table" or "modelledColumns" not in trained:
        raise UserInputError(
            FIELD,
            f"{uri} holds no single-table model (a multi-table or unfinished train stage)",
            _HINT,
        )
    analysis_bytes = source.get_bytes("analysis.json")
    analysis = TableAnalysis.from_dict(json.loads(analysis_bytes))
    check_fits(job, trained, analysis)

    with tempfile.TemporaryDirectory(prefix="aumos-from-model-") as tmp:
        local = source.get_file("model.pkl", Path(tmp) / "model.pkl")
        store.put_file("model.pkl", local)
    store.put_bytes("analysis.json", analysis_bytes, "application/json")
    for key in OPTIONAL_KEYS:
        if source.exists(key):
            store.put_bytes(key, source.get_bytes(key), "application/json")
    result = dict(trained)
    result["fromModel"] = uri
    result["originalEpsilonSpent"] = trained.get("epsilonSpent")
    result["epsilonSpent"] = 0.0
    result["modelUri"] = f"{store.uri.rstrip('/')}/model.pkl"
    # Written last: its presence means the import is complete.
    store.put_bytes(
        "stages/train.json",
        json.dumps(result, indent=2, default=str).encode(),
        "application/json",
    )
    return result


def check_fits(job: SynthesisJob, trained: dict[str, Any], analysis: TableAnalysis) -> None:
    """Refuse a job the model cannot serve (before any row is sampled).

    Raises:
        UserInputError: naming the job's field at fault.
    """
    from tabular_runner.constraints import check_constraints

    spec = job.spec
    if spec.schema_ref is not None:
        raise UserInputError(
            "spec.schemaRef",
            "re-sampling a multi-table model (fromModel with schemaRef) is not supported yet",
            "remove schemaRef to re-sample a single-table model",
        )
    requested = spec.generator.type if spec.generator is not None else GeneratorType.AUTO
    if requested is not GeneratorType.AUTO and requested.value != trained.get("generator"):
        # The operator picks each stage's runner image (engine) from the generator type.
        raise UserInputError(
            "spec.generator.type",
            f"is {requested.value}, but the model at {trained.get('fromModel') or 'the uri'} "
            f"was trained with {trained.get('generator')}",
            f"set generator.type to {trained.get('generator')} (or auto)",
        )
    check_constraints(spec.constraints, analysis.column_names, analysis)
    if spec.generation is not None and spec.generation.requested:
        from tabular_runner.generators import check_controls

        check_controls(GeneratorType(trained["generator"]), spec.generation.requested)


def check_source_fits(columns: Sequence[str], analysis: TableAnalysis) -> None:
    """Refuse a source of the job's own whose columns are not the model's.

    Raises:
        UserInputError: naming ``spec.source.uri`` and the columns that differ.
    """
    have, want = set(columns), set(analysis.column_names)
    if have == want:
        return
    missing = [c for c in analysis.column_names if c not in have]
    extra = [c for c in columns if c not in want]
    parts = []
    if missing:
        parts.append(f"lacks the model's column(s) {', '.join(missing[:10])}")
    if extra:
        parts.append(f"has column(s) the model does not know: {', '.join(extra[:10])}")
    raise UserInputError(
        "spec.source.uri",
        "does not fit the model: it " + "; it ".join(parts),
        "give a source with the columns the model was trained on, or omit source to use "
        "the original job's",
    )


def recorded_source(trained: dict[str, Any]) -> SourceSpec | None:
    """The source the model was trained on, as its train stage recorded it (if it did)."""
    recorded = trained.get("source")
    if not isinstance(recorded, dict) or "uri" not in recorded:
        return None
    return SourceSpec(uri=recorded["uri"], format=recorded.get("format"))


def _read_json(store: ArtifactStore, key: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(store.get_bytes(key))
    except FileNotFoundError:
        return None
    return data


def _required_json(store: ArtifactStore, key: str, uri: str) -> dict[str, Any]:
    data = _read_json(store, key)
    if data is None:
        raise UserInputError(FIELD, f"no trained model at {uri} ({key} missing)", _HINT)
    return data
