//! What the scheduler knows about each node: its pods, the resources they
//! request, the host ports they hold and the images present (`framework.NodeInfo`).

use std::collections::{BTreeMap, HashMap};
use std::ops::Deref;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::matching::PodAffinityTerms;

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

/// A pod as the scheduler keeps it: shared, with what the filters need
/// computed once (`framework.PodInfo`).
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// The pod object, shared with the cache.
    pub pod: Arc<Pod>,
    /// `namespace/name`.
    pub key: String,
    /// [`pod_requests`] of the pod.
    pub requests: Resources,
    /// [`pod_requests_non_zero`] of the pod.
    pub non_zero_requests: Resources,
    /// The host ports the pod holds.
    pub ports: Vec<HostPort>,
    /// `spec.priority`, 0 when unset.
    pub priority: i32,
    /// The pod's affinity terms, None when it has none.
    pub(crate) terms: Option<Arc<PodAffinityTerms>>,
}

impl PodInfo {
    /// Prepares a pod.
    pub fn new(pod: Arc<Pod>) -> Self {
        let terms = PodAffinityTerms::of(&pod);
        PodInfo {
            key: format!(
                "{}/{}",
                pod.metadata.namespace.as_deref().unwrap_or(""),
                pod.metadata.name.as_deref().unwrap_or("")
            ),
            requests: pod_requests(&pod),
            non_zero_requests: pod_requests_non_zero(&pod),
            ports: pod_host_ports(&pod),
            priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
            terms: (!terms.is_empty()).then(|| Arc::new(terms)),
            pod,
        }
    }

    /// Whether the pod has any pod affinity or anti-affinity term.
    pub fn has_affinity(&self) -> bool {
        self.terms.is_some()
    }

    /// Whether the pod has required anti-affinity terms.
    pub fn has_required_anti_affinity(&self) -> bool {
        self.terms
            .as_ref()
            .is_some_and(|t| !t.anti_affinity.is_empty())
    }
}

impl Deref for PodInfo {
    type Target = Pod;
    fn deref(&self) -> &Pod {
        &self.pod
    }
}

/// One node with the pods bound to it and the sums derived from them.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// The node object, shared (copies of a NodeInfo made for preemption do not copy it).
    pub node: Arc<Node>,
    /// The pods bound (or assumed) to the node, not Succeeded or Failed.
    pub pods: Vec<PodInfo>,
    /// How many of the pods have pod affinity or anti-affinity terms.
    pub pods_with_affinity: usize,
    /// How many of the pods have required anti-affinity terms.
    pub pods_with_required_anti_affinity: usize,
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
        let mut info = NodeInfo::default();
        info.set_node(node);
        for p in pods {
            info.add_pod(p);
        }
        info
    }

    /// Replaces the node object (allocatable, labels, taints, images), keeping the pods.
    pub fn set_node(&mut self, node: Node) {
        let status = node.status.as_ref();
        self.allocatable = status
            .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
            .map(Resources::from_list)
            .unwrap_or_default();
        self.image_sizes.clear();
        for img in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for name in img.names.iter().flatten() {
                self.image_sizes
                    .insert(name.clone(), img.size_bytes.unwrap_or(0));
            }
        }
        self.node = Arc::new(node);
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
        self.add_pod_info(PodInfo::new(Arc::new(pod)));
    }

    /// Accounts an already prepared pod to the node.
    pub fn add_pod_info(&mut self, pi: PodInfo) {
        self.requested.add(&pi.requests);
        self.non_zero_requested.add(&pi.non_zero_requests);
        self.used_ports.extend(pi.ports.iter().cloned());
        self.pods_with_affinity += usize::from(pi.has_affinity());
        self.pods_with_required_anti_affinity += usize::from(pi.has_required_anti_affinity());
        self.pods.push(pi);
    }

    /// Takes the pod with this `namespace/name` key off the node, if it is there.
    pub fn remove_pod(&mut self, key: &str) -> Option<PodInfo> {
        let i = self.pods.iter().position(|p| p.key == key)?;
        let pi = self.pods.swap_remove(i);
        self.requested.sub(&pi.requests);
        self.non_zero_requested.sub(&pi.non_zero_requests);
        for port in &pi.ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == port) {
                self.used_ports.swap_remove(j);
            }
        }
        self.pods_with_affinity -= usize::from(pi.has_affinity());
        self.pods_with_required_anti_affinity -= usize::from(pi.has_required_anti_affinity());
        Some(pi)
    }

    /// The same node without the pods for which `remove` is true.
    pub fn without_pods(&self, remove: impl Fn(&PodInfo) -> bool) -> NodeInfo {
        let mut out = self.clone();
        let keys: Vec<String> = self
            .pods
            .iter()
            .filter(|p| remove(p))
            .map(|p| p.key.clone())
            .collect();
        for k in keys {
            out.remove_pod(&k);
        }
        out
    }
}

