"""The composition root: settings → adapters → the controller (cosmicpython's bootstrap).

Tests build the same objects with their own settings (real local servers) through
:func:`build`; nothing else in the operator constructs an adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tabular_operator.budget import FileLedger, Ledger, UnmeteredLedger
from tabular_operator.controller import JobController, StoreCredentials
from tabular_operator.events import LogPublisher, Publisher
from tabular_operator.faults import Faults
from tabular_operator.k8s import Kube, load_api_client
from tabular_operator.manifests import StageSettings
from tabular_operator.metrics import Metrics
from tabular_operator.settings import OperatorSettings
from tabular_operator.store import NoStore, S3Store, StorePort

if TYPE_CHECKING:
    from tabular_operator.relay import OutboxRelay


@dataclass
class App:
    """Everything the handlers use."""

    settings: OperatorSettings
    kube: Kube
    controller: JobController
    metrics: Metrics
    ledger_kind: str
    ledger: Ledger
    ledger_enforced: bool
    """Whether the ledger enforces caps (the unmetered one records nothing)."""
    publisher_kind: str = "log"
    relay: OutboxRelay | None = None
    """The outbox relay to Kafka (started by :meth:`start_background`), when configured."""
    catalog_mirror: Callable[[str, Mapping[str, Any], Mapping[str, Any]], None] | None = None
    """Upserts a GenerationProfile's or MultiTableSchema's mirror row (with a database)."""
    catalog_forget: Callable[[str, str, str], bool] | None = None
    """Deletes such a row (kind, tenant, uid) when the object is deleted."""
    _catalog_seen: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def mirror_catalog(self, kind: str, body: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        """Mirror a catalog object when its generation or status is new to this process.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database cannot be reached (the handler's
                next run, at most 30 s later, tries again).
        """
        if self.catalog_mirror is None:
            return
        uid = body["metadata"]["uid"]
        seen = (body["metadata"].get("generation"), dict(status))
        if self._catalog_seen.get(uid) == seen:
            return
        self.catalog_mirror(kind, body, status)
        self._catalog_seen[uid] = seen

    def forget_catalog(self, kind: str, body: Mapping[str, Any]) -> None:
        """Remove a deleted catalog object's mirror row (no-op without a database)."""
        meta = body["metadata"]
        self._catalog_seen.pop(meta["uid"], None)
        if self.catalog_forget is not None:
            self.catalog_forget(kind, meta["namespace"], meta["uid"])

    def start_background(self) -> None:
        """Start what runs beside the handlers (the outbox relay, on its own thread)."""
        logging.getLogger("tabular_operator").info("lifecycle events: %s", self.publisher_kind)
        if self.relay is not None:
            self.relay.start()

    def stop_background(self) -> None:
        """Stop it; unsent events stay in the outbox for the next start."""
        if self.relay is not None:
            self.relay.stop()


def stage_settings(settings: OperatorSettings, *, with_store_secret: bool) -> StageSettings:
    """How stage Jobs are built, from the operator's settings."""
    return StageSettings(
        images=settings.images,
        service_account=settings.runner_service_account,
        pull_policy=settings.runner_image_pull_policy,
        ttl_seconds_after_finished=settings.stage_ttl_seconds,
        active_deadline_seconds=settings.stage_active_deadline_seconds,
        backoff_limit=settings.stage_backoff_limit,
        s3_endpoint=settings.s3_endpoint or None,
        s3_region=settings.s3_region or None,
        s3_secret_name=settings.s3_store_secret if with_store_secret else None,
        bucket_template=settings.s3_bucket_template,
        default_cpu=settings.runner_default_cpu,
        default_memory=settings.runner_default_memory,
    )


def build_ledger(settings: OperatorSettings) -> tuple[Ledger, str]:
    """The configured ledger and its name (for the startup log).

    In order: an external privacy engine (``AUMOS_PRIVACY_ENGINE_URL``); the PostgreSQL ledger
    (``AUMOS_DATABASE_URL``; its migrations are applied first); the file ledger
    (``AUMOS_LEDGER_FILE``); else the unmetered one.
    """
    # The adapters import their client libraries only when configured.
    if settings.privacy_engine_url:
        from tabular_operator.ledger_http import HttpLedger

        ledger: Ledger = HttpLedger(
            settings.privacy_engine_url,
            token=settings.secret("privacy_engine_token"),
            timeout=settings.privacy_engine_timeout_seconds,
            retries=settings.privacy_engine_retries,
        )
        return ledger, f"privacy engine {settings.privacy_engine_url}"
    database_url = settings.secret("database_url")
    if database_url:
        from tabular_operator.ledger_pg import PostgresLedger, migrate

        migrate(database_url)
        ledger = PostgresLedger(
            database_url,
            default_epsilon=settings.default_budget_epsilon,
            default_delta=settings.default_budget_delta,
        )
        default = (
            f"default ε {settings.default_budget_epsilon:g} without a PrivacyBudget"
            if settings.default_budget_epsilon is not None
            else "a PrivacyBudget required"
        )
        return ledger, f"postgresql ({default})"
    if settings.ledger_file:
        return FileLedger(settings.ledger_file), f"file {settings.ledger_file}"
    return UnmeteredLedger(), "unmetered (no cap: the PostgreSQL ledger is not configured)"


