//! The default score plugins, each normalised to 0–100 and weighted as in
//! Kubernetes' default profile: TaintToleration 3, NodeAffinity 2,
//! NodeResourcesFit (LeastAllocated) 1, PodTopologySpread 2, InterPodAffinity 2,
//! NodeResourcesBalancedAllocation 1, ImageLocality 1.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::filter::{node_taints, spread_constraints};
use crate::matching::{PodAffinityTerms, first_untolerated, term_matches};
use crate::node_info::{NodeInfo, Snapshot};
use crate::resources::{Resources, pod_requests, pod_requests_non_zero};

/// The highest score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// The default plugin weights, in scoring order.
pub const WEIGHTS: [(&str, i64); 7] = [
    ("TaintToleration", 3),
    ("NodeAffinity", 2),
    ("NodeResourcesFit", 1),
    ("PodTopologySpread", 2),
    ("InterPodAffinity", 2),
    ("NodeResourcesBalancedAllocation", 1),
    ("ImageLocality", 1),
];

/// One node's normalised score from each plugin (in [`WEIGHTS`] order) and the weighted total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeScore {
    /// The node's name.
    pub node: String,
    /// Each plugin's 0–100 score, in [`WEIGHTS`] order.
    pub plugins: [i64; 7],
    /// Σ weight × score.
    pub total: i64,
}

/// Scales raw scores to 0–100 by the highest (`DefaultNormalizeScore`), reversed if asked.
fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}

/// TaintToleration: the number of PreferNoSchedule taints the pod does not tolerate (raw).
pub fn taint_toleration_raw(pod: &Pod, node: &NodeInfo) -> i64 {
    taint_toleration_with(&prefer_no_schedule_tolerations(pod), node)
}

/// The pod's tolerations that can tolerate PreferNoSchedule taints.
fn prefer_no_schedule_tolerations(pod: &Pod) -> Vec<k8s_openapi::api::core::v1::Toleration> {
    crate::matching::pod_tolerations(pod)
        .iter()
        .filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        })
        .cloned()
        .collect()
}

fn taint_toleration_with(
    tolerations: &[k8s_openapi::api::core::v1::Toleration],
    node: &NodeInfo,
) -> i64 {
    node_taints(node)
        .iter()
        .filter(|t| {
            first_untolerated(std::slice::from_ref(t), tolerations, &["PreferNoSchedule"]).is_some()
        })
        .count() as i64
}

/// NodeAffinity: the sum of the weights of matching preferred terms (raw).
pub fn node_affinity_raw(pod: &Pod, node: &NodeInfo) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|t| t.weight != 0 && term_matches(&t.preference, node))
        .map(|t| i64::from(t.weight))
        .sum()
}

/// (allocatable, requested after placing the pod) for cpu and memory.
fn cpu_memory(pod_req: &Resources, node: &NodeInfo, non_zero: bool) -> [(i64, i64); 2] {
    let node_req = if non_zero {
        &node.non_zero_requested
    } else {
        &node.requested
    };
    [
        (
            node.allocatable.milli_cpu,
            node_req.milli_cpu + pod_req.milli_cpu,
        ),
        (node.allocatable.memory, node_req.memory + pod_req.memory),
    ]
}

/// NodeResourcesFit's LeastAllocated strategy: the mean over cpu and memory of
/// `(allocatable − requested) × 100 / allocatable`, with unset requests taken
/// as 100m / 200Mi.
pub fn least_allocated(pod: &Pod, node: &NodeInfo) -> i64 {
    least_allocated_with(&pod_requests_non_zero(pod), node)
}

fn least_allocated_with(non_zero_req: &Resources, node: &NodeInfo) -> i64 {
    let parts = cpu_memory(non_zero_req, node, true);
    let sum: i64 = parts
        .iter()
        .map(|&(cap, req)| {
            if cap == 0 || req > cap {
                0
            } else {
                (cap - req) * MAX_NODE_SCORE / cap
            }
        })
        .sum();
    sum / parts.len() as i64
}

/// NodeResourcesBalancedAllocation: `(1 − |cpu fraction − memory fraction| / 2) × 100`,
/// fractions of allocatable capped at 1.
pub fn balanced_allocation(pod: &Pod, node: &NodeInfo) -> i64 {
    balanced_allocation_with(&pod_requests(pod), node)
}

