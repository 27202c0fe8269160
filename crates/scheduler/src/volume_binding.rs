//! The VolumeBinding plugin (`plugins/volumebinding`): a pod's
//! PersistentVolumeClaims decide where it may go.
//!
//! - PreFilter: a claim that does not exist or is being deleted rejects
//!   every node; so does an unbound claim whose class binds at once
//!   (`Immediate`, or no class): the PV controller must bind it first.
//! - Filter: a bound claim's PersistentVolume must accept the node by its
//!   `nodeAffinity`; an unbound `WaitForFirstConsumer` claim fits a node when
//!   its class may provision there (`allowedTopologies`) or, for a class
//!   without a provisioner, when an available volume matching the claim
//!   accepts the node.
//! - PreBind ([`pre_bind`]): the unbound `WaitForFirstConsumer` claims get
//!   the `volume.kubernetes.io/selected-node` annotation (or, for a class
//!   without a provisioner, the chosen volume's `claimRef`); the loop then
//!   waits for them to be bound before it binds the pod.
//!
//! The claims, volumes and classes the scheduler watches are kept in
//! [`Volumes`], part of the [`crate::Snapshot`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, Pod, TopologySelectorTerm,
};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::filter::{Code, Rejection};
use crate::node_info::NodeInfo;

/// The annotation the scheduler sets on a `WaitForFirstConsumer` claim to ask for a volume on a node.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The annotation the PV controller sets on a claim once its binding is complete.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// The provisioner name of classes whose volumes are created by hand.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// PreFilter's reason when an `Immediate` claim is not bound yet.
pub const ERR_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
/// VolumeRestrictions' reason when a `ReadWriteOncePod` claim is in use by another pod.
pub const ERR_READ_WRITE_ONCE_POD_CONFLICT: &str =
    "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode";
/// Filter's reason when a bound volume's node affinity rejects the node.
pub const ERR_VOLUME_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// Filter's reason when an unbound claim can get no volume on the node.
pub const ERR_VOLUME_BIND_CONFLICT: &str =
    "node(s) didn't find available persistent volumes to bind";

/// The storage objects the scheduler watches, by `namespace/name` (claims) or name.
#[derive(Debug, Clone, Default)]
pub struct Volumes {
    /// PersistentVolumeClaims by `namespace/name`.
    pub claims: HashMap<String, Arc<PersistentVolumeClaim>>,
    /// PersistentVolumes by name.
    pub volumes: HashMap<String, Arc<PersistentVolume>>,
    /// StorageClasses by name.
    pub classes: HashMap<String, Arc<StorageClass>>,
}

/// `namespace/name` of a namespaced object's metadata.
fn ns_key(md: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        md.namespace.as_deref().unwrap_or(""),
        md.name.as_deref().unwrap_or("")
    )
}

impl Volumes {
    /// Adds or replaces a claim.
    pub fn put_claim(&mut self, c: PersistentVolumeClaim) {
        self.claims.insert(ns_key(&c.metadata), Arc::new(c));
    }

    /// Removes a claim.
    pub fn remove_claim(&mut self, c: &PersistentVolumeClaim) {
        self.claims.remove(&ns_key(&c.metadata));
    }

    /// Adds or replaces a volume.
    pub fn put_volume(&mut self, v: PersistentVolume) {
        let name = v.metadata.name.clone().unwrap_or_default();
        self.volumes.insert(name, Arc::new(v));
    }

    /// Removes a volume.
    pub fn remove_volume(&mut self, v: &PersistentVolume) {
        self.volumes
            .remove(v.metadata.name.as_deref().unwrap_or(""));
    }

    /// Adds or replaces a class.
    pub fn put_class(&mut self, c: StorageClass) {
        let name = c.metadata.name.clone().unwrap_or_default();
        self.classes.insert(name, Arc::new(c));
    }

    /// Removes a class.
    pub fn remove_class(&mut self, c: &StorageClass) {
        self.classes
            .remove(c.metadata.name.as_deref().unwrap_or(""));
    }

