#!/usr/bin/env bash
# The README's main command: run the bundled UCI Adult example end to end, no cluster.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$(bash scripts/venv.sh core)"
"$venv/bin/tabular-runner" datasets export adult examples/data/adult.csv
exec "$venv/bin/tabular-runner" run examples/adult-gaussian-copula.yaml --out out/adult-gc "$@"
