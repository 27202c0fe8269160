//! The scheduler's decisions, without IO: it takes the watch events and
//! binding results, keeps the [`Cache`] and the [`SchedulingQueue`], and
//! turns due pods into [`Action`]s (bind, report unschedulable, preempt) that
//! [`crate::run`] carries out against the API. Time is passed in.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use crate::cache::{Cache, pod_key};
use crate::node_info::{PodInfo, finished};
use crate::preemption::{Candidate, preempt};
use crate::queue::SchedulingQueue;
use crate::schedule::{FitError, pod_priority, schedule_from};

/// The scheduler's name, as pods ask for it in `spec.schedulerName`.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// What Kubernetes reports when there is no node at all.
pub const NO_NODES: &str = "no nodes available to schedule pods";

/// Whether this scheduler should place the pod.
pub fn wants(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
        .is_empty()
        && spec
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or(DEFAULT_SCHEDULER)
            == DEFAULT_SCHEDULER
        && pod.metadata.deletion_timestamp.is_none()
        && !finished(pod)
}

/// A node as the scheduler sees it: one whose Ready condition is not True
/// carries the `node.kubernetes.io/not-ready` NoSchedule taint, as
/// Kubernetes' node lifecycle controller adds it (TaintNodesByCondition).
pub fn effective_node(node: &Node) -> Node {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status == "True")
        .unwrap_or(false);
    let mut n = node.clone();
    if !ready {
        let spec = n.spec.get_or_insert_with(Default::default);
        let taints = spec.taints.get_or_insert_with(Vec::new);
        if !taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/not-ready" && t.effect == "NoSchedule")
        {
            taints.push(Taint {
                key: "node.kubernetes.io/not-ready".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
        }
    }
    n
}

/// What the loop must do against the API after a scheduling cycle.
#[derive(Debug, Clone)]
pub enum Action {
    /// Bind the pod to the node (it is already assumed there); report the
    /// outcome with [`Scheduler::on_bound`].
    Bind {
        /// The pod.
        pod: Arc<Pod>,
        /// The chosen node.
        node: String,
        /// VolumeBinding's PreBind: the pod's unbound `WaitForFirstConsumer`
        /// claims, to annotate with `volume.kubernetes.io/selected-node: <node>`
        /// (or to pre-bind to a static volume) and wait for until they are
        /// bound, before the pod is bound.
        volumes: crate::volume_binding::PreBind,
    },
    /// No node fits and preemption cannot help: set the PodScheduled=False
    /// condition and record a FailedScheduling event (only when the message
    /// changed since the last report).
    Unschedulable {
        /// The pod.
        pod: Arc<Pod>,
        /// The FitError message.
        message: String,
    },
    /// No node fits but preempting victims on `node` makes room: set the
    /// pod's `status.nominatedNodeName` (with the PodScheduled=False condition
    /// and a FailedScheduling event), mark each victim with DisruptionTarget,
    /// delete it and record `Preempted` on it, and clear the nomination of
    /// lower-priority pods nominated to the node.
    Preempt {
        /// The preemptor.
        pod: Arc<Pod>,
        /// The nominated node.
        node: String,
        /// The pods to delete.
        victims: Vec<Arc<Pod>>,
        /// Lower-priority pods that were nominated to the node.
        clear_nominated: Vec<Arc<Pod>>,
        /// The FitError message (without a preemption part).
        message: String,
    },
}

/// The scheduler's state between events.
#[derive(Debug, Default)]
pub struct Scheduler {
    cache: Cache,
    queue: SchedulingQueue,
    /// Unbound pods this scheduler should place, by key.
    pending: HashMap<String, Arc<Pod>>,
    /// The last FailedScheduling message reported per pod.
    reported: HashMap<String, String>,
    seed: u64,
    next_start: usize,
}

fn same_for_scheduling(a: &Pod, b: &Pod) -> bool {
    a.spec == b.spec
        && a.metadata.labels == b.metadata.labels
        && a.status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_ref())
            == b.status
                .as_ref()
                .and_then(|s| s.nominated_node_name.as_ref())
}

impl Scheduler {
    /// A scheduler with nothing known yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cache (nodes, pods on them, nominations).
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Where the next feasible-node search starts (round-robin over the nodes).
    pub fn next_start(&self) -> usize {
        self.next_start
    }

