//! The pure part of the storage controllers: from the claims, volumes,
//! classes, nodes and pods observed, the writes that bring them to where
//! Kubernetes' PV controller, the `skiff.io/local-path` provisioner and the
//! PVC/PV protection controllers would take them. No IO and no clock.

use super::*;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelectorTerm, ObjectReference, PersistentVolume,
    PersistentVolumeClaim, PersistentVolumeClaimStatus, PersistentVolumeSpec,
    PersistentVolumeStatus, Pod, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_api::selector::LabelSelector;
use std::collections::{BTreeMap, BTreeSet};

/// Everything the planner looks at.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// Every PersistentVolumeClaim.
    pub claims: Vec<PersistentVolumeClaim>,
    /// Every PersistentVolume.
    pub volumes: Vec<PersistentVolume>,
    /// Every StorageClass.
    pub classes: Vec<StorageClass>,
    /// Every Node (for `selected-node` labels and the Immediate placement).
    pub nodes: Vec<Node>,
    /// Every Pod (for PVC protection).
    pub pods: Vec<Pod>,
}

/// What an Event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct About {
    /// `PersistentVolumeClaim` or `PersistentVolume`.
    pub kind: &'static str,
    /// The claim's namespace; empty for a volume.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// The object's UID.
    pub uid: String,
}

/// One write the plan asks for, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this (provisioned) volume.
    CreateVolume(Box<PersistentVolume>),
    /// Replace the volume's metadata and spec (optimistic on `resourceVersion`).
    UpdateVolume(Box<PersistentVolume>),
    /// Set the volume's status.
    VolumeStatus {
        /// The volume.
        name: String,
        /// The new status.
        status: PersistentVolumeStatus,
    },
    /// Delete the volume (its reclaim policy is Delete and its claim is gone).
    DeleteVolume {
        /// The volume.
        name: String,
        /// Its UID (a precondition).
        uid: String,
    },
    /// Replace the claim's metadata and spec (optimistic on `resourceVersion`).
    UpdateClaim(Box<PersistentVolumeClaim>),
    /// Set the claim's status.
    ClaimStatus {
        /// The claim's namespace.
        namespace: String,
        /// The claim's name.
        name: String,
        /// The new status.
        status: PersistentVolumeClaimStatus,
    },
    /// Record an Event.
    Event {
        /// What it is about.
        about: About,
        /// `Normal` or `Warning`.
        type_: &'static str,
        /// The reason, in Kubernetes' words.
        reason: &'static str,
        /// The message, in Kubernetes' words.
        message: String,
    },
}

fn ann<'a>(m: &'a ObjectMeta, k: &str) -> Option<&'a str> {
    m.annotations.as_ref()?.get(k).map(String::as_str)
}

fn set_ann(m: &mut ObjectMeta, k: &str, v: &str) {
    m.annotations
        .get_or_insert_with(Default::default)
        .insert(k.into(), v.into());
}

fn has_finalizer(m: &ObjectMeta, f: &str) -> bool {
    m.finalizers
        .as_ref()
        .is_some_and(|v| v.iter().any(|x| x == f))
}

fn without_finalizer(m: &mut ObjectMeta, f: &str) {
    if let Some(v) = m.finalizers.as_mut() {
        v.retain(|x| x != f);
    }
}

fn name(m: &ObjectMeta) -> &str {
    m.name.as_deref().unwrap_or("")
}

fn uid(m: &ObjectMeta) -> &str {
    m.uid.as_deref().unwrap_or("")
}

fn ns(m: &ObjectMeta) -> &str {
    m.namespace.as_deref().unwrap_or("")
}

/// A quantity in nano-units, 0 when absent or unparsable.
fn nanos(q: Option<&Quantity>) -> i128 {
    q.and_then(|q| skiff_api::validation::parse_quantity(&q.0).ok())
        .map_or(0, |q| q.nanos)
}

/// A claim's or volume's class: the beta annotation, else `spec.storageClassName`
/// (`spec_class`), else "".
fn class_of<'a>(m: &'a ObjectMeta, spec_class: Option<&'a str>) -> &'a str {
    ann(m, ANN_BETA_STORAGE_CLASS).or(spec_class).unwrap_or("")
}

/// The claim's class: the beta annotation, else `spec.storageClassName`, else "".
pub fn claim_class(c: &PersistentVolumeClaim) -> &str {
    let spec_class = c
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref());
    class_of(&c.metadata, spec_class)
}

/// The volume's class: the beta annotation, else `spec.storageClassName`, else "".
pub fn volume_class(v: &PersistentVolume) -> &str {
    let spec_class = v
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref());
    class_of(&v.metadata, spec_class)
}

fn claim_request(c: &PersistentVolumeClaim) -> i128 {
    nanos(
        c.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage")),
    )
}

