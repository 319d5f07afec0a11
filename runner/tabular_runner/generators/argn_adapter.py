"""MOSTLY AI TabularARGN (``mostlyai-engine``) behind the ``Synthesizer`` port; engine ``argn``.

This module runs only in the ``argn`` environment (numpy 2, torch 2.13, opacus 1.6): see
:mod:`tabular_runner.engines`. The engine works on a workspace folder (split → analyze →
encode → train → generate); the trained model is the workspace's ``ModelStore`` plus the
column metadata, which :meth:`ArgnSynthesizer.save` packs into the runner's one-file model.

Parameters (``generator.params``): ``maxTrainingTimeSeconds`` (default 600), ``maxEpochs``
(default 100; training stops earlier when the validation loss stops improving), ``modelSize``
(``small | medium | large``, default ``medium``), ``useGpu``.

Differential privacy (``privacy`` set): DP-SGD training (Opacus, RDP accountant) plus DP value
protection of the column statistics. The job's ε is the engine's ``max_epsilon``, of which
``preprocessorEpsilonFraction`` (default 0.1) goes to value protection; the engine keeps only
checkpoints whose total ε (statistics + training so far) is within ``max_epsilon`` and stops
when the next epoch would exceed it. The ε of the kept checkpoint is read back from the
engine's progress log and checked against the budget before the model is stored.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabular_runner.errors import EngineError, UserInputError
from tabular_runner.generators.base import (
    FitContext,
    PrivacyAccounting,
    ProgressCallback,
    SampleRequest,
)
from tabular_runner.generators.device import CPU, CUDA, cuda_available, device_name, wants_gpu
from tabular_runner.spec import GeneratorType

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_MAX_TRAINING_TIME_S = 600.0
DEFAULT_MAX_EPOCHS = 100
DEFAULT_MODEL_SIZE = "medium"
MODEL_SIZES = {"small": "MOSTLY_AI/Small", "medium": "MOSTLY_AI/Medium", "large": "MOSTLY_AI/Large"}
DEFAULT_VALUE_PROTECTION_FRACTION = 0.1
"""Share of the job's ε spent on DP value protection of the column statistics."""

# Parts of a trained workspace that generation needs; the rest (training data, optimizer
# state, the DP accountant) stays out of the model file.
_MODEL_PARTS = ("ModelStore/tgt-stats", "ModelStore/model-data", "OriginalData/tgt-meta")
_TRAINING_ONLY = {"optimizer.pt", "lr-scheduler.pt", "dp-accountant.pt"}


