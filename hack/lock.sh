#!/usr/bin/env bash
# Regenerate the hashed dependency locks from pyproject.toml, keeping the versions pinned now:
#   requirements/constraints.txt  everything a development environment installs ('.[dev]'), hashed
#   requirements/runtime.txt      what the image installs (the package's own dependencies), hashed
#   requirements/build.txt        setuptools and wheel, to build the package without fetching anything else
# Every file lists the hashes of all the files the index has for each version (every platform), so
# `pip install --require-hashes` accepts the same pins on any machine.  Raise a version by editing it in
# requirements/constraints.txt (or remove the line to take the newest allowed) and run this again.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tools="${TMPDIR:-/tmp}/headwater-lock-venv"
[[ -x "$tools/bin/pip-compile" ]] || { python3 -m venv "$tools" && "$tools/bin/pip" install -q pip-tools; }
pins="$(mktemp)"; trap 'rm -f "$pins" "$pins.in"' EXIT
grep -E '^[A-Za-z0-9_.-]+==' requirements/constraints.txt | sed 's/ .*//' >"$pins"
compile() {  # output, then pip-compile's arguments
  local out="$1"; shift
  "$tools/bin/pip-compile" -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
    --no-emit-find-links --no-header -c "$pins" -o "$out.new" "$@"
  { echo "# Hashed lock (hack/lock.sh): install with pip install --require-hashes -r $out"
    sed -e "s|-c $pins\.in|-r (setuptools>=69, wheel)|; s|-r $pins\.in|-r (setuptools>=69, wheel)|; s|-c $pins|-c (the versions pinned before)|" "$out.new"
  } >"$out"
  rm -f "$out.new"
}
compile requirements/constraints.txt --extra dev pyproject.toml
compile requirements/runtime.txt pyproject.toml
printf 'setuptools>=69\nwheel\n' >"$pins.in"
compile requirements/build.txt "$pins.in"
