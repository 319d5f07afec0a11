"""Generators behind one ``Synthesizer`` port, and the registry that builds them.

Public API::

    create_synthesizer(spec, privacy) -> Synthesizer     # a fresh, untrained generator
    load_synthesizer(path) -> Synthesizer                # one saved by Synthesizer.save
    choose_generator(n_rows, n_columns, privacy, time_budget_s, gpu) -> (type, reason)
    resolve_auto(spec, n_rows, n_columns, privacy, gpu) -> (concrete spec, reason)

Importing this package is cheap: each family's adapter (``sdv_adapter`` for GaussianCopula,
CTGAN, TVAE and CopulaGAN; ``smartnoise_adapter`` for MST, AIM, PATE-CTGAN and DP-CTGAN) is
imported only when a generator of that family is created or loaded, so SDV, SmartNoise and
torch load only in the stage and engine that need them.

TabularARGN (``argn_adapter``) belongs to another engine, ``argn`` (see
:mod:`tabular_runner.engines`): its adapter is registered here like the others, but it imports
only in the argn environment; elsewhere ``create_synthesizer`` says which engine runs it.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabular_runner.errors import EngineError, UserInputError
from tabular_runner.generators.auto import (
    DEFAULT_TIME_BUDGET_S,
    choose_generator,
    resolve_auto,
)
from tabular_runner.generators.base import FitContext, PrivacyAccounting, Synthesizer
from tabular_runner.spec import GeneratorSpec, GeneratorType, PrivacySpec

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_TIME_BUDGET_S",
    "FitContext",
    "PrivacyAccounting",
    "Synthesizer",
    "CONTROLS",
    "adapter_path",
    "check_controls",
    "check_params",
    "choose_generator",
    "create_synthesizer",
    "load_synthesizer",
    "resolve_auto",
]

_SDV = "tabular_runner.generators.sdv_adapter:SdvSynthesizer"
_SMARTNOISE = "tabular_runner.generators.smartnoise_adapter:SmartNoiseSynthesizer"
_ARGN = "tabular_runner.generators.argn_adapter:ArgnSynthesizer"

_ADAPTERS: dict[GeneratorType, str] = {
    GeneratorType.GAUSSIAN_COPULA: _SDV,
    GeneratorType.CTGAN: _SDV,
    GeneratorType.TVAE: _SDV,
    GeneratorType.COPULAGAN: _SDV,
    GeneratorType.MST: _SMARTNOISE,
    GeneratorType.AIM: _SMARTNOISE,
    GeneratorType.PATECTGAN: _SMARTNOISE,
    GeneratorType.DPCTGAN: _SMARTNOISE,
    GeneratorType.TABULARARGN: _ARGN,
}
"""Generator type -> ``module:Class`` of its adapter (imported lazily)."""

_NOT_YET: dict[GeneratorType, str] = {
    GeneratorType.HMA: "is multi-table and arrives with the MultiTableSchema work",
}

SEED, REBALANCE, IMPUTE, TEMPERATURE = "seed", "rebalance", "impute", "temperature"
_BY_REJECTION = frozenset({SEED, REBALANCE})

CONTROLS: dict[GeneratorType, frozenset[str]] = {
    # GaussianCopula conditions exactly in its latent normal space (generators.conditional).
    GeneratorType.GAUSSIAN_COPULA: frozenset({SEED, REBALANCE, IMPUTE}),
    # SDV conditions these by drawing rows and keeping those that match (categorical cells).
    GeneratorType.CTGAN: _BY_REJECTION,
    GeneratorType.TVAE: _BY_REJECTION,
    GeneratorType.COPULAGAN: _BY_REJECTION,
    # SmartNoise has no conditional sampling: rows drawn and kept where they match (sampling a
    # DP model is post-processing: no ε).
    GeneratorType.MST: _BY_REJECTION,
    GeneratorType.AIM: _BY_REJECTION,
    GeneratorType.PATECTGAN: _BY_REJECTION,
    GeneratorType.DPCTGAN: _BY_REJECTION,
    # TabularARGN: seed_data, imputation and sampling_temperature of mostlyai-engine.
    GeneratorType.TABULARARGN: frozenset({SEED, REBALANCE, IMPUTE, TEMPERATURE}),
}
"""``spec.generation`` controls each generator serves (docs/generation.md)."""

CATEGORICAL_ONLY = frozenset(kind for kind, served in CONTROLS.items() if served == _BY_REJECTION)
"""Generators that condition by rejection: only on categorical or boolean columns."""


def check_controls(kind: GeneratorType, requested: list[str]) -> None:
    """Refuse a control ``kind`` does not serve, naming the generators that do.

    Raises:
        UserInputError: naming ``spec.generation.<control>``.
    """
    for control in requested:
        if control in CONTROLS.get(kind, frozenset()):
            continue
        having = sorted(k.value for k, served in CONTROLS.items() if control in served)
        raise UserInputError(
            f"spec.generation.{control}",
            f"generator {kind.value} does not support {control} (generators that do: "
            f"{', '.join(having)})",
            f"remove generation.{control}, or train the model with one of those generators",
        )


MODEL_FORMAT = "aumos-tabular-model/1"
"""Marker of the one-file model envelope written by every adapter's ``save``."""