/// Everything one scheduling cycle looks at: every node with its pods, the
/// namespaces' labels (for `namespaceSelector` in pod affinity terms) and the
/// pods nominated to nodes by preemption. The scheduler [`crate::cache::Cache`]
/// keeps one up to date incrementally; tests build them with [`Snapshot::new`].
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every node, in a stable order (a deleted node's slot is taken by the last node).
    pub nodes: Vec<NodeInfo>,
    /// Namespace name → labels.
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Image name → how many nodes have it.
    pub image_nodes: BTreeMap<String, usize>,
    /// Node name → pods nominated to run there (waiting for their victims to go).
    pub nominated: HashMap<String, Vec<PodInfo>>,
    /// The PodDisruptionBudgets preemption weighs.
    pub budgets: Vec<crate::preemption::Budget>,
    /// The PersistentVolumeClaims, PersistentVolumes and StorageClasses VolumeBinding reads.
    pub volumes: crate::volume_binding::Volumes,
    index: HashMap<String, usize>,
}

impl Snapshot {
    /// Groups pods under the nodes they are bound to (`spec.nodeName`); pods
    /// that finished (Succeeded, Failed) or are unbound are left out.
    pub fn new(nodes: Vec<Node>, pods: &[Pod]) -> Self {
        let mut by_node: BTreeMap<&str, Vec<Pod>> = BTreeMap::new();
        for p in pods {
            if finished(p) {
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
        let mut s = Snapshot::default();
        for n in nodes {
            s.put_node_info(n);
        }
        s
    }

    fn count_images(&mut self, node: &NodeInfo, add: bool) {
        self.count_image_names(node.image_sizes.keys(), add);
    }

    fn count_image_names<'b>(&mut self, names: impl Iterator<Item = &'b String>, add: bool) {
        for name in names {
            if add {
                *self.image_nodes.entry(name.clone()).or_default() += 1;
            } else if let Some(c) = self.image_nodes.get_mut(name) {
                *c -= 1;
                if *c == 0 {
                    self.image_nodes.remove(name);
                }
            }
        }
    }

    /// Adds a node (or replaces the one with its name).
    pub fn put_node_info(&mut self, info: NodeInfo) {
        self.count_images(&info, true);
        match self.index.get(info.name()) {
            Some(&i) => {
                let old = std::mem::replace(&mut self.nodes[i], info);
                self.count_images(&old, false);
            }
            None => {
                self.index.insert(info.name().to_string(), self.nodes.len());
                self.nodes.push(info);
            }
        }
    }

    /// Replaces the object of a node already present, in place (its pods and
    /// its position stay). False if there is no such node.
    pub fn update_node(&mut self, node: Node) -> bool {
        let Some(i) = self.position(node.metadata.name.as_deref().unwrap_or("")) else {
            return false;
        };
        let old = std::mem::take(&mut self.nodes[i].image_sizes);
        self.count_image_names(old.keys(), false);
        self.nodes[i].set_node(node);
        let new: Vec<String> = self.nodes[i].image_sizes.keys().cloned().collect();
        self.count_image_names(new.iter(), true);
        true
    }

    /// Removes a node, returning it with its pods.
    pub fn remove_node(&mut self, name: &str) -> Option<NodeInfo> {
        let i = self.index.remove(name)?;
        let info = self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name().to_string(), i);
        }
        self.count_images(&info, false);
        Some(info)
    }

    /// The index of a node in [`Self::nodes`].
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// A node by name.
    pub fn get(&self, name: &str) -> Option<&NodeInfo> {
        self.position(name).map(|i| &self.nodes[i])
    }

    /// A node by name, to change it; images of a changed node object must go
    /// through [`Self::put_node_info`].
    pub fn get_mut(&mut self, name: &str) -> Option<&mut NodeInfo> {
        self.position(name).map(|i| &mut self.nodes[i])
    }

    /// Whether any pod on any node has pod affinity or anti-affinity terms
    /// (`HavePodsWithAffinityList` is not empty).
    pub fn have_pods_with_affinity(&self) -> bool {
        self.nodes.iter().any(|n| n.pods_with_affinity > 0)
    }

    /// Whether any pod on any node has required anti-affinity terms.
    pub fn have_pods_with_required_anti_affinity(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| n.pods_with_required_anti_affinity > 0)
    }

    /// The pods nominated to `node` with at least `priority`, other than `key`.
    pub fn nominated_for<'a>(
        &'a self,
        node: &str,
        priority: i32,
        key: &'a str,
    ) -> impl Iterator<Item = &'a PodInfo> + 'a {
        self.nominated
            .get(node)
            .into_iter()
            .flatten()
            .filter(move |p| p.priority >= priority && p.key != key)
    }
}

/// Whether a pod ran to completion (Succeeded or Failed) and holds nothing.
pub fn finished(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}
