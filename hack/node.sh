#!/usr/bin/env bash
# A real node for the local cluster: containerd, runc and the CNI plugins from Debian, kubelet and
# kube-proxy from the same Kubernetes build as the control plane, CoreDNS for the cluster's names.
# hack/cluster.sh drives it (`hack/cluster.sh up --real-node`); run by hand only to debug.
#
#   hack/node.sh net-up NAME APISERVER_PORT   the bridge, the node's address and the guard (see node-env.sh);
#                                             before the control plane starts, which listens on that address
#   hack/node.sh up NAME KUBECONFIG           containerd, kubelet, kube-proxy, CoreDNS; the pause image imported
#   hack/node.sh down NAME [KUBECONFIG]       drain the node, stop all it started, remove its containers, mounts,
#                                             iptables chains and cgroups (the network stays until net-down)
#   hack/node.sh net-down NAME                remove the guard and the bridge, restore the sysctls, remove state
#   hack/node.sh leftovers                    print whatever a node left on this machine; exit 1 if anything
#
# Everything lives under $HEADWATER_CACHE/nodes/NAME (configs, state, logs, pids/*.pid). Needs root.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.sh
source "$here/versions.sh"
# shellcheck source=hack/debian.sh
source "$here/debian.sh"
# shellcheck source=hack/node-env.sh
source "$here/node-env.sh"

log() { printf '[node %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

cmd="${1:-}"; name="${2:-}"
[[ -n "$cmd" ]] || die "usage: hack/node.sh net-up|up|down|net-down NAME ... | leftovers"
[[ $(id -u) -eq 0 ]] || die "a real node needs root (containerd, mounts, bridges, iptables)"
if [[ "$cmd" != leftovers ]]; then
  [[ -n "$name" ]] || die "usage: hack/node.sh $cmd NAME"
  state="$(node_state_dir "$name")"
  node="$(node_name "$name")"
  sock="$state/containerd/containerd.sock"
fi

ctr_() { ctr --address "$sock" --namespace k8s.io "$@"; }

# Start a process in its own session, its output in logs/NAME.log and its pid in pids/NAME.pid.
start() {
  local what="$1"; shift
  mkdir -p "$state/logs" "$state/pids"
  setsid "$@" >>"$state/logs/$what.log" 2>&1 </dev/null &
  echo $! >"$state/pids/$what.pid"
}

running() { local f="$state/pids/$1.pid"; [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null; }

# SIGTERM, then SIGKILL after a grace period; by recorded pid only.
stop() {
  local what="$1" f="$state/pids/$1.pid" pid i
  [[ -f "$f" ]] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "$what did not stop on SIGTERM: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; }
  fi
  rm -f "$f"
}

wait_for() {
  local what="$1" seconds="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what not ready in ${seconds}s (logs: $state/logs)"
    sleep 0.3
  done
}

save_sysctl() { [[ -f "$state/sysctl.$1" ]] || sysctl -n "$1" >"$state/sysctl.$1"; }

net_up() {
  local port="${1:?usage: hack/node.sh net-up NAME APISERVER_PORT}"
  ensure_debian_packages iproute2 nftables iptables procps
  mkdir -p "$state"
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    [[ -f "$state/bridge" ]] || die "bridge $NODE_BRIDGE exists and is not this node's: is another real node up? (hack/node.sh leftovers)"
  else
    ip link add "$NODE_BRIDGE" type bridge
    ip addr add "$NODE_IP/${POD_CIDR#*/}" dev "$NODE_BRIDGE"
    ip link set "$NODE_BRIDGE" up
    echo "$NODE_BRIDGE" >"$state/bridge"
  fi
  # Forwarding within the bridge (a pod reaching another pod through a Service) and bridged traffic
  # through iptables (kube-proxy's rules); the previous values come back at net-down.
  save_sysctl net.ipv4.ip_forward
  save_sysctl net.bridge.bridge-nf-call-iptables
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  nft delete table inet "$NODE_NFT_TABLE" 2>/dev/null || true
  nft -f - <<NFT
table inet $NODE_NFT_TABLE {
  chain input {
    type filter hook input priority filter - 10; policy accept;
    iifname { "lo", "$NODE_BRIDGE" } accept
    tcp dport $port drop
    ip daddr $POD_CIDR drop
  }
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    iifname "$NODE_BRIDGE" oifname "$NODE_BRIDGE" accept
    iifname "$NODE_BRIDGE" drop
    oifname "$NODE_BRIDGE" drop
  }
}
NFT
  log "network ready: bridge $NODE_BRIDGE, node address $NODE_IP, guard table inet $NODE_NFT_TABLE"
}

# Write stdin to a file only when it changes it: kube-proxy exits when its config file changes.
write_file() {
  local tmp; tmp="$(mktemp "$1.XXXXXX")"
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

write_configs() {
  local kubeconfig="$1"
  mkdir -p "$state"/{containerd,cni/net.d,cni/ipam,kubelet,pki,pod-logs,volume-plugins,coredns}
  write_file "$state/containerd/config.toml" <<TOML
version = 2
root = "$state/containerd/root"
state = "$state/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$state/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:3.10"
  # Root here may lack CAP_SYS_RESOURCE: without this runc fails writing oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$state/cni/net.d"
TOML
  # No masquerading and no port mappings: pods talk to the node and to each other, nothing else.
  write_file "$state/cni/net.d/10-headwater.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "headwater-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "dataDir": "$state/cni/ipam"
      }
    }
  ]
}
JSON
  # Anonymous, AlwaysAllow access to the kubelet is for a throwaway local node only: it listens on the
  # node's address, which the guard keeps off every interface but loopback and the bridge.
  write_file "$state/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$sock
