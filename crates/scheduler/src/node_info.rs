//! What the scheduler knows about each node: its pods, the resources they
//! request, the host ports they hold and the images present (`framework.NodeInfo`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::resources::{Resources, pod_requests, pod_requests_non_zero};

/// A host port a container holds: `hostIP` (default `0.0.0.0`), protocol
/// (default `TCP`) and port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostPort {
    /// The host IP, `0.0.0.0` when unset.
    pub ip: String,
    /// The protocol, `TCP` when unset.
    pub protocol: String,
    /// The host port number.
    pub port: i32,
}

impl HostPort {
    /// Whether this wanted port cannot be had beside an already used one.
    pub fn conflicts(&self, used: &HostPort) -> bool {
        self.protocol == used.protocol
            && self.port == used.port
            && (self.ip == used.ip || self.ip == "0.0.0.0" || used.ip == "0.0.0.0")
    }
}

/// The host ports a pod's containers ask for (`hostPort` > 0).
pub fn pod_host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|h| *h > 0)?;
            Some(HostPort {
                ip: p
                    .host_ip
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                protocol: p
                    .protocol
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "TCP".into()),
                port,
            })
        })
        .collect()
}

/// One node with the pods bound to it and the sums derived from them.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// The node object.
    pub node: Node,
    /// The pods bound to the node (not Succeeded or Failed).
    pub pods: Vec<Pod>,
    /// The sum of the pods' requests.
    pub requested: Resources,
    /// The sum of the pods' requests with 100m cpu / 200Mi memory for unset ones.
    pub non_zero_requested: Resources,
    /// `status.allocatable` (falling back to `status.capacity`).
    pub allocatable: Resources,
    /// The host ports the pods hold.
    pub used_ports: Vec<HostPort>,
    /// The images on the node (`status.images`), every name mapped to its size in bytes.
    pub image_sizes: BTreeMap<String, i64>,
}

impl NodeInfo {
    /// Builds a node's info from the node and the pods bound to it.
    pub fn new(node: Node, pods: Vec<Pod>) -> Self {
        let status = node.status.as_ref();
        let allocatable = status
            .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
            .map(Resources::from_list)
            .unwrap_or_default();
        let mut image_sizes = BTreeMap::new();
        for img in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for name in img.names.iter().flatten() {
                image_sizes.insert(name.clone(), img.size_bytes.unwrap_or(0));
            }
        }
        let mut info = NodeInfo {
            node,
            pods: Vec::new(),
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            allocatable,
            used_ports: Vec::new(),
            image_sizes,
        };
        for p in pods {
            info.add_pod(p);
        }
        info
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or("")
    }

    /// The node's labels.
    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.node.metadata.labels.as_ref()
    }

    /// A node label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels().and_then(|l| l.get(key)).map(String::as_str)
    }

    /// Accounts a pod to the node (as the scheduler cache does when a pod is bound or assumed).
    pub fn add_pod(&mut self, pod: Pod) {
        self.requested.add(&pod_requests(&pod));
        self.non_zero_requested.add(&pod_requests_non_zero(&pod));
        self.used_ports.extend(pod_host_ports(&pod));
        self.pods.push(pod);
    }

    /// The same node without the pods for which `remove` is true.
    pub fn without_pods(&self, remove: impl Fn(&Pod) -> bool) -> NodeInfo {
        let pods = self.pods.iter().filter(|p| !remove(p)).cloned().collect();
        NodeInfo::new(self.node.clone(), pods)
    }
}

/// Everything one scheduling cycle looks at: every node with its pods, and the
/// namespaces' labels (for `namespaceSelector` in pod affinity terms).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every node, in a stable order.
    pub nodes: Vec<NodeInfo>,
    /// Namespace name → labels.
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Image name → how many nodes have it.
    pub image_nodes: BTreeMap<String, usize>,
}

impl Snapshot {
    /// Groups pods under the nodes they are bound to (`spec.nodeName`); pods
    /// that finished (Succeeded, Failed) or are unbound are left out.
    pub fn new(nodes: Vec<Node>, pods: &[Pod]) -> Self {
        let mut by_node: BTreeMap<&str, Vec<Pod>> = BTreeMap::new();
        for p in pods {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed")) {
                continue;
            }
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                by_node.entry(n).or_default().push(p.clone());
            }
        }
        let infos = nodes
            .into_iter()
            .map(|n| {
                let name = n.metadata.name.clone().unwrap_or_default();
                let pods = by_node.remove(name.as_str()).unwrap_or_default();
                NodeInfo::new(n, pods)
            })
            .collect();
        Self::from_node_infos(infos)
    }

    /// A snapshot of already built node infos.
    pub fn from_node_infos(nodes: Vec<NodeInfo>) -> Self {
        let mut image_nodes: BTreeMap<String, usize> = BTreeMap::new();
        for n in &nodes {
            for name in n.image_sizes.keys() {
                *image_nodes.entry(name.clone()).or_default() += 1;
            }
        }
        Snapshot {
            nodes,
            namespace_labels: BTreeMap::new(),
            image_nodes,
        }
    }

    /// A node by name.
    pub fn get(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.name() == name)
    }
}
