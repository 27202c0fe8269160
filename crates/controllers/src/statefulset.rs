//! The StatefulSet controller (apps/v1), as kube-controller-manager's: pods
//! with stable ordinal names, stable storage and ordered rollouts.
//!
//! [`plan`] is pure. From a StatefulSet, its pods, the claims of its
//! namespace, its ControllerRevisions and the time it decides, in the order
//! Kubernetes would carry them out, which revision to record, which claims and
//! pods to create, which pods to delete, which claims' owner references to
//! fix (the `persistentVolumeClaimRetentionPolicy`), which old revisions to
//! drop, and the status. [`run`] watches StatefulSets, pods, claims and
//! revisions and carries the plans out with Kubernetes' events.
//!
//! # What it does as Kubernetes does
//!
//! - Pod `<set>-<ordinal>` for ordinals `spec.ordinals.start ..
//!   start+replicas`, labelled `statefulset.kubernetes.io/pod-name`,
//!   `apps.kubernetes.io/pod-index` and `controller-revision-hash` (the
//!   revision's *name*), `hostname` = pod name, `subdomain` =
//!   `spec.serviceName`, a controller reference to the set.
//! - One claim `<template>-<set>-<ordinal>` per `volumeClaimTemplates` entry,
//!   labelled with the template's labels and the selector's `matchLabels`,
//!   created before the pod; the pod's volume of the template's name points
//!   at it.
//! - `OrderedReady`: pods are created one at a time in ordinal order, each
//!   after every lower one is Running and available (`minReadySeconds`); a
//!   terminating or unavailable pod stops the sync; scale down deletes the
//!   highest ordinal first, one at a time, after the others are healthy.
//!   `Parallel` does all of it at once.
//! - Failed and Succeeded pods are deleted; the next sync recreates them.
//! - `RollingUpdate`: pods at or above the partition that are not of the
//!   update revision are deleted highest ordinal first, each after the one
//!   above is healthy again; with `maxUnavailable` set, up to that many
//!   (counting unhealthy pods) at once. `OnDelete` replaces nothing.
//! - Revisions `<set>-<hash>` hold `{"spec":{"template":{…,"$patch":"replace"}}}`
//!   (what `kubectl rollout history/undo sts` read); returning to an older
//!   template renumbers its revision; `revisionHistoryLimit` drops the oldest
//!   revisions no pod uses.
//! - Claim owner references per the retention policy: `whenDeleted: Delete`
//!   makes the set the claim's controller; `whenScaled: Delete` makes a
//!   scaled-down pod the controller (the garbage collector then deletes the
//!   claim with its owner). A pod is not created while one of its claims is
//!   being deleted or still has a Pod owner of the pod's name.
//! - Orphan pods and revisions the selector matches are adopted (so `kubectl
//!   delete sts --cascade=orphan` and re-creating the set keeps the pods);
//!   missing `pod-name`/`pod-index` labels are put back (`SuccessfulUpdate`).
//! - `status` (`replicas`, `readyReplicas`, `availableReplicas`,
//!   `currentReplicas`, `updatedReplicas`, `currentRevision`,
//!   `updateRevision`, `collisionCount`, `observedGeneration`) is counted from
//!   the pods as the sync found them; a rolling deletion counts one current
//!   replica less; when every replica is updated and Ready the update
//!   revision becomes the current one (RollingUpdate only).
//! - Events: `SuccessfulCreate` "create Pod db-0 in StatefulSet db
//!   successful" and "create Claim data-db-0 Pod db-0 in StatefulSet db
//!   success", `SuccessfulDelete` "delete Pod db-4 in StatefulSet db
//!   successful", `FailedCreate`/`FailedDelete` "… failed error: …".
//!
//! `maxUnavailable` behaves as with Kubernetes' `MaxUnavailableStatefulSet`
//! gate on (Kubernetes 1.32 has it off and ignores the field): unhealthy
//! replicas count against it and up to the rest are replaced at once,
//! highest first. Without the field the rollout is the classic one at a time.
//!
//! Not done: the pod's `volumes` are not rechecked after creation
//! (Kubernetes' `storageMatches`); pods the selector no longer matches are
//! not released.
//!
//! # Beyond Kubernetes: a stuck rollout recovers (kubernetes#67250)
//!
//! Under `OrderedReady` Kubernetes waits for a pod that is not Running and
//! Ready before it does anything else, rollouts included; a template that
//! never becomes Ready therefore blocks the set for good, even after the
//! template is fixed, until someone deletes the pod by hand. Here, under
//! `RollingUpdate`, when the pod that blocks is **not of the update
//! revision**, is **not Running and Ready**, is **not terminating**, and its
//! ordinal is **at or above the partition**, it is deleted instead of waited
//! for (event `SuccessfulDelete` as for any pod) and comes back from the
//! update revision. A pod of the update revision is still waited for, so a
//! rollout of a bad template stops at its first pod as in Kubernetes; only a
//! new template gets past it. `OnDelete` and `Parallel` are unchanged
//! (`Parallel` never blocks on an unready pod).

use crate::cache::Cache;
use crate::events::{Involved, record};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::watch;

/// The label with a pod's (and a revision's) revision name.
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The label with a pod's name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with a pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

const COMPONENT: &str = "statefulset-controller";

