//! The default filter plugins, run in Kubernetes' order: NodeUnschedulable,
//! NodeName, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit,
//! VolumeRestrictions (`ReadWriteOncePod` only), VolumeBinding
//! ([`crate::volume_binding`]), PodTopologySpread, InterPodAffinity. The first plugin that rejects a node
//! decides its reasons, as in the framework's `RunFilterPlugins`.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Pod, Taint};
use skiff_api::selector::LabelSelector;

use crate::matching::{
    AffinityTerm, PodAffinityTerms, first_untolerated, namespace,
    pod_matches_node_selector_and_affinity, pod_tolerations, selector_matches, terminating,
    tolerates,
};
use crate::node_info::{NodeInfo, Snapshot, pod_host_ports};
use crate::resources::{Resources, pod_requests};

/// NodeUnschedulable's reason.
pub const ERR_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// NodeName's reason.
pub const ERR_NODE_NAME: &str = "node(s) didn't match the requested node name";
/// NodeAffinity's reason.
pub const ERR_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
/// NodeAffinity's PreFilter reason when `metadata.name` field terms contradict.
pub const ERR_AFFINITY_CONFLICT: &str = "pod affinity terms conflict";
/// NodePorts' reason.
pub const ERR_NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
/// NodeResourcesFit's reason when the node holds its maximum number of pods.
pub const ERR_TOO_MANY_PODS: &str = "Too many pods";
/// PodTopologySpread's reason for a skew above maxSkew.
pub const ERR_SPREAD: &str = "node(s) didn't match pod topology spread constraints";
/// PodTopologySpread's reason for a node without a constraint's topology key.
pub const ERR_SPREAD_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
/// InterPodAffinity's reason when required pod affinity is not met.
pub const ERR_POD_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// InterPodAffinity's reason when the pod's required anti-affinity is violated.
pub const ERR_POD_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// InterPodAffinity's reason when an existing pod's anti-affinity rejects the pod.
pub const ERR_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// How final a rejection is: preemption only helps with `Unschedulable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Removing pods from the node could make it fit.
    Unschedulable,
    /// Nothing short of changing the node or the pod helps.
    UnschedulableAndUnresolvable,
}

/// Why a node was rejected: the plugin, its code and its reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The plugin that rejected the node, e.g. `NodeResourcesFit`.
    pub plugin: &'static str,
    /// How final the rejection is.
    pub code: Code,
    /// The reasons, as they appear in the FitError message.
    pub reasons: Vec<String>,
}

impl Rejection {
    fn new(plugin: &'static str, code: Code, reason: impl Into<String>) -> Self {
        Rejection {
            plugin,
            code,
            reasons: vec![reason.into()],
        }
    }
}

/// One topology spread constraint, prepared.
#[derive(Debug, Clone)]
pub(crate) struct SpreadConstraint {
    pub max_skew: i64,
    pub topology_key: String,
    pub selector: LabelSelector,
    pub min_domains: i64,
    pub honor_affinity: bool,
    pub honor_taints: bool,
}

impl SpreadConstraint {
    /// Whether a node counts for this constraint under its inclusion policies.
    pub fn includes(&self, pod: &Pod, node: &NodeInfo) -> bool {
        if self.honor_affinity && !pod_matches_node_selector_and_affinity(pod, node) {
            return false;
        }
        if self.honor_taints
            && first_untolerated(
                node_taints(node),
                pod_tolerations(pod),
                &["NoSchedule", "NoExecute"],
            )
            .is_some()
        {
            return false;
        }
        true
    }

    /// How many pods on the node the constraint's selector counts.
    pub fn count(&self, pod: &Pod, node: &NodeInfo) -> i64 {
        node.pods
            .iter()
            .filter(|p| {
                !terminating(p)
                    && namespace(p) == namespace(pod)
                    && selector_matches(&self.selector, p.metadata.labels.as_ref())
            })
            .count() as i64
    }
}

