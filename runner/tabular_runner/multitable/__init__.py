"""Multi-table synthesis: a MultiTableSchema in, a synthetic database with intact keys out.

Public API::

    run_multitable(schema, job, out_store, ctx) -> report dict   # the three stages in a row
    MULTITABLE_STAGES[stage](schema, job, store, ctx) -> result  # one stage (tabular-runner stage)
    build_graph(schema.spec) -> SchemaGraph                      # structural validation
    choose_strategy(graph, generator) -> StrategyChoice

Modules: :mod:`.graph` (validation, order, depth), :mod:`.integrity` (keys, orphans,
violations), :mod:`.cardinality` (children per parent), :mod:`.keys` (primary keys),
:mod:`.strategies` (HMA and the scalable independent strategy), :mod:`.quality` (SDMetrics
multi-table reports, per-table scores), :mod:`.report_html`, :mod:`.run`. SDV, SDMetrics
and matplotlib are imported only when a run needs them.
"""

from __future__ import annotations

from tabular_runner.multitable.graph import Relation, SchemaGraph, build_graph
from tabular_runner.multitable.run import MULTITABLE_STAGES, run_multitable
from tabular_runner.multitable.strategies import StrategyChoice, choose_strategy

__all__ = [
    "MULTITABLE_STAGES",
    "Relation",
    "SchemaGraph",
    "StrategyChoice",
    "build_graph",
    "choose_strategy",
    "run_multitable",
]