/// One step of a sync, in the order it is carried out.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this ControllerRevision (the update revision).
    CreateRevision(Value),
    /// Give an existing revision a new number (a return to an older template).
    Renumber {
        /// The revision's name.
        name: String,
        /// Its new `revision`.
        revision: i64,
    },
    /// Create a claim for a pod.
    CreateClaim {
        /// The PersistentVolumeClaim.
        claim: Value,
        /// The pod it is for.
        pod: String,
    },
    /// Create a pod (its claims come first as `CreateClaim`s).
    CreatePod(Value),
    /// Delete a pod.
    DeletePod(String),
    /// Replace a claim's owner references (retention policy).
    SetClaimOwners {
        /// The claim's name.
        claim: String,
        /// The new `ownerReferences`.
        owners: Value,
    },
    /// Delete a revision beyond `revisionHistoryLimit`.
    DeleteRevision(String),
    /// Put a pod's identity labels (`statefulset.kubernetes.io/pod-name`,
    /// `apps.kubernetes.io/pod-index`) back.
    UpdateIdentity {
        /// The pod's name.
        name: String,
        /// The labels to set.
        labels: Value,
    },
    /// Make the set the controller of an orphan pod its selector matches.
    AdoptPod {
        /// The pod's name.
        name: String,
        /// Its uid (a precondition of the write).
        uid: String,
    },
    /// Make the set the controller of an orphan revision its selector matches.
    AdoptRevision {
        /// The revision's name.
        name: String,
        /// Its uid.
        uid: String,
    },
}

/// What one sync of a StatefulSet does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// The steps, in order.
    pub actions: Vec<Action>,
    /// The status to write.
    pub status: Value,
}

impl Plan {
    /// Names of the pods created, in order (for tests and logs).
    pub fn created_pods(&self) -> Vec<String> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::CreatePod(p) => p["metadata"]["name"].as_str().map(str::to_string),
                _ => None,
            })
            .collect()
    }

    /// Names of the pods deleted, in order.
    pub fn deleted_pods(&self) -> Vec<String> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::DeletePod(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }
}

fn spec_json(sts: &StatefulSet) -> Value {
    serde_json::to_value(sts.spec.as_ref()).unwrap_or(Value::Null)
}

/// What a ControllerRevision of the set's current template holds: a
/// strategic merge patch that puts the template back.
pub fn revision_data(sts: &StatefulSet) -> Value {
    let mut t = spec_json(sts)["template"].clone();
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The template a revision holds.
fn template_of(rev: &ControllerRevision) -> Value {
    let mut t = rev
        .data
        .as_ref()
        .map(|d| d.0["spec"]["template"].clone())
        .unwrap_or(Value::Null);
    if let Some(o) = t.as_object_mut() {
        o.remove("$patch");
    }
    t
}

fn data_of(rev: &ControllerRevision) -> Value {
    rev.data
        .as_ref()
        .map(|d| d.0.clone())
        .unwrap_or(Value::Null)
}

/// The ordinal of a pod of the set named `set`, from `<set>-<ordinal>`.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let n = pod.strip_prefix(set)?.strip_prefix('-')?;
    let o: i32 = n.parse().ok()?;
    (o >= 0 && o.to_string() == n).then_some(o)
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn running_and_ready(p: &Pod) -> bool {
    phase(p) == "Running" && crate::replicaset::ready_since(p).is_some()
}

fn healthy(p: &Pod) -> bool {
    running_and_ready(p) && !terminating(p)
}

fn revision_of(p: &Pod) -> &str {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map(String::as_str)
        .unwrap_or("")
}

fn name_of(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn owner_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
           "controller": true, "blockOwnerDeletion": true})
}

