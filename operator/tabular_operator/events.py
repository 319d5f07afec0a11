"""The lifecycle publisher port: every phase transition, for the mirrors (DESIGN §5).

The data-plane issue brings the PostgreSQL mirror and the Kafka outbox behind this port; the
operator publishes through it today, and :class:`LogPublisher` writes each record as one
structured log line (what a log pipeline can already consume).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol


class Publisher(Protocol):
    """Receives one record per lifecycle transition of a SynthesisJob."""

    def publish(self, record: Mapping[str, Any]) -> None:
        """Record ``{"type", "namespace", "name", "uid", "phase", ...}``; at least once."""


class LogPublisher:
    """One JSON log line per transition (logger ``tabular_operator.lifecycle``)."""

    def __init__(self) -> None:
        self.log = logging.getLogger("tabular_operator.lifecycle")

    def publish(self, record: Mapping[str, Any]) -> None:
        """Log the record as structured ``extra`` fields."""
        self.log.info("lifecycle %s", record.get("type"), extra={"lifecycle": dict(record)})


EVENT_TYPES = {
    "QUEUED": "generation.job.queued",
    "TRAINING": "generation.job.training_started",
    "GENERATING": "generation.job.generating",
    "VALIDATING": "generation.job.validating",
    "COMPLETE": "generation.job.complete",
    "FAILED": "generation.job.failed",
}
"""Phase → lifecycle event type (the names DESIGN §5 gives the Kafka events)."""
