"""Kopf handlers: thin. Each one hands the object to the controller or a pure function.

Run as the chart does: ``kopf run --standalone --all-namespaces -m tabular_operator.handlers``
(or ``tabular-operator`` / ``python -m tabular_operator``, which do the same).

* SynthesisJob: a daemon per unfinished job (:meth:`JobController.run`); stage Job events and
  ``spec.suspend`` edits wake it; deletion runs the finalizer (:meth:`JobController.finalize`).
* GenerationProfile, MultiTableSchema: status on create/update/resume and every 30 s (usedBy);
  a profile edit posts an Event on each running job that snapshotted it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from tabular_operator import catalog
from tabular_operator.bootstrap import App, build
from tabular_operator.budget import BudgetCap
from tabular_operator.controller import pending, utcnow
from tabular_operator.downloads import REFRESH_ANNOTATION
from tabular_operator.k8s import CONNECTIONS
from tabular_operator.manifests import UID_LABEL
from tabular_operator.reconcile import TERMINAL, current_phase
from tabular_runner.spec import API_GROUP, API_VERSION_NAME

FINALIZER = "tabular.aumos.io/finalizer"
QUIET = re.compile(
    r"^(Handler|Timer) '(stage_job_changed|budget_status|profile_status|schema_status)' "
    r"succeeded\.$"
)
JOBS = (API_GROUP, API_VERSION_NAME, "synthesisjobs")
PROFILES = (API_GROUP, API_VERSION_NAME, "generationprofiles")
BUDGETS = (API_GROUP, API_VERSION_NAME, "privacybudgets")
SCHEMAS = (API_GROUP, API_VERSION_NAME, "multitableschemas")


def _app(memo: Any) -> App:
    app: App = memo.app
    return app


@kopf.on.startup()  # type: ignore[arg-type]
async def startup(settings: kopf.OperatorSettings, memo: Any, logger: Any, **_: Any) -> None:
    """Persistence under our own names; build the app; serve metrics.

    Async, so that it runs on the operator's event loop (whose thread pool it sizes).
    """
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration"
    )
    # Our own Events say what happened; Kopf's per-handler ones would only repeat it.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.execution.max_workers = 16
    # A stage Job event only wakes a loop, and the status timers run every few seconds: one
    # "succeeded" line for each would bury the lines that say something.
    logging.getLogger("kopf.objects").addFilter(lambda record: not QUIET.match(record.getMessage()))
    # Blocking API calls run in worker threads; asyncio's default pool (CPUs + 4) would make a
    # burst of new jobs wait for a thread.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=CONNECTIONS, thread_name_prefix="kube")
    )
    app = build()
    memo.app = app
    app.metrics.serve(app.settings.metrics_port)
    app.start_background()
    logger.info(
        "operator ready: ledger %s, store %s, images %s",
        app.ledger_kind,
        app.settings.s3_endpoint or "none",
        app.settings.images,
    )


@kopf.on.cleanup()  # type: ignore[arg-type]
def cleanup(memo: Any, **_: Any) -> None:
    """Stop the outbox relay (what is unsent stays in the outbox for the next start)."""
    app: App | None = getattr(memo, "app", None)
    if app is not None:
        app.stop_background()


@kopf.on.login()  # type: ignore[arg-type]
def login(**kwargs: Any) -> Any:
    """Authenticate with the official client only: in-cluster credentials, else the kubeconfig.

    Kopf otherwise also tries pykube when it is installed, which ignores a kubeconfig's
    ``tokenFile`` and would talk to the apiserver anonymously.
    """
    return kopf.login_via_client(**kwargs)


def _active(status: dict[str, Any], **_: Any) -> bool:
    """Unfinished, or finished with transitions the mirror has not taken yet."""
    return current_phase(status or {}) not in TERMINAL or bool(pending(status or {}))


@kopf.daemon(*JOBS, when=_active, cancellation_backoff=10.0, cancellation_timeout=10.0)  # type: ignore[arg-type]
async def synthesis_job(
    stopped: Any, name: str, namespace: str, uid: str, memo: Any, logger: Any, **_: Any
) -> None:
    """Drive one SynthesisJob until it is COMPLETE or FAILED."""
    await _app(memo).controller.run(namespace, name, uid, stopped, logger)


@kopf.on.update(*JOBS, field="spec.suspend")  # type: ignore[arg-type]
def suspend_changed(uid: str, memo: Any, **_: Any) -> None:
    """Suspend or resume now, not at the next interval."""
    _app(memo).controller.wake(uid)


@kopf.on.update(*JOBS, field=("metadata", "annotations", REFRESH_ANNOTATION))  # type: ignore[arg-type]
async def download_refresh(body: Any, memo: Any, logger: Any, **_: Any) -> None:
    """``tabular.aumos.io/refresh-download`` set to a new value: renew the download URLs."""
    await _app(memo).controller.refresh_downloads(dict(body), logger)


@kopf.on.delete(*JOBS)  # type: ignore[arg-type]
async def synthesis_job_deleted(body: Any, memo: Any, logger: Any, **_: Any) -> None:
    """Finalizer: stop the stages, settle the budget (bounded in time)."""
    await _app(memo).controller.finalize(dict(body), logger)


@kopf.on.event("batch", "v1", "jobs", labels={UID_LABEL: kopf.PRESENT})  # type: ignore[arg-type]
def stage_job_changed(labels: Any, memo: Any, **_: Any) -> None:
    """A stage Job changed: wake its SynthesisJob's loop."""
    _app(memo).controller.wake(str(labels[UID_LABEL]))


