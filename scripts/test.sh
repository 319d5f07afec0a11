#!/usr/bin/env bash
# The README's test command: bootstraps the environment, then runs every tier.
# Extra arguments go to pytest (e.g. `scripts/test.sh -m unit`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$(bash scripts/venv.sh core)"
export PATH="$venv/bin:$PATH"
# This checkout's sources win over whichever checkout the shared environment's editable
# install points at (several clones may share one cached environment).
export PYTHONPATH="$root/runner:$root/operator${PYTHONPATH:+:$PYTHONPATH}"
# The platform plugin (tests/platform) starts etcd, kube-apiserver, Postgres, Kafka and S3
# on demand with this interpreter; see docs/testing.md.
export AUMOS_PYTHON="$venv/bin/python"
# Build (once; cached) what the tiers need BEFORE pytest, so that a cold build on a fresh
# machine — about 23 minutes for Kubernetes — never runs under a test's timeout.
if [[ -z "${AUMOS_SKIP_BUILD:-}" ]]; then
  "$venv/bin/python" -m tests.platform.testenv build \
    || { echo "scripts/test.sh: building the test platform failed (logs above)" >&2; exit 1; }
  bash scripts/venv.sh argn >/dev/null \
    || { echo "scripts/test.sh: creating the argn engine environment failed" >&2; exit 1; }
fi
set +e
"$venv/bin/python" -m pytest "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  echo "scripts/test.sh: pytest collected no tests — that is a failure here" >&2
  exit 1
fi
exit $rc
