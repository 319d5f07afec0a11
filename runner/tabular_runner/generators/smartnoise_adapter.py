"""SmartNoise (``snsynth``) DP generators: MST, AIM, PATE-CTGAN and DP-CTGAN.

**ε accounting** (the job's ε covers everything the job learns from the private data):

* *Preprocessing.* Numeric (and datetime) columns need bounds: bins for MST/AIM, min-max
  scaling for the GANs. Bounds read off the private data are not DP, so they are estimated
  with SmartNoise's DP ``approx_bounds``, which spends ``preprocessorEpsilonFraction`` (default
  0.1) of ε, split evenly over those columns. The adapter fits the table transformer itself
  *before* creating the synthesizer and hands the library the rest of ε: the library never
  sees a half-spent budget and never subtracts anything on its own (its ``preprocessor_eps``
  path would subtract the odometer's composed ε, which can be below the plain sum).
  Tables without numeric columns spend nothing here.

  *Public domains* (``privacy.publicBounds``, ``privacy.publicCategories``): a column whose
  bounds the spec gives as public knowledge needs no DP estimate; the transformer is built with
  those bounds (``BinTransformer``/``MinMaxTransformer`` ``lower``/``upper``), values outside
  them are clamped, and only the remaining numeric columns share the preprocessing fraction.
  When every numeric column has public bounds, preprocessing spends exactly 0 and the whole ε
  goes to training. A categorical column with public categories gets exactly that list
  (whatever the data holds); training rows whose value is not in it are dropped before
  training (a per-row filter: the rows left are still one person per row), missing values
  stay missing. The spec's models check the lists' shape; the data-dependent checks (the
  column exists, numeric vs categorical, values of the column's type) run here, before any
  ε is spent.
* *Training* gets ``ε - preprocessing``, exactly:

  - MST, AIM: the whole training ε becomes a zCDP budget ``rho = cdp_rho(ε, δ)``.
  - DP-CTGAN: the library checks its opacus RDP accountant only *before* each epoch, so its
    last epoch can overshoot the budget. The adapter computes, with the same accountant,
    the most epochs whose total stays within the training ε and trains exactly that many.
  - PATE-CTGAN: the library trains until its moments accountant passes ε, checking only
    once per round, so the final round overshoots. The adapter guards each teacher vote:
    before a vote it adds the vote's worst-case moment (data-independent) and stops training
    if that could pass the training ε.

* Category sets not given in ``publicCategories``, column nullability and the row count are
  treated as public (as SmartNoise does): they shape the domain, not the counts. Say so in the
  report.

**Discrete inputs**: MST and AIM model discrete marginals only. Numeric columns are binned
into ``maxBins`` equal-width bins over their DP bounds; on sampling each value is drawn
uniformly inside its bin (post-processing, no ε) and integers are rounded. Datetimes travel
as seconds since the epoch. Nulls become their own category (``nullable`` transformers).
The GANs one-hot categories and min-max scale numbers; they ignore ``maxBins``.

DP noise comes from OpenDP's secure sampler (MST, AIM), which cannot be seeded: two fits
differ by design. Sampling from a fitted model is seeded.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from snsynth.transform import LabelTransformer, OneHotEncoder

from tabular_runner.errors import UserInputError
from tabular_runner.generators import conform, save_envelope
from tabular_runner.generators.base import (
    FitContext,
    PrivacyAccounting,
    ProgressCallback,
    SampleRequest,
)
from tabular_runner.generators.device import device_name, select_device
from tabular_runner.generators.sdv_adapter import seed_everything
from tabular_runner.spec import GeneratorType, PrivacySpec, PublicBounds

log = logging.getLogger(__name__)

DEFAULT_MAX_BINS = 20
DEFAULT_PREPROCESSOR_FRACTION = 0.1
DEFAULT_GAN_EPOCHS = 300
DEFAULT_GAN_BATCH = 500

_LIBRARY_NAME = {
    GeneratorType.MST: "mst",
    GeneratorType.AIM: "aim",
    GeneratorType.PATECTGAN: "patectgan",
    GeneratorType.DPCTGAN: "dpctgan",
}
_CUBE = {GeneratorType.MST, GeneratorType.AIM}
_GANS = {GeneratorType.PATECTGAN, GeneratorType.DPCTGAN}

# DP-CTGAN's RDP orders (snsynth.pytorch.nn.dpctgan builds its PrivacyEngine with these).
DPCTGAN_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
DPCTGAN_SIGMA = 5.0  # the library's default noise multiplier
_SAFETY = 1e-9  # floating-point headroom when deriving a budget from a budget


@dataclass
class ColumnPlan:
    """How one training column travels through SmartNoise."""

    name: str
    kind: str  # "categorical" | "numeric" | "datetime"
    nullable: bool
    integer: bool = False


@dataclass
class _Fitted:
    """What sampling needs besides the library model."""

    plan: list[ColumnPlan]
    dtypes: pd.Series
    bin_widths: dict[str, float] = field(default_factory=dict)
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass
class PublicDomains:
    """The spec's public bounds and categories, checked against the columns and typed.

    Attributes:
        bounds: ``(min, max)`` per numeric or datetime column (datetimes in epoch seconds).
        categories: The public values per categorical column, in the column's value type.
    """

    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    categories: dict[str, list[Any]] = field(default_factory=dict)


_BOUNDS_FIELD = "spec.privacy.publicBounds"
_CATEGORIES_FIELD = "spec.privacy.publicCategories"
_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})


def resolve_public_domains(
    plan: list[ColumnPlan],
    dtypes: pd.Series,
    bounds: dict[str, PublicBounds],
    categories: dict[str, list[str]],
) -> PublicDomains:
    """Check the spec's public domains against the modelled columns; type the categories.

    Raises:
        UserInputError: naming ``spec.privacy.publicBounds.<column>`` or
            ``spec.privacy.publicCategories.<column>``: an unknown column, bounds for a
            categorical column, categories for a numeric one, or a value the column's type
            cannot hold.
    """
    kinds = {c.name: c.kind for c in plan}
    modelled = ", ".join(kinds) or "none"
    unknown_hint = (
        f"the generator models: {modelled} (identifier and personal-data columns, and columns "
        "folded by a fixedCombinations constraint, are not modelled one by one)"
    )
    out = PublicDomains()
    for column, bound in bounds.items():
        where = f"{_BOUNDS_FIELD}.{column}"
        if column not in kinds:
            raise UserInputError(where, "names no column the generator models", unknown_hint)
        if kinds[column] == "categorical":
            raise UserInputError(
                where,
                f"column {column!r} is categorical, so it has no numeric bounds",
                f"list its values in publicCategories.{column} instead",
            )
        out.bounds[column] = (float(bound.min), float(bound.max))
    for column, values in categories.items():
        where = f"{_CATEGORIES_FIELD}.{column}"
        if column not in kinds:
            raise UserInputError(where, "names no column the generator models", unknown_hint)
        if kinds[column] != "categorical":
            raise UserInputError(
                where,
                f"column {column!r} is {kinds[column]}, so it has no categories",
                f"give publicBounds.{column}: {{min, max}} instead",
            )
        typed = [_typed_category(v, dtypes[column], where) for v in values]
        out.categories[column] = list(dict.fromkeys(typed))  # "1" and "01" are one int
    return out


def _typed_category(value: str, dtype: Any, where: str) -> Any:
    """The public category ``value`` (a string on the wire) in the column's value type."""
    if pd.api.types.is_bool_dtype(dtype):
        word = value.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise UserInputError(where, f"{value!r} is not a boolean", "use 'true' or 'false'")
    if pd.api.types.is_integer_dtype(dtype):
        try:
            return int(value)
        except ValueError:
            raise UserInputError(
                where, f"{value!r} is not an integer (the column holds integers)", ""
            ) from None
    if pd.api.types.is_float_dtype(dtype):
        try:
            return float(value)
        except ValueError:
            raise UserInputError(
                where, f"{value!r} is not a number (the column holds numbers)", ""
            ) from None
    return value


