//! The node lifecycle controller (kube-controller-manager's `nodelifecycle`
//! in taint-based eviction mode, with TaintNodesByCondition and the NoExecute
//! taint manager).
//!
//! - A node is heard from through its Lease (`kube-node-lease/<node>`,
//!   `spec.renewTime`) and its Ready condition's `lastHeartbeatTime`,
//!   whichever is newer. After `--node-monitor-grace-period` of silence every
//!   condition the kubelet owns turns `Unknown` (`NodeStatusUnknown`,
//!   "Kubelet stopped posting node status.").
//! - Ready=False brings `node.kubernetes.io/not-ready`, Ready=Unknown
//!   `node.kubernetes.io/unreachable`, each as a NoExecute taint (with
//!   `timeAdded`) and a NoSchedule taint; pressure conditions and
//!   `spec.unschedulable` bring their NoSchedule taints. Ready=True removes them.
//! - NoExecute taints depend on the zones' disruption states, as in
//!   Kubernetes: when every node of every zone is not Ready none is tainted
//!   (and existing ones are lifted), and a partially disrupted zone (more than
//!   two and at least 55 % of its nodes not Ready) gets no new ones. The
//!   per-zone eviction rate limits (`--node-eviction-rate`) are not modelled.
//! - Pods on a node that is not Ready get their Ready condition set to False.
//! - Pods that do not tolerate a NoExecute taint of their node are deleted at
//!   once; pods that tolerate it for `tolerationSeconds` are deleted when the
//!   shortest of those has passed since the taint was added; pods that
//!   tolerate it without a limit stay. Before the (graceful) delete the pod
//!   gets the `DisruptionTarget` condition (`DeletionByTaintManager`) and a
//!   `TaintManagerEviction` event. A dead node's kubelet never confirms, so
//!   the pod stays Terminating: Kubernetes since 1.27 no longer sets
//!   `status.reason: NodeLost` (that came only with the removed non-taint
//!   eviction path), so kubectl shows it as `Terminating` with READY 0/1.

use crate::cache::Cache;
use crate::events::{Involved, record};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;

/// The taint of a node whose Ready condition is False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint of a node whose Ready condition is Unknown.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The NoSchedule taint of a cordoned node.
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// The taint an administrator puts on a node that is out of service.
pub const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// The conditions the kubelet owns and this controller turns Unknown.
pub const KUBELET_CONDITIONS: [&str; 4] =
    ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The NoSchedule taint each condition status brings (TaintNodesByCondition).
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", NOT_READY),
    ("Ready", "Unknown", UNREACHABLE),
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
];

const COMPONENT: &str = "node-controller";

/// What the controller changes on one node.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NodePlan {
    /// The node's new `status.conditions`, when they change.
    pub conditions: Option<Vec<NodeCondition>>,
    /// The node's new `spec.taints`, when they change.
    pub taints: Option<Vec<Taint>>,
}

impl NodePlan {
    /// The node as it is once the plan is carried out.
    pub fn applied(&self, node: &Node) -> Node {
        let mut n = node.clone();
        if let Some(c) = &self.conditions {
            n.status.get_or_insert_with(Default::default).conditions = Some(c.clone());
        }
        if let Some(t) = &self.taints {
            n.spec.get_or_insert_with(Default::default).taints = Some(t.clone());
        }
        n
    }
}

/// A node's condition of `type_`.
pub fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
}

/// When the node was last heard from: its Lease's renewTime or its Ready
/// heartbeat, whichever is newer; never earlier than `since` (the node's
/// creation, or the controller's start, so a restart gives every node a fresh grace).
pub fn last_heard(node: &Node, lease: Option<&Lease>, since: Timestamp) -> Timestamp {
    let mut t = since;
    if let Some(c) = node.metadata.creation_timestamp.as_ref() {
        t = t.max(c.0);
    }
    if let Some(h) = condition(node, "Ready").and_then(|c| c.last_heartbeat_time.as_ref()) {
        t = t.max(h.0);
    }
    if let Some(r) = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
    {
        t = t.max(r.0);
    }
    t
}

/// The disruption state of a zone (`ComputeZoneState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    /// Some or no nodes are not Ready.
    Normal,
    /// More than two nodes and at least 55 % of them are not Ready.
    PartialDisruption,
    /// No node is Ready.
    FullDisruption,
}