    fn claim(&self, ns: &str, name: &str) -> Option<&Arc<PersistentVolumeClaim>> {
        self.claims.get(&format!("{ns}/{name}"))
    }
}

/// The names of the claims a pod's volumes use: `persistentVolumeClaim.claimName`,
/// and `<pod>-<volume>` for generic ephemeral volumes.
pub fn pod_claim_names(pod: &Pod) -> Vec<String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(c.claim_name.clone())
            } else if v.ephemeral.is_some() {
                Some(format!("{pod_name}-{}", v.name))
            } else {
                None
            }
        })
        .collect()
}

/// VolumeRestrictions' PreFilter for `ReadWriteOncePod`: the names of the
/// pod's claims with that access mode (claims not found are VolumeBinding's
/// to report).
pub fn read_write_once_pod_claims(pod: &Pod, vols: &Volumes) -> Vec<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .filter(|c| {
            vols.claim(ns, &c.claim_name).is_some_and(|pvc| {
                pvc.spec
                    .as_ref()
                    .and_then(|s| s.access_modes.as_ref())
                    .is_some_and(|m| m.iter().any(|m| m == "ReadWriteOncePod"))
            })
        })
        .map(|c| c.claim_name.clone())
        .collect()
}

/// Whether `other` (a pod placed on a node) uses one of `claims` of namespace `ns`.
pub fn uses_claim(other: &Pod, ns: &str, claims: &[String]) -> bool {
    other.metadata.namespace.as_deref().unwrap_or("") == ns
        && other
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .any(|c| claims.contains(&c.claim_name))
}

/// Whether a claim is bound: it names its volume and the PV controller
/// finished the binding (the `bind-completed` annotation, or phase Bound).
pub fn claim_bound(c: &PersistentVolumeClaim) -> bool {
    let named = c
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|v| !v.is_empty());
    let completed = c
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANN_BIND_COMPLETED))
        || c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    named && completed
}

fn claim_class(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// An unbound claim whose binding waits for the pod's node.
#[derive(Debug, Clone)]
pub struct DelayedClaim {
    /// The claim.
    pub claim: Arc<PersistentVolumeClaim>,
    /// Its class.
    pub class: Arc<StorageClass>,
}

/// What PreFilter found about a pod's claims, used per node by [`PodVolumes::filter`].
#[derive(Debug, Clone, Default)]
pub struct PodVolumes {
    /// The volumes of the bound claims.
    pub bound: Vec<Arc<PersistentVolume>>,
    /// The unbound `WaitForFirstConsumer` claims.
    pub delayed: Vec<DelayedClaim>,
    /// Available volumes (no claim, or claimed by one of `delayed`) for static binding.
    available: Vec<Arc<PersistentVolume>>,
}

/// VolumeBinding's PreFilter: `Ok(None)` when the pod uses no claim, the
/// claims' state when every claim exists and none blocks scheduling, or the
/// message that rejects every node (`persistentvolumeclaim "x" not found`,
/// [`ERR_UNBOUND_IMMEDIATE`], …).
pub fn pre_filter(pod: &Pod, vols: &Volumes) -> Result<Option<PodVolumes>, String> {
    let names = pod_claim_names(pod);
    if names.is_empty() {
        return Ok(None);
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let mut out = PodVolumes::default();
    let mut unbound_immediate = false;
    let mut claims = Vec::new();
    for name in &names {
        let Some(c) = vols.claim(ns, name) else {
            return Err(format!("persistentvolumeclaim \"{name}\" not found"));
        };
        if c.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
        }
        claims.push(c.clone());
    }
    for c in claims {
        if claim_bound(&c) {
            let pv_name = c
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .unwrap_or("");
            let Some(pv) = vols.volumes.get(pv_name) else {
                return Err(format!("persistentvolume \"{pv_name}\" not found"));
            };
            out.bound.push(pv.clone());
            continue;
        }
        let class_name = claim_class(&c);
        if class_name.is_empty() {
            unbound_immediate = true;
            continue;
        }
        let Some(class) = vols.classes.get(class_name) else {
            return Err(format!(
                "storageclass.storage.k8s.io \"{class_name}\" not found"
            ));
        };
        if class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer") {
            out.delayed.push(DelayedClaim {
                claim: c,
                class: class.clone(),
            });
        } else {
            unbound_immediate = true;
        }
    }
    if unbound_immediate {
        return Err(ERR_UNBOUND_IMMEDIATE.to_string());
    }
    if out.delayed.iter().any(|d| !provisions(&d.class)) {
        out.available = vols
            .volumes
            .values()
            .filter(|pv| {
                pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available")
                    && pv.metadata.deletion_timestamp.is_none()
            })
            .cloned()
            .collect();
    }
    Ok(Some(out))
}

