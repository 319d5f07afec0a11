"""Named crash points: test-only hooks that kill the operator at a step boundary.

A reconcile can be interrupted between any two of its side effects; each boundary that
matters carries a name (``crash_point("after-train-job-created")``). Off unless the
``AUMOS_FAULT_POINTS`` setting names the point, so production never pays more than a set
lookup. With ``AUMOS_FAULT_ONCE_DIR`` set, each point fires once (a marker file records it),
so the restarted operator runs past it: "killed right after creating the train Job" is a
test anyone can rerun, not a lucky timing (etcd's gofail failpoints work the same way).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

POINTS = (
    "after-allocate",
    "after-train-job-created",
    "during-training",
    "after-result-read",
    "before-consume",
    "after-consume",
    "between-stages",
    "in-finalizer",
)
"""Every crash point of the reconcile loop (the operator crash matrix arms them all)."""

RELAY_POINTS = ("relay-after-send",)
"""Crash points of the outbox relay: ``relay-after-send`` fires once the broker acknowledged a
batch and before the rows are marked sent (tests/integration/test_relay_faults.py)."""


class Faults:
    """The armed crash points of this process."""

    def __init__(self, armed: str = "", once_dir: str = "") -> None:
        self.armed = frozenset(p.strip() for p in armed.split(",") if p.strip())
        known = POINTS + RELAY_POINTS
        unknown = self.armed - set(known)
        if unknown:
            raise ValueError(f"unknown crash points {sorted(unknown)}; known: {', '.join(known)}")
        self.once_dir = Path(once_dir) if once_dir else None

    def crash_point(self, name: str) -> None:
        """Kill this process with SIGKILL if ``name`` is armed (and has not fired yet)."""
        if name not in self.armed:
            return
        if self.once_dir is not None:
            marker = self.once_dir / f"{name}.fired"
            if marker.exists():
                return
            self.once_dir.mkdir(parents=True, exist_ok=True)
            marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