/// What the NoExecute taints of a node may do, by the disruption state of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoExecute {
    /// Follow the Ready condition.
    Follow,
    /// The zone is partially disrupted: no new NoExecute taints (Kubernetes
    /// evicts at rate 0 in zones of up to 50 nodes); a Ready node still loses them.
    Hold,
    /// Every zone is fully disrupted, which points at the control plane's own
    /// network rather than the nodes: no node carries them.
    Lift,
}

/// The share of not-Ready nodes from which a zone counts as partially disrupted
/// (`--unhealthy-zone-threshold`).
pub const UNHEALTHY_ZONE_THRESHOLD: f64 = 0.55;

/// A node's zone key, from its region and zone labels (`GetZoneKey`).
pub fn zone_of(node: &Node) -> String {
    let label = |a: &str, b: &str| {
        let ls = node.metadata.labels.as_ref();
        ls.and_then(|l| l.get(a).or_else(|| l.get(b)))
            .cloned()
            .unwrap_or_default()
    };
    let region = label(
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/region",
    );
    let zone = label(
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/zone",
    );
    format!("{region}:\x00:{zone}")
}

/// A zone's state from whether each of its nodes is Ready.
pub fn zone_state(ready: &[bool]) -> ZoneState {
    let up = ready.iter().filter(|r| **r).count();
    let down = ready.len() - up;
    if up == 0 && down > 0 {
        ZoneState::FullDisruption
    } else if down > 2 && down as f64 / ready.len() as f64 >= UNHEALTHY_ZONE_THRESHOLD {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// Plans every node of the cluster: conditions first, then the zones'
/// disruption states from them, then taints. Returns the plans by node name.
pub fn plan_cluster(
    nodes: &[&Node],
    leases: &HashMap<String, &Lease>,
    now: Timestamp,
    grace: Duration,
    started: Timestamp,
) -> HashMap<String, NodePlan> {
    let name = |n: &Node| n.metadata.name.clone().unwrap_or_default();
    let conditions: Vec<NodePlan> = nodes
        .iter()
        .map(|n| {
            plan_node(
                n,
                leases.get(&name(n)).copied(),
                now,
                grace,
                started,
                NoExecute::Hold,
            )
        })
        .map(|p| NodePlan {
            conditions: p.conditions,
            taints: None,
        })
        .collect();
    let mut zones: HashMap<String, Vec<bool>> = HashMap::new();
    for (n, p) in nodes.iter().zip(&conditions) {
        let after = p.applied(n);
        zones
            .entry(zone_of(n))
            .or_default()
            .push(condition(&after, "Ready").is_some_and(|c| c.status == "True"));
    }
    let states: HashMap<&String, ZoneState> =
        zones.iter().map(|(z, r)| (z, zone_state(r))).collect();
    let all_down = !states.is_empty() && states.values().all(|s| *s == ZoneState::FullDisruption);
    nodes
        .iter()
        .zip(conditions)
        .map(|(n, p)| {
            let mode = if all_down {
                NoExecute::Lift
            } else if states.get(&zone_of(n)) == Some(&ZoneState::PartialDisruption) {
                NoExecute::Hold
            } else {
                NoExecute::Follow
            };
            let after = p.applied(n);
            let current: Vec<Taint> = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            let wanted = desired_taints(&after, &current, now, mode);
            let taints = (wanted != current).then_some(wanted);
            (name(n), NodePlan { taints, ..p })
        })
        .collect()
}

/// Decides a node's conditions and taints: `grace` after it was last heard
/// from, its kubelet conditions turn Unknown; its taints follow its
/// conditions, its NoExecute taints as `mode` allows.
pub fn plan_node(
    node: &Node,
    lease: Option<&Lease>,
    now: Timestamp,
    grace: Duration,
    started: Timestamp,
    mode: NoExecute,
) -> NodePlan {
    let mut plan = NodePlan::default();
    let heard = last_heard(node, lease, started);
    let silent = now.duration_since(heard).as_secs_f64() > grace.as_secs_f64();
    if silent {
        let mut conditions = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let mut changed = false;
        for ty in KUBELET_CONDITIONS {
            match conditions.iter_mut().find(|c| c.type_ == ty) {
                Some(c) if c.status != "Unknown" => {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(Time(now));
                    changed = true;
                }
                Some(_) => {}
                None => {
                    conditions.push(NodeCondition {
                        type_: ty.into(),
                        status: "Unknown".into(),
                        reason: Some("NodeStatusNeverUpdated".into()),
                        message: Some("Kubelet never posted node status.".into()),
                        last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                        last_transition_time: Some(Time(now)),
                    });
                    changed = true;
                }
            }
        }
        if changed {
            plan.conditions = Some(conditions);
        }
    }
    let after = plan.applied(node);
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let wanted = desired_taints(&after, &current, now, mode);
    if wanted != current {
        plan.taints = Some(wanted);
    }
    plan
}

fn managed(t: &Taint) -> bool {
    match t.effect.as_str() {
        "NoExecute" => t.key == NOT_READY || t.key == UNREACHABLE,
        "NoSchedule" => {
            t.key == UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == t.key)
        }
        _ => false,
    }
}

/// The node's taints: the ones this controller does not manage as they are,
/// the managed ones its conditions call for (kept with their `timeAdded`, or added now).
fn desired_taints(node: &Node, current: &[Taint], now: Timestamp, mode: NoExecute) -> Vec<Taint> {
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    let ready = condition(node, "Ready").map(|c| c.status.as_str());
    match (mode, ready) {
        (NoExecute::Follow, Some("False")) => wanted.push((NOT_READY, "NoExecute")),
        (NoExecute::Follow, Some("Unknown")) => wanted.push((UNREACHABLE, "NoExecute")),
        (NoExecute::Hold, Some(r)) if r != "True" => {
            for t in current.iter().filter(|t| t.effect == "NoExecute") {
                if t.key == NOT_READY || t.key == UNREACHABLE {
                    wanted.push((t.key.as_str(), "NoExecute"));
                }
            }
        }
        _ => {}
    }
    for (ty, status, key) in CONDITION_TAINTS {
        if condition(node, ty).is_some_and(|c| c.status == status) {
            wanted.push((key, "NoSchedule"));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.push((UNSCHEDULABLE, "NoSchedule"));
    }
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !managed(t) || wanted.contains(&(t.key.as_str(), t.effect.as_str())))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        if !out.iter().any(|t| t.key == key && t.effect == effect) {
            out.push(Taint {
                key: key.into(),
                effect: effect.into(),
                time_added: Some(Time(now)),
                value: None,
            });
        }
    }
    out
}