fn volume_capacity(v: &PersistentVolume) -> i128 {
    nanos(
        v.spec
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage")),
    )
}

/// Access modes as a set (none when unset).
fn mode_set(modes: Option<&[String]>) -> BTreeSet<&str> {
    modes.into_iter().flatten().map(String::as_str).collect()
}

fn claim_modes(c: &PersistentVolumeClaim) -> BTreeSet<&str> {
    mode_set(c.spec.as_ref().and_then(|s| s.access_modes.as_deref()))
}

fn volume_modes(v: &PersistentVolume) -> BTreeSet<&str> {
    mode_set(v.spec.as_ref().and_then(|s| s.access_modes.as_deref()))
}

fn claim_volume_mode(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem")
}

fn volume_volume_mode(v: &PersistentVolume) -> &str {
    v.spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem")
}

fn claim_volume_name(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("")
}

fn claim_ref(v: &PersistentVolume) -> Option<&ObjectReference> {
    v.spec.as_ref()?.claim_ref.as_ref()
}

fn volume_phase(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn reclaim_policy(v: &PersistentVolume) -> &str {
    v.spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain")
}

/// Whether the volume's claimRef names the claim (and its UID, when set) — `IsVolumeBoundToClaim`.
pub fn volume_bound_to_claim(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let Some(r) = claim_ref(v) else {
        return false;
    };
    r.name.as_deref() == Some(name(&c.metadata))
        && r.namespace.as_deref().unwrap_or("") == ns(&c.metadata)
        && r.uid
            .as_deref()
            .is_none_or(|u| u.is_empty() || u == uid(&c.metadata))
}

/// Whether the volume's required node affinity admits the node named `node` with `labels`.
fn affinity_admits(v: &PersistentVolume, node: &str, labels: &BTreeMap<String, String>) -> bool {
    let terms = v
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .map(|r| r.node_selector_terms.as_slice());
    match terms {
        None => true,
        Some(terms) => terms.iter().any(|t| {
            skiff_api::node_match::term_matches(t, node, |k| labels.get(k).map(String::as_str))
        }),
    }
}

/// The hostname a node is pinned by: its `kubernetes.io/hostname` label, else its name.
fn hostname_of(node: &str, labels: &BTreeMap<String, String>) -> String {
    labels
        .get(HOSTNAME_LABEL)
        .cloned()
        .unwrap_or_else(|| node.to_string())
}

/// The node a volume is pinned to by a `kubernetes.io/hostname In [x]` term, if any.
pub fn pinned_hostname(v: &PersistentVolume) -> Option<&str> {
    let terms = &v
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .find(|e| e.key == HOSTNAME_LABEL && e.operator == "In")
        .and_then(|e| e.values.as_ref()?.first())
        .map(String::as_str)
}

/// Why a volume cannot serve a claim that names it (`checkVolumeSatisfyClaim`), if it cannot.
pub fn check_satisfies(v: &PersistentVolume, c: &PersistentVolumeClaim) -> Option<String> {
    if v.metadata.deletion_timestamp.is_some() {
        return Some(format!(
            "the volume is marked for deletion \"{}\"",
            name(&v.metadata)
        ));
    }
    if volume_capacity(v) < claim_request(c) {
        return Some("requested PV is too small".into());
    }
    if volume_class(v) != claim_class(c) {
        return Some("storageClassName does not match".into());
    }
    if volume_volume_mode(v) != claim_volume_mode(c) {
        return Some("incompatible volumeMode".into());
    }
    if !claim_modes(c).is_subset(&volume_modes(v)) {
        return Some("incompatible accessMode".into());
    }
    None
}

/// The best volume for an unbound claim (`findBestMatchForClaim`): volumes are
/// grouped by their access-mode sets; the groups holding every mode the claim
/// asks for are tried fewest modes first. In a group, a volume pre-bound to the
/// claim wins outright (if big enough, of the class, and admitting `node`);
/// otherwise the smallest Available, unclaimed volume of the class whose labels
/// match the claim's selector and whose capacity covers the request. With
/// `delay_binding` and no `node`, only pre-bound volumes are taken (the
/// scheduler chooses the rest).
pub fn find_best_match<'a>(
    c: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    delay_binding: bool,
    node: Option<(&str, &BTreeMap<String, String>)>,
) -> Option<&'a PersistentVolume> {
    let wanted = claim_modes(c);
    let mut groups: BTreeMap<(usize, Vec<&str>), Vec<&PersistentVolume>> = BTreeMap::new();
    for v in volumes {
        let modes = volume_modes(v);
        if wanted.is_subset(&modes) {
            groups
                .entry((modes.len(), modes.into_iter().collect()))
                .or_default()
                .push(v);
        }
    }
    let requested = claim_request(c);
    let class = claim_class(c);
    let selector = c
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .map(|s| LabelSelector::from_object(&s).unwrap_or_else(|_| LabelSelector::nothing()));
    for (_, mut group) in groups {
        group.sort_by(|a, b| name(&a.metadata).cmp(name(&b.metadata)));
        let mut smallest: Option<(&PersistentVolume, i128)> = None;
        for v in group {
            let qty = volume_capacity(v);
            if volume_volume_mode(v) != claim_volume_mode(c)
                || v.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            let node_ok = node.is_none_or(|(n, l)| affinity_admits(v, n, l));
            if volume_bound_to_claim(v, c) {
                if qty < requested || volume_class(v) != class {
                    continue;
                }
                if !node_ok {
                    return None;
                }
                return Some(v);
            }
            if node.is_none() && delay_binding {
                continue;
            }
            if volume_phase(v) != "Available" || claim_ref(v).is_some() {
                continue;
            }
            if let Some(sel) = &selector {
                let labels = v.metadata.labels.clone().unwrap_or_default();
                if !sel.matches(|k| labels.get(k).map(String::as_str)) {
                    continue;
                }
            }
            if volume_class(v) != class || !node_ok {
                continue;
            }
            if qty >= requested && smallest.is_none_or(|(_, s)| s > qty) {
                smallest = Some((v, qty));
            }
        }
        if let Some((v, _)) = smallest {
            return Some(v);
        }
    }
    None
}

