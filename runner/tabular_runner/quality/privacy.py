"""Privacy risk of synthetic data: Anonymeter attacks and distance to closest record (DCR).

Three Anonymeter 1.1 attacks, each run against the training rows and, as a control, against
holdout rows the generator never saw; the risk is the attacker's *excess* success on training
rows, with a 95 % confidence interval:

* singling out (univariate): queries built from rare values of the synthetic data that isolate
  exactly one real record;
* linkability: the columns are split in two halves; an attack succeeds when both halves of a
  real record have the same nearest synthetic neighbour;
* inference: knowing every other column, guess a secret column from the nearest synthetic
  neighbour; run for a few secret columns (by default up to three, the most sensitive-looking
  categorical ones) and reported one by one.

``maxRisk`` is the highest point estimate of those risks and ``privacyScore = 1 - maxRisk``
(1 is best). An attack that cannot run (singling out finds no usable query, too few columns)
is reported as not computed with the reason; it never crashes the stage, and it does not
count towards ``maxRisk`` (the gate fails on a missing risk only when nothing was computed).

DCR: for every synthetic row, its distance to the nearest training row and to the nearest
holdout row (Gower-like: numeric columns scaled to [0, 1] and compared by absolute difference,
categorical ones 0 when equal, 1 otherwise, averaged over columns). ``dcrShare`` is the share
of synthetic rows closer to training than to holdout (ties count a half) over equally large
training and holdout samples, so 0.5 is ideal and 1.0 means the generator copies its
training rows. Exact matches are rows at distance 0.

Cost is bounded by sampling every table to ``sample_rows`` rows and ``attacks`` attacks. The
nearest-neighbour kernel of Anonymeter is compiled by numba at first use, which costs seconds
per process; :func:`warm_up` compiles it ahead and caches it on disk (call it when building a
runner image).
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeAlias, cast

import numpy as np
import pandas as pd

from tabular_runner.quality.fidelity import guess_sdtype

MISSING = "<missing>"
DEFAULT_SECRETS = 3
LINK_NEIGHBOURS = 1
CONFIDENCE = 0.95
# Secret columns are chosen among those whose name hints at a special category of personal
# data (GDPR art. 9) or at money, in this order of priority.
SENSITIVE_HINTS = (
    "income",
    "salary",
    "wage",
    "diagnos",
    "disease",
    "health",
    "medical",
    "hiv",
    "pregnan",
    "disab",
    "race",
    "ethnic",
    "religio",
    "politic",
    "union",
    "sex",
    "gender",
    "orientation",
    "criminal",
    "credit",
    "debt",
    "marital",
)
MAX_SECRET_CARDINALITY = 100
# DCR distance blocks hold at most this many cells (float32): ~16 MB each.
_DCR_BLOCK_CELLS = 4_000_000
# Categorical columns with more categories are compared by code instead of one-hot.
_ONEHOT_MAX_CATEGORIES = 256
_TIE = 1e-6

Array: TypeAlias = "np.ndarray[Any, Any]"


@dataclass(frozen=True)
class AttackResult:
    """One Anonymeter attack: risk with its confidence interval and the raw success rates."""

    attack: str
    computed: bool
    risk: float | None = None
    ci: tuple[float, float] | None = None
    attack_rate: float | None = None
    attack_rate_error: float | None = None
    baseline_rate: float | None = None
    control_rate: float | None = None
    n_attacks: int = 0
    secret: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def key(self) -> str:
        """Name of the risk: ``singlingOut``, ``linkability`` or ``inference[secret]``."""
        return f"{self.attack}[{self.secret}]" if self.secret else self.attack

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase form."""
        return {
            "attack": self.attack,
            "secret": self.secret,
            "computed": self.computed,
            "risk": self.risk,
            "ci": list(self.ci) if self.ci is not None else None,
            "attackRate": self.attack_rate,
            "attackRateError": self.attack_rate_error,
            "baselineRate": self.baseline_rate,
            "controlRate": self.control_rate,
            "nAttacks": self.n_attacks,
            "details": dict(self.details),
            "reason": self.reason,
            "warnings": list(self.warnings),
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class DcrResult:
    """Distance to closest record: synthetic rows against training and holdout rows."""

    computed: bool
    share: float | None = None
    exact_match_count: int = 0
    exact_match_rate: float | None = None
    holdout_exact_match_rate: float | None = None
    median_dcr: float | None = None
    median_dcr_holdout: float | None = None
    synthetic_rows: int = 0
    reference_rows: int = 0
    reason: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase form."""
        return {
            "computed": self.computed,
            "dcrShare": self.share,
            "exactMatchCount": self.exact_match_count,
            "exactMatchRate": self.exact_match_rate,
            "holdoutExactMatchRate": self.holdout_exact_match_rate,
            "medianDcr": self.median_dcr,
            "medianDcrHoldout": self.median_dcr_holdout,
            "syntheticRows": self.synthetic_rows,
            "referenceRows": self.reference_rows,
            "reason": self.reason,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class PrivacyResult:
    """Anonymeter risks and DCR of a synthetic table."""

    singling_out: AttackResult
    linkability: AttackResult
    inference: list[AttackResult]
    dcr: DcrResult
    columns: list[str] = field(default_factory=list)
    excluded_columns: dict[str, str] = field(default_factory=dict)
    train_rows: int = 0
    holdout_rows: int = 0
    synthetic_rows: int = 0
    attacks: int = 0
    seconds: float = 0.0

    @property
    def attacks_run(self) -> list[AttackResult]:
        """Every attack, in report order."""
        return [self.singling_out, self.linkability, *self.inference]

    @property
    def risks(self) -> dict[str, float]:
        """``{risk name: point estimate}`` of the attacks that were computed."""
        return {a.key: a.risk for a in self.attacks_run if a.computed and a.risk is not None}

    @property
    def max_risk(self) -> float | None:
        """Highest computed risk (0..1), or ``None`` when no attack could run."""
        return max(self.risks.values()) if self.risks else None

    @property
    def inference_max_risk(self) -> float | None:
        """Highest computed inference risk over the secret columns."""
        values = [a.risk for a in self.inference if a.computed and a.risk is not None]
        return max(values) if values else None

    @property
    def privacy_score(self) -> float | None:
        """``1 - max_risk`` (1 is best), or ``None`` when no attack could run."""
        return None if self.max_risk is None else 1.0 - self.max_risk

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase form (goes into ``report.json``)."""
        return {
            "privacyScore": self.privacy_score,
            "maxRisk": self.max_risk,
            "risks": self.risks,
            "singlingOut": self.singling_out.to_dict(),
            "linkability": self.linkability.to_dict(),
            "inference": [a.to_dict() for a in self.inference],
            "inferenceMaxRisk": self.inference_max_risk,
            "dcrShare": self.dcr.share,
            "dcr": self.dcr.to_dict(),
            "columns": list(self.columns),
            "excludedColumns": dict(self.excluded_columns),
            "sampleRows": {
                "train": self.train_rows,
                "holdout": self.holdout_rows,
                "synthetic": self.synthetic_rows,
            },
            "attacks": self.attacks,
            "confidenceLevel": CONFIDENCE,
            "seconds": self.seconds,
        }


# ---------------------------------------------------------------------------------------
# Preparation


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    if len(frame) <= rows:
        return frame.reset_index(drop=True)
    return frame.sample(n=rows, random_state=seed).reset_index(drop=True)


def _select_columns(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    exclude: list[str],
) -> tuple[list[str], dict[str, str]]:
    columns: list[str] = []
    excluded: dict[str, str] = {}
    for name in train.columns:
        column = str(name)
        if column in exclude:
            excluded[column] = "excluded by the caller (identifier or personal data)"
        elif name not in synthetic.columns or name not in holdout.columns:
            excluded[column] = "missing from the synthetic or holdout data"
        elif train[name].isna().all():
            excluded[column] = "every training value is missing"
        elif guess_sdtype(train[name]) == "id":
            excluded[column] = "identifier-like: nearly every value is distinct"
        else:
            columns.append(column)
    return columns, excluded


def _encode(series: pd.Series, like: pd.Series) -> pd.Series:
    """Encode a column as float (numeric, datetime) or str (everything else), as ``like``."""
    if pd.api.types.is_bool_dtype(like):
        return series.astype(object).where(series.notna(), MISSING).astype(str)
    if pd.api.types.is_datetime64_any_dtype(like):
        stamps = pd.to_datetime(series, errors="coerce", utc=True)
        seconds = stamps.astype("int64").astype(float) / 1e9
        return seconds.where(stamps.notna())
    if pd.api.types.is_numeric_dtype(like):
        return pd.to_numeric(series, errors="coerce").astype(float)
    return series.astype(object).where(series.notna(), MISSING).astype(str)


def _prepare(frame: pd.DataFrame, columns: list[str], train: pd.DataFrame) -> pd.DataFrame:
    """Types Anonymeter handles: every frame typed like the training frame, no NaN strings."""
    return pd.DataFrame({c: _encode(frame[c], train[c]) for c in columns})


def default_secrets(frame: pd.DataFrame, columns: list[str], k: int = DEFAULT_SECRETS) -> list[str]:
    """Pick up to ``k`` secret columns for the inference attack, deterministically.

    Categorical columns with 2..100 values come first, those whose name hints at sensitive
    data (``income``, ``race``, ``sex``, ``diagnosis``...) ahead of the others, by hint
    priority and then column order; numeric columns follow in the same order.

    Args:
        frame: The prepared training sample (categorical columns are ``str``).
        columns: Candidate columns.
        k: How many secrets at most.

    Returns:
        The chosen column names.
    """
    ranked: list[tuple[int, int, int, str]] = []
    for position, column in enumerate(columns):
        values = frame[column]
        distinct = int(values.nunique())
        if distinct < 2:
            continue
        lowered = column.lower()
        hint = next(
            (i for i, h in enumerate(SENSITIVE_HINTS) if h in lowered), len(SENSITIVE_HINTS)
        )
        numeric = pd.api.types.is_numeric_dtype(values)
        if not numeric and distinct > MAX_SECRET_CARDINALITY:
            continue
        tier = (2 if numeric else 0) + (0 if hint < len(SENSITIVE_HINTS) else 1)
        ranked.append((tier, hint, position, column))
    return [column for *_, column in sorted(ranked)[:k]]


# ---------------------------------------------------------------------------------------
# Anonymeter


_numba_cache_enabled = False


def _enable_numba_cache() -> None:
    """Cache Anonymeter's compiled nearest-neighbour kernel on disk across processes.

    Anonymeter's ``@jit`` functions are not declared with ``cache=True``, so every process
    would compile them again (seconds on 2 cores). ``Dispatcher.enable_caching`` is numba's
    public switch for that; where no cache directory is writable we silently compile.
    """
    global _numba_cache_enabled
    if _numba_cache_enabled:
        return
    _numba_cache_enabled = True
    try:
        # Import order matters: the kernels module alone hits a circular import.
        import anonymeter.evaluators  # noqa: F401
        from anonymeter.neighbors import mixed_types_kneighbors as kernels

        kernels.gower_distance.enable_caching()
        kernels._nearest_neighbors.enable_caching()
    except Exception:  # noqa: BLE001, S110 - caching is an optimisation only
        pass


def warm_up() -> None:
    """Compile (and cache on disk) Anonymeter's nearest-neighbour kernel ahead of use.

    Run at image build time (``python -c "from tabular_runner.quality.privacy import
    warm_up; warm_up()"``) so the validate stage does not pay the numba compilation.
    """
    _enable_numba_cache()
    import anonymeter.evaluators  # noqa: F401  (import order: see _enable_numba_cache)
    from anonymeter.neighbors.mixed_types_kneighbors import MixedTypeKNeighbors

    rng = np.random.default_rng(0)
    mixed = pd.DataFrame(
        {"a": rng.normal(size=20), "b": rng.integers(0, 5, 20).astype(float), "c": ["x", "y"] * 10}
    )
    for frame in (mixed, mixed[["a", "b"]], mixed[["c"]]):
        MixedTypeKNeighbors(n_neighbors=2, n_jobs=1).fit(frame).kneighbors(frame.head(3))


@contextlib.contextmanager
def _seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG (and polars') for the call; restore numpy's afterwards.

    Anonymeter draws its attack targets with ``DataFrame.sample`` without a random state,
    i.e. from the global RNG; seeding it makes linkability and inference reproducible.
    Singling out stays slightly non-deterministic: it builds queries from polars ``unique``
    results, whose order is not fixed, so its risk varies within its confidence interval.
    """
    import polars

    state = np.random.get_state()
    np.random.seed(seed)
    # Singling out's size correction samples with polars, which has its own generator.
    polars.set_random_seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class _LogCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _collected_warnings() -> Iterator[list[str]]:
    """Collect Anonymeter's warnings (Python warnings and log records) into a list."""
    messages: list[str] = []
    handler = _LogCollector()
    logger = logging.getLogger("anonymeter")
    logger.addHandler(handler)
    texts: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield messages
            finally:
                texts = [str(w.message) for w in caught]
    finally:
        logger.removeHandler(handler)
        for text in texts + handler.messages:
            if text not in messages and "deprecat" not in text.lower():
                messages.append(text)


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


def _attack_result(
    attack: str,
    results: Any,
    n_attacks: int,
    started: float,
    notes: list[str],
    *,
    secret: str | None = None,
    details: dict[str, Any] | None = None,
) -> AttackResult:
    risk = results.risk()
    control = results.control_rate
    return AttackResult(
        attack=attack,
        computed=True,
        risk=_round(risk.value),
        ci=(float(_round(risk.ci[0]) or 0.0), float(_round(risk.ci[1]) or 0.0)),
        attack_rate=_round(results.attack_rate.value),
        attack_rate_error=_round(results.attack_rate.error),
        baseline_rate=_round(results.baseline_rate.value),
        control_rate=None if control is None else _round(control.value),
        n_attacks=n_attacks,
        secret=secret,
        details=details or {},
        warnings=notes,
        seconds=round(time.perf_counter() - started, 3),
    )


def _not_computed(
    attack: str, reason: str, *, secret: str | None = None, started: float | None = None
) -> AttackResult:
    seconds = 0.0 if started is None else round(time.perf_counter() - started, 3)
    return AttackResult(
        attack=attack, computed=False, secret=secret, reason=reason, seconds=seconds
    )


def _singling_out(
    train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, attacks: int, seed: int
) -> AttackResult:
    from anonymeter.evaluators import SinglingOutEvaluator

    started = time.perf_counter()
    try:
        with _collected_warnings() as notes:
            evaluator = SinglingOutEvaluator(
                ori=train, syn=synthetic, control=holdout, n_attacks=attacks, seed=seed
            ).evaluate(mode="univariate")
            queries = len(evaluator.queries())
            results = evaluator.results(confidence_level=CONFIDENCE)
        return _attack_result(
            "singlingOut",
            results,
            attacks,
            started,
            notes,
            details={"mode": "univariate", "successfulQueries": queries},
        )
    except Exception as exc:  # noqa: BLE001 - e.g. too few queries to fit the correction
        return _not_computed("singlingOut", f"{type(exc).__name__}: {exc}", started=started)


def _linkability(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    columns: list[str],
    attacks: int,
) -> AttackResult:
    from anonymeter.evaluators import LinkabilityEvaluator

    if len(columns) < 2:
        return _not_computed("linkability", "needs at least two columns to split")
    half = len(columns) // 2
    aux = (columns[:half], columns[half:])
    return _run_attack(
        "linkability",
        lambda: LinkabilityEvaluator(
            ori=train,
            syn=synthetic,
            control=holdout,
            n_attacks=attacks,
            aux_cols=aux,
            n_neighbors=LINK_NEIGHBOURS,
        ),
        attacks,
        details={"auxColumns": [aux[0], aux[1]], "neighbours": LINK_NEIGHBOURS},
    )


def _inference(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    columns: list[str],
    secret: str,
    attacks: int,
) -> AttackResult:
    from anonymeter.evaluators import InferenceEvaluator

    if secret not in columns:
        return _not_computed(
            "inference", "not a column that can be attacked (absent or excluded)", secret=secret
        )
    aux = [c for c in columns if c != secret]
    if not aux:
        return _not_computed("inference", "needs at least one other column", secret=secret)
    regression = bool(pd.api.types.is_numeric_dtype(train[secret]))
    return _run_attack(
        "inference",
        lambda: InferenceEvaluator(
            ori=train,
            syn=synthetic,
            control=holdout,
            aux_cols=aux,
            secret=secret,
            regression=regression,
            n_attacks=attacks,
        ),
        attacks,
        secret=secret,
        details={"regression": regression, "auxColumns": len(aux)},
    )


def _run_attack(
    attack: str,
    make_evaluator: Callable[[], Any],
    attacks: int,
    *,
    secret: str | None = None,
    details: dict[str, Any] | None = None,
) -> AttackResult:
    """Evaluate one Anonymeter attack; a failure is reported as not computed, never raised."""
    started = time.perf_counter()
    try:
        with _collected_warnings() as notes:
            evaluator = make_evaluator().evaluate(n_jobs=-2)
            results = evaluator.results(confidence_level=CONFIDENCE)
        return _attack_result(
            attack, results, attacks, started, notes, secret=secret, details=details
        )
    except Exception as exc:  # noqa: BLE001 - reported as not computed
        return _not_computed(attack, f"{type(exc).__name__}: {exc}", secret=secret, started=started)


# ---------------------------------------------------------------------------------------
# DCR


@dataclass
class _Encoded:
    """A table as DCR sees it: scaled numeric part, one-hot part, high-cardinality codes."""

    numeric: Array  # float32, scaled to [0, 1], missing = -1
    onehot: Array  # float32, one column per category of the low-cardinality columns
    codes: Array  # int64 category codes of the high-cardinality columns
    numeric_missing: Array  # bool per numeric column: has missing values anywhere
    onehot_columns: int  # how many columns the one-hot part encodes


def _dcr_encode(frames: list[pd.DataFrame], columns: list[str]) -> list[_Encoded]:
    """Encode tables on common scales, so distances between them are comparable."""
    union = pd.concat(frames, ignore_index=True)
    numeric = [c for c in columns if pd.api.types.is_numeric_dtype(union[c])]
    categorical = [c for c in columns if c not in numeric]
    lows = union[numeric].min()
    spans = (union[numeric].max() - lows).replace(0, 1.0).fillna(1.0)
    missing = union[numeric].isna().any().to_numpy(dtype=bool)
    codes = {c: pd.factorize(union[c])[0] for c in categorical}
    cardinality = {c: int(codes[c].max()) + 1 for c in categorical}
    low = [c for c in categorical if cardinality[c] <= _ONEHOT_MAX_CATEGORIES]
    high = [c for c in categorical if c not in low]
    offsets = np.cumsum([0] + [cardinality[c] for c in low])
    encoded: list[_Encoded] = []
    start = 0
    for frame in frames:
        end = start + len(frame)
        scaled = ((frame[numeric] - lows) / spans).fillna(-1.0).to_numpy(dtype=np.float32)
        onehot = np.zeros((len(frame), int(offsets[-1])), dtype=np.float32)
        rows = np.arange(len(frame))
        for i, column in enumerate(low):
            onehot[rows, offsets[i] + codes[column][start:end]] = 1.0
        high_codes = np.stack(
            [codes[c][start:end] for c in high] or [np.zeros(len(frame), dtype=np.int64)], axis=1
        )[:, : len(high)]
        encoded.append(_Encoded(scaled, onehot, high_codes, missing, len(low)))
        start = end
    return encoded


def _nearest_distance(query: _Encoded, ref: _Encoded) -> Array:
    """Distance of every query row to its nearest reference row (summed over columns)."""
    n_ref = len(ref.numeric)
    block = max(1, _DCR_BLOCK_CELLS // max(n_ref, 1))
    out = np.empty(len(query.numeric), dtype=np.float64)
    scratch = np.empty((block, n_ref), dtype=np.float32)
    for lo in range(0, len(query.numeric), block):
        hi = min(lo + block, len(query.numeric))
        tmp = scratch[: hi - lo]
        # Low-cardinality categoricals: mismatches = columns - matches, matches by one BLAS
        # product of one-hot matrices (each row has exactly one 1 per column).
        if query.onehot.size:
            dist = query.onehot_columns - query.onehot[lo:hi] @ ref.onehot.T
        else:
            dist = np.zeros((hi - lo, n_ref), dtype=np.float32)
        for j in range(query.numeric.shape[1]):
            np.subtract(query.numeric[lo:hi, j, None], ref.numeric[None, :, j], out=tmp)
            np.abs(tmp, out=tmp)
            if query.numeric_missing[j]:
                # Missing is -1: against a value that is a full mismatch, so clip at 1.
                np.minimum(tmp, 1.0, out=tmp)
            dist += tmp
        for j in range(query.codes.shape[1]):
            dist += query.codes[lo:hi, j, None] != ref.codes[None, :, j]
        out[lo:hi] = dist.min(axis=1)
    return cast(Array, out)


def _row_hashes(frame: pd.DataFrame) -> Array:
    return cast(Array, pd.util.hash_pandas_object(frame, index=False).to_numpy())


def _dcr(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    columns: list[str],
    *,
    train_full: pd.DataFrame,
    holdout_full: pd.DataFrame,
) -> DcrResult:
    started = time.perf_counter()
    n_ref = min(len(train), len(holdout))
    if not columns or n_ref == 0 or synthetic.empty:
        return DcrResult(computed=False, reason="no rows or no columns to compare")
    # Equal reference sizes: otherwise the larger set is closer by chance and 0.5 is no
    # longer the ideal share.
    ref_train, ref_holdout = train.iloc[:n_ref], holdout.iloc[:n_ref]
    enc_train, enc_holdout, enc_synth = _dcr_encode([ref_train, ref_holdout, synthetic], columns)
    to_train = _nearest_distance(enc_synth, enc_train) / len(columns)
    to_holdout = _nearest_distance(enc_synth, enc_holdout) / len(columns)
    # float32 sums: treat anything below rounding noise as a tie.
    diff = to_train - to_holdout
    closer = np.where(diff < -_TIE, 1.0, np.where(diff <= _TIE, 0.5, 0.0))
    # Exact copies are counted against the whole training and holdout tables, by row hash.
    synth_hashes = _row_hashes(synthetic)
    exact = int(np.isin(synth_hashes, _row_hashes(train_full)).sum())
    exact_holdout = int(np.isin(synth_hashes, _row_hashes(holdout_full)).sum())
    return DcrResult(
        computed=True,
        share=_round(float(closer.mean())),
        exact_match_count=exact,
        exact_match_rate=_round(exact / len(synthetic)),
        holdout_exact_match_rate=_round(exact_holdout / len(synthetic)),
        median_dcr=_round(float(np.median(to_train))),
        median_dcr_holdout=_round(float(np.median(to_holdout))),
        synthetic_rows=len(synthetic),
        reference_rows=n_ref,
        seconds=round(time.perf_counter() - started, 3),
    )


# ---------------------------------------------------------------------------------------
# Entry point


def evaluate(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    *,
    sample_rows: int,
    attacks: int,
    seed: int,
    secret_columns: list[str] | None = None,
    exclude_columns: list[str] | None = None,
) -> PrivacyResult:
    """Measure how much ``synthetic`` leaks about ``train`` beyond what ``holdout`` shows.

    Args:
        train: Real rows the generator was trained on.
        holdout: Real rows held out from training (the control set).
        synthetic: Generated rows.
        sample_rows: Each table is sampled (seeded) to at most this many rows.
        attacks: Anonymeter attacks per evaluator (capped by the sample sizes).
        seed: Seed of the samples and of the attacks.
        secret_columns: Columns the inference attack tries to guess; default: up to three
            chosen by :func:`default_secrets`.
        exclude_columns: Columns left out of every attack, e.g. identifiers and personal
            data that are regenerated as fakes. Identifier-like text columns are left out
            anyway.

    Returns:
        Risks with confidence intervals, DCR, and the sizes and seconds they took. Attacks
        that cannot run are reported as not computed; this function does not raise for
        unusual data.
    """
    started = time.perf_counter()
    columns, excluded = _select_columns(train, holdout, synthetic, list(exclude_columns or []))
    train_raw = _sample(train, sample_rows, seed)
    train_s = _prepare(train_raw, columns, train_raw)
    holdout_s = _prepare(_sample(holdout, sample_rows, seed + 1), columns, train_raw)
    synthetic_s = _prepare(_sample(synthetic, sample_rows, seed + 2), columns, train_raw)
    n_attacks = max(0, min(attacks, len(train_s), len(holdout_s)))
    secrets = (
        list(secret_columns) if secret_columns is not None else default_secrets(train_s, columns)
    )

    reason = None
    if not columns:
        reason = "no column can be attacked (all are identifiers, personal data or missing)"
    elif min(len(train_s), len(holdout_s), len(synthetic_s)) == 0:
        reason = "the training, holdout or synthetic sample is empty"
    if reason is not None:
        return PrivacyResult(
            singling_out=_not_computed("singlingOut", reason),
            linkability=_not_computed("linkability", reason),
            inference=[_not_computed("inference", reason, secret=s) for s in secrets],
            dcr=DcrResult(computed=False, reason=reason),
            columns=columns,
            excluded_columns=excluded,
            train_rows=len(train_s),
            holdout_rows=len(holdout_s),
            synthetic_rows=len(synthetic_s),
            attacks=n_attacks,
            seconds=round(time.perf_counter() - started, 3),
        )

    _enable_numba_cache()
    with _seeded_global_rng(seed):
        singling_out = _singling_out(train_s, holdout_s, synthetic_s, attacks, seed)
        linkability = _linkability(train_s, holdout_s, synthetic_s, columns, n_attacks)
        inference = [
            _inference(train_s, holdout_s, synthetic_s, columns, s, n_attacks) for s in secrets
        ]
    dcr = _dcr(
        train_s,
        holdout_s,
        synthetic_s,
        columns,
        train_full=_prepare(train, columns, train_raw),
        holdout_full=_prepare(holdout, columns, train_raw),
    )
    return PrivacyResult(
        singling_out=singling_out,
        linkability=linkability,
        inference=inference,
        dcr=dcr,
        columns=columns,
        excluded_columns=excluded,
        train_rows=len(train_s),
        holdout_rows=len(holdout_s),
        synthetic_rows=len(synthetic_s),
        attacks=n_attacks,
        seconds=round(time.perf_counter() - started, 3),
    )
