"""The imperative shell around :func:`~tabular_operator.reconcile.decide`: observe, decide, act.

One :class:`JobController` serves every SynthesisJob. For each job a Kopf daemon calls
:meth:`JobController.run`, which loops: read the job, its stage Jobs and pods (and, while a
stage runs, its progress record in the store), decide, carry out the actions, write the status
patch, post the events — then sleep until a stage Job changes (:meth:`wake`) or the interval
passes. Blocking client calls run in worker threads.

Order of side effects, and why a crash anywhere is safe: actions (ledger calls, Job creation)
come before the status patch that records them, and each is idempotent — replaying a
decision after a crash repeats nothing that matters (a Job that exists is not created again;
the ledger answers a repeated allocate or consume with what it did the first time). Named
crash points (:mod:`tabular_operator.faults`) sit on each of these boundaries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tabular_operator import conditions as cond
from tabular_operator import downloads
from tabular_operator.budget import BudgetRefused, BudgetUnavailable, Ledger
from tabular_operator.events import EVENT_TYPES, Publisher
from tabular_operator.faults import Faults
from tabular_operator.k8s import Kube
from tabular_operator.manifests import (
    UID_LABEL,
    StageSettings,
    build_stage_job,
    store_uri,
    tenant_bucket,
)
from tabular_operator.metrics import Metrics
from tabular_operator.observe import stage_runs
from tabular_operator.reconcile import (
    TERMINAL,
    Allocate,
    Consume,
    CreateStage,
    Decision,
    DeleteStage,
    Emit,
    Observation,
    PublishDownloads,
    Release,
    Resolved,
    StageRun,
    SuspendStage,
    Unresolvable,
    allocated_status,
    current_phase,
    decide,
    failed,
    settle,
    waiting,
)
from tabular_operator.resolve import resolve
from tabular_operator.store import StorePort
from tabular_runner.spec import Phase, SynthesisJob

PLURAL = "synthesisjobs"
MIRRORED_FIELDS = (
    "stage",
    "generator",
    "trainingTimeS",
    "generationTimeS",
    "rowsGenerated",
    "fidelityScore",
    "privacyScore",
    "privacyRisk",
    "epsilonSpent",
    "allocationId",
    "errorMessage",
)
"""Status fields a lifecycle record carries (the mirror's columns; events omit the output)."""
MAX_PASSES = 8
"""Decisions carried out per wake-up before the job yields to the others."""


def pending(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Lifecycle records the mirror may not have yet (``status.mirror.pending``), in order."""
    mirror = status.get("mirror") or {}
    return [dict(r) for r in mirror.get("pending") or [] if isinstance(r, Mapping)]


def utcnow() -> datetime:
    """The clock (the only place the controller reads it)."""
    return datetime.now(UTC)


@dataclass
class StoreCredentials:
    """What stage pods get (through a Secret in their namespace) to reach the store."""

    access_key: str
    secret_key: str


class JobController:
    """Drives every SynthesisJob through its stages."""

    def __init__(
        self,
        kube: Kube,
        store: StorePort,
        ledger: Ledger,
        publisher: Publisher,
        stage_settings: StageSettings,
        *,
        store_credentials: StoreCredentials | None,
        metrics: Metrics,
        faults: Faults,
        interval: float = 10.0,
        idle_interval: float = 300.0,
        finalizer_timeout: float = 60.0,
        presign_ttl_seconds: int = 3600,
        durable_publisher: bool = False,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.kube = kube
        self.store = store
        self.ledger = ledger
        self.publisher = publisher
        self.stage_settings = stage_settings
        self.store_credentials = store_credentials
        self.metrics = metrics
        self.faults = faults
        self.interval = interval
        self.idle_interval = idle_interval
        self._background: set[asyncio.Task[None]] = set()
        self._resting: set[str] = set()
        """Jobs with nothing to watch (suspended, no stage running): they sleep until woken."""
        self.finalizer_timeout = finalizer_timeout
        self.presign_ttl_seconds = presign_ttl_seconds
        self.clock = clock
        self.durable = durable_publisher
        """Whether the publisher persists (the PostgreSQL mirror): then each transition is
        kept in ``status.mirror.pending`` until it is known to be published."""
        self._mirrored: dict[str, set[str]] = {}
        """Per job: the phases whose record this process published."""
        self._behind: set[str] = set()
        """Jobs with transitions the mirror has not taken yet (the publisher failed)."""
        self._wakers: dict[str, asyncio.Event] = {}
        self._tenants: set[str] = set()

    # -- waking ---------------------------------------------------------------------------

    def wake(self, uid: str) -> None:
        """A stage Job of ``uid`` (or its spec) changed: look again now."""
        event = self._wakers.get(uid)
        if event is not None:
            event.set()

    async def run(
        self, namespace: str, name: str, uid: str, stopped: Any, logger: logging.Logger
    ) -> None:
        """The per-job loop (a Kopf daemon): until the job is finished, deleted or stopped."""
        event = self._wakers.setdefault(uid, asyncio.Event())
        try:
            while not stopped:
                event.clear()
                try:
                    phase = await self.reconcile(namespace, name, uid, logger)
                except Exception as exc:  # noqa: BLE001 - logged, counted, retried
                    self.metrics.reconcile_errors.inc()
                    logger.warning("reconcile failed, retrying: %s", exc)
                    phase = None
                if phase is None and await self._gone(namespace, name, uid):
                    return
                if phase in TERMINAL and uid not in self._behind:
                    return
                # A suspended job with no stage running changes only when its spec does
                # (which wakes it): it costs no API calls while it rests.
                resting = uid in self._resting
                await self._sleep(event, stopped, self.idle_interval if resting else self.interval)
        finally:
            self._wakers.pop(uid, None)
            self._resting.discard(uid)
            self._mirrored.pop(uid, None)
            self._behind.discard(uid)

    async def _sleep(self, event: asyncio.Event, stopped: Any, timeout: float) -> None:
        """Wait until woken, stopped (the job finished or is deleted) or the interval passes."""
        waiters = [asyncio.ensure_future(event.wait())]
        if hasattr(stopped, "wait"):
            waiters.append(asyncio.ensure_future(stopped.wait()))
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _gone(self, namespace: str, name: str, uid: str) -> bool:
        try:
            body = await asyncio.to_thread(self.kube.get, PLURAL, namespace, name)
        except Exception:  # noqa: BLE001 - unknown: keep trying
            return False
        return body is None or body["metadata"].get("uid") != uid

    # -- one pass -------------------------------------------------------------------------

    async def reconcile(
        self, namespace: str, name: str, uid: str, logger: logging.Logger
    ) -> Phase | None:
        """Observe → decide → act until nothing is left to do; return the phase reached."""
        phase: Phase | None = None
        for _ in range(MAX_PASSES):
            self.metrics.reconciles.inc()
            body = await asyncio.to_thread(self.kube.get, PLURAL, namespace, name)
            if body is None or body["metadata"].get("uid") != uid:
                return None
            if body["metadata"].get("deletionTimestamp"):
                return None
            if pending(body.get("status") or {}):
                await self._catch_up(body, logger)
            obs = await self.observe(body)
            train = obs.runs.get("train")
            if train is not None and train.active and train.pod_started and not train.succeeded:
                self.faults.crash_point("during-training")
            if obs.suspend and not any(r.active for r in obs.runs.values()):
                self._resting.add(uid)
            else:
                self._resting.discard(uid)
            phase = current_phase(obs.status)
            self.metrics.set_phase(uid, phase.value if phase else None)
            decision = decide(obs)
            if decision.idle:
                return phase
            await self.act(body, obs, decision, logger)
            phase = decision.phase or phase
            if not decision.actions and (decision.phase is None or phase in TERMINAL):
                return phase  # a status write alone changes nothing more to do
        return phase

    async def observe(self, body: Mapping[str, Any]) -> Observation:
        """Everything :func:`decide` needs about one job."""
        meta = body["metadata"]
        namespace, uid = meta["namespace"], meta["uid"]
        status: dict[str, Any] = dict(body.get("status") or {})
        # No stage Job exists before the snapshot is recorded (it is written first).
        started = status.get("snapshot") is not None
        jobs = await asyncio.to_thread(self.kube.stage_jobs, namespace, uid) if started else []
        pods = await asyncio.to_thread(self.kube.stage_pods, namespace, uid) if jobs else []
        runs = stage_runs(jobs, pods)
        resolution: Resolved | Unresolvable | None = None
        if status.get("snapshot") is None and current_phase(status) not in TERMINAL:
            resolution = await self.resolve(body)
        progress = None
        store = store_uri(namespace, uid, self.stage_settings.bucket_template)
        if any(r.active and not r.succeeded for r in runs.values()):
            progress = await self._read(store, "stages/progress.json")
        runs = await self._fill_results(store, runs)
        return Observation(
            generation=int(meta.get("generation") or 1),
            suspend=bool((body.get("spec") or {}).get("suspend")),
            status=status,
            runs=runs,
            now=self.clock(),
            resolution=resolution,
            progress=progress,
        )

    async def _read(self, store: str, key: str) -> dict[str, Any] | None:
        try:
            return await asyncio.to_thread(self.store.get_json, store, key)
        except Exception:  # noqa: BLE001 - progress is best-effort
            return None

    async def _fill_results(self, store: str, runs: dict[str, StageRun]) -> dict[str, StageRun]:
        """A succeeded stage whose pod is gone, or a failed gate: take the store's record."""
        out = dict(runs)
        for step, run in runs.items():
            stage = step.split("-", 1)[0]
            needs_copy = run.succeeded and run.result is None
            gate = run.failed and run.exit_code == 3 and stage == "validate"
            if needs_copy or gate:
                record = await self._read(store, f"stages/{stage}.json")
                if record is not None:
                    merged = dict(record) | dict(run.result or {})
                    out[step] = StageRun(**{**run.__dict__, "result": merged})
        return out

    async def resolve(self, body: Mapping[str, Any]) -> Resolved | Unresolvable:
        """Look up what the job refers to (same namespace only) and resolve it."""
        spec = body.get("spec") or {}
        namespace = body["metadata"]["namespace"]

        async def lookup(plural: str, ref: Mapping[str, Any] | None, key: str) -> Any:
            if not ref or not ref.get(key):
                return None
            return await asyncio.to_thread(self.kube.get, plural, namespace, ref[key])

        return resolve(
            body,
            profile=await lookup("generationprofiles", spec.get("profileRef"), "name"),
            schema=await lookup("multitableschemas", spec.get("schemaRef"), "name"),
            model_job=await lookup(PLURAL, spec.get("fromModel"), "jobName"),
            bucket_template=self.stage_settings.bucket_template,
        )

    # -- acting ---------------------------------------------------------------------------

    async def act(
        self,
        body: Mapping[str, Any],
        obs: Observation,
        decision: Decision,
        logger: logging.Logger,
    ) -> None:
        """Carry out ``decision``: actions, then the status patch, then the events."""
        meta = body["metadata"]
        namespace = meta["namespace"]
        for action in decision.actions:
            if isinstance(action, Allocate):
                await self._allocate(body, obs, action, logger)
                return  # the next pass sees the allocation in the status
            if isinstance(action, CreateStage):
                if action.step.stage != "train" and obs.status.get("completed"):
                    self.faults.crash_point("between-stages")
                await self._create_stage(body, obs, action, logger)
                if action.step.stage == "train":
                    self.faults.crash_point("after-train-job-created")
            elif isinstance(action, DeleteStage):
                run = obs.runs[action.suffix]
                await asyncio.to_thread(self.kube.delete_job, namespace, run.name)
            elif isinstance(action, SuspendStage):
                run = obs.runs[action.suffix]
                await asyncio.to_thread(self.kube.suspend_job, namespace, run.name, action.suspend)
            elif isinstance(action, Consume):
                self.faults.crash_point("before-consume")
                await self.ledger.consume(action.allocation_id, action.epsilon)
                logger.info("budget: consumed ε %s of %s", action.epsilon, action.allocation_id)
                self.faults.crash_point("after-consume")
            elif isinstance(action, Release):
                await self.ledger.release(action.allocation_id)
                logger.info("budget: released %s", action.allocation_id)
            elif isinstance(action, PublishDownloads):
                download = await self.publish_downloads(body, obs.status, None)
                if download is not None:
                    decision.status["download"] = download
        if len(decision.status.get("completed", [])) > len(obs.status.get("completed", [])):
            self.faults.crash_point("after-result-read")
        await self._write(body, obs, decision, logger)

    async def _write(
        self, body: Mapping[str, Any], obs: Observation, decision: Decision, logger: logging.Logger
    ) -> None:
        meta = body["metadata"]
        now = self.clock()
        record = None if decision.phase is None else self._record(meta, obs, decision, now)
        records: list[dict[str, Any]] = []
        if record is not None:
            records = [r for r in pending(obs.status) if not self._published(meta["uid"], r)]
            records.append(record)
            if self.durable:
                # The transition is kept in the status (durable, with the phase) until the
                # mirror has it: a crash or a database outage after this patch loses nothing.
                decision.status["mirror"] = {"pending": records}
        if decision.status:
            await asyncio.to_thread(
                self.kube.patch_status, PLURAL, meta["namespace"], meta["name"], decision.status
            )
        if decision.events:
            # Events are best-effort and nothing waits for them: post them beside the loop.
            task = asyncio.create_task(self._post_events(body, decision.events, now, logger))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        completed = set(decision.status.get("completed", [])) - set(obs.status.get("completed", []))
        for step in completed:
            run = obs.runs.get(step)
            if run is not None and run.result and "stageTimeS" in run.result:
                self.metrics.stage_seconds.labels(stage=step.split("-", 1)[0]).observe(
                    float(run.result["stageTimeS"])
                )
        if "retries" in decision.status:
            self.metrics.retries.inc(
                int(decision.status["retries"]) - int(obs.status.get("retries", 0))
            )
        if decision.phase is not None:
            self.metrics.set_phase(meta["uid"], decision.phase.value)
            logger.info("phase %s", decision.phase.value)
            caught_up = await self._flush(meta["uid"], records, logger)
            if caught_up and self.durable and decision.phase in TERMINAL:
                await self._clear_mirror(meta)

    @staticmethod
    def _record(
        meta: Mapping[str, Any], obs: Observation, decision: Decision, now: datetime
    ) -> dict[str, Any]:
        """The lifecycle record of the transition ``decision`` makes (what the mirrors take)."""
        assert decision.phase is not None
        record: dict[str, Any] = {
            "type": EVENT_TYPES[decision.phase.value],
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "phase": decision.phase.value,
            "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        # The status after this write (the patch over what was observed): the mirrors
        # want every field known so far, not only those this transition changed.
        status = {**obs.status, **decision.status}
        for key in MIRRORED_FIELDS:
            if status.get(key) is not None:
                record[key] = status[key]
        if (status.get("output") or {}).get("uri"):
            record["outputUri"] = status["output"]["uri"]
        return record

    def _published(self, uid: str, record: Mapping[str, Any]) -> bool:
        return str(record.get("phase")) in self._mirrored.get(uid, set())

    async def _flush(self, uid: str, records: list[dict[str, Any]], logger: logging.Logger) -> bool:
        """Publish ``records`` in order; whether all of them are now published."""
        for record in records:
            if self._published(uid, record):
                continue
            try:
                await asyncio.to_thread(self.publisher.publish, record)
            except Exception as exc:  # noqa: BLE001 - kept in status.mirror; retried
                if uid not in self._behind:
                    logger.warning(
                        "could not mirror %s (kept in status.mirror.pending; retried every "
                        "%.0fs): %s",
                        record.get("type"),
                        self.interval,
                        exc,
                    )
                self._behind.add(uid)
                return False
            self._mirrored.setdefault(uid, set()).add(str(record.get("phase")))
        if uid in self._behind:
            logger.info("mirror caught up")
            self._behind.discard(uid)
        return True

    async def _catch_up(self, body: Mapping[str, Any], logger: logging.Logger) -> None:
        """Publish what ``status.mirror.pending`` holds; clear it once a finished job's is out."""
        meta = body["metadata"]
        status = body.get("status") or {}
        records = pending(status)
        if not await self._flush(meta["uid"], records, logger):
            return
        if current_phase(status) in TERMINAL:
            await self._clear_mirror(meta)

    async def _clear_mirror(self, meta: Mapping[str, Any]) -> None:
        """A finished job's status is never written again: drop what the mirror now has."""
        await asyncio.to_thread(
            self.kube.patch_status, PLURAL, meta["namespace"], meta["name"], {"mirror": None}
        )

    # -- downloads ------------------------------------------------------------------------

    async def publish_downloads(
        self, body: Mapping[str, Any], status: Mapping[str, Any], refresh: str | None
    ) -> dict[str, Any] | None:
        """Write ``<job>-download`` with fresh presigned URLs; the ``status.download`` value.

        ``None`` when the store holds nothing to download (no object storage configured).
        """
        meta = body["metadata"]
        namespace, uid = meta["namespace"], meta["uid"]
        store = store_uri(namespace, uid, self.stage_settings.bucket_template)
        keys = await asyncio.to_thread(self.store.list_keys, store, "")
        names = downloads.files(keys)
        if not names:
            return None
        spec = (status.get("snapshot") or {}).get("spec")
        ttl = downloads.ttl_seconds(spec, self.presign_ttl_seconds)
        now = self.clock()
        urls = {}
        for name in names:
            urls[name] = await asyncio.to_thread(self.store.presign_get, store, name, ttl)
        expiry = downloads.expires_at(now, ttl)
        secret = downloads.secret_name(meta["name"])
        await asyncio.to_thread(
            self.kube.ensure_secret,
            namespace,
            secret,
            urls,
            labels={UID_LABEL: uid},
            annotations={downloads.EXPIRES_ANNOTATION: expiry},
            owner=body,
        )
        return downloads.status(secret, names, expiry, refresh)

    async def refresh_downloads(self, body: Mapping[str, Any], logger: logging.Logger) -> None:
        """Renew the URLs of a COMPLETE job (the refresh annotation changed)."""
        meta = body["metadata"]
        status = body.get("status") or {}
        value = (meta.get("annotations") or {}).get(downloads.REFRESH_ANNOTATION)
        if value is None or (status.get("download") or {}).get("refreshedFor") == value:
            return
        if current_phase(status) is not Phase.COMPLETE:
            logger.info("download refresh asked before the job is COMPLETE: nothing to renew")
            return
        download = await self.publish_downloads(body, status, value)
        if download is None:
            return
        await asyncio.to_thread(
            self.kube.patch_status, PLURAL, meta["namespace"], meta["name"], {"download": download}
        )
        logger.info("download URLs renewed until %s", download["expiresAt"])
        await asyncio.to_thread(
            self.kube.post_event,
            body,
            "Normal",
            "DownloadRenewed",
            f"Secret {download['secretName']}: URLs valid until {download['expiresAt']}",
            self.clock(),
        )

    async def _post_events(
        self, body: Mapping[str, Any], events: list[Emit], now: datetime, logger: logging.Logger
    ) -> None:
        for event in events:
            try:
                await asyncio.to_thread(
                    self.kube.post_event, body, event.type, event.reason, event.message, now
                )
            except Exception as exc:  # noqa: BLE001 - events are best-effort
                logger.warning("could not post event %s: %s", event.reason, exc)

    async def _allocate(
        self, body: Mapping[str, Any], obs: Observation, action: Allocate, logger: logging.Logger
    ) -> None:
        meta = body["metadata"]
        try:
            allocation_id = await self.ledger.allocate(
                meta["namespace"],
                action.dataset,
                action.epsilon,
                action.delta,
                meta["uid"],
            )
        except BudgetRefused as exc:
            decision = failed(obs, cond.BUDGET_EXCEEDED, f"privacy budget exceeded: {exc}")
            await self._write(body, obs, decision, logger)
            return
        except BudgetUnavailable as exc:
            # Nothing was reserved. An outage is not the job's fault: it waits and retries.
            message = f"waiting for the privacy ledger (retried every {self.interval:.0f}s): {exc}"
            if obs.status.get("message") != message[:300]:
                logger.warning("%s", message)
            await self._write(
                body, obs, waiting(obs, cond.BUDGET_UNAVAILABLE, message[:300]), logger
            )
            return
        logger.info("budget: allocated ε %s as %s", action.epsilon, allocation_id)
        self.faults.crash_point("after-allocate")
        await asyncio.to_thread(
            self.kube.patch_status,
            PLURAL,
            meta["namespace"],
            meta["name"],
            allocated_status(obs, allocation_id, action.epsilon, action.delta),
        )

    @staticmethod
    def _job_model(body: Mapping[str, Any], spec: Mapping[str, Any]) -> SynthesisJob:
        meta = body["metadata"]
        return SynthesisJob.model_validate(
            {
                "metadata": {
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "uid": meta["uid"],
                },
                "spec": dict(spec),
            }
        )

    async def _create_stage(
        self, body: Mapping[str, Any], obs: Observation, action: CreateStage, logger: logging.Logger
    ) -> None:
        namespace = body["metadata"]["namespace"]
        snapshot = obs.status["snapshot"]
        await self._prepare_tenant(namespace)
        job = self._job_model(body, snapshot["spec"])
        # The live spec decides suspension; the snapshot decides everything else.
        job.spec.suspend = obs.suspend
        manifest = build_stage_job(
            job,
            action.step.stage,
            self.stage_settings,
            generator=action.step.generator,
            suffix=action.step.suffix,
            schema=snapshot.get("schema"),
        )
        created = await asyncio.to_thread(self.kube.create_job, manifest)
        logger.info(
            "stage Job %s %s", manifest["metadata"]["name"], "created" if created else "exists"
        )

    async def _prepare_tenant(self, namespace: str) -> None:
        """The tenant's bucket and the store Secret stage pods read (once per process)."""
        if namespace in self._tenants:
            return
        bucket = tenant_bucket(namespace, self.stage_settings.bucket_template)
        await asyncio.to_thread(self.store.ensure_bucket, bucket)
        secret = self.stage_settings.s3_secret_name
        if self.store_credentials is not None and secret:
            await asyncio.to_thread(
                self.kube.ensure_secret,
                namespace,
                secret,
                {
                    "accessKey": self.store_credentials.access_key,
                    "secretKey": self.store_credentials.secret_key,
                },
            )
        self._tenants.add(namespace)

    # -- deletion -------------------------------------------------------------------------

    async def finalize(self, body: Mapping[str, Any], logger: logging.Logger) -> None:
        """Stop and remove the stage Jobs, settle the budget; never wait past the timeout."""
        try:
            await asyncio.wait_for(self._finalize(body, logger), timeout=self.finalizer_timeout)
        except TimeoutError:
            logger.warning(
                "cleanup did not finish within %.0fs; letting the deletion proceed "
                "(owner references still garbage-collect the stage Jobs)",
                self.finalizer_timeout,
            )
        self.metrics.set_phase(body["metadata"]["uid"], None)

    async def _finalize(self, body: Mapping[str, Any], logger: logging.Logger) -> None:
        meta = body["metadata"]
        namespace, uid = meta["namespace"], meta["uid"]
        status = dict(body.get("status") or {})
        jobs = await asyncio.to_thread(self.kube.stage_jobs, namespace, uid)
        pods = await asyncio.to_thread(self.kube.stage_pods, namespace, uid) if jobs else []
        runs = stage_runs(jobs, pods)
        deleted = await asyncio.to_thread(self.kube.delete_stage_jobs, namespace, uid)
        if deleted:
            logger.info("deleted %d stage Job(s)", deleted)
        self.faults.crash_point("in-finalizer")
        action = settle(status, runs)
        if isinstance(action, Consume):
            await self.ledger.consume(action.allocation_id, action.epsilon)
            logger.info(
                "budget: consumed ε %s of %s (deleted after training started)",
                action.epsilon,
                action.allocation_id,
            )
        elif isinstance(action, Release):
            await self.ledger.release(action.allocation_id)
            logger.info("budget: released %s (deleted before training)", action.allocation_id)
