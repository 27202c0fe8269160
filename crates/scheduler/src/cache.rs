//! The scheduler cache (`internal/cache`): one [`Snapshot`] kept up to date
//! event by event instead of rebuilt per pod. Bound pods are accounted to
//! their nodes as the watch reports them; a pod the scheduler placed is
//! *assumed* on its node at once and confirmed by the watch (or forgotten if
//! its binding fails). Pods bound to nodes not seen yet wait until the node
//! appears. Pods nominated by preemption are kept per node.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::node_info::{NodeInfo, PodInfo, Snapshot, finished};

/// Where the cache holds a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placed {
    node: String,
    assumed: bool,
}

/// The incremental cache of nodes and the pods on them.
#[derive(Debug, Default)]
pub struct Cache {
    snapshot: Snapshot,
    pods: HashMap<String, Placed>,
    /// Pods bound to nodes the cache has not seen (yet), by node name.
    orphans: HashMap<String, Vec<PodInfo>>,
    /// Pod key → the node it is nominated to.
    nominations: HashMap<String, String>,
}

/// A pod's `namespace/name`.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current state, as scheduling cycles read it.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Replaces the PodDisruptionBudgets preemption weighs.
    pub fn set_budgets(&mut self, budgets: Vec<crate::preemption::Budget>) {
        self.snapshot.budgets = budgets;
    }

    /// The claims, volumes and classes VolumeBinding reads, to update from their watches.
    pub fn volumes_mut(&mut self) -> &mut crate::volume_binding::Volumes {
        &mut self.snapshot.volumes
    }

    /// How many pods are accounted (bound or assumed, including orphans).
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// The keys of the pods accounted (bound, assumed, waiting for their node).
    pub fn pod_keys(&self) -> impl Iterator<Item = &str> {
        self.pods.keys().map(String::as_str)
    }

    /// Adds a node or updates it (labels, taints, allocatable, images), keeping its pods.
    pub fn add_node(&mut self, node: Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        if self.snapshot.position(&name).is_some() {
            self.snapshot.update_node(node);
            return;
        }
        let mut info = NodeInfo::default();
        info.set_node(node);
        for p in self.orphans.remove(&name).unwrap_or_default() {
            info.add_pod_info(p);
        }
        self.snapshot.put_node_info(info);
    }

    /// Removes a node; its pods stay accounted and return if the node does.
    pub fn remove_node(&mut self, name: &str) {
        if let Some(info) = self.snapshot.remove_node(name)
            && !info.pods.is_empty()
        {
            self.orphans.insert(name.to_string(), info.pods);
        }
    }

    fn attach(&mut self, node: &str, pi: PodInfo) {
        match self.snapshot.get_mut(node) {
            Some(n) => n.add_pod_info(pi),
            None => self.orphans.entry(node.to_string()).or_default().push(pi),
        }
    }

    fn detach(&mut self, key: &str, node: &str) {
        if let Some(n) = self.snapshot.get_mut(node) {
            n.remove_pod(key);
        } else if let Some(list) = self.orphans.get_mut(node) {
            list.retain(|p| p.key != key);
            if list.is_empty() {
                self.orphans.remove(node);
            }
        }
    }

    /// A pod as the watch reports it. A bound pod is accounted to its node
    /// (confirming an assumed one); a finished pod is taken off. Unbound pods
    /// do not touch the node accounting (an assumed pod stays assumed), but
    /// their `status.nominatedNodeName` is recorded.
    pub fn update_pod(&mut self, pod: Arc<Pod>) {
        let key = pod_key(&pod);
        if finished(&pod) {
            self.remove_pod(&key);
            return;
        }
        let Some(node) = node_name(&pod).map(str::to_string) else {
            let nominated = pod
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.as_deref())
                .filter(|n| !n.is_empty())
                .map(str::to_string);
            match nominated {
                Some(n) => self.nominate(PodInfo::new(pod), &n),
                None => self.clear_nomination(&key),
            }
            return;
        };
        self.clear_nomination(&key);
        if let Some(old) = self.pods.remove(&key) {
            self.detach(&key, &old.node);
        }
        self.attach(&node, PodInfo::new(pod));
        self.pods.insert(
            key,
            Placed {
                node,
                assumed: false,
            },
        );
    }

    /// Takes a pod off its node (deleted, or finished) and drops its nomination.
    pub fn remove_pod(&mut self, key: &str) {
        self.clear_nomination(key);
        if let Some(old) = self.pods.remove(key) {
            self.detach(key, &old.node);
        }
    }

    /// Accounts a pod to the node the scheduler chose, before its binding is done.
    pub fn assume(&mut self, pod: Arc<Pod>, node: &str) {
        let key = pod_key(&pod);
        self.clear_nomination(&key);
        if let Some(old) = self.pods.remove(&key) {
            self.detach(&key, &old.node);
        }
        self.attach(node, PodInfo::new(pod));
        self.pods.insert(
            key,
            Placed {
                node: node.to_string(),
                assumed: true,
            },
        );
    }

    /// Undoes [`Self::assume`] after a failed binding; a pod the watch has
    /// meanwhile reported bound is left alone.
    pub fn forget(&mut self, key: &str) {
        if self.pods.get(key).is_some_and(|p| p.assumed) {
            self.remove_pod(key);
        }
    }

    /// Whether the pod is assumed (placed, binding not confirmed by the watch).
    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|p| p.assumed)
    }

    /// The node the pod is accounted to, if any.
    pub fn node_of(&self, key: &str) -> Option<&str> {
        self.pods.get(key).map(|p| p.node.as_str())
    }

    /// Records that a pod is nominated to a node (its resources are held there
    /// for pods of lower or equal priority).
    pub fn nominate(&mut self, pi: PodInfo, node: &str) {
        self.clear_nomination(&pi.key);
        self.nominations.insert(pi.key.clone(), node.to_string());
        self.snapshot
            .nominated
            .entry(node.to_string())
            .or_default()
            .push(pi);
    }

    /// Drops a pod's nomination, if it has one.
    pub fn clear_nomination(&mut self, key: &str) {
        let Some(node) = self.nominations.remove(key) else {
            return;
        };
        if let Some(list) = self.snapshot.nominated.get_mut(&node) {
            list.retain(|p| p.key != key);
            if list.is_empty() {
                self.snapshot.nominated.remove(&node);
            }
        }
    }

    /// The node a pod is nominated to.
    pub fn nominated_node(&self, key: &str) -> Option<&str> {
        self.nominations.get(key).map(String::as_str)
    }
}
