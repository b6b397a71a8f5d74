#!/usr/bin/env bash
# Set everything up and run the demo pipeline end to end (see hack/demo.py);
# with --real first, on a real node with real SQL (see hack/demo_real.py; needs root).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# Only the tools each demo uses: the control plane, and helm for the real one (the real node's own
# binaries are built by hack/node.sh when it starts).
if [[ "${1:-}" == --real ]]; then
  shift
  bash hack/setup.sh --cluster --helm
  exec .venv/bin/python hack/demo_real.py "$@"
fi
bash hack/setup.sh --cluster
exec .venv/bin/python hack/demo.py "$@"
