# The real node's network, sourced by hack/node.sh and hack/cluster.sh (one real node per machine).
#
# Pods live on a bridge of their own (NODE_BRIDGE, POD_CIDR); the host's address on it (NODE_IP) is the
# node's InternalIP and the address the apiserver advertises, so the `kubernetes` Service (through
# kube-proxy) leads pods to it; CoreDNS answers the cluster's names on NODE_IP:53. A guard (nftables table
# NODE_NFT_TABLE) keeps all of it inside the machine: the apiserver's port and the node's address answer
# only on loopback and the bridge, and pod traffic never leaves the bridge.
NODE_BRIDGE="${HEADWATER_NODE_BRIDGE:-hwnode0}"
POD_CIDR="${HEADWATER_NODE_POD_CIDR:-10.88.0.0/16}"
NODE_IP="${HEADWATER_NODE_IP:-10.88.0.1}"
SERVICE_CIDR="${HEADWATER_NODE_SERVICE_CIDR:-10.96.0.0/16}"
KUBERNETES_SERVICE_IP="${HEADWATER_NODE_KUBERNETES_SERVICE_IP:-10.96.0.1}"
CLUSTER_DOMAIN=cluster.local
NODE_NFT_TABLE=headwater_node
# The label that marks the real node; pods meant for it select it, and simulated nodes never carry it.
NODE_LABEL_KEY=headwater.dev/node
NODE_LABEL_VALUE=real
node_state_dir() { echo "$HEADWATER_CACHE/nodes/$1"; }
node_name() { echo "$1-node"; }
