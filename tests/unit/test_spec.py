"""The API contract: valid manifests parse, invalid ones name the field and the fix."""

from pathlib import Path

import pytest

from tabular_runner.errors import UserInputError
from tabular_runner.spec import (
    API_VERSION,
    GeneratorType,
    SynthesisJob,
    load_manifests,
)

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "adult-gaussian-copula.yaml"

BASE = """\
apiVersion: tabular.aumos.io/v1alpha1
kind: SynthesisJob
metadata: {name: adult-gc}
spec:
  source: {uri: file://data/adult.csv, format: csv}
  generator: {type: gaussian_copula, params: {}}
  rows: 100
"""


def test_bundled_example_parses() -> None:
    # Run
    [job] = load_manifests(EXAMPLE.read_text())

    # Assert
    assert isinstance(job, SynthesisJob)
    assert job.api_version == API_VERSION
    assert job.spec.generator is not None
    assert job.spec.generator.type is GeneratorType.GAUSSIAN_COPULA
    assert [c.type for c in job.spec.constraints] == ["range", "range", "fixedCombinations"]


def test_wire_form_round_trips_in_camel_case() -> None:
    # Setup
    [job] = load_manifests(BASE + "  qualityGate: {minFidelity: 0.8}\n")

    # Run
    wire = job.to_wire()

    # Assert
    assert wire["spec"]["qualityGate"] == {"minFidelity": 0.8}
    assert SynthesisJob.model_validate(wire) == job


BAD = [
    ("rows-zero", BASE.replace("rows: 100", "rows: 0"), "spec.rows", "greater than or equal to 1"),
    (
        "eps-negative",
        BASE.replace("gaussian_copula", "aim") + "  privacy: {epsilon: -1}\n",
        "spec.privacy.epsilon",
        "greater than 0",
    ),
    (
        "eps-zero",
        BASE.replace("gaussian_copula", "mst") + "  privacy: {epsilon: 0}\n",
        "spec.privacy.epsilon",
        "greater than 0",
    ),
    (
        "dp-without-eps",
        BASE.replace("gaussian_copula", "mst"),
        "spec.privacy.epsilon",
        "differentially private",
    ),
    ("eps-on-non-dp", BASE + "  privacy: {epsilon: 1.0}\n", "spec.privacy", "not differentially"),
    (
        "delta-one",
        BASE.replace("gaussian_copula", "aim") + "  privacy: {epsilon: 1, delta: 1}\n",
        "spec.privacy.delta",
        "less than 1",
    ),
    (
        "unknown-generator",
        BASE.replace("gaussian_copula", "gpt"),
        "spec.generator.type",
        "'gaussian_copula'",
    ),
    (
        "unknown-param",
        BASE.replace("params: {}", "params: {epochs: 3}"),
        "spec.generator",
        "unknown parameter 'epochs'",
    ),
    ("bad-scheme", BASE.replace("file://", "http://"), "spec.source.uri", "unsupported uri"),
    (
        "inline-secret",
        BASE.replace("file://data/adult.csv", "s3://key:secret@bucket/a.csv"),
        "spec.source.uri",
        "credentials must not be inline",
    ),
    ("unknown-field", BASE.replace("rows:", "rowz:"), "spec.rowz", "unknown field"),
    ("rows-and-scale", BASE + "  scale: 2\n", "spec.scale", "only one of rows and scale"),
    (
        "no-source",
        BASE.replace("  source: {uri: file://data/adult.csv, format: csv}\n", ""),
        "spec.source",
        "set source",
    ),
    (
        "hma-without-schema",
        BASE.replace("gaussian_copula", "hma"),
        "spec.schemaRef",
        "needs schemaRef",
    ),
    (
        "unknown-constraint",
        BASE + "  constraints: [{type: between, column: age}]\n",
        "spec.constraints.0",
        "unknown constraint type",
    ),
    (
        "range-min-gt-max",
        BASE + "  constraints: [{type: range, column: age, min: 5, max: 1}]\n",
        "spec.constraints.0.range",
        "greater than max",
    ),
    (
        "bad-regex",
        BASE + "  constraints: [{type: regex, column: a, pattern: '('}]\n",
        "spec.constraints.0.regex.pattern",
        "does not compile",
    ),
    (
        "gate-out-of-range",
        BASE + "  qualityGate: {minFidelity: 1.5}\n",
        "spec.qualityGate.minFidelity",
        "less than or equal to 1",
    ),
    (
        "bad-name",
        BASE.replace("name: adult-gc", "name: Adult_GC"),
        "metadata.name",
        "not a valid name",
    ),
    (
        "wrong-kind",
        BASE.replace("kind: SynthesisJob", "kind: SynthJob"),
        "manifest.kind",
        "unknown kind",
    ),
    (
        "wrong-api-version",
        BASE.replace(API_VERSION, "tabular.aumos.io/v2"),
        "manifest.apiVersion",
        "unsupported apiVersion",
    ),
    ("malformed-yaml", BASE + "  rows: [1,\n", "manifest", "malformed YAML"),
    ("empty", "", "manifest", "holds no resource"),
    ("not-a-mapping", "- a\n- b\n", "manifest", "is not a mapping"),
]


@pytest.mark.parametrize(
    ("text", "field", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_invalid_manifest_names_field_and_problem(text: str, field: str, fragment: str) -> None:
    # Run
    with pytest.raises(UserInputError) as caught:
        load_manifests(text)

    # Assert
    assert caught.value.field == field
    assert fragment in str(caught.value)