/// When the taint manager deletes a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Not at all: no NoExecute taint, or every one tolerated forever.
    Never,
    /// Now.
    Now,
    /// At this time, when its shortest `tolerationSeconds` runs out.
    At(Timestamp),
}

/// What to do to one pod of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodPlan {
    /// Set its Ready condition to False (the node is not Ready).
    pub mark_not_ready: bool,
    /// When to delete it for its node's NoExecute taints.
    pub eviction: Eviction,
}

pub use skiff_api::node_match::tolerates;

/// The taint manager's decision for a pod on a node with these taints.
pub fn taint_eviction(pod: &Pod, taints: &[Taint], now: Timestamp) -> Eviction {
    let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == "NoExecute").collect();
    if no_execute.is_empty() {
        return Eviction::Never;
    }
    let tolerations: &[Toleration] = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    let mut used: Vec<&Toleration> = Vec::new();
    for taint in &no_execute {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Eviction::Now;
        }
        used.extend(matching);
    }
    let Some(seconds) = used.iter().filter_map(|t| t.toleration_seconds).min() else {
        return Eviction::Never;
    };
    if seconds <= 0 {
        return Eviction::Now;
    }
    let since = no_execute
        .iter()
        .filter_map(|t| t.time_added.as_ref().map(|t| t.0))
        .min()
        .unwrap_or(now);
    let at = since + jiff::SignedDuration::from_secs(seconds);
    if at <= now {
        Eviction::Now
    } else {
        Eviction::At(at)
    }
}

fn pod_ready(pod: &Pod) -> Option<&PodCondition> {
    pod_condition(pod, "Ready")
}

/// Decides for a pod bound to `node` (as the node is once its plan is carried out).
pub fn plan_pod(pod: &Pod, node: &Node, now: Timestamp) -> PodPlan {
    let node_ready = condition(node, "Ready").map(|c| c.status.as_str());
    let mark_not_ready = node_ready.is_some_and(|s| s != "True")
        && pod_ready(pod).is_some_and(|c| c.status != "False");
    let eviction = if pod.metadata.deletion_timestamp.is_some() {
        Eviction::Never
    } else {
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or(&[]);
        taint_eviction(pod, taints, now)
    };
    PodPlan {
        mark_not_ready,
        eviction,
    }
}

