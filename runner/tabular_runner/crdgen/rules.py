"""What the CRDs say that the pydantic models cannot: CEL rules, list types, bounds, columns.

Every table is keyed by ``Model`` (the pydantic class name; the entry applies wherever that
model is inlined, e.g. ``SourceSpec`` in a job and in every table of a MultiTableSchema) or by
``Model.field`` (the wire, camelCase, name of the field). A key that no longer matches a model
or field makes ``crdgen`` fail, so renaming a field cannot silently drop its rule.

Why each kind of entry exists:

* **CEL rules** (``x-kubernetes-validations``) mirror the models' ``model_validator`` and
  ``field_validator`` checks, so ``kubectl apply`` refuses what the runner would refuse, with
  the same words. The generator lists come from :mod:`tabular_runner.spec` (one source).
* **Bounds** (``maxItems``, ``maxLength``) exist because the apiserver estimates the worst-case
  cost of every CEL rule from them and refuses a CRD whose rules could cost too much; a list or
  string a rule touches must be bounded. Limits are far above any real use.
* **Untyped unions**: ``str | list[str]`` (a single or composite key) has no structural form;
  such fields are declared ``x-kubernetes-preserve-unknown-fields`` and the runner's model
  checks them. CEL cannot see untyped values, so no rule can either.
* **List types**: ``conditions`` are a map keyed by ``type`` (server-side apply merges them
  per condition); ``tables`` are keyed by ``name`` (the apiserver refuses duplicates).
"""

from __future__ import annotations

from typing import Any

from tabular_runner import spec

Rule = dict[str, str]

DP_TYPES = sorted(g.value for g in spec.DP_GENERATORS)
NON_DP_TYPES = sorted(g.value for g in spec.NON_DP_GENERATORS)
DP_CHOICES = sorted(g.value for g in spec.DP_GENERATORS | spec.DP_OPTIONAL_GENERATORS)


