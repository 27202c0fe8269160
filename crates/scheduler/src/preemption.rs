//! DefaultPreemption's PostFilter: when no node fits a pod, find nodes where
//! taking off pods of lower priority makes room, keep as few and as
//! unimportant victims as possible, and pick one node by Kubernetes'
//! candidate ordering. PodDisruptionBudgets weigh in as in Kubernetes:
//! victims a budget protects are reprieved first, and a node whose victims
//! violate fewer budgets is preferred.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use skiff_api::selector::LabelSelector;

use crate::filter::{Code, Cycle, Rejection};
use crate::node_info::{NodeInfo, PodInfo, Snapshot};
use crate::schedule::{FitError, no_node_message, pod_priority};

/// The share of potential nodes the dry run tries (`minCandidateNodesPercentage`).
pub const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
/// The fewest candidates the dry run looks for (`minCandidateNodesAbsolute`).
pub const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

/// The reason when a node has no pod of lower priority.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// The reason for nodes that removing pods cannot help.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// `status.conditions[].reason` of DisruptionTarget on a victim.
pub const REASON_PREEMPTION_BY_SCHEDULER: &str = "PreemptionByScheduler";

/// A node where the pod fits once the victims are gone.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The node's name.
    pub node: String,
    /// The pods to delete, most important first.
    pub victims: Vec<PodInfo>,
    /// How many victims a PodDisruptionBudget protects.
    pub pdb_violations: usize,
}

/// A PodDisruptionBudget as preemption weighs it.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Its namespace.
    pub namespace: String,
    /// Its selector (an empty or missing one selects nothing).
    pub selector: LabelSelector,
    /// `status.disruptionsAllowed`.
    pub allowed: i32,
    /// `status.disruptedPods`: pods the API server already let go.
    pub disrupted: HashSet<String>,
}

impl Budget {
    /// The budget of a PDB object.
    pub fn of(pdb: &PodDisruptionBudget) -> Budget {
        let selector =
            crate::matching::selector(pdb.spec.as_ref().and_then(|s| s.selector.as_ref()));
        let status = pdb.status.as_ref();
        Budget {
            namespace: pdb.metadata.namespace.clone().unwrap_or_default(),
            selector: if selector.is_empty() {
                LabelSelector::nothing()
            } else {
                selector
            },
            allowed: status.map(|s| s.disruptions_allowed).unwrap_or(0),
            disrupted: status
                .and_then(|s| s.disrupted_pods.as_ref())
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }
}

/// Splits pods (in order) into those whose eviction would violate a budget
/// and the rest, spending each budget's allowance as Kubernetes'
/// `filterPodsWithPDBViolation` does; pods already in a budget's
/// `disruptedPods` spend nothing.
pub fn split_by_budgets(pods: Vec<PodInfo>, budgets: &[Budget]) -> (Vec<PodInfo>, Vec<PodInfo>) {
    let mut allowed: Vec<i32> = budgets.iter().map(|b| b.allowed).collect();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for p in pods {
        let meta = &p.pod.metadata;
        let labels = meta.labels.as_ref();
        let mut violated = false;
        if labels.is_some_and(|l| !l.is_empty()) {
            for (i, b) in budgets.iter().enumerate() {
                if meta.namespace.as_deref().unwrap_or("") != b.namespace
                    || !b
                        .selector
                        .matches(|k| labels.and_then(|l| l.get(k)).map(String::as_str))
                    || meta.name.as_ref().is_some_and(|n| b.disrupted.contains(n))
                {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    violated = true;
                }
            }
        }
        if violated {
            violating.push(p);
        } else {
            fine.push(p);
        }
    }
    (violating, fine)
}

impl Candidate {
    /// The victims' `namespace/name` keys.
    pub fn victim_keys(&self) -> Vec<&str> {
        self.victims.iter().map(|v| v.key.as_str()).collect()
    }
}

/// The message of the DisruptionTarget condition put on a victim.
pub fn disruption_message(scheduler_name: &str) -> String {
    format!("{scheduler_name}: preempting to accommodate a higher priority pod")
}

/// The message of the `Preempted` event on a victim.
pub fn preempted_message(preemptor_uid: &str, node: &str) -> String {
    format!("Preempted by pod {preemptor_uid} on node {node}")
}

/// When a pod started (`status.startTime`); pods not started yet count as starting now, i.e. latest.
fn start_time(p: &Pod) -> Option<Timestamp> {
    p.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
}

/// Orders start times with "not started" last.
fn cmp_start(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// `MoreImportantPod`: higher priority first, then the one that started earlier.
fn more_important(a: &PodInfo, b: &PodInfo) -> Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| cmp_start(start_time(a), start_time(b)))
}