/// The uid of the controller among owner references.
fn controller_uid(
    refs: Option<&[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]>,
) -> Option<&str> {
    refs?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

/// The set's selector; an unparsable one selects nothing.
fn selector_of(sts: &StatefulSet) -> skiff_api::selector::LabelSelector {
    skiff_api::selector::LabelSelector::from_object(&spec_json(sts)["selector"])
        .unwrap_or_else(|_| skiff_api::selector::LabelSelector::nothing())
}

/// The set's settings the planner reads.
struct Settings {
    name: String,
    uid: String,
    start: i32,
    replicas: i32,
    min_ready: i32,
    parallel: bool,
    on_delete: bool,
    partition: i32,
    max_unavailable: Option<IntOrString>,
    when_deleted_delete: bool,
    when_scaled_delete: bool,
}

fn settings(sts: &StatefulSet) -> Settings {
    let spec = sts.spec.as_ref();
    let strategy = spec.and_then(|s| s.update_strategy.as_ref());
    let ru = strategy.and_then(|s| s.rolling_update.as_ref());
    let retention = spec.and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    Settings {
        name: sts.metadata.name.clone().unwrap_or_default(),
        uid: sts.metadata.uid.clone().unwrap_or_default(),
        start: spec
            .and_then(|s| s.ordinals.as_ref())
            .and_then(|o| o.start)
            .unwrap_or(0),
        replicas: spec.and_then(|s| s.replicas).unwrap_or(1).max(0),
        min_ready: spec.and_then(|s| s.min_ready_seconds).unwrap_or(0),
        parallel: spec.and_then(|s| s.pod_management_policy.as_deref()) == Some("Parallel"),
        on_delete: strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete"),
        partition: ru.and_then(|r| r.partition).unwrap_or(0).max(0),
        max_unavailable: ru.and_then(|r| r.max_unavailable.clone()),
        when_deleted_delete: retention.and_then(|r| r.when_deleted.as_deref()) == Some("Delete"),
        when_scaled_delete: retention.and_then(|r| r.when_scaled.as_deref()) == Some("Delete"),
    }
}

/// The update and current revisions, and what recording them takes.
struct Revisions {
    update: String,
    current: String,
    current_template: Value,
    update_template: Value,
    collision_count: i32,
    actions: Vec<Action>,
    /// Every revision name with its number, after the actions.
    all: Vec<(String, i64)>,
}

fn revisions(
    sts: &StatefulSet,
    s: &Settings,
    selector: &skiff_api::selector::LabelSelector,
    revs_in: &[&ControllerRevision],
) -> Revisions {
    let mut actions = Vec::new();
    let mut revs: Vec<&ControllerRevision> = Vec::new();
    for &r in revs_in {
        match controller_uid(r.metadata.owner_references.as_deref()) {
            Some(u) if u == s.uid => revs.push(r),
            Some(_) => {}
            None => {
                let labels = r.metadata.labels.as_ref();
                if selector.matches(|k| labels.and_then(|l| l.get(k)).map(String::as_str))
                    && sts.metadata.deletion_timestamp.is_none()
                {
                    actions.push(Action::AdoptRevision {
                        name: r.metadata.name.clone().unwrap_or_default(),
                        uid: r.metadata.uid.clone().unwrap_or_default(),
                    });
                    revs.push(r);
                }
            }
        }
    }
    revs.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then(a.metadata.name.cmp(&b.metadata.name))
    });
    let max = revs.last().map(|r| r.revision).unwrap_or(0);
    let data = revision_data(sts);
    let update_template = data["spec"]["template"]
        .as_object()
        .map(|o| {
            let mut o = o.clone();
            o.remove("$patch");
            Value::Object(o)
        })
        .unwrap_or(Value::Null);
    let mut collision_count = sts
        .status
        .as_ref()
        .and_then(|st| st.collision_count)
        .unwrap_or(0);
    let mut all: Vec<(String, i64)> = revs
        .iter()
        .map(|r| (r.metadata.name.clone().unwrap_or_default(), r.revision))
        .collect();
    let update = match revs.iter().rev().find(|r| data_of(r) == data) {
        Some(r) => {
            let name = r.metadata.name.clone().unwrap_or_default();
            if r.revision != max {
                actions.push(Action::Renumber {
                    name: name.clone(),
                    revision: max + 1,
                });
                if let Some(e) = all.iter_mut().find(|(n, _)| *n == name) {
                    e.1 = max + 1;
                }
            }
            name
        }
        None => {
            let name = loop {
                let hash = crate::deployment::template_hash(&data, collision_count);
                let name = format!("{}-{hash}", s.name);
                if revs
                    .iter()
                    .any(|r| r.metadata.name.as_deref() == Some(name.as_str()))
                {
                    collision_count += 1;
                    continue;
                }
                break name;
            };
            let mut labels = spec_json(sts)["template"]["metadata"]["labels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            labels.insert(REVISION_LABEL.into(), json!(name));
            actions.push(Action::CreateRevision(json!({
                "apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": name, "namespace": sts.metadata.namespace, "labels": labels,
                    "annotations": sts.metadata.annotations.clone().unwrap_or_default(),
                    "ownerReferences": [owner_ref("apps/v1", "StatefulSet", &s.name, &s.uid)]},
                "data": data,
                "revision": max + 1,
            })));
            all.push((name.clone(), max + 1));
            name
        }
    };
    let wanted = sts
        .status
        .as_ref()
        .and_then(|st| st.current_revision.as_deref())
        .unwrap_or("");
    let (current, current_template) = match revs
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(wanted))
    {
        Some(r) if wanted != update => (wanted.to_string(), template_of(r)),
        _ => (update.clone(), update_template.clone()),
    };
    Revisions {
        update,
        current,
        current_template,
        update_template,
        collision_count,
        actions,
        all,
    }
}

/// The claims of the pod with this ordinal: (volume name, claim).
fn claims_for(sts: &StatefulSet, s: &Settings, ordinal: i32) -> Vec<(String, Value)> {
    let spec = spec_json(sts);
    let selector_labels = spec["selector"]["matchLabels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    spec["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let tname = t["metadata"]["name"].as_str().unwrap_or("").to_string();
            let mut claim = t.clone();
            if let Some(o) = claim.as_object_mut() {
                o.remove("status");
                o.insert("apiVersion".into(), json!("v1"));
                o.insert("kind".into(), json!("PersistentVolumeClaim"));
            }
            if !claim["metadata"].is_object() {
                claim["metadata"] = json!({});
            }
            let mut labels = claim["metadata"]["labels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            labels.extend(selector_labels.clone());
            claim["metadata"]["labels"] = Value::Object(labels);
            claim["metadata"]["name"] = json!(format!("{tname}-{}-{ordinal}", s.name));
            claim["metadata"]["namespace"] = json!(sts.metadata.namespace);
            (tname, claim)
        })
        .collect()
}