def _cel_list(values: list[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _or_words(values: list[str]) -> str:
    return ", ".join(values[:-1]) + " or " + values[-1]


def _privacy_rules(guard: str) -> list[Rule]:
    """DP generators need ``privacy``; non-DP ones refuse it (``_check_privacy`` in spec)."""
    return [
        {
            "rule": f"{guard}!(self.generator.type in {_cel_list(DP_TYPES)}) || has(self.privacy)",
            "messageExpression": "'generator ' + self.generator.type + ' is differentially "
            "private: set privacy.epsilon (> 0)'",
            "message": f"generators {', '.join(DP_TYPES)} are differentially private: "
            "set privacy.epsilon (> 0)",
            "fieldPath": ".privacy",
            "reason": "FieldValueRequired",
        },
        {
            "rule": f"{guard}!(self.generator.type in {_cel_list(NON_DP_TYPES)}) "
            "|| !has(self.privacy)",
            "messageExpression": "'generator ' + self.generator.type + ' is not differentially "
            "private, so privacy.epsilon would not be honoured; remove privacy or choose "
            f"{_or_words(DP_CHOICES)}'",
            "message": f"generators {', '.join(NON_DP_TYPES)} are not differentially private; "
            f"remove privacy or choose {_or_words(DP_CHOICES)}",
            "fieldPath": ".privacy",
            "reason": "FieldValueForbidden",
        },
    ]


def _public_domain_rules(guard: str) -> list[Rule]:
    """Only SmartNoise generators use public bounds/categories (``_check_privacy`` in spec)."""
    return [
        {
            "rule": f"{guard}!has(self.privacy) || self.generator.type in {_cel_list(DP_TYPES)} "
            "|| !(has(self.privacy.publicBounds) || has(self.privacy.publicCategories))",
            "messageExpression": "'generator ' + self.generator.type + ' does not use public "
            f"bounds or categories (only {', '.join(DP_TYPES)} do); remove them or choose one "
            "of those generators'",
            "message": "only generators "
            f"{', '.join(DP_TYPES)} use privacy.publicBounds and privacy.publicCategories",
            "fieldPath": ".privacy",
            "reason": "FieldValueForbidden",
        }
    ]


def _uri_rules(schemes: str, example: str) -> list[Rule]:
    return [
        {
            "rule": "self.startsWith('file://') || self.startsWith('s3://')",
            "message": f"unsupported uri scheme; use {example}",
        },
        {
            "rule": "self != 'file://' && self != 's3://'",
            "message": f"the uri names no {schemes}; use {example}",
        },
        {
            # Never echo the value: it may hold the very credentials refused here.
            "rule": "!self.matches('^s3://[^/]*@')",
            "message": "credentials must not be inline in the uri; put them in a Secret and "
            "set secretRef",
        },
    ]


URI_MAX = 2048
REF_MAX = 253
COLUMN_MAX = 256
TABLE_NAME_MAX = 128
MAX_TABLES = 128
MAX_RELATIONSHIPS = 256
MAX_CONSTRAINTS = 128

BY_MODEL: dict[str, dict[str, Any]] = {
    "SynthesisJobSpec": {
        "x-kubernetes-validations": [
            {
                "rule": "has(self.source) || has(self.schemaRef) || has(self.fromModel)",
                "message": "set source (single table), schemaRef (multi-table) or fromModel "
                "(re-sample an earlier job's model)",
                "fieldPath": ".source",
                "reason": "FieldValueRequired",
            },
            {
                "rule": "!(has(self.source) && has(self.schemaRef))",
                "message": "set only one of source and schemaRef",
                "fieldPath": ".schemaRef",
                "reason": "FieldValueForbidden",
            },
            {
                "rule": "has(self.generator) || has(self.profileRef)",
                "message": "set generator (e.g. {type: gaussian_copula}) or profileRef",
                "fieldPath": ".generator",
                "reason": "FieldValueRequired",
            },
            {
                "rule": "!(has(self.rows) && has(self.scale))",
                "message": "set only one of rows and scale",
                "fieldPath": ".scale",
                "reason": "FieldValueForbidden",
            },
            {
                "rule": "!has(self.generation) || !(has(self.generation.seed) || "
                "has(self.generation.impute)) || !(has(self.rows) || has(self.scale))",
                "message": "with generation.seed or generation.impute the output has one row "
                "per row of that table; remove rows and scale",
                "fieldPath": ".rows",
                "reason": "FieldValueForbidden",
            },
            *_privacy_rules("!has(self.generator) || "),
            *_public_domain_rules("!has(self.generator) || "),
            {
                "rule": "!has(self.generator) || self.generator.type != 'hma' "
                "|| has(self.schemaRef)",
                "message": "generator hma needs schemaRef (a MultiTableSchema)",
                "fieldPath": ".schemaRef",
                "reason": "FieldValueRequired",
            },
        ],
    },
    "GenerationProfileSpec": {
        "x-kubernetes-validations": [*_privacy_rules(""), *_public_domain_rules("")]
    },
    "PublicBounds": {
        "x-kubernetes-validations": [
            {"rule": "self.min < self.max", "message": "min must be less than max"}
        ],
    },
    "PrivacySpec": {
        "x-kubernetes-validations": [
            {
                # maxProperties bounds the cost; map keys are the column names.
                "rule": "!has(self.publicBounds) || !has(self.publicCategories) "
                "|| self.publicBounds.all(c, !(c in self.publicCategories))",
                "message": "a column has both publicBounds and publicCategories; give bounds "
                "for a numeric column or categories for a categorical one",
                "fieldPath": ".publicCategories",
                "reason": "FieldValueInvalid",
            }
        ],
    },
    "GenerationSpec": {
        "x-kubernetes-validations": [
            {
                "rule": "(has(self.seed) ? 1 : 0) + (has(self.rebalance) ? 1 : 0) "
                "+ (has(self.impute) ? 1 : 0) <= 1",
                "message": "set only one of seed, rebalance and impute (temperature combines "
                "with any)",
                "reason": "FieldValueForbidden",
            },
        ]
    },
    "FromModel": {
        "x-kubernetes-validations": [
            {
                "rule": "has(self.jobName) != has(self.uri)",
                "message": "set exactly one of jobName or uri",
            }
        ],
    },
    "RangeConstraint": {
        "x-kubernetes-validations": [
            {
                "rule": "has(self.min) || has(self.max)",
                "message": "a range constraint needs min, max or both",
            },
            {
                "rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
                "message": "min is greater than max",
            },
        ],
    },
    "Constraint": {
        "properties": {
            "column": {"maxLength": COLUMN_MAX},
            "low": {"maxLength": COLUMN_MAX},
            "high": {"maxLength": COLUMN_MAX},
            "pattern": {"maxLength": 1024},
            "columns": {"maxItems": 64, "items": {"maxLength": COLUMN_MAX}},
        },
    },
    "MultiTableSchemaSpec": {
        "x-kubernetes-validations": [
            {
                "rule": "!has(self.relationships) || self.relationships.all(r, "
                "self.tables.exists(t, t.name == r.parent) "
                "&& self.tables.exists(t, t.name == r.child))",
                "message": "every relationship's parent and child must name a table in spec.tables",
                "fieldPath": ".relationships",
                "reason": "FieldValueInvalid",
            }
        ],
    },
}
"""Additions merged into a model's object node wherever the model is inlined."""

BY_FIELD: dict[str, dict[str, Any]] = {
    "SourceSpec.uri": {
        "maxLength": URI_MAX,
        "x-kubernetes-validations": _uri_rules(
            "file", "file://path/to/data.csv or s3://bucket/key"
        ),
    },
    "OutputSpec.uri": {
        "maxLength": URI_MAX,
        "x-kubernetes-validations": _uri_rules("prefix", "s3://bucket/prefix or file://dir"),
    },
    "TableRef.uri": {
        "maxLength": URI_MAX,
        "x-kubernetes-validations": _uri_rules("file", "file://seed.csv or s3://bucket/seed.csv"),
    },
    "RebalanceSpec.column": {"maxLength": COLUMN_MAX},
    "FromModel.uri": {"maxLength": URI_MAX},
    "FromModel.jobName": {"maxLength": REF_MAX},
    "SecretRef.name": {"maxLength": REF_MAX},
    "LocalRef.name": {"maxLength": REF_MAX},
    "SynthesisJobSpec.queueName": {"maxLength": 63},
    # A set: the apiserver refuses a category listed twice, as the model does.
    "PrivacySpec.publicCategories": {"additionalProperties": {"x-kubernetes-list-type": "set"}},
    "SynthesisJobSpec.constraints": {"maxItems": MAX_CONSTRAINTS},
    "GeneratorSpec.params": {
        # Free-form on purpose: each generator has its own hyper-parameters; the runner's
        # model checks their names (CEL cannot see inside an unknown-fields object).
        "x-kubernetes-preserve-unknown-fields": True,
    },
    "StageResources.cpu": {
        "maxLength": 64,
        "x-kubernetes-validations": [
            {"rule": "isQuantity(self)", "message": "cpu must be a quantity such as 2 or 500m"}
        ],
    },
    "StageResources.memory": {
        "maxLength": 64,
        "x-kubernetes-validations": [
            {"rule": "isQuantity(self)", "message": "memory must be a quantity such as 4Gi"}
        ],
    },
    "MultiTableSchemaSpec.tables": {
        "maxItems": MAX_TABLES,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
    },
    "MultiTableSchemaSpec.relationships": {"maxItems": MAX_RELATIONSHIPS},
    "TableSpec.name": {"maxLength": TABLE_NAME_MAX},
    "TableSpec.columns": {"maxItems": 4096},
    "RelationshipSpec.parent": {"maxLength": TABLE_NAME_MAX},
    "RelationshipSpec.child": {"maxLength": TABLE_NAME_MAX},
}
"""Additions merged into the node of one field."""

UNTYPED_UNIONS: dict[str, str] = {
    "TableSpec.primaryKey": "a column name or a list of them (composite key)",
    "RelationshipSpec.parentKey": "a column name or a list of them (composite key)",
    "RelationshipSpec.childKey": "a column name or a list of them (composite key)",
}
"""``str | list[str]`` fields: no structural form, so untyped; the runner's model checks them."""

for _key, _what in UNTYPED_UNIONS.items():
    BY_FIELD[_key] = {
        "x-kubernetes-preserve-unknown-fields": True,
        "description": f"{_what[0].upper()}{_what[1:]}.",
    }

CONDITIONS_LIST = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
    "maxItems": 16,
}
for _kind in spec.KINDS.values():
    _status = _kind.model_fields["status"].annotation
    for _arg in getattr(_status, "__args__", (_status,)):
        if isinstance(_arg, type) and _arg is not type(None):
            BY_FIELD[f"{_arg.__name__}.conditions"] = CONDITIONS_LIST

UNION_NAMES: dict[tuple[str, ...], str] = {
    tuple(
        sorted(
            (
                "RangeConstraint",
                "RegexConstraint",
                "UniqueConstraint",
                "InequalityConstraint",
                "FixedCombinationsConstraint",
            )
        )
    ): "Constraint",
}
"""Names of merged discriminated unions (the ``Model`` part of their table keys)."""

# Root rules see only apiVersion, kind, metadata.name and metadata.generateName.
NAME_MAX = int(spec.ObjectMeta.model_json_schema()["properties"]["name"]["maxLength"])
"""``metadata.name`` bound, from the model (stage Jobs and pod labels are named after it)."""

NAME_RULE: Rule = {
    "rule": "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
    "message": "metadata.name must be a DNS-1123 label: lower-case letters, digits and '-', "
    f"starting and ending with a letter or digit, at most {NAME_MAX} characters (it names "
    "the stage Jobs, their pods and labels)",
}

KIND_NAMES: dict[str, dict[str, Any]] = {
    "SynthesisJob": {"plural": "synthesisjobs", "shortNames": ["sj"]},
    "GenerationProfile": {"plural": "generationprofiles", "shortNames": ["gp"]},
    "MultiTableSchema": {"plural": "multitableschemas", "shortNames": ["mts"]},
    "PrivacyBudget": {"plural": "privacybudgets", "shortNames": ["pb"]},
}
CATEGORIES = ["aumos"]

_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

PRINTER_COLUMNS: dict[str, list[dict[str, Any]]] = {
    "SynthesisJob": [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        # What ran: resolves `auto` and profileRef (the operator writes it at start).
        {"name": "Generator", "type": "string", "jsonPath": ".status.generator"},
        {"name": "Rows", "type": "integer", "jsonPath": ".status.rowsGenerated"},
        {"name": "Fidelity", "type": "number", "jsonPath": ".status.fidelityScore"},
        {"name": "Privacy-Risk", "type": "number", "jsonPath": ".status.privacyRisk"},
        {"name": "Epsilon", "type": "number", "jsonPath": ".status.epsilonSpent"},
        _AGE,
        {"name": "Stage", "type": "string", "jsonPath": ".status.stage", "priority": 1},
        {"name": "Progress", "type": "number", "jsonPath": ".status.progress", "priority": 1},
        {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
    ],
    "GenerationProfile": [
        {"name": "Generator", "type": "string", "jsonPath": ".spec.generator.type"},
        {"name": "DP", "type": "number", "jsonPath": ".spec.privacy.epsilon"},
        _AGE,
    ],
    "MultiTableSchema": [
        {"name": "Tables", "type": "integer", "jsonPath": ".status.tableCount"},
        {"name": "Depth", "type": "integer", "jsonPath": ".status.depth"},
        {"name": "Valid", "type": "boolean", "jsonPath": ".status.valid"},
        _AGE,
    ],
    "PrivacyBudget": [
        {"name": "Epsilon", "type": "number", "jsonPath": ".spec.epsilon"},
        {"name": "Spent", "type": "number", "jsonPath": ".status.spent"},
        {"name": "Remaining", "type": "number", "jsonPath": ".status.remaining"},
        {"name": "Period", "type": "string", "jsonPath": ".spec.period"},
        _AGE,
    ],
}
"""``kubectl get`` columns; ``priority: 1`` ones appear with ``-o wide``."""

LOCKED_PHASES = [p.value for p in spec.Phase if p is not spec.Phase.QUEUED]
"""Phases in which a SynthesisJob's spec is frozen (see docs/adr/0002-spec-immutability.md)."""

MUTABLE_WHEN_LOCKED = {"suspend"}
"""Spec fields that may still change once the spec is frozen."""
