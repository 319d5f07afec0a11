"""The human-readable report: one self-contained HTML page with plots.

``render`` turns the job's ``report.json`` content plus the real and synthetic tables into a
page a person can read offline: inline CSS, matplotlib PNGs embedded as base64, no scripts,
nothing fetched. Plots are drawn on matplotlib's Agg canvas directly (no ``pyplot``), so
rendering never touches a display or global backend state.

Personal data never reaches the page: columns the analysis marks as identifiers, personal
data or free text (``analysis.columns[*].kind``/``pii``), columns the fidelity scoring left
out, and text columns whose values are nearly all distinct are not plotted, and the page
never prints a real value of them (the analysis table shows their counts only).
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tabular_runner.quality.fidelity import guess_sdtype

TEMPLATES = Path(__file__).parent / "templates"
PLOT_SAMPLE_ROWS = 50_000
TOP_CATEGORIES = 12
HEATMAP_MAX_COLUMNS = 16
PROTECTED_KINDS = frozenset({"id", "text", "pii"})
_REAL = "#1f77b4"
_SYNTH = "#ff7f0e"


# ---------------------------------------------------------------------------------------
# Formatting


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def _fmt(value: Any, digits: int = 3) -> str:
    number = _num(value)
    if number is None:
        return "—"
    if number.is_integer() and abs(number) >= 1000:
        return f"{int(number):,}"
    return f"{number:.{digits}f}"


def _pct(value: Any) -> str:
    number = _num(value)
    return "—" if number is None else f"{100 * number:.1f} %"


def _ci(value: Any) -> str:
    if isinstance(value, list | tuple) and len(value) == 2:
        return f"[{_fmt(value[0])}, {_fmt(value[1])}]"
    return "—"


def _scalar(value: Any, limit: int = 160) -> str:
    """A short, printable form of a JSON value (lists and dicts as compact JSON)."""
    if isinstance(value, float):
        return _fmt(value, 4)
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


# ---------------------------------------------------------------------------------------
# Which columns may be shown


def _analysis_columns(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    columns = _list(_mapping(report.get("analysis")).get("columns"))
    return {str(c["name"]): dict(c) for c in columns if isinstance(c, Mapping) and "name" in c}


def protected_columns(report: Mapping[str, Any], real: pd.DataFrame) -> set[str]:
    """Columns whose real values must never appear on the page (ids, personal data, text).

    Args:
        report: The report dict (``analysis``, ``fidelity`` are read when present).
        real: The real table (columns without analysis are judged from their values).

    Returns:
        The protected column names.
    """
    analysis = _analysis_columns(report)
    protected = {str(c) for c in _list(_mapping(report.get("analysis")).get("sensitiveColumns"))}
    for name, column in analysis.items():
        if column.get("pii") or str(column.get("kind", "")).lower() in PROTECTED_KINDS:
            protected.add(name)
    protected |= set(_mapping(_mapping(report.get("fidelity")).get("excludedColumns")))
    for name in real.columns:
        if str(name) not in analysis and guess_sdtype(real[name]) == "id":
            protected.add(str(name))
    return protected


def _kind(name: str, real: pd.Series, analysis: Mapping[str, dict[str, Any]]) -> str:
    kind = str(analysis.get(name, {}).get("kind", "")).lower()
    if kind in ("numeric", "numerical"):
        return "numeric"
    if kind in ("datetime", "categorical", "boolean"):
        return "datetime" if kind == "datetime" else "categorical"
    if pd.api.types.is_bool_dtype(real):
        return "categorical"
    if pd.api.types.is_datetime64_any_dtype(real):
        return "datetime"
    if pd.api.types.is_numeric_dtype(real):
        return "numeric"
    return "categorical"


def _plot_order(
    report: Mapping[str, Any], real: pd.DataFrame, synthetic: pd.DataFrame, protected: set[str]
) -> list[str]:
    """Plottable columns, the worst-scoring first, then the rest in table order."""
    scores = _list(_mapping(report.get("fidelity")).get("columnScores"))
    ranked = sorted(
        (s for s in scores if isinstance(s, Mapping) and "column" in s),
        key=lambda s: (_num(s.get("score")) is None, _num(s.get("score")) or 0.0),
    )
    order = [str(s["column"]) for s in ranked] + [str(c) for c in real.columns]
    seen: set[str] = set()
    out: list[str] = []
    for name in order:
        if name in seen or name in protected:
            continue
        seen.add(name)
        if name in real.columns and name in synthetic.columns:
            out.append(name)
    return out


# ---------------------------------------------------------------------------------------
# Plots


def _png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=80)


def _numeric_values(series: pd.Series, kind: str) -> Any:
    if kind == "datetime":
        stamps = pd.to_datetime(series, errors="coerce", utc=True).dropna()
        # Days since the epoch: matplotlib's date converter expects naive values.
        return (stamps.astype("int64") / 86_400e9).to_numpy()
    values = pd.to_numeric(series, errors="coerce").dropna()
    return values.to_numpy(dtype=float)


def _histogram(name: str, real: pd.Series, synthetic: pd.Series, kind: str) -> str:
    real_v = _numeric_values(real, kind)
    synth_v = _numeric_values(synthetic, kind)
    fig = _figure(5.0, 2.8)
    ax = fig.add_subplot(1, 1, 1)
    if len(real_v) and len(synth_v):
        # Bins over the central 99 % of the real values, so one outlier cannot flatten it.
        low = float(np.quantile(real_v, 0.005))
        high = float(np.quantile(real_v, 0.995))
        if high <= low:
            low, high = float(real_v.min()) - 0.5, float(real_v.max()) + 0.5
        bins = np.linspace(low, high, 31)
        ax.hist(np.clip(real_v, low, high), bins=bins, density=True, alpha=0.55, color=_REAL)
        ax.hist(np.clip(synth_v, low, high), bins=bins, density=True, alpha=0.55, color=_SYNTH)
    if kind == "datetime":
        from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

        # Our values are days since 1970-01-01; matplotlib's epoch is the same by default.
        locator = AutoDateLocator()  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.set_title(name, fontsize=10)
    ax.set_yticks([])
    ax.legend(["real", "synthetic"], fontsize=8, frameon=False)
    return _png(fig)


def _category_labels(series: pd.Series) -> pd.Series:
    return series.astype(object).where(series.notna(), "(missing)").astype(str)


def _bars(name: str, real: pd.Series, synthetic: pd.Series) -> str:
    real_c = _category_labels(real).value_counts(normalize=True)
    synth_c = _category_labels(synthetic).value_counts(normalize=True)
    top = list(real_c.index[:TOP_CATEGORIES])
    real_p = [float(real_c.get(c, 0.0)) for c in top]
    synth_p = [float(synth_c.get(c, 0.0)) for c in top]
    if len(real_c) > len(top) or set(synth_c.index) - set(top):
        top.append("(other)")
        real_p.append(max(0.0, 1.0 - sum(real_p)))
        synth_p.append(max(0.0, 1.0 - sum(synth_p)))
    labels = [label if len(label) <= 24 else label[:23] + "…" for label in top]
    fig = _figure(5.0, max(2.0, 0.28 * len(labels) + 0.9))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(labels))
    ax.barh(y - 0.2, real_p, height=0.4, color=_REAL, label="real")
    ax.barh(y + 0.2, synth_p, height=0.4, color=_SYNTH, label="synthetic")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_title(name, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def _heatmaps(real: pd.DataFrame, synthetic: pd.DataFrame, columns: list[str]) -> str | None:
    """Pearson correlations of numeric columns: real, synthetic and their absolute gap."""
    if len(columns) < 2:
        return None
    real_c = real[columns].apply(pd.to_numeric, errors="coerce").corr().to_numpy()
    synth_c = synthetic[columns].apply(pd.to_numeric, errors="coerce").corr().to_numpy()
    size = 2.2 + 0.28 * len(columns)
    fig = _figure(3 * size, size)
    panels = (("real", real_c, -1, "coolwarm"), ("synthetic", synth_c, -1, "coolwarm"))
    image = None
    for i, (title, matrix, vmin, cmap) in enumerate(
        (*panels, ("|real − synthetic|", np.abs(real_c - synth_c), 0, "Reds"))
    ):
        ax = fig.add_subplot(1, 3, i + 1)
        image = ax.imshow(matrix, vmin=vmin, vmax=1, cmap=cmap)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=7)
        ax.set_yticks(range(len(columns)), columns if i == 0 else [], fontsize=7)
    if image is not None:
        fig.colorbar(image, ax=fig.axes, shrink=0.7)
    return _png(fig)


def _pair_matrix(pairs: list[dict[str, Any]], allowed: set[str]) -> str | None:
    """SDMetrics Column Pair Trends scores as a matrix (grey: pair does not count)."""
    scored = [
        p
        for p in pairs
        if str(p.get("column1")) in allowed
        and str(p.get("column2")) in allowed
        and _num(p.get("score")) is not None
    ]
    names: list[str] = []
    for pair in scored:
        for key in ("column1", "column2"):
            if str(pair[key]) not in names:
                names.append(str(pair[key]))
    if len(names) < 2:
        return None
    names = names[: HEATMAP_MAX_COLUMNS + 8]
    index = {n: i for i, n in enumerate(names)}
    matrix = np.full((len(names), len(names)), np.nan)
    for pair in scored:
        a, b = index.get(str(pair["column1"])), index.get(str(pair["column2"]))
        if a is None or b is None:
            continue
        matrix[a, b] = matrix[b, a] = _num(pair["score"]) or 0.0
    size = 2.5 + 0.3 * len(names)
    fig = _figure(size + 1.0, size)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(np.ma.masked_invalid(matrix), vmin=0, vmax=1, cmap="RdYlGn")  # type: ignore[no-untyped-call]
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_title("Pair trend score (1 = same trend; blank = not scored)", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _png(fig)


def _sample(frame: pd.DataFrame) -> pd.DataFrame:
    if len(frame) <= PLOT_SAMPLE_ROWS:
        return frame
    return frame.sample(n=PLOT_SAMPLE_ROWS, random_state=0)


# ---------------------------------------------------------------------------------------
# Tables


def _gate_view(gate: Mapping[str, Any]) -> dict[str, Any]:
    if not gate:
        return {"state": "none", "label": "not evaluated", "reason": None, "checks": []}
    checks = [
        {
            "metric": str(c.get("metric", "")),
            "threshold": f"{c.get('thresholdName', '')} {_fmt(c.get('threshold'), 2)}",
            "actual": _fmt(c.get("actual")),
            "passed": bool(c.get("passed")),
        }
        for c in _list(gate.get("checks"))
        if isinstance(c, Mapping)
    ]
    passed = bool(gate.get("passed"))
    reason = gate.get("reason")
    if reason is None and not passed:
        failures = [f for f in _list(gate.get("failures")) if isinstance(f, Mapping)]
        reason = failures[0].get("message") if failures else None
    return {
        "state": "pass" if passed else "fail",
        "label": "passed" if passed else "failed",
        "reason": reason,
        "checks": checks,
    }


_ATTACK_LABELS = {
    "singlingOut": "Singling out (univariate)",
    "linkability": "Linkability",
    "inference": "Inference",
}


def _attack_row(attack: Mapping[str, Any]) -> dict[str, Any]:
    name = _ATTACK_LABELS.get(str(attack.get("attack")), str(attack.get("attack", "attack")))
    if attack.get("secret"):
        name = f"{name}: {attack['secret']}"
    computed = bool(attack.get("computed"))
    return {
        "name": name,
        "computed": computed,
        "risk": _fmt(attack.get("risk")),
        "ci": _ci(attack.get("ci")),
        "attackRate": _fmt(attack.get("attackRate")),
        "baselineRate": _fmt(attack.get("baselineRate")),
        "controlRate": _fmt(attack.get("controlRate")),
        "nAttacks": _fmt(attack.get("nAttacks"), 0),
        "note": "; ".join(str(w) for w in _list(attack.get("warnings")))
        if computed
        else f"not computed: {attack.get('reason') or 'unknown reason'}",
        "seconds": _fmt(attack.get("seconds"), 2),
    }


def _privacy_view(privacy: Mapping[str, Any]) -> dict[str, Any]:
    attacks = [privacy.get("singlingOut"), privacy.get("linkability")]
    attacks += _list(privacy.get("inference"))
    rows = [_attack_row(a) for a in attacks if isinstance(a, Mapping)]
    dcr = _mapping(privacy.get("dcr"))
    dcr_rows: list[tuple[str, str]] = []
    if dcr:
        if dcr.get("computed", True):
            dcr_rows = [
                ("DCR share (closer to training than holdout; ideal 0.5)", _fmt(dcr["dcrShare"])),
                (
                    "Exact copies of training rows",
                    f"{_fmt(dcr.get('exactMatchCount'), 0)} ({_pct(dcr.get('exactMatchRate'))})",
                ),
                ("Exact copies of holdout rows (baseline)", _pct(dcr.get("holdoutExactMatchRate"))),
                ("Median distance to closest training row", _fmt(dcr.get("medianDcr"), 4)),
                ("Median distance to closest holdout row", _fmt(dcr.get("medianDcrHoldout"), 4)),
                (
                    "Rows compared (synthetic / reference)",
                    f"{_fmt(dcr.get('syntheticRows'), 0)} / {_fmt(dcr.get('referenceRows'), 0)}",
                ),
            ]
        else:
            dcr_rows = [("DCR", f"not computed: {dcr.get('reason') or 'unknown reason'}")]
    sizes = _mapping(privacy.get("sampleRows"))
    return {
        "rows": rows,
        "dcr": dcr_rows,
        "maxRisk": _fmt(privacy.get("maxRisk")),
        "sizes": ", ".join(f"{k} {_fmt(v, 0)}" for k, v in sizes.items()),
        "excluded": _mapping(privacy.get("excludedColumns")),
        "confidence": _pct(privacy.get("confidenceLevel", 0.95)),
    }


def _fidelity_view(fidelity: Mapping[str, Any]) -> dict[str, Any]:
    columns = [
        {"column": str(c.get("column")), "metric": str(c.get("metric")), "score": _fmt(c["score"])}
        for c in _list(fidelity.get("columnScores"))
        if isinstance(c, Mapping) and "score" in c
    ]
    pairs = [
        {
            "pair": f"{p.get('column1')} × {p.get('column2')}",
            "metric": str(p.get("metric")),
            "score": _fmt(p.get("score")),
            "real": _fmt(p.get("realCorrelation")),
            "synthetic": _fmt(p.get("syntheticCorrelation")),
        }
        for p in _list(fidelity.get("worstPairs"))
        if isinstance(p, Mapping)
    ]
    properties = [
        ("Quality score", fidelity.get("score")),
        ("Column Shapes", fidelity.get("columnShapes")),
        ("Column Pair Trends", fidelity.get("columnPairTrends")),
        ("Diagnostic score", fidelity.get("diagnosticScore")),
        ("Data Validity", fidelity.get("dataValidity")),
        ("Data Structure", fidelity.get("dataStructure")),
    ]
    sizes = _mapping(fidelity.get("sampleRows"))
    return {
        "properties": [(label, _fmt(value)) for label, value in properties],
        "columns": columns,
        "pairs": pairs,
        "excluded": _mapping(fidelity.get("excludedColumns")),
        "notes": [str(n) for n in _list(fidelity.get("notes"))],
        "sizes": ", ".join(f"{k} {_fmt(v, 0)}" for k, v in sizes.items()),
    }


_ANALYSIS_FIELDS = (
    ("dtype", "dtype"),
    ("nullFraction", "missing"),
    ("cardinality", "distinct"),
    ("uniqueFraction", "unique share"),
)


def _analysis_view(report: Mapping[str, Any], protected: set[str]) -> list[dict[str, str]]:
    rows = []
    for name, column in _analysis_columns(report).items():
        row = {
            "name": name,
            "kind": str(column.get("kind", "—")),
            "pii": str(column.get("pii") or ("id" if column.get("kind") == "id" else "")),
        }
        for key, label in _ANALYSIS_FIELDS:
            value = column.get(key)
            row[label] = (
                _pct(value)
                if key in ("nullFraction", "uniqueFraction")
                else (_scalar(value) if value is not None else "—")
            )
        # Ranges are real values: only for columns that are not protected.
        shown = name not in protected
        row["min"] = _scalar(column["min"], 40) if shown and column.get("min") is not None else "—"
        row["max"] = _scalar(column["max"], 40) if shown and column.get("max") is not None else "—"
        rows.append(row)
    return rows


def _generation_view(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What ``spec.generation`` asked and what came out, one row per reported figure."""
    generation = _mapping(report.get("generation"))
    if not generation:
        return []
    rows = [("asked", ", ".join(map(str, _list(generation.get("requested")))))]
    for control in ("seed", "rebalance", "impute"):
        rows.extend((f"{control}: {k}", v) for k, v in _pairs_of(generation.get(control)))
    if "temperature" in generation:
        rows.append(("temperature", _scalar(generation["temperature"])))
    if report.get("qualityReference"):
        rows.append(("fidelity measured against", _scalar(report["qualityReference"])))
    return rows