/// Runs the controller until `shutdown` turns true.
/// (With a pod watch of its own; `skiff server` shares one through [`run_with_pods`].)
pub async fn run(client: kube::Client, config: crate::Config, shutdown: watch::Receiver<bool>) {
    run_with_pods(
        client.clone(),
        config,
        crate::informer::own_pods(client.clone()),
        shutdown,
    )
    .await
}

/// Runs the controller on a shared pod stream ([`crate::informer`]) until `shutdown` turns true.
pub async fn run_with_pods(
    client: kube::Client,
    config: crate::Config,
    pods_in: crate::informer::PodStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let started = Timestamp::now();
    let mut nodes_w = watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).boxed();
    let mut pods_w = pods_in;
    let mut leases_w = watcher(
        Api::<Lease>::namespaced(client.clone(), "kube-node-lease"),
        watcher::Config::default(),
    )
    .boxed();
    let mut nodes: Cache<Node> = Cache::new();
    let mut pods: Cache<Pod> = Cache::new();
    let mut leases: Cache<Lease> = Cache::new();
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            ev = nodes_w.next() => match ev {
                Some(Ok(e)) => { nodes.apply(e); }
                Some(Err(e)) => { tracing::debug!("node lifecycle: node watch: {e}"); }
                None => return,
            },
            ev = pods_w.next() => match ev {
                Some(Ok(e)) => { pods.apply(e); }
                Some(Err(e)) => { tracing::debug!("node lifecycle: pod watch: {e}"); }
                None => return,
            },
            ev = leases_w.next() => match ev {
                Some(Ok(e)) => { leases.apply(e); }
                Some(Err(e)) => { tracing::debug!("node lifecycle: lease watch: {e}"); }
                None => return,
            },
            _ = tokio::time::sleep_until(next) => {
                let mut wake = tokio::time::Instant::now() + config.node_monitor_period;
                if nodes.synced && pods.synced && leases.synced {
                    let now = Timestamp::now();
                    if let Some(at) = monitor(&client, &config, &nodes, &pods, &leases, now, started).await {
                        let ms = at.duration_since(now).as_millis().max(10) as u64;
                        wake = wake.min(tokio::time::Instant::now() + Duration::from_millis(ms));
                    }
                } else {
                    wake = tokio::time::Instant::now() + Duration::from_millis(100);
                }
                next = wake;
            }
        }
    }
}

/// One pass over every node; returns the earliest pending eviction time.
async fn monitor(
    client: &kube::Client,
    config: &crate::Config,
    nodes: &Cache<Node>,
    pods: &Cache<Pod>,
    leases: &Cache<Lease>,
    now: Timestamp,
    started: Timestamp,
) -> Option<Timestamp> {
    let mut by_node: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for p in pods.values() {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            by_node.entry(n).or_default().push(p);
        }
    }
    let node_api: Api<Node> = Api::all(client.clone());
    let mut earliest: Option<Timestamp> = None;
    let all: Vec<&Node> = nodes.values().collect();
    let by_lease: HashMap<String, &Lease> = leases
        .values()
        .map(|l| (l.metadata.name.clone().unwrap_or_default(), l))
        .collect();
    let mut plans = plan_cluster(
        &all,
        &by_lease,
        now,
        config.node_monitor_grace_period,
        started,
    );
    for node in all {
        let name = node.metadata.name.clone().unwrap_or_default();
        let plan = plans.remove(&name).unwrap_or_default();
        let mut current = node.clone();
        if let Some(conditions) = &plan.conditions {
            let mut n = node.clone();
            n.status.get_or_insert_with(Default::default).conditions = Some(conditions.clone());
            match node_api
                .replace_status(&name, &PostParams::default(), &n)
                .await
            {
                Ok(updated) => {
                    let was = condition(node, "Ready").map(|c| c.status.clone());
                    if was.as_deref() != Some("Unknown") {
                        let about = Involved {
                            kind: "Node",
                            api_version: "v1",
                            namespace: "",
                            name: &name,
                            uid: node.metadata.uid.as_deref(),
                        };
                        record(
                            client,
                            COMPONENT,
                            &about,
                            "Normal",
                            "NodeNotReady",
                            &format!("Node {name} status is now: NodeNotReady"),
                        )
                        .await;
                    }
                    current = updated;
                }
                Err(e) => {
                    tracing::debug!("node lifecycle: status of node {name}: {e}");
                    continue;
                }
            }
        }
        if let Some(taints) = &plan.taints {
            let patch = json!({"metadata": {"resourceVersion": current.metadata.resource_version},
                               "spec": {"taints": taints}});
            match node_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(updated) => current = updated,
                Err(e) => {
                    tracing::debug!("node lifecycle: taints of node {name}: {e}");
                    continue;
                }
            }
        }
        for pod in by_node.get(name.as_str()).map(Vec::as_slice).unwrap_or(&[]) {
            let pp = plan_pod(pod, &current, now);
            if pp.mark_not_ready {
                mark_not_ready(client, pod, now).await;
            }
            match pp.eviction {
                Eviction::Never => {}
                Eviction::At(at) => earliest = Some(earliest.map_or(at, |e| e.min(at))),
                Eviction::Now => evict(client, pod, now).await,
            }
        }
    }
    earliest
}