/// The pod's topology spread constraints with the given `whenUnsatisfiable`.
pub(crate) fn spread_constraints(pod: &Pod, when: &str) -> Vec<SpreadConstraint> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.topology_spread_constraints
        .iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| {
            let selector = match c.label_selector.as_ref() {
                None => LabelSelector::nothing(),
                Some(sel) => {
                    let mut v = serde_json::to_value(sel).unwrap_or_default();
                    let labels = pod.metadata.labels.as_ref();
                    for key in c.match_label_keys.iter().flatten() {
                        if let Some(val) = labels.and_then(|l| l.get(key))
                            && let Some(obj) = v.as_object_mut()
                        {
                            let exprs = obj
                                .entry("matchExpressions")
                                .or_insert_with(|| serde_json::json!([]));
                            if let Some(a) = exprs.as_array_mut() {
                                a.push(serde_json::json!({"key": key, "operator": "In", "values": [val]}));
                            }
                        }
                    }
                    LabelSelector::from_object(&v).unwrap_or_else(|_| LabelSelector::nothing())
                }
            };
            SpreadConstraint {
                max_skew: i64::from(c.max_skew),
                topology_key: c.topology_key.clone(),
                selector,
                min_domains: i64::from(c.min_domains.unwrap_or(1)),
                honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect()
}

pub(crate) fn node_taints(node: &NodeInfo) -> &[Taint] {
    node.node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

/// Pod counts per topology domain: topology key → value → count. Looked up
/// by borrowed strings, so filtering a node allocates nothing.
#[derive(Debug, Clone, Default)]
struct TopoCounts(HashMap<String, HashMap<String, i64>>);

impl TopoCounts {
    fn add(&mut self, key: &str, value: &str, n: i64) {
        let values = match self.0.get_mut(key) {
            Some(v) => v,
            None => self.0.entry(key.to_string()).or_default(),
        };
        match values.get_mut(value) {
            Some(c) => *c += n,
            None => {
                values.insert(value.to_string(), n);
            }
        }
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|v| v.get(value))
            .copied()
            .unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The state one pod's filtering computes once over the whole snapshot
/// (the PreFilter phase) and then uses per node.
pub struct Cycle<'a> {
    pod: &'a Pod,
    snapshot: &'a Snapshot,
    override_node: Option<&'a NodeInfo>,
    priority: i32,
    key: String,
    requests: Resources,
    ports: Vec<crate::node_info::HostPort>,
    spread: Vec<SpreadConstraint>,
    spread_counts: Vec<HashMap<String, i64>>,
    /// The smallest count over each constraint's domains (None: no domain).
    spread_min: Vec<Option<i64>>,
    terms: PodAffinityTerms,
    affinity_counts: TopoCounts,
    anti_affinity_counts: TopoCounts,
    existing_anti_affinity_counts: TopoCounts,
    /// Nodes NodeAffinity's PreFilter narrowed the search to, if any.
    pub(crate) node_names: Option<BTreeSet<String>>,
    /// A PreFilter failure that rejects every node.
    pub(crate) pre_filter_error: Option<String>,
    /// VolumeBinding's PreFilter state (None: the pod uses no claim).
    volumes: Option<crate::volume_binding::PodVolumes>,
    /// The pod's `ReadWriteOncePod` claims (VolumeRestrictions).
    rwop_claims: Vec<String>,
    /// How many pods placed anywhere already use one of them.
    rwop_in_use: usize,
}

impl<'a> Cycle<'a> {
    /// Runs the PreFilter phase for `pod` over `snapshot`.
    pub fn new(pod: &'a Pod, snapshot: &'a Snapshot) -> Self {
        Self::with_override(pod, snapshot, None)
    }

    /// Runs the PreFilter phase for `pod` over `snapshot` with `override_node`
    /// standing in for the node of its name (preemption's "what if these pods were gone").
    pub fn with_override(
        pod: &'a Pod,
        snapshot: &'a Snapshot,
        override_node: Option<&'a NodeInfo>,
    ) -> Self {
        let terms = PodAffinityTerms::of(pod);
        let spread = spread_constraints(pod, "DoNotSchedule");
        let mut cycle = Cycle {
            pod,
            snapshot,
            override_node,
            priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
            key: format!(
                "{}/{}",
                pod.metadata.namespace.as_deref().unwrap_or(""),
                pod.metadata.name.as_deref().unwrap_or("")
            ),
            requests: pod_requests(pod),
            ports: pod_host_ports(pod),
            spread_counts: vec![HashMap::new(); spread.len()],
            spread_min: vec![None; spread.len()],
            spread,
            terms,
            affinity_counts: TopoCounts::default(),
            anti_affinity_counts: TopoCounts::default(),
            existing_anti_affinity_counts: TopoCounts::default(),
            node_names: None,
            pre_filter_error: None,
            volumes: None,
            rwop_claims: Vec::new(),
            rwop_in_use: 0,
        };
        cycle.pre_filter_node_affinity();
        cycle.pre_filter_volume_restrictions();
        if cycle.pre_filter_error.is_none() {
            match crate::volume_binding::pre_filter(pod, &snapshot.volumes) {
                Ok(v) => cycle.volumes = v,
                Err(msg) => cycle.pre_filter_error = Some(msg),
            }
        }
        cycle.pre_filter_spread();
        cycle.pre_filter_affinity();
        cycle
    }

    fn pre_filter_node_affinity(&mut self) {
        let required = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            });
        let Some(required) = required else { return };
        if required.node_selector_terms.is_empty() {
            return;
        }
        let mut names: BTreeSet<String> = BTreeSet::new();
        for t in &required.node_selector_terms {
            let mut term_names: Option<BTreeSet<String>> = None;
            for r in t.match_fields.iter().flatten() {
                if r.key == "metadata.name" && r.operator == "In" {
                    let s: BTreeSet<String> = r.values.iter().flatten().cloned().collect();
                    term_names = Some(match term_names {
                        None => s,
                        Some(prev) => prev.intersection(&s).cloned().collect(),
                    });
                }
            }
            match term_names {
                None => return,
                Some(s) => names.extend(s),
            }
        }
        if names.is_empty() {
            self.pre_filter_error = Some(ERR_AFFINITY_CONFLICT.to_string());
        } else {
            self.node_names = Some(names);
        }
    }

    /// VolumeRestrictions' PreFilter: counts the placed pods (other than this
    /// one) using one of the pod's `ReadWriteOncePod` claims.
    fn pre_filter_volume_restrictions(&mut self) {
        self.rwop_claims =
            crate::volume_binding::read_write_once_pod_claims(self.pod, &self.snapshot.volumes);
        if self.rwop_claims.is_empty() {
            return;
        }
        let ns = namespace(self.pod);
        self.rwop_in_use = self
            .nodes()
            .flat_map(|n| n.pods.iter())
            .filter(|p| p.key != self.key)
            .filter(|p| crate::volume_binding::uses_claim(p, ns, &self.rwop_claims))
            .count();
    }

    /// The snapshot's nodes, with the override (a node with pods taken off
    /// for preemption) in place of the node of the same name.
    fn nodes(&self) -> impl Iterator<Item = &'a NodeInfo> + '_ {
        let over = self.override_node;
        self.snapshot.nodes.iter().map(move |n| match over {
            Some(o) if o.name() == n.name() => o,
            _ => n,
        })
    }

    fn pre_filter_spread(&mut self) {
        if self.spread.is_empty() {
            return;
        }
        let mut counts = std::mem::take(&mut self.spread_counts);
        for node in self.nodes() {
            if !self
                .spread
                .iter()
                .all(|c| node.label(&c.topology_key).is_some())
            {
                continue;
            }
            for (i, c) in self.spread.iter().enumerate() {
                if !c.includes(self.pod, node) {
                    continue;
                }
                let value = node.label(&c.topology_key).unwrap_or_default();
                let n = c.count(self.pod, node);
                match counts[i].get_mut(value) {
                    Some(slot) => *slot += n,
                    None => {
                        counts[i].insert(value.to_string(), n);
                    }
                }
            }
        }
        self.spread_min = self
            .spread
            .iter()
            .zip(&counts)
            .map(|(c, counts)| {
                if (counts.len() as i64) < c.min_domains {
                    Some(0)
                } else {
                    counts.values().min().copied()
                }
            })
            .collect();
        self.spread_counts = counts;
    }

    /// InterPodAffinity's PreFilter. Pods without required terms only need the
    /// existing pods' required anti-affinity, and only nodes holding such pods
    /// are looked at; with neither, nothing is done at all.
    fn pre_filter_affinity(&mut self) {
        let ns = &self.snapshot.namespace_labels;
        let own = !self.terms.affinity.is_empty() || !self.terms.anti_affinity.is_empty();
        if !own && !self.snapshot.have_pods_with_required_anti_affinity() {
            return;
        }
        let mut existing_anti = TopoCounts::default();
        let mut affinity = TopoCounts::default();
        let mut anti = TopoCounts::default();
        for node in self.nodes() {
            if !own && node.pods_with_required_anti_affinity == 0 {
                continue;
            }
            for existing in &node.pods {
                if let Some(theirs) = &existing.terms {
                    for t in &theirs.anti_affinity {
                        if let Some(v) = node.label(&t.topology_key)
                            && t.matches(self.pod, ns)
                        {
                            existing_anti.add(&t.topology_key, v, 1);
                        }
                    }
                }
                if !own {
                    continue;
                }
                if !self.terms.affinity.is_empty()
                    && self.terms.affinity.iter().all(|t| t.matches(existing, ns))
                {
                    for t in &self.terms.affinity {
                        if let Some(v) = node.label(&t.topology_key) {
                            affinity.add(&t.topology_key, v, 1);
                        }
                    }
                }
                for t in &self.terms.anti_affinity {
                    if let Some(v) = node.label(&t.topology_key)
                        && t.matches(existing, ns)
                    {
                        anti.add(&t.topology_key, v, 1);
                    }
                }
            }
        }
        self.existing_anti_affinity_counts = existing_anti;
        self.affinity_counts = affinity;
        self.anti_affinity_counts = anti;
    }

    /// Whether the PreFilter state depends on other pods (spread constraints
    /// or pod affinity), so taking pods off a node needs a new [`Cycle`].
    pub fn depends_on_other_pods(&self) -> bool {
        !self.spread.is_empty()
            || !self.rwop_claims.is_empty()
            || !self.terms.affinity.is_empty()
            || !self.terms.anti_affinity.is_empty()
            || self.snapshot.have_pods_with_required_anti_affinity()
    }

    /// [`Self::filter`] as the framework runs it with nominated pods: the pods
    /// nominated to the node with at least this pod's priority are added to
    /// it first (their resources and ports are held for them), and the node
    /// must pass both with and without them.
    pub fn filter_with_nominated(&self, node: &NodeInfo) -> Result<(), Rejection> {
        let mut nominated = self
            .snapshot
            .nominated_for(node.name(), self.priority, &self.key)
            .peekable();
        if nominated.peek().is_none() {
            return self.filter(node);
        }
        let mut with = node.clone();
        for p in nominated {
            with.add_pod_info(p.clone());
        }
        self.filter(&with)?;
        self.filter(node)
    }

    /// Runs every filter plugin on one node; the first rejection wins.
    pub fn filter(&self, node: &NodeInfo) -> Result<(), Rejection> {
        self.node_unschedulable(node)?;
        self.node_name(node)?;
        self.taint_toleration(node)?;
        self.node_affinity(node)?;
        self.node_ports(node)?;
        self.node_resources_fit(node)?;
        if self.rwop_in_use > 0 {
            return Err(Rejection::new(
                "VolumeRestrictions",
                Code::Unschedulable,
                crate::volume_binding::ERR_READ_WRITE_ONCE_POD_CONFLICT,
            ));
        }
        if let Some(v) = &self.volumes {
            v.filter(node)?;
        }
        self.pod_topology_spread(node)?;
        self.inter_pod_affinity(node)
    }

    fn node_unschedulable(&self, node: &NodeInfo) -> Result<(), Rejection> {
        let unschedulable = node
            .node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        if !unschedulable {
            return Ok(());
        }
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if !pod_tolerations(self.pod)
            .iter()
            .any(|t| tolerates(t, &taint))
        {
            return Err(Rejection::new(
                "NodeUnschedulable",
                Code::UnschedulableAndUnresolvable,
                ERR_UNSCHEDULABLE,
            ));
        }
        Ok(())
    }

    fn node_name(&self, node: &NodeInfo) -> Result<(), Rejection> {
        match self.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(n) if !n.is_empty() && n != node.name() => Err(Rejection::new(
                "NodeName",
                Code::UnschedulableAndUnresolvable,
                ERR_NODE_NAME,
            )),
            _ => Ok(()),
        }
    }

    fn taint_toleration(&self, node: &NodeInfo) -> Result<(), Rejection> {
        match first_untolerated(
            node_taints(node),
            pod_tolerations(self.pod),
            &["NoSchedule", "NoExecute"],
        ) {
            Some(t) => Err(Rejection::new(
                "TaintToleration",
                Code::UnschedulableAndUnresolvable,
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    t.key,
                    t.value.as_deref().unwrap_or("")
                ),
            )),
            None => Ok(()),
        }
    }

    fn node_affinity(&self, node: &NodeInfo) -> Result<(), Rejection> {
        if pod_matches_node_selector_and_affinity(self.pod, node) {
            Ok(())
        } else {
            Err(Rejection::new(
                "NodeAffinity",
                Code::UnschedulableAndUnresolvable,
                ERR_NODE_AFFINITY,
            ))
        }
    }

    fn node_ports(&self, node: &NodeInfo) -> Result<(), Rejection> {
        let clash = self
            .ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| want.conflicts(used)));
        if clash {
            Err(Rejection::new(
                "NodePorts",
                Code::Unschedulable,
                ERR_NODE_PORTS,
            ))
        } else {
            Ok(())
        }
    }

    fn node_resources_fit(&self, node: &NodeInfo) -> Result<(), Rejection> {
        let (reasons, unresolvable) = insufficient_resources(&self.requests, node);
        if reasons.is_empty() {
            return Ok(());
        }
        Err(Rejection {
            plugin: "NodeResourcesFit",
            code: if unresolvable {
                Code::UnschedulableAndUnresolvable
            } else {
                Code::Unschedulable
            },
            reasons,
        })
    }

    fn pod_topology_spread(&self, node: &NodeInfo) -> Result<(), Rejection> {
        let pod_labels = self.pod.metadata.labels.as_ref();
        for (i, c) in self.spread.iter().enumerate() {
            let Some(value) = node.label(&c.topology_key) else {
                return Err(Rejection::new(
                    "PodTopologySpread",
                    Code::UnschedulableAndUnresolvable,
                    ERR_SPREAD_LABEL,
                ));
            };
            let Some(min) = self.spread_min[i] else {
                continue;
            };
            let self_match = i64::from(selector_matches(&c.selector, pod_labels));
            let here = self.spread_counts[i].get(value).copied().unwrap_or(0);
            if here + self_match - min > c.max_skew {
                return Err(Rejection::new(
                    "PodTopologySpread",
                    Code::Unschedulable,
                    ERR_SPREAD,
                ));
            }
        }
        Ok(())
    }

    fn inter_pod_affinity(&self, node: &NodeInfo) -> Result<(), Rejection> {
        let reject = |code, reason| Err(Rejection::new("InterPodAffinity", code, reason));
        if !self.satisfies_affinity(node) {
            return reject(Code::UnschedulableAndUnresolvable, ERR_POD_AFFINITY);
        }
        let anti = self.terms.anti_affinity.iter().any(|t| {
            node.label(&t.topology_key)
                .is_some_and(|v| self.anti_affinity_counts.get(&t.topology_key, v) > 0)
        });
        if anti {
            return reject(Code::Unschedulable, ERR_POD_ANTI_AFFINITY);
        }
        let existing = !self.existing_anti_affinity_counts.is_empty()
            && node
                .labels()
                .into_iter()
                .flatten()
                .any(|(k, v)| self.existing_anti_affinity_counts.get(k, v) > 0);
        if existing {
            return reject(Code::Unschedulable, ERR_EXISTING_ANTI_AFFINITY);
        }
        Ok(())
    }

    fn satisfies_affinity(&self, node: &NodeInfo) -> bool {
        let mut pods_exist = true;
        for t in &self.terms.affinity {
            let Some(v) = node.label(&t.topology_key) else {
                return false;
            };
            if self.affinity_counts.get(&t.topology_key, v) <= 0 {
                pods_exist = false;
            }
        }
        // The first pod of a group with affinity to itself may go anywhere.
        pods_exist
            || (self.affinity_counts.is_empty()
                && self
                    .terms
                    .affinity
                    .iter()
                    .all(|t: &AffinityTerm| t.matches(self.pod, &self.snapshot.namespace_labels)))
    }
}