def drop_unlisted(data: pd.DataFrame, categories: dict[str, list[Any]]) -> tuple[pd.DataFrame, int]:
    """Drop rows whose value in a public-category column is neither listed nor missing.

    Returns:
        The rows kept and the number dropped.
    """
    keep = pd.Series(True, index=data.index)
    for column, values in categories.items():
        column_values = data[column]
        keep &= column_values.isna() | column_values.isin(values)
    return data[keep], int((~keep).sum())


def plan_columns(data: pd.DataFrame, context: FitContext) -> list[ColumnPlan]:
    """Decide, per column, categorical vs numeric vs datetime (hints win over dtypes)."""
    hinted_categorical = set(context.categorical_columns) | set(context.boolean_columns)
    plan = []
    for name in data.columns:
        values = data[name]
        nullable = bool(values.isna().any())
        if name in hinted_categorical or pd.api.types.is_bool_dtype(values):
            plan.append(ColumnPlan(str(name), "categorical", nullable))
        elif pd.api.types.is_datetime64_any_dtype(values):
            plan.append(ColumnPlan(str(name), "datetime", nullable))
        elif pd.api.types.is_numeric_dtype(values):
            integer = bool(pd.api.types.is_integer_dtype(values))
            plan.append(ColumnPlan(str(name), "numeric", nullable, integer))
        else:
            plan.append(ColumnPlan(str(name), "categorical", nullable))
    return plan


