"""The human-readable report of a multi-table job: one self-contained HTML page.

It shows the strategy and why, the key checks (foreign-key violations per relationship,
primary-key duplicates, orphans found in the real data), the SDMetrics multi-table scores,
per-table fidelity and privacy, timings, and one plot per relationship comparing the real
and synthetic children-per-parent distributions. No data values are shown: only counts and
scores (keys can be personal data).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from typing import Any

import pandas as pd

from tabular_runner.multitable.cardinality import children_per_parent
from tabular_runner.multitable.graph import SchemaGraph

MAX_PLOTS = 12

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;
padding:.25rem .6rem;text-align:left}th{background:#f3f3f3}.ok{color:#17702b}
.bad{color:#b00020;font-weight:bold}.plots img{width:23rem;margin:.3rem}
"""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{cell if isinstance(cell, _Raw) else _fmt(cell)}</td>" for cell in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _stat(summary: dict[str, Any]) -> str:
    return f"mean {_fmt(summary.get('mean'))}, median {_fmt(summary.get('median'))}"


class _Raw(str):
    """Trusted markup (built here) that ``_table`` must not escape."""


def _verdict(count: int) -> _Raw:
    return _Raw(
        f'<span class="ok">{count}</span>' if count == 0 else f'<span class="bad">{count}</span>'
    )


