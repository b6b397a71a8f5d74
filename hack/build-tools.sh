#!/usr/bin/env bash
# Build the local control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok, kwokctl), helm and promtool from Go modules,
# once per version, into $HEADWATER_CACHE (default ~/.cache/headwater).
#
#   hack/build-tools.sh                 build whatever is missing of the control plane, helm and promtool
#   hack/build-tools.sh --check         exit 0 only when those are built
#   hack/build-tools.sh --cluster       the control plane only (etcd, kwok, Kubernetes): what hack/cluster.sh up
#                                       and the simulated demo need
#   hack/build-tools.sh --helm          helm only;  --promtool: promtool only
#   hack/build-tools.sh --node          the real node's binaries only: kubelet and kube-proxy (from the same
#                                       Kubernetes build as the control plane) and CoreDNS (the cluster's DNS)
#   hack/build-tools.sh --prometheus    the Prometheus server only (the real tier scrapes the operator with it)
# The selections combine (--cluster --helm); with --check, exit 0 only when the selected ones are built.
#
# Needs Go (the local toolchain; GOTOOLCHAIN=local) and the Go module proxy.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -mod=mod"

log() { printf '[build-tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

have_cluster() {
  local d
  for d in "$(k8s_bin_dir)/kube-apiserver" "$(k8s_bin_dir)/kube-controller-manager" \
           "$(k8s_bin_dir)/kube-scheduler" "$(k8s_bin_dir)/kubectl" "$(etcd_bin_dir)/etcd" \
           "$(kwok_bin_dir)/kwok" "$(kwok_bin_dir)/kwokctl"; do
    [[ -x "$d" ]] || return 1
  done
}
have_helm() { [[ -x "$(helm_bin_dir)/helm" ]]; }
have_promtool() { [[ -x "$(promtool_bin_dir)/promtool" ]]; }

have_prometheus() { [[ -x "$(prometheus_bin_dir)/prometheus" ]]; }

have_node() {
  [[ -x "$(k8s_node_bin_dir)/kubelet" && -x "$(k8s_node_bin_dir)/kube-proxy" && -x "$(coredns_bin_dir)/coredns" ]]
}

check=false wanted=()
for arg in "$@"; do
  case "$arg" in
    --check) check=true ;;
    --cluster | --helm | --promtool | --node | --prometheus) wanted+=("${arg#--}") ;;
    *) echo "usage: hack/build-tools.sh [--check] [--cluster] [--helm] [--promtool] [--node] [--prometheus]" >&2
       exit 2 ;;
  esac
