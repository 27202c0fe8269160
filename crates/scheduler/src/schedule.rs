//! One scheduling attempt: filter every node, score the feasible ones, pick
//! the best, or explain the failure in Kubernetes' `FitError` words.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Pod;

use crate::filter::{Code, Cycle, Rejection};
use crate::node_info::Snapshot;
use crate::score::{score_plugins, weighted};

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

pub(crate) fn no_node_message(
    n: usize,
    pre_filter: &str,
    rejections: &BTreeMap<String, Rejection>,
) -> String {
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

/// The fewest feasible nodes the search looks for before it stops (`minFeasibleNodesToFind`).
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The lowest adaptive percentage of nodes to score (`minFeasibleNodesPercentageToFind`).
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// How many feasible nodes to find before scoring (`numFeasibleNodesToFind`)
/// with `percentageOfNodesToScore` unset: every node below 100; else
/// `50 − nodes/125` percent (at least 5 %), and never fewer than 100.
pub fn num_feasible_nodes_to_find(num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let adaptive = 50i64 - (num_all_nodes / 125) as i64;
    let percentage = adaptive.max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND as i64) as usize;
    (num_all_nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// The outcome of the feasible-node search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feasible {
    /// Indices into [`Snapshot::nodes`] of the feasible nodes found.
    pub nodes: Vec<usize>,
    /// How many nodes were looked at (feasible or not); the next search starts this far on.
    pub processed: usize,
}

fn affinity_miss() -> Rejection {
    Rejection {
        plugin: "NodeAffinity",
        code: Code::UnschedulableAndUnresolvable,
        reasons: vec!["node(s) didn't satisfy plugin(s) [NodeAffinity]".into()],
    }
}

/// Searches `snapshot` for nodes that pass every filter for `pod`, starting at
/// node `start` and going round, and stopping once `limit` are found (the
/// pod's nominated node, if it still fits, is taken alone). When none fits
/// every node has been looked at and the FitError holds each one's rejection.
pub fn find_feasible_from(
    pod: &Pod,
    snapshot: &Snapshot,
    start: usize,
    limit: usize,
) -> Result<Feasible, FitError> {
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
    // The nominated node first: if it fits, look no further.
    let nominated = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty())
        .and_then(|n| snapshot.position(n))
        .filter(|&i| {
            cycle
                .node_names
                .as_ref()
                .is_none_or(|names| names.contains(snapshot.nodes[i].name()))
        });
    if let Some(i) = nominated
        && cycle.filter_with_nominated(&snapshot.nodes[i]).is_ok()
    {
        return Ok(Feasible {
            nodes: vec![i],
            processed: 0,
        });
    }
    // NodeAffinity's PreFilter may narrow the search to named nodes.
    let candidates: Option<Vec<usize>> = cycle
        .node_names
        .as_ref()
        .map(|names| names.iter().filter_map(|n| snapshot.position(n)).collect());
    let total = candidates
        .as_ref()
        .map_or(snapshot.nodes.len(), |c| c.len());
    let mut feasible = Vec::new();
    let mut processed = 0;
    if total > 0 {
        for i in 0..total {
            let idx = match &candidates {
                Some(c) => c[(start + i) % total],
                None => (start + i) % total,
            };
            processed += 1;
            let node = &snapshot.nodes[idx];
            match cycle.filter_with_nominated(node) {
                Ok(()) => {
                    feasible.push(idx);
                    if feasible.len() >= limit {
                        break;
                    }
                }
                Err(r) => {
                    err.node_rejections.insert(node.name().to_string(), r);
                }
            }
        }
    }
    if feasible.is_empty() {
        if let Some(c) = &candidates {
            for (i, node) in snapshot.nodes.iter().enumerate() {
                if !c.contains(&i) {
                    err.node_rejections
                        .insert(node.name().to_string(), affinity_miss());
                }
            }
        }
        return Err(err);
    }
    Ok(Feasible {
        nodes: feasible,
        processed,
    })
}

/// Filters every node of `snapshot` for `pod`: the feasible node names, or the FitError.
pub fn find_feasible(pod: &Pod, snapshot: &Snapshot) -> Result<Vec<String>, FitError> {
    let f = find_feasible_from(pod, snapshot, 0, usize::MAX)?;
    Ok(f.nodes
        .iter()
        .map(|&i| snapshot.nodes[i].name().to_string())
        .collect())
}

/// Where a pod was placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The chosen node.
    pub node: String,
    /// How many nodes the feasible search looked at.
    pub processed: usize,
    /// How many feasible nodes were scored.
    pub feasible: usize,
}

/// One scheduling cycle as the loop runs it: finds up to
/// [`num_feasible_nodes_to_find`] feasible nodes from node `start` on, scores
/// them and picks the best (`seed` breaks ties). The FitError carries no
/// post-filter message: preemption is the caller's next step.
pub fn schedule_from(
    pod: &Pod,
    snapshot: &Snapshot,
    seed: u64,
    start: usize,
) -> Result<Placement, FitError> {
    let limit = num_feasible_nodes_to_find(snapshot.nodes.len());
    let found = find_feasible_from(pod, snapshot, start, limit)?;
    let processed = found.processed;
    if found.nodes.len() == 1 {
        return Ok(Placement {
            node: snapshot.nodes[found.nodes[0]].name().to_string(),
            processed,
            feasible: 1,
        });
    }
    let infos: Vec<_> = found.nodes.iter().map(|&i| &snapshot.nodes[i]).collect();
    let totals: Vec<i64> = score_plugins(pod, &infos, snapshot)
        .iter()
        .map(weighted)
        .collect();
    let best = totals.iter().copied().max().unwrap_or(0);
    let ties = totals.iter().filter(|t| **t == best).count();
    let pick = (seed % ties as u64) as usize;
    let chosen = totals
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == best)
        .nth(pick)
        .map_or(0, |(i, _)| i);
    Ok(Placement {
        node: infos[chosen].name().to_string(),
        processed,
        feasible: infos.len(),
    })
}

/// Schedules `pod`: the name of the best node, or why none fits (with what
/// preemption would say). A single feasible node is taken without scoring;
/// among equal best scores `seed` picks one (`seed % ties`), as the scheduler
/// picks at random.
pub fn schedule(pod: &Pod, snapshot: &Snapshot, seed: u64) -> Result<String, FitError> {
    match schedule_from(pod, snapshot, seed, 0) {
        Ok(p) => Ok(p.node),
        Err(mut e) => {
            if !snapshot.nodes.is_empty()
                && let Err(msg) = crate::preemption::preempt(pod, snapshot, &e, seed)
            {
                e.post_filter_msg = msg;
            }
            Err(e)
        }
    }
}