/// NodeResourcesFit's check: the reasons a node lacks room for `req` (pods
/// first, then cpu, memory, ephemeral-storage and scalar resources), and
/// whether any request exceeds the node's allocatable outright.
pub fn insufficient_resources(req: &Resources, node: &NodeInfo) -> (Vec<String>, bool) {
    let mut reasons = Vec::new();
    let mut unresolvable = false;
    let alloc = &node.allocatable;
    let used = &node.requested;
    if node.pods.len() as i64 + 1 > alloc.pods {
        reasons.push(ERR_TOO_MANY_PODS.to_string());
    }
    if req.is_zero() {
        return (reasons, false);
    }
    let mut check = |name: &str, want: i64, have: i64, used: i64| {
        if want > 0 && want > have - used {
            reasons.push(format!("Insufficient {name}"));
            unresolvable |= want > have;
        }
    };
    check("cpu", req.milli_cpu, alloc.milli_cpu, used.milli_cpu);
    check("memory", req.memory, alloc.memory, used.memory);
    check(
        "ephemeral-storage",
        req.ephemeral_storage,
        alloc.ephemeral_storage,
        used.ephemeral_storage,
    );
    for (name, want) in &req.scalar {
        let have = alloc.scalar.get(name).copied().unwrap_or(0);
        let u = used.scalar.get(name).copied().unwrap_or(0);
        check(name, *want, have, u);
    }
    (reasons, unresolvable)
}

/// Runs every filter for `pod` on one node of `snapshot`.
pub fn filter(pod: &Pod, node: &NodeInfo, snapshot: &Snapshot) -> Result<(), Rejection> {
    Cycle::new(pod, snapshot).filter(node)
}
