"""Prometheus metrics of the operator (served on ``AUMOS_METRICS_PORT``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tabular_runner.spec import Phase


class Metrics:
    """The operator's metrics in one registry (tests make their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.jobs = Gauge(
            "aumos_synthesis_jobs",
            "SynthesisJobs this operator has seen, by phase.",
            ["phase"],
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "aumos_stage_duration_seconds",
            "Wall time of finished stages (the runner's own measure).",
            ["stage"],
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600),
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "aumos_reconcile_errors",
            "Reconciles that raised (retried).",
            registry=self.registry,
        )
        self.reconciles = Counter("aumos_reconciles", "Reconcile passes.", registry=self.registry)
        self.retries = Counter(
            "aumos_stage_retries",
            "Stage pods that failed and were retried.",
            registry=self.registry,
        )
        self._phases: dict[str, str] = {}

    def set_phase(self, uid: str, phase: str | None) -> None:
        """Track one job's phase (``None`` forgets it: deleted)."""
        if phase is None:
            self._phases.pop(uid, None)
        else:
            self._phases[uid] = phase
        for p in Phase:
            self.jobs.labels(phase=p.value).set(
                sum(1 for v in self._phases.values() if v == p.value)
            )

    def serve(self, port: int) -> None:
        """Serve ``/metrics`` on ``port`` (0: not served)."""
        if port:
            start_http_server(port, registry=self.registry)