def encode(data: pd.DataFrame, plan: list[ColumnPlan]) -> pd.DataFrame:
    """Turn ``data`` into values SmartNoise transformers accept (None/NaN for nulls)."""
    out = pd.DataFrame(index=data.index)
    for column in plan:
        values = data[column.name]
        if column.kind == "datetime":
            seconds = pd.to_datetime(values).astype("int64") / 1e9
            out[column.name] = seconds.where(values.notna(), np.nan)
        elif column.kind == "numeric":
            out[column.name] = pd.to_numeric(values).astype(float)
        else:
            # Object dtype with None for nulls: LabelTransformer keys categories by value.
            out[column.name] = values.astype(object).where(values.notna(), None)
    return out.reset_index(drop=True)


def build_transformer(
    plan: list[ColumnPlan], cube: bool, max_bins: int, public: PublicDomains | None = None
) -> Any:
    """Build the per-column SmartNoise table transformer.

    Numeric columns with public bounds get them (``needs_epsilon`` is then False); the
    others' bounds are still to be estimated. Categorical columns with public categories get
    exactly those categories, whatever the data holds.
    """
    from snsynth.transform import BinTransformer, ChainTransformer, MinMaxTransformer
    from snsynth.transform.table import TableTransformer

    public = public or PublicDomains()
    transformers: list[Any] = []
    for column in plan:
        if column.kind == "categorical":
            listed = public.categories.get(column.name)
            if listed is None:
                label = LabelTransformer(nullable=column.nullable)
                onehot = OneHotEncoder()
            else:
                label = PublicLabelTransformer(listed, column.nullable)
                onehot = FixedOneHotEncoder(len(listed) + int(column.nullable))
            transformers.append(label if cube else ChainTransformer([label, onehot]))
            continue
        lower, upper = public.bounds.get(column.name, (None, None))
        if cube:
            transformers.append(
                BinTransformer(bins=max_bins, lower=lower, upper=upper, nullable=column.nullable)
            )
        else:
            transformers.append(
                MinMaxTransformer(lower=lower, upper=upper, nullable=column.nullable)
            )
    return TableTransformer(transformers)