/// Whether a class provisions volumes dynamically.
fn provisions(class: &StorageClass) -> bool {
    !class.provisioner.is_empty() && class.provisioner != NO_PROVISIONER
}

/// Whether a volume's `nodeAffinity.required` accepts the node (no affinity accepts every node).
pub fn volume_accepts(pv: &PersistentVolume, node: &NodeInfo) -> bool {
    volume_accepts_labels(pv, node.name(), |k| node.label(k))
}

/// PreBind's last check once a claim is bound: its volume must accept the
/// node the pod is going to (the provisioner or the PV controller may have
/// chosen otherwise), in Kubernetes' words.
pub fn check_bound_volume(
    pv: &PersistentVolume,
    node: &k8s_openapi::api::core::v1::Node,
) -> Result<(), String> {
    let name = node.metadata.name.as_deref().unwrap_or("");
    let labels = node.metadata.labels.as_ref();
    if volume_accepts_labels(pv, name, |k| {
        labels.and_then(|l| l.get(k)).map(String::as_str)
    }) {
        Ok(())
    } else {
        Err(format!(
            "pv \"{}\" node affinity doesn't match node \"{name}\": no matching NodeSelectorTerms",
            pv.metadata.name.as_deref().unwrap_or("")
        ))
    }
}

fn volume_accepts_labels<'a>(
    pv: &PersistentVolume,
    node: &str,
    label: impl Fn(&str) -> Option<&'a str> + Copy,
) -> bool {
    let Some(required) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    required
        .node_selector_terms
        .iter()
        .any(|t| skiff_api::node_match::term_matches(t, node, label))
}

/// Whether a class's `allowedTopologies` admits the node (none admits every node).
pub fn topology_allows(terms: Option<&[TopologySelectorTerm]>, node: &NodeInfo) -> bool {
    let terms = terms.unwrap_or(&[]);
    terms.is_empty()
        || terms.iter().any(|t| {
            t.match_label_expressions.iter().flatten().all(|e| {
                node.label(&e.key)
                    .is_some_and(|v| e.values.iter().any(|x| x == v))
            })
        })
}

