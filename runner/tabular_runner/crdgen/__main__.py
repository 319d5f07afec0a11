"""``python -m tabular_runner.crdgen [--check] [--root DIR] [--json-schemas DIR]``.

Exit status: 0 when the files are (now) up to date, 1 on drift with ``--check``, 2 when the
models cannot be expressed as a CRD (the message names the field).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabular_runner.crdgen import SchemaError, drift, write, write_json_schemas


def _repo_root() -> Path:
    # runner/tabular_runner/crdgen/__main__.py → the repository root, where crds/ lives.
    return Path(__file__).resolve().parents[3]


def main(argv: list[str] | None = None) -> int:
    """Run the generator; return the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m tabular_runner.crdgen",
        description="Generate crds/ and the chart's CRDs from tabular_runner.spec.",
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 on drift")
    parser.add_argument("--root", type=Path, default=None, help="repository root")
    parser.add_argument(
        "--json-schemas",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write kubeconform JSON schemas of the kinds into DIR",
    )
    args = parser.parse_args(argv)
    root: Path = args.root or _repo_root()
    try:
        if args.check:
            problems = drift(root)
            for line in problems:
                sys.stderr.write(f"crdgen: {line}\n")
            if problems:
                sys.stderr.write("crdgen: run `python -m tabular_runner.crdgen` and commit\n")
                return 1
        else:
            for path in write(root):
                sys.stdout.write(f"crdgen: wrote {path}\n")
        if args.json_schemas is not None:
            for path in write_json_schemas(args.json_schemas):
                sys.stdout.write(f"crdgen: wrote {path}\n")
    except SchemaError as exc:
        sys.stderr.write(f"crdgen: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