class ArgnSynthesizer:
    """TabularARGN: an autoregressive network over the table's columns (mostlyai-engine)."""

    def __init__(self, kind: GeneratorType, params: dict[str, Any]) -> None:
        if kind is not GeneratorType.TABULARARGN:
            raise UserInputError("spec.generator.type", f"{kind.value} is not TabularARGN")
        self.name = kind.value
        self.params = dict(params)
        self.device = CPU
        self.epochs_trained: float | None = None
        self._use_gpu = False
        self._model: bytes | None = None
        self._dtypes: pd.Series | None = None
        self._privacy: PrivacyAccounting | None = None

    @property
    def privacy(self) -> PrivacyAccounting | None:
        """ε accounting when trained with DP, else ``None``."""
        return self._privacy

    # -----------------------------------------------------------------------------------

    def fit(self, data: pd.DataFrame, context: FitContext) -> None:
        """Train TabularARGN on ``data`` (DP when ``context.epsilon`` is set)."""
        from mostlyai import engine
        from mostlyai.engine.domain import DifferentialPrivacyConfig, ModelEncodingType

        self._use_gpu = wants_gpu(context, self.params)
        device = CUDA if self._use_gpu and cuda_available() else CPU
        self.device = device_name(device)
        dp = None
        if context.epsilon is not None:
            fraction = float(
                self.params.get("preprocessorEpsilonFraction", DEFAULT_VALUE_PROTECTION_FRACTION)
            )
            dp = DifferentialPrivacyConfig(
                max_epsilon=context.epsilon,
                delta=context.delta if context.delta is not None else 1e-6,
                value_protection_epsilon=fraction * context.epsilon,
            )
        encodings: dict[str, str | ModelEncodingType] = {
            column: ModelEncodingType.tabular_categorical
            for column in [*context.categorical_columns, *context.boolean_columns]
            if column in data.columns
        }
        minutes = float(self.params.get("maxTrainingTimeSeconds", DEFAULT_MAX_TRAINING_TIME_S)) / 60
        with tempfile.TemporaryDirectory(prefix="aumos-argn-") as tmp:
            workspace = Path(tmp) / "ws"
            engine.set_random_state(context.seed)
            engine.split(
                tgt_data=data.reset_index(drop=True),
                model_type="TABULAR",
                tgt_encoding_types=encodings,
                workspace_dir=workspace,
            )
            engine.analyze(differential_privacy=dp, workspace_dir=workspace)
            engine.encode(workspace_dir=workspace)
            engine.train(
                model=MODEL_SIZES[str(self.params.get("modelSize", DEFAULT_MODEL_SIZE))],
                max_training_time=minutes,
                max_epochs=float(self.params.get("maxEpochs", DEFAULT_MAX_EPOCHS)),
                differential_privacy=dp,
                device=device,
                workspace_dir=workspace,
                update_progress=_progress_adapter(context.progress),
            )
            checkpoint = _kept_checkpoint(workspace)
            self.epochs_trained = checkpoint.get("epoch")
            if dp is not None and context.epsilon is not None:
                self._privacy = _accounting(workspace, checkpoint, context.epsilon, dp.delta)
            self._model = _pack(workspace)
        self._dtypes = data.dtypes

    def sample(self, rows: int, seed: int | None = None) -> pd.DataFrame:
        """Generate ``rows`` rows with the training columns and dtypes."""
        return self.sample_controlled(rows, seed if seed is not None else 0, SampleRequest())

    def sample_controlled(self, rows: int, seed: int, request: SampleRequest) -> pd.DataFrame:
        """Rows from the engine: seeded, imputing, at a sampling temperature.

        A seed is the engine's ``seed_data``, imputation its ``imputation`` (the given rows
        with holes as ``seed_data``); a rebalanced column arrives as a seed column.
        """
        import pandas as pd
        from mostlyai import engine
        from mostlyai.engine.domain import ImputationConfig

        from tabular_runner.generators import conform
        from tabular_runner.generators.conditional import restore_given

        if self._model is None or self._dtypes is None:
            raise EngineError("TabularARGN: sample() called before fit()")
        device = CUDA if self._use_gpu and cuda_available() else CPU
        given = request.given.reset_index(drop=True) if request.given is not None else None
        with tempfile.TemporaryDirectory(prefix="aumos-argn-") as tmp:
            workspace = Path(tmp) / "ws"
            _unpack(self._model, workspace)
            engine.set_random_state(seed)
            engine.generate(
                seed_data=given,
                sample_size=None if given is not None else rows,
                sampling_temperature=request.temperature or 1.0,
                imputation=ImputationConfig(columns=list(request.fill)) if request.fill else None,
                device=device,
                workspace_dir=workspace,
            )
            frame = pd.read_parquet(workspace / "SyntheticData")
        # The engine returns nullable extension dtypes (Int64, string); give back the
        # training frame's dtypes so every engine's output looks the same downstream.
        frame = conform(_to_numpy_dtypes(frame), self._dtypes)
        if given is not None:
            frame = conform(restore_given(frame, given, request.fill), self._dtypes)
        return frame

    def save(self, path: Path) -> None:
        """Write the model (the packed engine workspace) to one file."""
        from tabular_runner.generators import save_envelope

        if self._model is None:
            raise EngineError("TabularARGN: save() called before fit()")
        save_envelope(self, path)


# ---------------------------------------------------------------------------------------
# Helpers


def _progress_adapter(progress: ProgressCallback | None) -> Any:
    def update(**kwargs: Any) -> None:
        message = kwargs.get("message")
        if progress is None or not isinstance(message, dict):
            return
        epoch = message.get("epoch")
        loss = message.get("val_loss")
        text = f"epoch {epoch:.0f}" if isinstance(epoch, int | float) else "training"
        if isinstance(loss, int | float):
            text += f", validation loss {loss:.3f}"
        progress(int(kwargs.get("completed") or 0), int(kwargs.get("total") or 0), text)

    return update