    /// The queue.
    pub fn queue(&self) -> &SchedulingQueue {
        &self.queue
    }

    /// The PodDisruptionBudgets changed (all of them, as watched).
    pub fn on_budgets(&mut self, budgets: Vec<crate::preemption::Budget>) {
        self.cache.set_budgets(budgets);
    }

    /// A storage object changed (`change` updates the claims, volumes or
    /// classes): unschedulable pods are retried, as a claim getting bound or a
    /// volume appearing may let them fit.
    pub fn on_storage(
        &mut self,
        change: impl FnOnce(&mut crate::volume_binding::Volumes),
        now: Timestamp,
    ) {
        change(self.cache.volumes_mut());
        self.queue.move_all_to_active_or_backoff(now);
    }

    /// A pod was added or changed.
    pub fn on_pod(&mut self, pod: Pod, now: Timestamp) {
        let key = pod_key(&pod);
        let pod = Arc::new(pod);
        let bound = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        if finished(&pod) {
            let held = self.cache.node_of(&key).is_some();
            self.cache.remove_pod(&key);
            self.forget_pending(&key);
            if held {
                // Freed capacity may let others fit.
                self.queue.move_all_to_active_or_backoff(now);
            }
            return;
        }
        if bound {
            self.cache.update_pod(pod);
            self.forget_pending(&key);
            return;
        }
        if self.cache.is_assumed(&key) {
            // Our binding is in flight: the pod stays assumed where it was placed.
            self.pending.insert(key, pod);
            return;
        }
        self.cache.update_pod(pod.clone());
        if !wants(&pod) {
            self.forget_pending(&key);
            return;
        }
        let unchanged = self
            .pending
            .get(&key)
            .is_some_and(|old| same_for_scheduling(old, &pod));
        let priority = pod_priority(&pod);
        self.pending.insert(key.clone(), pod);
        // A status-only update (such as our own condition patch) does not retry the pod.
        if !(unchanged && self.queue.contains(&key)) {
            self.queue.add(&key, priority, now);
        }
    }

    fn forget_pending(&mut self, key: &str) {
        self.pending.remove(key);
        self.queue.delete(key);
        self.reported.remove(key);
    }

    /// A pod was deleted.
    pub fn on_pod_deleted(&mut self, pod: &Pod, now: Timestamp) {
        let key = pod_key(pod);
        self.cache.remove_pod(&key);
        self.forget_pending(&key);
        self.queue.move_all_to_active_or_backoff(now);
    }

    /// A node was added or changed. Unschedulable pods are retried when the
    /// node is new or changed in what filters look at.
    pub fn on_node(&mut self, node: &Node, now: Timestamp) {
        let node = effective_node(node);
        let changed = self
            .cache
            .snapshot()
            .get(node.metadata.name.as_deref().unwrap_or(""))
            .is_none_or(|old| {
                old.node.spec != node.spec
                    || old.node.metadata.labels != node.metadata.labels
                    || old
                        .node
                        .status
                        .as_ref()
                        .and_then(|s| s.allocatable.as_ref())
                        != node.status.as_ref().and_then(|s| s.allocatable.as_ref())
            });
        self.cache.add_node(node);
        if changed {
            self.queue.move_all_to_active_or_backoff(now);
        }
    }

    /// A re-list of pods ended: pods known but not listed were deleted while
    /// the watch was down, and are forgotten as if deleted.
    pub fn resync_pods(&mut self, listed: &HashSet<String>, now: Timestamp) {
        let gone: Vec<String> = self
            .cache
            .pod_keys()
            .chain(self.pending.keys().map(String::as_str))
            .filter(|k| !listed.contains(*k))
            .map(str::to_string)
            .collect();
        for k in &gone {
            self.cache.remove_pod(k);
            self.forget_pending(k);
        }
        if !gone.is_empty() {
            self.queue.move_all_to_active_or_backoff(now);
        }
    }

    /// A re-list of nodes ended: nodes not listed are removed.
    pub fn resync_nodes(&mut self, listed: &HashSet<String>) {
        let gone: Vec<String> = self
            .cache
            .snapshot()
            .nodes
            .iter()
            .map(|n| n.name().to_string())
            .filter(|n| !listed.contains(n))
            .collect();
        for n in gone {
            self.cache.remove_node(&n);
        }
    }

