#!/usr/bin/env bash
# Start the local test environment (docs/testing.md): etcd, kube-apiserver, kube-scheduler,
# kube-controller-manager, the node agent, PostgreSQL, Kafka and SeaweedFS (S3), all on
# 127.0.0.1, state in .testenv/. Builds what is missing into the cache first.
#   scripts/testenv/up.sh [--components k8s,postgres,kafka,s3]
# Then: source .testenv/env.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
py="${AUMOS_PYTHON:-python3}"
if ! "$py" -c 'import kubernetes, yaml, urllib3' 2>/dev/null; then
  echo "testenv: $py lacks the test dependencies (kubernetes, pyyaml);" \
       "set AUMOS_PYTHON to the project's virtual environment python" >&2
  exit 2
fi
exec "$py" -m tests.platform.testenv up "$@"