def _kept_checkpoint(workspace: Path) -> dict[str, Any]:
    """The engine's progress record of the checkpoint it kept (the last one saved)."""
    import pandas as pd

    log = workspace / "ModelStore" / "model-data" / "progress-messages.csv"
    if not log.is_file():
        raise EngineError(f"TabularARGN wrote no training log ({log.name}); training failed")
    records = pd.read_csv(log)
    kept = records[records["is_checkpoint"].fillna(0).astype(int) == 1]
    if kept.empty:
        raise EngineError("TabularARGN saved no model checkpoint")
    return {str(key): value for key, value in kept.iloc[-1].to_dict().items()}


def _accounting(
    workspace: Path, checkpoint: dict[str, Any], epsilon: float, delta: float
) -> PrivacyAccounting:
    """ε of the kept checkpoint, split into value protection and training; checked ≤ budget.

    Raises:
        UserInputError: when even the first checkpoint spent more than the job's ε (the
            engine keeps one checkpoint in any case; we refuse to release it).
    """
    import json
    import math

    stats = json.loads((workspace / "ModelStore" / "tgt-stats" / "stats.json").read_text())
    preprocessing = float(stats.get("value_protection_epsilon_spent") or 0.0)
    total = checkpoint.get("dp_eps")
    if not isinstance(total, int | float) or math.isnan(total):
        raise EngineError("TabularARGN reported no ε for its DP checkpoint")
    if total > epsilon * (1 + 1e-9):
        raise UserInputError(
            "spec.privacy.epsilon",
            f"TabularARGN needs ε ≈ {total:.3g} for even one epoch on this data, more than the "
            f"budget {epsilon:g}",
            "raise privacy.epsilon, train on more rows, or choose mst or aim for small budgets",
        )
    return PrivacyAccounting(
        epsilon_total=epsilon,
        delta=delta,
        epsilon_preprocessing=preprocessing,
        epsilon_training=float(total) - preprocessing,
        notes=(
            "TabularARGN DP-SGD (Opacus, RDP accountant) at the reported δ, plus DP value "
            "protection of the column statistics (preprocessing); ε of the kept checkpoint "
            f"after {checkpoint.get('epoch', 0):.2f} epochs, as accounted by mostlyai-engine"
        ),
    )


def _pack(workspace: Path, parts: tuple[str, ...] = _MODEL_PARTS) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for part in parts:
            folder = workspace / part
            if not folder.is_dir():
                continue
            for file in sorted(folder.rglob("*")):
                if file.is_file() and file.name not in _TRAINING_ONLY:
                    archive.add(file, arcname=str(file.relative_to(workspace)))
    return buffer.getvalue()


def _unpack(model: bytes, workspace: Path) -> None:
    workspace.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(model), mode="r:gz") as archive:
        if hasattr(tarfile, "data_filter"):  # Python ≥ 3.11.4
            archive.extractall(workspace, filter="data")
            return
        # Debian bookworm's Python 3.11.2 (the images' local base) has no extraction filters:
        # the same rule by hand — plain files and folders only, nothing outside the workspace.
        root = workspace.resolve()
        for member in archive.getmembers():
            target = (root / member.name).resolve()
            if not (member.isfile() or member.isdir()) or not target.is_relative_to(root):
                raise ValueError(f"model archive member {member.name!r} is not allowed")
        archive.extractall(root)


def _to_numpy_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """Nullable ``string`` columns become ``object`` with ``None`` → NaN (as pandas reads CSV)."""
    import numpy as np

    out = frame.copy()
    for column in out.columns:
        if str(out[column].dtype) in ("string", "str"):
            out[column] = out[column].astype(object).where(out[column].notna(), np.nan)
    return out


# ---------------------------------------------------------------------------------------
# Children with their parent as context (linked tables and ordered histories)

_CONTEXT_KEY = "__parent"
_CONTEXT_PARTS = ("ModelStore", "OriginalData/tgt-meta", "OriginalData/ctx-meta")


