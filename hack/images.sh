#!/usr/bin/env bash
# Container images for the real node, built without a registry or a Docker engine, from Debian packages
# and the project's own Dockerfile, cached by content hash under $HEADWATER_CACHE/images.
#
#   hack/images.sh build [IMAGE...]          build what is missing (default: all); prints "IMAGE REF ARCHIVE"
#   hack/images.sh ref IMAGE                 the reference of IMAGE as built now (e.g. localhost/headwater:1a2b...)
#   hack/images.sh import SOCKET [IMAGE...]  build what is missing, then import into containerd at SOCKET
#
# Images: pause (the pod sandbox: a static C program), base (Debian bookworm with Python 3.11, made by
# mmdebstrap: it stands in for python:3.11-slim-bookworm), postgres (Debian's postgresql-15 on that base, with
# an entrypoint that honours the official image's POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB and PGDATA)
# and headwater (the project's Dockerfile, unchanged, built by `buildah bud` on that base). Each archive is
# named by a hash of its recipe and inputs, so a changed recipe or source tree builds a new one and an
# unchanged one is reused. Packages come from Debian; pip inside the Dockerfile uses this machine's pip
# settings (its config file and CA bundle, mounted read-only).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"
# shellcheck source=hack/debian.sh
source "$here/debian.sh"

DEBIAN_SUITE=bookworm
DEBIAN_MIRROR="${HEADWATER_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${HEADWATER_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
PAUSE_REF=localhost/pause:3.10
BASE_REF=localhost/python:3.11-slim-bookworm
images_dir="$HEADWATER_CACHE/images"
ALL_IMAGES=(pause base postgres headwater)

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Buildah keeps its own storage under the cache, apart from any other user of buildah or podman.
# Builds run at a low priority: they share the machine with everything else.
buildah_() { nice -n 10 buildah --root "$images_dir/storage" --runroot "$images_dir/run" "$@"; }

sha() { sha256sum | cut -c1-16; }

# The pause program: sleeps until SIGTERM or SIGINT, and reaps nothing (the sandbox runs no children).
pause_source() {
  cat <<'C'
#include <signal.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
int main(void) {
  signal(SIGTERM, stop);
  signal(SIGINT, stop);
  for (;;) pause();
}
C
}

base_packages() { echo "python3,python3-venv,python-is-python3,ca-certificates"; }

# Content hashes: the recipe (the build function's text) and every input.
hash_pause() { { declare -f build_pause; pause_source; echo "$PAUSE_REF"; } | sha; }
hash_base() { { declare -f build_base; base_packages; echo "$DEBIAN_SUITE $BASE_REF"; } | sha; }
hash_postgres() {
  { declare -f build_postgres; hash_base; cat "$here/images/postgres/Containerfile" "$here/images/postgres/entrypoint.sh"; } | sha
}
hash_headwater() {
  {
    declare -f build_headwater; hash_base; cat "$root/Dockerfile" "$root/.dockerignore"
    # The build context: what .dockerignore lets in (its allow-list), tracked or not, without caches.
    # The web UI's bundle is gitignored (built by hack/build-ui.sh) but goes into the image: hashed too.
    (cd "$root" && { git ls-files -co --exclude-standard -- pyproject.toml README.md requirements operator
                     find operator/headwater/lineage/ui_static -type f 2>/dev/null || true; } \
      | grep -v -E '(__pycache__|\.py[cod]$|\.egg-info/)' | LC_ALL=C sort -u | while read -r f; do
        [[ -f "$f" ]] && printf '%s %s\n' "$f" "$(sha256sum <"$f" | cut -c1-64)"
      done)
  } | sha
}

ref_of() {
  case "$1" in
    pause) echo "$PAUSE_REF" ;;
    base) echo "$BASE_REF" ;;
    postgres) echo "localhost/postgres:15-$(hash_postgres)" ;;
    headwater) echo "localhost/headwater:$(hash_headwater)" ;;
    *) die "unknown image '$1' (${ALL_IMAGES[*]})" ;;
  esac
}
archive_of() { echo "$images_dir/$1-$("hash_$1").tar"; }

# Commit a working container as REF and save it as an OCI archive (written aside, then renamed).
save() {
  local ctr="$1" ref="$2" archive="$3"
  buildah_ commit --quiet "$ctr" "$ref" >/dev/null
  buildah_ rm "$ctr" >/dev/null
  save_ref "$ref" "$archive"
}
save_ref() {
  local ref="$1" archive="$2"
  rm -f "$archive.tmp"
  buildah_ push --quiet "$ref" "oci-archive:$archive.tmp:$ref" >/dev/null
  mv "$archive.tmp" "$archive"
}

# An image that a later build starts FROM must be in buildah's storage (which may have been cleaned).
ensure_in_storage() {
  local name="$1" ref; ref="$(ref_of "$name")"
  buildah_ inspect --type image "$ref" >/dev/null 2>&1 && return
  local id; id="$(buildah_ pull --quiet "oci-archive:$(archive_of "$name")")"
  buildah_ tag "$id" "$ref"
}

build_pause() {
  local work; work="$(mktemp -d)"
  pause_source >"$work/pause.c"
  gcc -static -O2 -o "$work/pause" "$work/pause.c"
  strip "$work/pause"
  local c; c="$(buildah_ from scratch)"
  buildah_ copy --quiet "$c" "$work/pause" /pause >/dev/null
  buildah_ config --entrypoint '["/pause"]' --cmd '[]' --user 65535:65535 "$c"
  save "$c" "$PAUSE_REF" "$(archive_of pause)"
  rm -rf "$work"
}