def _cardinality_plot(name: str, real: Any, synthetic: Any) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 2.8), dpi=90)
    top = int(max(real.max() if len(real) else 0, synthetic.max() if len(synthetic) else 0))
    bins = min(40, top + 1) or 1
    ax.hist([real, synthetic], bins=bins, label=["real", "synthetic"], density=True)
    ax.set_title(name, fontsize=8)
    ax.set_xlabel("children per parent row", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def render_multitable(
    report: Mapping[str, Any],
    real: Mapping[str, pd.DataFrame],
    synthetic: Mapping[str, pd.DataFrame],
    graph: SchemaGraph,
) -> str:
    """Render ``report.json`` of a multi-table job as one HTML page.

    Args:
        report: The report written by :func:`~tabular_runner.multitable.run.run_multitable`.
        real: The real tables (after orphan handling), for the cardinality plots.
        synthetic: The synthetic tables.
        graph: The schema's graph.

    Returns:
        The page.
    """
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_fmt(report.get('job'))}"
        f"</title><style>{_STYLE}</style></head><body>"
    ]
    parts.append(f"<h1>Synthetic database: {_fmt(report.get('job'))}</h1>")
    parts.append(
        f"<p>Schema <b>{_fmt(report.get('schema'))}</b>; "
        f"strategy <b>{_fmt(report.get('strategy'))}</b>"
        f" — {_fmt(report.get('strategyReason'))}</p>"
    )
    gate = report.get("gate") or {}
    parts.append(
        _table(
            [
                "Fidelity (SDMetrics multi-table)",
                "Diagnostic",
                "Cardinality shape",
                "Max privacy risk",
                "Max DCR share",
                "Gate",
            ],
            [
                [
                    report.get("fidelityScore"),
                    report.get("diagnosticScore"),
                    report.get("cardinalityShapeSimilarity"),
                    report.get("privacyRisk"),
                    report.get("dcrShare"),
                    "passed" if gate.get("passed", True) else "FAILED",
                ]
            ],
        )
    )

    parts.append("<h2>Keys</h2>")
    checks = report.get("foreignKeyChecks") or []
    parts.append(
        _table(
            ["Relationship", "Child rows", "References", "Violations"],
            [
                [c["relationship"], c["childRows"], c["references"], _verdict(int(c["violations"]))]
                for c in checks
            ],
        )
    )
    duplicates = report.get("primaryKeyDuplicates") or {}
    if duplicates:
        parts.append(
            _table(
                ["Table", "Duplicate primary keys"],
                [[t, _verdict(int(n))] for t, n in duplicates.items()],
            )
        )
    orphans = report.get("orphans") or []
    if orphans:
        parts.append("<h3>Orphans in the real data</h3>")
        parts.append(
            _table(
                ["Relationship", "Orphan rows", "Missing keys", "Action"],
                [
                    [o["relationship"], o["orphanRows"], o["distinctMissingKeys"], o["action"]]
                    for o in orphans
                ],
            )
        )

    parts.append("<h2>Tables</h2>")
    rows = []
    source = report.get("rowsSource") or {}
    generated = report.get("rowsGenerated") or {}
    for table, entry in (report.get("tables") or {}).items():
        privacy = entry.get("privacy") or {}
        rows.append(
            [
                table,
                source.get(table),
                generated.get(table),
                entry.get("fidelityScore"),
                entry.get("diagnosticScore"),
                privacy.get("maxRisk"),
                privacy.get("dcrShare"),
                privacy.get("reason") or "",
            ]
        )
    parts.append(
        _table(
            [
                "Table",
                "Real rows",
                "Synthetic rows",
                "Quality",
                "Diagnostic",
                "Max privacy risk",
                "DCR share",
                "Note",
            ],
            rows,
        )
    )

    linked = report.get("linkedPrivacy") or []
    if linked:
        parts.append("<h2>Privacy of linked rows</h2>")
        parts.append(
            "<p>Each child row joined with its parent's columns, and for an ordered history "
            "also each whole history as one record; the holdout is whole parents (no model saw "
            "a held-out parent or its children).</p>"
        )
        parts.append(
            _table(
                ["Relationship", "Record", "Max privacy risk", "DCR share", "Note"],
                [
                    [
                        x["relationship"],
                        x.get("record", ""),
                        x["privacy"].get("maxRisk"),
                        x["privacy"].get("dcrShare"),
                        x["privacy"].get("reason") or "",
                    ]
                    for x in linked
                ],
            )
        )

    sdm = report.get("sdmetrics") or {}
    props = []
    for label in ("quality", "diagnostic"):
        for name, score in ((sdm.get(label) or {}).get("properties") or {}).items():
            props.append([label, name, score])
    if props:
        parts.append("<h2>SDMetrics multi-table reports</h2>")
        parts.append(_table(["Report", "Property", "Score"], props))
        for note in sdm.get("notes") or []:
            parts.append(f"<p>{_fmt(note)}</p>")
    trends = report.get("intertableTrends") or []
    if trends:
        parts.append("<h2>Intertable Trends per relationship</h2>")
        parts.append(
            "<p>How well each child's columns follow its parent's (SDMetrics, parent column × "
            "child column pairs in the child joined with its parent; 1 is best).</p>"
        )
        parts.append(
            _table(
                ["Relationship", "Score", "Column pairs"],
                [[t["relationship"], t["score"], t["columnPairs"]] for t in trends],
            )
        )
    sequences = report.get("sequences") or []
    if sequences:
        parts.append("<h2>Ordered histories</h2>")
        rows = []
        for q in sequences:
            measured = [
                (label, q[key])
                for key, label in (
                    ("length", "events per parent"),
                    ("gap", "gap"),
                    ("first", "first event"),
                    ("last", "last event"),
                )
            ]
            measured += [
                (f"each entity's {stat} of {column}", m)
                for column, stats in q["perEntity"].items()
                for stat, m in stats.items()
            ]
            rows += [
                [q["relationship"], label, m["similarity"], _stat(m["real"]), _stat(m["synthetic"])]
                for label, m in measured
            ]
            rows.append([q["relationship"], "order violations", q["orderViolations"], "", ""])
        parts.append(_table(["Relationship", "Measure", "Similarity", "Real", "Synthetic"], rows))

    parts.append("<h2>Children per parent</h2>")
    card = {c["relationship"]: c for c in report.get("cardinality") or []}
    parts.append(
        _table(
            [
                "Relationship",
                "Shape similarity",
                "Mean (real)",
                "Mean (synthetic)",
                "Max (real)",
                "Max (synthetic)",
            ],
            [
                [
                    n,
                    c["shapeSimilarity"],
                    c["realMeanChildren"],
                    c["syntheticMeanChildren"],
                    c["realMaxChildren"],
                    c["syntheticMaxChildren"],
                ]
                for n, c in card.items()
            ],
        )
    )
    parts.append("<div class='plots'>")
    for rel in graph.relations[:MAX_PLOTS]:
        r = children_per_parent(real[rel.parent], rel.parent_key, real[rel.child], rel.child_key)
        s = children_per_parent(
            synthetic[rel.parent], rel.parent_key, synthetic[rel.child], rel.child_key
        )
        image = _cardinality_plot(rel.name, r, s)
        parts.append(f"<img alt='{html.escape(rel.name)}' src='data:image/png;base64,{image}'>")
    parts.append("</div>")

    timings = report.get("timings") or {}
    parts.append("<h2>Timings (s)</h2>")
    parts.append(_table(["Step", "Seconds"], [[k, v] for k, v in timings.items()]))
    parts.append("</body></html>")
    return "".join(parts)
