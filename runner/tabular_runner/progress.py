"""Progress of a stage: a live rich bar on a terminal, and ``stages/progress.json`` in a store.

* :class:`StageProgress` — for people: one bar per stage (``tabular-runner run``).
* :class:`StoreProgress` — for the operator: a stage pod has no Kubernetes credentials, so it
  cannot patch the job's status itself; it writes its progress into the job's artifact store,
  where the operator (which can read the store) picks it up. Writes are throttled (an epoch
  can take milliseconds, an S3 PUT tens of them) and best-effort: progress is a courtesy, so
  a failed write is logged and the stage goes on.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from tabular_runner.storage.base import ArtifactStore

PROGRESS_KEY = "stages/progress.json"
"""Where :class:`StoreProgress` writes, relative to the job's store."""

_log = logging.getLogger(__name__)


class StageProgress:
    """Context manager handing out a ``progress(stage, done, total, message)`` callback.

    On a terminal it shows one bar per stage (epochs for the deep models); when stderr is
    not a terminal (CI, a pod) it prints nothing, so logs stay clean.
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.console = Console(stderr=True)
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> StageProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.fields[stage]:<9}"),
                BarColumn(),
                TextColumn("{task.completed:>4.0f}/{task.total:<4.0f}"),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=self.console,
                transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)

    def __call__(self, stage: str, done: int, total: int, message: str) -> None:
        """Record progress of ``stage``."""
        if self._progress is None:
            return
        task = self._tasks.get(stage)
        if task is None:
            task = self._progress.add_task(message, total=total, stage=stage)
            self._tasks[stage] = task
        self._progress.update(task, completed=done, total=total, description=message)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class StoreProgress:
    """A ``progress(stage, done, total, message)`` callback that writes ``stages/progress.json``.

    The document is ``{"stage", "done", "total", "message", "updatedAt"}`` (``updatedAt`` in
    UTC, ISO 8601). The first call is written, then at most one every ``interval_s`` seconds;
    a call that completes its count (``done >= total``) is always written, and :meth:`flush`
    writes the last call if the throttle held it back, so the store ends on the final state.

    Args:
        store: The job's artifact store.
        interval_s: Least time between two writes, in ``clock`` seconds.
        clock: Monotonic seconds (injected so tests need not sleep).
        now: Wall-clock time for ``updatedAt``.
    """

    def __init__(
        self,
        store: ArtifactStore,
        *,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._store = store
        self._interval_s = interval_s
        self._clock = clock
        self._now = now
        self._last_write: float | None = None
        self._pending: dict[str, Any] | None = None
        self.writes = 0
        """Successful writes so far."""

    def __call__(self, stage: str, done: int, total: int, message: str) -> None:
        """Record progress of ``stage``; write it unless the throttle says wait."""
        document = {
            "stage": stage,
            "done": int(done),
            "total": int(total),
            "message": message,
            "updatedAt": self._now().astimezone(UTC).isoformat(timespec="seconds"),
        }
        at = self._clock()
        final = total > 0 and done >= total
        due = self._last_write is None or at - self._last_write >= self._interval_s
        if not (due or final):
            self._pending = document
            return
        self._last_write = at
        self._write(document)

    def flush(self) -> None:
        """Write the last held-back call, if any (call once the stage has ended)."""
        if self._pending is not None:
            self._last_write = self._clock()
            self._write(self._pending)

    def _write(self, document: dict[str, Any]) -> None:
        self._pending = None
        try:
            self._store.put_bytes(PROGRESS_KEY, json.dumps(document).encode(), "application/json")
        except Exception as exc:  # progress must never fail the stage
            _log.warning("could not write %s to %s: %s", PROGRESS_KEY, self._store.uri, exc)
            return
        self.writes += 1


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _time_row(timings: dict[str, Any]) -> str:
    return " / ".join(
        f"{float(timings.get(s) or 0.0):.1f}s" for s in ("train", "generate", "validate")
    )


def _generation_rows(generation: Any) -> list[tuple[str, str]]:
    """What ``spec.generation`` asked and what came out, for the run summary."""
    if not isinstance(generation, dict):
        return []
    rows: list[tuple[str, str]] = []
    seed = generation.get("seed")
    if isinstance(seed, dict):
        rows.append(("seed rows honoured", f"{seed['rowsHonoured']} of {seed['rows']}"))
    rebalance = generation.get("rebalance")
    if isinstance(rebalance, dict):
        shares = ", ".join(
            f"{k} {v:.3f} (asked {rebalance['target'][k]:g})"
            for k, v in rebalance["achieved"].items()
        )
        rows.append((f"rebalanced {rebalance['column']}", shares))
    impute = generation.get("impute")
    if isinstance(impute, dict):
        rows.append(
            (
                "cells imputed",
                f"{impute['cellsFilled']} of {impute['cellsMissing']} "
                f"({impute['presentCellsChanged']} present cells changed)",
            )
        )
    if "temperature" in generation:
        rows.append(("temperature", f"{generation['temperature']:g}"))
    return rows


def summary_table(report: dict[str, Any], out_dir: str) -> Table:
    """The final summary a person reads after ``run`` (single- or multi-table report)."""
    table = Table(title=f"SynthesisJob {report.get('job', '')}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    if report.get("kind") == "multi-table":
        _multitable_rows(table, report)
    else:
        table.add_row(
            "generator", f"{report.get('generator')} ({report.get('generatorReason', '')})"
        )
        table.add_row("rows generated", _fmt(report.get("rowsGenerated")))
        table.add_row("fidelity (SDMetrics quality)", _fmt(report.get("fidelityScore")))
    table.add_row("diagnostic", _fmt(report.get("diagnosticScore")))
    table.add_row("privacy score (1 − max risk)", _fmt(report.get("privacyScore")))
    dcr = report.get("privacy", {}).get("dcrShare", report.get("dcrShare"))
    table.add_row("DCR share (ideal 0.5)", _fmt(dcr))
    if "epsilonSpent" in report:
        table.add_row("ε spent", _fmt(report.get("epsilonSpent"), 4))
    for label, value in _generation_rows(report.get("generation")):
        table.add_row(label, value)
    gate = report.get("gate", {})
    verdict = "passed" if gate.get("passed") else f"FAILED: {gate.get('reason', '')}"
    table.add_row("quality gate", verdict)
    timings = report.get("timings", {})
    table.add_row("time (train / generate / validate)", _time_row(timings))
    if report.get("kind") == "multi-table":
        table.add_row(
            "model time (fit / sample)",
            f"{float(timings.get('training') or 0.0):.1f}s / "
            f"{float(timings.get('generation') or 0.0):.1f}s",
        )
    table.add_row("outputs", out_dir)
    return table


def _multitable_rows(table: Table, report: dict[str, Any]) -> None:
    """What ``auto`` chose and how many rows each table got, as the report records them."""
    requested = report.get("generator")
    strategy = report.get("strategy")
    table.add_row(
        "generator",
        f"{requested} → {strategy} ({report.get('strategyReason', '')})",
    )
    real = report.get("rowsSource") or {}
    generated = report.get("rowsGenerated") or {}
    used = report.get("tableGenerators") or {}
    for name, rows in generated.items():
        how = used.get(name)
        table.add_row(
            f"  {name}",
            f"{rows:,} rows (real {real.get(name, 0):,})" + (f", {how}" if how else ""),
        )
    table.add_row("rows generated", f"{sum(int(v) for v in generated.values()):,}")
    table.add_row("fidelity (SDMetrics multi-table quality)", _fmt(report.get("fidelityScore")))
