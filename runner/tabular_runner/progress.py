"""Progress display: a live rich bar per stage on a terminal, quiet otherwise."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table


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


def summary_table(report: dict[str, Any], out_dir: str) -> Table:
    """The final summary a person reads after ``run``."""
    table = Table(title=f"SynthesisJob {report.get('job', '')}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")

    def fmt(value: Any, digits: int = 3) -> str:
        if value is None:
            return "—"
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value)

    gate = report.get("gate", {})
    timings = report.get("timings", {})
    table.add_row("generator", f"{report.get('generator')} ({report.get('generatorReason', '')})")
    table.add_row("rows generated", fmt(report.get("rowsGenerated")))
    table.add_row("fidelity (SDMetrics quality)", fmt(report.get("fidelityScore")))
    table.add_row("diagnostic", fmt(report.get("diagnosticScore")))
    table.add_row("privacy score (1 − max risk)", fmt(report.get("privacyScore")))
    table.add_row("DCR share (ideal 0.5)", fmt(report.get("privacy", {}).get("dcrShare")))
    if "epsilonSpent" in report:
        table.add_row("ε spent", fmt(report.get("epsilonSpent"), 4))
    verdict = "passed" if gate.get("passed") else f"FAILED: {gate.get('reason', '')}"
    table.add_row("quality gate", verdict)
    table.add_row(
        "time (train / generate / validate)",
        " / ".join(f"{timings.get(s, 0):.1f}s" for s in ("train", "generate", "validate")),
    )
    table.add_row("outputs", out_dir)
    return table
