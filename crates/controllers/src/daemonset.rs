//! The DaemonSet controller (apps/v1), as kube-controller-manager's: one
//! pod per eligible node.
//!
//! A node is eligible ([`node_should_run`]) when the template's node
//! selector and required node affinity match it and its NoSchedule and
//! NoExecute taints are tolerated, counting the tolerations every daemon pod
//! gets ([`default_tolerations`]); being unschedulable does not matter.
//! Pods are pinned with required node affinity on `metadata.name` (the
//! scheduler binds them). [`plan`] is pure: from the DaemonSet, the nodes,
//! its pods and the current template hash it decides which nodes get a pod,
//! which pods go (misscheduled, surplus, failed, and old ones in a rolling
//! update within `maxUnavailable`/`maxSurge`) and the status. [`run`] keeps
//! ControllerRevisions of the template (`controller-revision-hash` on pods)
//! and carries the plans out.

use crate::cache::Cache;
use crate::events::{Involved, record};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use skiff_api::node_match::tolerates;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use tokio::sync::watch;

/// The label naming the ControllerRevision a daemon pod was made from.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// The tolerations Kubernetes adds to every daemon pod (the last only with
/// `hostNetwork`).
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut out: Vec<Toleration> = [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ]
    .iter()
    .map(|(k, e)| Toleration {
        key: Some(k.to_string()),
        operator: Some("Exists".into()),
        effect: Some(e.to_string()),
        ..Toleration::default()
    })
    .collect();
    if host_network {
        out.push(Toleration {
            key: Some("node.kubernetes.io/network-unavailable".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        });
    }
    out
}

/// The template's pod spec with the default daemon tolerations added (those
/// it already has are kept as they are).
fn spec_with_tolerations(ds: &DaemonSet) -> Value {
    let mut spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
        .unwrap_or(json!({}));
    let host_network = spec["hostNetwork"].as_bool().unwrap_or(false);
    let mut tols: Vec<Value> = spec["tolerations"].as_array().cloned().unwrap_or_default();
    for t in default_tolerations(host_network) {
        let exists = tols.iter().any(|x| {
            x["key"] == t.key.as_deref().unwrap_or("")
                && x["effect"] == t.effect.as_deref().unwrap_or("")
        });
        if !exists {
            tols.push(serde_json::to_value(t).unwrap_or(Value::Null));
        }
    }
    spec["tolerations"] = Value::Array(tols);
    spec
}

/// Whether a pod spec's `nodeName`, node selector and required node affinity admit the node.
fn fits_node(spec: &k8s_openapi::api::core::v1::PodSpec, node: &Node) -> bool {
    let name = node.metadata.name.as_deref().unwrap_or("");
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty())
        && n != name
    {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    skiff_api::node_match::selector_and_affinity_match(spec, name, |k| {
        labels.and_then(|l| l.get(k)).map(String::as_str)
    })
}

/// Whether a daemon pod should run on the node and, if one is there already,
/// whether it may keep running (`NodeShouldRunDaemonPod`): untolerated
/// NoSchedule taints keep new pods off but leave running ones; untolerated
/// NoExecute taints do both.
pub fn node_should_run(ds: &DaemonSet, node: &Node) -> (bool, bool) {
    let spec: k8s_openapi::api::core::v1::PodSpec =
        serde_json::from_value(spec_with_tolerations(ds)).unwrap_or_default();
    if !fits_node(&spec, node) {
        return (false, false);
    }
    let tols = spec.tolerations.as_deref().unwrap_or(&[]);
    let taints: &[Taint] = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    let untolerated = |effect: &str| {
        taints
            .iter()
            .filter(|t| t.effect == effect)
            .any(|t| !tols.iter().any(|tol| tolerates(tol, t)))
    };
    if untolerated("NoExecute") {
        return (false, false);
    }
    if untolerated("NoSchedule") {
        return (false, true);
    }
    (true, true)
}