/// The working state of one planning round: copies updated as actions are
/// planned, so later steps see what earlier ones decided.
struct Round<'o> {
    claims: BTreeMap<String, PersistentVolumeClaim>,
    volumes: BTreeMap<String, PersistentVolume>,
    classes: BTreeMap<&'o str, &'o StorageClass>,
    nodes: BTreeMap<&'o str, &'o Node>,
    pods: &'o [Pod],
    actions: Vec<Action>,
    opts: &'o Options,
}

/// How the planner provisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The node storage dir when a class has no `nodePath` parameter.
    pub default_node_path: String,
}

fn claim_about(c: &PersistentVolumeClaim) -> About {
    About {
        kind: "PersistentVolumeClaim",
        namespace: ns(&c.metadata).into(),
        name: name(&c.metadata).into(),
        uid: uid(&c.metadata).into(),
    }
}

fn volume_about(v: &PersistentVolume) -> About {
    About {
        kind: "PersistentVolume",
        namespace: String::new(),
        name: name(&v.metadata).into(),
        uid: uid(&v.metadata).into(),
    }
}

fn node_labels(n: &Node) -> BTreeMap<String, String> {
    n.metadata.labels.clone().unwrap_or_default()
}

/// Whether a node is Ready and schedulable (a home for an Immediate volume).
pub(super) fn node_ready(n: &Node) -> bool {
    !n.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
        && n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl Round<'_> {
    fn event(&mut self, about: About, type_: &'static str, reason: &'static str, message: String) {
        self.actions.push(Action::Event {
            about,
            type_,
            reason,
            message,
        });
    }

    fn set_volume_status(&mut self, vname: &str, phase: &str, message: Option<String>) {
        let v = self.volumes.get_mut(vname).expect("volume in round");
        let mut status = v.status.clone().unwrap_or_default();
        if status.phase.as_deref() == Some(phase) && status.message == message {
            return;
        }
        status.phase = Some(phase.into());
        status.message = message;
        v.status = Some(status.clone());
        self.actions.push(Action::VolumeStatus {
            name: vname.into(),
            status,
        });
    }

    /// `updateClaimStatus`: the phase; without a volume, no access modes or
    /// capacity; with one, its access modes, and its capacity when the claim
    /// becomes Bound (not after, so a resize is not clobbered).
    fn set_claim_status(&mut self, key: &str, phase: &str, volume: Option<&PersistentVolume>) {
        let c = self.claims.get_mut(key).expect("claim in round");
        let cur = c.status.clone().unwrap_or_default();
        let mut new = cur.clone();
        new.phase = Some(phase.into());
        match volume.and_then(|v| v.spec.as_ref()) {
            None => {
                new.access_modes = None;
                new.capacity = None;
            }
            Some(spec) => {
                new.access_modes = spec.access_modes.clone();
                if cur.phase.as_deref() != Some(phase) {
                    new.capacity = spec.capacity.clone();
                }
            }
        }
        if c.status.as_ref() == Some(&new) {
            return;
        }
        c.status = Some(new.clone());
        self.actions.push(Action::ClaimStatus {
            namespace: ns(&c.metadata).into(),
            name: name(&c.metadata).into(),
            status: new,
        });
    }

    fn claim_phase(&mut self, key: &str, phase: &str) {
        self.set_claim_status(key, phase, None);
    }

    fn update_volume(&mut self, v: PersistentVolume) {
        let n = name(&v.metadata).to_string();
        self.volumes.insert(n, v.clone());
        self.actions.push(Action::UpdateVolume(Box::new(v)));
    }

    fn update_claim(&mut self, key: &str, c: PersistentVolumeClaim) {
        self.claims.insert(key.into(), c.clone());
        self.actions.push(Action::UpdateClaim(Box::new(c)));
    }

    /// `bind`: volume → claim (claimRef, bound-by-controller), volume Bound,
    /// claim → volume (volumeName, bind-completed, bound-by-controller), claim Bound.
    fn bind(&mut self, vname: &str, key: &str) {
        let c = self.claims[key].clone();
        let mut v = self.volumes[vname].clone();
        let already = volume_bound_to_claim(&v, &c);
        let r = claim_ref(&v);
        if r.is_none_or(|r| {
            r.name.as_deref() != Some(name(&c.metadata))
                || r.namespace.as_deref().unwrap_or("") != ns(&c.metadata)
                || r.uid.as_deref() != Some(uid(&c.metadata))
        }) {
            v.spec.get_or_insert_with(Default::default).claim_ref = Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(ns(&c.metadata).into()),
                name: Some(name(&c.metadata).into()),
                uid: Some(uid(&c.metadata).into()),
                resource_version: c.metadata.resource_version.clone(),
                ..Default::default()
            });
            if !already {
                set_ann(&mut v.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
            }
            self.update_volume(v.clone());
        }
        self.set_volume_status(vname, "Bound", None);

        let mut nc = c.clone();
        let mut dirty = false;
        if claim_volume_name(&nc) != vname {
            nc.spec.get_or_insert_with(Default::default).volume_name = Some(vname.into());
            set_ann(&mut nc.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
            dirty = true;
        }
        if ann(&nc.metadata, ANN_BIND_COMPLETED).is_none() {
            set_ann(&mut nc.metadata, ANN_BIND_COMPLETED, "yes");
            dirty = true;
        }
        if dirty {
            self.update_claim(key, nc);
        }
        self.set_claim_status(key, "Bound", Some(&v));
    }

    /// `syncVolume`.
    fn sync_volume(&mut self, vname: &str) {
        let v = self.volumes[vname].clone();
        let Some(r) = claim_ref(&v).cloned() else {
            self.set_volume_status(vname, "Available", None);
            return;
        };
        if r.uid.as_deref().unwrap_or("").is_empty() {
            // Pre-bound by name: the claim's sync binds it.
            self.set_volume_status(vname, "Available", None);
            return;
        }
        let key = format!(
            "{}/{}",
            r.namespace.as_deref().unwrap_or(""),
            r.name.as_deref().unwrap_or("")
        );
        let claim = self
            .claims
            .get(&key)
            .filter(|c| c.metadata.uid == r.uid)
            .cloned();
        let Some(c) = claim else {
            let phase = volume_phase(&v);
            if phase != "Released" && phase != "Failed" {
                self.set_volume_status(vname, "Released", None);
            }
            self.reclaim(vname);
            return;
        };
        let bound_to = claim_volume_name(&c);
        if bound_to.is_empty() {
            if volume_volume_mode(&v) != claim_volume_mode(&c) {
                // The claim's sync will never pick this volume; say why on both.
                self.event(
                    volume_about(&v),
                    "Warning",
                    "VolumeMismatch",
                    format!(
                        "Cannot bind PersistentVolume to requested PersistentVolumeClaim \"{}\" due to incompatible volumeMode.",
                        name(&c.metadata)
                    ),
                );
                self.event(
                    claim_about(&c),
                    "Warning",
                    "VolumeMismatch",
                    format!(
                        "Cannot bind PersistentVolume \"{vname}\" to requested PersistentVolumeClaim due to incompatible volumeMode."
                    ),
                );
            }
            // Otherwise the claim's sync binds it.
            return;
        }
        if bound_to == vname {
            self.set_volume_status(vname, "Bound", None);
            return;
        }
        // The claim is bound to another volume.
        if ann(&v.metadata, ANN_PROVISIONED_BY).is_some() && reclaim_policy(&v) == "Delete" {
            // Provisioned for this claim, which got another: not needed.
            if !matches!(volume_phase(&v), "Released" | "Failed") {
                self.set_volume_status(vname, "Released", None);
            }
            self.reclaim(vname);
            return;
        }
        if ann(&v.metadata, ANN_BOUND_BY_CONTROLLER).is_some() {
            let mut nv = v.clone();
            if let Some(s) = nv.spec.as_mut() {
                s.claim_ref = None;
            }
            if let Some(a) = nv.metadata.annotations.as_mut() {
                a.remove(ANN_BOUND_BY_CONTROLLER);
            }
            self.update_volume(nv);
            self.set_volume_status(vname, "Available", None);
        } else {
            let mut nv = v.clone();
            if let Some(r) = nv.spec.as_mut().and_then(|s| s.claim_ref.as_mut()) {
                r.uid = Some(String::new());
            }
            self.update_volume(nv);
            self.set_volume_status(vname, "Available", None);
        }
    }

    /// `reclaimVolume` for a Released volume.
    fn reclaim(&mut self, vname: &str) {
        let v = self.volumes[vname].clone();
        if volume_phase(&v) != "Released" || v.metadata.deletion_timestamp.is_some() {
            return;
        }
        match reclaim_policy(&v) {
            "Delete" => match ann(&v.metadata, ANN_PROVISIONED_BY) {
                Some(LOCAL_PATH_PROVISIONER) => self.actions.push(Action::DeleteVolume {
                    name: vname.into(),
                    uid: uid(&v.metadata).into(),
                }),
                // An external provisioner deletes its own volumes.
                Some(p) if !p.starts_with("kubernetes.io/") => {}
                _ => {
                    let msg = format!(
                        "error getting deleter volume plugin for volume \"{vname}\": no deletable volume plugin matched"
                    );
                    self.event(
                        volume_about(&v),
                        "Warning",
                        "VolumeFailedDelete",
                        msg.clone(),
                    );
                    self.set_volume_status(vname, "Failed", Some(msg));
                }
            },
            "Recycle" => {
                let msg = "No recycler plugin found for the volume!".to_string();
                self.event(
                    volume_about(&v),
                    "Warning",
                    "VolumeFailedRecycle",
                    msg.clone(),
                );
                self.set_volume_status(vname, "Failed", Some(msg));
            }
            _ => {}
        }
    }

    /// The default class (`is-default-class: "true"`), the newest if several.
    fn default_class(&self) -> Option<String> {
        self.classes
            .values()
            .filter(|c| {
                ann(&c.metadata, ANN_DEFAULT_CLASS) == Some("true")
                    || ann(&c.metadata, ANN_BETA_DEFAULT_CLASS) == Some("true")
            })
            .max_by(|a, b| {
                (
                    a.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    name(&b.metadata),
                )
                    .cmp(&(
                        b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                        name(&a.metadata),
                    ))
            })
            .map(|c| name(&c.metadata).to_string())
    }

    fn class_of(&self, c: &PersistentVolumeClaim) -> Option<&StorageClass> {
        self.classes.get(claim_class(c)).copied()
    }

    fn delay_binding(&self, c: &PersistentVolumeClaim) -> bool {
        let class = claim_class(c);
        !class.is_empty()
            && self
                .class_of(c)
                .and_then(|s| s.volume_binding_mode.as_deref())
                == Some("WaitForFirstConsumer")
    }

    /// `syncClaim`.
    fn sync_claim(&mut self, key: &str) {
        let c = self.claims[key].clone();
        if c.metadata.deletion_timestamp.is_some() {
            return;
        }
        if ann(&c.metadata, ANN_BIND_COMPLETED).is_none() {
            self.sync_unbound_claim(key, &c);
        } else {
            self.sync_bound_claim(key, &c);
        }
    }

    fn sync_unbound_claim(&mut self, key: &str, c: &PersistentVolumeClaim) {
        let wanted = claim_volume_name(c).to_string();
        if wanted.is_empty() {
            let delay = self.delay_binding(c);
            let selected = ann(&c.metadata, ANN_SELECTED_NODE).map(str::to_string);
            let labels = selected.as_deref().map(|n| {
                self.nodes
                    .get(n)
                    .map(|n| node_labels(n))
                    .unwrap_or_else(|| {
                        BTreeMap::from([(HOSTNAME_LABEL.to_string(), n.to_string())])
                    })
            });
            let node = match (&selected, &labels) {
                (Some(n), Some(l)) if delay => Some((n.as_str(), l)),
                _ => None,
            };
            let found = find_best_match(c, self.volumes.values(), delay, node)
                .map(|v| name(&v.metadata).to_string());
            if let Some(v) = found {
                self.bind(&v, key);
                return;
            }
            if claim_class_unset(c)
                && let Some(default) = self.default_class()
            {
                // Retroactive default class assignment: a claim made before
                // any default class existed gets it now.
                let mut nc = c.clone();
                nc.spec
                    .get_or_insert_with(Default::default)
                    .storage_class_name = Some(default);
                self.update_claim(key, nc);
                return;
            }
            if delay && selected.is_none() {
                let waiting: Vec<&str> = self
                    .pods
                    .iter()
                    .filter(|p| {
                        p.spec
                            .as_ref()
                            .is_some_and(|s| s.node_name.as_deref().is_none_or(str::is_empty))
                            && !matches!(
                                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                                Some("Succeeded" | "Failed")
                            )
                            && pod_names_claim(p, c)
                    })
                    .map(|p| name(&p.metadata))
                    .collect();
                let (reason, message) = match waiting.as_slice() {
                    [] => (
                        "WaitForFirstConsumer",
                        "waiting for first consumer to be created before binding".to_string(),
                    ),
                    [one] => (
                        "WaitForPodScheduled",
                        format!("waiting for pod {one} to be scheduled"),
                    ),
                    many => (
                        "WaitForPodScheduled",
                        format!("waiting for pods {} to be scheduled", many.join(",")),
                    ),
                };
                self.event(claim_about(c), "Normal", reason, message);
            } else if !claim_class(c).is_empty() {
                self.provision_claim(key, c);
            } else {
                self.event(
                    claim_about(c),
                    "Normal",
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set"
                        .into(),
                );
            }
            self.claim_phase(key, "Pending");
            return;
        }
        let Some(v) = self.volumes.get(&wanted).cloned() else {
            self.claim_phase(key, "Pending");
            return;
        };
        if claim_ref(&v).is_none() {
            if let Some(why) = check_satisfies(&v, c) {
                self.event(
                    claim_about(c),
                    "Warning",
                    "VolumeMismatch",
                    format!("Cannot bind to requested volume \"{wanted}\": {why}"),
                );
                self.claim_phase(key, "Pending");
            } else {
                self.bind(&wanted, key);
            }
        } else if volume_bound_to_claim(&v, c) {
            self.bind(&wanted, key);
        } else {
            self.event(
                claim_about(c),
                "Warning",
                "FailedBinding",
                format!("volume \"{wanted}\" already bound to a different claim."),
            );
            self.claim_phase(key, "Pending");
        }
    }

    fn sync_bound_claim(&mut self, key: &str, c: &PersistentVolumeClaim) {
        let vname = claim_volume_name(c).to_string();
        let lost = |this: &mut Self, reason: &'static str, msg: &str| {
            if c.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Lost") {
                this.event(claim_about(c), "Warning", reason, msg.into());
            }
            this.claim_phase(key, "Lost");
        };
        if vname.is_empty() {
            return lost(
                self,
                "ClaimLost",
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            );
        }
        let Some(v) = self.volumes.get(&vname).cloned() else {
            return lost(
                self,
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            );
        };
        match claim_ref(&v) {
            None => self.bind(&vname, key),
            Some(r) if r.uid.as_deref() == Some(uid(&c.metadata)) => self.bind(&vname, key),
            Some(_) => lost(
                self,
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly",
            ),
        }
    }

    /// `provisionClaim`: every provisioner is external to the PV controller,
    /// which marks the claim with it and waits.
    fn provision_claim(&mut self, key: &str, c: &PersistentVolumeClaim) {
        let class_name = claim_class(c).to_string();
        let Some(class) = self.class_of(c) else {
            self.event(
                claim_about(c),
                "Warning",
                "ProvisioningFailed",
                format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
            );
            return;
        };
        let p = class.provisioner.clone();
        if p.starts_with("kubernetes.io/") {
            self.event(
                claim_about(c),
                "Warning",
                "ProvisioningFailed",
                format!("no volume plugin matched name: {p}"),
            );
            return;
        }
        if ann(&c.metadata, ANN_STORAGE_PROVISIONER) != Some(p.as_str())
            || ann(&c.metadata, ANN_BETA_STORAGE_PROVISIONER) != Some(p.as_str())
        {
            let mut nc = c.clone();
            set_ann(&mut nc.metadata, ANN_BETA_STORAGE_PROVISIONER, &p);
            set_ann(&mut nc.metadata, ANN_STORAGE_PROVISIONER, &p);
            self.update_claim(key, nc);
        }
        self.event(
            claim_about(c),
            "Normal",
            "ExternalProvisioning",
            format!(
                "Waiting for a volume to be created either by the external provisioner '{p}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
            ),
        );
    }

    /// The `skiff.io/local-path` provisioner, for one claim marked for it.
    fn local_path_provision(&mut self, key: &str) {
        let c = self.claims[key].clone();
        if c.metadata.deletion_timestamp.is_some()
            || !claim_volume_name(&c).is_empty()
            || ann(&c.metadata, ANN_STORAGE_PROVISIONER) != Some(LOCAL_PATH_PROVISIONER)
        {
            return;
        }
        let pv_name = provisioned_volume_name(uid(&c.metadata));
        if self.volumes.contains_key(&pv_name) {
            return;
        }
        let Some(class) = self.class_of(&c).cloned() else {
            return;
        };
        if class.provisioner != LOCAL_PATH_PROVISIONER {
            return;
        }
        let fail = |this: &mut Self, why: String| {
            this.event(
                claim_about(&c),
                "Warning",
                "ProvisioningFailed",
                format!(
                    "failed to provision volume with StorageClass \"{}\": {why}",
                    name(&class.metadata)
                ),
            );
        };
        let wffc = class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
        let hostname = match ann(&c.metadata, ANN_SELECTED_NODE) {
            Some(n) if wffc => match self.nodes.get(n) {
                Some(node) => hostname_of(n, &node_labels(node)),
                None => n.to_string(),
            },
            _ if wffc => return,
            _ => match self.least_loaded_node() {
                Some(h) => h,
                None => return fail(self, "no Ready node to place the volume on".into()),
            },
        };
        if let Some(m) = claim_modes(&c)
            .into_iter()
            .find(|m| !matches!(*m, "ReadWriteOnce" | "ReadWriteOncePod"))
        {
            return fail(
                self,
                format!(
                    "access mode {m} is not supported: only ReadWriteOnce and ReadWriteOncePod"
                ),
            );
        }
        self.event(
            claim_about(&c),
            "Normal",
            "Provisioning",
            format!("External provisioner is provisioning volume for claim \"{key}\""),
        );
        let base = class
            .parameters
            .as_ref()
            .and_then(|p| p.get(NODE_PATH_PARAMETER))
            .cloned()
            .unwrap_or_else(|| self.opts.default_node_path.clone());
        let pv = local_path_volume(&c, &class, &hostname, &base);
        self.volumes.insert(pv_name.clone(), pv.clone());
        self.actions.push(Action::CreateVolume(Box::new(pv)));
        self.event(
            claim_about(&c),
            "Normal",
            "ProvisioningSucceeded",
            format!("Successfully provisioned volume {pv_name}"),
        );
    }

    /// The Ready, schedulable node holding the fewest volumes (then by name).
    fn least_loaded_node(&self) -> Option<String> {
        let mut load: BTreeMap<String, usize> = BTreeMap::new();
        for v in self.volumes.values() {
            if let Some(h) = pinned_hostname(v) {
                *load.entry(h.to_string()).or_default() += 1;
            }
        }
        self.nodes
            .iter()
            .filter(|(_, n)| node_ready(n))
            .map(|(name, n)| hostname_of(name, &node_labels(n)))
            .min_by_key(|h| (load.get(h).copied().unwrap_or(0), h.clone()))
    }

    /// The PV and PVC protection controllers; and the cleanup finalizer of
    /// provisioned volumes, present exactly while their policy is Delete (as
    /// the external provisioners' finalizer is), so that deleting a Retain
    /// volume leaves its data on the node.
    fn protection(&mut self) {
        let names: Vec<String> = self.volumes.keys().cloned().collect();
        for n in &names {
            let v = &self.volumes[n];
            if v.metadata.deletion_timestamp.is_some()
                || ann(&v.metadata, ANN_PROVISIONED_BY) != Some(LOCAL_PATH_PROVISIONER)
            {
                continue;
            }
            let want = reclaim_policy(v) == "Delete";
            if want != has_finalizer(&v.metadata, LOCAL_PATH_CLEANUP_FINALIZER) {
                let mut nv = v.clone();
                if want {
                    nv.metadata
                        .finalizers
                        .get_or_insert_with(Vec::new)
                        .push(LOCAL_PATH_CLEANUP_FINALIZER.into());
                } else {
                    without_finalizer(&mut nv.metadata, LOCAL_PATH_CLEANUP_FINALIZER);
                }
                self.update_volume(nv);
            }
        }
        for n in names {
            let v = &self.volumes[&n];
            if v.metadata.deletion_timestamp.is_some()
                && has_finalizer(&v.metadata, PV_PROTECTION_FINALIZER)
                && volume_phase(v) != "Bound"
            {
                let mut nv = v.clone();
                without_finalizer(&mut nv.metadata, PV_PROTECTION_FINALIZER);
                self.update_volume(nv);
            }
        }
        let keys: Vec<String> = self.claims.keys().cloned().collect();
        for k in keys {
            let c = &self.claims[&k];
            if c.metadata.deletion_timestamp.is_some()
                && has_finalizer(&c.metadata, PVC_PROTECTION_FINALIZER)
                && !self.pods.iter().any(|p| pod_uses_claim(p, c))
            {
                let mut nc = c.clone();
                without_finalizer(&mut nc.metadata, PVC_PROTECTION_FINALIZER);
                self.update_claim(&k, nc);
            }
        }
    }
}

