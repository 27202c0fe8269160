//! One scheduling attempt: filter every node, score the feasible ones, pick
//! the best, or explain the failure in Kubernetes' `FitError` words.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Pod;

use crate::filter::{Code, Cycle, Rejection};
use crate::node_info::Snapshot;
use crate::score::score;

/// Why no node fits a pod; `Display` gives the FailedScheduling message,
/// e.g. `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) were unschedulable.
/// preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.`
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FitError {
    /// How many nodes the cluster has.
    pub num_all_nodes: usize,
    /// Each rejected node's rejection.
    pub node_rejections: BTreeMap<String, Rejection>,
    /// A PreFilter failure that rejected every node at once.
    pub pre_filter_msg: String,
    /// What preemption said (starts with `preemption: `), empty if nothing.
    pub post_filter_msg: String,
}

/// The reasons histogram: `count reason`, sorted as strings.
fn histogram<'a>(reasons: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons {
        *counts.entry(r.as_str()).or_default() += 1;
    }
    let mut out: Vec<String> = counts
        .into_iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    out.sort();
    out
}

fn no_node_message(n: usize, pre_filter: &str, rejections: &BTreeMap<String, Rejection>) -> String {
    let mut msg = format!("0/{n} nodes are available:");
    if !pre_filter.is_empty() {
        msg.push_str(&format!(" {pre_filter}."));
    } else {
        let h = histogram(rejections.values().flat_map(|r| r.reasons.iter()));
        if !h.is_empty() {
            msg.push_str(&format!(" {}.", h.join(", ")));
        }
    }
    msg
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&no_node_message(
            self.num_all_nodes,
            &self.pre_filter_msg,
            &self.node_rejections,
        ))?;
        if !self.post_filter_msg.is_empty() {
            write!(f, " {}.", self.post_filter_msg)?;
        }
        Ok(())
    }
}

/// A pod's priority (`spec.priority`, 0 when unset).
pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// What DefaultPreemption's PostFilter would report: whether removing
/// lower-priority pods makes any node fit, else the message. Victim choice
/// and eviction are left to the caller; this only explains.
fn preemption_message(
    pod: &Pod,
    snapshot: &Snapshot,
    rejections: &BTreeMap<String, Rejection>,
) -> String {
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        == Some("Never")
    {
        return "preemption: not eligible due to preemptionPolicy=Never."
            .trim_end_matches('.')
            .to_string();
    }
    let priority = pod_priority(pod);
    let mut statuses: BTreeMap<String, Rejection> = BTreeMap::new();
    for node in &snapshot.nodes {
        let name = node.name().to_string();
        let rejection = match rejections.get(&name) {
            Some(r) if r.code == Code::Unschedulable => {
                let lower = |p: &Pod| pod_priority(p) < priority;
                if !node.pods.iter().any(lower) {
                    Rejection {
                        plugin: "DefaultPreemption",
                        code: Code::UnschedulableAndUnresolvable,
                        reasons: vec!["No preemption victims found for incoming pod".into()],
                    }
                } else {
                    let trimmed = node.without_pods(lower);
                    let mut nodes = snapshot.nodes.clone();
                    if let Some(slot) = nodes.iter_mut().find(|n| n.name() == name) {
                        *slot = trimmed.clone();
                    }
                    let mut s = Snapshot::from_node_infos(nodes);
                    s.namespace_labels = snapshot.namespace_labels.clone();
                    match Cycle::new(pod, &s).filter(&trimmed) {
                        Ok(()) => return String::new(),
                        Err(r) => r,
                    }
                }
            }
            _ => Rejection {
                plugin: "DefaultPreemption",
                code: Code::UnschedulableAndUnresolvable,
                reasons: vec!["Preemption is not helpful for scheduling".into()],
            },
        };
        statuses.insert(name, rejection);
    }
    let inner = no_node_message(snapshot.nodes.len(), "", &statuses);
    format!("preemption: {}", inner.trim_end_matches('.'))
}

/// Filters every node of `snapshot` for `pod`: the feasible node names, or the FitError.
pub fn find_feasible(pod: &Pod, snapshot: &Snapshot) -> Result<Vec<String>, FitError> {
    let cycle = Cycle::new(pod, snapshot);
    let mut err = FitError {
        num_all_nodes: snapshot.nodes.len(),
        node_rejections: BTreeMap::new(),
        pre_filter_msg: String::new(),
        post_filter_msg: String::new(),
    };
    if let Some(msg) = &cycle.pre_filter_error {
        err.pre_filter_msg = msg.clone();
        return Err(err);
    }
    let mut feasible = Vec::new();
    for node in &snapshot.nodes {
        let name = node.name().to_string();
        if let Some(names) = &cycle.node_names
            && !names.contains(&name)
        {
            err.node_rejections.insert(
                name,
                Rejection {
                    plugin: "NodeAffinity",
                    code: Code::UnschedulableAndUnresolvable,
                    reasons: vec!["node(s) didn't satisfy plugin(s) [NodeAffinity]".into()],
                },
            );
            continue;
        }
        match cycle.filter(node) {
            Ok(()) => feasible.push(name),
            Err(r) => {
                err.node_rejections.insert(name, r);
            }
        }
    }
    if feasible.is_empty() {
        return Err(err);
    }
    Ok(feasible)
}

/// Schedules `pod`: the name of the best node, or why none fits. A single
/// feasible node is taken without scoring; among equal best scores `seed`
/// picks one (`seed % ties`), as the scheduler picks at random.
pub fn schedule(pod: &Pod, snapshot: &Snapshot, seed: u64) -> Result<String, FitError> {
    let feasible = match find_feasible(pod, snapshot) {
        Ok(f) => f,
        Err(mut e) => {
            if snapshot.nodes.is_empty() {
                return Err(e);
            }
            e.post_filter_msg = preemption_message(pod, snapshot, &e.node_rejections);
            return Err(e);
        }
    };
    if feasible.len() == 1 {
        return Ok(feasible[0].clone());
    }
    let infos: Vec<_> = snapshot
        .nodes
        .iter()
        .filter(|n| feasible.iter().any(|f| f == n.name()))
        .collect();
    let scores = score(pod, &infos, snapshot);
    let best = scores.iter().map(|s| s.total).max().unwrap_or(0);
    let ties: Vec<&String> = scores
        .iter()
        .filter(|s| s.total == best)
        .map(|s| &s.node)
        .collect();
    Ok(ties[(seed % ties.len() as u64) as usize].clone())
}
