//! The ReplicaSet controller: keeps `spec.replicas` pods of a template
//! running, as kube-controller-manager's does.
//!
//! [`plan`] is pure: from a ReplicaSet and the pods of its namespace it
//! decides which pods to adopt and release (controller references), how many
//! pods to create, which to delete (in Kubernetes' order: unscheduled, pending,
//! not ready, … first) and the status. [`run`] watches ReplicaSets and pods,
//! calls it, and carries the plan out. Pods it created or deleted are noted at
//! once (Kubernetes' "expectations"), so a watch that lags never makes it
//! create or delete twice.

use crate::cache::Cache;
use crate::events::{Involved, record};
use futures::{FutureExt, StreamExt};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use skiff_api::selector::LabelSelector;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use tokio::sync::watch;

/// How many pods one sync creates or deletes at most (`burstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// What one sync of a ReplicaSet does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Orphan pods that match the selector: they get this ReplicaSet as controller.
    pub adopt: Vec<String>,
    /// Owned pods that no longer match: their controller reference is removed.
    pub release: Vec<String>,
    /// How many pods to create from the template.
    pub create: usize,
    /// Pods to delete, most expendable first.
    pub delete: Vec<String>,
    /// The status to write (without conditions, which depend on the outcome).
    pub status: Value,
}

/// The controller reference of a pod, if any: (uid, kind).
fn controller_of(pod: &Pod) -> Option<(&str, &str)> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.uid.as_str(), o.kind.as_str()))
}

fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

fn condition_since(pod: &Pod, type_: &str) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(Timestamp::UNIX_EPOCH)
        })
}

/// Since when the pod is Ready, if it is.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    condition_since(pod, "Ready")
}

/// Whether the pod has been Ready for `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(t) => t + SignedDuration::from_secs(i64::from(min_ready_seconds)) <= now,
    }
}

/// Whether `sel` selects the pod by its labels.
fn selects(sel: &LabelSelector, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    sel.matches(|k| labels.and_then(|l| l.get(k)).map(String::as_str))
}

/// The selector of a ReplicaSet; an unparsable one selects nothing.
pub fn selector_of(rs: &ReplicaSet) -> LabelSelector {
    let sel = serde_json::to_value(rs.spec.as_ref().map(|s| &s.selector)).unwrap_or(Value::Null);
    LabelSelector::from_object(&sel).unwrap_or_else(|_| LabelSelector::nothing())
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

fn deletion_cost(pod: &Pod) -> i64 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Orders pods most expendable first, as Kubernetes' `ActivePodsWithRanks`:
/// unscheduled before scheduled; Pending before Unknown before Running; not
/// ready before ready; lower `pod-deletion-cost` first; pods doubled up on a
/// node (`rank`: how many related pods share it) before lone ones; ready for
/// less time first; more restarts first; newer first.
pub fn deletion_order(pods: &mut [&Pod], rank: impl Fn(&Pod) -> usize) {
    pods.sort_by(|a, b| {
        let assigned = |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
        };
        let ready = |p: &Pod| ready_since(p).is_some();
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        assigned(a)
            .cmp(&assigned(b))
            .then(phase_rank(a).cmp(&phase_rank(b)))
            .then(ready(a).cmp(&ready(b)))
            .then(deletion_cost(a).cmp(&deletion_cost(b)))
            .then(rank(b).cmp(&rank(a)))
            // Ready more recently (later timestamp) goes first.
            .then(ready_since(b).cmp(&ready_since(a)))
            .then(restarts(b).cmp(&restarts(a)))
            .then(created(b).cmp(&created(a)))
            .then(a.metadata.name.cmp(&b.metadata.name))
    });
}

