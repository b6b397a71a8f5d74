#!/usr/bin/env bash
# Set up everything Headwater's demo and tests need on this machine:
#   - PostgreSQL server binaries (Debian package) when missing
#   - a Python virtualenv in .venv with the hashed, pinned dependencies of requirements/constraints.txt
#     (pip --require-hashes), then Headwater itself in editable mode without dependencies
#   - Chromium and its driver (Debian's chromium, chromium-driver) for the web UI's browser tests (make test only)
#   - the web UI, built into the Python package (hack/build-ui.sh: npm ci from ui/package-lock.json, esbuild)
#   - the local control plane binaries and tools (hack/build-tools.sh; slow the first time, cached after):
#     its arguments select which (hack/setup.sh --cluster: the control plane only); none: all but the
#     real node's and the Prometheus server
# Idempotent: a second run only checks.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# shellcheck source=hack/debian.sh
source hack/debian.sh  # apt-get behind one lock: other hack/ scripts may install packages at the same time
die() { log "ERROR: $*"; exit 1; }

have_postgres() {
  command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

if ! have_postgres; then
  command -v apt-get >/dev/null || die "PostgreSQL server binaries (initdb, pg_ctl) are missing; install PostgreSQL 15+"
  log "installing PostgreSQL from Debian packages"
  ensure_debian_packages --with-recommends postgresql >/dev/null
fi
# Only the tests need a browser: a command that names what it needs (make demo: --cluster) skips it.
if [[ $# -eq 0 ]] && { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; }; then
  command -v apt-get >/dev/null || die "Chromium and chromedriver are missing (the browser tests need them)"
  log "installing Chromium and its driver from Debian packages"
  ensure_debian_packages --with-recommends chromium chromium-driver >/dev/null
fi
if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
  useradd --system --no-create-home postgres
fi

python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python 3.11+ is needed (found $("$python" --version))"
stamp=".venv/.installed-$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  log "creating .venv and installing Headwater with pinned dependencies"
  [[ -x .venv/bin/python ]] || "$python" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  # An editable install has no file to hash: the dependencies come hashed first, the project after.
  .venv/bin/python -m pip install -q --require-hashes -r requirements/constraints.txt
  .venv/bin/python -m pip install -q --no-deps -e .
  .venv/bin/python -m pip check
  rm -f .venv/.installed-* && touch "$stamp"
fi

bash hack/build-ui.sh
bash hack/build-tools.sh "$@"
log "ready"