/// `(maxSurge, maxUnavailable)` as numbers of nodes out of `desired`: surge
/// rounds down, unavailable up; both zero means one may be unavailable.
/// OnDelete gives `None`.
pub fn fenceposts(ds: &DaemonSet, desired: i32) -> Option<(i32, i32)> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let strategy = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    if strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
        return None;
    }
    let ru = strategy.and_then(|s| s.rolling_update.as_ref());
    let scale = |v: Option<&IntOrString>, default: i32, up: bool| match v {
        None => default,
        Some(IntOrString::Int(i)) => (*i).max(0),
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let x = pct * i64::from(desired);
            (if up { (x + 99) / 100 } else { x / 100 }) as i32
        }
    };
    let surge = scale(ru.and_then(|r| r.max_surge.as_ref()), 0, false);
    let mut unavailable = scale(ru.and_then(|r| r.max_unavailable.as_ref()), 1, true);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Some((surge, unavailable))
}

/// What one sync of a DaemonSet does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Nodes that get a new pod.
    pub create_on: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<String>,
    /// The status to write.
    pub status: Value,
}

fn pod_hash(p: &Pod) -> Option<&str> {
    p.metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH_LABEL)
        .map(String::as_str)
}

/// The node a daemon pod is on, or is pinned to by its node affinity while unbound.
pub fn target_node(p: &Pod) -> Option<String> {
    let spec = p.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
}

fn available(p: &Pod, min_ready: i32, now: Timestamp) -> bool {
    crate::replicaset::is_available(p, min_ready, now)
}