class ArgnContextModel:
    """TabularARGN over a child table with its parent as context (``mostlyai-engine``).

    The parent's columns are the context (``ctx_data`` keyed by ``ctx_primary_key``); the
    child's rows of one parent are one sequence (``tgt_context_key``), so the model learns
    how many children a parent has (zero included) and what they look like *given* the
    parent, at generation from the synthetic parent rows. With ``order_by`` the rows of a
    parent are given in order (an ordered history; dates encoded relative to the previous
    event, as MOSTLY AI does for sequences); without it, in file order.

    Same interface as :class:`tabular_runner.multitable.sequences.ParSequenceModel`.
    """

    handles_empty = True
    name = "tabularargn"

    def __init__(
        self,
        order_by: str | None,
        kind: str,
        attributes: list[str],
        context: list[str],
        params: dict[str, Any],
        seed: int = 0,
    ) -> None:
        self.order_by = order_by
        self.kind = kind
        self.attributes = attributes
        self.context = context
        self.params = dict(params)
        self.seed = seed
        self.epochs = params.get("maxEpochs", DEFAULT_MAX_EPOCHS)
        self.fit_seconds = 0.0
        self._model: bytes | None = None
        self._dtypes: pd.Series | None = None
        self._order_scale: OrderScale | None = None

    def fit(
        self,
        histories: pd.DataFrame,
        parents: pd.DataFrame,
        key: tuple[str, ...],
        parent_key: tuple[str, ...],
        sdtypes: dict[str, str],
    ) -> None:
        """Train on the child rows (grouped by parent, in order) with the parents as context."""
        import time

        from mostlyai import engine
        from mostlyai.engine.domain import ModelEncodingType

        from tabular_runner.multitable.integrity import key_strings

        started = time.perf_counter()
        columns = [c for c in [self.order_by, *self.attributes] if c is not None]
        tgt = histories[columns].copy()
        tgt.insert(0, _CONTEXT_KEY, key_strings(histories, key).to_numpy())
        tgt = tgt[tgt[_CONTEXT_KEY].notna()]
        if self.order_by is not None:
            tgt = tgt.sort_values([_CONTEXT_KEY, self.order_by], kind="stable")
        ctx = parents[self.context].copy()
        ctx.insert(0, _CONTEXT_KEY, key_strings(parents, parent_key).to_numpy())
        # The engine refuses a child whose parent is not in the context (orphans are
        # resolved before training; this keeps it so).
        tgt = tgt[tgt[_CONTEXT_KEY].isin(set(ctx[_CONTEXT_KEY]))]
        categorical = {"categorical", "boolean"}
        tgt_types: dict[str, str | ModelEncodingType] = {
            c: ModelEncodingType.tabular_categorical
            for c in self.attributes
            if sdtypes.get(c) in categorical
        }
        if self.order_by is not None and self.kind == "datetime":
            tgt[self.order_by] = pd_datetime(tgt[self.order_by])
            tgt_types[self.order_by] = ModelEncodingType.tabular_datetime_relative
        elif self.order_by is not None:
            # A numeric order column goes through the same relative encoding (the first
            # event, then the steps between events), as days from an origin.
            self._order_scale = OrderScale.of(tgt[self.order_by])
            tgt[self.order_by] = self._order_scale.to_dates(tgt[self.order_by])
            tgt_types[self.order_by] = ModelEncodingType.tabular_datetime_relative
        ctx_types: dict[str, str | ModelEncodingType] = {
            c: ModelEncodingType.tabular_categorical
            for c in self.context
            if sdtypes.get(c) in categorical
        }
        minutes = float(self.params.get("maxTrainingTimeSeconds", DEFAULT_MAX_TRAINING_TIME_S)) / 60
        with tempfile.TemporaryDirectory(prefix="aumos-argn-ctx-") as tmp:
            workspace = Path(tmp) / "ws"
            engine.set_random_state(self.seed)
            engine.split(
                tgt_data=tgt.reset_index(drop=True),
                ctx_data=ctx.reset_index(drop=True),
                tgt_context_key=_CONTEXT_KEY,
                ctx_primary_key=_CONTEXT_KEY,
                model_type="TABULAR",
                tgt_encoding_types=tgt_types,
                ctx_encoding_types=ctx_types,
                workspace_dir=workspace,
            )
            engine.analyze(workspace_dir=workspace)
            engine.encode(workspace_dir=workspace)
            use_gpu = bool(self.params.get("useGpu")) and cuda_available()
            engine.train(
                model=MODEL_SIZES[str(self.params.get("modelSize", DEFAULT_MODEL_SIZE))],
                max_training_time=minutes,
                max_epochs=float(self.params.get("maxEpochs", DEFAULT_MAX_EPOCHS)),
                device=CUDA if use_gpu else CPU,
                workspace_dir=workspace,
            )
            self._model = _pack(workspace, _CONTEXT_PARTS)
        self._dtypes = histories[columns].dtypes
        self.fit_seconds = round(time.perf_counter() - started, 3)

    def sample(self, parents: pd.DataFrame, parent_key: tuple[str, ...], seed: int) -> pd.DataFrame:
        """Children of every parent row given; ``__entity`` holds the parent's key string."""
        import pandas as pd
        from mostlyai import engine

        from tabular_runner.generators import conform
        from tabular_runner.multitable.integrity import key_strings

        if self._model is None or self._dtypes is None:
            raise EngineError("TabularARGN: sample() called before fit()")
        ctx = parents[self.context].copy()
        ctx.insert(0, _CONTEXT_KEY, key_strings(parents, parent_key).to_numpy())
        use_gpu = bool(self.params.get("useGpu")) and cuda_available()
        with tempfile.TemporaryDirectory(prefix="aumos-argn-ctx-") as tmp:
            workspace = Path(tmp) / "ws"
            _unpack(self._model, workspace)
            engine.set_random_state(seed)
            engine.generate(
                ctx_data=ctx.reset_index(drop=True),
                device=CUDA if use_gpu else CPU,
                workspace_dir=workspace,
            )
            frame = pd.read_parquet(workspace / "SyntheticData")
        keys = frame[_CONTEXT_KEY].astype(str).to_numpy()
        if self._order_scale is not None and self.order_by is not None:
            frame[self.order_by] = self._order_scale.to_numbers(frame[self.order_by])
        body = conform(_to_numpy_dtypes(frame.drop(columns=[_CONTEXT_KEY])), self._dtypes)
        body.insert(0, "__entity", keys)
        return body.reset_index(drop=True)