/// The pod of `ordinal` from `template` at `revision`.
fn new_pod(
    sts: &StatefulSet,
    s: &Settings,
    template: &Value,
    revision: &str,
    ordinal: i32,
) -> Value {
    let name = format!("{}-{ordinal}", s.name);
    let tm = &template["metadata"];
    let mut labels = tm["labels"].as_object().cloned().unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), json!(name));
    labels.insert(POD_INDEX_LABEL.into(), json!(ordinal.to_string()));
    labels.insert(REVISION_LABEL.into(), json!(revision));
    let mut metadata = json!({
        "name": name,
        "namespace": sts.metadata.namespace,
        "labels": labels,
        "ownerReferences": [owner_ref("apps/v1", "StatefulSet", &s.name, &s.uid)],
    });
    for k in ["annotations", "finalizers"] {
        if let Some(v) = tm.get(k).filter(|v| !v.is_null()) {
            metadata[k] = v.clone();
        }
    }
    let mut spec = template["spec"].clone();
    if !spec.is_object() {
        spec = json!({});
    }
    spec["hostname"] = json!(name);
    if let Some(svc) = sts
        .spec
        .as_ref()
        .and_then(|s| s.service_name.as_deref())
        .filter(|s| !s.is_empty())
    {
        spec["subdomain"] = json!(svc);
    }
    let claims = claims_for(sts, s, ordinal);
    let mut volumes: Vec<Value> = claims
        .iter()
        .map(|(v, c)| {
            json!({"name": v, "persistentVolumeClaim": {"claimName": c["metadata"]["name"]}})
        })
        .collect();
    for v in spec["volumes"].as_array().into_iter().flatten() {
        if !claims.iter().any(|(n, _)| v["name"] == json!(n)) {
            volumes.push(v.clone());
        }
    }
    if !volumes.is_empty() {
        spec["volumes"] = Value::Array(volumes);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

/// The owner references a pod's claim should have under the retention
/// policy, or `None` when they already do.
fn claim_owners(
    s: &Settings,
    claim: &PersistentVolumeClaim,
    pod: &Pod,
    in_range: bool,
) -> Option<Value> {
    let pname = name_of(pod);
    let puid = pod.metadata.uid.clone().unwrap_or_default();
    let refs = claim.metadata.owner_references.clone().unwrap_or_default();
    let mine = |r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference| {
        (r.kind == "StatefulSet" && r.name == s.name) || (r.kind == "Pod" && r.name == pname)
    };
    let mut out: Vec<Value> = refs
        .iter()
        .filter(|r| !mine(r))
        .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
        .collect();
    let other_controller = refs.iter().any(|r| !mine(r) && r.controller == Some(true));
    if !other_controller {
        if s.when_scaled_delete && !in_range {
            out.push(owner_ref("v1", "Pod", &pname, &puid));
        } else if s.when_deleted_delete {
            out.push(owner_ref("apps/v1", "StatefulSet", &s.name, &s.uid));
        }
    }
    let now: Vec<Value> = refs
        .iter()
        .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
        .collect();
    (now != out).then_some(Value::Array(out))
}

/// A slot of the set: the pod there, or one created in this sync.
enum Slot<'a> {
    Pod(&'a Pod),
    Created(String),
}

/// Plans one sync of `sts`. `pods` are the pods of its namespace it controls
/// or that have no controller, `claims` the claims of its namespace,
/// `revisions` its ControllerRevisions and the orphan ones of its namespace.
/// Orphans its selector matches are adopted (first steps of the plan).
pub fn plan(
    sts: &StatefulSet,
    pods_in: &[&Pod],
    claims: &[&PersistentVolumeClaim],
    revisions_in: &[&ControllerRevision],
    now: Timestamp,
) -> Plan {
    let s = settings(sts);
    let selector = selector_of(sts);
    let revs = revisions(sts, &s, &selector, revisions_in);
    let being_deleted = sts.metadata.deletion_timestamp.is_some();
    // A set being deleted records no revisions (it would only leave orphans behind).
    let mut actions: Vec<Action> = revs
        .actions
        .iter()
        .filter(|_| !being_deleted)
        .cloned()
        .collect();
    let end = s.start + s.replicas;
    let mut owned: Vec<&Pod> = Vec::new();
    for &p in pods_in {
        match controller_uid(p.metadata.owner_references.as_deref()) {
            Some(u) if u == s.uid => owned.push(p),
            Some(_) => {}
            None => {
                let labels = p.metadata.labels.as_ref();
                if selector.matches(|k| labels.and_then(|l| l.get(k)).map(String::as_str))
                    && !terminating(p)
                    && sts.metadata.deletion_timestamp.is_none()
                {
                    actions.insert(
                        0,
                        Action::AdoptPod {
                            name: name_of(p),
                            uid: p.metadata.uid.clone().unwrap_or_default(),
                        },
                    );
                    owned.push(p);
                }
            }
        }
    }
    let pods = owned.as_slice();

    // Replicas by ordinal and the condemned (out of range), highest first.
    let mut slots: Vec<Option<&Pod>> = vec![None; s.replicas as usize];
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    for &p in pods {
        let Some(o) = ordinal_of(&s.name, p.metadata.name.as_deref().unwrap_or("")) else {
            continue;
        };
        if (s.start..end).contains(&o) {
            slots[(o - s.start) as usize] = Some(p);
        } else {
            condemned.push((o, p));
        }
    }
    condemned.sort_by_key(|c| std::cmp::Reverse(c.0));

    // Status from the pods as they are (Kubernetes' updateStatus).
    let mut replicas = 0;
    let mut ready = 0;
    let mut available = 0;
    let mut current = 0;
    let mut updated = 0;
    for p in slots
        .iter()
        .flatten()
        .copied()
        .chain(condemned.iter().map(|c| c.1))
    {
        replicas += 1;
        if running_and_ready(p) {
            ready += 1;
            if crate::replicaset::is_available(p, s.min_ready, now) {
                available += 1;
            }
        }
        if !terminating(p) {
            if revision_of(p) == revs.current {
                current += 1;
            }
            if revision_of(p) == revs.update {
                updated += 1;
            }
        }
    }

    let claim_by_name: HashMap<&str, &PersistentVolumeClaim> = claims
        .iter()
        .filter_map(|c| Some((c.metadata.name.as_deref()?, *c)))
        .collect();
    let monotonic = !s.parallel;
    let avail = |p: &Pod| crate::replicaset::is_available(p, s.min_ready, now);
    let mut deleted: HashSet<String> = HashSet::new();
    let mut blocked = sts.metadata.deletion_timestamp.is_some();
    let mut work: Vec<Slot> = Vec::new();

    // The replicas, in ordinal order.
    for (i, slot) in slots.iter().enumerate() {
        if blocked {
            break;
        }
        let ordinal = s.start + i as i32;
        let Some(p) = *slot else {
            // Create it (and its claims), from the current revision below the partition.
            let below = !s.on_delete && ordinal < s.start + s.partition;
            let (template, revision) = if below {
                (&revs.current_template, &revs.current)
            } else {
                (&revs.update_template, &revs.update)
            };
            let pod = new_pod(sts, &s, template, revision, ordinal);
            let pname = format!("{}-{ordinal}", s.name);
            let mut claim_steps = Vec::new();
            let mut stuck = false;
            for (_, c) in claims_for(sts, &s, ordinal) {
                let cname = c["metadata"]["name"].as_str().unwrap_or("").to_string();
                match claim_by_name.get(cname.as_str()) {
                    // Being deleted, or still owned by an earlier pod of this
                    // name (scaled down under whenScaled: Delete): wait for it
                    // to go rather than start on a claim about to vanish.
                    Some(existing)
                        if existing.metadata.deletion_timestamp.is_some()
                            || existing
                                .metadata
                                .owner_references
                                .iter()
                                .flatten()
                                .any(|r| r.kind == "Pod" && r.name == pname) =>
                    {
                        stuck = true
                    }
                    Some(_) => {}
                    None => {
                        let mut c = c;
                        if s.when_deleted_delete {
                            c["metadata"]["ownerReferences"] =
                                json!([owner_ref("apps/v1", "StatefulSet", &s.name, &s.uid)]);
                        }
                        claim_steps.push(Action::CreateClaim {
                            claim: c,
                            pod: pname.clone(),
                        });
                    }
                }
            }
            if stuck {
                // A claim of the pod is being deleted: wait for it to go.
                if monotonic {
                    blocked = true;
                }
                continue;
            }
            actions.extend(claim_steps);
            actions.push(Action::CreatePod(pod));
            work.push(Slot::Created(revision.clone()));
            if monotonic {
                blocked = true;
            }
            continue;
        };
        work.push(Slot::Pod(p));
        if matches!(phase(p), "Failed" | "Succeeded") {
            if !terminating(p) {
                actions.push(Action::DeletePod(name_of(p)));
                deleted.insert(name_of(p));
            }
            if monotonic {
                blocked = true;
            }
            continue;
        }
        if phase(p) == "Pending" {
            for (_, c) in claims_for(sts, &s, ordinal) {
                let cname = c["metadata"]["name"].as_str().unwrap_or("");
                if !claim_by_name.contains_key(cname) {
                    actions.push(Action::CreateClaim {
                        claim: c.clone(),
                        pod: name_of(p),
                    });
                }
            }
        }
        if terminating(p) && monotonic {
            blocked = true;
            continue;
        }
        if !avail(p) && monotonic {
            // kubernetes#67250: a blocking pod of an older revision that is not
            // Running and Ready gives way to the update revision.
            if !s.on_delete
                && revision_of(p) != revs.update
                && !running_and_ready(p)
                && !terminating(p)
                && ordinal >= s.start + s.partition
            {
                actions.push(Action::DeletePod(name_of(p)));
                deleted.insert(name_of(p));
            }
            blocked = true;
            continue;
        }
        let label = |k: &str| p.metadata.labels.as_ref().and_then(|l| l.get(k)).cloned();
        let pname = name_of(p);
        if label(POD_NAME_LABEL).as_deref() != Some(pname.as_str())
            || label(POD_INDEX_LABEL) != Some(ordinal.to_string())
        {
            actions.push(Action::UpdateIdentity {
                name: pname.clone(),
                labels: json!({POD_NAME_LABEL: pname, POD_INDEX_LABEL: ordinal.to_string()}),
            });
        }
        for (_, c) in claims_for(sts, &s, ordinal) {
            let cname = c["metadata"]["name"].as_str().unwrap_or("");
            if let Some(claim) = claim_by_name.get(cname)
                && let Some(owners) = claim_owners(&s, claim, p, true)
            {
                actions.push(Action::SetClaimOwners {
                    claim: cname.to_string(),
                    owners,
                });
            }
        }
    }

    // Claims of condemned pods, then the condemned themselves, highest first.
    if !blocked {
        for (o, p) in &condemned {
            for (_, c) in claims_for(sts, &s, *o) {
                let cname = c["metadata"]["name"].as_str().unwrap_or("");
                if let Some(claim) = claim_by_name.get(cname)
                    && let Some(owners) = claim_owners(&s, claim, p, false)
                {
                    actions.push(Action::SetClaimOwners {
                        claim: cname.to_string(),
                        owners,
                    });
                }
            }
        }
        let first_unhealthy = condemned.iter().find(|(_, p)| !healthy(p)).map(|c| c.0);
        for (o, p) in &condemned {
            if terminating(p) {
                if monotonic {
                    blocked = true;
                    break;
                }
                continue;
            }
            if !avail(p) && monotonic && Some(*o) != first_unhealthy {
                blocked = true;
                break;
            }
            actions.push(Action::DeletePod(name_of(p)));
            deleted.insert(name_of(p));
            if monotonic {
                blocked = true;
                break;
            }
        }
    }

    // The rolling update.
    let slot_rev = |w: &Slot| match w {
        Slot::Pod(p) => revision_of(p).to_string(),
        Slot::Created(r) => r.clone(),
    };
    let slot_terminating = |w: &Slot| match w {
        Slot::Pod(p) => terminating(p) || deleted.contains(&name_of(p)),
        Slot::Created(_) => false,
    };
    let slot_healthy = |w: &Slot| match w {
        Slot::Pod(p) => healthy(p) && !deleted.contains(&name_of(p)),
        Slot::Created(_) => false,
    };
    let slot_name = |w: &Slot| match w {
        Slot::Pod(p) => name_of(p),
        Slot::Created(_) => String::new(),
    };
    if !blocked && !s.on_delete && work.len() == s.replicas as usize {
        let update_min = s.partition.max(0) as usize;
        match &s.max_unavailable {
            None => {
                for w in work.iter().skip(update_min).rev() {
                    if slot_rev(w) != revs.update && !slot_terminating(w) {
                        actions.push(Action::DeletePod(slot_name(w)));
                        current -= 1;
                        break;
                    }
                    if !slot_healthy(w) {
                        break;
                    }
                }
            }
            Some(mu) => {
                let max = match mu {
                    IntOrString::Int(i) => *i,
                    IntOrString::String(p) => {
                        let pct: i64 = p.trim_end_matches('%').parse().unwrap_or(0);
                        ((pct * i64::from(s.replicas) + 99) / 100) as i32
                    }
                }
                .max(1);
                let unavailable = work.iter().filter(|w| !slot_healthy(w)).count() as i32;
                let mut room = max - unavailable;
                for w in work.iter().skip(update_min).rev() {
                    if room <= 0 {
                        break;
                    }
                    if slot_rev(w) != revs.update && !slot_terminating(w) {
                        actions.push(Action::DeletePod(slot_name(w)));
                        current -= 1;
                        room -= 1;
                    }
                }
            }
        }
    }

    // History beyond the limit: the oldest revisions no pod and neither status revision uses.
    let mut live: HashSet<&str> = pods.iter().map(|p| revision_of(p)).collect();
    live.insert(&revs.update);
    live.insert(&revs.current);
    let mut history: Vec<&(String, i64)> = revs
        .all
        .iter()
        .filter(|(n, _)| !live.contains(n.as_str()))
        .collect();
    history.sort_by_key(|(_, r)| *r);
    let limit = sts
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    if history.len() > limit && !being_deleted {
        for (n, _) in &history[..history.len() - limit] {
            actions.push(Action::DeleteRevision(n.clone()));
        }
    }

    // completeRollingUpdate
    let mut current_revision = revs.current.clone();
    if !s.on_delete && updated == s.replicas && ready == s.replicas && replicas == s.replicas {
        current = updated;
        current_revision = revs.update.clone();
    }
    let status = json!({
        "observedGeneration": sts.metadata.generation.unwrap_or(0),
        "replicas": replicas,
        "readyReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": revs.update,
        "collisionCount": revs.collision_count,
        "availableReplicas": available,
    });
    Plan { actions, status }
}

/// Runs the StatefulSet controller until `shutdown` turns true (with a pod
/// watch of its own; `skiff server` shares one through [`run_with_pods`]).
pub async fn run(client: kube::Client, shutdown: watch::Receiver<bool>) {
    run_with_pods(client.clone(), crate::informer::own_pods(client), shutdown).await
}

/// The UID of the StatefulSet that controls a pod or revision, if one does.
fn owner_uid(m: &ObjectMeta) -> Option<&str> {
    m.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "StatefulSet")
        .map(|o| o.uid.as_str())
}

