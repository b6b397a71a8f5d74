#!/usr/bin/env bash
# Build the local control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok, kwokctl), helm and promtool from Go modules,
# once per version, into $HEADWATER_CACHE (default ~/.cache/headwater).
#
#   hack/build-tools.sh            build whatever is missing
#   hack/build-tools.sh --check    exit 0 only when everything is built
#
# Needs Go (the local toolchain; GOTOOLCHAIN=local) and the Go module proxy.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -mod=mod"

log() { printf '[build-tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

have_all() {
  local d
  for d in "$(k8s_bin_dir)/kube-apiserver" "$(k8s_bin_dir)/kube-controller-manager" \
           "$(k8s_bin_dir)/kube-scheduler" "$(k8s_bin_dir)/kubectl" "$(etcd_bin_dir)/etcd" \
           "$(kwok_bin_dir)/kwok" "$(kwok_bin_dir)/kwokctl" "$(helm_bin_dir)/helm" "$(promtool_bin_dir)/promtool"; do
    [[ -x "$d" ]] || return 1
  done
}

if [[ "${1:-}" == "--check" ]]; then have_all; exit $?; fi

command -v go >/dev/null || die "Go is not installed; install Go >= 1.26 (these modules declare go 1.26)."

# A scratch module per build, so that replace directives stay out of the repository.
scratch_module() {
  local dir="$HEADWATER_CACHE/build/$1"
  rm -rf "$dir" && mkdir -p "$dir"
  echo "$dir"
}

# Timed build step with a clear failure message.
run_build() {
  local what="$1"; shift
  local start=$SECONDS
  log "building $what ..."
  if ! "$@"; then die "building $what failed (see the Go output above)"; fi
  log "built $what in $((SECONDS - start))s"
}

build_etcd() {
  local out; out="$(etcd_bin_dir)"
  [[ -x "$out/etcd" ]] && { log "etcd $ETCD_VERSION cached in $out"; return; }
  local mod; mod="$(scratch_module etcd-$ETCD_VERSION)"
  # etcd's own main package lives in a module with relative replaces, so a
  # two-line main over go.etcd.io/etcd/server/v3/etcdmain builds the same binary.
  cat >"$mod/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$mod" && go mod init headwater.local/etcd >/dev/null 2>&1 &&
     go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" &&
     run_build "etcd $ETCD_VERSION" go build -ldflags "-s -w" -o "$mod/out/etcd" .)
  mkdir -p "$out" && mv "$mod/out/etcd" "$out/etcd"
}

build_kwok() {
  local out; out="$(kwok_bin_dir)"
  [[ -x "$out/kwok" && -x "$out/kwokctl" ]] && { log "kwok $KWOK_VERSION cached in $out"; return; }
  mkdir -p "$out.tmp"
  GOBIN="$out.tmp" run_build "kwok/kwokctl $KWOK_VERSION" \
    go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_helm() {
  local out; out="$(helm_bin_dir)"
  [[ -x "$out/helm" ]] && { log "helm $HELM_VERSION cached in $out"; return; }
  mkdir -p "$out.tmp"
  GOBIN="$out.tmp" run_build "helm $HELM_VERSION" go install -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_promtool() {
  local out; out="$(promtool_bin_dir)"
  [[ -x "$out/promtool" ]] && { log "promtool $PROMETHEUS_VERSION cached in $out"; return; }
  mkdir -p "$out.tmp"
  GOBIN="$out.tmp" run_build "promtool $PROMETHEUS_VERSION" \
    go install -tags remove_all_sd -ldflags "-s -w" "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

# k8s.io/kubernetes points its staging modules at ./staging/src/...; as a
# dependency each needs a replace to the matching v0.x.y release.  The list is
# derived from the go.mod that the module proxy serves for this version.
build_kubernetes() {
  local out; out="$(k8s_bin_dir)"
  if [[ -x "$out/kube-apiserver" && -x "$out/kube-controller-manager" && -x "$out/kube-scheduler" && -x "$out/kubectl" ]]; then
    log "kubernetes $KUBERNETES_VERSION cached in $out"; return
  fi
  local mod staging; mod="$(scratch_module kubernetes-$KUBERNETES_VERSION)"
  staging="v0.${KUBERNETES_VERSION#v1.}"
  (cd "$mod" && go mod init headwater.local/kubernetes >/dev/null 2>&1)
  local gomod; gomod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [[ -f "$gomod" ]] || die "could not download the go.mod of k8s.io/kubernetes@$KUBERNETES_VERSION"
  local n=0 m
  while read -r m; do
    (cd "$mod" && go mod edit -replace "$m=$m@$staging"); n=$((n + 1))
  done < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod")
  [[ $n -gt 0 ]] || die "found no staging replace lines in $gomod"
  log "kubernetes $KUBERNETES_VERSION: $n staging modules replaced with $staging"
  # Without these the binaries report v0.0.0-master+$Format:%H$, which kubectl and helm cannot parse.
  local major="${KUBERNETES_VERSION#v}"; major="${major%%.*}"
  local minor="${KUBERNETES_VERSION#v*.}"; minor="${minor%%.*}"
  local ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$mod" && go mod edit -require "k8s.io/kubernetes@$KUBERNETES_VERSION"
   run_build "kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $KUBERNETES_VERSION" \
     go build -ldflags "$ldflags" -o "$mod/out/" k8s.io/kubernetes/cmd/kube-apiserver \
       k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  rm -rf "$out" && mkdir -p "$(dirname "$out")" && mv "$mod/out" "$out"
}


build_etcd
build_kwok
build_kubernetes
build_helm
build_promtool
rm -rf "$HEADWATER_CACHE/build"
log "all tools ready under $HEADWATER_CACHE (${SECONDS}s total)"