/// Plans one sync. `pods` are those the DaemonSet controls; `hash` is its
/// current template's `controller-revision-hash`.
pub fn plan(ds: &DaemonSet, nodes: &[&Node], pods: &[&Pod], hash: &str, now: Timestamp) -> Plan {
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    let mut plan = Plan::default();
    for &p in pods {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match target_node(p) {
            Some(n) => by_node.entry(n).or_default().push(p),
            None => plan
                .delete
                .push(p.metadata.name.clone().unwrap_or_default()),
        }
    }
    for v in by_node.values_mut() {
        v.sort_by(|a, b| {
            let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            t(a).cmp(&t(b)).then(a.metadata.name.cmp(&b.metadata.name))
        });
    }
    let names: HashSet<&str> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    // Unbound pods pinned to nodes that are gone are deleted (bound ones are pod GC's).
    for (n, ps) in &by_node {
        if !names.contains(n.as_str()) {
            for p in ps {
                if p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_none_or(str::is_empty)
                {
                    plan.delete
                        .push(p.metadata.name.clone().unwrap_or_default());
                }
            }
        }
    }
    let name_of = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
    let is_new = |p: &Pod| pod_hash(p) == Some(hash);

    let mut desired = 0;
    let mut current = 0;
    let mut misscheduled = 0;
    let mut ready = 0;
    let mut avail = 0;
    let mut updated = 0;
    // Nodes eligible with their (non-failed) pods, for the rolling update.
    let mut eligible: Vec<(String, Vec<&Pod>)> = Vec::new();
    for node in nodes {
        let nname = node.metadata.name.clone().unwrap_or_default();
        let (should_run, should_continue) = node_should_run(ds, node);
        let here: Vec<&Pod> = by_node.get(&nname).cloned().unwrap_or_default();
        let (failed, live): (Vec<&Pod>, Vec<&Pod>) = here
            .iter()
            .partition(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"));
        if should_run {
            desired += 1;
            if !here.is_empty() {
                current += 1;
                let first = here[0];
                if crate::replicaset::ready_since(first).is_some() {
                    ready += 1;
                }
                if available(first, min_ready, now) {
                    avail += 1;
                }
                if here.iter().any(|p| is_new(p)) {
                    updated += 1;
                }
            }
        } else if !here.is_empty() {
            misscheduled += 1;
        }
        if should_continue {
            plan.delete.extend(failed.iter().map(|p| name_of(p)));
            if live.is_empty() {
                // A failed pod is replaced in the next sync, once it is gone.
                if should_run && failed.is_empty() {
                    plan.create_on.push(nname.clone());
                }
            } else {
                eligible.push((nname, live));
            }
        } else {
            plan.delete.extend(here.iter().map(|p| name_of(p)));
        }
    }

    // Surplus pods on a node (beyond one old and one new during a surge): the oldest stay.
    let fence = fenceposts(ds, desired);
    let mut pairs: Vec<(String, Option<&Pod>, Option<&Pod>)> = Vec::new();
    for (n, live) in eligible {
        let old: Vec<&Pod> = live.iter().copied().filter(|p| !is_new(p)).collect();
        let new: Vec<&Pod> = live.iter().copied().filter(|p| is_new(p)).collect();
        let surge_ok = fence.is_some_and(|(s, _)| s > 0);
        if surge_ok {
            plan.delete.extend(old.iter().skip(1).map(|p| name_of(p)));
            plan.delete.extend(new.iter().skip(1).map(|p| name_of(p)));
            pairs.push((n, old.first().copied(), new.first().copied()));
        } else {
            plan.delete.extend(live.iter().skip(1).map(|p| name_of(p)));
            let keep = live[0];
            if is_new(keep) {
                pairs.push((n, None, Some(keep)));
            } else {
                pairs.push((n, Some(keep), None));
            }
        }
    }

    if let Some((max_surge, max_unavailable)) = fence {
        if max_surge == 0 {
            // Delete old pods, unavailable ones first, while within maxUnavailable.
            let missing = plan.create_on.len() as i32;
            let mut unavailable = missing
                + pairs
                    .iter()
                    .filter(|(_, o, n)| !o.or(*n).is_some_and(|p| available(p, min_ready, now)))
                    .count() as i32;
            let mut candidates: Vec<(bool, &Pod)> = pairs
                .iter()
                .filter_map(|(_, o, _)| *o)
                .map(|p| (available(p, min_ready, now), p))
                .collect();
            candidates.sort_by_key(|(a, _)| *a);
            for (is_avail, p) in candidates {
                if !is_avail {
                    plan.delete.push(name_of(p));
                } else if unavailable < max_unavailable {
                    plan.delete.push(name_of(p));
                    unavailable += 1;
                }
            }
        } else {
            // Surge: a new pod next to the old one; the old goes once the new is available.
            let mut surging = pairs
                .iter()
                .filter(|(_, o, n)| o.is_some() && n.is_some_and(|p| !available(p, min_ready, now)))
                .count() as i32;
            for (node, old, new) in &pairs {
                let Some(old) = old else { continue };
                match new {
                    Some(n) if available(n, min_ready, now) => plan.delete.push(name_of(old)),
                    Some(_) => {}
                    None if !available(old, min_ready, now) => plan.create_on.push(node.clone()),
                    None if surging < max_surge => {
                        plan.create_on.push(node.clone());
                        surging += 1;
                    }
                    None => {}
                }
            }
            let _ = max_unavailable;
        }
    }
    plan.delete.sort();
    plan.delete.dedup();
    plan.status = json!({
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "desiredNumberScheduled": desired,
        "numberReady": ready,
        "observedGeneration": ds.metadata.generation.unwrap_or(0),
        "updatedNumberScheduled": updated,
        "numberAvailable": avail,
        "numberUnavailable": desired - avail,
    });
    plan
}

/// The template as a ControllerRevision stores it (`spec.template` with `$patch: replace`).
fn revision_data(ds: &DaemonSet) -> Value {
    let mut t = serde_json::to_value(ds.spec.as_ref().map(|s| &s.template)).unwrap_or(Value::Null);
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The current template hash of a DaemonSet.
pub fn hash_of(ds: &DaemonSet) -> String {
    let t = serde_json::to_value(ds.spec.as_ref().map(|s| &s.template)).unwrap_or(Value::Null);
    let collisions = ds
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    crate::deployment::template_hash(&t, collisions)
}

/// The pod a DaemonSet makes for `node`, with revision `hash`.
pub fn pod_for_node(ds: &DaemonSet, node: &str, hash: &str) -> Value {
    let name = ds.metadata.name.as_deref().unwrap_or("");
    let tm = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
        .unwrap_or(json!({}));
    let mut labels = tm["labels"].as_object().cloned().unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), json!(hash));
    labels.insert(
        "pod-template-generation".into(),
        json!(ds.metadata.generation.unwrap_or(0).to_string()),
    );
    let mut metadata = json!({
        "generateName": format!("{name}-"),
        "namespace": ds.metadata.namespace,
        "labels": labels,
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": name,
            "uid": ds.metadata.uid, "controller": true, "blockOwnerDeletion": true}],
    });
    for k in ["annotations", "finalizers"] {
        if let Some(v) = tm.get(k).filter(|v| !v.is_null()) {
            metadata[k] = v.clone();
        }
    }
    let mut spec = spec_with_tolerations(ds);
    // Pin to the node: the name requirement replaces matchFields in every term.
    let pin = json!([{"key": "metadata.name", "operator": "In", "values": [node]}]);
    let terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let terms: Vec<Value> = if terms.is_empty() {
        vec![json!({"matchFields": pin})]
    } else {
        terms
            .into_iter()
            .map(|mut t| {
                t["matchFields"] = pin.clone();
                t
            })
            .collect()
    };
    if !spec["affinity"].is_object() {
        spec["affinity"] = json!({});
    }
    if !spec["affinity"]["nodeAffinity"].is_object() {
        spec["affinity"]["nodeAffinity"] = json!({});
    }
    spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] =
        json!({"nodeSelectorTerms": terms});
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

