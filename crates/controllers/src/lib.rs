//! The controllers of a skiff cluster, as kube-controller-manager runs them. Each is a pure planner (`plan(observed, now) -> actions`, table
//! tested) and a thin loop that watches the API through a `kube::Client`,
//! calls the planner, carries the plan out and writes only what changed.
//!
//! # Layout
//!
//! - [`node_lifecycle`]: node health from Leases and heartbeats, the
//!   `NodeStatusUnknown` conditions, the not-ready/unreachable taints
//!   (NoExecute and NoSchedule), pods marked not Ready, and the NoExecute
//!   taint manager that deletes pods after their tolerations run out.
//! - [`podgc`]: force-deletes pods whose node is gone and terminating pods on
//!   out-of-service nodes.
//! - [`disruption`]: the PodDisruptionBudget status (`expectedPods`,
//!   `currentHealthy`, `desiredHealthy`, `disruptionsAllowed`, conditions).
//! - [`replicaset`]: keeps `replicas` pods of a template, adopting and
//!   releasing by selector, deleting in Kubernetes' order.
//! - [`deployment`]: rolling updates, Recreate, revisions, pause and the
//!   rollout conditions, through ReplicaSets.
//! - [`job`]: Jobs (parallelism, completions, Indexed, back-off, deadline,
//!   suspend, finalizer-tracked counting) and the TTL-after-finished controller.
//! - [`daemonset`]: one pod per eligible node, rolling updates, ControllerRevisions.
//! - [`statefulset`]: ordinal pods with stable names and claims, ordered and
//!   parallel scaling, rolling updates with partitions, ControllerRevisions.
//! - [`gc`]: the garbage collector (owner references, foreground and orphan
//!   deletion).
//! - [`ipam`]: node IPAM, a pod CIDR for every Node from the cluster CIDR.
//! - [`endpoints`]: Endpoints and EndpointSlices of Services with a selector.
//! - [`hpa`]: the HorizontalPodAutoscaler (Resource and ContainerResource
//!   metrics through the scale subresource).
//! - [`storage`]: the PersistentVolume binder, the `skiff.io/local-path`
//!   provisioner, PVC/PV protection and the default StorageClass.
//! - [`leader`]: leader election on a Lease, so that of several servers on
//!   one datastore only one runs the controllers (and the scheduler).
//! - `cache` and `events`: watcher-fed maps and Event recording shared by the loops.

pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod gc;
pub mod hpa;
pub mod informer;
pub mod ipam;
pub mod job;
pub mod leader;
pub mod node_lifecycle;
pub mod podgc;
pub mod replicaset;
pub mod statefulset;
pub mod storage;

mod cache;
mod events;

use std::time::Duration;
use tokio::sync::watch;

/// Settings of the controllers, from `skiff server` flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--node-monitor-period`: how often node health is checked.
    pub node_monitor_period: Duration,
    /// `--node-monitor-grace-period`: how long a node may stay silent before
    /// its conditions turn Unknown.
    pub node_monitor_grace_period: Duration,
    /// How long a pod's node must be missing before the pod is force-deleted
    /// (Kubernetes' pod GC quarantine, 40 s).
    pub pod_gc_quarantine: Duration,
    /// How often pod GC runs (`gcCheckPeriod`, 20 s in Kubernetes).
    pub pod_gc_period: Duration,
    /// Run the node lifecycle controller.
    pub node_lifecycle: bool,
    /// Run pod GC.
    pub pod_gc: bool,
    /// Run the disruption controller.
    pub disruption: bool,
    /// Run the workload controllers (ReplicaSet, Deployment, Job, DaemonSet, StatefulSet) and the garbage collector.
    pub workloads: bool,
    /// Run the Endpoints and EndpointSlice controllers.
    pub endpoints: bool,
    /// `--max-endpoints-per-slice`: endpoints in one EndpointSlice (100).
    pub max_endpoints_per_slice: usize,
    /// Run node IPAM (`--allocate-node-cidrs`).
    pub ipam: bool,
    /// `--cluster-cidr`: the range pod CIDRs come from (10.42.0.0/16).
    pub cluster_cidr: (std::net::Ipv4Addr, u8),
    /// `--node-cidr-mask-size`: the prefix length of each node's pod CIDR (24).
    pub node_cidr_mask: u8,
    /// Run the HorizontalPodAutoscaler controller.
    pub hpa: bool,
    /// `--horizontal-pod-autoscaler-sync-period` (15 s).
    pub hpa_sync_period: Duration,
    /// `--horizontal-pod-autoscaler-tolerance` (0.1).
    pub hpa_tolerance: f64,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period` (5 min).
    pub hpa_cpu_initialization_period: Duration,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay` (30 s).
    pub hpa_initial_readiness_delay: Duration,
    /// `--horizontal-pod-autoscaler-downscale-stabilization` (5 min).
    pub hpa_downscale_stabilization: Duration,
    /// Run the storage controllers (PV binder, local-path provisioner, PVC/PV protection).
    pub storage: bool,
    /// Create the default StorageClass `local-path` at start when absent.
    pub default_storage_class: bool,
    /// The node directory `skiff.io/local-path` volumes go under when their
    /// class has no `nodePath` parameter ([`storage::DEFAULT_NODE_PATH`]).
    pub storage_node_path: std::path::PathBuf,
}

