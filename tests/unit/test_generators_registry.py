"""The generator registry, parameter checks and the ``auto`` rule: pure logic, nothing trained.

Nothing is mocked: the registry's answers are module paths, checked without importing the
heavy adapters; ``choose_generator`` is a pure function.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tabular_runner.errors import UserInputError
from tabular_runner.generators import (
    DEFAULT_TIME_BUDGET_S,
    adapter_path,
    auto,
    check_params,
    choose_generator,
    create_synthesizer,
    load_synthesizer,
    resolve_auto,
)
from tabular_runner.spec import GeneratorSpec, GeneratorType, PrivacySpec

pytestmark = pytest.mark.unit

SDV = "tabular_runner.generators.sdv_adapter:SdvSynthesizer"
SMARTNOISE = "tabular_runner.generators.smartnoise_adapter:SmartNoiseSynthesizer"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (GeneratorType.GAUSSIAN_COPULA, SDV),
        (GeneratorType.CTGAN, SDV),
        (GeneratorType.TVAE, SDV),
        (GeneratorType.COPULAGAN, SDV),
        (GeneratorType.MST, SMARTNOISE),
        (GeneratorType.AIM, SMARTNOISE),
        (GeneratorType.PATECTGAN, SMARTNOISE),
        (GeneratorType.DPCTGAN, SMARTNOISE),
    ],
    ids=lambda v: v.value if isinstance(v, GeneratorType) else "",
)
def test_each_type_maps_to_its_adapter(kind: GeneratorType, expected: str) -> None:
    # Run
    path = adapter_path(kind)

    # Assert
    assert path == expected


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        (GeneratorType.TABULARARGN, "argn engine"),
        (GeneratorType.HMA, "multi-table"),
        (GeneratorType.AUTO, "resolved"),
    ],
    ids=["tabularargn", "hma", "auto"],
)
def test_unavailable_types_say_why(kind: GeneratorType, words: str) -> None:
    # Setup
    spec = GeneratorSpec(type=kind)

    # Run
    with pytest.raises(UserInputError) as caught:
        create_synthesizer(spec, None)

    # Assert
    assert caught.value.field == "spec.generator.type"
    assert words in caught.value.problem
    assert caught.value.hint


def test_importing_the_package_loads_no_heavy_library() -> None:
    # Setup: a fresh interpreter, since other tests in this session may have loaded SDV
    code = (
        "import sys, tabular_runner.generators; "
        "heavy = ('sdv', 'snsynth', 'torch', 'ctgan', 'opacus'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )

    # Run
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    # Assert: the registry must stay cheap for the CLI and the operator
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        (GeneratorType.CTGAN, {"epochs": 0}, "epochs"),
        (GeneratorType.CTGAN, {"epochs": 2.5}, "epochs"),
        (GeneratorType.TVAE, {"epochs": True}, "epochs"),
        (GeneratorType.TVAE, {"batchSize": 501}, "batchSize"),
        (GeneratorType.CTGAN, {"batchSize": 64}, "batchSize"),  # not a multiple of pac=10
        (GeneratorType.TVAE, {"compressDims": []}, "compressDims"),
        (GeneratorType.CTGAN, {"generatorDim": [256, -1]}, "generatorDim"),
        (GeneratorType.GAUSSIAN_COPULA, {"defaultDistribution": "cauchy"}, "defaultDistribution"),
        (
            GeneratorType.GAUSSIAN_COPULA,
            {"numericalDistributions": {"age": "weird"}},
            "numericalDistributions",
        ),
        (GeneratorType.MST, {"maxBins": 1}, "maxBins"),
        (GeneratorType.AIM, {"maxModelSize": 0}, "maxModelSize"),
        (GeneratorType.AIM, {"maxIters": "10"}, "maxIters"),
        (
            GeneratorType.DPCTGAN,
            {"preprocessorEpsilonFraction": 1.0},
            "preprocessorEpsilonFraction",
        ),
        (GeneratorType.MST, {"useGpu": "yes"}, "useGpu"),
    ],
    ids=[
        "epochs-zero",
        "epochs-float",
        "epochs-bool",
        "batch-odd",
        "batch-not-pac-multiple",
        "dims-empty",
        "dims-negative",
        "distribution-unknown",
        "per-column-distribution-unknown",
        "bins-too-few",
        "model-size-zero",
        "iters-string",
        "fraction-one",
        "gpu-string",
    ],
)
def test_bad_parameter_values_name_the_field(
    kind: GeneratorType, params: dict[str, Any], field: str
) -> None:
    # Setup
    spec = GeneratorSpec(type=kind, params=params)

    # Run
    with pytest.raises(UserInputError) as caught:
        check_params(spec)

    # Assert
    assert caught.value.field == f"spec.generator.params.{field}"
    assert "must be" in caught.value.problem


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        (GeneratorType.CTGAN, {"epochs": 10, "batchSize": 500, "pac": 10, "generatorDim": [64]}),
        (GeneratorType.TVAE, {"epochs": 1, "l2scale": 0, "compressDims": [32, 32]}),
        (GeneratorType.GAUSSIAN_COPULA, {"defaultDistribution": "truncnorm"}),
        (GeneratorType.AIM, {"maxBins": 8, "maxModelSize": 0.5, "maxIters": 3}),
        (GeneratorType.PATECTGAN, {"preprocessorEpsilonFraction": 0.2, "useGpu": False}),
    ],
    ids=["ctgan", "tvae", "gaussian-copula", "aim", "patectgan"],
)
def test_good_parameter_values_pass(kind: GeneratorType, params: dict[str, Any]) -> None:
    # Run / Assert: no error
    check_params(GeneratorSpec(type=kind, params=params))


def test_dp_generator_without_privacy_is_refused() -> None:
    # Run
    with pytest.raises(UserInputError) as caught:
        create_synthesizer(GeneratorSpec(type=GeneratorType.MST), None)

    # Assert
    assert caught.value.field == "spec.privacy.epsilon"


@pytest.mark.parametrize(
    ("n_rows", "n_columns", "privacy", "budget", "gpu", "expected"),
    [
        (50_000, 15, PrivacySpec(epsilon=1.0), 300, False, GeneratorType.AIM),
        (50_000, 15, PrivacySpec(epsilon=1.0), 60, False, GeneratorType.MST),
        (5_000, 60, PrivacySpec(epsilon=1.0), 300, False, GeneratorType.MST),
        (5_000, 60, PrivacySpec(epsilon=1.0), 10_000, False, GeneratorType.AIM),
        (500, 10, None, 300, False, GeneratorType.GAUSSIAN_COPULA),
        (500, 10, None, 300, True, GeneratorType.GAUSSIAN_COPULA),
        (10_000, 15, None, 300, False, GeneratorType.TVAE),
        (10_000, 15, None, 10, False, GeneratorType.GAUSSIAN_COPULA),
        (2_000_000, 40, None, 300, False, GeneratorType.GAUSSIAN_COPULA),
        (100_000, 15, None, 3_600, True, GeneratorType.CTGAN),
        (100_000, 15, None, 300, True, GeneratorType.TVAE),
        (100_000, 15, None, 3_600, False, GeneratorType.TVAE),
    ],
    ids=[
        "dp-medium-fits-aim",
        "dp-tight-time-mst",
        "dp-wide-mst",
        "dp-wide-long-budget-aim",
        "tiny-copula",
        "tiny-copula-even-with-gpu",
        "medium-tvae",
        "tight-budget-copula",
        "huge-cpu-copula",
        "large-gpu-long-budget-ctgan",
        "large-gpu-short-budget-tvae",
        "large-cpu-tvae",
    ],
)
def test_auto_rule_table(
    n_rows: int,
    n_columns: int,
    privacy: PrivacySpec | None,
    budget: float,
    gpu: bool,
    expected: GeneratorType,
) -> None:
    # Run
    kind, reason = choose_generator(n_rows, n_columns, privacy, budget, gpu)

    # Assert
    assert kind is expected
    assert len(reason) > 20 and "\n" not in reason


def test_auto_resolves_to_a_spec_with_epochs_that_fit_the_budget() -> None:
    # Setup
    spec = GeneratorSpec(
        type=GeneratorType.AUTO, params={"timeBudgetSeconds": 120, "useGpu": False}
    )

    # Run
    concrete, reason = resolve_auto(spec, 10_000, 15, None, gpu=False)

    # Assert
    assert concrete.type is GeneratorType.TVAE
    assert concrete.params["useGpu"] is False
    assert "timeBudgetSeconds" not in concrete.params
    # Fewer epochs than a 300 s budget would give, and at least the minimum that qualifies.
    longer, _ = resolve_auto(GeneratorSpec(type=GeneratorType.AUTO), 10_000, 15, None, gpu=False)
    assert 30 <= concrete.params["epochs"] < longer.params["epochs"]
    assert str(concrete.params["epochs"]) in reason


def test_auto_default_budget_is_documented_300_seconds() -> None:
    # Assert
    assert DEFAULT_TIME_BUDGET_S == 300
    assert "``DEFAULT_TIME_BUDGET_S`` = 300 s" in (auto.__doc__ or "")


def test_auto_refuses_a_bad_budget() -> None:
    # Setup
    spec = GeneratorSpec(type=GeneratorType.AUTO, params={"timeBudgetSeconds": -5})

    # Run
    with pytest.raises(UserInputError) as caught:
        resolve_auto(spec, 1000, 5, None, gpu=False)

    # Assert
    assert caught.value.field == "spec.generator.params.timeBudgetSeconds"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "not found"),
        (b"age,income\n1,2\n", "not a model"),
        (b"\x80\x04K\x01.", "not a model"),
    ],
    ids=["missing", "csv", "other-pickle"],
)
def test_load_refuses_what_is_not_a_model(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    # Setup
    path = tmp_path / "model.pkl"
    if content is not None:
        path.write_bytes(content)

    # Run
    with pytest.raises(UserInputError) as caught:
        load_synthesizer(path)

    # Assert
    assert problem in caught.value.problem
