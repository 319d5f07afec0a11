#!/usr/bin/env bash
# Stop everything scripts/testenv/up.sh started and check that no process is left.
# Works from the pid records alone, so it also cleans up after a failed or killed start.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
state="${AUMOS_TESTENV_DIR:-$(pwd)/.testenv}"
py="${AUMOS_PYTHON:-python3}"
[ -d "$state" ] || { echo "testenv: nothing to stop ($state absent)"; exit 0; }

if ! "$py" -m tests.platform.testenv down --state "$state" 2>&1; then
  # Python unusable (or something survived): signal every recorded process group directly.
  for f in "$state"/pids/*.pid; do
    [ -e "$f" ] || continue
    pid="$(cat "$f")"
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  sleep 5
  for f in "$state"/pids/*.pid; do
    [ -e "$f" ] || continue
    pid="$(cat "$f")"
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$f"
  done
fi

# Every service has the state dir on its command line; anything still matching is a leak.
left="$(pgrep -f -- "$state/" || true)"
if [ -n "$left" ]; then
  echo "testenv: processes left behind, killing: $left" >&2
  # shellcheck disable=SC2086
  kill -KILL $left 2>/dev/null || true
  sleep 1
  left="$(pgrep -f -- "$state/" || true)"
  [ -z "$left" ] || { echo "testenv: could not stop: $left" >&2; exit 1; }
  exit 1
fi
rm -f "$state/env.sh" "$state/env.json"
echo "testenv: down; no process left"
