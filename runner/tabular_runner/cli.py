"""``tabular-runner``: run a SynthesisJob on a laptop, or one stage of it in a pod.

Commands::

    tabular-runner run JOB.yaml --out DIR          train, generate and validate locally
    tabular-runner stage train|generate|validate   one stage, artifacts through --store
    tabular-runner check JOB.yaml                  validate a manifest, print the resolved spec
    tabular-runner datasets list|export NAME PATH  real data sets shipped in packages
    tabular-runner engines list|install|path [ENGINE]  engine environments (core, argn)

Every deliberate error ends as one line on stderr and a non-zero exit code (see
:mod:`tabular_runner.errors`); nothing is left half-written in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabular_runner import __version__
from tabular_runner.errors import GateFailedError, TabularError, UserInputError
from tabular_runner.spec import (
    GenerationProfile,
    MultiTableSchema,
    SynthesisJob,
    load_manifests,
    parse_resource,
)

DEFAULT_TERMINATION_LOG = "/dev/termination-log"


@dataclass
class Manifest:
    """The resources of one manifest file, with the job's profile folded in."""

    job: SynthesisJob
    profiles: list[GenerationProfile]
    schemas: list[MultiTableSchema]
    base_dir: Path

    def schema_for(self, job: SynthesisJob) -> MultiTableSchema:
        """The MultiTableSchema ``job.spec.schemaRef`` names, from the same file."""
        assert job.spec.schema_ref is not None
        name = job.spec.schema_ref.name
        for schema in self.schemas:
            if schema.metadata.name == name:
                return schema
        known = ", ".join(s.metadata.name for s in self.schemas) or "none"
        raise UserInputError(
            "spec.schemaRef.name",
            f"MultiTableSchema {name!r} not found in the manifest (schemas given: {known})",
            "add the MultiTableSchema document to the same file (separated by ---)",
        )


def _read_manifest(path: str) -> Manifest:
    file = Path(path)
    if not file.exists():
        raise UserInputError(path, "manifest file not found", "check the path")
    if file.is_dir():
        raise UserInputError(path, "is a directory, not a manifest file", "give a YAML file")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(path, f"cannot be read ({exc})", "check its permissions") from None
    resources = load_manifests(text, where=file.name)
    jobs = [r for r in resources if isinstance(r, SynthesisJob)]
    profiles = [r for r in resources if isinstance(r, GenerationProfile)]
    schemas = [r for r in resources if isinstance(r, MultiTableSchema)]
    if len(jobs) != 1:
        raise UserInputError(
            file.name,
            f"holds {len(jobs)} SynthesisJob documents",
            "put exactly one SynthesisJob in the file",
        )
    from tabular_runner.pipeline import resolve_profile

    job = resolve_profile(jobs[0], profiles)
    return Manifest(job, profiles, schemas, file.resolve().parent)


def _as_histories(job: SynthesisJob) -> tuple[SynthesisJob, MultiTableSchema]:
    """A single-table job with ``spec.sequence`` runs as entities + their histories."""
    from tabular_runner.multitable.run import history_schema

    schema, multi = history_schema(job)
    return multi, schema


def _check_runnable(job: SynthesisJob) -> None:
    if job.spec.from_model is not None:
        from tabular_runner.from_model import model_uri

        model_uri(job)  # a jobName only the operator can resolve is refused here


