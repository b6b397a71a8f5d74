#!/usr/bin/env bash
# Argo Workflows' workflow-controller for the side-by-side run-engine benchmark only (not part of make test):
# built from its Go module once per version into $HEADWATER_CACHE/argo/<version>/bin, with the version
# ldflags so that it reports its version, and its minimal CRDs copied beside it.
#
#   hack/argo.sh build    build whatever is missing (about 8 minutes cold on 2 cores)
#   hack/argo.sh check    exit 0 only when built
#   hack/argo.sh bin      print the binary's path
#   hack/argo.sh crds     print the folder holding the minimal CRDs
#
# The scratch module lives outside the repository, so Argo's replace directive stays there too.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -mod=mod"
log() { printf '[argo %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

out="$(argo_bin_dir)"
built() { [[ -x "$out/workflow-controller" && -d "$out/crds" ]]; }

build() {
  built && { log "workflow-controller $ARGO_VERSION cached in $out"; return; }
  command -v go >/dev/null || die "Go is not installed"
  # Not under $HEADWATER_CACHE/build, which hack/build-tools.sh empties when it finishes.
  local mod="$out.build" pkg="github.com/argoproj/argo-workflows/v3"
  rm -rf "$mod" && mkdir -p "$mod"
  # Argo's own go.mod carries one replace, which a requiring module must repeat.
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/argoproj/argo-workflows/v3/cmd/workflow-controller"
GO
  (cd "$mod" && go mod init headwater.local/argo >/dev/null 2>&1 &&
    go mod edit -require "$pkg@$ARGO_VERSION" \
      -replace github.com/olekukonko/tablewriter=github.com/olekukonko/tablewriter@v0.0.5 &&
    log "resolving modules ..." && go mod tidy -e >/dev/null)
  # The release's commit, as the module proxy records it: with it and a clean tree Argo reports the tag.
  local commit; commit="$(cd "$mod" && go mod download -json "$pkg@$ARGO_VERSION" | sed -n 's/.*"Hash": "\(.*\)".*/\1/p')"
  local start=$SECONDS ldflags="-s -w -X $pkg.version=$ARGO_VERSION -X $pkg.gitTag=$ARGO_VERSION"
  ldflags+=" -X $pkg.gitCommit=$commit -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  log "building workflow-controller $ARGO_VERSION ..."
  (cd "$mod" && go build -tags tools -ldflags "$ldflags" -o "$mod/out/workflow-controller" "$pkg/cmd/workflow-controller") ||
    die "building workflow-controller failed (see the Go output above)"
  local src; src="$(cd "$mod" && go list -m -f '{{.Dir}}' "$pkg")"
  mkdir -p "$mod/out/crds" && cp "$src"/manifests/base/crds/minimal/argoproj.io_*.yaml "$mod/out/crds/"
  chmod -R u+w "$mod/out"
  rm -rf "$out" && mv "$mod/out" "$out" && rm -rf "$mod"
  log "built workflow-controller $ARGO_VERSION in $((SECONDS - start))s into $out"
}

case "${1:-}" in
  build) build ;;
  check) built ;;
  bin) echo "$out/workflow-controller" ;;
  crds) echo "$out/crds" ;;
  *) echo "usage: hack/argo.sh build|check|bin|crds" >&2; exit 2 ;;
esac
