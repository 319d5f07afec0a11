"""Benchmark: our full ``run`` against raw SDV on UCI Adult with GaussianCopula.

Same machine, same run, same train split. Prints:

* wall time of raw SDV (fit + sample + SDMetrics QualityReport) and of our pipeline, and their
  ratio — both for the whole ``run`` and for the work raw SDV also does (the whole run minus
  the privacy evaluation and the HTML report, which raw SDV does not do at all);
* raw SDV's quality next to ours (same metric: SDMetrics QualityReport against the training
  split, on all training rows);
* the time of the privacy evaluation (Anonymeter's three attacks + DCR).

Usage: ``make bench`` (or ``python benchmarks/runner_vs_sdv.py [--rows N]``). Not a test.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")


def raw_sdv(train, seed: int) -> tuple[float, float, dict[str, float]]:
    from sdmetrics.reports.single_table import QualityReport
    from sdv.metadata import Metadata
    from sdv.single_table import GaussianCopulaSynthesizer

    started = time.perf_counter()
    # SDV 2.0: metadata from {table: frame}; single-table fit/sample take plain frames.
    metadata = Metadata.detect_from_dataframes({"adult": train})
    synthesizer = GaussianCopulaSynthesizer(metadata)
    fit_started = time.perf_counter()
    synthesizer.fit({"adult": train})
    fit_s = time.perf_counter() - fit_started
    synthetic = synthesizer.sample(num_rows=len(train))["adult"]
    report = QualityReport()
    report.generate(train, synthetic, metadata.to_dict()["tables"]["adult"], verbose=False)
    total = time.perf_counter() - started
    return total, report.get_score(), {"fit": fit_s}


def ours(source: Path, rows: int, seed: int, holdout: float) -> tuple[float, dict]:
    from tabular_runner.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "job.yaml"
        manifest.write_text(
            "apiVersion: tabular.aumos.io/v1alpha1\nkind: SynthesisJob\n"
            "metadata: {name: bench-adult}\nspec:\n"
            f"  source: {{uri: 'file://{source}', format: csv}}\n"
            "  generator: {type: gaussian_copula}\n"
            f"  rows: {rows}\n  seed: {seed}\n"
            f"  validation: {{holdoutFraction: {holdout}, qualitySampleRows: {rows}}}\n"
            "  output: {format: parquet}\n"
        )
        started = time.perf_counter()
        code = main(["run", str(manifest), "--out", str(Path(tmp) / "out"), "--quiet"])
        total = time.perf_counter() - started
        if code not in (0, 3):
            raise SystemExit(f"our run failed with exit code {code}")
        report = json.loads((Path(tmp) / "out" / "report.json").read_text())
    return total, report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--holdout", type=float, default=0.2)
    args = parser.parse_args()

    from tabular_runner import datasets
    from tabular_runner.pipeline import split_indices

    adult = datasets.load("adult")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "adult.csv"
        adult.to_csv(source, index=False)
        from tabular_runner.spec import DataFormat
        from tabular_runner.storage.tables import read_table

        # Exactly what our pipeline reads, split the same way.
        frame = read_table(f"file://{source}", DataFormat.CSV, base_dir=None, s3=None)
        train_idx, _ = split_indices(len(frame), args.holdout, args.seed)
        train = frame.iloc[train_idx].reset_index(drop=True)

        raw_s, raw_quality, raw_parts = raw_sdv(train, args.seed)
        our_s, report = ours(source, len(train), args.seed, args.holdout)

    timings = report["timings"]
    privacy_s = report["privacy"].get("seconds", float("nan"))
    html_s = timings.get("htmlReport", 0.0)
    comparable_s = our_s - privacy_s - html_s
    print(f"UCI Adult: {len(frame)} rows, train split {len(train)} rows, GaussianCopula")
    print(f"{'':28}{'raw SDV':>12}{'ours':>12}")
    print(f"{'fit (s)':28}{raw_parts['fit']:>12.1f}{report['timings']['training']:>12.1f}")
    print(f"{'quality (SDMetrics)':28}{raw_quality:>12.3f}{report['fidelityScore']:>12.3f}")
    print(f"{'wall, whole run (s)':28}{raw_s:>12.1f}{our_s:>12.1f}")
    print(f"{'wall, comparable work (s)':28}{raw_s:>12.1f}{comparable_s:>12.1f}")
    print(
        "ours by part (s): "
        + ", ".join(
            f"{k} {timings.get(k, 0.0):.1f}"
            for k in ("train", "training", "generate", "fidelity", "privacy", "htmlReport")
        )
    )
    print(f"ratio whole run / raw:        {our_s / raw_s:.2f}")
    print(f"ratio comparable work / raw:  {comparable_s / raw_s:.2f}   (target <= 1.10)")
    print(
        f"quality ours - raw:           {report['fidelityScore'] - raw_quality:+.3f} (never lower)"
    )
    print(f"privacy evaluation (s):       {privacy_s:.1f}   (target <= 15 s)")
    print(f"privacy: {json.dumps({k: report['privacy'].get(k) for k in ('dcrShare', 'maxRisk')})}")


if __name__ == "__main__":
    main()