/// Plans one sync of `rs` given the pods of its namespace and the names of
/// pods already being created or deleted for it (not yet seen by the watch).
pub fn plan(rs: &ReplicaSet, pods: &[&Pod], now: Timestamp) -> Plan {
    let uid = rs.metadata.uid.as_deref().unwrap_or("");
    let selector = selector_of(rs);
    let spec = rs.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let deleting_rs = rs.metadata.deletion_timestamp.is_some();
    let template_labels: BTreeMap<String, String> = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();

    let mut plan = Plan::default();
    let mut mine: Vec<&Pod> = Vec::new();
    for &p in pods {
        let matches = selects(&selector, p);
        match controller_of(p) {
            Some((owner, _)) if owner == uid => {
                if matches {
                    mine.push(p);
                } else if !deleting_rs {
                    plan.release
                        .push(p.metadata.name.clone().unwrap_or_default());
                }
            }
            Some(_) => {}
            None => {
                if matches && !deleting_rs && p.metadata.deletion_timestamp.is_none() {
                    plan.adopt.push(p.metadata.name.clone().unwrap_or_default());
                    mine.push(p);
                }
            }
        }
    }
    let mut active: Vec<&Pod> = mine.iter().copied().filter(|p| is_active(p)).collect();
    if !deleting_rs {
        if active.len() < replicas {
            plan.create = (replicas - active.len()).min(BURST_REPLICAS);
        } else if active.len() > replicas {
            let n = (active.len() - replicas).min(BURST_REPLICAS);
            let mut per_node: HashMap<&str, usize> = HashMap::new();
            for p in &active {
                if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                    *per_node.entry(n).or_default() += 1;
                }
            }
            let rank = |p: &Pod| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .and_then(|n| per_node.get(n).copied())
                    .unwrap_or(0)
            };
            deletion_order(&mut active, rank);
            plan.delete = active
                .iter()
                .take(n)
                .map(|p| p.metadata.name.clone().unwrap_or_default())
                .collect();
        }
    }
    let active: Vec<&Pod> = mine.iter().copied().filter(|p| is_active(p)).collect();
    let fully_labeled = active
        .iter()
        .filter(|p| {
            template_labels
                .iter()
                .all(|(k, v)| p.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v))
        })
        .count();
    let ready = active.iter().filter(|p| ready_since(p).is_some()).count();
    let available = active
        .iter()
        .filter(|p| is_available(p, min_ready, now))
        .count();
    plan.status = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": rs.metadata.generation.unwrap_or(0),
    });
    plan
}

/// The pod a ReplicaSet's template makes (the server fills in the name's suffix).
pub fn pod_from_template(rs: &ReplicaSet) -> Value {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    let name = rs.metadata.name.as_deref().unwrap_or("");
    let mut metadata = json!({
        "generateName": format!("{name}-"),
        "namespace": rs.metadata.namespace,
        "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name,
            "uid": rs.metadata.uid, "controller": true, "blockOwnerDeletion": true,
        }],
    });
    for k in ["labels", "annotations", "finalizers"] {
        if let Some(v) = template["metadata"].get(k).filter(|v| !v.is_null()) {
            metadata[k] = v.clone();
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]})
}

/// The status conditions after a sync: ReplicaFailure while creating or
/// deleting fails, with Kubernetes' reasons, kept otherwise as they were.
fn conditions(rs: &ReplicaSet, failure: Option<(&str, &str)>) -> Value {
    let mut out: Vec<Value> = rs
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .filter(|c| c.type_ != "ReplicaFailure")
                .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
                .collect()
        })
        .unwrap_or_default();
    if let Some((reason, message)) = failure {
        out.push(
            json!({"type": "ReplicaFailure", "status": "True", "reason": reason,
            "message": message, "lastTransitionTime": crate::now_rounded().to_string()}),
        );
    }
    Value::Array(out)
}

/// The pods, indexed by controller uid (`""` for pods without a controller),
/// so a sync looks only at its own pods and the orphans, not at every pod.
struct Pods {
    cache: Cache<Pod>,
    by_owner: HashMap<String, HashSet<String>>,
}

fn owner_key(p: &Pod) -> String {
    controller_of(p)
        .map(|(uid, _)| uid.to_string())
        .unwrap_or_default()
}

