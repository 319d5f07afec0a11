"""Operator settings: environment variables under ``AUMOS_``, the names the chart's ConfigMap sets.

One pydantic-settings model is the whole configuration surface (see docs/api.md, "Operator
environment"); :mod:`tabular_operator.bootstrap` turns it into adapters. Secrets arrive as
environment variables from ``secretKeyRef`` (the chart never puts a credential in the
ConfigMap), and this model never logs them.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """Everything the operator reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="AUMOS_", extra="ignore")

    log_level: str = "info"
    log_format: str = "json"

    runner_image_core: str = "ghcr.io/aumos/tabular-runner:0.1.0-core"
    runner_image_argn: str = "ghcr.io/aumos/tabular-runner:0.1.0-argn"
    runner_image_pull_policy: str = "IfNotPresent"
    runner_service_account: str = "aumos-tabular-engine-runner"
    runner_default_cpu: str | None = Field(
        default=None, description="CPU request of a stage pod whose job sets none."
    )
    runner_default_memory: str | None = Field(
        default=None, description="Memory request of a stage pod whose job sets none."
    )
    stage_ttl_seconds: int = Field(default=86400, ge=0)
    stage_active_deadline_seconds: int = Field(default=86400, ge=1)
    stage_backoff_limit: int = Field(default=2, ge=0)

    kafka_enabled: bool = False
    kafka_bootstrap_servers: str = ""
    kafka_topic_prefix: str = "aumos.tabular"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: SecretStr | None = None
    kafka_sasl_password: SecretStr | None = None

    s3_endpoint: str = ""
    s3_region: str = ""
    s3_bucket_template: str = "aumos-tab-{tenant}"
    s3_presign_ttl_seconds: int = 3600
    s3_public_endpoint: str = Field(
        default="",
        description="Address users download from (presigned URLs are signed for it); empty: "
        "s3_endpoint.",
    )
    s3_output_retention_days: int = Field(
        default=30,
        ge=0,
        description="Days after which a tenant bucket's lifecycle rule expires job artifacts "
        "(objects under tab-jobs/); 0: no rule.",
    )
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_store_secret: str = Field(
        default="aumos-tabular-store",
        description="Secret the operator writes into a tenant namespace so that stage pods "
        "reach the artifact store (accessKey/secretKey); none is written without S3 keys.",
    )

    database_url: SecretStr | None = None
    privacy_engine_url: str = ""
    privacy_engine_token: SecretStr | None = None
    privacy_engine_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Per-request timeout of the external privacy engine."
    )
    privacy_engine_retries: int = Field(
        default=3, ge=0, description="Retries of a failed privacy-engine call (idempotent)."
    )
    default_budget_epsilon: float | None = Field(
        default=None,
        gt=0,
        description="PostgreSQL ledger: ε a namespace may spend (all time) when no "
        "PrivacyBudget applies to a job; unset: such jobs are refused.",
    )
    default_budget_delta: float = Field(
        default=1e-5, gt=0, lt=1, description="δ of the default budget."
    )
    ledger_file: str = Field(
        default="",
        description="File-backed ledger (JSON lines) for a single-replica operator without "
        "PostgreSQL; empty: the unmetered ledger (allocations recorded, no cap).",
    )

    metrics_port: int = Field(default=9090, ge=0, le=65535)
    operator_namespace: str = "default"
    reconcile_interval_seconds: float = Field(
        default=10.0, gt=0, description="Longest wait between two looks at a running job."
    )
    progress_interval_seconds: float = Field(
        default=15.0, gt=0, description="How often a running stage's progress is read."
    )
    finalizer_timeout_seconds: float = Field(
        default=60.0, gt=0, description="A deletion never waits longer than this for cleanup."
    )
    fault_points: str = Field(default="", description="Test only: crash points to arm.")
    fault_once_dir: str = Field(default="", description="Test only: fire each point once.")

    @property
    def images(self) -> dict[str, str]:
        """Engine → runner image."""
        return {"core": self.runner_image_core, "argn": self.runner_image_argn}

    def secret(self, name: str) -> str | None:
        """The plain value of a secret setting (``None`` when unset)."""
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else None
