"""Benchmark (not a test): train once, generate many ways, on the whole of UCI Adult.

Per generator (``--generators``, default ``gaussian_copula,tabularargn``):

1. the original job: ``tabular-runner run`` of train + generate + validate (10,000 rows);
2. ``fromModel`` jobs on its model, generate + validate only: plain, seeded (5,000 real
   ``sex, race, age`` rows), rebalanced (``income`` 50/50, 10,000 rows), imputing (10,000 real
   rows with 30 % of ``occupation`` removed), and at temperature 0.8 where the generator has one.

Printed per job: seconds, the ratio to the original job (the target is under 25 %), and what
the report says came out: honoured seed share, target vs achieved shares, filled cells and
their column shape, fidelity (and what it was measured against) and privacy risk.

Also: SDV's own ``sample_remaining_columns`` on 200 imputation rows against ours
(:mod:`tabular_runner.generators.conditional` explains why ours exists).

Usage::

    python benchmarks/bench_controls.py [--generators gaussian_copula] [--argn-seconds 120]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "runner"))

from tabular_runner import datasets  # noqa: E402
from tabular_runner.cli import main  # noqa: E402


def _say(*parts: Any) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def _write(folder: Path, name: str, spec: dict[str, Any]) -> Path:
    job = {
        "apiVersion": "tabular.aumos.io/v1alpha1",
        "kind": "SynthesisJob",
        "metadata": {"name": name},
        "spec": {"seed": 7, "output": {"format": "csv"}, **spec},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def _run(folder: Path, name: str, spec: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    manifest = _write(folder, name, spec)
    started = time.perf_counter()
    code = main(["run", str(manifest), "--out", str(folder / name), "--quiet"])
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"{name}: tabular-runner exited {code}")
    report: dict[str, Any] = json.loads((folder / name / "report.json").read_text())
    return seconds, report


def _describe(report: dict[str, Any]) -> str:
    parts = [
        f"fidelity {report['fidelityScore']:.3f}",
        f"privacy risk {report['privacyRisk']:.3f}"
        if report.get("privacyRisk") is not None
        else "",
    ]
    generation = report.get("generation") or {}
    if "seed" in generation:
        parts.append(f"seed honoured {generation['seed']['honouredShare']:.4f}")
    if "rebalance" in generation:
        r = generation["rebalance"]
        parts.append(f"target {r['target']} achieved {r['achieved']}")
    if "impute" in generation:
        i = generation["impute"]
        shapes = {c: v["columnShape"] for c, v in i["filledColumns"].items()}
        parts.append(
            f"filled {i['cellsFilled']}/{i['cellsMissing']} cells, present changed "
            f"{i['presentCellsChanged']}, column shape {shapes}"
        )
    if "temperature" in generation:
        parts.append(f"temperature {generation['temperature']}")
    return "; ".join(p for p in parts if p)


def _sdv_per_row(real: pd.DataFrame, holes: pd.DataFrame) -> None:
    """SDV's sample_remaining_columns on imputation rows, against ours, same model."""
    from sdv.metadata import Metadata
    from sdv.single_table import GaussianCopulaSynthesizer

    from tabular_runner.generators.conditional import copula_given

    data = real.drop(columns=["fnlwgt"])
    metadata = Metadata.detect_from_dataframes({"data": data})
    model = GaussianCopulaSynthesizer(metadata)
    model.fit({"data": data})
    known = holes.drop(columns=["fnlwgt", "occupation"]).head(200).reset_index(drop=True)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.sample_remaining_columns(known_columns=known)
    sdv_s = time.perf_counter() - started
    given = known.assign(occupation=np.nan)
    started = time.perf_counter()
    copula_given(model, given, fill=["occupation"], seed=1)
    ours_s = time.perf_counter() - started
    _say(
        f"imputing 200 rows, GaussianCopula: SDV sample_remaining_columns {sdv_s:.1f} s "
        f"({200 / sdv_s:.0f} rows/s), ours {ours_s:.2f} s ({200 / ours_s:.0f} rows/s), "
        f"ratio {sdv_s / ours_s:.0f}x"
    )


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generators", default="gaussian_copula,tabularargn")
    parser.add_argument("--argn-seconds", type=float, default=120.0)
    args = parser.parse_args()

    real = datasets.load("adult")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="aumos-bench-controls-") as tmp:
        folder = Path(tmp)
        real.to_csv(folder / "adult.csv", index=False)
        real[["sex", "race", "age"]].sample(5000, random_state=1).to_csv(
            folder / "seed.csv", index=False
        )
        holes = real.sample(10_000, random_state=2).reset_index(drop=True)
        holes.loc[rng.random(len(holes)) < 0.3, "occupation"] = np.nan
        holes.to_csv(folder / "holes.csv", index=False)
        _say(f"UCI Adult: {len(real)} rows x {real.shape[1]} columns")
        _sdv_per_row(real, holes)

        for generator in args.generators.split(","):
            label = generator.replace("_", "-")  # job names are DNS labels
            params: dict[str, Any] = {}
            if generator == "tabularargn":
                params = {"maxTrainingTimeSeconds": args.argn_seconds}
            base = {"generator": {"type": generator, "params": params}}
            seconds, report = _run(
                folder,
                f"{label}-train",
                {**base, "source": {"uri": "file://adult.csv"}, "rows": 10_000},
            )
            _say(f"\n{generator}: train+generate+validate {seconds:.1f} s; {_describe(report)}")
            model = {"fromModel": {"uri": (folder / f"{label}-train").as_uri()}, **base}
            controls: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
                ("plain", {}, {"rows": 10_000}),
                ("seeded", {"seed": {"uri": "file://seed.csv"}}, {}),
                (
                    "rebalanced",
                    {"rebalance": {"column": "income", "shares": {">50K": 0.5, "<=50K": 0.5}}},
                    {"rows": 10_000},
                ),
                ("imputed", {"impute": {"uri": "file://holes.csv"}}, {}),
            ]
            if generator == "tabularargn":
                controls.append(("temperature", {"temperature": 0.8}, {"rows": 10_000}))
            for name, generation, extra in controls:
                spec = {**model, **extra}
                if generation:
                    spec["generation"] = generation
                taken, result = _run(folder, f"{label}-{name}", spec)
                _say(
                    f"  fromModel {name:<11} {taken:6.1f} s = {100 * taken / seconds:5.1f} % of "
                    f"the original; {_describe(result)}"
                )


if __name__ == "__main__":
    main_bench()