DISTRIBUTIONS = ("norm", "beta", "truncnorm", "gamma", "uniform", "gaussian_kde")
"""Marginal distributions GaussianCopula accepts."""


# ---------------------------------------------------------------------------------------
# Parameter checks: value types and ranges (the spec model already refuses unknown keys).


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _even_int(value: Any) -> bool:
    return _positive_int(value) and value % 2 == 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _dims(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) > 0 and all(map(_positive_int, value))


def _distributions(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and v in DISTRIBUTIONS for k, v in value.items()
    )


_PARAM_RULES: dict[str, tuple[Callable[[Any], bool], str, str]] = {
    "sequenceEpochs": (_positive_int, "a positive integer", "sequenceEpochs: 64"),
    "epochs": (_positive_int, "a positive integer", "epochs: 300"),
    "batchSize": (_even_int, "a positive even integer", "batchSize: 500"),
    "embeddingDim": (_positive_int, "a positive integer", "embeddingDim: 128"),
    "generatorDim": (_dims, "a list of positive integers", "generatorDim: [256, 256]"),
    "discriminatorDim": (_dims, "a list of positive integers", "discriminatorDim: [256, 256]"),
    "compressDims": (_dims, "a list of positive integers", "compressDims: [128, 128]"),
    "decompressDims": (_dims, "a list of positive integers", "decompressDims: [128, 128]"),
    "pac": (_positive_int, "a positive integer", "pac: 10"),
    "l2scale": (lambda v: _number(v) and v >= 0, "a number >= 0", "l2scale: 0.00001"),
    "defaultDistribution": (
        lambda v: v in DISTRIBUTIONS,
        f"one of {', '.join(DISTRIBUTIONS)}",
        "defaultDistribution: beta",
    ),
    "numericalDistributions": (
        _distributions,
        f"a mapping of column to one of {', '.join(DISTRIBUTIONS)}",
        "numericalDistributions: {age: beta}",
    ),
    "enforceMinMaxValues": (lambda v: isinstance(v, bool), "true or false", ""),
    "maxBins": (
        lambda v: _positive_int(v) and 2 <= v <= 1000,
        "an integer from 2 to 1000",
        "maxBins: 20",
    ),
    "maxModelSize": (lambda v: _number(v) and v > 0, "a positive number (MB)", "maxModelSize: 80"),
    "maxIters": (_positive_int, "a positive integer", "maxIters: 100"),
    "preprocessorEpsilonFraction": (
        lambda v: _number(v) and 0 < v < 1,
        "a number strictly between 0 and 1",
        "preprocessorEpsilonFraction: 0.1",
    ),
    "useGpu": (lambda v: isinstance(v, bool), "true or false", ""),
    "timeBudgetSeconds": (lambda v: _number(v) and v > 0, "a positive number", ""),
    "maxEpochs": (_positive_int, "a positive integer", "maxEpochs: 100"),
    "maxTrainingTimeSeconds": (
        lambda v: _number(v) and v > 0,
        "a positive number of seconds",
        "maxTrainingTimeSeconds: 600",
    ),
    "modelSize": (
        lambda v: v in ("small", "medium", "large"),
        "one of small, medium, large",
        "modelSize: medium",
    ),
}


def check_params(spec: GeneratorSpec) -> None:
    """Check the values of ``spec.params`` (keys are checked by the spec model).

    Raises:
        UserInputError: naming ``spec.generator.params.<key>`` and the expected value.
    """
    for key, value in spec.params.items():
        rule = _PARAM_RULES.get(key)
        if rule is None:
            continue  # another engine's parameter, checked by that engine's adapter
        ok, expected, example = rule
        if not ok(value):
            hint = f"e.g. {example}" if example else ""
            raise UserInputError(
                f"spec.generator.params.{key}", f"must be {expected}, got {value!r}", hint
            )
    batch, pac = spec.params.get("batchSize"), spec.params.get("pac")
    if batch is not None and spec.type in (GeneratorType.CTGAN, GeneratorType.COPULAGAN):
        if batch % (pac or 10) != 0:
            raise UserInputError(
                "spec.generator.params.batchSize",
                f"must be a multiple of pac ({pac or 10}), got {batch}",
                "CTGAN scores rows in packs of pac; e.g. batchSize: 500 with pac: 10",
            )


# ---------------------------------------------------------------------------------------
# Registry


def adapter_path(kind: GeneratorType) -> str:
    """Return ``module:Class`` of the adapter for ``kind``.

    Raises:
        UserInputError: for ``auto`` (resolve it first), generators not available yet, and
            generators of an engine this environment does not hold (e.g. TabularARGN in core).
    """
    if kind is GeneratorType.AUTO:
        raise UserInputError(
            "spec.generator.type",
            "auto must be resolved to a concrete generator before it is created",
            "call resolve_auto(spec, n_rows, n_columns, privacy, gpu) first",
        )
    if kind in _NOT_YET:
        raise UserInputError(
            "spec.generator.type",
            f"{kind.value} {_NOT_YET[kind]}",
            "use gaussian_copula, ctgan, tvae or copulagan (or mst, aim, patectgan, dpctgan "
            "with privacy), or auto",
        )
    from tabular_runner import engines

    engine = engines.engine_for(kind)
    if engine != engines.CORE and not engines.has_engine(engine):
        raise UserInputError(
            "spec.generator.type",
            f"{kind.value} runs in the {engine} engine, which this environment does not hold",
            f"run the job with `tabular-runner run` (it starts the {engine} engine), or run "
            f"this stage in the {engine} runner image",
        )
    return _ADAPTERS[kind]