def _publish(staging: Path, out: Path, *, withhold: tuple[str, ...] = ()) -> None:
    """Move finished files from the staging folder into ``out`` (each move is atomic)."""
    out.mkdir(parents=True, exist_ok=True)
    for item in sorted(staging.rglob("*")):
        if item.is_dir() or item.name.startswith(withhold):
            continue
        target = out / item.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(item, target)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the whole pipeline locally."""
    from rich.console import Console

    from tabular_runner.pipeline import StageContext, run_all
    from tabular_runner.progress import StageProgress, summary_table
    from tabular_runner.storage.local import LocalStore

    manifest = _read_manifest(args.manifest)
    job, base_dir = manifest.job, manifest.base_dir
    _check_runnable(job)
    schema = manifest.schema_for(job) if job.spec.schema_ref is not None else None
    if job.spec.sequence is not None:
        job, schema = _as_histories(job)
    # Data files that a failed gate withholds: the single output, or one file per table.
    data_files = (
        tuple(f"{t.name}." for t in schema.spec.tables) if schema is not None else ("output.",)
    )
    out = Path(args.out).resolve()
    if out.exists() and not out.is_dir():
        raise UserInputError("--out", f"{out} exists and is not a directory", "choose a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as exc:
        raise UserInputError(
            "--out", f"cannot create {out} ({exc})", "choose a writable folder"
        ) from None
    store = LocalStore(staging)
    try:
        with StageProgress(enabled=None if not args.quiet else False) as progress:
            ctx = StageContext(
                base_dir=base_dir,
                progress=progress,
                run_in_engine=_engine_runner(base_dir, progress.console.print, schema),
            )
            if schema is not None:
                from tabular_runner.multitable import run_multitable

                report = run_multitable(schema, job, store, ctx)
            else:
                report = run_all(job, store, ctx)
    except GateFailedError:
        # The report is the point of a failed gate; the data is not released.
        _publish(staging, out, withhold=data_files)
        shutil.rmtree(staging, ignore_errors=True)
        report = json.loads((out / "report.json").read_text())
        if not args.quiet:
            Console().print(summary_table(report, str(out)))
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _publish(staging, out)
    shutil.rmtree(staging, ignore_errors=True)
    if not args.quiet:
        Console().print(summary_table(report, str(out)))
    return 0


def _engine_runner(base_dir: Path, notify: Any, schema: MultiTableSchema | None = None) -> Any:
    """Run a stage of another engine as a subprocess in that engine's cached environment."""
    from tabular_runner import engines
    from tabular_runner.storage.local import LocalStore

    extra = {"AUMOS_SCHEMA_JSON": json.dumps(schema.to_wire())} if schema is not None else {}

    def run_in_engine(engine: str, stage: str, job: SynthesisJob, store: Any) -> dict[str, Any]:
        if not isinstance(store, LocalStore):
            raise TabularError(f"the {engine} engine needs a local store here, not {store.uri}")
        name: engines.EngineName = engines.ARGN if engine == engines.ARGN else engines.CORE
        return engines.run_stage(
            name, stage, job.to_wire(), store.root, base_dir, notify, extra_env=extra
        )

    return run_in_engine


def cmd_engines(args: argparse.Namespace) -> int:
    """List engines, install one's environment ahead of time, or print its path."""
    from tabular_runner import engines

    for line in engines.command(args.action, args.engine):
        print(line)  # noqa: T201
    return 0