fn balanced_allocation_with(req: &Resources, node: &NodeInfo) -> i64 {
    let mut fractions = [0.0f64; 2];
    let mut len = 0;
    for (cap, req) in cpu_memory(req, node, false) {
        if cap != 0 {
            fractions[len] = (req as f64 / cap as f64).min(1.0);
            len += 1;
        }
    }
    // With cpu and memory only, the standard deviation of two fractions is half their distance.
    let std = if len == 2 {
        ((fractions[0] - fractions[1]) / 2.0).abs()
    } else {
        0.0
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

const MB: i64 = 1024 * 1024;
const MIN_IMAGE_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_IMAGE_THRESHOLD: i64 = 1000 * MB;

/// An image name with `:latest` added when it has no tag.
fn normalized_image(name: &str) -> String {
    let colon = name.rfind(':').map_or(-1, |i| i as i64);
    let slash = name.rfind('/').map_or(-1, |i| i as i64);
    if name.contains('@') || colon > slash {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// ImageLocality: the size of the pod's images already on the node, each scaled
/// by the share of nodes that have it, mapped from [23 MiB, 1000 MiB × containers] onto 0–100.
pub fn image_locality(pod: &Pod, node: &NodeInfo, snapshot: &Snapshot) -> i64 {
    image_locality_with(&pod_images(pod), node, snapshot)
}

/// The normalised image names of the pod's init and app containers.
fn pod_images(pod: &Pod) -> Vec<String> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| normalized_image(c.image.as_deref().unwrap_or("")))
        .collect()
}

fn image_locality_with(containers: &[String], node: &NodeInfo, snapshot: &Snapshot) -> i64 {
    if containers.is_empty() {
        return 0;
    }
    let total = snapshot.nodes.len().max(1) as f64;
    let mut sum: i64 = 0;
    for name in containers {
        if let Some(size) = node.image_sizes.get(name) {
            let spread = snapshot.image_nodes.get(name).copied().unwrap_or(1) as f64;
            sum += (*size as f64 * spread / total) as i64;
        }
    }
    let max = MAX_CONTAINER_IMAGE_THRESHOLD * containers.len() as i64;
    let sum = sum.clamp(MIN_IMAGE_THRESHOLD, max.max(MIN_IMAGE_THRESHOLD));
    if max <= MIN_IMAGE_THRESHOLD {
        return 0;
    }
    MAX_NODE_SCORE * (sum - MIN_IMAGE_THRESHOLD) / (max - MIN_IMAGE_THRESHOLD)
}

/// InterPodAffinity's raw scores (preferred terms both ways, plus existing
/// pods' required affinity at weight 1), min–max normalised to 0–100.
fn inter_pod_affinity(pod: &Pod, feasible: &[&NodeInfo], snapshot: &Snapshot) -> Vec<i64> {
    let ns = &snapshot.namespace_labels;
    let own = PodAffinityTerms::of(pod);
    let mut topo: BTreeMap<(String, String), i64> = BTreeMap::new();
    // Only the pod's preferred terms look at every existing pod; without them
    // only existing pods with terms (HavePodsWithAffinityList) can score.
    let own_preferred =
        !own.preferred_affinity.is_empty() || !own.preferred_anti_affinity.is_empty();
    if !own_preferred && !snapshot.have_pods_with_affinity() {
        return vec![0; feasible.len()];
    }
    let none = PodAffinityTerms::of(&Pod::default());
    for node in &snapshot.nodes {
        if node.labels().is_none_or(|l| l.is_empty()) {
            continue;
        }
        if !own_preferred && node.pods_with_affinity == 0 {
            continue;
        }
        for existing in &node.pods {
            let theirs = existing.terms.as_deref().unwrap_or(&none);
            let theirs_score = !theirs.affinity.is_empty()
                || !theirs.preferred_affinity.is_empty()
                || !theirs.preferred_anti_affinity.is_empty();
            if !own_preferred && !theirs_score {
                continue;
            }
            let mut add = |terms: &[crate::matching::AffinityTerm], target: &Pod, sign: i64| {
                for t in terms {
                    if t.matches(target, ns)
                        && let Some(v) = node.label(&t.topology_key)
                    {
                        *topo
                            .entry((t.topology_key.clone(), v.to_string()))
                            .or_default() += i64::from(t.weight) * sign;
                    }
                }
            };
            add(&own.preferred_affinity, existing, 1);
            add(&own.preferred_anti_affinity, existing, -1);
            add(&theirs.affinity, pod, 1);
            add(&theirs.preferred_affinity, pod, 1);
            add(&theirs.preferred_anti_affinity, pod, -1);
        }
    }
    let raw: Vec<i64> = feasible
        .iter()
        .map(|n| {
            topo.iter()
                .filter(|((k, v), _)| n.label(k) == Some(v.as_str()))
                .map(|(_, s)| *s)
                .sum()
        })
        .collect();
    if topo.is_empty() {
        return raw;
    }
    let (min, max) = (
        raw.iter().copied().min().unwrap_or(0),
        raw.iter().copied().max().unwrap_or(0),
    );
    raw.iter()
        .map(|s| {
            if max > min {
                (MAX_NODE_SCORE as f64 * ((s - min) as f64 / (max - min) as f64)) as i64
            } else {
                0
            }
        })
        .collect()
}

/// PodTopologySpread for `ScheduleAnyway` constraints: fewer matching pods in a
/// node's domains scores higher; nodes missing a topology key score 0.
fn topology_spread(pod: &Pod, feasible: &[&NodeInfo], snapshot: &Snapshot) -> Vec<i64> {
    let constraints = spread_constraints(pod, "ScheduleAnyway");
    if constraints.is_empty() {
        return vec![0; feasible.len()];
    }
    let has_all = |n: &NodeInfo| {
        constraints
            .iter()
            .all(|c| n.label(&c.topology_key).is_some())
    };
    let mut counts: Vec<BTreeMap<String, i64>> = vec![BTreeMap::new(); constraints.len()];
    for n in feasible.iter().filter(|n| has_all(n)) {
        for (i, c) in constraints.iter().enumerate() {
            if c.topology_key != "kubernetes.io/hostname" {
                counts[i]
                    .entry(n.label(&c.topology_key).unwrap_or_default().to_string())
                    .or_default();
            }
        }
    }
    let sizes: Vec<usize> = constraints
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if c.topology_key == "kubernetes.io/hostname" {
                feasible.iter().filter(|n| has_all(n)).count()
            } else {
                counts[i].len()
            }
        })
        .collect();
    for n in snapshot.nodes.iter().filter(|n| has_all(n)) {
        for (i, c) in constraints.iter().enumerate() {
            if c.topology_key == "kubernetes.io/hostname" || !c.includes(pod, n) {
                continue;
            }
            if let Some(slot) = counts[i].get_mut(n.label(&c.topology_key).unwrap_or_default()) {
                *slot += c.count(pod, n);
            }
        }
    }
    let raw: Vec<Option<i64>> = feasible
        .iter()
        .map(|n| {
            if !has_all(n) {
                return None;
            }
            let mut score = 0.0;
            for (i, c) in constraints.iter().enumerate() {
                let value = n.label(&c.topology_key).unwrap_or_default();
                let cnt = if c.topology_key == "kubernetes.io/hostname" {
                    c.count(pod, n)
                } else {
                    counts[i].get(value).copied().unwrap_or(0)
                };
                let weight = ((sizes[i] + 2) as f64).ln();
                score += cnt as f64 * weight + (c.max_skew - 1) as f64;
            }
            Some(score.round() as i64)
        })
        .collect();
    let min = raw.iter().flatten().copied().min().unwrap_or(0);
    let max = raw.iter().flatten().copied().max().unwrap_or(0);
    raw.iter()
        .map(|s| match s {
            None => 0,
            Some(_) if max == 0 => MAX_NODE_SCORE,
            Some(s) => MAX_NODE_SCORE * (max + min - s) / max,
        })
        .collect()
}