impl Pods {
    fn new() -> Self {
        Self {
            cache: Cache::new(),
            by_owner: HashMap::new(),
        }
    }

    fn unindex(&mut self, key: &str) {
        if let Some(old) = self.cache.get(key) {
            let owner = owner_key(old);
            if let Some(set) = self.by_owner.get_mut(&owner) {
                set.remove(key);
                if set.is_empty() {
                    self.by_owner.remove(&owner);
                }
            }
        }
    }

    fn index(&mut self, key: &str) {
        if let Some(now) = self.cache.get(key) {
            let owner = owner_key(now);
            self.by_owner
                .entry(owner)
                .or_default()
                .insert(key.to_string());
        }
    }

    fn apply(&mut self, ev: watcher::Event<std::sync::Arc<Pod>>) {
        let key = match &ev {
            watcher::Event::Apply(p) | watcher::Event::Delete(p) => {
                Some(crate::key_of(&p.metadata))
            }
            _ => None,
        };
        let relisted = matches!(ev, watcher::Event::InitDone);
        if let Some(k) = &key {
            self.unindex(k);
        }
        self.cache.apply(ev);
        if let Some(k) = &key {
            self.index(k);
        }
        if relisted {
            self.by_owner.clear();
            let keys: Vec<String> = self.cache.items.keys().cloned().collect();
            for k in keys {
                self.index(&k);
            }
        }
    }

    fn put(&mut self, p: Pod) {
        let key = crate::key_of(&p.metadata);
        self.unindex(&key);
        self.cache.put(p);
        self.index(&key);
    }

    fn get(&self, key: &str) -> Option<&Pod> {
        self.cache.get(key)
    }

    /// The pods a ReplicaSet may own in `ns`: its own and the orphans.
    fn candidates(&self, rs_uid: &str, ns: &str) -> Vec<&Pod> {
        [rs_uid, ""]
            .iter()
            .filter_map(|o| self.by_owner.get(*o))
            .flatten()
            .filter_map(|k| self.cache.get(k))
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .collect()
    }
}

/// Pods created or deleted but not yet seen so by the watch, per ReplicaSet.
#[derive(Default)]
struct Expectations {
    /// Pod names created; seen once the watch delivers them.
    creating: HashMap<String, HashSet<String>>,
    /// Pod uids deleted; seen once the watch shows them terminating or gone.
    deleting: HashMap<String, HashSet<String>>,
}

/// Runs the ReplicaSet controller until `shutdown` turns true.
/// (With a pod watch of its own; `skiff server` shares one through [`run_with_pods`].)
pub async fn run(client: kube::Client, shutdown: watch::Receiver<bool>) {
    run_with_pods(
        client.clone(),
        crate::informer::own_pods(client.clone()),
        shutdown,
    )
    .await
}