def _parse_json(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserInputError(option, f"is not valid JSON ({exc.msg})", "") from None


def _job_from_args(
    args: argparse.Namespace,
) -> tuple[SynthesisJob, Path, MultiTableSchema | None]:
    """The job, the folder its relative uris resolve against, and its schema (multi-table)."""
    manifest: Manifest | None = None
    if args.job_json:
        resource = parse_resource(_parse_json(args.job_json, "--job-json"), "job")
        if not isinstance(resource, SynthesisJob):
            raise UserInputError("job.kind", "must be SynthesisJob", "")
        job, base_dir = resource, Path(args.base_dir or Path.cwd()).resolve()
    elif args.job:
        manifest = _read_manifest(args.job)
        job = manifest.job
        base_dir = Path(args.base_dir).resolve() if args.base_dir else manifest.base_dir
    else:
        raise UserInputError("--job", "no job given", "pass --job FILE or --job-json JSON")
    if job.spec.sequence is not None:
        multi, histories = _as_histories(job)
        return multi, base_dir, histories
    if job.spec.schema_ref is None:
        return job, base_dir, None  # a schema given anyway is not needed, so not read
    if args.schema_json:
        schema = parse_resource(_parse_json(args.schema_json, "--schema-json"), "schema")
        if not isinstance(schema, MultiTableSchema):
            raise UserInputError("schema.kind", "must be MultiTableSchema", "")
        return job, base_dir, schema
    if manifest is not None:
        return job, base_dir, manifest.schema_for(job)
    raise UserInputError(
        "spec.schemaRef",
        f"names MultiTableSchema {job.spec.schema_ref.name!r}, but no schema was given",
        "pass the MultiTableSchema as JSON with --schema-json (or $AUMOS_SCHEMA_JSON)",
    )


def cmd_stage(args: argparse.Namespace) -> int:
    """Run one stage; write its compact JSON result to the termination log.

    Progress goes to ``stages/progress.json`` in the store (see
    :class:`~tabular_runner.progress.StoreProgress`): the pod has no Kubernetes credentials,
    the operator reads it from there. A job with ``schemaRef`` runs the multi-table stages.
    """
    from tabular_runner.pipeline import STAGE_FUNCTIONS, StageContext, compact_result
    from tabular_runner.progress import StoreProgress
    from tabular_runner.storage import open_store
    from tabular_runner.storage.s3 import S3Settings

    log_path = Path(args.termination_log)
    progress: StoreProgress | None = None
    try:
        job, base_dir, schema = _job_from_args(args)
        _check_runnable(job)
        # Two identities: the store's writes artifacts (and reads fromModel models, which
        # are artifacts); the source's, when the job names one, only reads the data.
        model = job.spec.from_model.uri if job.spec.from_model else None
        uses_store_s3 = args.store.startswith("s3://") or (model or "").startswith("s3://")
        s3 = S3Settings.from_env() if uses_store_s3 else None
        source_s3 = None
        if any(uri.startswith("s3://") for uri in _source_uris(job, schema)):
            source_s3 = S3Settings.source_from_env(secret=_source_secret(job, schema))
        store = open_store(args.store, base_dir=base_dir, s3=s3, field="--store")
        progress = StoreProgress(store)
        ctx = StageContext(base_dir=base_dir, s3=s3, source_s3=source_s3, progress=progress)
        if schema is not None:
            from tabular_runner.multitable import MULTITABLE_STAGES

            result = MULTITABLE_STAGES[args.stage](schema, job, store, ctx)
        else:
            result = STAGE_FUNCTIONS[args.stage](job, store, ctx)
    except TabularError as exc:
        _write_termination(
            log_path,
            {"stage": args.stage, "ok": False, "error": exc.message, "exitCode": exc.exit_code},
        )
        raise
    finally:
        if progress is not None:
            progress.flush()
    _write_termination(log_path, result)
    print(compact_result(result))  # noqa: T201 - the stage protocol's stdout copy
    return 0


def _source_uris(job: SynthesisJob, schema: MultiTableSchema | None) -> list[str]:
    uris = [job.spec.source.uri] if job.spec.source else []
    return uris + ([t.source.uri for t in schema.spec.tables] if schema is not None else [])


def _source_secret(job: SynthesisJob, schema: MultiTableSchema | None) -> str | None:
    """The Secret the pod's source keys come from (the operator mounts the same one).

    Raises:
        UserInputError: a schema's tables name different Secrets; one pod reads every
            table with one identity.
    """
    if job.spec.source is not None and job.spec.source.secret_ref is not None:
        return job.spec.source.secret_ref.name
    tables = schema.spec.tables if schema is not None else []
    names = [t.source.secret_ref.name for t in tables if t.source.secret_ref is not None]
    if len(set(names)) > 1:
        raise UserInputError(
            "spec.tables[].source.secretRef",
            f"the tables name different Secrets ({', '.join(sorted(set(names)))}), but a stage "
            "reads every table with one identity",
            "put the keys of one identity that may read every table in one Secret and name "
            "it in each table's secretRef",
        )
    return names[0] if names else None


def _write_termination(path: Path, result: dict[str, Any]) -> None:
    from tabular_runner.pipeline import compact_result

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(compact_result(result))
    except OSError:
        # Outside a pod /dev/termination-log may not be writable; stdout still has it.
        pass


def cmd_check(args: argparse.Namespace) -> int:
    """Validate a manifest and print the resolved SynthesisJob as JSON."""
    job = _read_manifest(args.manifest).job
    print(json.dumps(job.to_wire(), indent=2))  # noqa: T201
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    """List or export the real data sets shipped in installed packages."""
    from tabular_runner import datasets
    from tabular_runner.spec import DataFormat

    if args.action == "list":
        for name in datasets.names():
            print(name)  # noqa: T201
        return 0
    if not args.name or not args.path:
        raise UserInputError(
            "datasets export", "needs NAME and PATH", "e.g. datasets export adult data/adult.csv"
        )
    path = Path(args.path)
    fmt = DataFormat.PARQUET if path.suffix in (".parquet", ".pq") else DataFormat.CSV
    datasets.export(args.name, path, fmt)
    print(path)  # noqa: T201
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="tabular-runner", description="Synthesise privacy-safe tabular data."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a SynthesisJob locally (no cluster)")
    run.add_argument("manifest", help="YAML with one SynthesisJob (and GenerationProfiles)")
    run.add_argument("--out", required=True, help="folder for output, report and model")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary")
    run.set_defaults(func=cmd_run)

    stage = sub.add_parser("stage", help="run one stage of a job (used by the operator)")
    stage.add_argument("stage", choices=["train", "generate", "validate"])
    stage.add_argument("--job", help="manifest file with the SynthesisJob")
    stage.add_argument(
        "--job-json",
        default=os.environ.get("AUMOS_JOB_JSON"),
        help="the SynthesisJob as JSON (default: $AUMOS_JOB_JSON)",
    )
    stage.add_argument(
        "--store", required=True, help="artifact root: s3://bucket/prefix or file://dir"
    )
    stage.add_argument(
        "--schema-json",
        default=os.environ.get("AUMOS_SCHEMA_JSON"),
        help="the MultiTableSchema of a schemaRef job, as JSON (default: $AUMOS_SCHEMA_JSON)",
    )
    stage.add_argument("--base-dir", help="folder relative file:// uris resolve against")
    stage.add_argument(
        "--termination-log",
        default=os.environ.get("AUMOS_TERMINATION_LOG", DEFAULT_TERMINATION_LOG),
    )
    stage.set_defaults(func=cmd_stage)

    check = sub.add_parser("check", help="validate a manifest")
    check.add_argument("manifest")
    check.set_defaults(func=cmd_check)

    data = sub.add_parser("datasets", help="real data sets shipped in installed packages")
    data.add_argument("action", choices=["list", "export"])
    data.add_argument("name", nargs="?")
    data.add_argument("path", nargs="?")
    data.set_defaults(func=cmd_datasets)

    eng = sub.add_parser("engines", help="engine environments (core, argn)")
    eng.add_argument("action", choices=["list", "install", "path"])
    eng.add_argument("engine", nargs="?", help="core or argn (install, path)")
    eng.set_defaults(func=cmd_engines)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tabular-runner``."""
    args = build_parser().parse_args(argv)
    if not os.environ.get("AUMOS_SHOW_WARNINGS"):
        # The libraries warn about their own internals (SDV metadata advice, pandas and
        # torch deprecations); users act on our messages, not theirs.
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        code: int = args.func(args)
        return code
    except TabularError as exc:
        print(f"error: {exc.message}", file=sys.stderr)  # noqa: T201
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)  # noqa: T201
        return 130


if __name__ == "__main__":
    sys.exit(main())
