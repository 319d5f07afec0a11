"""``generator: {type: auto}``: pick a generator from the data's shape, privacy and time budget.

The rule (pure, no heavy imports; a unit test walks its table):

With ``privacy`` set, only differentially private generators qualify:

* **AIM** when its estimated run time fits the time budget. AIM measures the marginals its
  model gets most wrong, round after round, so it uses ε best, but each round refits a
  graphical model: its cost grows with the number of columns (rounds = 16 per column) and
  barely with the rows.
* **MST** otherwise (wide tables, tight time budgets): one fixed pass of 1- and 2-way marginals
  on a maximum spanning tree, fast at any width, and robust when ε is small.
* **TabularARGN with DP-SGD** (engine ``argn``) instead of both when a GPU is present, the
  table is large (``LARGE_DATA_ROWS`` or more) and the budget fits ``MIN_ARGN_EPOCHS`` epochs:
  DP-SGD needs many rows per ε and is too slow on CPUs.

Without ``privacy``:

* **TabularARGN** (engine ``argn``) when the budget fits ``MIN_ARGN_EPOCHS`` epochs of it
  (after its fixed set-up time): it reaches the highest fidelity of every generator offered
  (SDMetrics quality 0.975 on UCI Adult on 2 CPU cores, against 0.82-0.85 for the SDV models)
  and stops early when its validation loss stops improving; its training time cap is set to the
  budget. Its first use on a laptop builds the argn environment (minutes, once; not counted).
* **GaussianCopula** for very small data (fewer than ``SMALL_DATA_ROWS`` rows: a deep model
  would overfit it) and whenever the time budget cannot fit ``MIN_DEEP_EPOCHS`` epochs of a
  deep model: it fits in seconds.
* **CTGAN** when a GPU is present, the table is large (``LARGE_DATA_ROWS`` rows or more) and the
  budget fits ``MAX_DEEP_EPOCHS`` CTGAN epochs: its training-by-sampling of rare categories
  pays off on large, imbalanced data once it can train fully.
* **TVAE** otherwise, with as many epochs as the budget fits (at most ``MAX_DEEP_EPOCHS``):
  it reaches higher fidelity than CTGAN in fewer epochs on typical business tables.

The rows test comes first: on very small data every model overfits, and GaussianCopula is
still the choice there. ``auto`` considers TabularARGN only when the caller says the argn engine
is available (``resolve_auto(..., argn=True)``; the pipeline passes
:func:`tabular_runner.engines.auto_may_use`).

Epoch costs are estimates measured on this project's CPU runners (UCI Adult, 2 cores) and
scaled by rows and columns; a GPU divides them by ``GPU_SPEEDUP``. The budget
(``params.timeBudgetSeconds``) defaults to ``DEFAULT_TIME_BUDGET_S`` = 300 s of training.

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
MIN_ARGN_EPOCHS = 10

# TabularARGN: ~6.6 s/epoch on 39,073 Adult rows x 15 columns (2 CPU cores, medium model;
# early stop at epoch 32 after ~210 s), plus set-up outside its time cap (split, analyse,
# encode, the last validation): 37 s on those rows on busy shared cores.
_ARGN_S_PER_CELL_EPOCH = 1.12e-5
_ARGN_SETUP_S = 10.0
_ARGN_SETUP_S_PER_ROW = 7e-4

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


def estimated_argn_epoch_seconds(n_rows: int, n_columns: int, gpu: bool) -> float:
    """Estimated seconds per TabularARGN epoch on this data."""
    seconds = _ARGN_S_PER_CELL_EPOCH * max(n_rows, 1) * max(n_columns, 1)
    return seconds / GPU_SPEEDUP if gpu else seconds


def argn_training_seconds(n_rows: int, budget_s: float) -> float:
    """Training-time cap for TabularARGN: the budget less its fixed set-up time."""
    return max(budget_s - _ARGN_SETUP_S - _ARGN_SETUP_S_PER_ROW * max(n_rows, 0), 0.0)


def argn_epochs_within(n_rows: int, n_columns: int, budget_s: float, gpu: bool) -> int:
    """TabularARGN epochs that fit ``budget_s`` after its set-up time."""
    per_epoch = estimated_argn_epoch_seconds(n_rows, n_columns, gpu)
    return math.floor(argn_training_seconds(n_rows, budget_s) / per_epoch)


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
    argn: bool = False,
) -> tuple[GeneratorType, str]:
    """Pick a generator for ``auto`` (the rule is in the module docstring).

    Args:
        n_rows: Rows of the training data.
        n_columns: Columns of the training data.
        privacy: The job's DP parameters; a DP generator is chosen when set.
        time_budget_s: Training time the job may take, in seconds.
        gpu: Whether a CUDA device is available to the train stage.
        argn: Whether TabularARGN (engine ``argn``) may be chosen.

    Returns:
        The generator type and one sentence saying why, for the report.
    """
    argn_epochs = argn_epochs_within(n_rows, n_columns, time_budget_s, gpu) if argn else 0
    if privacy is not None:
        if gpu and n_rows >= LARGE_DATA_ROWS and argn_epochs >= MIN_ARGN_EPOCHS:
            return GeneratorType.TABULARARGN, (
                f"privacy is set, {n_rows} rows on a GPU and the {time_budget_s:.0f} s budget "
                f"fits about {argn_epochs} TabularARGN epochs: DP-SGD on many rows keeps "
                "column dependencies that marginal-based MST/AIM lose"
            )
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
    if argn_epochs >= MIN_ARGN_EPOCHS:
        return GeneratorType.TABULARARGN, (
            f"the {time_budget_s:.0f} s budget fits about {argn_epochs} TabularARGN epochs on "
            f"{n_rows} rows x {n_columns} columns ({'GPU' if gpu else 'CPU'}): the highest "
            "fidelity generator offered, and it stops early once it stops improving"
        )
    if argn and n_rows >= SMALL_DATA_ROWS and argn_epochs < MIN_ARGN_EPOCHS:
        tight = f"; TabularARGN would fit only {argn_epochs} epochs (fewer than {MIN_ARGN_EPOCHS})"
    else:
        tight = ""
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
            f"{n_rows} rows x {n_columns} columns ({'GPU' if gpu else 'CPU'}){tight}"
        )
    return GeneratorType.GAUSSIAN_COPULA, (
        f"the {time_budget_s:.0f} s budget fits only {tvae_epochs} TVAE epochs on {n_rows} rows "
        f"x {n_columns} columns (fewer than {MIN_DEEP_EPOCHS}){tight}; GaussianCopula fits in "
        "seconds"
    )


def auto_params(
    kind: GeneratorType, n_rows: int, n_columns: int, time_budget_s: float, gpu: bool
) -> dict[str, Any]:
    """Hyper-parameters for the generator ``auto`` chose: deep models get the epochs that fit."""
    if kind in (GeneratorType.TVAE, GeneratorType.CTGAN):
        return {"epochs": max(1, epochs_within(kind, n_rows, n_columns, time_budget_s, gpu))}
    if kind is GeneratorType.TABULARARGN:
        return {"maxTrainingTimeSeconds": round(argn_training_seconds(n_rows, time_budget_s), 1)}
    return {}


def resolve_auto(
    spec: GeneratorSpec,
    n_rows: int,
    n_columns: int,
    privacy: PrivacySpec | None,
    gpu: bool,
    argn: bool = False,
) -> tuple[GeneratorSpec, str]:
    """Turn an ``auto`` spec into a concrete one (other specs pass through unchanged).

    Common parameters (``useGpu``, ``preprocessorEpsilonFraction``) carry over; ``argn``
    lets ``auto`` choose TabularARGN.

    Returns:
        The concrete spec and the reason for the choice (empty when not ``auto``).
    """
    if spec.type is not GeneratorType.AUTO:
        return spec, ""
    budget = time_budget(spec)
    kind, reason = choose_generator(n_rows, n_columns, privacy, budget, gpu, argn=argn)
    params = {k: v for k, v in spec.params.items() if k != "timeBudgetSeconds"}
    params.update(auto_params(kind, n_rows, n_columns, budget, gpu))
    return GeneratorSpec(type=kind, params=params), reason