impl Config {
    /// The HPA controller's options from these settings.
    pub fn hpa_options(&self) -> hpa::Options {
        hpa::Options {
            sync_period: self.hpa_sync_period,
            tolerance: self.hpa_tolerance,
            cpu_initialization_period: self.hpa_cpu_initialization_period,
            initial_readiness_delay: self.hpa_initial_readiness_delay,
            downscale_stabilization: self.hpa_downscale_stabilization,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(40),
            pod_gc_quarantine: Duration::from_secs(40),
            pod_gc_period: Duration::from_secs(20),
            node_lifecycle: true,
            pod_gc: true,
            disruption: true,
            workloads: true,
            endpoints: true,
            max_endpoints_per_slice: 100,
            ipam: true,
            cluster_cidr: (std::net::Ipv4Addr::new(10, 42, 0, 0), 16),
            node_cidr_mask: 24,
            hpa: true,
            hpa_sync_period: Duration::from_secs(15),
            hpa_tolerance: 0.1,
            hpa_cpu_initialization_period: Duration::from_secs(300),
            hpa_initial_readiness_delay: Duration::from_secs(30),
            hpa_downscale_stabilization: Duration::from_secs(300),
            storage: true,
            default_storage_class: true,
            storage_node_path: storage::DEFAULT_NODE_PATH.into(),
        }
    }
}

/// Runs every enabled controller until `shutdown` turns true. They share one
/// pod watch ([`informer::PodInformer`]).
pub async fn run(client: kube::Client, config: Config, shutdown: watch::Receiver<bool>) {
    let mut informer = informer::PodInformer::new(client.clone());
    let mut tasks = Vec::new();
    if config.node_lifecycle {
        tasks.push(tokio::spawn(node_lifecycle::run_with_pods(
            client.clone(),
            config.clone(),
            informer.subscribe(),
            shutdown.clone(),
        )));
    }
    if config.pod_gc {
        tasks.push(tokio::spawn(podgc::run_with_pods(
            client.clone(),
            config.clone(),
            informer.subscribe(),
            shutdown.clone(),
        )));
    }
    if config.workloads {
        tasks.push(tokio::spawn(replicaset::run_with_pods(
            client.clone(),
            informer.subscribe(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(deployment::run_with_pods(
            client.clone(),
            informer.subscribe(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(job::run_with(
            client.clone(),
            job::Options::default(),
            informer.subscribe(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(daemonset::run_with_pods(
            client.clone(),
            informer.subscribe(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(statefulset::run_with_pods(
            client.clone(),
            informer.subscribe(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(gc::run(client.clone(), shutdown.clone())));
    }
    if config.disruption {
        tasks.push(tokio::spawn(disruption::run_with_pods(
            client.clone(),
            informer.subscribe(),
            shutdown.clone(),
        )));
    }
    if config.endpoints {
        tasks.push(tokio::spawn(endpoints::run_with_pods(
            client.clone(),
            config.clone(),
            informer.subscribe(),
            shutdown.clone(),
        )));
    }
    if config.ipam {
        tasks.push(tokio::spawn(ipam::run(
            client.clone(),
            config.clone(),
            shutdown.clone(),
        )));
    }
    if config.hpa {
        tasks.push(tokio::spawn(hpa::run_with_pods(
            client.clone(),
            config.hpa_options(),
            std::sync::Arc::new(hpa::ApiMetrics(client.clone())),
            informer.subscribe(),
            shutdown.clone(),
        )));
    }
    if config.storage {
        tasks.push(tokio::spawn(storage::run_with_pods(
            client.clone(),
            config.clone(),
            informer.subscribe(),
            shutdown.clone(),
        )));
    }
    tasks.push(tokio::spawn(informer.run(shutdown.clone())));
    for t in tasks {
        let _ = t.await;
    }
}

/// Now, rounded to the second as Kubernetes writes `metav1.Time`.
pub(crate) fn now_rounded() -> jiff::Timestamp {
    let t = jiff::Timestamp::now();
    t.round(jiff::Unit::Second).unwrap_or(t)
}

/// What the API server said, for an event message: its Status message, or the client error.
pub(crate) fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// `namespace/name` of an object.
pub(crate) fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

/// What the planners' table tests share.
#[cfg(test)]
pub(crate) mod testing {
    use serde_json::Value;

    /// Merges `b` into `a`: objects key by key, anything else (null included) replaces.
    pub(crate) fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }
}