/// Whether the claim has no class at all (absent, not `""`, and no beta annotation).
fn claim_class_unset(c: &PersistentVolumeClaim) -> bool {
    ann(&c.metadata, ANN_BETA_STORAGE_CLASS).is_none()
        && c.spec
            .as_ref()
            .is_none_or(|s| s.storage_class_name.is_none())
}

/// Whether one of the pod's volumes names the claim (same namespace).
fn pod_names_claim(p: &Pod, c: &PersistentVolumeClaim) -> bool {
    ns(&p.metadata) == ns(&c.metadata)
        && p.spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .any(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|s| s.claim_name == name(&c.metadata))
            })
}

/// Whether a pod keeps a claim from being deleted (`podUsesPVC`): it is
/// scheduled, in the claim's namespace, and one of its volumes names the claim.
/// (Kubernetes looks at the phase only for generic ephemeral volumes.)
pub fn pod_uses_claim(p: &Pod, c: &PersistentVolumeClaim) -> bool {
    let Some(spec) = p.spec.as_ref() else {
        return false;
    };
    ns(&p.metadata) == ns(&c.metadata)
        && spec.node_name.as_deref().is_some_and(|n| !n.is_empty())
        && spec.volumes.iter().flatten().any(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|s| s.claim_name == name(&c.metadata))
                || (v.ephemeral.is_some()
                    && format!("{}-{}", name(&p.metadata), v.name) == name(&c.metadata)
                    && !matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    ))
        })
}