/// The condition as it is once set on the pod: the transition time moves only
/// when the status changes (`UpdatePodCondition`). None when nothing changes.
pub fn updated_condition(pod: &Pod, cond: PodCondition) -> Option<PodCondition> {
    match pod_condition(pod, &cond.type_) {
        Some(old) => {
            let new = PodCondition {
                last_transition_time: if old.status == cond.status {
                    old.last_transition_time.clone()
                } else {
                    cond.last_transition_time.clone()
                },
                last_probe_time: old.last_probe_time.clone(),
                ..cond
            };
            (new != *old).then_some(new)
        }
        None => Some(cond),
    }
}

fn pod_condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
}

/// Sets one pod condition with a strategic merge patch of pods/status
/// (conditions merge by type), as `PatchPodStatus` does.
pub(crate) async fn patch_condition(client: &kube::Client, pod: &Pod, cond: PodCondition) -> bool {
    let Some(cond) = updated_condition(pod, cond) else {
        return true;
    };
    let api: Api<Pod> = Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let patch = json!({"metadata": {"uid": pod.metadata.uid}, "status": {"conditions": [cond]}});
    match api
        .patch_status(
            pod.metadata.name.as_deref().unwrap_or(""),
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
    {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(
                "node lifecycle: conditions of pod {}: {e}",
                crate::key_of(&pod.metadata)
            );
            false
        }
    }
}

fn pod_ref(pod: &Pod) -> Involved<'_> {
    Involved {
        kind: "Pod",
        api_version: "v1",
        namespace: pod.metadata.namespace.as_deref().unwrap_or(""),
        name: pod.metadata.name.as_deref().unwrap_or(""),
        uid: pod.metadata.uid.as_deref(),
    }
}

/// `MarkPodsNotReady` for one pod: Ready=False and a `NodeNotReady` event.
async fn mark_not_ready(client: &kube::Client, pod: &Pod, now: Timestamp) {
    let Some(ready) = pod_ready(pod) else { return };
    let cond = PodCondition {
        status: "False".into(),
        last_transition_time: Some(Time(now)),
        ..ready.clone()
    };
    if patch_condition(client, pod, cond).await {
        record(
            client,
            COMPONENT,
            &pod_ref(pod),
            "Warning",
            "NodeNotReady",
            "Node is not ready",
        )
        .await;
    }
}

/// The taint manager's delete: the `DisruptionTarget` condition, an event, a graceful delete.
async fn evict(client: &kube::Client, pod: &Pod, now: Timestamp) {
    let key = crate::key_of(&pod.metadata);
    record(
        client,
        "taint-eviction-controller",
        &pod_ref(pod),
        "Normal",
        "TaintManagerEviction",
        &format!("Marking for deletion Pod {key}"),
    )
    .await;
    let cond = PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByTaintManager".into()),
        message: Some("Taint manager: deleting due to NoExecute taint".into()),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    };
    patch_condition(client, pod, cond).await;
    let api: Api<Pod> = Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    if let Err(e) = api
        .delete(
            pod.metadata.name.as_deref().unwrap_or(""),
            &DeleteParams::default(),
        )
        .await
    {
        tracing::debug!("node lifecycle: deleting pod {key}: {e}");
    }
}

#[cfg(test)]
mod tests;