#[derive(Default)]
struct Expectations {
    creating: HashMap<String, HashSet<String>>,
    deleting: HashMap<String, HashSet<String>>,
}

/// Runs the DaemonSet controller until `shutdown` turns true.
pub async fn run(client: kube::Client, shutdown: watch::Receiver<bool>) {
    run_with_pods(client.clone(), crate::informer::own_pods(client), shutdown).await
}

/// Runs the controller on a shared pod stream ([`crate::informer`]) until `shutdown` turns true.
pub async fn run_with_pods(
    client: kube::Client,
    pods_in: crate::informer::PodStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ds_stream = watcher(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .boxed();
    let mut pod_stream = pods_in;
    let mut node_stream =
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).boxed();
    let mut rev_stream = watcher(
        Api::<ControllerRevision>::all(client.clone()),
        watcher::Config::default(),
    )
    .boxed();
    let mut sets: Cache<DaemonSet> = Cache::new();
    let mut pods: Cache<Pod> = Cache::new();
    let mut nodes: Cache<Node> = Cache::new();
    let mut revs: Cache<ControllerRevision> = Cache::new();
    let mut dirty: HashSet<String> = HashSet::new();
    let mut expect = Expectations::default();
    let mut resync = tokio::time::interval(Duration::from_secs(1));
    loop {
        let mut all = false;
        tokio::select! {
            _ = shutdown.changed() => return,
            ev = ds_stream.next() => match ev {
                Some(Ok(ev)) => {
                    if let watcher::Event::Apply(d) | watcher::Event::Delete(d) = &ev {
                        dirty.insert(crate::key_of(&d.metadata));
                    }
                    all = matches!(ev, watcher::Event::InitDone);
                    sets.apply(ev);
                }
                Some(Err(e)) => { tracing::warn!("daemonset controller: watch: {e}"); tokio::time::sleep(Duration::from_millis(500)).await; }
                None => return,
            },
            ev = pod_stream.next() => match ev {
                Some(Ok(ev)) => {
                    if let watcher::Event::Apply(p) | watcher::Event::Delete(p) = &ev {
                        let gone = matches!(ev, watcher::Event::Delete(_)) || p.metadata.deletion_timestamp.is_some();
                        if let Some(owner) = owner_uid(p)
                            && let Some((k, _)) = sets.items.iter().find(|(_, d)| d.metadata.uid.as_deref() == Some(owner)) {
                            if let Some(c) = expect.creating.get_mut(k) { c.remove(p.metadata.name.as_deref().unwrap_or("")); }
                            if gone && let Some(d) = expect.deleting.get_mut(k) { d.remove(p.metadata.uid.as_deref().unwrap_or("")); }
                            dirty.insert(k.clone());
                        }
                    }
                    // Only DaemonSet pods are kept; the rest never cost a scan.
                    match ev {
                        watcher::Event::Apply(p) if owner_uid(&p).is_none() => {
                            pods.apply(watcher::Event::Delete(p));
                        }
                        watcher::Event::InitApply(p) if owner_uid(&p).is_none() => {}
                        ev => {
                            pods.apply(ev);
                        }
                    }
                }
                Some(Err(e)) => { tracing::warn!("daemonset controller: pod watch: {e}"); tokio::time::sleep(Duration::from_millis(500)).await; }
                None => return,
            },
            ev = node_stream.next() => match ev {
                Some(Ok(ev)) => { all = !matches!(ev, watcher::Event::InitApply(_) | watcher::Event::Init); nodes.apply(ev); }
                Some(Err(e)) => { tracing::warn!("daemonset controller: node watch: {e}"); tokio::time::sleep(Duration::from_millis(500)).await; }
                None => return,
            },
            ev = rev_stream.next() => match ev {
                Some(Ok(ev)) => { revs.apply(ev); }
                Some(Err(e)) => { tracing::warn!("daemonset controller: revision watch: {e}"); tokio::time::sleep(Duration::from_millis(500)).await; }
                None => return,
            },
            _ = resync.tick() => {
                // Availability changes with time alone (minReadySeconds).
                dirty.extend(sets.items.iter().filter(|(_, d)| {
                    let s = d.status.as_ref();
                    s.map(|s| s.number_ready) != s.and_then(|s| s.number_available)
                }).map(|(k, _)| k.clone()));
            }
        }
        if all {
            dirty.extend(sets.items.keys().cloned());
        }
        if !sets.synced || !pods.synced || !nodes.synced || !revs.synced {
            continue;
        }
        for key in std::mem::take(&mut dirty) {
            let Some(ds) = sets.get(&key).cloned() else {
                expect.creating.remove(&key);
                expect.deleting.remove(&key);
                continue;
            };
            sync(
                &client,
                &ds,
                &key,
                &nodes,
                &mut pods,
                &mut revs,
                &mut expect,
            )
            .await;
        }
    }
}