/// The name of the volume provisioned for the claim with this UID: `pvc-<uid>`.
pub fn provisioned_volume_name(claim_uid: &str) -> String {
    format!("pvc-{claim_uid}")
}

/// The directory of a provisioned volume: `<node path>/pvc-<uid>_<namespace>_<claim>`.
pub fn local_path_dir(node_path: &str, c: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}_{}_{}",
        node_path.trim_end_matches('/'),
        provisioned_volume_name(uid(&c.metadata)),
        ns(&c.metadata),
        name(&c.metadata)
    )
}

/// The PV the `skiff.io/local-path` provisioner makes for a claim on the node
/// with `hostname`, under `node_path`.
pub fn local_path_volume(
    c: &PersistentVolumeClaim,
    class: &StorageClass,
    hostname: &str,
    node_path: &str,
) -> PersistentVolume {
    let spec = c.spec.clone().unwrap_or_default();
    let capacity = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .unwrap_or_else(|| Quantity("0".into()));
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(provisioned_volume_name(uid(&c.metadata))),
            annotations: Some(BTreeMap::from([(
                ANN_PROVISIONED_BY.to_string(),
                LOCAL_PATH_PROVISIONER.to_string(),
            )])),
            finalizers: (class.reclaim_policy.as_deref().unwrap_or("Delete") == "Delete")
                .then(|| vec![LOCAL_PATH_CLEANUP_FINALIZER.to_string()]),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes.clone(),
            capacity: Some(BTreeMap::from([("storage".to_string(), capacity)])),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(ns(&c.metadata).into()),
                name: Some(name(&c.metadata).into()),
                uid: Some(uid(&c.metadata).into()),
                resource_version: c.metadata.resource_version.clone(),
                ..Default::default()
            }),
            host_path: Some(HostPathVolumeSource {
                path: local_path_dir(node_path, c),
                type_: Some("DirectoryOrCreate".into()),
            }),
            mount_options: class.mount_options.clone(),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(k8s_openapi::api::core::v1::NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![
                            k8s_openapi::api::core::v1::NodeSelectorRequirement {
                                key: HOSTNAME_LABEL.into(),
                                operator: "In".into(),
                                values: Some(vec![hostname.into()]),
                            },
                        ]),
                        ..Default::default()
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: Some(name(&class.metadata).into()),
            volume_mode: Some(
                spec.volume_mode
                    .clone()
                    .unwrap_or_else(|| "Filesystem".into()),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

/// Plans one round over everything observed: volumes are synced first, then
/// claims (binding and marking for provisioning), then the local-path
/// provisioner provisions and deletes, then the protection finalizers come off.
pub fn plan(obs: &Observed, opts: &Options) -> Vec<Action> {
    let mut claims: Vec<&PersistentVolumeClaim> = obs.claims.iter().collect();
    claims.sort_by(|a, b| {
        (
            a.metadata.creation_timestamp.as_ref().map(|t| t.0),
            crate::key_of(&a.metadata),
        )
            .cmp(&(
                b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                crate::key_of(&b.metadata),
            ))
    });
    let order: Vec<String> = claims.iter().map(|c| crate::key_of(&c.metadata)).collect();
    let mut r = Round {
        claims: claims
            .iter()
            .map(|c| (crate::key_of(&c.metadata), (*c).clone()))
            .collect(),
        volumes: obs
            .volumes
            .iter()
            .map(|v| (name(&v.metadata).to_string(), v.clone()))
            .collect(),
        classes: obs.classes.iter().map(|c| (name(&c.metadata), c)).collect(),
        nodes: obs.nodes.iter().map(|n| (name(&n.metadata), n)).collect(),
        pods: &obs.pods,
        actions: Vec::new(),
        opts,
    };
    let vnames: Vec<String> = r.volumes.keys().cloned().collect();
    for v in &vnames {
        r.sync_volume(v);
    }
    for k in &order {
        r.sync_claim(k);
    }
    for k in &order {
        r.local_path_provision(k);
    }
    r.protection();
    r.actions
}
