"""The API contract: spec and status of every ``tabular.aumos.io/v1alpha1`` resource.

These pydantic v2 models are the one contract shared by the CLI, the runner stages and the
operator; the CRDs in ``crds/`` are generated from them. The module imports nothing heavy
(no pandas, torch or SDV) so the operator can use it cheaply.

Field names are camelCase on the wire (as in every Kubernetes API) and snake_case in Python.
Unknown fields are refused with a message naming them, so a typo never silently does nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from tabular_runner.errors import UserInputError

API_GROUP = "tabular.aumos.io"
API_VERSION_NAME = "v1alpha1"
API_VERSION = f"{API_GROUP}/{API_VERSION_NAME}"

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class _Model(BaseModel):
    """Base of every spec model: camelCase aliases, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """Return the JSON-ready camelCase form, without unset optional fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# ---------------------------------------------------------------------------------------
# Generators


class GeneratorType(StrEnum):
    """Generator families the runner offers."""

    GAUSSIAN_COPULA = "gaussian_copula"
    CTGAN = "ctgan"
    TVAE = "tvae"
    COPULAGAN = "copulagan"
    HMA = "hma"
    MST = "mst"
    AIM = "aim"
    PATECTGAN = "patectgan"
    DPCTGAN = "dpctgan"
    TABULARARGN = "tabularargn"
    AUTO = "auto"


DP_GENERATORS = frozenset(
    {GeneratorType.MST, GeneratorType.AIM, GeneratorType.PATECTGAN, GeneratorType.DPCTGAN}
)
"""Generators that are differentially private by construction: ``privacy`` is required."""

DP_OPTIONAL_GENERATORS = frozenset({GeneratorType.TABULARARGN, GeneratorType.AUTO})
"""Generators that train with DP when ``privacy`` is set and without it otherwise."""

NON_DP_GENERATORS = frozenset(GeneratorType) - DP_GENERATORS - DP_OPTIONAL_GENERATORS

GENERATOR_PARAMS: dict[GeneratorType, frozenset[str]] = {
    GeneratorType.GAUSSIAN_COPULA: frozenset(
        {"defaultDistribution", "numericalDistributions", "enforceMinMaxValues"}
    ),
    GeneratorType.CTGAN: frozenset(
        {"epochs", "batchSize", "embeddingDim", "generatorDim", "discriminatorDim", "pac"}
    ),
    GeneratorType.TVAE: frozenset(
        {"epochs", "batchSize", "embeddingDim", "compressDims", "decompressDims", "l2scale"}
    ),
    GeneratorType.COPULAGAN: frozenset(
        {"epochs", "batchSize", "embeddingDim", "generatorDim", "discriminatorDim", "pac"}
    ),
    GeneratorType.HMA: frozenset({"defaultDistribution"}),
    GeneratorType.MST: frozenset({"maxBins"}),
    GeneratorType.AIM: frozenset({"maxBins", "maxModelSize", "maxIters"}),
    GeneratorType.PATECTGAN: frozenset({"epochs", "batchSize", "maxBins"}),
    GeneratorType.DPCTGAN: frozenset({"epochs", "batchSize", "maxBins"}),
    GeneratorType.TABULARARGN: frozenset({"maxEpochs", "maxTrainingTimeSeconds", "modelSize"}),
    GeneratorType.AUTO: frozenset({"timeBudgetSeconds"}),
}
"""Hyper-parameters each generator accepts in ``generator.params`` (camelCase)."""

COMMON_GENERATOR_PARAMS = frozenset(
    {"preprocessorEpsilonFraction", "useGpu", "sequenceEpochs", "sequenceModel"}
)
"""Parameters every generator accepts (ignored where they do not apply). For ordered
histories in the core engine: ``sequenceModel`` (``auto``, ``wide``: a GaussianCopula over
each history as one row, ``par``: SDV PAR; ``auto`` takes wide up to 64 events per history)
and ``sequenceEpochs`` (PAR's training epochs)."""


class GeneratorSpec(_Model):
    """Which generator to train and its hyper-parameters."""

    type: GeneratorType = Field(description="Generator family; `auto` picks one per dataset.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Hyper-parameters of the chosen generator."
    )

    @model_validator(mode="after")
    def _known_params(self) -> GeneratorSpec:
        allowed = GENERATOR_PARAMS[self.type] | COMMON_GENERATOR_PARAMS
        for key in self.params:
            if key not in allowed:
                raise ValueError(
                    f"unknown parameter {key!r} for generator {self.type.value}; "
                    f"allowed: {', '.join(sorted(allowed))}"
                )
        return self

    @property
    def is_dp(self) -> bool:
        """True for generators that are DP by construction."""
        return self.type in DP_GENERATORS


# ---------------------------------------------------------------------------------------
# Source, privacy, constraints, gate, output, resources


class DataFormat(StrEnum):
    """Tabular file formats read and written."""

    CSV = "csv"
    PARQUET = "parquet"


class SecretRef(_Model):
    """Reference to a Secret holding credentials (never inline secrets)."""

    name: str = Field(min_length=1, description="Name of a Secret in the job's namespace.")


class SourceSpec(_Model):
    """Where the real data is read from."""

    uri: str = Field(
        description="`file://path` (embedded; relative to the manifest) or `s3://bucket/key`."
    )
    format: DataFormat | None = Field(
        default=None, description="csv or parquet; inferred from the file extension if unset."
    )
    secret_ref: SecretRef | None = Field(
        default=None, description="Secret with accessKey/secretKey for an s3:// source."
    )

    @field_validator("uri")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not (value.startswith(("file://", "s3://"))):
            raise ValueError(
                f"unsupported uri {value!r}; use file://path/to/data.csv or s3://bucket/key"
            )
        if value in ("file://", "s3://"):
            raise ValueError(
                "the uri names no file; use file://path/to/data.csv or s3://bucket/key"
            )
        if "@" in value.split("/")[2] and value.startswith("s3://"):
            raise ValueError(
                "credentials must not be inline in the uri; put them in a Secret and set secretRef"
            )
        return value

    def resolved_format(self) -> DataFormat:
        """Return the explicit format or the one implied by the file extension."""
        if self.format is not None:
            return self.format
        lowered = self.uri.lower()
        if lowered.endswith((".parquet", ".pq")):
            return DataFormat.PARQUET
        return DataFormat.CSV


MAX_PUBLIC_COLUMNS = 1024
"""Most columns ``publicBounds`` (and, separately, ``publicCategories``) may name."""

MAX_PUBLIC_CATEGORIES = 1000
"""Most values one column's public category list may hold."""

MAX_CATEGORY_LENGTH = 256
"""Longest public category value (characters)."""

PUBLIC_KNOWLEDGE = (
    "Must be public knowledge (a data dictionary, a published standard, physical limits), "
    "never computed from the data being synthesised: bounds or categories read off the "
    "private data void the differential-privacy guarantee."
)


class PublicBounds(_Model):
    """Public range of one numeric (or datetime) column: SmartNoise needs no ε to find it."""

    min: float = Field(
        allow_inf_nan=False,
        description="Lower bound; smaller values are clamped to it before training. For a "
        "datetime column: seconds since 1970-01-01T00:00:00Z.",
    )
    max: float = Field(
        allow_inf_nan=False,
        description="Upper bound (> min); larger values are clamped to it before training.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> PublicBounds:
        if not self.min < self.max:
            raise ValueError(f"min ({self.min:g}) must be less than max ({self.max:g})")
        return self


PublicCategoryList = Annotated[
    list[Annotated[str, Field(max_length=MAX_CATEGORY_LENGTH)]],
    Field(min_length=1, max_length=MAX_PUBLIC_CATEGORIES),
]


class PrivacySpec(_Model):
    """Differential-privacy parameters of a DP generator (ε covers the whole job).

    ``publicBounds`` and ``publicCategories`` describe the columns' domains from public
    knowledge, so the generator spends no ε discovering them.
    """

    epsilon: float = Field(gt=0, le=100, description="Total ε the job may spend (> 0).")
    delta: float = Field(default=1e-6, gt=0, lt=1, description="δ of (ε, δ)-DP; 0 < δ < 1.")
    public_bounds: dict[str, PublicBounds] | None = Field(
        default=None,
        max_length=MAX_PUBLIC_COLUMNS,
        description="Public `{min, max}` per numeric or datetime column, by column name. "
        "A column given here needs no preprocessing ε for DP bounds; values outside are "
        f"clamped. Used by mst, aim, patectgan and dpctgan. {PUBLIC_KNOWLEDGE}",
    )
    public_categories: dict[str, PublicCategoryList] | None = Field(
        default=None,
        max_length=MAX_PUBLIC_COLUMNS,
        description="Public list of the values of a categorical column, by column name "
        "(strings; `true`/`false` for a boolean column). Synthetic values come from this "
        "list only; training rows whose value is not in it are dropped (missing values stay "
        f"missing). Used by mst, aim, patectgan and dpctgan. {PUBLIC_KNOWLEDGE}",
    )

    @model_validator(mode="after")
    def _public_domains(self) -> PrivacySpec:
        for column in self.public_bounds or {}:
            if not column:
                raise ValueError("[publicBounds] a column name is empty")
        for column, values in (self.public_categories or {}).items():
            if not column:
                raise ValueError("[publicCategories] a column name is empty")
            if column in (self.public_bounds or {}):
                raise ValueError(
                    f"[publicCategories.{column}] column {column!r} has publicBounds too; "
                    "give bounds for a numeric column or categories for a categorical one"
                )
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(
                    f"[publicCategories.{column}] lists {', '.join(map(repr, repeated))} "
                    "more than once"
                )
        return self

    @property
    def has_public_domains(self) -> bool:
        """True when ``publicBounds`` or ``publicCategories`` names at least one column."""
        return bool(self.public_bounds) or bool(self.public_categories)


class RangeConstraint(_Model):
    """Values of ``column`` lie in [min, max]; out-of-range values are clamped."""

    type: Literal["range"]
    column: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> RangeConstraint:
        if self.min is None and self.max is None:
            raise ValueError("a range constraint needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class RegexConstraint(_Model):
    """Values of ``column`` fully match ``pattern``; other rows are rejected and resampled."""

    type: Literal["regex"]
    column: str
    pattern: str

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from exc
        return value


class UniqueConstraint(_Model):
    """The combination of ``columns`` is unique; duplicates are rejected and resampled."""

    type: Literal["unique"]
    columns: list[str] = Field(min_length=1)


class InequalityConstraint(_Model):
    """``low`` <= ``high`` (< when strict) in every row; violating rows are repaired."""

    type: Literal["inequality"]
    low: str
    high: str
    strict: bool = False


class FixedCombinationsConstraint(_Model):
    """Only combinations of ``columns`` seen in the real data may appear."""

    type: Literal["fixedCombinations"]
    columns: list[str] = Field(min_length=2)


Constraint = Annotated[
    RangeConstraint
    | RegexConstraint
    | UniqueConstraint
    | InequalityConstraint
    | FixedCombinationsConstraint,
    Field(discriminator="type"),
]


def constraint_columns(constraint: Constraint) -> list[str]:
    """Return the columns a constraint refers to."""
    if isinstance(constraint, RangeConstraint | RegexConstraint):
        return [constraint.column]
    if isinstance(constraint, InequalityConstraint):
        return [constraint.low, constraint.high]
    return list(constraint.columns)


class QualityGate(_Model):
    """Release gate: the job fails (report still written) when a threshold is missed."""

    min_fidelity: float | None = Field(default=None, ge=0, le=1)
    min_diagnostic: float | None = Field(default=None, ge=0, le=1)
    max_privacy_risk: float | None = Field(
        default=None, ge=0, le=1, description="Highest Anonymeter risk allowed (0..1)."
    )
    max_dcr_share: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Highest share of synthetic rows closer to training than holdout rows.",
    )


class ValidationSpec(_Model):
    """How the validate stage samples; bounds the cost of scoring."""

    holdout_fraction: float = Field(default=0.2, gt=0, lt=0.9)
    quality_sample_rows: int = Field(default=20000, ge=100)
    privacy_sample_rows: int = Field(default=5000, ge=100)
    attacks: int = Field(default=500, ge=10, description="Anonymeter attacks per evaluator.")
    privacy: bool = Field(default=True, description="Run Anonymeter and DCR.")


class OutputSpec(_Model):
    """Where and how the synthetic data is written."""

    format: DataFormat = DataFormat.PARQUET
    uri: str | None = Field(
        default=None, description="Prefix `s3://bucket/prefix` or `file://dir`; default per job."
    )
    download_ttl_seconds: int | None = Field(
        default=None,
        ge=1,
        le=604800,
        description="How long the presigned download URLs in the Secret `<job>-download` stay "
        "valid (seconds, at most 7 days); default: the operator's `s3.presignTtlSeconds` (1 h).",
    )

    @field_validator("uri")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith(("file://", "s3://"))):
            raise ValueError(f"unsupported uri {value!r}; use s3://bucket/prefix or file://dir")
        return value


class Toleration(_Model):
    """A pod toleration (subset of the core/v1 type)."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class StageResources(_Model):
    """Resources of one stage's pod."""

    cpu: str | None = Field(default=None, description="CPU request and limit, e.g. `2` or `500m`.")
    memory: str | None = Field(default=None, description="Memory request and limit, e.g. `4Gi`.")
    gpu: int = Field(default=0, ge=0, le=16, description="nvidia.com/gpu count.")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    priority_class_name: str | None = None


class ResourcesSpec(_Model):
    """Per-stage resources."""

    train: StageResources = Field(default_factory=StageResources)
    generate: StageResources = Field(default_factory=StageResources)
    validate_: StageResources = Field(default_factory=StageResources, alias="validate")


class LocalRef(_Model):
    """Reference to another resource in the same namespace."""

    name: str = Field(min_length=1)


class FromModel(_Model):
    """Re-sample a model trained by an earlier job: no new training, no new ε."""

    job_name: str | None = Field(default=None, description="An earlier SynthesisJob's name.")
    uri: str | None = Field(default=None, description="Or the model's uri directly.")

    @model_validator(mode="after")
    def _one(self) -> FromModel:
        if (self.job_name is None) == (self.uri is None):
            raise ValueError("set exactly one of jobName or uri")
        return self


class TableRef(_Model):
    """A table the job reads besides its source (a seed, a table with holes)."""

    uri: str = Field(
        description="`file://path` (relative to the manifest) or `s3://bucket/key`, read with "
        "the source's identity."
    )
    format: DataFormat | None = Field(
        default=None, description="csv or parquet; inferred from the file extension if unset."
    )

    @field_validator("uri")
    @classmethod
    def _scheme(cls, value: str) -> str:
        return SourceSpec._scheme(value)

    def resolved_format(self) -> DataFormat:
        """Return the explicit format or the one implied by the file extension."""
        return SourceSpec(uri=self.uri, format=self.format).resolved_format()


SHARES_TOLERANCE = 1e-6
"""How far ``rebalance.shares`` may sum from 1."""

MAX_REBALANCE_CATEGORIES = 1000


class RebalanceSpec(_Model):
    """Draw a categorical column's values in given shares (the rest of each row follows)."""

    column: str = Field(min_length=1, description="A categorical or boolean column.")
    shares: dict[str, float] = Field(
        min_length=1,
        max_length=MAX_REBALANCE_CATEGORIES,
        description="Category -> share of the output rows; shares sum to 1. Categories not "
        "named get none.",
    )

    @model_validator(mode="after")
    def _sum(self) -> RebalanceSpec:
        bad = [k for k, v in self.shares.items() if not 0 <= v <= 1]
        if bad:
            raise ValueError(f"[shares] each share is between 0 and 1 ({bad[0]!r} is not)")
        total = sum(self.shares.values())
        if abs(total - 1) > SHARES_TOLERANCE:
            raise ValueError(
                f"[shares] shares sum to {total:g}, not 1; make them add up to 1 "
                '(e.g. {">50K": 0.5, "<=50K": 0.5})'
            )
        return self


class GenerationSpec(_Model):
    """How to draw rows from the model: seeded, rebalanced, imputing, or at a temperature."""

    seed: TableRef | None = Field(
        default=None,
        description="One output row per seed row: the seed's columns are kept as given "
        "(an empty cell stays empty), the other columns are generated to fit them.",
    )
    rebalance: RebalanceSpec | None = Field(
        default=None, description="A categorical column drawn in the given shares."
    )
    impute: TableRef | None = Field(
        default=None,
        description="A table with the model's columns: its empty cells are filled, its "
        "present cells kept; one output row per row.",
    )
    temperature: float | None = Field(
        default=None,
        gt=0,
        le=5,
        description="Sampling temperature (< 1: more typical rows, > 1: more diverse); "
        "TabularARGN only.",
    )

    @model_validator(mode="after")
    def _one_table_control(self) -> GenerationSpec:
        given = [n for n in ("seed", "rebalance", "impute") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(
                f"[{given[1]}] set only one of seed, rebalance and impute (temperature "
                "combines with any)"
            )
        return self

    @property
    def requested(self) -> list[str]:
        """The controls asked for, by field name."""
        names = ("seed", "rebalance", "impute", "temperature")
        return [n for n in names if getattr(self, n) is not None]


# ---------------------------------------------------------------------------------------
# Resources


class ObjectMeta(BaseModel):
    """The part of Kubernetes metadata the runner reads; other fields are kept as they are."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(min_length=1, max_length=63)
    namespace: str | None = None
    uid: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _dns(cls, value: str) -> str:
        if not _DNS1123.match(value):
            raise ValueError(
                f"{value!r} is not a valid name; use lower-case letters, digits and '-'"
            )
        return value


class SequenceSpec(_Model):
    """A single table of event histories: rows of one entity, ordered (event logs, panels)."""

    entity_column: str = Field(
        min_length=1, description="The column that names the entity each row belongs to."
    )
    order_by: str = Field(
        min_length=1, description="The column that orders an entity's rows (numeric or datetime)."
    )


class SynthesisJobSpec(_Model):
    """What to synthesise, how, and what the result must satisfy."""

    source: SourceSpec | None = Field(default=None, description="Real data (single table).")
    schema_ref: LocalRef | None = Field(default=None, description="A MultiTableSchema.")
    profile_ref: LocalRef | None = Field(default=None, description="A GenerationProfile.")
    generator: GeneratorSpec | None = None
    rows: int | None = Field(default=None, ge=1, le=1_000_000_000)
    scale: float | None = Field(default=None, gt=0, le=1000)
    privacy: PrivacySpec | None = None
    constraints: list[Constraint] = Field(default_factory=list)
    quality_gate: QualityGate = Field(default_factory=QualityGate)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    queue_name: str | None = None
    suspend: bool = False
    from_model: FromModel | None = None
    generation: GenerationSpec | None = Field(
        default=None,
        description="Seeded, rebalanced or imputing generation, and temperature "
        "(single-table jobs; with or without fromModel).",
    )
    sequence: SequenceSpec | None = Field(
        default=None,
        description="The source is a table of histories: entityColumn groups rows, orderBy "
        "orders them (single-table jobs only; in a MultiTableSchema use orderBy).",
    )

    @model_validator(mode="after")
    def _cross_field(self) -> SynthesisJobSpec:
        if self.source is None and self.schema_ref is None and self.from_model is None:
            raise ValueError("[source] set source (single table) or schemaRef (multi-table)")
        if self.source is not None and self.schema_ref is not None:
            raise ValueError("[schemaRef] set only one of source and schemaRef")
        if self.generator is None and self.profile_ref is None:
            raise ValueError(
                "[generator] set generator (e.g. {type: gaussian_copula}) or profileRef"
            )
        if self.rows is not None and self.scale is not None:
            raise ValueError("[scale] set only one of rows and scale")
        if self.sequence is not None and self.schema_ref is not None:
            raise ValueError(
                "[sequence] a multi-table job marks histories with orderBy on a relationship "
                "of its MultiTableSchema; remove sequence"
            )
        if self.sequence is not None and self.sequence.entity_column == self.sequence.order_by:
            raise ValueError("[sequence.orderBy] must differ from sequence.entityColumn")
        if self.generation is not None and self.generation.requested:
            where = "schemaRef" if self.schema_ref is not None else "sequence"
            if self.schema_ref is not None or self.sequence is not None:
                raise ValueError(
                    f"[generation] generation controls apply to single-table jobs; remove "
                    f"generation or {where}"
                )
            fixed = self.generation.seed or self.generation.impute
            if fixed is not None and (self.rows is not None or self.scale is not None):
                which = "seed" if self.generation.seed is not None else "impute"
                raise ValueError(
                    f"[rows] with generation.{which} the output has one row per row of that "
                    "table; remove rows and scale"
                )
        if self.generator is not None:
            _check_privacy(self.generator.type, self.privacy)
            if self.generator.type is GeneratorType.HMA and self.schema_ref is None:
                raise ValueError("[schemaRef] generator hma needs schemaRef (a MultiTableSchema)")
        return self


def _check_privacy(kind: GeneratorType, privacy: PrivacySpec | None) -> None:
    if kind in DP_GENERATORS and privacy is None:
        raise ValueError(
            f"[privacy.epsilon] generator {kind.value} is differentially private: "
            "set privacy.epsilon (> 0)"
        )
    if kind in NON_DP_GENERATORS and privacy is not None:
        raise ValueError(
            f"[privacy] generator {kind.value} is not differentially private, so "
            "privacy.epsilon would not be honoured; remove privacy or choose mst, aim, "
            "patectgan, dpctgan or tabularargn"
        )
    if privacy is not None and privacy.has_public_domains and kind not in DP_GENERATORS:
        which = "publicBounds" if privacy.public_bounds else "publicCategories"
        users = ", ".join(sorted(g.value for g in DP_GENERATORS))
        raise ValueError(
            f"[privacy.{which}] generator {kind.value} does not use public bounds or "
            f"categories (only {users} do); remove them or choose one of those generators"
        )


class Phase(StrEnum):
    """Lifecycle phase of a SynthesisJob."""

    QUEUED = "QUEUED"
    TRAINING = "TRAINING"
    GENERATING = "GENERATING"
    VALIDATING = "VALIDATING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"


class Condition(_Model):
    """A Kubernetes-style condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: datetime
    observed_generation: int | None = None


class OutputStatus(_Model):
    """Where the outputs were written."""

    uri: str | None = None
    format: DataFormat | None = None


class SynthesisJobStatus(_Model):
    """Observed state of a SynthesisJob (written by the operator)."""

    model_config = ConfigDict(extra="allow")

    phase: Phase | None = None
    stage: str | None = None
    progress: float | None = Field(default=None, ge=0, le=1)
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    training_time_s: float | None = Field(default=None, alias="trainingTimeS")
    generation_time_s: float | None = Field(default=None, alias="generationTimeS")
    generator: str | None = None
    fidelity_score: float | None = None
    privacy_score: float | None = None
    privacy_risk: float | None = None
    epsilon_spent: float | None = None
    allocation_id: str | None = None
    rows_generated: int | None = None
    output: OutputStatus | None = None
    error_message: str | None = None
    message: str | None = Field(
        default=None,
        description="One line for people: what the job does now (stage, epoch) or why it failed.",
    )


class SynthesisJob(_Model):
    """A request to synthesise one table (or one database via ``schemaRef``)."""

    api_version: Literal["tabular.aumos.io/v1alpha1"] = "tabular.aumos.io/v1alpha1"
    kind: Literal["SynthesisJob"] = "SynthesisJob"
    metadata: ObjectMeta
    spec: SynthesisJobSpec
    status: SynthesisJobStatus | None = None


class GenerationProfileSpec(_Model):
    """A reusable generator, hyper-parameters, resources and gate."""

    generator: GeneratorSpec
    privacy: PrivacySpec | None = None
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    quality_gate: QualityGate = Field(default_factory=QualityGate)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    description: str | None = None

    @model_validator(mode="after")
    def _privacy(self) -> GenerationProfileSpec:
        _check_privacy(self.generator.type, self.privacy)
        return self


class GenerationProfileStatus(_Model):
    """Observed state of a GenerationProfile."""

    model_config = ConfigDict(extra="allow")

    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    used_by: int | None = Field(default=None, description="Jobs that reference it.")


class GenerationProfile(_Model):
    """A named, reusable generator configuration."""

    api_version: Literal["tabular.aumos.io/v1alpha1"] = "tabular.aumos.io/v1alpha1"
    kind: Literal["GenerationProfile"] = "GenerationProfile"
    metadata: ObjectMeta
    spec: GenerationProfileSpec
    status: GenerationProfileStatus | None = None


class ColumnSpec(_Model):
    """A column of a table in a MultiTableSchema."""

    name: str
    sdtype: Literal["numerical", "categorical", "boolean", "datetime", "id", "text"] | None = None


class TableSpec(_Model):
    """A table of a MultiTableSchema."""

    name: str = Field(min_length=1)
    source: SourceSpec
    primary_key: str | list[str] | None = None
    columns: list[ColumnSpec] = Field(default_factory=list)


class RelationshipSpec(_Model):
    """A foreign key from ``child.childKey`` to ``parent.parentKey`` (composite allowed)."""

    parent: str
    parent_key: str | list[str]
    child: str
    child_key: str | list[str]
    on_orphans: Literal["error", "drop", "null"] = "error"
    order_by: str | None = Field(
        default=None,
        min_length=1,
        description="Marks the child as an ordered history of each parent row (a sequence): "
        "the child column that orders the events (numeric or datetime).",
    )


class MultiTableSchemaSpec(_Model):
    """Tables and the relationships between them."""

    tables: list[TableSpec] = Field(min_length=1)
    relationships: list[RelationshipSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _refs(self) -> MultiTableSchemaSpec:
        names = [t.name for t in self.tables]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"duplicate table names: {', '.join(sorted(duplicates))}")
        for rel in self.relationships:
            for side in (rel.parent, rel.child):
                if side not in names:
                    raise ValueError(
                        f"relationship refers to unknown table {side!r}; tables: {', '.join(names)}"
                    )
        return self


class MultiTableSchemaStatus(_Model):
    """Observed state of a MultiTableSchema."""

    model_config = ConfigDict(extra="allow")

    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    valid: bool | None = None
    depth: int | None = None
    table_count: int | None = None
    message: str | None = None


class MultiTableSchema(_Model):
    """A relational schema to synthesise as a whole."""

    api_version: Literal["tabular.aumos.io/v1alpha1"] = "tabular.aumos.io/v1alpha1"
    kind: Literal["MultiTableSchema"] = "MultiTableSchema"
    metadata: ObjectMeta
    spec: MultiTableSchemaSpec
    status: MultiTableSchemaStatus | None = None


class PrivacyBudgetSpec(_Model):
    """A tenant's (namespace's) or a dataset's ε/δ cap over a period."""

    epsilon: float = Field(gt=0, description="Total ε the tenant may spend per period.")
    delta: float = Field(default=1e-5, gt=0, lt=1)
    period: Literal["none", "daily", "weekly", "monthly", "yearly"] = "none"
    dataset: str | None = Field(
        default=None, description="Limit the budget to one dataset (source uri); all if unset."
    )


class PrivacyBudgetStatus(_Model):
    """Mirror of the ledger."""

    model_config = ConfigDict(extra="allow")

    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    spent: float | None = None
    reserved: float | None = None
    remaining: float | None = None
    period_start: datetime | None = None


class PrivacyBudget(_Model):
    """A differential-privacy budget cap."""

    api_version: Literal["tabular.aumos.io/v1alpha1"] = "tabular.aumos.io/v1alpha1"
    kind: Literal["PrivacyBudget"] = "PrivacyBudget"
    metadata: ObjectMeta
    spec: PrivacyBudgetSpec
    status: PrivacyBudgetStatus | None = None


Resource = SynthesisJob | GenerationProfile | MultiTableSchema | PrivacyBudget

KINDS: dict[str, type[SynthesisJob | GenerationProfile | MultiTableSchema | PrivacyBudget]] = {
    "SynthesisJob": SynthesisJob,
    "GenerationProfile": GenerationProfile,
    "MultiTableSchema": MultiTableSchema,
    "PrivacyBudget": PrivacyBudget,
}


# ---------------------------------------------------------------------------------------
# Parsing with errors a person can act on


def describe_validation_error(exc: ValidationError, prefix: str = "") -> UserInputError:
    """Turn a pydantic error into a :class:`UserInputError` naming the first bad field."""
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"] if not str(p).startswith("function-after")]
    # Discriminated unions add the tag ("range") to the path; keep it, it helps.
    field = ".".join(([prefix] if prefix else []) + loc) or prefix or "manifest"
    message = str(first["msg"])
    message = message.removeprefix("Value error, ")
    tagged = re.match(r"^\[([\w.]+)\] (.*)$", message, re.DOTALL)
    if tagged:
        field = f"{field}.{tagged.group(1)}"
        message = tagged.group(2)
    if first["type"] == "extra_forbidden":
        message = "unknown field; check its spelling against the SynthesisJob reference"
    elif first["type"] == "missing":
        message = "required field is missing"
    elif first["type"] == "union_tag_invalid" or first["type"] == "union_tag_not_found":
        message = (
            "unknown constraint type; use range, regex, unique, inequality or fixedCombinations"
        )
    hint = (
        f"(got {first['input']!r})"
        if first["type"] not in ("missing",) and _short(first.get("input"))
        else ""
    )
    more = len(exc.errors()) - 1
    if more:
        hint = f"{hint} (and {more} more problem{'s' if more > 1 else ''})".strip()
    return UserInputError(field, message, hint)


def _short(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) <= 60


def parse_resource(document: Any, where: str = "manifest") -> Resource:
    """Validate one decoded YAML/JSON document into its resource model.

    Raises:
        UserInputError: naming the field at fault and what is allowed.
    """
    if not isinstance(document, dict):
        raise UserInputError(
            where, "is not a mapping", "a resource starts with apiVersion: and kind:"
        )
    api_version = document.get("apiVersion")
    if api_version != API_VERSION:
        raise UserInputError(
            f"{where}.apiVersion",
            f"unsupported apiVersion {api_version!r}",
            f"use apiVersion: {API_VERSION}",
        )
    kind = document.get("kind")
    model = KINDS.get(str(kind))
    if model is None:
        raise UserInputError(
            f"{where}.kind", f"unknown kind {kind!r}", f"use one of {', '.join(KINDS)}"
        )
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise describe_validation_error(exc) from None


def load_manifests(text: str, where: str = "manifest") -> list[Resource]:
    """Parse a (multi-document) YAML manifest into resources.

    Raises:
        UserInputError: on malformed YAML or any invalid resource.
    """
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        position = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise UserInputError(
            where, f"malformed YAML{position}: {problem}", "fix the syntax"
        ) from None
    if not documents:
        raise UserInputError(where, "holds no resource", "add a SynthesisJob document")
    return [parse_resource(doc, where) for doc in documents]


def pick(resources: Iterable[Resource], kind: type[Any], name: str | None = None) -> Any:
    """Return the single resource of ``kind`` (and ``name`` if given), or None."""
    found = [
        r for r in resources if isinstance(r, kind) and (name is None or r.metadata.name == name)
    ]
    return found[0] if found else None