@dataclass(frozen=True)
class OrderScale:
    """A numeric order column as dates, for TabularARGN's relative encoding of histories.

    The engine's ``TABULAR_DATETIME_RELATIVE`` learns the first event, then the steps
    between events, so generated histories come out in order. ``lowest`` maps to
    2000-01-01 and one day is ``unit`` order units (1 unless the span exceeds about a
    century of days, which pandas' dates could not hold).
    """

    lowest: float
    unit: float

    @classmethod
    def of(cls, values: pd.Series) -> OrderScale:
        """The scale of the real order values."""
        import pandas as pd

        numbers = pd.to_numeric(values, errors="coerce").astype(float)
        lowest = float(numbers.min()) if numbers.notna().any() else 0.0
        span = float(numbers.max()) - lowest if numbers.notna().any() else 0.0
        return cls(lowest=lowest, unit=max(1.0, span / _MAX_ORDER_DAYS))

    def to_dates(self, values: pd.Series) -> pd.Series:
        """Order values as dates."""
        import pandas as pd

        numbers = pd.to_numeric(values, errors="coerce").astype(float)
        days = (numbers - self.lowest) / self.unit
        return pd.Timestamp(_ORDER_ORIGIN) + pd.to_timedelta(days, unit="D")

    def to_numbers(self, dates: pd.Series) -> pd.Series:
        """Generated dates back as order values."""
        import pandas as pd

        parsed = pd.to_datetime(dates, errors="coerce")
        days = (parsed - pd.Timestamp(_ORDER_ORIGIN)) / pd.Timedelta(days=1)
        return days * self.unit + self.lowest


_ORDER_ORIGIN = "2000-01-01"
_MAX_ORDER_DAYS = 36_500.0


def pd_datetime(values: pd.Series) -> pd.Series:
    """Dates as datetimes (text parsed), for the engine's datetime encodings."""
    import pandas as pd

    return pd.to_datetime(values, errors="coerce", format="mixed")
