# Versions of the local control plane and tools, sourced by the hack/ scripts.
# Each is built from Go modules once and cached by version outside the repository.
KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.21.4}"
# Prometheus 3.16.0 is published as the Go module version v0.316.0: promtool for everything, the server
# only for the real tier (built by hack/build-tools.sh --prometheus).
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
# CoreDNS serves the real node's cluster DNS (hack/node.sh); built only for it.
COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"
HEADWATER_CACHE="${HEADWATER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/headwater}"

# The -b<N> suffixes name the build recipe: bump one when its build flags change.
k8s_bin_dir()  { echo "$HEADWATER_CACHE/k8s/$KUBERNETES_VERSION-b2/bin"; }
# kubelet and kube-proxy: the same Kubernetes build recipe, kept apart so that only the real node pays for it.
k8s_node_bin_dir() { echo "$HEADWATER_CACHE/k8s/$KUBERNETES_VERSION-b2-node/bin"; }
coredns_bin_dir() { echo "$HEADWATER_CACHE/coredns/$COREDNS_VERSION/bin"; }
etcd_bin_dir() { echo "$HEADWATER_CACHE/etcd/$ETCD_VERSION/bin"; }
kwok_bin_dir() { echo "$HEADWATER_CACHE/kwok/$KWOK_VERSION/bin"; }
helm_bin_dir() { echo "$HEADWATER_CACHE/helm/$HELM_VERSION/bin"; }
promtool_bin_dir() { echo "$HEADWATER_CACHE/prometheus/$PROMETHEUS_VERSION-b2/bin"; }
prometheus_bin_dir() { echo "$HEADWATER_CACHE/prometheus/$PROMETHEUS_VERSION-server-b1/bin"; }
# Argo Workflows' workflow-controller: built only for the side-by-side benchmark (hack/argo.sh).
ARGO_VERSION="${ARGO_VERSION:-v3.7.12}"
argo_bin_dir() { echo "$HEADWATER_CACHE/argo/$ARGO_VERSION/bin"; }
