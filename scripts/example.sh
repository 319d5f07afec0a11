#!/usr/bin/env bash
# The README's main command: run the bundled UCI Adult example end to end, no cluster.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$(bash scripts/venv.sh core)"
# This checkout's sources win over whichever checkout the shared environment's editable
# install points at (several clones may share one cached environment).
export PYTHONPATH="$root/runner:$root/operator${PYTHONPATH:+:$PYTHONPATH}"
"$venv/bin/tabular-runner" datasets export adult examples/data/adult.csv
exec "$venv/bin/tabular-runner" run examples/adult-gaussian-copula.yaml --out out/adult-gc "$@"