def _import_adapter(path: str) -> Any:
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineError(
            f"the generator adapter {module_name} cannot be imported ({exc}); "
            "is this the right engine image / environment?"
        ) from exc
    return getattr(module, class_name)


def create_synthesizer(spec: GeneratorSpec, privacy: PrivacySpec | None) -> Synthesizer:
    """Build an untrained generator for ``spec``.

    Args:
        spec: A concrete generator spec (``auto`` resolved by :func:`resolve_auto`).
        privacy: ε and δ for DP generators; must be ``None`` for the others.

    Raises:
        UserInputError: for ``auto``, ``hma``/``tabularargn`` (not available yet), bad
            parameter values, or a DP generator without ``privacy``.
    """
    path = adapter_path(spec.type)
    check_params(spec)
    if path == _SMARTNOISE and privacy is None:
        raise UserInputError(
            "spec.privacy.epsilon",
            f"generator {spec.type.value} is differentially private and needs ε",
            "set privacy: {epsilon: 1.0}",
        )
    adapter = _import_adapter(path)
    synthesizer: Synthesizer = (
        adapter(spec.type, dict(spec.params), privacy)
        if path == _SMARTNOISE
        else adapter(spec.type, dict(spec.params))
    )
    return synthesizer


def save_envelope(synthesizer: Synthesizer, path: Path) -> None:
    """Write ``synthesizer`` to one file with its generator type (used by adapters' ``save``)."""
    import cloudpickle

    envelope = {
        "format": MODEL_FORMAT,
        "generator": synthesizer.name,
        "adapter": _ADAPTERS[GeneratorType(synthesizer.name)],
        "synthesizer": synthesizer,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        cloudpickle.dump(envelope, handle)
    tmp.replace(path)  # a crash mid-write never leaves a half model under the real name


def load_synthesizer(path: Path) -> Synthesizer:
    """Load a generator saved by ``Synthesizer.save`` (any family) for re-sampling.

    Raises:
        UserInputError: when the file is missing or is not a model written by this runner.
    """
    if not path.is_file():
        raise UserInputError(str(path), "model file not found", "check fromModel / --model")
    with path.open("rb") as handle:
        head = handle.read(2)
    if not head.startswith(b"\x80"):
        raise UserInputError(str(path), "is not a model file written by this runner")
    with path.open("rb") as handle:
        try:
            envelope = pickle.load(handle)
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise UserInputError(
                str(path),
                f"cannot be read as a model ({type(exc).__name__}: {exc})",
                "was it written by another runner version or engine?",
            ) from exc
    if not isinstance(envelope, dict) or envelope.get("format") != MODEL_FORMAT:
        raise UserInputError(str(path), "is not a model file written by this runner")
    synthesizer: Synthesizer = envelope["synthesizer"]
    if synthesizer.name != envelope.get("generator"):
        raise UserInputError(str(path), "is corrupt: its generator type does not match")
    return synthesizer


# ---------------------------------------------------------------------------------------
# Shared frame helpers for the adapters (pandas is imported lazily: keep this package cheap).


def conform(frame: pd.DataFrame, dtypes: pd.Series) -> pd.DataFrame:
    """Give ``frame`` the training frame's column order and dtypes.

    Integer columns are rounded first (a model may emit 41.7 for an int column); integer
    columns with missing values become pandas' nullable ``Int64`` rather than failing.
    """
    import numpy as np
    import pandas as pd

    out = frame.loc[:, list(dtypes.index)].reset_index(drop=True)
    for column, dtype in dtypes.items():
        values = out[column]
        if str(values.dtype) == str(dtype):
            continue
        if pd.api.types.is_bool_dtype(dtype):
            if values.isna().any():
                out[column] = values.astype("boolean")
            else:
                out[column] = values.map(_truthy).astype(bool)
        elif pd.api.types.is_integer_dtype(dtype):
            numeric = pd.to_numeric(values, errors="coerce").round()
            if numeric.isna().any():
                out[column] = numeric.astype("Int64")
            else:
                info: Any = np.iinfo(dtype) if isinstance(dtype, np.dtype) else None
                if info is not None:
                    numeric = numeric.clip(info.min, info.max)
                out[column] = numeric.astype(dtype)
        elif pd.api.types.is_float_dtype(dtype):
            out[column] = pd.to_numeric(values, errors="coerce").astype(dtype)
        elif pd.api.types.is_datetime64_any_dtype(dtype):
            out[column] = pd.to_datetime(values, errors="coerce").astype(dtype)
        else:
            out[column] = values.astype(dtype)
    return out


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)