    /// A node was deleted.
    pub fn on_node_deleted(&mut self, name: &str) {
        self.cache.remove_node(name);
    }

    /// A binding came back: done, or un-assumed and backing off (the room it
    /// held may let unschedulable pods fit, so they are retried).
    pub fn on_bound(&mut self, key: &str, ok: bool, now: Timestamp) {
        if ok {
            self.queue.done(key);
        } else {
            self.cache.forget(key);
            self.queue.backoff(key, now);
            self.queue.move_all_to_active_or_backoff(now);
        }
    }

    /// The earliest time a backing-off pod becomes due.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        self.queue.next_backoff_expiry()
    }

    /// Runs scheduling cycles until one produces an action or nothing is due.
    pub fn schedule_next(&mut self, now: Timestamp) -> Option<Action> {
        loop {
            let qp = self.queue.pop(now)?;
            let Some(pod) = self.pending.get(&qp.key).cloned().filter(|p| wants(p)) else {
                self.queue.done(&qp.key);
                continue;
            };
            if let Some(action) = self.schedule_one(&qp.key, pod, now) {
                return Some(action);
            }
        }
    }

    fn schedule_one(&mut self, key: &str, pod: Arc<Pod>, now: Timestamp) -> Option<Action> {
        let snapshot = self.cache.snapshot();
        let n = snapshot.nodes.len();
        if n == 0 {
            return self.unschedulable(key, pod, NO_NODES.to_string(), now);
        }
        self.seed = self.seed.wrapping_add(1);
        match schedule_from(&pod, snapshot, self.seed, self.next_start) {
            Ok(placed) => {
                self.next_start = (self.next_start + placed.processed) % n;
                self.reported.remove(key);
                let volumes = snapshot
                    .get(&placed.node)
                    .map(|n| crate::volume_binding::pre_bind(&pod, &snapshot.volumes, n))
                    .unwrap_or_default();
                self.cache.assume(pod.clone(), &placed.node);
                Some(Action::Bind {
                    pod,
                    node: placed.node,
                    volumes,
                })
            }
            Err(mut fit) => {
                // Every node was looked at: the next search starts where this one did.
                match preempt(&pod, snapshot, &fit, self.seed) {
                    Ok(candidate) => Some(self.nominate(key, pod, candidate, &fit, now)),
                    Err(msg) => {
                        fit.post_filter_msg = msg;
                        self.unschedulable(key, pod, fit.to_string(), now)
                    }
                }
            }
        }
    }

    fn unschedulable(
        &mut self,
        key: &str,
        pod: Arc<Pod>,
        message: String,
        now: Timestamp,
    ) -> Option<Action> {
        self.queue.unschedulable(key, now);
        if self.reported.get(key) == Some(&message) {
            return None;
        }
        self.reported.insert(key.to_string(), message.clone());
        Some(Action::Unschedulable { pod, message })
    }

    fn nominate(
        &mut self,
        key: &str,
        pod: Arc<Pod>,
        c: Candidate,
        fit: &FitError,
        now: Timestamp,
    ) -> Action {
        let priority = pod_priority(&pod);
        let clear_nominated: Vec<Arc<Pod>> = self
            .cache
            .snapshot()
            .nominated
            .get(&c.node)
            .into_iter()
            .flatten()
            .filter(|p| p.priority < priority)
            .map(|p| p.pod.clone())
            .collect();
        for p in &clear_nominated {
            self.cache.clear_nomination(&pod_key(p));
        }
        let mut nominated = (*pod).clone();
        nominated
            .status
            .get_or_insert_with(Default::default)
            .nominated_node_name = Some(c.node.clone());
        let nominated = Arc::new(nominated);
        self.cache
            .nominate(PodInfo::new(nominated.clone()), &c.node);
        self.pending.insert(key.to_string(), nominated);
        self.queue.unschedulable(key, now);
        let message = fit.to_string();
        self.reported.insert(key.to_string(), message.clone());
        Action::Preempt {
            pod,
            node: c.node,
            victims: c.victims.into_iter().map(|v| v.pod).collect(),
            clear_nominated,
            message,
        }
    }
}