/// Whether a pod is going away because the scheduler preempted it.
pub fn terminating_by_preemption(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "DisruptionTarget"
                        && c.reason.as_deref() == Some(REASON_PREEMPTION_BY_SCHEDULER)
                })
            })
}

/// `PodEligibleToPreemptOthers`: not with `preemptionPolicy: Never`, and not
/// while a lower-priority pod preempted for it is still terminating on its
/// nominated node (unless that node cannot take it any more at all).
pub fn eligible(pod: &Pod, snapshot: &Snapshot, err: &FitError) -> Result<(), &'static str> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err("not eligible due to preemptionPolicy=Never.");
    }
    let nominated = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty());
    if let Some(n) = nominated {
        if err
            .node_rejections
            .get(n)
            .is_some_and(|r| r.code == Code::UnschedulableAndUnresolvable)
        {
            return Ok(());
        }
        let priority = pod_priority(pod);
        if let Some(node) = snapshot.get(n)
            && node
                .pods
                .iter()
                .any(|p| p.priority < priority && terminating_by_preemption(p))
        {
            return Err("not eligible due to a terminating pod on the nominated node.");
        }
    }
    Ok(())
}

fn rejection(reason: &str) -> Rejection {
    Rejection {
        plugin: "DefaultPreemption",
        code: Code::UnschedulableAndUnresolvable,
        reasons: vec![reason.to_string()],
    }
}

/// `SelectVictimsOnNode`: takes every lower-priority pod off the node; if the
/// pod then fits, gives back as many as possible (those a budget protects
/// first, then the rest, most important first within each) and returns the
/// rest as victims with how many of them violate a budget. Otherwise the reason.
pub fn select_victims_on_node(
    pod: &Pod,
    snapshot: &Snapshot,
    cycle: &Cycle<'_>,
    node: &NodeInfo,
) -> Result<(Vec<PodInfo>, usize), Rejection> {
    let priority = pod_priority(pod);
    let mut potential: Vec<PodInfo> = node
        .pods
        .iter()
        .filter(|p| p.priority < priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(rejection(NO_VICTIMS));
    }
    let fits = |n: &NodeInfo| -> Result<(), Rejection> {
        if cycle.depends_on_other_pods() {
            Cycle::with_override(pod, snapshot, Some(n)).filter_with_nominated(n)
        } else {
            cycle.filter_with_nominated(n)
        }
    };
    let mut trimmed = node.without_pods(|p| p.priority < priority);
    fits(&trimmed)?;
    potential.sort_by(more_important);
    let (violating, fine) = split_by_budgets(potential, &snapshot.budgets);
    let mut victims = Vec::new();
    let mut violations = 0;
    for (p, protected) in violating
        .into_iter()
        .map(|p| (p, true))
        .chain(fine.into_iter().map(|p| (p, false)))
    {
        let key = p.key.clone();
        trimmed.add_pod_info(p);
        if fits(&trimmed).is_err()
            && let Some(v) = trimmed.remove_pod(&key)
        {
            victims.push(v);
            violations += usize::from(protected);
        }
    }
    victims.sort_by(more_important);
    Ok((victims, violations))
}

fn sum_priorities(c: &Candidate) -> i64 {
    c.victims
        .iter()
        .map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1)
        .sum()
}

