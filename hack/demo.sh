#!/usr/bin/env bash
# Set everything up and run the demo pipeline end to end (see hack/demo.py);
# with --real first, on a real node with real SQL (see hack/demo_real.py; needs root).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash hack/setup.sh
if [[ "${1:-}" == --real ]]; then
  shift
  exec .venv/bin/python hack/demo_real.py "$@"
fi
exec .venv/bin/python hack/demo.py "$@"
