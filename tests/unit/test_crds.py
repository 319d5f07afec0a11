"""The generated API: CRDs match the models, are structural, and examples are valid.

What is real: the pydantic models and the generator. The apiserver side of the same cases
(``INVALID_CASES``) runs in ``tests/e2e/test_api.py`` against a real kube-apiserver.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tabular_runner import crdgen, spec
from tabular_runner.crdgen import rules
from tabular_runner.crdgen.schema import Extras, SchemaError, structural_problems, to_structural
from tabular_runner.errors import UserInputError

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

pytestmark = pytest.mark.unit


# ---------------------------------------------------------------------------------------
# A table of invalid manifests, shared with the e2e test (the apiserver must agree).

VALID_JOB: dict[str, Any] = {
    "apiVersion": spec.API_VERSION,
    "kind": "SynthesisJob",
    "metadata": {"name": "base-job"},
    "spec": {
        "source": {"uri": "s3://datasets/uci/adult/adult.csv", "secretRef": {"name": "s3"}},
        "generator": {"type": "gaussian_copula"},
        "rows": 100,
    },
}
VALID_DP_JOB: dict[str, Any] = copy.deepcopy(VALID_JOB)
VALID_DP_JOB["spec"]["generator"] = {"type": "aim"}
VALID_DP_JOB["spec"]["privacy"] = {"epsilon": 1.0}
VALID_SCHEMA: dict[str, Any] = {
    "apiVersion": spec.API_VERSION,
    "kind": "MultiTableSchema",
    "metadata": {"name": "base-schema"},
    "spec": {
        "tables": [
            {"name": "parent", "source": {"uri": "s3://d/p.csv"}, "primaryKey": "id"},
            {"name": "child", "source": {"uri": "s3://d/c.csv"}},
        ],
        "relationships": [
            {"parent": "parent", "parentKey": "id", "child": "child", "childKey": "parent_id"}
        ],
    },
}
VALID_BUDGET: dict[str, Any] = {
    "apiVersion": spec.API_VERSION,
    "kind": "PrivacyBudget",
    "metadata": {"name": "base-budget"},
    "spec": {"epsilon": 5},
}


@dataclass(frozen=True)
class Invalid:
    """A valid base manifest with some paths set or removed, and what the apiserver says."""

    id: str
    base: dict[str, Any]
    set: dict[str, Any] = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    message: str = ""
    model_rejects: bool = True  # False where only the CRD checks (the model has no rule)

    def manifest(self) -> dict[str, Any]:
        doc = copy.deepcopy(self.base)
        for path in self.unset:
            *parents, last = path.split(".")
            _walk(doc, parents).pop(last)
        for path, value in self.set.items():
            *parents, last = path.split(".")
            _walk(doc, parents)[last] = value
        return doc


def _walk(doc: Any, keys: list[str]) -> Any:
    for key in keys:
        doc = doc[int(key)] if isinstance(doc, list) else doc.setdefault(key, {})
    return doc


INVALID_CASES: list[Invalid] = [
    Invalid(
        "negative-epsilon",
        VALID_DP_JOB,
        {"spec.privacy.epsilon": -1},
        message="should be greater than 0",
    ),
    Invalid(
        "dp-generator-without-epsilon",
        VALID_DP_JOB,
        unset=("spec.privacy",),
        message="generator aim is differentially private: set privacy.epsilon (> 0)",
    ),
    Invalid(
        "epsilon-on-non-dp-generator",
        VALID_JOB,
        {"spec.privacy": {"epsilon": 1}},
        message="generator gaussian_copula is not differentially private",
    ),
    Invalid(
        "rows-zero", VALID_JOB, {"spec.rows": 0}, message="should be greater than or equal to 1"
    ),
    Invalid(
        "unknown-generator",
        VALID_JOB,
        {"spec.generator.type": "gpt"},
        message='Unsupported value: "gpt"',
    ),
    Invalid(
        "bad-uri-scheme",
        VALID_JOB,
        {"spec.source.uri": "http://example.com/adult.csv"},
        message="unsupported uri scheme",
    ),
    Invalid(
        "secret-inline-in-uri",
        VALID_JOB,
        {"spec.source.uri": "s3://AKIA:hunter2@bucket/adult.csv"},
        message="credentials must not be inline in the uri",
    ),
    Invalid("delta-one", VALID_DP_JOB, {"spec.privacy.delta": 1}, message="should be less than 1"),
    Invalid(
        "rows-and-scale", VALID_JOB, {"spec.scale": 2}, message="set only one of rows and scale"
    ),
    Invalid(
        "seed-and-impute",
        VALID_JOB,
        {
            "spec.generation": {
                "seed": {"uri": "s3://datasets/seed.csv"},
                "impute": {"uri": "s3://datasets/holes.csv"},
            },
        },
        unset=("spec.rows",),
        message="set only one of seed, rebalance and impute",
    ),
    Invalid(
        "rows-with-seed",
        VALID_JOB,
        {"spec.generation": {"seed": {"uri": "s3://datasets/seed.csv"}}},
        message="the output has one row per row of that table; remove rows and scale",
    ),
    Invalid(
        "temperature-zero",
        VALID_JOB,
        {"spec.generation": {"temperature": 0}},
        message="should be greater than 0",
    ),
    Invalid(
        "hma-without-schema-ref",
        VALID_JOB,
        {"spec.generator.type": "hma"},
        message="generator hma needs schemaRef",
    ),
    Invalid(
        "unknown-constraint-type",
        VALID_JOB,
        {"spec.constraints": [{"type": "between", "column": "age"}]},
        message='Unsupported value: "between"',
    ),
    Invalid(
        "range-constraint-min-above-max",
        VALID_JOB,
        {"spec.constraints": [{"type": "range", "column": "age", "min": 90, "max": 17}]},
        message="min is greater than max",
    ),
    Invalid(
        "range-constraint-without-bounds",
        VALID_JOB,
        {"spec.constraints": [{"type": "range", "column": "age"}]},
        message="a range constraint needs min, max or both",
    ),
    Invalid(
        "fixed-combinations-one-column",
        VALID_JOB,
        {"spec.constraints": [{"type": "fixedCombinations", "columns": ["a"]}]},
        message="needs at least 2",
    ),
    Invalid(
        "regex-constraint-with-foreign-field",
        VALID_JOB,
        {"spec.constraints": [{"type": "regex", "column": "a", "pattern": "x+", "min": 1}]},
        message="a regex constraint takes only column, pattern and type",
    ),
    Invalid(
        "bad-name-with-dot", VALID_JOB, {"metadata.name": "adult.gc"}, message="DNS-1123 label"
    ),
    Invalid(
        "source-and-schema-ref",
        VALID_JOB,
        {"spec.schemaRef": {"name": "s"}},
        message="set only one of source and schemaRef",
    ),
    Invalid("no-source", VALID_JOB, unset=("spec.source",), message="set source (single table)"),
    Invalid("no-generator", VALID_JOB, unset=("spec.generator",), message="set generator"),
    Invalid(
        "from-model-job-and-uri",
        VALID_JOB,
        {"spec.fromModel": {"jobName": "a", "uri": "s3://m/model.pkl"}},
        message="set exactly one of jobName or uri",
    ),
    Invalid(
        "output-uri-scheme",
        VALID_JOB,
        {"spec.output": {"uri": "gs://bucket/out"}},
        message="unsupported uri scheme",
    ),
    Invalid(
        "gpu-count-17",
        VALID_JOB,
        {"spec.resources": {"train": {"gpu": 17}}},
        message="should be less than or equal to 16",
    ),
    Invalid(
        "cpu-not-a-quantity",
        VALID_JOB,
        {"spec.resources": {"train": {"cpu": "lots"}}},
        message="cpu must be a quantity",
        model_rejects=False,
    ),
    Invalid(
        "budget-epsilon-zero",
        VALID_BUDGET,
        {"spec.epsilon": 0},
        message="should be greater than 0",
    ),
    Invalid(
        "relationship-to-unknown-table",
        VALID_SCHEMA,
        {"spec.relationships.0.parent": "nowhere"},
        message="must name a table in spec.tables",
    ),
    Invalid(
        "duplicate-table-names",
        VALID_SCHEMA,
        {"spec.tables.1.name": "parent", "spec.relationships": []},
        message="Duplicate value",
    ),
]
"""Manifests the apiserver must refuse, with (part of) the message a person reads."""


# ---------------------------------------------------------------------------------------
# Drift and shape of the generated files


def test_generated_files_match_the_models() -> None:
    # Run
    problems = crdgen.drift(REPO)

    # Assert
    assert problems == [], (
        "generated API files drifted from runner/tabular_runner/spec.py; run "
        "`python -m tabular_runner.crdgen` and commit:\n" + "\n".join(problems)
    )


def test_chart_crds_are_copies_of_crds_dir() -> None:
    # Setup
    chart = REPO / "charts/aumos-tabular-engine/crds"

    names = [f"tabular.aumos.io_{kind.plural}.yaml" for kind in crdgen.KINDS]

    # Run
    ours = {name: (REPO / "crds" / name).read_text() for name in names}
    theirs = {p.name: p.read_text() for p in chart.glob("*.yaml")}

    # Assert
    assert ours == theirs


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_crd_schema_is_structural(kind: crdgen.Kind) -> None:
    # Setup
    crd = yaml.safe_load((REPO / "crds" / f"tabular.aumos.io_{kind.plural}.yaml").read_text())

    # Run
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    # Assert
    assert structural_problems(schema) == []


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_crd_names_status_and_columns(kind: crdgen.Kind) -> None:
    # Run
    crd = crdgen.build_crd(kind)

    # Assert
    names = crd["spec"]["names"]
    version = crd["spec"]["versions"][0]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert crd["spec"]["group"] == "tabular.aumos.io" and crd["spec"]["scope"] == "Namespaced"
    assert names["categories"] == ["aumos"] and names["shortNames"] == list(kind.short_names)
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    assert status["properties"]["conditions"]["x-kubernetes-list-type"] == "map"
    assert status["properties"]["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert status["properties"]["kopf"]["x-kubernetes-preserve-unknown-fields"] is True
    assert version["additionalPrinterColumns"][-1]["name"] == "Age" or any(
        c["name"] == "Age" for c in version["additionalPrinterColumns"]
    )


def test_synthesisjob_printer_columns() -> None:
    # Run
    crd = crdgen.build_crd(next(k for k in crdgen.KINDS if k.kind == "SynthesisJob"))

    # Assert
    columns = [
        (c["name"].upper(), c["jsonPath"])
        for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]
        if c.get("priority", 0) == 0
    ]
    assert columns == [
        ("PHASE", ".status.phase"),
        ("GENERATOR", ".status.generator"),  # what ran: auto and profileRef resolved
        ("ROWS", ".status.rowsGenerated"),
        ("FIDELITY", ".status.fidelityScore"),
        ("PRIVACY-RISK", ".status.privacyRisk"),
        ("EPSILON", ".status.epsilonSpent"),
        ("AGE", ".metadata.creationTimestamp"),
    ]


def test_every_printer_column_path_exists_in_the_schema() -> None:
    for kind in crdgen.KINDS:
        # Setup
        crd = crdgen.build_crd(kind)
        version = crd["spec"]["versions"][0]
        root = version["schema"]["openAPIV3Schema"]

        for column in version["additionalPrinterColumns"]:
            if column["jsonPath"].startswith(".metadata."):
                continue
            # Run
            node = root
            for part in column["jsonPath"].lstrip(".").split("."):
                node = node["properties"][part]

            # Assert
            assert node["type"] == column["type"] or (
                column["type"] == "number" and node["type"] == "integer"
            ), column


def test_spec_bounds_follow_the_models() -> None:
    # Setup
    crd = crdgen.build_crd(next(k for k in crdgen.KINDS if k.kind == "SynthesisJob"))
    job = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]

    # Run
    privacy = job["properties"]["privacy"]["properties"]
    rows = job["properties"]["rows"]

    # Assert
    assert privacy["epsilon"]["minimum"] == 0 and privacy["epsilon"]["exclusiveMinimum"] is True
    assert privacy["delta"]["maximum"] == 1 and privacy["delta"]["exclusiveMaximum"] is True
    assert privacy["delta"]["default"] == spec.PrivacySpec.model_fields["delta"].default
    assert rows["minimum"] == 1 and rows["type"] == "integer"
    assert job["properties"]["generator"]["properties"]["type"]["enum"] == [
        g.value for g in spec.GeneratorType
    ]
    params = job["properties"]["generator"]["properties"]["params"]
    assert params == {**params, "type": "object", "x-kubernetes-preserve-unknown-fields": True}


def test_spec_lock_policy_freezes_every_spec_field_but_suspend() -> None:
    # Run
    policy, binding = crdgen.build_spec_lock_policy()

    # Assert
    frozen = {
        v["expression"].split("has(object.spec.")[1].split(")")[0]
        for v in policy["spec"]["validations"]
    }
    wire = {info.alias or name for name, info in spec.SynthesisJobSpec.model_fields.items()}
    assert frozen == wire - {"suspend"}
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }
    assert policy["spec"]["matchConstraints"]["resourceRules"][0]["operations"] == ["UPDATE"]


def test_check_mode_reports_a_hand_edit(tmp_path: Path) -> None:
    # Setup
    crdgen.write(tmp_path)
    target = tmp_path / "crds" / "tabular.aumos.io_synthesisjobs.yaml"
    target.write_text(target.read_text().replace("maxLength: 2048", "maxLength: 4096"))
    (tmp_path / "crds" / "tabular.aumos.io_leftovers.yaml").write_text("{}\n")

    # Run
    problems = crdgen.drift(tmp_path)

    # Assert
    assert problems == [
        "differs: crds/tabular.aumos.io_synthesisjobs.yaml",
        "stale (not generated): crds/tabular.aumos.io_leftovers.yaml",
    ]


def test_cli_check_exit_status(tmp_path: Path) -> None:
    # Setup
    from tabular_runner.crdgen.__main__ import main

    # Run
    before = main(["--check", "--root", str(tmp_path)])
    written = main(["--root", str(tmp_path), "--json-schemas", str(tmp_path / "js")])
    after = main(["--check", "--root", str(tmp_path)])

    # Assert
    assert (before, written, after) == (1, 0, 0)
    assert sorted(p.name for p in (tmp_path / "js").iterdir()) == [
        "generationprofile-tabular-v1alpha1.json",
        "multitableschema-tabular-v1alpha1.json",
        "privacybudget-tabular-v1alpha1.json",
        "synthesisjob-tabular-v1alpha1.json",
    ]


# ---------------------------------------------------------------------------------------
# The converter on its own


def _convert(raw: dict[str, Any], by_field: dict[str, Any] | None = None) -> dict[str, Any]:
    return to_structural(raw, Extras({}, by_field or {}), root_name="M")


def test_optional_field_loses_null_and_exclusive_bound_becomes_openapi_3() -> None:
    # Setup
    raw = {
        "type": "object",
        "title": "M",
        "additionalProperties": False,
        "properties": {
            "x": {
                "anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}],
                "default": None,
            }
        },
    }

    # Run
    out = _convert(raw)

    # Assert
    assert out == {
        "type": "object",
        "properties": {"x": {"type": "number", "minimum": 0, "exclusiveMinimum": True}},
    }


def test_type_union_without_a_table_entry_is_refused() -> None:
    # Setup
    raw = {
        "type": "object",
        "properties": {
            "k": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
        },
    }

    # Run / Assert
    with pytest.raises(SchemaError, match=r"M\.k: a union"):
        _convert(raw)
    assert _convert(raw, {"M.k": {"x-kubernetes-preserve-unknown-fields": True}})["properties"][
        "k"
    ] == {"x-kubernetes-preserve-unknown-fields": True}


def test_rules_key_that_matches_nothing_is_reported() -> None:
    # Setup
    extras = Extras({"NoSuchModel": {"maxItems": 1}}, {"SynthesisJobSpec.nope": {"maxLength": 1}})

    # Run
    to_structural(
        spec.SynthesisJobSpec.model_json_schema(by_alias=True, mode="validation"),
        extras,
        root_name="SynthesisJobSpec",
    )

    # Assert
    assert extras.unused() == {"NoSuchModel", "SynthesisJobSpec.nope"}


def test_tagged_union_becomes_one_object_with_rules_per_variant() -> None:
    # Run
    crd = crdgen.build_crd(next(k for k in crdgen.KINDS if k.kind == "SynthesisJob"))
    item = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["constraints"]["items"]

    # Assert
    assert item["properties"]["type"]["enum"] == [
        "range",
        "regex",
        "unique",
        "inequality",
        "fixedCombinations",
    ]
    assert "default" not in item["properties"]["strict"]  # a default would leak into other types
    messages = [r["message"] for r in item["x-kubernetes-validations"]]
    assert "a regex constraint needs column and pattern" in messages
    assert "columns of a fixedCombinations constraint needs at least 2 items" in messages
    assert structural_problems(item) == []


def test_rules_tables_use_the_spec_generator_sets() -> None:
    assert set(rules.DP_TYPES) == {g.value for g in spec.DP_GENERATORS}
    assert set(rules.NON_DP_TYPES) | set(rules.DP_TYPES) | {
        g.value for g in spec.DP_OPTIONAL_GENERATORS
    } == {g.value for g in spec.GeneratorType}


# ---------------------------------------------------------------------------------------
# Examples and invalid manifests against the models


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_the_models(path: Path) -> None:
    # Run
    resources = spec.load_manifests(path.read_text(), str(path))

    # Assert
    assert resources
    for resource in resources:
        assert resource.metadata.name


def test_examples_cover_every_kind() -> None:
    # Run
    kinds = {type(r).__name__ for p in EXAMPLES for r in spec.load_manifests(p.read_text(), str(p))}

    # Assert
    assert kinds == set(spec.KINDS)


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda c: c.id)
def test_invalid_manifest_is_refused_by_the_models(case: Invalid) -> None:
    # Setup
    document = case.manifest()

    # Run / Assert
    if case.model_rejects:
        with pytest.raises(UserInputError):
            spec.parse_resource(document)
    else:
        spec.parse_resource(document)  # only the CRD checks this one (reported to the lead)


def test_valid_bases_are_valid() -> None:
    for base in (VALID_JOB, VALID_DP_JOB, VALID_SCHEMA, VALID_BUDGET):
        spec.parse_resource(copy.deepcopy(base))
