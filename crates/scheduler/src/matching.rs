//! Matching rules shared by filters and scores: taints against tolerations,
//! node selectors and node affinity terms, label selectors and pod affinity
//! terms (`component-helpers/scheduling/corev1`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorTerm, Pod, PodAffinityTerm, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as MetaSelector;
use skiff_api::selector::LabelSelector;

use crate::node_info::NodeInfo;

pub use skiff_api::node_match::tolerates;

/// A pod's tolerations.
pub(crate) fn pod_tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

/// The first of the node's taints with one of `effects` that no toleration tolerates.
pub fn first_untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints.iter().find(|taint| {
        effects.contains(&taint.effect.as_str()) && !tolerations.iter().any(|t| tolerates(t, taint))
    })
}

/// Whether a node selector term matches a node: every `matchExpressions`
/// requirement on labels and every `matchFields` requirement (only
/// `metadata.name`) holds. A term with neither matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    skiff_api::node_match::term_matches(term, node.name(), |k| node.label(k))
}

/// Whether the pod's `nodeSelector` and required node affinity both match the node.
pub fn pod_matches_node_selector_and_affinity(pod: &Pod, node: &NodeInfo) -> bool {
    pod.spec.as_ref().is_none_or(|spec| {
        skiff_api::node_match::selector_and_affinity_match(spec, node.name(), |k| node.label(k))
    })
}

/// Converts a typed `metav1.LabelSelector` (None = matches nothing).
pub(crate) fn selector(sel: Option<&MetaSelector>) -> LabelSelector {
    match sel {
        None => LabelSelector::nothing(),
        Some(s) => serde_json::to_value(s)
            .ok()
            .and_then(|v| LabelSelector::from_object(&v).ok())
            .unwrap_or_else(LabelSelector::nothing),
    }
}

/// Whether a label selector matches a set of labels.
pub(crate) fn selector_matches(
    sel: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    sel.matches(|k| labels.and_then(|l| l.get(k)).map(String::as_str))
}

pub(crate) fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// A pod affinity term made ready for matching (`framework.AffinityTerm`).
#[derive(Debug, Clone)]
pub(crate) struct AffinityTerm {
    pub selector: LabelSelector,
    pub namespaces: Vec<String>,
    /// Some when a namespaceSelector is set.
    pub namespace_selector: Option<LabelSelector>,
    pub topology_key: String,
    pub weight: i32,
}

impl AffinityTerm {
    /// Prepares a term of `owner`: no namespaces and no namespaceSelector means the owner's namespace.
    pub fn new(t: &PodAffinityTerm, owner: &Pod, weight: i32) -> Self {
        let mut namespaces = t.namespaces.clone().unwrap_or_default();
        let namespace_selector = t.namespace_selector.as_ref().map(|s| selector(Some(s)));
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.push(namespace(owner).to_string());
        }
        AffinityTerm {
            selector: selector(t.label_selector.as_ref()),
            namespaces,
            namespace_selector,
            topology_key: t.topology_key.clone(),
            weight,
        }
    }

    /// Whether the term selects a pod (by namespace and labels).
    pub fn matches(
        &self,
        pod: &Pod,
        ns_labels: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> bool {
        let ns = namespace(pod);
        let ns_ok = self.namespaces.iter().any(|n| n == ns)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, ns_labels.get(ns)));
        ns_ok && selector_matches(&self.selector, pod.metadata.labels.as_ref())
    }
}

/// The terms of a pod's affinity: (required affinity, required anti-affinity,
/// preferred affinity, preferred anti-affinity).
#[derive(Debug, Clone)]
pub(crate) struct PodAffinityTerms {
    pub affinity: Vec<AffinityTerm>,
    pub anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<AffinityTerm>,
    pub preferred_anti_affinity: Vec<AffinityTerm>,
}

impl PodAffinityTerms {
    pub fn of(pod: &Pod) -> Self {
        let aff = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let pa = aff.and_then(|a| a.pod_affinity.as_ref());
        let paa = aff.and_then(|a| a.pod_anti_affinity.as_ref());
        let req = |v: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            v.into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(t, pod, 1))
                .collect()
        };
        let pref = |v: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
            v.into_iter()
                .flatten()
                .map(|w| AffinityTerm::new(&w.pod_affinity_term, pod, w.weight))
                .collect()
        };
        PodAffinityTerms {
            affinity: req(pa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            anti_affinity: req(paa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: pref(pa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity: pref(paa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.affinity.is_empty()
            && self.anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty()
    }
}

/// Whether a pod is being deleted.
pub(crate) fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}