/// Scores the feasible nodes for `pod` with every default score plugin.
pub fn score(pod: &Pod, feasible: &[&NodeInfo], snapshot: &Snapshot) -> Vec<NodeScore> {
    score_plugins(pod, feasible, snapshot)
        .into_iter()
        .zip(feasible)
        .map(|(plugins, n)| NodeScore {
            node: n.name().to_string(),
            plugins,
            total: weighted(&plugins),
        })
        .collect()
}

/// Σ weight × score.
pub fn weighted(plugins: &[i64; 7]) -> i64 {
    plugins.iter().zip(WEIGHTS).map(|(s, (_, w))| s * w).sum()
}

/// Each feasible node's normalised plugin scores, in [`WEIGHTS`] order.
pub fn score_plugins(pod: &Pod, feasible: &[&NodeInfo], snapshot: &Snapshot) -> Vec<[i64; 7]> {
    let tolerations = prefer_no_schedule_tolerations(pod);
    let (req, non_zero_req) = (pod_requests(pod), pod_requests_non_zero(pod));
    let images = pod_images(pod);
    let mut taint: Vec<i64> = feasible
        .iter()
        .map(|n| taint_toleration_with(&tolerations, n))
        .collect();
    default_normalize(&mut taint, true);
    let mut affinity: Vec<i64> = feasible.iter().map(|n| node_affinity_raw(pod, n)).collect();
    default_normalize(&mut affinity, false);
    let spread = topology_spread(pod, feasible, snapshot);
    let pod_affinity = inter_pod_affinity(pod, feasible, snapshot);
    feasible
        .iter()
        .enumerate()
        .map(|(i, n)| {
            [
                taint[i],
                affinity[i],
                least_allocated_with(&non_zero_req, n),
                spread[i],
                pod_affinity[i],
                balanced_allocation_with(&req, n),
                image_locality_with(&images, n, snapshot),
            ]
        })
        .collect()
}