address: $NODE_IP
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
registerNode: true
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
clusterDNS: [$NODE_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: ""
podLogsDir: $state/pod-logs
volumePluginDir: $state/volume-plugins
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
YAML
  write_file "$state/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $kubeconfig}
hostnameOverride: $node
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
# Leave the machine's conntrack settings as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
  # Cluster names only: no forwarding, so no query leaves the machine.
  write_file "$state/coredns/Corefile" <<COREFILE
.:53 {
    bind $NODE_IP
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
        kubeconfig $kubeconfig
        pods insecure
    }
    cache 30
}
COREFILE
}

node_ready() {
  "$(k8s_bin_dir)/kubectl" --kubeconfig "$1" get node "$node" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True
}

up() {
  local kubeconfig="${1:?usage: hack/node.sh up NAME KUBECONFIG}"
  [[ -f "$state/bridge" ]] || die "no network for node '$name': run hack/node.sh net-up first (hack/cluster.sh up --real-node does)"
  ensure_debian_packages containerd runc containernetworking-plugins iptables conntrack util-linux mount curl python3
  bash "$here/build-tools.sh" --node >&2
  write_configs "$kubeconfig"
  if ! running containerd; then
    start containerd containerd --config "$state/containerd/config.toml"
    wait_for containerd 30 ctr --address "$sock" version
  fi
  bash "$here/images.sh" import "$sock" pause >&2
  # kubelet still creates /var/lib/kubelet (device plugins) and /var/log/containers: remember whether
  # they were there, so that down removes only what the node made.
  local d
  for d in /var/lib/kubelet /var/log/containers /var/log/pods; do
    if [[ ! -e "$d" ]] && ! grep -qsx "$d" "$state/created-dirs"; then echo "$d" >>"$state/created-dirs"; fi
  done
  if ! running kubelet; then
    start kubelet "$(k8s_node_bin_dir)/kubelet" --config "$state/kubelet.yaml" --kubeconfig "$kubeconfig" \
      --root-dir "$state/kubelet" --cert-dir "$state/pki" --hostname-override "$node" --node-ip "$NODE_IP" \
      --node-labels "$NODE_LABEL_KEY=$NODE_LABEL_VALUE" --v=1
  fi
  wait_for "node $node" 120 node_ready "$kubeconfig"
  if ! running kube-proxy; then
    start kube-proxy "$(k8s_node_bin_dir)/kube-proxy" --config "$state/kube-proxy.yaml" --v=1
  fi
  wait_for kube-proxy 60 curl -fsS http://127.0.0.1:10256/healthz
  if ! running coredns; then
    start coredns "$(coredns_bin_dir)/coredns" -conf "$state/coredns/Corefile"
  fi
  wait_for coredns 60 curl -fsS http://127.0.0.1:18181/ready
  log "node $node is Ready (address $NODE_IP, pods $POD_CIDR, containerd $sock)"
}

# Paths of the network namespaces of this node's pods, from containerd's own records.
pod_netns() {
  local id
  for id in $(ctr_ containers ls -q 2>/dev/null); do
    ctr_ containers info "$id" 2>/dev/null \
      | python3 -c 'import json,sys
for ns in json.load(sys.stdin).get("Spec", {}).get("linux", {}).get("namespaces", []):
    if ns.get("type") == "network" and ns.get("path"): print(ns["path"])' 2>/dev/null || true
  done | sort -u
}