/// Whether the controller keeps a pod: a StatefulSet's, or one without a controller.
fn relevant(p: &Pod) -> bool {
    owner_uid(&p.metadata).is_some()
        || controller_uid(p.metadata.owner_references.as_deref()).is_none()
}

/// Runs the controller on a shared pod stream ([`crate::informer`]) until `shutdown` turns true.
pub async fn run_with_pods(
    client: kube::Client,
    pods_in: crate::informer::PodStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut set_stream = watcher(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .boxed();
    let mut pod_stream = pods_in;
    let mut claim_stream = watcher(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .boxed();
    let mut rev_stream = watcher(
        Api::<ControllerRevision>::all(client.clone()),
        watcher::Config::default(),
    )
    .boxed();
    let mut sets: Cache<StatefulSet> = Cache::new();
    let mut pods: Cache<Pod> = Cache::new();
    let mut claims: Cache<PersistentVolumeClaim> = Cache::new();
    let mut revs: Cache<ControllerRevision> = Cache::new();
    let mut dirty: HashSet<String> = HashSet::new();
    let mut resync = tokio::time::interval(Duration::from_secs(1));
    let set_of_uid = |sets: &Cache<StatefulSet>, uid: &str| {
        sets.items
            .iter()
            .find(|(_, s)| s.metadata.uid.as_deref() == Some(uid))
            .map(|(k, _)| k.clone())
    };
    loop {
        let mut all = false;
        tokio::select! {
            _ = shutdown.changed() => return,
            ev = set_stream.next() => match ev {
                Some(Ok(ev)) => sets.apply_marking(ev, &mut dirty),
                Some(Err(e)) => watch_failed("watch", &e).await,
                None => return,
            },
            ev = pod_stream.next() => match ev {
                Some(Ok(ev)) => {
                    if let watcher::Event::Apply(p) | watcher::Event::Delete(p) = &ev
                        && let Some(owner) = owner_uid(&p.metadata)
                        && let Some(k) = set_of_uid(&sets, owner) {
                        dirty.insert(k);
                    }
                    if let watcher::Event::Apply(p) | watcher::Event::Delete(p) = &ev
                        && controller_uid(p.metadata.owner_references.as_deref()).is_none() {
                        dirty.extend(sets_in(&sets, p.metadata.namespace.as_deref(), |_| true));
                    }
                    // Pods of StatefulSets and orphans are kept; the rest never cost a scan.
                    match ev {
                        watcher::Event::Apply(p) if !relevant(&p) => {
                            pods.apply(watcher::Event::Delete(p));
                        }
                        watcher::Event::InitApply(p) if !relevant(&p) => {}
                        ev => { all |= matches!(ev, watcher::Event::InitDone); pods.apply(ev); }
                    }
                }
                Some(Err(e)) => watch_failed("pod watch", &e).await,
                None => return,
            },
            ev = claim_stream.next() => match ev {
                Some(Ok(ev)) => {
                    if let watcher::Event::Apply(c) | watcher::Event::Delete(c) = &ev {
                        dirty.extend(sets_in(&sets, c.metadata.namespace.as_deref(), |s| {
                            s.spec.as_ref().is_some_and(|s| s.volume_claim_templates.as_ref().is_some_and(|v| !v.is_empty()))
                        }));
                    }
                    all |= matches!(ev, watcher::Event::InitDone);
                    claims.apply(ev);
                }
                Some(Err(e)) => watch_failed("claim watch", &e).await,
                None => return,
            },
            ev = rev_stream.next() => match ev {
                Some(Ok(ev)) => {
                    if let watcher::Event::Apply(r) | watcher::Event::Delete(r) = &ev
                        && controller_uid(r.metadata.owner_references.as_deref()).is_none() {
                        dirty.extend(sets_in(&sets, r.metadata.namespace.as_deref(), |_| true));
                    }
                    all |= matches!(ev, watcher::Event::InitDone);
                    revs.apply(ev);
                }
                Some(Err(e)) => watch_failed("revision watch", &e).await,
                None => return,
            },
            _ = resync.tick() => {
                // Availability changes with time alone (minReadySeconds).
                dirty.extend(sets.items.iter().filter(|(_, d)| {
                    let s = d.status.as_ref();
                    s.and_then(|s| s.ready_replicas) != s.and_then(|s| s.available_replicas)
                }).map(|(k, _)| k.clone()));
            }
        }
        if all {
            dirty.extend(sets.items.keys().cloned());
        }
        if !sets.synced || !pods.synced || !claims.synced || !revs.synced {
            continue;
        }
        for key in std::mem::take(&mut dirty) {
            let Some(sts) = sets.get(&key).cloned() else {
                continue;
            };
            if let Some(s) = sync(&client, &sts, &mut pods, &mut claims, &mut revs).await {
                sets.put(s);
            }
        }
    }
}

/// The keys of the sets in namespace `ns` for which `pick` holds.
fn sets_in(
    sets: &Cache<StatefulSet>,
    ns: Option<&str>,
    pick: impl Fn(&StatefulSet) -> bool,
) -> Vec<String> {
    sets.items
        .iter()
        .filter(|(_, s)| s.metadata.namespace.as_deref() == ns && pick(s))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Logs a failed watch (`what`) and pauses before it is polled again.
async fn watch_failed(what: &str, e: &watcher::Error) {
    tracing::warn!("statefulset controller: {what}: {e}");
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// One sync: plan, carry out, write the status if it changed. Returns the set
/// as the status write returned it.
async fn sync(
    client: &kube::Client,
    sts: &StatefulSet,
    pods: &mut Cache<Pod>,
    claims: &mut Cache<PersistentVolumeClaim>,
    revs: &mut Cache<ControllerRevision>,
) -> Option<StatefulSet> {
    let ns = sts.metadata.namespace.clone().unwrap_or_default();
    let name = sts.metadata.name.clone().unwrap_or_default();
    let uid = sts.metadata.uid.as_deref();
    let mine: Vec<&Pod> = pods
        .values()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| {
            let c = controller_uid(p.metadata.owner_references.as_deref());
            c.is_none() || c == uid
        })
        .collect();
    let ns_claims: Vec<&PersistentVolumeClaim> = claims
        .values()
        .filter(|c| c.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let my_revs: Vec<&ControllerRevision> = revs
        .values()
        .filter(|r| r.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|r| {
            let c = controller_uid(r.metadata.owner_references.as_deref());
            c.is_none() || (owner_uid(&r.metadata).is_some() && c == uid)
        })
        .collect();
    let plan = plan(sts, &mine, &ns_claims, &my_revs, Timestamp::now());
    let about = Involved {
        kind: "StatefulSet",
        api_version: "apps/v1",
        namespace: &ns,
        name: &name,
        uid,
    };
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let claim_api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let rev_api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let mut failed_claims: HashSet<String> = HashSet::new();
    for action in &plan.actions {
        match action {
            Action::CreateRevision(r) => {
                let Ok(r) = serde_json::from_value::<ControllerRevision>(r.clone()) else {
                    continue;
                };
                match rev_api.create(&PostParams::default(), &r).await {
                    Ok(r) => revs.put(r),
                    Err(e) => {
                        tracing::debug!("statefulset {ns}/{name}: revision: {e}");
                        return None;
                    }
                }
            }
            Action::Renumber {
                name: rname,
                revision,
            } => {
                match rev_api
                    .patch(
                        rname,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"revision": revision})),
                    )
                    .await
                {
                    Ok(r) => revs.put(r),
                    Err(e) => {
                        tracing::debug!("statefulset {ns}/{name}: revision: {e}");
                        return None;
                    }
                }
            }
            Action::CreateClaim { claim, pod } => {
                let cname = claim["metadata"]["name"].as_str().unwrap_or("").to_string();
                let Ok(c) = serde_json::from_value::<PersistentVolumeClaim>(claim.clone()) else {
                    continue;
                };
                match claim_api.create(&PostParams::default(), &c).await {
                    Ok(c) => {
                        claims.put(c);
                        let msg =
                            format!("create Claim {cname} Pod {pod} in StatefulSet {name} success");
                        record(
                            client,
                            COMPONENT,
                            &about,
                            "Normal",
                            "SuccessfulCreate",
                            &msg,
                        )
                        .await;
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => {
                        failed_claims.insert(pod.clone());
                        let msg = format!(
                            "create Claim {cname} for Pod {pod} in StatefulSet {name} failed error: {}",
                            crate::api_message(&e)
                        );
                        record(client, COMPONENT, &about, "Warning", "FailedCreate", &msg).await;
                    }
                }
            }
            Action::CreatePod(p) => {
                let pname = p["metadata"]["name"].as_str().unwrap_or("").to_string();
                if failed_claims.contains(&pname) {
                    continue;
                }
                let Ok(pod) = serde_json::from_value::<Pod>(p.clone()) else {
                    continue;
                };
                match pod_api.create(&PostParams::default(), &pod).await {
                    Ok(p) => {
                        pods.put(p);
                        record_pod_event(client, &about, "Create", &pname, None).await;
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => record_pod_event(client, &about, "Create", &pname, Some(&e)).await,
                }
            }
            Action::DeletePod(pname) => match pod_api.delete(pname, &DeleteParams::default()).await
            {
                Ok(gone) => {
                    // A pod that waits for its kubelet is kept, terminating;
                    // one gone at once leaves the cache (its watch event may
                    // have come already, and must not be undone).
                    match gone
                        .left()
                        .filter(|p| p.metadata.deletion_timestamp.is_some())
                    {
                        Some(p) => pods.put(p),
                        None => {
                            pods.items.remove(&format!("{ns}/{pname}"));
                        }
                    }
                    record_pod_event(client, &about, "Delete", pname, None).await;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => record_pod_event(client, &about, "Delete", pname, Some(&e)).await,
            },
            Action::SetClaimOwners { claim, owners } => {
                match claim_api
                    .patch(
                        claim,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"metadata": {"ownerReferences": owners}})),
                    )
                    .await
                {
                    Ok(c) => claims.put(c),
                    Err(e) => tracing::debug!("statefulset {ns}/{name}: claim {claim}: {e}"),
                }
            }
            Action::UpdateIdentity {
                name: pname,
                labels,
            } => {
                let body = json!({"metadata": {"labels": labels}});
                match pod_api
                    .patch(pname, &PatchParams::default(), &Patch::Merge(&body))
                    .await
                {
                    Ok(p) => {
                        pods.put(p);
                        record_pod_event(client, &about, "Update", pname, None).await;
                    }
                    Err(e) => record_pod_event(client, &about, "Update", pname, Some(&e)).await,
                }
            }
            Action::AdoptPod {
                name: pname,
                uid: puid,
            } => adopt(&pod_api, pods, &about, pname, puid).await,
            Action::AdoptRevision {
                name: rname,
                uid: ruid,
            } => adopt(&rev_api, revs, &about, rname, ruid).await,
            Action::DeleteRevision(rname) => {
                if rev_api
                    .delete(rname, &DeleteParams::default())
                    .await
                    .is_ok()
                {
                    revs.items.remove(&format!("{ns}/{rname}"));
                }
            }
        }
    }
    let old = serde_json::to_value(&sts.status).unwrap_or(Value::Null);
    let changed = plan
        .status
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| match v {
            Value::String(_) => old[k].as_str().unwrap_or("") != v.as_str().unwrap_or(""),
            _ => old[k].as_i64().unwrap_or(0) != v.as_i64().unwrap_or(0),
        });
    if !changed {
        return None;
    }
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    match api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": plan.status})),
        )
        .await
    {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!("statefulset {ns}/{name}: status: {e}");
            None
        }
    }
}