def dpctgan_epsilon(n_rows: int, batch_size: int, epochs: int, delta: float) -> float:
    """ε that DP-CTGAN's opacus accountant reports after ``epochs`` epochs.

    Each training step calls the discriminator's optimizer twice (fake, then real batch),
    and opacus counts every call as one step of the sampled Gaussian mechanism.
    """
    from opacus import privacy_analysis

    if epochs <= 0:
        return 0.0
    steps = epochs * max(n_rows // batch_size, 1) * 2
    rdp = privacy_analysis.compute_rdp(batch_size / n_rows, DPCTGAN_SIGMA, 1, DPCTGAN_ORDERS)
    epsilon, _ = privacy_analysis.get_privacy_spent(DPCTGAN_ORDERS, np.asarray(rdp) * steps, delta)
    return float(epsilon)


def dpctgan_epochs(n_rows: int, batch_size: int, wanted: int, budget: float, delta: float) -> int:
    """The most epochs (at most ``wanted``) whose accounted ε stays within ``budget``."""
    low, high = 0, wanted
    while low < high:  # ε grows with epochs: binary search the last one that fits
        middle = (low + high + 1) // 2
        if dpctgan_epsilon(n_rows, batch_size, middle, delta) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


class PublicLabelTransformer(LabelTransformer):  # type: ignore[misc]
    """A ``LabelTransformer`` whose categories are a public list, never the data's.

    The data neither adds nor removes a category (rows with other values are dropped before
    training, see :func:`drop_unlisted`). Module level so a fitted model pickles.
    """

    def __init__(self, public: list[Any], nullable: bool) -> None:
        self.public = list(public)  # read by _clear_fit, which the base __init__ calls
        super().__init__(nullable=nullable)

    def _clear_fit(self) -> None:
        super()._clear_fit()
        for value in self.public:
            super()._fit(value)

    def _fit(self, val: Any) -> None:
        """Ignore the data: the categories are the public list."""


class FixedOneHotEncoder(OneHotEncoder):  # type: ignore[misc]
    """A ``OneHotEncoder`` of a fixed width (the public labels), not the data's largest label."""

    def __init__(self, width: int) -> None:
        self.width = width  # read by _clear_fit, which the base __init__ calls
        super().__init__()

    def _clear_fit(self) -> None:
        super()._clear_fit()
        self.max = self.width - 1

    def _fit(self, val: Any) -> None:
        """Ignore the data: the width is fixed."""


class _Stop(Exception):
    """Raised inside PATE-CTGAN's loop to end training before the budget could be passed."""


class PateBudgetGuard:
    """Keeps PATE-CTGAN within its training ε (see the module docstring).

    While active, ``snsynth.pytorch.nn.patectgan``'s ``pate`` (the noisy teacher vote) and
    ``moments_acc`` (its privacy moments) are wrapped: the wrapper around ``pate`` refuses a
    vote whose worst-case moments could pass the budget, or one past ``max_rounds``; the one
    around ``moments_acc`` sums the moments the library computes, so the spent ε is the
    library's own accountant's value.
    """

    def __init__(
        self,
        budget: float,
        delta: float,
        moments_order: int,
        student_iters: int,
        max_rounds: int | None,
        progress: ProgressCallback | None,
    ) -> None:
        self.budget = budget
        self.delta = delta
        self.orders = np.arange(1, moments_order + 1, dtype=float)
        self.moments = np.zeros(moments_order)
        self.votes = 0
        self.max_votes = None if max_rounds is None else max_rounds * student_iters
        self.progress = progress

    def epsilon(self, moments: Any = None) -> float:
        """The moments accountant's ε: ``min_l (alpha_l - log δ) / l``."""
        alphas = self.moments if moments is None else moments
        return float(np.min((alphas - math.log(self.delta)) / self.orders))

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Wrap the library's vote and accountant while the block runs."""
        import snsynth.pytorch.nn.patectgan as loop

        original_pate, original_moments = loop.pate, loop.moments_acc

        def guarded_pate(data: Any, teachers: Any, lap_scale: float, device: Any = "cpu") -> Any:
            if self.max_votes is not None and self.votes >= self.max_votes:
                raise _Stop
            # Per sample the library clamps a moment at 2 λ² l (l + 1): a bound that holds
            # whatever the votes are, so checking it cannot leak the data.
            worst = self.moments + int(data.shape[0]) * 2 * lap_scale**2 * self.orders * (
                self.orders + 1
            )
            if self.epsilon(worst) > self.budget:
                raise _Stop
            self.votes += 1
            return original_pate(data, teachers, lap_scale, device=device)

        def recorded_moments(*args: Any, **kwargs: Any) -> Any:
            added = original_moments(*args, **kwargs)
            self.moments = self.moments + added.detach().cpu().numpy()
            if self.progress is not None:
                spent = self.epsilon()
                self.progress(
                    min(1000, int(1000 * spent / self.budget)),
                    1000,
                    f"patectgan: ε {spent:.3f} of {self.budget:.3f} spent",
                )
            return added

        loop.pate, loop.moments_acc = guarded_pate, recorded_moments  # type: ignore[assignment]
        try:
            yield
        finally:
            loop.pate, loop.moments_acc = original_pate, original_moments  # type: ignore[assignment]


class _EpochList(list[float]):
    """DP-CTGAN appends its accountant's ε at the start of each epoch: report it as progress."""

    def __init__(self, total: int, progress: ProgressCallback | None) -> None:
        super().__init__()
        self.total = total
        self.progress = progress

    def append(self, value: float) -> None:
        super().append(value)
        if self.progress is not None and len(self) > 1:
            done = len(self) - 1
            self.progress(done, self.total, f"dpctgan: epoch {done}/{self.total}")


class SmartNoiseSynthesizer:
    """A SmartNoise DP synthesizer behind the ``Synthesizer`` port.

    Attributes:
        name: The generator type value (``mst``, ``aim``, ``patectgan``, ``dpctgan``).
        device: Where it trained: ``cpu`` or ``cuda (<GPU name>)``.
        library_accounting: What the library itself reports about the budget it used
            (for the report and the tests that compare it with ``privacy``).
    """

    def __init__(self, kind: GeneratorType, params: dict[str, Any], privacy: PrivacySpec) -> None:
        if kind not in _LIBRARY_NAME:
            raise ValueError(f"{kind.value} is not a SmartNoise generator")
        self.kind = kind
        self.name = kind.value
        self.params = dict(params)
        self.epsilon = float(privacy.epsilon)
        self.delta = float(privacy.delta)
        self.public_bounds = dict(privacy.public_bounds or {})
        self.public_categories = dict(privacy.public_categories or {})
        self.device = "cpu"
        self.library_accounting: dict[str, Any] = {}
        self._model: Any = None
        self._fitted: _Fitted | None = None
        self._accounting: PrivacyAccounting | None = None
        self._seed = 0

    @property
    def privacy(self) -> PrivacyAccounting | None:
        """The ε/δ this fit spent (``None`` before ``fit``)."""
        return self._accounting

    # ---------------------------------------------------------------------------------
    # fit

    def fit(self, data: pd.DataFrame, context: FitContext) -> None:
        """Train on ``data`` within ``privacy.epsilon`` (preprocessing included)."""
        if len(data) < 2:
            raise UserInputError("source", "has fewer than 2 rows", "a DP generator needs data")
        seed_everything(context.seed)
        plan = plan_columns(data, context)
        # Every check of the spec against the data runs before any ε is spent.
        public = resolve_public_domains(
            plan, data.dtypes, self.public_bounds, self.public_categories
        )
        self._check_rounds(plan)
        data, dropped = drop_unlisted(data, public.categories)
        if len(data) < 2:
            raise UserInputError(
                _CATEGORIES_FIELD,
                f"leaves {len(data)} training row(s): the other rows hold values not listed",
                "check the lists against the data dictionary (spelling, case)",
            )
        frame = encode(data, plan)
        max_bins = int(self.params.get("maxBins", DEFAULT_MAX_BINS))
        transformer = build_transformer(plan, self.kind in _CUBE, max_bins, public)
        if context.progress is not None:
            context.progress(0, 1, f"{self.name}: estimating DP bounds")
        epsilon_pre = self._fit_transformer(transformer, frame, plan)
        epsilon_train = self.epsilon - epsilon_pre - _SAFETY
        notes = self._preprocessing_notes(plan, public, transformer, epsilon_pre, dropped)
        device = select_device(context, self.params) if self.kind in _GANS else "cpu"
        self.device = device_name(device)
        epsilon_used, library_note = self._train(frame, transformer, epsilon_train, device, context)
        notes.append(library_note)
        self._fitted = _Fitted(plan=plan, dtypes=data.dtypes)
        if self.kind in _CUBE:
            for column, t in zip(plan, transformer.transformers, strict=True):
                if column.kind != "categorical":
                    self._fitted.bin_widths[column.name] = (t.fit_upper - t.fit_lower) / t.bins
                    self._fitted.bounds[column.name] = (t.fit_lower, t.fit_upper)
        self._accounting = PrivacyAccounting(
            epsilon_total=self.epsilon,
            delta=self.delta,
            epsilon_preprocessing=epsilon_pre,
            epsilon_training=epsilon_used,
            notes="; ".join(notes),
            public_domains=self._public_summary(plan, public, dropped),
        )
        self._seed = context.seed
        if context.progress is not None:
            context.progress(1, 1, f"{self.name}: trained")

    @staticmethod
    def _preprocessing_notes(
        plan: list[ColumnPlan],
        public: PublicDomains,
        transformer: Any,
        epsilon_pre: float,
        dropped: int,
    ) -> list[str]:
        """What preprocessing learnt, from where, at what ε (for the report)."""
        estimated = sum(t.needs_epsilon for t in _bounded(transformer))
        if estimated:
            spent = f"DP bounds of {estimated} numeric column(s) for ε={epsilon_pre:.4g}"
        elif any(c.kind != "categorical" for c in plan):
            spent = "every numeric column has public bounds, no ε spent"
        else:
            spent = "no numeric columns, no ε spent"
        notes = [f"preprocessing: {spent}"]
        if public.bounds:
            notes.append(
                f"public bounds (spec.privacy.publicBounds) of {len(public.bounds)} column(s); "
                "values outside them are clamped to them"
            )
        if public.categories:
            notes.append(
                f"public categories (spec.privacy.publicCategories) of "
                f"{len(public.categories)} column(s); {dropped} training row(s) with a value "
                "not listed were dropped"
            )
        unlisted = [c.name for c in plan if c.kind == "categorical"]
        unlisted = [c for c in unlisted if c not in public.categories]
        notes.append(
            ("category sets read from the data, " if unlisted else "")
            + "nullability and row count are treated as public"
        )
        return notes

    @staticmethod
    def _public_summary(
        plan: list[ColumnPlan], public: PublicDomains, dropped: int
    ) -> dict[str, Any]:
        """Which columns' domains came from the spec and which from the data."""
        numeric = [c.name for c in plan if c.kind != "categorical"]
        categorical = [c.name for c in plan if c.kind == "categorical"]
        return {
            "boundsPublic": [c for c in numeric if c in public.bounds],
            "boundsEstimatedWithDp": [c for c in numeric if c not in public.bounds],
            "categoriesPublic": [c for c in categorical if c in public.categories],
            "categoriesFromData": [c for c in categorical if c not in public.categories],
            "rowsDroppedOutsidePublicCategories": dropped,
        }

    def _check_rounds(self, plan: list[ColumnPlan]) -> None:
        """Refuse an AIM ``maxIters`` too small for the table.

        AIM first measures every 1-way marginal with 0.9/rounds of rho each: with fewer
        rounds than model columns that alone overdraws rho and the library breaks.
        """
        rounds = self.params.get("maxIters")
        if self.kind is not GeneratorType.AIM or rounds is None:
            return
        # A nullable numeric column becomes two model columns (bin, is-null).
        least = sum(2 if c.kind != "categorical" and c.nullable else 1 for c in plan) + 1
        if rounds < least:
            raise UserInputError(
                "spec.generator.params.maxIters",
                f"must be at least {least} for this table (its model columns + 1)",
                f"set maxIters: {least} or more, or leave it unset (16 per column)",
            )

    def _fit_transformer(
        self, transformer: Any, frame: pd.DataFrame, plan: list[ColumnPlan]
    ) -> float:
        """Fit the transformer with DP bounds; return the ε it spent (plain sum)."""
        needs = [t for t in transformer.transformers if t.needs_epsilon]
        fraction = float(
            self.params.get("preprocessorEpsilonFraction", DEFAULT_PREPROCESSOR_FRACTION)
        )
        epsilon_pre = self.epsilon * fraction if needs else 0.0
        try:
            with _quiet():
                transformer.fit(frame, epsilon=epsilon_pre if needs else None)
        except ValueError as exc:  # approx_bounds found no bounds: too little ε for the data
            missing = [c.name for c in plan if c.kind != "categorical"]
            missing = [c for c in missing if c not in self.public_bounds]
            raise UserInputError(
                "spec.privacy.epsilon",
                f"too small to estimate DP bounds of the numeric columns ({exc})",
                "raise epsilon or params.preprocessorEpsilonFraction, or give public bounds "
                "(from a data dictionary, never from the data) in privacy.publicBounds for "
                + ", ".join(missing),
            ) from exc
        # Sequential composition of the pure-ε bound estimates: the plain sum is what was
        # spent (the odometer may report a smaller advanced-composition ε that adds a δ).
        spent = float(sum(sum(getattr(t, "budget_spent", [])) for t in _bounded(transformer)))
        self.library_accounting["odometerEpsilon"] = float(transformer.odometer.spent[0])
        self.library_accounting["boundsEpsilon"] = spent
        for column, t in zip(plan, transformer.transformers, strict=True):
            lower, upper = getattr(t, "fit_lower", None), getattr(t, "fit_upper", None)
            if lower is not None and upper is not None and not upper > lower:
                raise UserInputError(
                    f"source.{column.name}",
                    "has a single value (DP bounds are empty)",
                    "drop the constant column or mark it categorical",
                )
        return spent

    def _train(
        self,
        frame: pd.DataFrame,
        transformer: Any,
        epsilon_train: float,
        device: str,
        context: FitContext,
    ) -> tuple[float, str]:
        """Run the library's fit; return the training ε spent and a note for the report."""
        if epsilon_train <= 0:
            raise UserInputError(
                "spec.generator.params.preprocessorEpsilonFraction",
                "leaves no ε for training",
                "lower preprocessorEpsilonFraction (default 0.1)",
            )
        if self.kind is GeneratorType.DPCTGAN:
            return self._train_dpctgan(frame, transformer, epsilon_train, device, context)
        if self.kind is GeneratorType.PATECTGAN:
            return self._train_patectgan(frame, transformer, epsilon_train, device, context)
        from snsynth import Synthesizer as SnSynthesizer

        kwargs: dict[str, Any] = {"delta": self.delta}
        if self.kind is GeneratorType.AIM:
            if "maxModelSize" in self.params:
                kwargs["max_model_size"] = self.params["maxModelSize"]
            if "maxIters" in self.params:
                kwargs["rounds"] = self.params["maxIters"]
        model = SnSynthesizer.create(_LIBRARY_NAME[self.kind], epsilon=epsilon_train, **kwargs)
        with _quiet():
            model.fit(frame, transformer=transformer, preprocessor_eps=0.0)
        self._model = model
        # The library trained with its own ``epsilon`` (nothing was subtracted: the
        # transformer came fitted); MST and AIM turn all of it into a zCDP rho.
        self.library_accounting["trainingEpsilon"] = float(model.epsilon)
        if self.kind is GeneratorType.AIM:
            self.library_accounting["rho"] = float(model.rho)
        return float(
            model.epsilon
        ), f"training: {self.name} zCDP over ε={model.epsilon:.4g}, δ={self.delta:g}"

    def _gan_shape(self, n_rows: int) -> tuple[int, int]:
        batch = int(self.params.get("batchSize", DEFAULT_GAN_BATCH))
        batch = min(batch, n_rows - n_rows % 2)  # opacus needs batch <= rows; the GANs, even
        epochs = int(self.params.get("epochs", DEFAULT_GAN_EPOCHS))
        return batch, epochs

    def _train_dpctgan(
        self, frame: pd.DataFrame, transformer: Any, budget: float, device: str, context: FitContext
    ) -> tuple[float, str]:
        from snsynth import Synthesizer as SnSynthesizer

        n_rows = len(frame)
        batch, wanted = self._gan_shape(n_rows)
        epochs = dpctgan_epochs(n_rows, batch, wanted, budget, self.delta)
        if epochs == 0:
            raise UserInputError(
                "spec.privacy.epsilon",
                f"too small for one DP-CTGAN epoch on {n_rows} rows "
                f"(one epoch costs ε={dpctgan_epsilon(n_rows, batch, 1, self.delta):.3g})",
                "raise epsilon, or lower params.batchSize",
            )
        model = SnSynthesizer.create(
            "dpctgan",
            epsilon=budget,
            delta=self.delta,
            epochs=epochs,
            batch_size=batch,
            sigma=DPCTGAN_SIGMA,
            cuda=device == "cuda",
            verbose=False,
        )
        model.epsilon_list = _EpochList(epochs, context.progress)
        with _quiet():
            model.fit(frame, transformer=transformer, preprocessor_eps=0.0)
        reported = [float(e) for e in model.epsilon_list]
        model.epsilon_list = reported  # drop the callback: the model gets pickled
        self._model = model
        spent = dpctgan_epsilon(n_rows, batch, epochs, self.delta)
        # The library logs ε before each epoch; the list has one entry per epoch run.
        self.library_accounting["epsilonBeforeEpoch"] = reported
        self.library_accounting["epochs"] = epochs
        note = (
            f"training: DP-CTGAN {epochs} epoch(s) (of {wanted} asked) within ε={budget:.4g}, "
            f"opacus RDP accountant, σ={DPCTGAN_SIGMA:g}; batches are drawn by conditional "
            "sampling, which the accountant treats as uniform sampling"
        )
        return spent, note

    def _train_patectgan(
        self, frame: pd.DataFrame, transformer: Any, budget: float, device: str, context: FitContext
    ) -> tuple[float, str]:
        from snsynth import Synthesizer as SnSynthesizer

        batch, _ = self._gan_shape(len(frame))
        rounds = self.params.get("epochs")
        model = SnSynthesizer.create(
            "patectgan",
            epsilon=budget,
            delta=self.delta,
            batch_size=batch,
            cuda=device == "cuda",
            verbose=False,
        )
        guard = PateBudgetGuard(
            budget,
            self.delta,
            model.moments_order,
            model.student_iters,
            None if rounds is None else int(rounds),
            context.progress,
        )
        try:
            with guard.active(), _quiet():
                model.fit(frame, transformer=transformer, preprocessor_eps=0.0)
        except _Stop:
            pass  # the guard ended training: the generator trained so far is the model
        except ValueError as exc:
            if "too small" in str(exc):
                raise UserInputError(
                    "spec.privacy.epsilon", "too small for PATE-CTGAN", "raise epsilon"
                ) from exc
            raise
        if guard.votes == 0:
            raise UserInputError(
                "spec.privacy.epsilon",
                f"too small for one PATE-CTGAN teacher vote (ε for training: {budget:.3g})",
                "raise epsilon or lower params.batchSize",
            )
        self._model = model
        spent = guard.epsilon()
        self.library_accounting["moments"] = guard.moments.tolist()
        self.library_accounting["votes"] = guard.votes
        note = (
            f"training: PATE-CTGAN {guard.votes} teacher vote(s) within ε={budget:.4g}, "
            "data-dependent moments accountant (as in the library and the PATE-GAN paper)"
        )
        return spent, note

    # ---------------------------------------------------------------------------------
    # sample / save

    def sample(self, rows: int, seed: int | None = None) -> pd.DataFrame:
        """Return exactly ``rows`` rows with the training columns and dtypes."""
        if self._model is None or self._fitted is None:
            raise RuntimeError("sample() before fit()")
        seed = self._seed if seed is None else seed
        seed_everything(seed)
        with _quiet():
            raw = self._model.sample(rows)
        frame = pd.DataFrame(raw).reset_index(drop=True).head(rows)
        if len(frame) != rows:
            raise RuntimeError(f"{self.name} produced {len(frame)} of {rows} rows")
        frame.columns = [c.name for c in self._fitted.plan]
        rng = np.random.default_rng(seed)
        # Private-PGM emits rows grouped by value (MST/AIM): shuffle so any prefix is a sample.
        frame = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
        out = pd.DataFrame(index=frame.index)
        for column in self._fitted.plan:
            values = frame[column.name]
            if column.kind == "categorical":
                out[column.name] = values
                continue
            numbers = pd.to_numeric(values, errors="coerce").astype(float)
            width = self._fitted.bin_widths.get(column.name)
            if width:  # a bin midpoint: draw uniformly inside the bin instead
                numbers = numbers + rng.uniform(-width / 2, width / 2, size=len(numbers))
            bounds = self._fitted.bounds.get(column.name)
            if bounds is not None:
                numbers = numbers.clip(*bounds)
            if column.integer:
                numbers = numbers.round()
            if column.kind == "datetime":
                out[column.name] = pd.to_datetime(numbers * 1e9, unit="ns")
            else:
                out[column.name] = numbers
        return conform(out, self._fitted.dtypes)

    def sample_controlled(self, rows: int, seed: int, request: SampleRequest) -> pd.DataFrame:
        """Seeded or rebalanced rows by rejection (SmartNoise samples unconditionally only)."""
        from tabular_runner.generators.conditional import fill_by_rejection

        if request.given is None:
            return self.sample(rows, seed=seed)
        return fill_by_rejection(
            lambda n, s: self.sample(n, seed=s), request.given, seed=seed, generator=self.name
        )

    def save(self, path: Path) -> None:
        """Write the model, column plan and accounting to one file."""
        gan = getattr(self._model, "_generator", None)
        if gan is not None:  # a CUDA tensor would not load on a CPU-only generate stage
            import torch

            gan.to(torch.device("cpu"))
            self._model._device = torch.device("cpu")
        save_envelope(self, path)


def _bounded(transformer: Any) -> list[Any]:
    """Column transformers that estimate DP bounds (bins or min-max)."""
    return [t for t in transformer.transformers if hasattr(t, "budget_spent")]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """SmartNoise prints progress to stdout; keep the stage's stdout for its result."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        text = buffer.getvalue().strip()
        if text:
            log.debug("snsynth: %s", text[-2000:])