fn storage_bytes(
    q: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> i128 {
    q.and_then(|m| m.get("storage"))
        .and_then(|q| skiff_api::validation::parse_quantity(&q.0).ok())
        .map(|q| q.nanos)
        .unwrap_or(0)
}

/// Whether an available volume can serve a claim: same class, claimed by
/// nobody else, access modes and capacity enough, selector matched.
fn volume_serves(pv: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let Some(spec) = pv.spec.as_ref() else {
        return false;
    };
    if spec.storage_class_name.as_deref().unwrap_or("") != claim_class(c) {
        return false;
    }
    if let Some(r) = &spec.claim_ref
        && (r.name.as_deref() != c.metadata.name.as_deref()
            || r.namespace.as_deref() != c.metadata.namespace.as_deref())
    {
        return false;
    }
    let cs = c.spec.as_ref();
    let want_modes = cs.and_then(|s| s.access_modes.as_deref()).unwrap_or(&[]);
    let have_modes = spec.access_modes.as_deref().unwrap_or(&[]);
    if !want_modes.iter().all(|m| have_modes.contains(m)) {
        return false;
    }
    let want = storage_bytes(
        cs.and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    );
    if storage_bytes(spec.capacity.as_ref()) < want {
        return false;
    }
    if let Some(sel) = cs.and_then(|s| s.selector.as_ref()) {
        let v = serde_json::to_value(sel).unwrap_or_default();
        let Ok(sel) = skiff_api::selector::LabelSelector::from_object(&v) else {
            return false;
        };
        let labels = pv.metadata.labels.as_ref();
        if !sel.matches(|k| labels.and_then(|l| l.get(k)).map(String::as_str)) {
            return false;
        }
    }
    true
}

impl PodVolumes {
    /// The available volume each unbound claim of a class without a
    /// provisioner gets on `node`, in the pod's order, each volume going to
    /// one claim at most (None: no volume left for that claim).
    fn static_choices<'s>(
        &'s self,
        node: &'s NodeInfo,
    ) -> impl Iterator<Item = (&'s DelayedClaim, Option<&'s Arc<PersistentVolume>>)> + 's {
        let mut taken: Vec<&str> = Vec::new();
        self.delayed
            .iter()
            .filter(|d| !provisions(&d.class))
            .map(move |d| {
                let found = self.available.iter().find(|pv| {
                    let name = pv.metadata.name.as_deref().unwrap_or("");
                    !taken.contains(&name)
                        && volume_serves(pv, &d.claim)
                        && volume_accepts(pv, node)
                });
                if let Some(pv) = found {
                    taken.push(pv.metadata.name.as_deref().unwrap_or(""));
                }
                (d, found)
            })
    }

    /// VolumeBinding's Filter on one node; a node may fail for both bound
    /// and unbound claims, and then carries both reasons.
    pub fn filter(&self, node: &NodeInfo) -> Result<(), Rejection> {
        let mut reasons = Vec::new();
        if self.bound.iter().any(|pv| !volume_accepts(pv, node)) {
            reasons.push(ERR_VOLUME_NODE_CONFLICT.to_string());
        }
        let provisionable = self
            .delayed
            .iter()
            .filter(|d| provisions(&d.class))
            .all(|d| topology_allows(d.class.allowed_topologies.as_deref(), node));
        if !provisionable || self.static_choices(node).any(|(_, pv)| pv.is_none()) {
            reasons.push(ERR_VOLUME_BIND_CONFLICT.to_string());
        }
        if reasons.is_empty() {
            return Ok(());
        }
        Err(Rejection {
            plugin: "VolumeBinding",
            code: Code::UnschedulableAndUnresolvable,
            reasons,
        })
    }
}

/// A static volume chosen for an unbound `WaitForFirstConsumer` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticBind {
    /// The PersistentVolume.
    pub volume: String,
    /// The claim's name (in the pod's namespace).
    pub claim: String,
    /// The claim's uid, for the volume's `claimRef`.
    pub claim_uid: String,
}

/// VolumeBinding's PreBind work for a pod placed on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreBind {
    /// Claims whose class provisions volumes: annotate with
    /// [`ANN_SELECTED_NODE`], then wait until bound.
    pub provision: Vec<String>,
    /// Claims of classes without a provisioner: pre-bind the chosen volume
    /// (its `claimRef`), then wait until the PV controller binds the claim.
    pub static_binds: Vec<StaticBind>,
}

impl PreBind {
    /// Whether there is nothing to do before binding the pod.
    pub fn is_empty(&self) -> bool {
        self.provision.is_empty() && self.static_binds.is_empty()
    }
}

/// PreBind's work for a pod placed on `node`: its unbound
/// `WaitForFirstConsumer` claims, to provision there or to pre-bind to the
/// available volume Filter found for them there.
pub fn pre_bind(pod: &Pod, vols: &Volumes, node: &NodeInfo) -> PreBind {
    let Ok(Some(pod_volumes)) = pre_filter(pod, vols) else {
        return PreBind::default();
    };
    let claim_name = |d: &DelayedClaim| d.claim.metadata.name.clone().unwrap_or_default();
    PreBind {
        provision: pod_volumes
            .delayed
            .iter()
            .filter(|d| provisions(&d.class))
            .map(claim_name)
            .collect(),
        static_binds: pod_volumes
            .static_choices(node)
            .filter_map(|(d, v)| {
                Some(StaticBind {
                    volume: v?.metadata.name.clone().unwrap_or_default(),
                    claim: claim_name(d),
                    claim_uid: d.claim.metadata.uid.clone().unwrap_or_default(),
                })
            })
            .collect(),
    }
}