fn owner_uid(p: &Pod) -> Option<&str> {
    p.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "DaemonSet")
        .map(|o| o.uid.as_str())
}

/// Makes sure a ControllerRevision of the current template exists with the
/// highest revision number; drops unused ones beyond `revisionHistoryLimit`.
async fn revisions(
    client: &kube::Client,
    ds: &DaemonSet,
    hash: &str,
    revs: &mut Cache<ControllerRevision>,
    in_use: &HashSet<String>,
) {
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let name = ds.metadata.name.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let uid = ds.metadata.uid.as_deref();
    let mut mine: Vec<ControllerRevision> = revs
        .values()
        .filter(|r| {
            r.metadata.owner_references.as_ref().is_some_and(|o| {
                o.iter()
                    .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
            })
        })
        .cloned()
        .collect();
    mine.sort_by_key(|r| r.revision);
    let max = mine.last().map(|r| r.revision).unwrap_or(0);
    let cur_name = format!("{name}-{hash}");
    match mine
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(cur_name.as_str()))
    {
        Some(r) if r.revision == max => {}
        Some(_) => {
            // A rollback to an older template: it becomes the newest revision.
            if let Ok(r) = api
                .patch(
                    &cur_name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"revision": max + 1})),
                )
                .await
            {
                revs.put(r);
            }
        }
        None => {
            let mut labels = ds
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(REVISION_HASH_LABEL.into(), hash.to_string());
            let cr = json!({
                "apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": cur_name, "namespace": ns, "labels": labels,
                    "annotations": ds.metadata.annotations,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": name,
                        "uid": uid, "controller": true, "blockOwnerDeletion": true}]},
                "data": revision_data(ds),
                "revision": max + 1,
            });
            match serde_json::from_value::<ControllerRevision>(cr) {
                Ok(cr) => match api.create(&PostParams::default(), &cr).await {
                    Ok(r) => {
                        revs.put(r);
                    }
                    Err(e) => tracing::debug!("daemonset {ns}/{name}: revision: {e}"),
                },
                Err(e) => tracing::debug!("daemonset {ns}/{name}: revision: {e}"),
            }
        }
    }
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let old: Vec<&ControllerRevision> = mine
        .iter()
        .filter(|r| r.metadata.name.as_deref() != Some(cur_name.as_str()))
        .filter(|r| {
            let h = r
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_HASH_LABEL));
            !h.is_some_and(|h| in_use.contains(h))
        })
        .collect();
    if old.len() > limit {
        for r in old.iter().take(old.len() - limit) {
            let n = r.metadata.name.clone().unwrap_or_default();
            if api.delete(&n, &DeleteParams::default()).await.is_ok() {
                revs.items.remove(&format!("{ns}/{n}"));
            }
        }
    }
}