/// Records the outcome of a write (`verb`: Create, Delete or Update) to pod
/// `pod` of the set `about`, as Kubernetes' `recordPodEvent` words it.
async fn record_pod_event(
    client: &kube::Client,
    about: &Involved<'_>,
    verb: &str,
    pod: &str,
    failed: Option<&kube::Error>,
) {
    let (set, lower) = (about.name, verb.to_lowercase());
    let (type_, reason, msg) = match failed {
        None => (
            "Normal",
            format!("Successful{verb}"),
            format!("{lower} Pod {pod} in StatefulSet {set} successful"),
        ),
        Some(e) => (
            "Warning",
            format!("Failed{verb}"),
            format!(
                "{lower} Pod {pod} in StatefulSet {set} failed error: {}",
                crate::api_message(e)
            ),
        ),
    };
    record(client, COMPONENT, about, type_, &reason, &msg).await;
}

/// Adopts an orphan (pod or revision) named `name` in the set's namespace:
/// its owner references plus the set `about` as controller, patched with the
/// orphan's `uid` as a precondition. One not in `cache` is left alone.
async fn adopt<K>(api: &Api<K>, cache: &mut Cache<K>, about: &Involved<'_>, name: &str, uid: &str)
where
    K: kube::Resource + k8s_openapi::Metadata<Ty = ObjectMeta>,
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let (ns, set) = (about.namespace, about.name);
    let Some(o) = cache.get(&format!("{ns}/{name}")) else {
        return;
    };
    let mut refs: Vec<Value> = kube::Resource::meta(o)
        .owner_references
        .iter()
        .flatten()
        .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
        .collect();
    refs.push(owner_ref(
        about.api_version,
        about.kind,
        set,
        about.uid.unwrap_or(""),
    ));
    let body = json!({"metadata": {"uid": uid, "ownerReferences": refs}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Ok(o) => cache.put(o),
        Err(e) => tracing::debug!("statefulset {ns}/{set}: adopt {name}: {e}"),
    }
}

#[cfg(test)]
mod tests;