/// How a claim the scheduler waits for stands, as PreBind's wait sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimWait {
    /// Bound: the wait for it is over.
    Bound,
    /// Still waiting for the provisioner and the PV controller.
    Pending,
    /// The provisioner gave up on the node (it removed the selected-node
    /// annotation): the pod must be scheduled again. Carries the message.
    Failed(String),
}

/// Where a claim annotated for `node` stands.
pub fn claim_wait(c: &PersistentVolumeClaim, node: &str) -> ClaimWait {
    if claim_bound(c) {
        return ClaimWait::Bound;
    }
    let selected = c
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_SELECTED_NODE))
        .map(String::as_str);
    if selected != Some(node) {
        return ClaimWait::Failed(format!(
            "provisioning failed for PVC \"{}\"",
            c.metadata.name.as_deref().unwrap_or("")
        ));
    }
    ClaimWait::Pending
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{node, pod};
    use crate::{Snapshot, schedule};
    use serde_json::{Value, json};

    fn claim(name: &str, class: Option<&str>, volume: Option<&str>) -> PersistentVolumeClaim {
        let mut c = json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"}});
        if let Some(cl) = class {
            c["spec"]["storageClassName"] = json!(cl);
        }
        if let Some(v) = volume {
            c["spec"]["volumeName"] = json!(v);
            c["status"]["phase"] = json!("Bound");
        }
        serde_json::from_value(c).unwrap()
    }

    fn volume(name: &str, class: &str, host: Option<&str>, phase: &str) -> PersistentVolume {
        let mut v = json!({"metadata": {"name": name, "labels": {"disk": "ssd"}},
            "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "2Gi"},
                     "hostPath": {"path": "/data"}},
            "status": {"phase": phase}});
        if let Some(h) = host {
            v["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [h]}]}]}});
        }
        serde_json::from_value(v).unwrap()
    }

    fn class(name: &str, provisioner: &str, mode: &str, topologies: Value) -> StorageClass {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "provisioner": provisioner,
            "volumeBindingMode": mode, "allowedTopologies": topologies}),
        )
        .unwrap()
    }

    fn uses(claims: &[&str]) -> Pod {
        let vols: Vec<Value> = claims
            .iter()
            .map(|c| json!({"name": format!("v-{c}"), "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        pod(json!({"volumes": vols}))
    }

    fn storage() -> Volumes {
        let mut v = Volumes::default();
        v.put_class(class(
            "local-path",
            "skiff.io/local-path",
            "WaitForFirstConsumer",
            json!(null),
        ));
        v.put_class(class(
            "zoned",
            "skiff.io/local-path",
            "WaitForFirstConsumer",
            json!([{"matchLabelExpressions": [{"key": "zone", "values": ["b"]}]}]),
        ));
        v.put_class(class(
            "fast",
            "skiff.io/local-path",
            "Immediate",
            json!(null),
        ));
        v.put_class(class(
            "manual",
            NO_PROVISIONER,
            "WaitForFirstConsumer",
            json!(null),
        ));
        v.put_claim(claim("bound-n2", Some("local-path"), Some("pv-n2")));
        v.put_claim(claim("bound-any", Some("fast"), Some("pv-any")));
        v.put_claim(claim("wait", Some("local-path"), None));
        v.put_claim(claim("wait-zoned", Some("zoned"), None));
        v.put_claim(claim("now", Some("fast"), None));
        v.put_claim(claim("no-class", None, None));
        v.put_claim(claim("wait-manual", Some("manual"), None));
        v.put_claim(claim("lost-class", Some("gone"), None));
        v.put_volume(volume("pv-n2", "local-path", Some("n2"), "Bound"));
        v.put_volume(volume("pv-any", "fast", None, "Bound"));
        v.put_volume(volume("manual-n3", "manual", Some("n3"), "Available"));
        v
    }

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::new(
            vec![
                node("n1", json!({"zone": "a"}), json!({})),
                node("n2", json!({"zone": "a"}), json!({})),
                node("n3", json!({"zone": "b"}), json!({})),
            ],
            &[],
        );
        s.volumes = storage();
        s
    }

    /// (name, the pod's claims, the feasible nodes or the FailedScheduling message).
    type Case = (
        &'static str,
        Vec<&'static str>,
        Result<&'static [&'static str], String>,
    );

    #[test]
    fn claims_decide_the_feasible_nodes_in_kubernetes_words() {
        let not_helpful =
            "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
        let cases: Vec<Case> = vec![
            ("no claims: every node", vec![], Ok(&["n1", "n2", "n3"])),
            (
                "missing claim",
                vec!["nope"],
                Err(format!(
                    "0/3 nodes are available: persistentvolumeclaim \"nope\" not found. {not_helpful}"
                )),
            ),
            (
                "unbound Immediate claim",
                vec!["now"],
                Err(format!(
                    "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. {not_helpful}"
                )),
            ),
            (
                "unbound claim without a class binds at once",
                vec!["no-class"],
                Err(format!(
                    "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. {not_helpful}"
                )),
            ),
            (
                "unknown class",
                vec!["lost-class"],
                Err(format!(
                    "0/3 nodes are available: storageclass.storage.k8s.io \"gone\" not found. {not_helpful}"
                )),
            ),
            ("bound volume pinned to n2", vec!["bound-n2"], Ok(&["n2"])),
            (
                "bound volume without affinity",
                vec!["bound-any"],
                Ok(&["n1", "n2", "n3"]),
            ),
            (
                "WaitForFirstConsumer: any node",
                vec!["wait"],
                Ok(&["n1", "n2", "n3"]),
            ),
            (
                "allowedTopologies honoured",
                vec!["wait-zoned"],
                Ok(&["n3"]),
            ),
            (
                "pinned volume and zoned class disagree",
                vec!["bound-n2", "wait-zoned"],
                Err(format!(
                    "0/3 nodes are available: 2 node(s) didn't find available persistent volumes to bind, \
                 2 node(s) had volume node affinity conflict. {not_helpful}"
                )),
            ),
            (
                "no provisioner: an available matching volume's node",
                vec!["wait-manual"],
                Ok(&["n3"]),
            ),
        ];
        let snap = snapshot();
        for (name, claims, want) in cases {
            let p = uses(&claims);
            let got = crate::find_feasible(&p, &snap);
            match want {
                Ok(nodes) => {
                    let mut got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                    got.sort();
                    assert_eq!(got, nodes, "{name}");
                }
                Err(msg) => {
                    assert!(got.is_err(), "{name}: {got:?}");
                    assert_eq!(
                        schedule(&p, &snap, 0).unwrap_err().to_string(),
                        msg,
                        "{name}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_claim_being_deleted_or_its_volume_missing_rejects_every_node() {
        let mut snap = snapshot();
        let mut c = claim("going", Some("local-path"), None);
        c.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-11-28T10:00:00Z".parse().unwrap(),
        ));
        snap.volumes.put_claim(c);
        snap.volumes
            .put_claim(claim("orphan", Some("local-path"), Some("pv-gone")));
        assert_eq!(
            pre_filter(&uses(&["going"]), &snap.volumes).unwrap_err(),
            "persistentvolumeclaim \"going\" is being deleted"
        );
        assert_eq!(
            pre_filter(&uses(&["orphan"]), &snap.volumes).unwrap_err(),
            "persistentvolume \"pv-gone\" not found"
        );
    }

    #[test]
    fn a_static_volume_serves_one_claim_only_when_it_fits() {
        let mut snap = snapshot();
        // Two claims of the manual class but only one volume on n3.
        snap.volumes
            .put_claim(claim("wait-manual-2", Some("manual"), None));
        let no_volume =
            "0/3 nodes are available: 3 node(s) didn't find available persistent volumes to bind.";
        let e = crate::find_feasible(&uses(&["wait-manual", "wait-manual-2"]), &snap).unwrap_err();
        assert_eq!(e.to_string(), no_volume);
        // A claim asking more than the volume holds does not get it.
        let mut big = claim("big", Some("manual"), None);
        big.spec
            .as_mut()
            .unwrap()
            .resources
            .as_mut()
            .unwrap()
            .requests
            .as_mut()
            .unwrap()
            .insert(
                "storage".into(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("5Gi".into()),
            );
        snap.volumes.put_claim(big);
        assert_eq!(
            crate::find_feasible(&uses(&["big"]), &snap)
                .unwrap_err()
                .to_string(),
            no_volume
        );
        // A selector the volume's labels do not match.
        let mut picky = claim("picky", Some("manual"), None);
        picky.spec.as_mut().unwrap().selector =
            Some(serde_json::from_value(json!({"matchLabels": {"disk": "hdd"}})).unwrap());
        snap.volumes.put_claim(picky);
        assert_eq!(
            crate::find_feasible(&uses(&["picky"]), &snap)
                .unwrap_err()
                .to_string(),
            no_volume
        );
    }

    #[test]
    fn pre_bind_provisions_or_prebinds_only_unbound_wait_for_first_consumer_claims() {
        let snap = snapshot();
        let n3 = snap.get("n3").unwrap();
        let mut vols = storage();
        let mut manual = claim("wait-manual", Some("manual"), None);
        manual.metadata.uid = Some("u-manual".into());
        vols.put_claim(manual);
        assert_eq!(
            pre_bind(
                &uses(&["bound-n2", "wait", "wait-zoned", "wait-manual"]),
                &vols,
                n3
            ),
            PreBind {
                provision: vec!["wait".into(), "wait-zoned".into()],
                static_binds: vec![StaticBind {
                    volume: "manual-n3".into(),
                    claim: "wait-manual".into(),
                    claim_uid: "u-manual".into()
                }],
            }
        );
        assert!(pre_bind(&uses(&["now"]), &vols, n3).is_empty());
        assert!(pre_bind(&uses(&["bound-any"]), &vols, n3).is_empty());
        // A generic ephemeral volume's claim is `<pod>-<volume>`.
        vols.put_claim(claim("p-scratch", Some("local-path"), None));
        let p = pod(
            json!({"volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]}),
        );
        assert_eq!(pre_bind(&p, &vols, n3).provision, vec!["p-scratch"]);
    }

    #[test]
    fn a_bound_volume_must_accept_the_node_the_pod_goes_to() {
        let pv = volume("pv-n2", "local-path", Some("n2"), "Bound");
        let n = |name: &str| node(name, json!({}), json!({}));
        assert_eq!(check_bound_volume(&pv, &n("n2")), Ok(()));
        assert_eq!(
            check_bound_volume(&pv, &n("n1")),
            Err("pv \"pv-n2\" node affinity doesn't match node \"n1\": no matching NodeSelectorTerms".into())
        );
        let anywhere = volume("pv-any", "fast", None, "Bound");
        assert_eq!(check_bound_volume(&anywhere, &n("n1")), Ok(()));
    }

    #[test]
    fn the_wait_ends_when_bound_and_fails_when_the_provisioner_gives_up() {
        let mut c = claim("data", Some("local-path"), None);
        c.metadata.annotations = Some([(ANN_SELECTED_NODE.to_string(), "n1".to_string())].into());
        assert_eq!(claim_wait(&c, "n1"), ClaimWait::Pending);
        assert_eq!(
            claim_wait(&c, "n2"),
            ClaimWait::Failed("provisioning failed for PVC \"data\"".into())
        );
        c.metadata.annotations = None;
        assert_eq!(
            claim_wait(&c, "n1"),
            ClaimWait::Failed("provisioning failed for PVC \"data\"".into())
        );
        // volumeName alone is not enough: the PV controller must finish the binding.
        c.spec.as_mut().unwrap().volume_name = Some("pv".into());
        assert_eq!(
            claim_wait(&c, "n1"),
            ClaimWait::Failed("provisioning failed for PVC \"data\"".into())
        );
        c.metadata.annotations = Some([(ANN_BIND_COMPLETED.to_string(), "yes".to_string())].into());
        assert_eq!(claim_wait(&c, "n1"), ClaimWait::Bound);
    }

    #[test]
    fn the_scheduler_retries_when_a_claim_gets_bound_and_hands_prebind_its_claims() {
        use crate::{Action, Scheduler};
        let t = |s: i64| -> jiff::Timestamp {
            "2026-01-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap()
                + jiff::SignedDuration::from_secs(s)
        };
        let ready = |n: &str| -> k8s_openapi::api::core::v1::Node {
            let mut n = node(n, json!({"zone": "a"}), json!({}));
            n.status.as_mut().unwrap().conditions = Some(vec![
                serde_json::from_value(json!({"type": "Ready", "status": "True"})).unwrap(),
            ]);
            n
        };
        let mut s = Scheduler::new();
        s.on_node(&ready("n1"), t(0));
        s.on_node(&ready("n2"), t(0));
        s.on_storage(|v| *v = storage(), t(0));
        s.on_pod(uses(&["now"]), t(0));
        match s.schedule_next(t(0)) {
            Some(Action::Unschedulable { message, .. }) => assert_eq!(
                message,
                "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. \
                 preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
            ),
            other => panic!("{other:?}"),
        }
        assert!(
            s.schedule_next(t(1)).is_none(),
            "unschedulable until something changes"
        );
        // The PV controller binds the claim to the volume pinned to n2.
        s.on_storage(
            |v| v.put_claim(claim("now", Some("fast"), Some("pv-n2"))),
            t(2),
        );
        match s.schedule_next(t(30)) {
            Some(Action::Bind { node, volumes, .. }) => {
                assert_eq!(node, "n2");
                assert!(volumes.is_empty(), "a bound claim needs no PreBind");
            }
            other => panic!("{other:?}"),
        }
        // A WaitForFirstConsumer claim goes to PreBind with the pod.
        let mut p = uses(&["wait"]);
        p.metadata.name = Some("q".into());
        s.on_pod(p, t(30));
        match s.schedule_next(t(30)) {
            Some(Action::Bind { volumes, .. }) => assert_eq!(volumes.provision, vec!["wait"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_read_write_once_pod_claim_in_use_rejects_every_node_unless_preemption_frees_it() {
        let mut solo = claim("solo", Some("fast"), Some("pv-any"));
        solo.spec.as_mut().unwrap().access_modes = Some(vec!["ReadWriteOncePod".into()]);
        let mut snap = snapshot();
        snap.volumes.put_claim(solo.clone());
        let mut holder = uses(&["solo"]);
        holder.metadata.name = Some("holder".into());
        let holder = crate::tests::bound(holder, "n1");
        let nodes: Vec<_> = snap.nodes.iter().map(|n| (*n.node).clone()).collect();
        let mut snap = Snapshot::new(nodes, &[holder]);
        let mut vols = storage();
        vols.put_claim(solo);
        snap.volumes = vols;
        // Free, the claim is fine; in use, nowhere fits, and preemption may help.
        assert!(crate::find_feasible(&uses(&["bound-any"]), &snap).is_ok());
        let p = uses(&["solo"]);
        assert_eq!(
            schedule(&p, &snap, 0).unwrap_err().to_string(),
            "0/3 nodes are available: 3 node has pod using PersistentVolumeClaim with the same name \
             and ReadWriteOncePod access mode. preemption: 0/3 nodes are available: \
             3 No preemption victims found for incoming pod."
        );
        let mut urgent = p.clone();
        urgent.spec.as_mut().unwrap().priority = Some(1000);
        let fit = crate::find_feasible(&urgent, &snap).unwrap_err();
        let c = crate::preempt(&urgent, &snap, &fit, 0).unwrap();
        assert_eq!(c.node, "n1");
        assert_eq!(
            c.victims.iter().map(|v| v.key.as_str()).collect::<Vec<_>>(),
            ["default/holder"]
        );
    }
}