done
[[ ${#wanted[@]} -gt 0 ]] || wanted=(cluster helm promtool)
if $check; then
  for what in "${wanted[@]}"; do "have_$what" || exit 1; done
  exit 0
fi

command -v go >/dev/null || die "Go is not installed; install Go >= 1.26 (these modules declare go 1.26)."

# One build at a time per cache: two sessions building the same tool into the same scratch module (a
# cold cache, two test runs started together) would delete each other's work.  The second waits, then
# finds the first one's binaries cached.
mkdir -p "$HEADWATER_CACHE/locks"
exec 8>>"$HEADWATER_CACHE/locks/build-tools"
if ! flock -n 8; then
  log "another build of the tools is running on this machine; waiting for it (up to 60 minutes)"
  flock -w 3600 8 || die "waited 60 minutes for another build of the tools to finish"
fi

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

# The Prometheus server as users run it, from the same module version as promtool.  Without service
# discovery plugins (remove_all_sd: static targets are all the real tier needs, and the build is shorter)
# and without the built-in web UI (the builtinassets tag needs the UI built with npm): the HTTP API, which
# is what is used here, is complete.  Version ldflags as Prometheus' own release build sets them, so that
# /api/v1/status/buildinfo and --version tell the version; the revision is not known from the module.
build_prometheus() {
  local out; out="$(prometheus_bin_dir)"
  have_prometheus && { log "prometheus $PROMETHEUS_VERSION cached in $out"; return; }
  local dir version
  dir="$(go mod download -json "github.com/prometheus/prometheus@$PROMETHEUS_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  version="$(cat "$dir/VERSION" 2>/dev/null)" || die "no VERSION file in github.com/prometheus/prometheus@$PROMETHEUS_VERSION"
  local pkg=github.com/prometheus/common/version
  local ldflags="-s -w -X $pkg.Version=$version -X $pkg.Branch=HEAD -X $pkg.BuildUser=headwater"
  ldflags+=" -X $pkg.BuildDate=19700101-00:00:00"
  mkdir -p "$out.tmp"
  GOBIN="$out.tmp" run_build "prometheus $version ($PROMETHEUS_VERSION)" \
    go install -tags remove_all_sd -ldflags "$ldflags" "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

# k8s.io/kubernetes points its staging modules at ./staging/src/...; as a
# dependency each needs a replace to the matching v0.x.y release.  The list is
# derived from the go.mod that the module proxy serves for this version.
#   build_kubernetes OUT_DIR CMD...   build k8s.io/kubernetes/cmd/CMD... into OUT_DIR
build_kubernetes() {
  local out="$1"; shift
  local cmd have=true
  for cmd in "$@"; do [[ -x "$out/$cmd" ]] || have=false; done
  if $have; then log "kubernetes $KUBERNETES_VERSION ($*) cached in $out"; return; fi
  local mod staging; mod="$(scratch_module "kubernetes-$KUBERNETES_VERSION-$1")"
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
  local ldflags="-s -w" pkg pkgs=()
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  for cmd in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$cmd"); done
  (cd "$mod" && go mod edit -require "k8s.io/kubernetes@$KUBERNETES_VERSION"
   run_build "$* $KUBERNETES_VERSION" go build -ldflags "$ldflags" -o "$mod/out/" "${pkgs[@]}")
  rm -rf "$out" && mkdir -p "$(dirname "$out")" && mv "$mod/out" "$out"
}

# CoreDNS with only the plugins a local cluster's DNS needs (no forwarding: names outside the
# cluster are not answered, so no pod's query leaves the machine).  A small main over coremain
# with its own plugin list, as CoreDNS documents for custom builds.
build_coredns() {
  local out; out="$(coredns_bin_dir)"
  [[ -x "$out/coredns" ]] && { log "coredns $COREDNS_VERSION cached in $out"; return; }
  local mod; mod="$(scratch_module "coredns-$COREDNS_VERSION")"
  cat >"$mod/main.go" <<'GO'
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	// In the order of CoreDNS's own plugin.cfg.
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "cache", "kubernetes"}
}

func main() { coremain.Run() }
GO
  (cd "$mod" && go mod init headwater.local/coredns >/dev/null 2>&1 &&
     go get "github.com/coredns/coredns@$COREDNS_VERSION" >/dev/null 2>&1 &&
     run_build "coredns $COREDNS_VERSION" go build -ldflags "-s -w" -o "$mod/out/coredns" .)
  mkdir -p "$out" && mv "$mod/out/coredns" "$out/coredns"
}


build_cluster() {
  build_etcd
  build_kwok
  build_kubernetes "$(k8s_bin_dir)" kube-apiserver kube-controller-manager kube-scheduler kubectl
}

build_node() {
  build_kubernetes "$(k8s_node_bin_dir)" kubelet kube-proxy
  build_coredns
}

for what in "${wanted[@]}"; do "build_$what"; done
# Only these builds' scratch modules: another selection's build may be running beside this one.
for what in "${wanted[@]}"; do
  case "$what" in
    cluster) rm -rf "$HEADWATER_CACHE/build/etcd-$ETCD_VERSION" \
                    "$HEADWATER_CACHE/build/kubernetes-$KUBERNETES_VERSION-kube-apiserver" ;;
    node) rm -rf "$HEADWATER_CACHE/build/kubernetes-$KUBERNETES_VERSION-kubelet" \
                 "$HEADWATER_CACHE/build/coredns-$COREDNS_VERSION" ;;
  esac
done
log "ready under $HEADWATER_CACHE: ${wanted[*]} (${SECONDS}s total)"