build_base() {
  local work; work="$(mktemp -d "$images_dir/base.XXXXXX")"
  nice -n 10 mmdebstrap --quiet --variant=minbase --include="$(base_packages)" \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/usr/share/doc/* "$1"/usr/share/man/*' \
    "$DEBIAN_SUITE" "$work/rootfs.tar" \
    "deb $DEBIAN_MIRROR $DEBIAN_SUITE main" \
    "deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main" \
    "deb $DEBIAN_SECURITY_MIRROR $DEBIAN_SUITE-security main" >&2
  local c; c="$(buildah_ from scratch)"
  buildah_ add --quiet "$c" "$work/rootfs.tar" / >/dev/null
  buildah_ config --cmd '["python3"]' --env LANG=C.UTF-8 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
  save "$c" "$BASE_REF" "$(archive_of base)"
  rm -rf "$work"
}

# pip inside a build needs this machine's pip settings (an index mirror, a CA bundle): mounted read-only.
build_mounts() {
  local f
  for f in /etc/pip.conf "${PIP_CONFIG_FILE:-}" "${PIP_CERT:-}" /etc/ssl/certs/ca-certificates.crt; do
    [[ -n "$f" && -f "$f" ]] && printf -- '--volume=%s:%s:ro\n' "$f" "$f"
  done | sort -u
}

build_postgres() {
  ensure_in_storage base
  local ref; ref="$(ref_of postgres)"
  local -a mounts; mapfile -t mounts < <(build_mounts)
  buildah_ bud --quiet --network host --layers=false "${mounts[@]}" \
    --build-arg "BASE_IMAGE=$BASE_REF" -t "$ref" -f "$here/images/postgres/Containerfile" "$here/images/postgres" >&2
  save_ref "$ref" "$(archive_of postgres)"
}

build_headwater() {
  bash "$here/build-ui.sh"  # the Dockerfile copies the built web UI; it builds no JavaScript itself
  ensure_in_storage base
  local ref; ref="$(ref_of headwater)"
  local -a mounts; mapfile -t mounts < <(build_mounts)
  buildah_ bud --quiet --network host --layers=false "${mounts[@]}" \
    --build-arg "PYTHON_IMAGE=$BASE_REF" --build-arg "REVISION=$(git -C "$root" rev-parse HEAD 2>/dev/null || true)" \
    -t "$ref" -f "$root/Dockerfile" "$root" >&2
  save_ref "$ref" "$(archive_of headwater)"
}

# The archive is what is kept: the image leaves buildah's storage (all but the base, which later builds
# start FROM), and of older archives of the same image only the two most recent stay.
prune() {
  local name="$1" old
  [[ "$name" == base ]] || buildah_ rmi "$(ref_of "$name")" >/dev/null 2>&1 || true
  for old in $(ls -t "$images_dir/$name"-*.tar 2>/dev/null | tail -n +4); do rm -f "$old"; done
}

build() {
  local name="$1" archive; archive="$(archive_of "$name")"
  if [[ ! -f "$archive" ]]; then
    local start=$SECONDS
    log "building $name ($(ref_of "$name")) ..."
    # Not `build_$name || die`: that would switch errexit off inside the build.
    trap 'log "ERROR: building the $name image failed (see above)"' ERR
    "build_$name"
    trap - ERR
    log "built $name in $((SECONDS - start))s: $archive ($(du -h "$archive" | cut -f1))"
    prune "$name"
  fi
  echo "$name $(ref_of "$name") $archive"
}

# Each image's builds need the ones it starts FROM.
with_dependencies() {
  local name seen=" "
  for name in "$@"; do
    case "$name" in postgres | headwater) [[ "$seen" == *" base "* ]] || { echo base; seen+="base "; } ;; esac
    [[ "$seen" == *" $name "* ]] || { echo "$name"; seen+="$name "; }
  done
}

ensure_tools() {
  ensure_debian_packages buildah runc uidmap mmdebstrap gcc libc6-dev binutils ca-certificates
}

cmd="${1:-build}"; shift || true
mkdir -p "$images_dir"
case "$cmd" in
  build)
    ensure_tools
    [[ $# -gt 0 ]] || set -- "${ALL_IMAGES[@]}"
    for name in $(with_dependencies "$@"); do build "$name"; done
    ;;
  ref) ref_of "${1:?usage: hack/images.sh ref IMAGE}" ;;
  import)
    socket="${1:?usage: hack/images.sh import SOCKET [IMAGE...]}"; shift
    ensure_tools
    [[ $# -gt 0 ]] || set -- pause postgres headwater
    for name in $(with_dependencies "$@"); do
      read -r _ ref archive < <(build "$name")
      [[ "$name" == base ]] && continue
      if ctr --address "$socket" --namespace k8s.io images ls -q | grep -x "$ref" >/dev/null; then
        echo "$name $ref"; continue
      fi
      log "importing $ref into containerd"
      ctr --address "$socket" --namespace k8s.io images import --no-unpack=false "$archive" >/dev/null \
        || die "ctr could not import $archive"
      # Not grep -q: it would stop reading early and fail the pipeline with ctr's SIGPIPE.
      ctr --address "$socket" --namespace k8s.io images ls -q | grep -x "$ref" >/dev/null \
        || die "$ref is not in containerd after importing $archive"
      echo "$name $ref"
    done
    ;;
  *) die "usage: hack/images.sh build [IMAGE...] | ref IMAGE | import SOCKET [IMAGE...]" ;;
esac