/// The earliest start among the victims of the highest priority.
fn earliest_start_of_highest(c: &Candidate) -> Option<Timestamp> {
    let highest = c.victims.first()?.priority;
    c.victims
        .iter()
        .filter(|v| v.priority == highest)
        .map(|v| start_time(v))
        .min_by(|a, b| cmp_start(*a, *b))
        .flatten()
}

/// `pickOneNodeForPreemption`: a node needing no victims at once; else the
/// fewest PDB violations, then the lowest highest-priority victim, the lowest
/// sum of priorities, the fewest victims, and the latest start of the
/// highest-priority victims; the first candidate on a full tie.
pub fn pick_one(candidates: &[Candidate]) -> Option<usize> {
    if let Some(i) = candidates.iter().position(|c| c.victims.is_empty()) {
        return Some(i);
    }
    let mut best: Vec<usize> = (0..candidates.len()).collect();
    let mut keep_min = |f: &dyn Fn(&Candidate) -> i64| {
        let min = best.iter().map(|&i| f(&candidates[i])).min();
        best.retain(|&i| Some(f(&candidates[i])) == min);
    };
    keep_min(&|c| c.pdb_violations as i64);
    keep_min(&|c| {
        c.victims
            .first()
            .map_or(i64::MIN, |v| i64::from(v.priority))
    });
    keep_min(&sum_priorities);
    keep_min(&|c| c.victims.len() as i64);
    // Latest earliest-start wins; "not started" counts as the latest of all.
    best.iter().copied().max_by(|&a, &b| {
        cmp_start(
            earliest_start_of_highest(&candidates[a]),
            earliest_start_of_highest(&candidates[b]),
        )
        .then(b.cmp(&a))
    })
}

/// DefaultPreemption for a pod that fits nowhere (`err` from the filters):
/// the chosen candidate, or the post-filter message for the FitError (it
/// starts with `preemption: `). `seed` picks where the dry run starts.
pub fn preempt(
    pod: &Pod,
    snapshot: &Snapshot,
    err: &FitError,
    seed: u64,
) -> Result<Candidate, String> {
    if let Err(why) = eligible(pod, snapshot, err) {
        return Err(format!("preemption: {}", why.trim_end_matches('.')));
    }
    let all = snapshot.nodes.len();
    // Only nodes rejected as Unschedulable may be helped by removing pods.
    let potential: Vec<&NodeInfo> = snapshot
        .nodes
        .iter()
        .filter(|n| {
            err.node_rejections
                .get(n.name())
                .is_some_and(|r| r.code == Code::Unschedulable)
        })
        .collect();
    let mut statuses: BTreeMap<String, Rejection> = BTreeMap::new();
    let mut candidates = Vec::new();
    if !potential.is_empty() {
        let cycle = Cycle::new(pod, snapshot);
        let want = (potential.len() * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
            .max(MIN_CANDIDATE_NODES_ABSOLUTE)
            .min(potential.len());
        let offset = (seed % potential.len() as u64) as usize;
        for i in 0..potential.len() {
            let node = potential[(offset + i) % potential.len()];
            match select_victims_on_node(pod, snapshot, &cycle, node) {
                Ok((victims, pdb_violations)) => {
                    candidates.push(Candidate {
                        node: node.name().to_string(),
                        victims,
                        pdb_violations,
                    });
                    if candidates.len() >= want {
                        break;
                    }
                }
                Err(r) => {
                    statuses.insert(node.name().to_string(), r);
                }
            }
        }
    }
    if let Some(i) = pick_one(&candidates) {
        return Ok(candidates.swap_remove(i));
    }
    for n in &snapshot.nodes {
        statuses
            .entry(n.name().to_string())
            .or_insert_with(|| rejection(NOT_HELPFUL));
    }
    let inner = no_node_message(all, "", &statuses);
    Err(format!("preemption: {}", inner.trim_end_matches('.')))
}