def build_publisher(settings: OperatorSettings) -> tuple[Publisher, OutboxRelay | None, str]:
    """The lifecycle publisher, the outbox relay (or ``None``) and their description.

    With ``AUMOS_DATABASE_URL``: the PostgreSQL mirror and outbox (migrations applied first),
    and, when ``AUMOS_KAFKA_ENABLED`` and ``AUMOS_KAFKA_BOOTSTRAP_SERVERS`` are set, the relay
    that sends the outbox to Kafka (woken by each commit). Without a database: log lines.
    """
    database_url = settings.secret("database_url")
    if not database_url:
        return LogPublisher(), None, "log"
    from tabular_operator.ledger_pg import migrate
    from tabular_operator.mirror_pg import PostgresPublisher

    migrate(database_url)
    relay = None
    kind = "postgresql mirror + outbox"
    if settings.kafka_enabled and settings.kafka_bootstrap_servers:
        from tabular_operator.relay import OutboxRelay, producer_options, topic

        relay = OutboxRelay(
            database_url,
            settings.kafka_bootstrap_servers,
            topic_prefix=settings.kafka_topic_prefix,
            options=producer_options(
                settings.kafka_security_protocol,
                settings.kafka_sasl_mechanism,
                settings.secret("kafka_sasl_username"),
                settings.secret("kafka_sasl_password"),
            ),
            faults=Faults(settings.fault_points, settings.fault_once_dir),
        )
        kind += f" → kafka {topic(settings.kafka_topic_prefix)}"
    publisher = PostgresPublisher(database_url, on_commit=relay.wake if relay else None)
    return publisher, relay, kind


def build(settings: OperatorSettings | None = None, *, kube: Kube | None = None) -> App:
    """Wire the operator from its settings."""
    settings = settings or OperatorSettings()
    access, secret = settings.secret("s3_access_key"), settings.secret("s3_secret_key")
    store: StorePort = NoStore()
    credentials = None
    if settings.s3_endpoint and access and secret:
        store = S3Store(
            settings.s3_endpoint,
            access,
            secret,
            settings.s3_region,
            retention_days=settings.s3_output_retention_days,
            public_endpoint=settings.s3_public_endpoint,
        )
        credentials = StoreCredentials(access, secret)
    kube = kube or Kube(load_api_client())
    ledger, ledger_kind = build_ledger(settings)
    publisher, relay, publisher_kind = build_publisher(settings)
    metrics = Metrics()
    controller = JobController(
        kube,
        store,
        ledger,
        publisher,
        stage_settings(settings, with_store_secret=credentials is not None),
        store_credentials=credentials,
        metrics=metrics,
        faults=Faults(settings.fault_points, settings.fault_once_dir),
        interval=settings.reconcile_interval_seconds,
        finalizer_timeout=settings.finalizer_timeout_seconds,
        presign_ttl_seconds=settings.s3_presign_ttl_seconds,
        durable_publisher=not isinstance(publisher, LogPublisher),
    )
    enforced = not isinstance(ledger, UnmeteredLedger)
    return App(
        settings,
        kube,
        controller,
        metrics,
        ledger_kind,
        ledger,
        enforced,
        publisher_kind,
        relay,
        catalog_mirror=build_catalog_mirror(publisher),
        catalog_forget=getattr(publisher, "forget_catalog", None),
    )


def build_catalog_mirror(
    publisher: Publisher,
) -> Callable[[str, Mapping[str, Any], Mapping[str, Any]], None] | None:
    """The catalog mirror of the PostgreSQL publisher (``None`` with log lines only)."""
    if isinstance(publisher, LogPublisher):
        return None
    from tabular_operator.mirror_pg import PostgresPublisher, catalog_record

    assert isinstance(publisher, PostgresPublisher)
    mirror = publisher

    def write(kind: str, body: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        mirror.mirror_catalog(kind, catalog_record(body, status))

    return write