/// Runs the controller on a shared pod stream ([`crate::informer`]) until `shutdown` turns true.
pub async fn run_with_pods(
    client: kube::Client,
    pods_in: crate::informer::PodStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut rs_stream = watcher(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .boxed();
    let mut pod_stream = pods_in;
    let mut sets: Cache<ReplicaSet> = Cache::new();
    let mut pods = Pods::new();
    let mut dirty: HashSet<String> = HashSet::new();
    let mut expect = Expectations::default();
    let mut resync = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            ev = rs_stream.next() => match ev {
                Some(Ok(ev)) => {
                    sets.apply_marking(ev, &mut dirty);
                }
                Some(Err(e)) => {
                    tracing::warn!("replicaset controller: watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => return,
            },
            ev = pod_stream.next() => match ev {
                Some(Ok(ev)) => {
                    on_pod_event(&sets, &mut expect, &mut dirty, &mut pods, ev);
                    // Take every pod event already waiting before syncing, so a
                    // burst of events costs one sync per ReplicaSet, not one each.
                    while let Some(Some(Ok(ev))) = pod_stream.next().now_or_never() {
                        on_pod_event(&sets, &mut expect, &mut dirty, &mut pods, ev);
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("replicaset controller: pod watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => return,
            },
            _ = resync.tick() => {
                // Availability changes with time alone (minReadySeconds).
                if sets.synced {
                    dirty.extend(sets.items.iter().filter(|(_, rs)| {
                        let st = rs.status.as_ref();
                        st.map(|s| s.ready_replicas) != st.map(|s| s.available_replicas)
                    }).map(|(k, _)| k.clone()));
                }
            }
        }
        if !sets.synced || !pods.cache.synced {
            continue;
        }
        for key in std::mem::take(&mut dirty) {
            let Some(rs) = sets.get(&key).cloned() else {
                expect.creating.remove(&key);
                expect.deleting.remove(&key);
                continue;
            };
            sync(&client, &rs, &key, &mut pods, &mut expect).await;
        }
    }
}

/// Applies one pod event: books it against the expectations, marks the
/// ReplicaSets it concerns and updates the pods.
fn on_pod_event(
    sets: &Cache<ReplicaSet>,
    expect: &mut Expectations,
    dirty: &mut HashSet<String>,
    pods: &mut Pods,
    ev: watcher::Event<std::sync::Arc<Pod>>,
) {
    if let watcher::Event::Apply(p) | watcher::Event::Delete(p) = &ev {
        let gone =
            matches!(ev, watcher::Event::Delete(_)) || p.metadata.deletion_timestamp.is_some();
        note_pod(sets, expect, dirty, p, gone);
    }
    pods.apply(ev);
}

/// Books a pod event against the expectations and marks the ReplicaSets it concerns.
fn note_pod(
    sets: &Cache<ReplicaSet>,
    expect: &mut Expectations,
    dirty: &mut HashSet<String>,
    pod: &Pod,
    gone: bool,
) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    match controller_of(pod) {
        Some((uid, "ReplicaSet")) => {
            if let Some((k, _)) = sets
                .items
                .iter()
                .find(|(_, rs)| rs.metadata.uid.as_deref() == Some(uid))
            {
                if let Some(c) = expect.creating.get_mut(k) {
                    c.remove(name);
                }
                if gone && let Some(d) = expect.deleting.get_mut(k) {
                    d.remove(pod.metadata.uid.as_deref().unwrap_or(""));
                }
                dirty.insert(k.clone());
            }
        }
        Some(_) => {}
        None => {
            // An orphan: any ReplicaSet of its namespace that selects it may adopt it.
            for (k, rs) in &sets.items {
                if rs.metadata.namespace.as_deref() == Some(ns) && selects(&selector_of(rs), pod) {
                    dirty.insert(k.clone());
                }
            }
        }
    }
}

async fn sync(
    client: &kube::Client,
    rs: &ReplicaSet,
    key: &str,
    pods: &mut Pods,
    expect: &mut Expectations,
) {
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let creating = expect.creating.entry(key.to_string()).or_default().clone();
    let deleting = expect.deleting.entry(key.to_string()).or_default().clone();
    let in_ns: Vec<&Pod> = pods
        .candidates(rs.metadata.uid.as_deref().unwrap_or(""), &ns)
        .into_iter()
        // A pod we asked to delete counts as gone until the watch agrees.
        .filter(|p| !deleting.contains(p.metadata.uid.as_deref().unwrap_or("")))
        .collect();
    let mut plan = plan(rs, &in_ns, Timestamp::now());
    // Pods created but not yet seen count as there.
    plan.create = plan.create.saturating_sub(creating.len());
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let about = Involved {
        kind: "ReplicaSet",
        api_version: "apps/v1",
        namespace: &ns,
        name: &name,
        uid: rs.metadata.uid.as_deref(),
    };
    let mut failure: Option<(&str, String)> = None;

    for p in &plan.adopt {
        let patch = json!({"metadata": {"ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name,
            "uid": rs.metadata.uid, "controller": true, "blockOwnerDeletion": true}]}});
        if let Ok(updated) = api
            .patch(p, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            pods.put(updated);
        }
    }
    for p in &plan.release {
        let keep: Vec<Value> = pods
            .get(&format!("{ns}/{p}"))
            .and_then(|p| p.metadata.owner_references.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o.uid != rs.metadata.uid.clone().unwrap_or_default())
            .map(|o| serde_json::to_value(o).unwrap_or(Value::Null))
            .collect();
        let refs = if keep.is_empty() {
            Value::Null
        } else {
            Value::Array(keep)
        };
        let patch = json!({"metadata": {"ownerReferences": refs}});
        if let Ok(updated) = api
            .patch(p, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            pods.put(updated);
        }
    }

    // Creations in slow-start batches (1, 2, 4, …), stopping at the first failure.
    let template: Pod = match serde_json::from_value(pod_from_template(rs)) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("replicaset {key}: template: {e}");
            return;
        }
    };
    let pp = PostParams::default();
    let mut remaining = plan.create;
    let mut batch = 1;
    while remaining > 0 && failure.is_none() {
        let n = batch.min(remaining);
        let results = futures::future::join_all((0..n).map(|_| api.create(&pp, &template))).await;
        for r in results {
            match r {
                Ok(p) => {
                    let pname = p.metadata.name.clone().unwrap_or_default();
                    expect
                        .creating
                        .entry(key.to_string())
                        .or_default()
                        .insert(pname.clone());
                    pods.put(p);
                    record(
                        client,
                        "replicaset-controller",
                        &about,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {pname}"),
                    )
                    .await;
                }
                Err(e) => {
                    let msg = crate::api_message(&e);
                    record(
                        client,
                        "replicaset-controller",
                        &about,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating: {msg}"),
                    )
                    .await;
                    failure = Some(("FailedCreate", msg));
                }
            }
        }
        remaining -= n;
        batch *= 2;
    }

    for p in &plan.delete {
        let uid = pods
            .get(&format!("{ns}/{p}"))
            .and_then(|p| p.metadata.uid.clone())
            .unwrap_or_default();
        match api.delete(p, &DeleteParams::default()).await {
            Ok(_) => {
                expect
                    .deleting
                    .entry(key.to_string())
                    .or_default()
                    .insert(uid);
                record(
                    client,
                    "replicaset-controller",
                    &about,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted pod: {p}"),
                )
                .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                let msg = crate::api_message(&e);
                record(
                    client,
                    "replicaset-controller",
                    &about,
                    "Warning",
                    "FailedDelete",
                    &format!("Error deleting: {msg}"),
                )
                .await;
                failure = Some(("FailedDelete", msg));
            }
        }
    }

    // Status, written only when it changed.
    let mut status = plan.status;
    status["conditions"] = conditions(rs, failure.as_ref().map(|(r, m)| (*r, m.as_str())));
    let old = serde_json::to_value(&rs.status).unwrap_or(Value::Null);
    let changed = [
        "replicas",
        "fullyLabeledReplicas",
        "readyReplicas",
        "availableReplicas",
        "observedGeneration",
    ]
    .iter()
    .any(|k| old[k].as_i64().unwrap_or(0) != status[k].as_i64().unwrap_or(0))
        || old["conditions"].as_array().map(Vec::len).unwrap_or(0)
            != status["conditions"].as_array().map(Vec::len).unwrap_or(0);
    if changed {
        let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
        if let Err(e) = rs_api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
        {
            tracing::debug!("replicaset {key}: status: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(replicas: i32, extra: Value) -> ReplicaSet {
        let mut v = json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "rs-uid", "generation": 3},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
        });
        json_merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn json_merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    json_merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    /// A pod owned by the ReplicaSet: name, node, phase, ready since (seconds ago), restarts, age.
    fn pod(
        name: &str,
        node: &str,
        phase: &str,
        ready_ago: Option<i64>,
        restarts: i32,
        age: i64,
    ) -> Pod {
        let now = Timestamp::now();
        let mut conditions = vec![];
        if let Some(s) = ready_ago {
            conditions.push(json!({"type": "Ready", "status": "True",
                "lastTransitionTime": (now - SignedDuration::from_secs(s)).to_string()}));
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "labels": {"app": "web", "tier": "fe"},
                "creationTimestamp": (now - SignedDuration::from_secs(age)).round(jiff::Unit::Second).unwrap().to_string(),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                    "uid": "rs-uid", "controller": true}]},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": phase, "conditions": conditions,
                "containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": ready_ago.is_some(), "restartCount": restarts}]}
        }))
        .unwrap()
    }

    #[test]
    fn missing_pods_are_created_and_surplus_deleted() {
        let a = pod("a", "n1", "Running", Some(100), 0, 100);
        let b = pod("b", "n2", "Running", Some(100), 0, 100);
        let p = plan(&rs(3, json!({})), &[&a, &b], Timestamp::now());
        assert_eq!((p.create, p.delete.len()), (1, 0));
        assert_eq!(p.status["replicas"], 2);
        assert_eq!(p.status["readyReplicas"], 2);
        assert_eq!(p.status["observedGeneration"], 3);

        let p = plan(&rs(1, json!({})), &[&a, &b], Timestamp::now());
        assert_eq!((p.create, p.delete.len()), (0, 1));

        let p = plan(&rs(2, json!({})), &[&a, &b], Timestamp::now());
        assert_eq!(
            p,
            Plan {
                status: p.status.clone(),
                ..Plan::default()
            },
            "steady state does nothing"
        );

        let p = plan(&rs(5000, json!({})), &[], Timestamp::now());
        assert_eq!(
            p.create, BURST_REPLICAS,
            "one sync creates at most burstReplicas"
        );
    }

    #[test]
    fn pods_are_deleted_in_kubernetes_order() {
        let cases: Vec<(&str, Vec<Pod>, &str)> = vec![
            (
                "unscheduled first",
                vec![
                    pod("run", "n1", "Running", Some(10), 0, 10),
                    pod("unsched", "", "Pending", None, 0, 10),
                ],
                "unsched",
            ),
            (
                "pending before running",
                vec![
                    pod("run", "n1", "Running", Some(10), 0, 10),
                    pod("pend", "n2", "Pending", None, 0, 10),
                ],
                "pend",
            ),
            (
                "unknown before running",
                vec![
                    pod("run", "n1", "Running", Some(10), 0, 10),
                    pod("unk", "n2", "Unknown", Some(10), 0, 10),
                ],
                "unk",
            ),
            (
                "not ready before ready",
                vec![
                    pod("ready", "n1", "Running", Some(10), 0, 10),
                    pod("notready", "n2", "Running", None, 0, 10),
                ],
                "notready",
            ),
            (
                "doubled-up node first",
                vec![
                    pod("lone", "n1", "Running", Some(10), 0, 10),
                    pod("pair1", "n2", "Running", Some(10), 0, 10),
                    pod("pair2", "n2", "Running", Some(10), 0, 10),
                ],
                "pair",
            ),
            (
                "ready for less time first",
                vec![
                    pod("old", "n1", "Running", Some(1000), 0, 1000),
                    pod("fresh", "n2", "Running", Some(5), 0, 1000),
                ],
                "fresh",
            ),
            (
                "more restarts first",
                vec![
                    pod("calm", "n1", "Running", Some(10), 0, 10),
                    pod("flappy", "n2", "Running", Some(10), 7, 10),
                ],
                "flappy",
            ),
            (
                "newer first",
                vec![
                    pod("elder", "n1", "Running", Some(10), 0, 500),
                    pod("young", "n2", "Running", Some(10), 0, 20),
                ],
                "young",
            ),
        ];
        for (what, pods, want) in cases {
            let refs: Vec<&Pod> = pods.iter().collect();
            let p = plan(
                &rs(refs.len() as i32 - 1, json!({})),
                &refs,
                Timestamp::now(),
            );
            assert_eq!(p.delete.len(), 1, "{what}");
            assert!(
                p.delete[0].starts_with(want),
                "{what}: deleted {:?}",
                p.delete
            );
        }
        let mut cheap = pod("cheap", "n1", "Running", Some(10), 0, 10);
        cheap.metadata.annotations = Some(
            [(
                "controller.kubernetes.io/pod-deletion-cost".to_string(),
                "-5".to_string(),
            )]
            .into(),
        );
        let dear = pod("dear", "n2", "Running", Some(10), 0, 10);
        let p = plan(&rs(1, json!({})), &[&dear, &cheap], Timestamp::now());
        assert_eq!(
            p.delete,
            vec!["cheap".to_string()],
            "lower deletion cost first"
        );
    }

    #[test]
    fn orphans_are_adopted_and_mismatches_released() {
        let mut orphan = pod("orphan", "n1", "Running", Some(10), 0, 10);
        orphan.metadata.owner_references = None;
        let mut strayed = pod("strayed", "n1", "Running", Some(10), 0, 10);
        strayed.metadata.labels = Some([("app".to_string(), "other".to_string())].into());
        let mut foreign = pod("foreign", "n1", "Running", Some(10), 0, 10);
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "someone-else".into();
        let p = plan(
            &rs(1, json!({})),
            &[&orphan, &strayed, &foreign],
            Timestamp::now(),
        );
        assert_eq!(p.adopt, vec!["orphan".to_string()]);
        assert_eq!(p.release, vec!["strayed".to_string()]);
        assert_eq!(
            (p.create, p.delete.len()),
            (0, 0),
            "the adopted orphan counts"
        );

        let p = plan(
            &rs(
                1,
                json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
            ),
            &[&orphan],
            Timestamp::now(),
        );
        assert!(
            p.adopt.is_empty() && p.create == 0,
            "a ReplicaSet being deleted adopts and creates nothing"
        );
    }

    #[test]
    fn terminating_and_finished_pods_are_replaced_not_counted() {
        let mut gone = pod("gone", "n1", "Running", Some(10), 0, 10);
        gone.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
        );
        let done = pod("done", "n1", "Succeeded", None, 0, 10);
        let failed = pod("failed", "n1", "Failed", None, 0, 10);
        let p = plan(
            &rs(2, json!({})),
            &[&gone, &done, &failed],
            Timestamp::now(),
        );
        assert_eq!(p.create, 2);
        assert_eq!(p.status["replicas"], 0);
    }

    #[test]
    fn status_counts_labels_readiness_and_availability() {
        let ready_long = pod("a", "n1", "Running", Some(100), 0, 100);
        let ready_short = pod("b", "n1", "Running", Some(2), 0, 100);
        let mut partial = pod("c", "n1", "Running", None, 0, 100);
        partial.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        let p = plan(
            &rs(3, json!({"spec": {"minReadySeconds": 30}})),
            &[&ready_long, &ready_short, &partial],
            Timestamp::now(),
        );
        assert_eq!(
            p.status,
            json!({"replicas": 3, "fullyLabeledReplicas": 2, "readyReplicas": 2,
            "availableReplicas": 1, "observedGeneration": 3})
        );
    }

    #[test]
    fn pods_are_made_from_the_template_with_a_controller_reference() {
        let p = pod_from_template(&rs(
            1,
            json!({"spec": {"template": {"metadata": {"annotations": {"a": "b"}}}}}),
        ));
        assert_eq!(p["metadata"]["generateName"], "web-");
        assert_eq!(p["metadata"]["labels"], json!({"app": "web", "tier": "fe"}));
        assert_eq!(p["metadata"]["annotations"], json!({"a": "b"}));
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "rs-uid");
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(p["spec"]["containers"][0]["image"], "busybox");
    }
}
