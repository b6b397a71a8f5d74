#!/usr/bin/env bash
# Build the web UI (ui/: cytoscape.js + dagre, bundled by esbuild) into the Python package
# (operator/headwater/lineage/ui_static/, gitignored), which the lineage API serves at /ui/.
#   - installs Node.js and npm from Debian packages when missing
#   - installs the pinned npm packages of ui/package-lock.json (npm ci, no install scripts) when the lock changed
#   - bundles when a source changed (a stamp of the sources' hash)
# Idempotent: a second run only checks.  The Dockerfile copies the result; it builds no JavaScript itself.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/ui"

log() { printf '[build-ui %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if ! command -v npm >/dev/null; then
  command -v apt-get >/dev/null || { log "ERROR: Node.js 18+ and npm are needed to build the web UI"; exit 1; }
  log "installing Node.js and npm from Debian packages"
  # shellcheck source=hack/debian.sh
  source "$root/hack/debian.sh"  # apt-get behind one lock: other hack/ scripts may install packages meanwhile
  ensure_debian_packages --with-recommends nodejs npm >/dev/null
fi
lock_stamp="node_modules/.installed-$(sha256sum package-lock.json | cut -c1-16)"
if [[ ! -f "$lock_stamp" ]]; then
  log "installing the web UI's npm packages (package-lock.json)"
  # esbuild's binary comes as a platform package (@esbuild/linux-x64): no install script needs to run.
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  touch "$lock_stamp"
fi
out="$root/operator/headwater/lineage/ui_static"
source_hash="$(cat package-lock.json build.mjs src/* | sha256sum | cut -c1-16)"
if [[ ! -f "$out/.built-$source_hash" ]]; then
  node build.mjs
  touch "$out/.built-$source_hash"
fi
