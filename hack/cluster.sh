#!/usr/bin/env bash
# Start and stop Headwater's local Kubernetes cluster.
#
#   hack/cluster.sh up [--real-node] [NAME]  create (or restart) the cluster; prints the kubeconfig path
#   hack/cluster.sh down [NAME]              delete the cluster and its state (and its real node, if any)
#   hack/cluster.sh kubeconfig [NAME]        print the kubeconfig path
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
#
# --real-node (or HEADWATER_CLUSTER_REAL_NODE=1) adds a real node (hack/node.sh: containerd, kubelet,
# kube-proxy, CoreDNS; needs root) labelled headwater.dev/node=real, and no simulated node unless
# HEADWATER_CLUSTER_NODES asks for some; those are then tainted headwater.dev/simulated:NoSchedule, so
# that pods land on them only when they tolerate it. The apiserver listens on all addresses, advertises
# the node's bridge address (the `kubernetes` Service leads pods there) and is reachable only from
# loopback and the bridge (see hack/node-env.sh). One real node per machine.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"
# shellcheck source=hack/node-env.sh
source "$here/node-env.sh"

cmd="${1:-up}"; shift || true
real_node=false
if [[ "${HEADWATER_CLUSTER_REAL_NODE:-}" == 1 ]]; then real_node=true; fi
if [[ "${1:-}" == --real-node ]]; then real_node=true; shift; fi
name="${1:-${HEADWATER_CLUSTER_NAME:-headwater}}"
runtime="${HEADWATER_CLUSTER_RUNTIME:-kwok}"
if $real_node; then nodes="${HEADWATER_CLUSTER_NODES:-0}"; else nodes="${HEADWATER_CLUSTER_NODES:-2}"; fi
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
YAML
  if $real_node; then
    cat >>"$cfg" <<YAML
  kubeApiserverPort: $2
  kubeApiserverCertSANs: ["$KUBERNETES_SERVICE_IP", "$NODE_IP"]
YAML
  fi
  # On top of the default admission plugins (PodSecurity among them): setting blockOwnerDeletion then
  # needs update on the owner's finalizers, as on OpenShift, so the chart's RBAC is tested against it.
  cat >>"$cfg" <<YAML
componentsPatches:
- name: kube-apiserver
  extraArgs:
  - {key: enable-admission-plugins, value: OwnerReferencesPermissionEnforcement}
YAML
  if $real_node; then
    cat >>"$cfg" <<YAML
  - {key: bind-address, value: "0.0.0.0", override: true}
  - {key: advertise-address, value: "$NODE_IP"}
  - {key: service-cluster-ip-range, value: "$SERVICE_CIDR"}
  - {key: kubelet-preferred-address-types, value: "InternalIP,Hostname"}
- name: kwok-controller
  extraArgs:
  # The kubelet owns the real node: kwok manages only the nodes it made (annotated kwok.x-k8s.io/node=fake).
  - {key: manage-all-nodes, value: "false", override: true}
  - {key: manage-nodes-with-annotation-selector, value: kwok.x-k8s.io/node=fake}
YAML
  fi
  # One instance each: a lease renewal that times out on a busy machine would otherwise make them exit.
  cat >>"$cfg" <<YAML
- name: kube-scheduler
  extraArgs:
  - {key: leader-elect, value: "false"}
- name: kube-controller-manager
  extraArgs:
  - {key: leader-elect, value: "false"}
YAML
  echo --- >>"$cfg"
  cat "$here/kwok/stages.yaml" >>"$cfg"
}

# How long a starting cluster may take to be usable.  Generous: on a busy 2-core machine (load
# average near 20) the simulated nodes alone were seen to take more than two minutes.
READY_TIMEOUT="${HEADWATER_CLUSTER_READY_TIMEOUT:-600}"

wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT))
  until kubectl_ get --raw /readyz >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "the apiserver did not become ready in ${READY_TIMEOUT}s (logs: $cluster_dir/logs)"
    sleep 0.5
  done
  until [[ "$(kubectl_ get nodes --no-headers 2>/dev/null | grep -c ' Ready ' || true)" -ge "$nodes" ]]; do
    ((SECONDS < deadline)) || die "the simulated nodes did not become Ready in ${READY_TIMEOUT}s"
    sleep 0.5
  done
  until kubectl_ -n default get serviceaccount default >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "the default ServiceAccount did not appear in ${READY_TIMEOUT}s"
    sleep 0.5
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

up_kwok() {
  "$here/build-tools.sh" --cluster >&2
  mkdir -p "$KWOK_WORKDIR"
  local port=""
  if $real_node; then
    if [[ -f "$kubeconfig" ]]; then port="$(sed -n 's#.*server: https://[^:]*:\([0-9]*\).*#\1#p' "$kubeconfig" | head -1)"; fi
    [[ -n "$port" ]] || port="$(free_port)"
    # The guard must be in place before the apiserver listens on every address.
    bash "$here/node.sh" net-up "$name" "$port"
  fi
  if [[ -f "$cluster_dir/kwok.yaml" ]]; then
    log "starting existing cluster '$name'"
    kwokctl start cluster >&2 || die "could not start cluster '$name'; try: hack/cluster.sh down $name"
  else
    local cfg; cfg="$(mktemp)"
    write_config "$cfg" "$port"
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
  if $real_node; then
    if [[ -n "$(kubectl_ get nodes -o name -l "$NODE_LABEL_KEY!=$NODE_LABEL_VALUE")" ]]; then
      kubectl_ taint nodes --overwrite -l "$NODE_LABEL_KEY!=$NODE_LABEL_VALUE" \
        headwater.dev/simulated=true:NoSchedule >/dev/null
    fi
    bash "$here/node.sh" up "$name" "$kubeconfig"
  fi
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
    has_node=false
    [[ -d "$(node_state_dir "$name")" ]] && has_node=true
    # The node goes first (the kubelet drains it through the apiserver), its network last (the guard
    # stays while the apiserver listens on every address).
    if $has_node; then bash "$here/node.sh" down "$name" "$kubeconfig"; fi
    if [[ "$runtime" == kind ]]; then kind delete cluster --name "$name" >&2
    elif [[ -d "$cluster_dir" ]]; then kwokctl delete cluster >&2 || true; fi
    if $has_node; then bash "$here/node.sh" net-down "$name"; fi
    rm -f "$kubeconfig" "$kubeconfig.kwokctl"
    ;;
  kubeconfig) echo "$kubeconfig" ;;
  *) die "usage: hack/cluster.sh up|down|kubeconfig [NAME]" ;;
esac
