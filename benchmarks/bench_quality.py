"""Benchmark: every generator's fit time and quality on UCI Adult, same split, one run.

Each generator runs as a real job through ``tabular-runner run`` (TabularARGN trains and
generates in the argn engine; ``auto`` chooses per its rule), plus raw ``mostlyai-engine``
called directly in the argn environment with its defaults and a 10-minute cap. Every
synthetic table is scored here with the same scorer (SDMetrics QualityReport against all
training rows, the runner's fidelity module), so the numbers compare.

Usage: ``make bench-quality`` (or ``python benchmarks/bench_quality.py [--only a,b]``).
Takes a long time (tens of minutes on 2 cores). Not a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import yaml

warnings.filterwarnings("ignore")

REPO = Path(__file__).resolve().parents[1]
SEED = 7
HOLDOUT = 0.2

GENERATORS: dict[str, dict[str, object]] = {
    "auto (240 s budget)": {"type": "auto", "params": {"timeBudgetSeconds": 240}},
    "gaussian_copula": {"type": "gaussian_copula"},
    "tabularargn (10-min cap)": {"type": "tabularargn", "params": {"maxTrainingTimeSeconds": 600}},
    "tvae (30 epochs)": {"type": "tvae", "params": {"epochs": 30}},
    "ctgan (10 epochs)": {"type": "ctgan", "params": {"epochs": 10}},
    "auto (default budget)": {"type": "auto"},
}
"""Run in this order (the headline numbers first); raw mostlyai-engine runs after them."""

RAW_ARGN = """
import json, sys, time
import pandas as pd
from mostlyai import engine
train = pd.read_parquet(sys.argv[1])
ws = sys.argv[2]
engine.set_random_state(7)
started = time.perf_counter()
engine.split(tgt_data=train, model_type="TABULAR", workspace_dir=ws)
engine.analyze(workspace_dir=ws)
engine.encode(workspace_dir=ws)
engine.train(workspace_dir=ws, max_training_time=10.0)
fit = time.perf_counter() - started
engine.generate(workspace_dir=ws, sample_size=len(train))
pd.read_parquet(f"{ws}/SyntheticData").to_parquet(sys.argv[3])
print(json.dumps({"fit": fit}))
"""


def run_job(name: str, generator: dict[str, object], source: Path, rows: int, tmp: Path) -> dict:
    folder = tmp / name.split()[0].replace("(", "")
    folder.mkdir(parents=True, exist_ok=True)
    job = {
        "apiVersion": "tabular.aumos.io/v1alpha1",
        "kind": "SynthesisJob",
        "metadata": {"name": "bench"},
        "spec": {
            "source": {"uri": f"file://{source}", "format": "csv"},
            "generator": generator,
            "rows": rows,
            "seed": SEED,
            "validation": {
                "holdoutFraction": HOLDOUT,
                "privacy": False,
                "qualitySampleRows": 100_000,
            },
        },
    }
    manifest = folder / "job.yaml"
    manifest.write_text(yaml.safe_dump(job))
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "tabular_runner", "run", str(manifest), "--out", str(folder / "o")],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 3):
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    train = json.loads((folder / "o" / "stages" / "train.json").read_text())
    return {
        "fit": train["trainingTimeS"],
        "wall": wall,
        "chosen": train["generator"],
        "reason": train["generatorReason"],
        "output": folder / "o" / "output.parquet",
    }


def raw_argn(train_path: Path, tmp: Path) -> dict:
    argn = subprocess.run(
        ["bash", str(REPO / "scripts" / "venv.sh"), "argn"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    out = tmp / "raw-argn.parquet"
    proc = subprocess.run(
        [f"{argn}/bin/python", "-c", RAW_ARGN, str(train_path), str(tmp / "raw-ws"), str(out)],
        capture_output=True,
        text=True,
        check=False,
        env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1]}
    return {"fit": json.loads(proc.stdout.strip().splitlines()[-1])["fit"], "output": out}


def main() -> None:
    import pandas as pd

    from tabular_runner import datasets
    from tabular_runner.analysis import analyze
    from tabular_runner.pipeline import split_indices
    from tabular_runner.quality import fidelity

    parser = argparse.ArgumentParser()
    parser.add_argument("--only", help="comma-separated names (prefixes) to run")
    args = parser.parse_args()
    wanted = [w.strip() for w in args.only.split(",")] if args.only else None

    frame = datasets.load("adult")
    train_idx, _ = split_indices(len(frame), HOLDOUT, SEED)
    analysis = analyze(frame, seed=SEED)
    columns = analysis.modelled_columns
    train = frame.iloc[train_idx][columns].reset_index(drop=True)
    sdtypes = {c: t for c, t in analysis.sdtypes().items() if c in columns}
    print(f"UCI Adult: {len(frame)} rows, {len(train)} training rows x {len(columns)} columns")

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "adult.csv"
        frame.to_csv(source, index=False)
        train_path = tmp / "train.parquet"
        train.to_parquet(train_path)
        plan = [*GENERATORS, "raw mostlyai-engine (10-min cap)"]
        for name in plan:
            if wanted and not any(name.startswith(w) for w in wanted):
                continue
            print(f"... {name}", flush=True)
            if name.startswith("raw"):
                result = raw_argn(train_path, tmp)
            else:
                result = run_job(name, GENERATORS[name], source, len(train), tmp)
            if "output" in result:
                synthetic = pd.read_parquet(result.pop("output"))
                scored = fidelity.evaluate(
                    train,
                    synthetic[columns],
                    sdtypes=sdtypes,
                    sample_rows=len(train),
                    seed=SEED,
                )
                result["quality"] = scored.score
                result["detail"] = scored.to_dict()
            results[name] = result
            print(f"    {json.dumps({k: v for k, v in result.items() if k != 'detail'})}")

    print()
    print(f"{'generator':<34} {'chosen':<16} {'fit s':>8} {'quality':>8}")
    for name, result in results.items():
        if "error" in result:
            print(f"{name:<34} error: {result['error']}")
            continue
        quality = result.get("quality")
        shown = f"{quality:.3f}" if isinstance(quality, float) else "-"
        chosen = result.get("chosen", "tabularargn")
        print(f"{name:<34} {chosen:<16} {result['fit']:>8.1f} {shown:>8}")
    for name, result in results.items():
        if result.get("reason") and name.startswith("auto"):
            print(f"{name}: {result['reason']}")


if __name__ == "__main__":
    main()
