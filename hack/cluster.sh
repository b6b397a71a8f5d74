#!/usr/bin/env bash
# Start and stop Headwater's local Kubernetes cluster.
#
#   hack/cluster.sh up [NAME]          create (or restart) the cluster; prints the kubeconfig path
#   hack/cluster.sh down [NAME]        delete the cluster and its state
#   hack/cluster.sh kubeconfig [NAME]  print the kubeconfig path
#
# By default this is a real control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler) with kwok's simulated nodes, run by
# `kwokctl --runtime binary` on 127.0.0.1 from the binaries that
# hack/build-tools.sh builds.  Pods on the simulated nodes follow the Stages
# in hack/kwok/stages.yaml.  HEADWATER_CLUSTER_RUNTIME=kind uses kind instead
# (real pods; needs Docker and kind).  HEADWATER_CLUSTER_NO_QPS_LIMITS=1 (at
# creation) lifts the control plane components' client rate limits, e.g.
# kube-controller-manager's default 20 requests/s, which otherwise caps how
# many Jobs per minute the Job controller can run.  The apiserver runs its
# default admission plugins plus OwnerReferencesPermissionEnforcement.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

cmd="${1:-up}"
name="${2:-${HEADWATER_CLUSTER_NAME:-headwater}}"
runtime="${HEADWATER_CLUSTER_RUNTIME:-kwok}"
nodes="${HEADWATER_CLUSTER_NODES:-2}"
qps_unlimited=false
if [[ "${HEADWATER_CLUSTER_NO_QPS_LIMITS:-}" == 1 ]]; then qps_unlimited=true; fi
export KWOK_WORKDIR="${KWOK_WORKDIR:-$HEADWATER_CACHE/kwok-workdir}"
cluster_dir="$KWOK_WORKDIR/clusters/$name"
kubeconfig="$HEADWATER_CACHE/kubeconfig-$name.yaml"

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

kwokctl() { "$(kwok_bin_dir)/kwokctl" --name "$name" "$@"; }
kubectl_() { "$(k8s_bin_dir)/kubectl" --kubeconfig "$kubeconfig" "$@"; }

write_config() {
  local cfg="$1"
  cat >"$cfg" <<YAML
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  kubeVersion: "$KUBERNETES_VERSION"
  etcdVersion: "${ETCD_VERSION#v}"
  kubeApiserverBinary: "$(k8s_bin_dir)/kube-apiserver"
  kubeControllerManagerBinary: "$(k8s_bin_dir)/kube-controller-manager"
  kubeSchedulerBinary: "$(k8s_bin_dir)/kube-scheduler"
  kubectlBinary: "$(k8s_bin_dir)/kubectl"
  kwokControllerBinary: "$(kwok_bin_dir)/kwok"
  etcdBinary: "$(etcd_bin_dir)/etcd"
  bindAddress: 127.0.0.1
  quietPull: true
  disableQPSLimits: ${qps_unlimited}
# On top of the default admission plugins (PodSecurity among them): setting blockOwnerDeletion then
# needs update on the owner's finalizers, as on OpenShift, so the chart's RBAC is tested against it.
componentsPatches:
- name: kube-apiserver
  extraArgs:
  - key: enable-admission-plugins
    value: OwnerReferencesPermissionEnforcement
---
YAML
  cat "$here/kwok/stages.yaml" >>"$cfg"
}

wait_ready() {
  local deadline=$((SECONDS + 120))
  until kubectl_ get --raw /readyz >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "the apiserver did not become ready in 120s (logs: $cluster_dir/logs)"
    sleep 0.5
  done
  until [[ "$(kubectl_ get nodes --no-headers 2>/dev/null | grep -c ' Ready ')" -ge "$nodes" ]]; do
    ((SECONDS < deadline)) || die "the simulated nodes did not become Ready in 120s"
    sleep 0.5
  done
  until kubectl_ -n default get serviceaccount default >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "the default ServiceAccount did not appear in 120s"
    sleep 0.5
  done
}

up_kwok() {
  "$here/build-tools.sh" >&2
  mkdir -p "$KWOK_WORKDIR"
  if [[ -f "$cluster_dir/kwok.yaml" ]]; then
    log "starting existing cluster '$name'"
    kwokctl start cluster >&2 || die "could not start cluster '$name'; try: hack/cluster.sh down $name"
  else
    local cfg; cfg="$(mktemp)"
    write_config "$cfg"
    log "creating cluster '$name' (kwokctl --runtime binary, Kubernetes $KUBERNETES_VERSION)"
    kwokctl create cluster --config "$cfg" --kubeconfig "$kubeconfig.kwokctl" --wait 2m >&2 \
      || { rm -f "$cfg"; die "kwokctl could not create cluster '$name' (logs: $cluster_dir/logs)"; }
    rm -f "$cfg"
  fi
  kwokctl get kubeconfig >"$kubeconfig"
  local have; have="$(kubectl_ get nodes --no-headers 2>/dev/null | wc -l)"
  if [[ "$have" -lt "$nodes" ]]; then
    kwokctl scale node --replicas "$nodes" >&2
  fi
  wait_ready
  log "cluster '$name' is ready: export KUBECONFIG=$kubeconfig"
}

up_kind() {
  command -v kind >/dev/null || die "HEADWATER_CLUSTER_RUNTIME=kind needs kind on PATH"
  kind get clusters 2>/dev/null | grep -qx "$name" || kind create cluster --name "$name" --wait 2m >&2
  kind get kubeconfig --name "$name" >"$kubeconfig"
  nodes=1 wait_ready
}

case "$cmd" in
  up)
    mkdir -p "$HEADWATER_CACHE"
    if [[ "$runtime" == kind ]]; then up_kind; else up_kwok; fi
    echo "$kubeconfig"
    ;;
  down)
    if [[ "$runtime" == kind ]]; then kind delete cluster --name "$name" >&2
    elif [[ -d "$cluster_dir" ]]; then kwokctl delete cluster >&2 || true; fi
    rm -f "$kubeconfig" "$kubeconfig.kwokctl"
    ;;
  kubeconfig) echo "$kubeconfig" ;;
  *) die "usage: hack/cluster.sh up|down|kubeconfig [NAME]" ;;
esac