remove_kube_chains() {
  local tool table chain
  for tool in iptables ip6tables; do
    command -v "$tool" >/dev/null || continue
    for table in filter nat mangle; do
      # Rules that jump into KUBE-* chains from built-in chains first, then the chains themselves.
      { "$tool" -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-' || true; } \
        | while read -r -a rule; do "$tool" -t "$table" -D "${rule[@]:1}" 2>/dev/null || true; done
      for chain in $("$tool" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
        "$tool" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$tool" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
        "$tool" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

unmount_under() {
  local prefix="$1" m
  # Deepest first; a busy mount is detached lazily rather than left behind.
  for m in $(findmnt -rn -o TARGET | grep -E "^$prefix" | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

down() {
  local kubeconfig="${1:-$HEADWATER_CACHE/kubeconfig-$name.yaml}" kubectl_ pid id ns
  [[ -d "$state" ]] || { log "no node state for '$name'"; return 0; }
  kubectl_="$(k8s_bin_dir)/kubectl --kubeconfig $kubeconfig --request-timeout=10s"
  # Let the kubelet stop the pods itself while it can: it tears their networking down through CNI.
  if running kubelet && $kubectl_ get node "$node" >/dev/null 2>&1; then
    $kubectl_ cordon "$node" >/dev/null 2>&1 || true
    $kubectl_ delete pods --all-namespaces --field-selector "spec.nodeName=$node" --grace-period=5 \
      --wait=false >/dev/null 2>&1 || true
    local deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)) && [[ -n "$($kubectl_ get pods -A --field-selector "spec.nodeName=$node" -o name 2>/dev/null)" ]]; do
      sleep 0.5
    done
    $kubectl_ delete node "$node" --wait=false >/dev/null 2>&1 || true
  fi
  stop coredns
  stop kube-proxy
  stop kubelet
  [[ -x "$(k8s_node_bin_dir)/kube-proxy" ]] && "$(k8s_node_bin_dir)/kube-proxy" --cleanup >/dev/null 2>&1 || true
  # Whatever the kubelet left: containers killed and removed, their namespaces unmounted.
  if running containerd; then
    local netns; netns="$(pod_netns)"
    for id in $(ctr_ tasks ls -q 2>/dev/null); do
      ctr_ tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    sleep 0.5
    for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true; done
    for id in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$id" >/dev/null 2>&1 || true; done
    for ns in $netns; do umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true; rm -f "$ns"; done
  fi
  stop containerd
  # Shims outlive containerd; they are this node's when their command line names its socket.
  local f
  for f in /proc/[0-9]*/cmdline; do
    pid="${f//[^0-9]/}"
    [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == */containerd-shim* ]] || continue
    grep -qsF -- "$sock" "$f" && kill -KILL "$pid" 2>/dev/null || true
  done
  unmount_under "$state/"
  remove_kube_chains
  # The kubelet's cgroups (cgroupfs driver): the pods' first, the QoS classes', then kubepods itself.
  local cg
  for cg in /sys/fs/cgroup/*/kubepods; do
    [[ -d "$cg" ]] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  find /var/log/containers -maxdepth 1 -type l -lname "$state/*" -delete 2>/dev/null || true
  if [[ -f "$state/created-dirs" ]]; then
    while read -r d; do unmount_under "$d/"; rm -rf "$d"; done <"$state/created-dirs"
    rm -f "$state/created-dirs"
  fi
  log "node $node stopped"
}

net_down() {
  nft delete table inet "$NODE_NFT_TABLE" 2>/dev/null || true
  if [[ -f "$state/bridge" ]]; then ip link del "$NODE_BRIDGE" 2>/dev/null || true; fi
  local f
  for f in "$state"/sysctl.*; do
    [[ -f "$f" ]] && sysctl -qw "${f##*/sysctl.}=$(cat "$f")" || true
  done
  rm -rf "$state"
  log "network of node $node removed"
}

# Everything a node can leave behind, so that a test can require there is none.
leftovers() {
  local found=0 line
  report() { echo "$1"; found=1; }
  local nodes_dir="$HEADWATER_CACHE/nodes/"
  for f in /proc/[0-9]*/cmdline; do
    if grep -qsF -- "$nodes_dir" "$f"; then
      line="$(tr '\0' ' ' <"$f" 2>/dev/null | cut -c1-200)"
      [[ -n "$line" ]] && report "process ${f//[^0-9]/}: $line"
    fi
  done
  while read -r line; do report "mount: $line"; done < <(findmnt -rn -o TARGET | grep -E "^($nodes_dir|/run/netns/cni-|/var/run/netns/cni-)" || true)
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && report "bridge: $NODE_BRIDGE"
  nft list table inet "$NODE_NFT_TABLE" >/dev/null 2>&1 && report "nftables table: inet $NODE_NFT_TABLE"
  local tool
  for tool in iptables ip6tables; do
    command -v "$tool" >/dev/null || continue
    while read -r line; do report "$tool chain: $line"; done < <("$tool-save" 2>/dev/null | grep -E '^:(KUBE-|CNI-)' | cut -d' ' -f1 || true)
  done
  for line in /sys/fs/cgroup/*/kubepods; do [[ -d "$line" ]] && report "cgroup: $line"; done
  for line in /run/netns/cni-* /var/lib/kubelet; do [[ -e "$line" ]] && report "path: $line"; done
  [[ -d "$nodes_dir" ]] && [[ -n "$(ls -A "$nodes_dir")" ]] && report "state: $(ls "$nodes_dir")"
  return $found
}

case "$cmd" in
  net-up) net_up "${3:-}" ;;
  up) up "${3:-}" ;;
  down) down "${3:-}" ;;
  net-down) net_down ;;
  leftovers) leftovers ;;
  *) die "unknown command '$cmd' (net-up, up, down, net-down, leftovers)" ;;
esac
