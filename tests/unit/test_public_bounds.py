"""``privacy.publicBounds`` / ``privacy.publicCategories``: the models, the CRD and the checks
the SmartNoise adapter runs against the data before any ε is spent.

What is real: the pydantic models, the CRD generator, the CLI's ``check`` command, SmartNoise's
transformers and the Palmer penguins table shipped with ``palmerpenguins``. Nothing is mocked.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tabular_runner import crdgen, spec
from tabular_runner.errors import UserInputError

pytestmark = pytest.mark.unit

PENGUIN_BOUNDS = {
    "bill_length_mm": {"min": 25, "max": 65},
    "bill_depth_mm": {"min": 10, "max": 25},
    "flipper_length_mm": {"min": 160, "max": 240},
    "body_mass_g": {"min": 2500, "max": 6500},
    "year": {"min": 2007, "max": 2009},
}
PENGUIN_CATEGORIES = {
    "species": ["Adelie", "Chinstrap", "Gentoo"],
    "island": ["Biscoe", "Dream", "Torgersen"],
    "sex": ["female", "male"],
}

JOB: dict[str, Any] = {
    "apiVersion": spec.API_VERSION,
    "kind": "SynthesisJob",
    "metadata": {"name": "penguins-mst"},
    "spec": {
        "source": {"uri": "file://penguins.csv"},
        "generator": {"type": "mst"},
        "privacy": {
            "epsilon": 3.0,
            "publicBounds": PENGUIN_BOUNDS,
            "publicCategories": PENGUIN_CATEGORIES,
        },
    },
}


def job_with(privacy: dict[str, Any], generator: str = "mst") -> dict[str, Any]:
    """``JOB`` with ``spec.privacy`` replaced and ``generator.type`` set."""
    doc = copy.deepcopy(JOB)
    doc["spec"]["privacy"] = {"epsilon": 3.0, **privacy}
    doc["spec"]["generator"]["type"] = generator
    return doc


# ---------------------------------------------------------------------------------------
# The models


def test_valid_public_domains_round_trip_on_the_wire() -> None:
    # Run
    job = spec.parse_resource(copy.deepcopy(JOB))

    # Assert
    assert isinstance(job, spec.SynthesisJob)
    assert job.spec.privacy is not None
    wire = job.spec.privacy.to_wire()
    assert wire["publicCategories"] == PENGUIN_CATEGORIES
    assert wire["publicBounds"]["year"] == {"min": 2007.0, "max": 2009.0}
    assert spec.parse_resource(job.to_wire()) == job


def test_privacy_without_public_domains_serialises_as_before() -> None:
    # Run
    wire = spec.PrivacySpec(epsilon=1.0).to_wire()

    # Assert
    assert wire == {"epsilon": 1.0, "delta": 1e-6}


BAD_PRIVACY = [
    pytest.param(
        {"publicBounds": {"year": {"min": 2009, "max": 2009}}},
        "mst",
        "spec.privacy.publicBounds.year",
        "must be less than max",
        id="min-equals-max",
    ),
    pytest.param(
        {"publicBounds": {"year": {"min": 2010, "max": 2007}}},
        "mst",
        "spec.privacy.publicBounds.year",
        "must be less than max",
        id="min-above-max",
    ),
    pytest.param(
        {"publicBounds": {"year": {"min": 2007}}},
        "mst",
        "spec.privacy.publicBounds.year.max",
        "required field is missing",
        id="max-missing",
    ),
    pytest.param(
        {"publicBounds": {"year": {"min": float("-inf"), "max": 2009}}},
        "mst",
        "spec.privacy.publicBounds.year.min",
        "finite number",
        id="infinite-min",
    ),
    pytest.param(
        {"publicBounds": {"year": {"min": 2007, "max": 2009, "step": 1}}},
        "mst",
        "spec.privacy.publicBounds.year.step",
        "unknown field",
        id="unknown-bound-field",
    ),
    pytest.param(
        {"publicCategories": {"sex": []}},
        "mst",
        "spec.privacy.publicCategories.sex",
        "at least 1 item",
        id="empty-category-list",
    ),
    pytest.param(
        {"publicCategories": {"sex": ["male", "female", "male"]}},
        "mst",
        "spec.privacy.publicCategories.sex",
        "lists 'male' more than once",
        id="repeated-category",
    ),
    pytest.param(
        {"publicCategories": {"sex": "male"}},
        "mst",
        "spec.privacy.publicCategories.sex",
        "valid list",
        id="categories-not-a-list",
    ),
    pytest.param(
        {"publicCategories": {"sex": ["x" * 257]}},
        "mst",
        "spec.privacy.publicCategories.sex.0",
        "at most 256 characters",
        id="category-too-long",
    ),
    pytest.param(
        {"publicCategories": {"code": [str(i) for i in range(1001)]}},
        "mst",
        "spec.privacy.publicCategories.code",
        "at most 1000 items",
        id="too-many-categories",
    ),
    pytest.param(
        {"publicBounds": {f"c{i}": {"min": 0, "max": 1} for i in range(1025)}},
        "mst",
        "spec.privacy.publicBounds",
        "at most 1024 items",
        id="too-many-columns",
    ),
    pytest.param(
        {"publicBounds": {"sex": {"min": 0, "max": 1}}, "publicCategories": {"sex": ["male"]}},
        "mst",
        "spec.privacy.publicCategories.sex",
        "has publicBounds too",
        id="column-with-bounds-and-categories",
    ),
    pytest.param(
        {"publicBounds": {"year": {"min": 2007, "max": 2009}}},
        "tabularargn",
        "spec.privacy.publicBounds",
        "generator tabularargn does not use public bounds or categories",
        id="public-bounds-on-tabularargn",
    ),
    pytest.param(
        {"publicCategories": {"sex": ["male"]}},
        "auto",
        "spec.privacy.publicCategories",
        "generator auto does not use public bounds or categories",
        id="public-categories-on-auto",
    ),
    pytest.param(
        {"publicBounds": {"year": {"min": 2007, "max": 2009}}},
        "ctgan",
        "spec.privacy",
        "generator ctgan is not differentially private",
        id="public-bounds-on-non-dp-generator",
    ),
]


@pytest.mark.parametrize(("privacy", "generator", "field", "message"), BAD_PRIVACY)
def test_bad_public_domains_name_the_field(
    privacy: dict[str, Any], generator: str, field: str, message: str
) -> None:
    # Run
    with pytest.raises(UserInputError) as caught:
        spec.parse_resource(job_with(privacy, generator))

    # Assert
    assert caught.value.field == field
    assert message in caught.value.problem
    assert "\n" not in str(caught.value)


def test_profile_with_public_bounds_on_non_smartnoise_generator_is_refused() -> None:
    # Setup
    profile = {
        "apiVersion": spec.API_VERSION,
        "kind": "GenerationProfile",
        "metadata": {"name": "argn-dp"},
        "spec": {
            "generator": {"type": "tabularargn"},
            "privacy": {"epsilon": 2, "publicBounds": {"age": {"min": 17, "max": 90}}},
        },
    }

    # Run
    with pytest.raises(UserInputError) as caught:
        spec.parse_resource(profile)

    # Assert
    assert caught.value.field == "spec.privacy.publicBounds"


def test_cli_check_prints_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Setup
    from tabular_runner.cli import main

    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job_with({"publicBounds": {"year": {"min": 9, "max": 1}}})))

    # Run
    code = main(["check", str(manifest)])

    # Assert
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "spec.privacy.publicBounds.year" in err and "must be less than max" in err


# ---------------------------------------------------------------------------------------
# The CRD says the same, within bounds the apiserver's CEL cost estimator accepts


def _privacy_schema(kind: str) -> dict[str, Any]:
    crd = crdgen.build_crd(next(k for k in crdgen.KINDS if k.kind == kind))
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    privacy: dict[str, Any] = root["properties"]["spec"]["properties"]["privacy"]
    return privacy


@pytest.mark.parametrize("kind", ["SynthesisJob", "GenerationProfile"])
def test_crd_bounds_every_public_domain_collection(kind: str) -> None:
    # Run
    privacy = _privacy_schema(kind)

    # Assert
    bounds = privacy["properties"]["publicBounds"]
    categories = privacy["properties"]["publicCategories"]
    assert bounds["maxProperties"] == spec.MAX_PUBLIC_COLUMNS
    assert categories["maxProperties"] == spec.MAX_PUBLIC_COLUMNS
    values = categories["additionalProperties"]
    assert values["minItems"] == 1 and values["maxItems"] == spec.MAX_PUBLIC_CATEGORIES
    assert values["items"] == {"type": "string", "maxLength": spec.MAX_CATEGORY_LENGTH}
    assert values["x-kubernetes-list-type"] == "set"  # duplicates refused, as by the model
    one = bounds["additionalProperties"]
    assert one["required"] == ["min", "max"]
    assert {"rule": "self.min < self.max", "message": "min must be less than max"} in one[
        "x-kubernetes-validations"
    ]
    assert "public knowledge" in bounds["description"]
    assert "public knowledge" in categories["description"]


def test_crd_refuses_public_domains_for_other_generators() -> None:
    # Setup
    crd = crdgen.build_crd(next(k for k in crdgen.KINDS if k.kind == "SynthesisJob"))
    job = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]

    # Run
    rules = [r for r in job["x-kubernetes-validations"] if "publicBounds" in r["rule"]]

    # Assert
    assert len(rules) == 1
    assert "['aim', 'dpctgan', 'mst', 'patectgan']" in rules[0]["rule"]
    assert "does not use public bounds or categories" in rules[0]["messageExpression"]


# ---------------------------------------------------------------------------------------
# The adapter's checks against the data (before any ε is spent)


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    """Palmer penguins, all 344 rows and 8 columns (nulls in 6 of them)."""
    from tabular_runner import datasets

    try:
        return datasets.load("penguins")
    except UserInputError as exc:  # the palmerpenguins package is not installed
        pytest.skip(str(exc))


def _plan(frame: pd.DataFrame) -> list[Any]:
    from tabular_runner.generators.base import FitContext
    from tabular_runner.generators.smartnoise_adapter import plan_columns

    return plan_columns(frame, FitContext(categorical_columns=["species", "island", "sex"]))


def _resolve(frame: pd.DataFrame, privacy: dict[str, Any]) -> Any:
    from tabular_runner.generators.smartnoise_adapter import resolve_public_domains

    parsed = spec.PrivacySpec.model_validate({"epsilon": 3.0, **privacy})
    return resolve_public_domains(
        _plan(frame), frame.dtypes, parsed.public_bounds or {}, parsed.public_categories or {}
    )


DATA_ERRORS = [
    pytest.param(
        {"publicBounds": {"weight": {"min": 0, "max": 10}}},
        "spec.privacy.publicBounds.weight",
        "names no column the generator models",
        id="bounds-for-unknown-column",
    ),
    pytest.param(
        {"publicCategories": {"colour": ["black"]}},
        "spec.privacy.publicCategories.colour",
        "names no column the generator models",
        id="categories-for-unknown-column",
    ),
    pytest.param(
        {"publicCategories": {"body_mass_g": ["heavy", "light"]}},
        "spec.privacy.publicCategories.body_mass_g",
        "is numeric, so it has no categories",
        id="categories-for-numeric-column",
    ),
    pytest.param(
        {"publicBounds": {"island": {"min": 0, "max": 3}}},
        "spec.privacy.publicBounds.island",
        "is categorical, so it has no numeric bounds",
        id="bounds-for-categorical-column",
    ),
]


@pytest.mark.parametrize(("privacy", "field", "message"), DATA_ERRORS)
def test_public_domains_that_do_not_fit_the_data_name_the_field(
    penguins: pd.DataFrame, privacy: dict[str, Any], field: str, message: str
) -> None:
    # Run
    with pytest.raises(UserInputError) as caught:
        _resolve(penguins, privacy)

    # Assert
    assert caught.value.field == field
    assert message in caught.value.problem


def test_categories_take_the_column_type(penguins: pd.DataFrame) -> None:
    # Setup
    frame = penguins.assign(heavy=penguins["body_mass_g"] > 4000)  # a boolean column

    # Run
    public = _resolve(frame, {"publicCategories": {"heavy": ["True", "false"]}})

    # Assert
    assert public.categories == {"heavy": [True, False]}
    with pytest.raises(UserInputError) as caught:
        _resolve(frame, {"publicCategories": {"heavy": ["maybe"]}})
    assert caught.value.field == "spec.privacy.publicCategories.heavy"
    assert "'maybe' is not a boolean" in caught.value.problem


def test_rows_with_unlisted_categories_are_dropped(penguins: pd.DataFrame) -> None:
    # Setup
    from tabular_runner.generators.smartnoise_adapter import drop_unlisted

    public = _resolve(penguins, {"publicCategories": {"island": ["Biscoe", "Dream"]}})

    # Run
    kept, dropped = drop_unlisted(penguins, public.categories)

    # Assert
    torgersen = int((penguins["island"] == "Torgersen").sum())
    assert dropped == torgersen > 0
    assert len(kept) == len(penguins) - torgersen
    assert set(kept["island"]) == {"Biscoe", "Dream"}
    assert kept["sex"].isna().sum() > 0  # missing values in other columns stay


@pytest.mark.parametrize("cube", [True, False], ids=["mst-aim", "gans"])
def test_transformer_with_public_domains_needs_no_epsilon(
    penguins: pd.DataFrame, cube: bool
) -> None:
    # Setup
    from tabular_runner.generators.smartnoise_adapter import build_transformer, encode

    plan = _plan(penguins)
    categories = {**PENGUIN_CATEGORIES, "island": ["Biscoe", "Dream", "Torgersen", "Anvers"]}
    public = _resolve(penguins, {"publicBounds": PENGUIN_BOUNDS, "publicCategories": categories})

    # Run
    transformer = build_transformer(plan, cube, 8, public)
    transformer.fit(encode(penguins, plan), epsilon=None)

    # Assert
    assert not transformer.needs_epsilon
    assert float(transformer.odometer.spent[0]) == 0.0
    by_name = dict(zip([c.name for c in plan], transformer.transformers, strict=True))
    island = by_name["island"] if cube else by_name["island"].transformers[0]
    # "Anvers" is public but holds no bird in the data: it is a category all the same.
    assert [c for c in island.categories if c is not None] == [
        "Anvers",
        "Biscoe",
        "Dream",
        "Torgersen",
    ]
    if not cube:
        assert by_name["island"].output_width == 4  # no nulls in island: 4 one-hot slots
    mass = by_name["body_mass_g"]
    assert (mass.fit_lower, mass.fit_upper) == (2500.0, 6500.0)
