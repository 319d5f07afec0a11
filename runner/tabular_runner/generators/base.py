"""The ``Synthesizer`` port: one protocol every generator family implements.

Adapters (``sdv_adapter``, ``smartnoise_adapter``, ...) keep their heavy imports inside their
own module, so importing this one is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd

ProgressCallback = Callable[[int, int, str], None]
"""``callback(done, total, message)``: e.g. epochs done of epochs total."""


@dataclass
class PrivacyAccounting:
    """How a DP generator spent the job's ε (and δ)."""

    epsilon_total: float
    delta: float
    epsilon_preprocessing: float = 0.0
    epsilon_training: float = 0.0
    notes: str = ""
    public_domains: dict[str, Any] | None = None
    """Which columns' bounds and categories came from the spec (public) or the data.

    A plain ``None`` default (a class attribute) keeps models pickled before it loadable.
    """

    @property
    def epsilon_spent(self) -> float:
        """ε spent by the whole job: preprocessing plus training."""
        return self.epsilon_preprocessing + self.epsilon_training

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the report (``publicDomains`` only where a generator set it)."""
        out: dict[str, Any] = {
            "epsilonBudget": self.epsilon_total,
            "epsilonSpent": self.epsilon_spent,
            "epsilonPreprocessing": self.epsilon_preprocessing,
            "epsilonTraining": self.epsilon_training,
            "delta": self.delta,
            "notes": self.notes,
        }
        if self.public_domains:
            out["publicDomains"] = dict(self.public_domains)
        return out


@dataclass
class FitContext:
    """What a generator may know besides the data itself."""

    seed: int = 0
    use_gpu: bool = False
    epsilon: float | None = None
    delta: float | None = None
    categorical_columns: list[str] = field(default_factory=list)
    numerical_columns: list[str] = field(default_factory=list)
    datetime_columns: list[str] = field(default_factory=list)
    boolean_columns: list[str] = field(default_factory=list)
    progress: ProgressCallback | None = None


@dataclass(frozen=True)
class SampleRequest:
    """What ``spec.generation`` asks of one draw (see :mod:`tabular_runner.controls`)."""

    given: pd.DataFrame | None = None
    """One output row per row: its present cells kept, the other columns generated to fit
    them. Columns are the model's (fixed combinations already merged)."""
    fill: tuple[str, ...] = ()
    """Given columns whose empty cells are generated (imputation); other empty given cells
    stay empty."""
    temperature: float | None = None


@runtime_checkable
class Synthesizer(Protocol):
    """A trainable tabular generator."""

    name: str
    """Generator type value, e.g. ``gaussian_copula``."""

    def fit(self, data: pd.DataFrame, context: FitContext) -> None:
        """Train on ``data`` (the training split, PII columns already removed)."""

    def sample(self, rows: int, seed: int | None = None) -> pd.DataFrame:
        """Return ``rows`` new rows with the training columns."""

    def sample_controlled(self, rows: int, seed: int, request: SampleRequest) -> pd.DataFrame:
        """Rows drawn as ``request`` asks: ``len(request.given)`` rows when it is set.

        Only called with the controls the generator serves (``generators.CONTROLS``).
        """

    def save(self, path: Path) -> None:
        """Persist the trained model to one file."""

    @property
    def privacy(self) -> PrivacyAccounting | None:
        """ε accounting for DP generators, ``None`` for others."""
