"""``generator: {type: auto}``: pick a generator from the data's shape, privacy and time budget.

The rule (pure, no heavy imports; a unit test walks its table):

With ``privacy`` set, only differentially private generators qualify:

* **AIM** when its estimated run time fits the time budget. AIM measures the marginals its
  model gets most wrong, round after round, so it uses ε best, but each round refits a
  graphical model: its cost grows with the number of columns (rounds = 16 per column) and
  barely with the rows.
* **MST** otherwise (wide tables, tight time budgets): one fixed pass of 1- and 2-way marginals
  on a maximum spanning tree, fast at any width, and robust when ε is small.

Without ``privacy``:

* **GaussianCopula** for very small data (fewer than ``SMALL_DATA_ROWS`` rows: a deep model
  would overfit it) and whenever the time budget cannot fit ``MIN_DEEP_EPOCHS`` epochs of a
  deep model: it fits in seconds.
* **CTGAN** when a GPU is present, the table is large (``LARGE_DATA_ROWS`` rows or more) and the
  budget fits ``MAX_DEEP_EPOCHS`` CTGAN epochs: its training-by-sampling of rare categories
  pays off on large, imbalanced data once it can train fully.
* **TVAE** otherwise, with as many epochs as the budget fits (at most ``MAX_DEEP_EPOCHS``):
  it reaches higher fidelity than CTGAN in fewer epochs on typical business tables.

Epoch costs are estimates measured on this project's CPU runners (UCI Adult, 2 cores) and
scaled by rows and columns; a GPU divides them by ``GPU_SPEEDUP``. The budget
(``params.timeBudgetSeconds``) defaults to ``DEFAULT_TIME_BUDGET_S`` = 300 s of training.

TabularARGN (engine ``argn``) will join this rule when its engine lands: see the branch
point marked ``TABULARARGN`` below.
"""

from __future__ import annotations

import math
from typing import Any

from tabular_runner.errors import UserInputError
from tabular_runner.spec import GeneratorSpec, GeneratorType, PrivacySpec

DEFAULT_TIME_BUDGET_S = 300.0
"""Training time budget of ``auto`` when ``params.timeBudgetSeconds`` is unset (seconds)."""

SMALL_DATA_ROWS = 1_000
LARGE_DATA_ROWS = 50_000
MIN_DEEP_EPOCHS = 30
MAX_DEEP_EPOCHS = 300
GPU_SPEEDUP = 5.0

# Seconds per epoch per (row x column), measured on 2 CPU cores with the default network
# sizes: TVAE ~1.2 s/epoch and CTGAN ~4 s/epoch on 10,000 Adult rows x 15 columns.
_TVAE_S_PER_CELL_EPOCH = 8e-6
_CTGAN_S_PER_CELL_EPOCH = 2.7e-5
# AIM: seconds per round per column, and rounds = 16 x columns (the library default).
_AIM_S_PER_ROUND_COLUMN = 0.05
_AIM_ROUNDS_PER_COLUMN = 16


def time_budget(spec: GeneratorSpec) -> float:
    """Return ``params.timeBudgetSeconds`` or the default.

    Raises:
        UserInputError: when the value is not a positive number.
    """
    value = spec.params.get("timeBudgetSeconds", DEFAULT_TIME_BUDGET_S)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise UserInputError(
            "spec.generator.params.timeBudgetSeconds",
            f"must be a positive number of seconds, got {value!r}",
            f"e.g. timeBudgetSeconds: {int(DEFAULT_TIME_BUDGET_S)}",
        )
    return float(value)


def estimated_epoch_seconds(kind: GeneratorType, n_rows: int, n_columns: int, gpu: bool) -> float:
    """Estimated seconds per training epoch of TVAE or CTGAN on this data."""
    per_cell = _CTGAN_S_PER_CELL_EPOCH if kind is GeneratorType.CTGAN else _TVAE_S_PER_CELL_EPOCH
    seconds = per_cell * max(n_rows, 1) * max(n_columns, 1)
    return seconds / GPU_SPEEDUP if gpu else seconds


def estimated_aim_seconds(n_columns: int) -> float:
    """Estimated AIM run time: its rounds grow with the columns, and so does each round."""
    rounds = _AIM_ROUNDS_PER_COLUMN * max(n_columns, 1)
    return rounds * _AIM_S_PER_ROUND_COLUMN * max(n_columns, 1)


def epochs_within(
    kind: GeneratorType, n_rows: int, n_columns: int, budget_s: float, gpu: bool
) -> int:
    """Epochs of ``kind`` that fit ``budget_s``, capped at ``MAX_DEEP_EPOCHS``."""
    per_epoch = estimated_epoch_seconds(kind, n_rows, n_columns, gpu)
    return min(MAX_DEEP_EPOCHS, math.floor(budget_s / per_epoch))


