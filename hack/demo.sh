#!/usr/bin/env bash
# Set everything up and run the demo pipeline end to end (see hack/demo.py).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash hack/setup.sh
exec .venv/bin/python hack/demo.py "$@"
