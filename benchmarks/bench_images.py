"""Benchmark (not a test): image build times, sizes and start times (``make bench-images``).

For each image (scripts/images.py names them from the chart):

* cold build: the build in a throwaway buildah storage that holds the base image alone (no
  layer cache, every wheel downloaded again), deleted afterwards; only for the images named by
  ``--cold`` (default: the operator: a runner's cold build downloads several GB of wheels and
  needs about twice its image size in free disk);
* warm build: the same build again with the layer cache (what a rebuild without changes costs;
  run it right after ``make images``: sources changed since then rebuild their layers, and a
  pruned cache — ``buildah rmi --prune`` — makes it a cold build);
* size: the image's layers, uncompressed, and its OCI archive (gzip) when ``make images`` wrote one;
* start: ``buildah run`` (chroot isolation, uid 10001) of the entry point's ``--help`` until its
  first line of output — the runner's first log line — median of ``--starts`` runs; and, for
  the runners, until the engine's libraries are imported (what a stage does before it logs
  progress).

Usage::

    python benchmarks/bench_images.py [--images operator core argn] [--cold operator] [--starts 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from typing import Any

from tests.images.script import REPO, images

ENGINE_IMPORTS = {
    "core": "import torch, sdv.single_table, sdmetrics, anonymeter, snsynth",
    "argn": "import torch, mostlyai.engine",
}


def build_seconds(spec: Any, base: str, *, cold: bool) -> float:
    bench = images.ImageSpec(
        name=spec.name,
        dockerfile=spec.dockerfile,
        target=spec.target,
        repository=f"localhost/aumos-bench/{spec.name}",
        tag="bench",
        values_path=spec.values_path,
        help_command=spec.help_command,
    )
    labels = images.oci_labels(
        bench, version="bench", revision=images.revision(), source=images.source_url(), base=base
    )
    cmd = images.build_command(
        "buildah", bench, base=base, labels=labels, pip_cert=images.pip_cert()
    )
    with tempfile.TemporaryDirectory(dir=images.CACHE, prefix="bench-store-") as tmp:
        store: list[str] = []
        if cold:
            # A storage of its own, seeded with the base alone: nothing cached, nothing of the
            # shared storage's layers touched; removed with the directory.
            store = ["--root", f"{tmp}/root", "--runroot", f"{tmp}/run"]
            seeded = f"containers-storage:[overlay@{tmp}/root+{tmp}/run]{base}"
            subprocess.run(["buildah", "push", "-q", base, seeded], check=True, capture_output=True)
        started = time.monotonic()
        proc = subprocess.run(
            ["buildah", *store, *cmd[1:]], cwd=REPO, capture_output=True, text=True, check=False
        )
        seconds = time.monotonic() - started
        subprocess.run(["buildah", *store, "rmi", "-f", bench.reference], capture_output=True)
        if cold:
            subprocess.run(["buildah", *store, "rmi", "-a", "-f"], capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(
            f"build of {spec.name} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    return seconds


def first_line_seconds(ref: str, command: tuple[str, ...]) -> float:
    with images.container(ref) as ctr:
        started = time.monotonic()
        proc = subprocess.Popen(
            images.run_command(ctr, command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        proc.stdout.readline()
        seconds = time.monotonic() - started
        proc.stdout.read()
        if proc.wait() != 0:
            raise SystemExit(f"{' '.join(command)} failed in {ref}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", nargs="*", default=[])
    parser.add_argument("--cold", nargs="*", default=["operator"])
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args()
    tool = images.builder()
    if tool != "buildah":
        raise SystemExit("bench-images measures buildah builds (no Docker daemon here)")
    specs = images.select(images.chart_specs(), args.images)
    base = images.choose_base(tool)
    rows = []
    for spec in specs:
        if not images.image_exists(tool, spec.reference):
            print(f"{spec.reference}: not built (make images); skipped")
            continue
        cold = build_seconds(spec, base, cold=True) if spec.name in args.cold else None
        warm = build_seconds(spec, base, cold=False)
        archive = images.OUT / f"{spec.name}.oci.tar"
        starts = [first_line_seconds(spec.reference, spec.help_command) for _ in range(args.starts)]
        engine = None
        if spec.name in ENGINE_IMPORTS:
            command = ("python", "-c", f"{ENGINE_IMPORTS[spec.name]}; print('imported')")
            engine = statistics.median(
                first_line_seconds(spec.reference, command) for _ in range(args.starts)
            )
        rows.append(
            (
                spec.name,
                f"{cold:.0f} s" if cold is not None else "-",
                f"{warm:.1f} s",
                images.human(images.image_size(spec.reference)),
                images.human(archive.stat().st_size) if archive.exists() else "-",
                f"{statistics.median(starts):.2f} s",
                f"{engine:.2f} s" if engine is not None else "-",
            )
        )
    header = (
        "image",
        "cold build",
        "warm build",
        "size",
        "archive (gz)",
        "--help 1st line",
        "engine import",
    )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