def _pairs_of(value: Any) -> Iterable[tuple[str, str]]:
    for key, item in _mapping(value).items():
        yield str(key), _scalar(item)


# ---------------------------------------------------------------------------------------
# Entry point


def render(
    report: dict[str, Any],
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    *,
    columns_limit: int = 12,
) -> str:
    """Render the job's report as one self-contained HTML page.

    Args:
        report: The ``report.json`` content (camelCase): ``job``, ``generator``,
            ``rowsGenerated``, ``fidelityScore``, ``diagnosticScore``, ``fidelity``,
            ``privacy``, ``privacyScore``, ``epsilonSpent``, ``privacyAccounting``, ``gate``,
            ``timings``, ``analysis``, ``constraints``. Every part is optional.
        real: The real table (values of protected columns are never shown).
        synthetic: The synthetic table.
        columns_limit: At most this many per-column distribution plots (worst first).

    Returns:
        The HTML page.
    """
    import jinja2

    protected = protected_columns(report, real)
    analysis = _analysis_columns(report)
    real_s, synth_s = _sample(real), _sample(synthetic)
    plots: list[dict[str, str]] = []
    for name in _plot_order(report, real, synthetic, protected)[: max(0, columns_limit)]:
        kind = _kind(name, real[name], analysis)
        image = (
            _bars(name, real_s[name], synth_s[name])
            if kind == "categorical"
            else _histogram(name, real_s[name], synth_s[name], kind)
        )
        plots.append({"column": name, "kind": kind, "image": image})

    visible = [str(c) for c in real.columns if str(c) not in protected and c in synthetic.columns]
    numeric = [c for c in visible if _kind(c, real[c], analysis) == "numeric"]
    fidelity = _mapping(report.get("fidelity"))
    privacy = _mapping(report.get("privacy"))
    heatmap = _heatmaps(real_s, synth_s, numeric[:HEATMAP_MAX_COLUMNS])
    pair_matrix = _pair_matrix(
        [dict(p) for p in _list(fidelity.get("pairScores")) if isinstance(p, Mapping)],
        set(visible),
    )
    timings = [(str(k), _fmt(v, 2)) for k, v in _mapping(report.get("timings")).items()]
    for label, part in (("validate: fidelity", fidelity), ("validate: privacy", privacy)):
        if part.get("seconds") is not None:
            timings.append((label, _fmt(part["seconds"], 2)))
    accounting = list(_pairs_of(report.get("privacyAccounting")))
    epsilon = report.get("epsilonSpent")
    context = {
        "job": str(report.get("job") or "synthesis job"),
        "generator": str(report.get("generator") or "—"),
        "summary": [
            ("Rows generated", _fmt(report.get("rowsGenerated"), 0)),
            ("Fidelity", _fmt(report.get("fidelityScore", fidelity.get("score")))),
            ("Diagnostic", _fmt(report.get("diagnosticScore", fidelity.get("diagnosticScore")))),
            ("Privacy score", _fmt(report.get("privacyScore", privacy.get("privacyScore")))),
            ("Max privacy risk", _fmt(privacy.get("maxRisk"))),
            ("DCR share", _fmt(privacy.get("dcrShare"))),
            ("ε spent", _fmt(epsilon) if _num(epsilon) is not None else "— (not DP)"),
        ],
        "gate": _gate_view(_mapping(report.get("gate"))),
        "plots": plots,
        "hidden": sorted(protected & {str(c) for c in real.columns}),
        "heatmap": heatmap,
        "pairMatrix": pair_matrix,
        "fidelity": _fidelity_view(fidelity) if fidelity else None,
        "privacy": _privacy_view(privacy) if privacy else None,
        "accounting": accounting,
        "timings": timings,
        "constraints": list(_pairs_of(report.get("constraints"))),
        "generation": _generation_view(report),
        "analysis": _analysis_view(report, protected),
    }
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html").render(**context)