async fn sync(
    client: &kube::Client,
    ds: &DaemonSet,
    key: &str,
    nodes: &Cache<Node>,
    pods: &mut Cache<Pod>,
    revs: &mut Cache<ControllerRevision>,
    expect: &mut Expectations,
) {
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let name = ds.metadata.name.clone().unwrap_or_default();
    let uid = ds.metadata.uid.as_deref();
    let hash = hash_of(ds);
    let deleting = expect.deleting.get(key).cloned().unwrap_or_default();
    let creating = expect.creating.get(key).cloned().unwrap_or_default();
    let mine: Vec<&Pod> = pods
        .values()
        .filter(|p| owner_uid(p).is_some() && owner_uid(p) == uid)
        .filter(|p| !deleting.contains(p.metadata.uid.as_deref().unwrap_or("")))
        .collect();
    let in_use: HashSet<String> = mine
        .iter()
        .filter_map(|p| pod_hash(p).map(str::to_string))
        .collect();
    let node_list: Vec<&Node> = nodes.values().collect();
    let plan = plan(ds, &node_list, &mine, &hash, Timestamp::now());
    let status = plan.status.clone();
    let being_deleted = ds.metadata.deletion_timestamp.is_some();
    if !being_deleted {
        revisions(client, ds, &hash, revs, &in_use).await;
    }
    let about = Involved {
        kind: "DaemonSet",
        api_version: "apps/v1",
        namespace: &ns,
        name: &name,
        uid,
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    // Nodes with a pod created but not seen yet get none again.
    let pending: HashSet<String> = pods
        .values()
        .filter(|p| creating.contains(p.metadata.name.as_deref().unwrap_or("")))
        .filter_map(target_node)
        .collect();
    if creating.is_empty() && !being_deleted {
        for node in plan.create_on.iter().filter(|n| !pending.contains(*n)) {
            let Ok(pod) = serde_json::from_value::<Pod>(pod_for_node(ds, node, &hash)) else {
                continue;
            };
            match api.create(&PostParams::default(), &pod).await {
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
                        "daemonset-controller",
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
                        "daemonset-controller",
                        &about,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating: {msg}"),
                    )
                    .await;
                    break;
                }
            }
        }
    }
    for p in &plan.delete {
        let puid = pods
            .items
            .get(&format!("{ns}/{p}"))
            .and_then(|p| p.metadata.uid.clone())
            .unwrap_or_default();
        match api.delete(p, &DeleteParams::default()).await {
            Ok(_) => {
                expect
                    .deleting
                    .entry(key.to_string())
                    .or_default()
                    .insert(puid);
                record(
                    client,
                    "daemonset-controller",
                    &about,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted pod: {p}"),
                )
                .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                record(
                    client,
                    "daemonset-controller",
                    &about,
                    "Warning",
                    "FailedDelete",
                    &format!("Error deleting: {e}"),
                )
                .await;
            }
        }
    }
    let old = serde_json::to_value(&ds.status).unwrap_or(Value::Null);
    let changed = status
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| old[k].as_i64().unwrap_or(0) != v.as_i64().unwrap_or(0));
    if changed {
        let ds_api: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
        if let Err(e) = ds_api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
        {
            tracing::debug!("daemonset {key}: status: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