KINDS = {"generationprofiles": "GenerationProfile", "multitableschemas": "MultiTableSchema"}


async def _patch_catalog(kind: str, body: Any, memo: Any, builder: Any, logger: Any) -> None:
    app = _app(memo)
    meta = body["metadata"]
    jobs = await asyncio.to_thread(app.kube.list_all, "synthesisjobs", meta["namespace"])
    patch = builder(dict(body), jobs, utcnow())
    current = dict(body.get("status") or {})
    if any(current.get(k) != v for k, v in patch.items()):
        await asyncio.to_thread(app.kube.patch_status, kind, meta["namespace"], meta["name"], patch)
    try:
        await asyncio.to_thread(app.mirror_catalog, KINDS[kind], dict(body), current | patch)
    except Exception as exc:  # noqa: BLE001 - the next run (≤ 30 s) tries again
        logger.warning("could not mirror %s: %s", KINDS[kind], exc)


@kopf.on.resume(*PROFILES)  # type: ignore[arg-type]
@kopf.on.create(*PROFILES)  # type: ignore[arg-type]
@kopf.timer(*PROFILES, interval=30.0, initial_delay=30.0)  # type: ignore[arg-type]
async def profile_status(body: Any, memo: Any, logger: Any, **_: Any) -> None:
    """Validity and usedBy of a GenerationProfile (and its mirror row)."""
    await _patch_catalog("generationprofiles", body, memo, catalog.profile_status, logger)


@kopf.on.update(*PROFILES, field="spec")  # type: ignore[arg-type]
async def profile_changed(body: Any, memo: Any, logger: Any, **_: Any) -> None:
    """Re-validate, and tell running jobs that they keep the snapshot they took."""
    await _patch_catalog("generationprofiles", body, memo, catalog.profile_status, logger)
    app = _app(memo)
    meta = body["metadata"]
    for job in await asyncio.to_thread(app.kube.list_all, "synthesisjobs", meta["namespace"]):
        status = job.get("status") or {}
        snap = (status.get("snapshot") or {}).get("profile") or {}
        if snap.get("name") != meta["name"] or current_phase(status) in TERMINAL:
            continue
        await asyncio.to_thread(
            app.kube.post_event,
            job,
            "Normal",
            "ProfileChanged",
            f"GenerationProfile {meta['name']} changed (generation {meta.get('generation')}); "
            f"this job keeps the snapshot of generation {snap.get('generation')}",
            utcnow(),
        )


@kopf.on.resume(*SCHEMAS)  # type: ignore[arg-type]
@kopf.on.create(*SCHEMAS)  # type: ignore[arg-type]
@kopf.on.update(*SCHEMAS, field="spec")  # type: ignore[arg-type]
@kopf.timer(*SCHEMAS, interval=30.0, initial_delay=30.0)  # type: ignore[arg-type]
async def schema_status(body: Any, memo: Any, logger: Any, **_: Any) -> None:
    """Validity, table count, depth and usedBy of a MultiTableSchema (and its mirror row)."""
    await _patch_catalog("multitableschemas", body, memo, catalog.schema_status, logger)


@kopf.on.delete(*PROFILES, optional=True)  # type: ignore[arg-type]
@kopf.on.delete(*SCHEMAS, optional=True)  # type: ignore[arg-type]
async def catalog_deleted(body: Any, resource: Any, memo: Any, **_: Any) -> None:
    """A deleted profile or schema leaves the mirror too."""
    kind = KINDS[resource.plural]
    await asyncio.to_thread(_app(memo).forget_catalog, kind, dict(body))


def _cap(body: Any) -> BudgetCap:
    spec = body.get("spec") or {}
    meta = body["metadata"]
    return BudgetCap(
        tenant=meta["namespace"],
        name=meta["name"],
        epsilon=float(spec["epsilon"]),
        delta=float(spec.get("delta", 1e-5)),
        period=str(spec.get("period", "none")),
        dataset=spec.get("dataset"),
    )


@kopf.on.resume(*BUDGETS)  # type: ignore[arg-type]
@kopf.on.create(*BUDGETS)  # type: ignore[arg-type]
@kopf.on.update(*BUDGETS, field="spec")  # type: ignore[arg-type]
@kopf.timer(*BUDGETS, interval=10.0, initial_delay=5.0)  # type: ignore[arg-type]
async def budget_status(body: Any, memo: Any, **_: Any) -> None:
    """Hand the cap to the ledger and mirror the ledger's figures into status."""
    app = _app(memo)
    summary = await app.ledger.set_cap(_cap(body))
    latest = await app.ledger.summary(body["metadata"]["namespace"], body["metadata"]["name"])
    patch = catalog.budget_status(
        dict(body), latest or summary, utcnow(), enforced=app.ledger_enforced
    )
    current = dict(body.get("status") or {})
    if any(current.get(k) != v for k, v in patch.items()):
        meta = body["metadata"]
        await asyncio.to_thread(
            app.kube.patch_status, "privacybudgets", meta["namespace"], meta["name"], patch
        )


@kopf.on.delete(*BUDGETS, optional=True)  # type: ignore[arg-type]
async def budget_deleted(body: Any, memo: Any, **_: Any) -> None:
    """The cap goes; the allocations and their audit stay in the ledger."""
    meta = body["metadata"]
    await _app(memo).ledger.remove_cap(meta["namespace"], meta["name"])
