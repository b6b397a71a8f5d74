#!/usr/bin/env bash
# Set up and run every check: ruff, mypy (operator/ and the fake Kubernetes API
# of the component tests), then all test tiers (unit, component, integration
# with a real PostgreSQL, e2e on the local control plane, real on a real node:
# as root, it builds and starts what it needs itself).  Extra arguments go to
# pytest (e.g. hack/test.sh -m unit).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash hack/setup.sh

echo "== ruff"
.venv/bin/ruff check operator tests
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
set +e
.venv/bin/pytest "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit $status