def choose_generator(
    n_rows: int,
    n_columns: int,
    privacy: PrivacySpec | None,
    time_budget_s: float,
    gpu: bool,
) -> tuple[GeneratorType, str]:
    """Pick a generator for ``auto`` (the rule is in the module docstring).

    Args:
        n_rows: Rows of the training data.
        n_columns: Columns of the training data.
        privacy: The job's DP parameters; a DP generator is chosen when set.
        time_budget_s: Training time the job may take, in seconds.
        gpu: Whether a CUDA device is available to the train stage.

    Returns:
        The generator type and one sentence saying why, for the report.
    """
    if privacy is not None:
        # TABULARARGN: with the argn engine available, DP-SGD TabularARGN becomes a
        # candidate here for large data (rows >> columns) with a GPU.
        aim_s = estimated_aim_seconds(n_columns)
        if aim_s <= time_budget_s:
            return GeneratorType.AIM, (
                f"privacy is set and AIM (about {aim_s:.0f} s for {n_columns} columns) fits the "
                f"{time_budget_s:.0f} s budget: it spends ε on the marginals it models worst"
            )
        return GeneratorType.MST, (
            f"privacy is set and AIM (about {aim_s:.0f} s for {n_columns} columns) would exceed "
            f"the {time_budget_s:.0f} s budget, so MST: one fast pass over 1- and 2-way marginals"
        )
    if n_rows < SMALL_DATA_ROWS:
        return GeneratorType.GAUSSIAN_COPULA, (
            f"{n_rows} rows are too few to train a deep model without overfitting; "
            "GaussianCopula fits them in seconds"
        )
    # TABULARARGN: without privacy, TabularARGN is the candidate for large data with a GPU
    # once the argn engine lands; it slots in before the CTGAN branch below.
    ctgan_epochs = epochs_within(GeneratorType.CTGAN, n_rows, n_columns, time_budget_s, gpu)
    if gpu and n_rows >= LARGE_DATA_ROWS and ctgan_epochs >= MAX_DEEP_EPOCHS:
        return GeneratorType.CTGAN, (
            f"{n_rows} rows on a GPU and the {time_budget_s:.0f} s budget fits "
            f"{MAX_DEEP_EPOCHS} CTGAN epochs: its conditional sampling helps rare categories"
        )
    tvae_epochs = epochs_within(GeneratorType.TVAE, n_rows, n_columns, time_budget_s, gpu)
    if tvae_epochs >= MIN_DEEP_EPOCHS:
        return GeneratorType.TVAE, (
            f"the {time_budget_s:.0f} s budget fits {tvae_epochs} TVAE epochs on "
            f"{n_rows} rows x {n_columns} columns ({'GPU' if gpu else 'CPU'})"
        )
    return GeneratorType.GAUSSIAN_COPULA, (
        f"the {time_budget_s:.0f} s budget fits only {tvae_epochs} TVAE epochs on {n_rows} rows "
        f"x {n_columns} columns (fewer than {MIN_DEEP_EPOCHS}); GaussianCopula fits in seconds"
    )


def auto_params(
    kind: GeneratorType, n_rows: int, n_columns: int, time_budget_s: float, gpu: bool
) -> dict[str, Any]:
    """Hyper-parameters for the generator ``auto`` chose: deep models get the epochs that fit."""
    if kind in (GeneratorType.TVAE, GeneratorType.CTGAN):
        return {"epochs": max(1, epochs_within(kind, n_rows, n_columns, time_budget_s, gpu))}
    return {}


def resolve_auto(
    spec: GeneratorSpec,
    n_rows: int,
    n_columns: int,
    privacy: PrivacySpec | None,
    gpu: bool,
) -> tuple[GeneratorSpec, str]:
    """Turn an ``auto`` spec into a concrete one (other specs pass through unchanged).

    Common parameters (``useGpu``, ``preprocessorEpsilonFraction``) carry over.

    Returns:
        The concrete spec and the reason for the choice (empty when not ``auto``).
    """
    if spec.type is not GeneratorType.AUTO:
        return spec, ""
    budget = time_budget(spec)
    kind, reason = choose_generator(n_rows, n_columns, privacy, budget, gpu)
    params = {k: v for k, v in spec.params.items() if k != "timeBudgetSeconds"}
    params.update(auto_params(kind, n_rows, n_columns, budget, gpu))
    return GeneratorSpec(type=kind, params=params), reason
