//! The Deployment controller: rolling updates and Recreate, revisions,
//! pause, proportional scaling, history clean-up and the status and
//! conditions `kubectl rollout status` reads, as kube-controller-manager's
//! controller does them.
//!
//! [`plan`] is pure: from a Deployment, the ReplicaSets it owns and how many
//! pods of old ReplicaSets still run, it returns the ReplicaSet to create
//! (named `<deployment>-<pod-template-hash>`), the new sizes and
//! annotations of existing ones, the ReplicaSets to delete (beyond
//! `revisionHistoryLimit`), the events and the status. [`run`] carries it out.

use crate::cache::Cache;
use crate::events::{Involved, record};
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use tokio::sync::watch;

/// The label that tells a ReplicaSet's pods from another's.
pub const HASH_LABEL: &str = "pod-template-hash";
/// A ReplicaSet's (and its Deployment's) revision.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet held (when a rollback re-used it).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last sized.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's replicas plus surge when the ReplicaSet was last sized.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Deployment annotations never copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// What one sync does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// A ReplicaSet to create.
    pub create: Option<Value>,
    /// Existing ReplicaSets to change: name → (replicas, annotations to set).
    pub update: BTreeMap<String, (i32, BTreeMap<String, String>)>,
    /// ReplicaSets to delete (history beyond the limit).
    pub delete: Vec<String>,
    /// Events: (reason, message).
    pub events: Vec<(String, String)>,
    /// The status to write.
    pub status: Value,
    /// The Deployment's own revision annotation, when it changes.
    pub revision: Option<String>,
}

fn replicas_of(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// A ReplicaSet's revision (0 when it has none).
pub fn revision_of(rs: &ReplicaSet) -> i64 {
    annotation(rs, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

/// An intOrString against `total`: percentages round up or down.
fn scaled(
    v: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    default: &str,
    total: i32,
    round_up: bool,
) -> i32 {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let s = match v {
        Some(IntOrString::Int(i)) => return (*i).max(0),
        Some(IntOrString::String(s)) => s.as_str(),
        None => default,
    };
    let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
    let x = pct * i64::from(total);
    let r = if round_up { (x + 99) / 100 } else { x / 100 };
    r as i32
}

/// `(maxSurge, maxUnavailable)` as numbers of pods, as Kubernetes' `ResolveFenceposts`:
/// surge rounds up, unavailable down, and both zero means one may be unavailable.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    if is_recreate(d) {
        return (0, 0);
    }
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let n = replicas_of(d);
    let surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), "25%", n, true);
    let unavailable = scaled(ru.and_then(|r| r.max_unavailable.as_ref()), "25%", n, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// The template with the hash label removed, for comparing templates.
fn template_without_hash(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(l) = t
        .get_mut("metadata")
        .and_then(|m| m.get_mut("labels"))
        .and_then(Value::as_object_mut)
    {
        l.remove(HASH_LABEL);
    }
    if let Some(m) = t.get_mut("metadata").and_then(Value::as_object_mut) {
        m.retain(|_, v| !v.is_null() && v != &json!({}));
        if m.is_empty() {
            t.as_object_mut().map(|o| o.remove("metadata"));
        }
    }
    t
}

fn template_of_deployment(d: &Deployment) -> Value {
    serde_json::to_value(d.spec.as_ref().map(|s| &s.template)).unwrap_or(Value::Null)
}

fn template_of_rs(rs: &ReplicaSet) -> Value {
    serde_json::to_value(rs.spec.as_ref().and_then(|s| s.template.as_ref())).unwrap_or(Value::Null)
}

/// The `pod-template-hash` of a template: FNV-32a of its canonical JSON
/// (and the collision count), spelt with Kubernetes' safe alphabet.
pub fn template_hash(template: &Value, collision_count: i32) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(canonical(&template_without_hash(template)).as_bytes());
    if collision_count > 0 {
        feed(&collision_count.to_le_bytes());
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// JSON with object keys sorted, so equal templates hash equally.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&m[*k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

fn condition<'a>(
    d: &'a Deployment,
    type_: &str,
) -> Option<&'a k8s_openapi::api::apps::v1::DeploymentCondition> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Kubernetes' rollout conditions, given the new status.
fn conditions(
    d: &Deployment,
    new_rs: Option<&str>,
    created: bool,
    status: &Value,
    progressed: bool,
    now: Timestamp,
) -> Vec<Value> {
    let now_s = now.round(jiff::Unit::Second).unwrap_or(now).to_string();
    let replicas = replicas_of(d);
    let (_, max_unavailable) = fenceposts(d);
    let available = status["availableReplicas"].as_i64().unwrap_or(0) as i32;
    let updated = status["updatedReplicas"].as_i64().unwrap_or(0) as i32;
    let total = status["replicas"].as_i64().unwrap_or(0) as i32;
    let keep_time = |type_: &str, st: &str| -> String {
        condition(d, type_)
            .filter(|c| c.status == st)
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.to_string())
            .unwrap_or_else(|| now_s.clone())
    };
    let make = |type_: &str, st: &str, reason: &str, message: String, update: bool| {
        let last_update = if update {
            now_s.clone()
        } else {
            condition(d, type_)
                .and_then(|c| c.last_update_time.as_ref())
                .map(|t| t.0.to_string())
                .unwrap_or_else(|| now_s.clone())
        };
        json!({"type": type_, "status": st, "lastUpdateTime": last_update,
               "lastTransitionTime": keep_time(type_, st), "reason": reason, "message": message})
    };
    let mut out = Vec::new();
    // Available.
    let old_avail = condition(d, "Available");
    if available >= replicas - max_unavailable {
        let same = old_avail.is_some_and(|c| c.status == "True");
        out.push(make(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            !same,
        ));
    } else {
        let same = old_avail.is_some_and(|c| c.status == "False");
        out.push(make(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            !same,
        ));
    }
    // Progressing.
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    let old = condition(d, "Progressing");
    let old_reason = old.and_then(|c| c.reason.as_deref()).unwrap_or("");
    let rs_name = new_rs.unwrap_or("");
    let deadline = d
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(600);
    let complete = updated == replicas && total == replicas && available == replicas;
    let progressing = if paused {
        Some(make(
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".into(),
            old_reason != "DeploymentPaused",
        ))
    } else if old_reason == "DeploymentPaused" {
        Some(make(
            "Progressing",
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed".into(),
            true,
        ))
    } else if created {
        Some(make(
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            format!("Created new replica set \"{rs_name}\""),
            true,
        ))
    } else if complete && new_rs.is_some() {
        let same = old_reason == "NewReplicaSetAvailable";
        Some(make(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            !same,
        ))
    } else if old.is_none() && new_rs.is_some() {
        Some(make(
            "Progressing",
            "True",
            "FoundNewReplicaSet",
            format!("Found new replica set \"{rs_name}\""),
            true,
        ))
    } else if progressed {
        Some(make(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{rs_name}\" is progressing."),
            true,
        ))
    } else if let Some(c) = old {
        let since = c.last_update_time.as_ref().map(|t| t.0).unwrap_or(now);
        if c.status == "True"
            && !matches!(old_reason, "NewReplicaSetAvailable")
            && since + SignedDuration::from_secs(i64::from(deadline)) < now
        {
            Some(make(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                true,
            ))
        } else {
            Some(serde_json::to_value(c).unwrap_or(Value::Null))
        }
    } else {
        None
    };
    out.extend(progressing);
    // ReplicaFailure comes from the ReplicaSets; other conditions are kept.
    out
}

/// Plans one sync of `d`. `sets` are the ReplicaSets it controls;
/// `old_pods_running` counts pods of old ReplicaSets not yet finished
/// (Recreate waits for them).
pub fn plan(d: &Deployment, sets: &[&ReplicaSet], old_pods_running: usize, now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let name = d.metadata.name.clone().unwrap_or_default();
    let replicas = replicas_of(d);
    let (surge, max_unavailable) = fenceposts(d);
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    let deleting = d.metadata.deletion_timestamp.is_some();
    let template = template_of_deployment(d);
    let wanted = template_without_hash(&template);

    let mut sets: Vec<ReplicaSet> = sets.iter().map(|rs| (*rs).clone()).collect();
    sets.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .then(a.metadata.name.cmp(&b.metadata.name))
    });
    // The new ReplicaSet: the oldest one whose template is the Deployment's.
    let new_idx = sets
        .iter()
        .position(|rs| template_without_hash(&template_of_rs(rs)) == wanted);
    let max_old_revision = sets
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != new_idx)
        .map(|(_, rs)| revision_of(rs))
        .max()
        .unwrap_or(0);
    let mut created = false;
    let mut sizes: Vec<i32> = sets.iter().map(rs_replicas).collect();
    let mut annotations: Vec<BTreeMap<String, String>> = vec![BTreeMap::new(); sets.len()];

    let mut new_idx = new_idx;
    if let Some(i) = new_idx {
        // A rollback to an older template makes that ReplicaSet the newest revision.
        let rev = revision_of(&sets[i]);
        if rev <= max_old_revision && !deleting {
            let next = (max_old_revision + 1).to_string();
            annotations[i].insert(REVISION.into(), next);
            if rev > 0 {
                let mut history: Vec<String> = annotation(&sets[i], REVISION_HISTORY)
                    .map(|h| h.split(',').map(str::to_string).collect())
                    .unwrap_or_default();
                history.push(rev.to_string());
                annotations[i].insert(REVISION_HISTORY.into(), history.join(","));
            }
        }
    } else if !paused && !deleting {
        // Create the new ReplicaSet.
        let collision = d
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let hash = template_hash(&template, collision);
        let all: i32 = sizes.iter().sum();
        let initial = if is_recreate(d) {
            0
        } else {
            ((replicas + surge) - all).clamp(0, replicas)
        };
        let mut tmpl = template.clone();
        tmpl["metadata"]["labels"][HASH_LABEL] = json!(hash);
        let mut selector =
            serde_json::to_value(d.spec.as_ref().map(|s| &s.selector)).unwrap_or(json!({}));
        selector["matchLabels"][HASH_LABEL] = json!(hash);
        let mut ann: BTreeMap<String, String> = d
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
            .collect();
        ann.insert(REVISION.into(), (max_old_revision + 1).to_string());
        ann.insert(DESIRED_REPLICAS.into(), replicas.to_string());
        ann.insert(MAX_REPLICAS.into(), (replicas + surge).to_string());
        let rs_name = format!("{name}-{hash}");
        let mut labels = tmpl["metadata"]["labels"].clone();
        if labels.is_null() {
            labels = json!({});
        }
        plan.create = Some(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": rs_name, "namespace": d.metadata.namespace, "labels": labels,
                "annotations": ann,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                    "uid": d.metadata.uid, "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"replicas": initial, "minReadySeconds": d.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0),
                     "selector": selector, "template": tmpl}
        }));
        if initial > 0 {
            plan.events.push((
                "ScalingReplicaSet".into(),
                format!("Scaled up replica set {rs_name} from 0 to {initial}"),
            ));
        }
        created = true;
        // Plan the rest as if it existed.
        let rs: ReplicaSet =
            serde_json::from_value(plan.create.clone().unwrap()).unwrap_or_default();
        sets.push(rs);
        sizes.push(initial);
        annotations.push(BTreeMap::new());
        new_idx = Some(sets.len() - 1);
    }

    if !deleting {
        let old: Vec<usize> = (0..sets.len()).filter(|i| Some(*i) != new_idx).collect();
        let scaling_event = sets.iter().enumerate().any(|(i, rs)| {
            sizes[i] > 0
                && annotation(rs, DESIRED_REPLICAS)
                    .and_then(|v| v.parse::<i32>().ok())
                    .is_some_and(|v| v != replicas)
        });
        if paused || scaling_event {
            scale(d, &sets, new_idx, &mut sizes, surge);
        } else if is_recreate(d) {
            for &i in &old {
                sizes[i] = 0;
            }
            let old_gone = old.iter().all(|&i| rs_replicas(&sets[i]) == 0) && old_pods_running == 0;
            if let Some(n) = new_idx
                && old_gone
            {
                sizes[n] = replicas;
            }
        } else if let Some(n) = new_idx {
            // Scale the new ReplicaSet up within maxSurge.
            let all: i32 = sizes.iter().sum();
            if sizes[n] > replicas {
                sizes[n] = replicas;
            } else if sizes[n] < replicas && !created {
                let room = (replicas + surge - all).max(0);
                sizes[n] += room.min(replicas - sizes[n]);
            }
            // Scale old ones down within maxUnavailable.
            let all: i32 = sizes.iter().sum();
            let min_available = replicas - max_unavailable;
            let new_unavailable = (sizes[n] - rs_available(&sets[n])).max(0);
            let mut budget = all - min_available - new_unavailable;
            if budget > 0 {
                // Unhealthy old pods go first.
                for &i in &old {
                    if budget <= 0 {
                        break;
                    }
                    let unhealthy = (sizes[i] - rs_available(&sets[i])).max(0);
                    let cut = unhealthy.min(budget).min(sizes[i]);
                    sizes[i] -= cut;
                    budget -= cut;
                }
                // Then available ones, oldest first, keeping minAvailable.
                let available: i32 = (0..sets.len())
                    .map(|i| rs_available(&sets[i]).min(sizes[i]))
                    .sum();
                let mut extra = (available - min_available).min(budget);
                for &i in &old {
                    if extra <= 0 {
                        break;
                    }
                    let cut = sizes[i].min(extra);
                    sizes[i] -= cut;
                    extra -= cut;
                }
            }
        }
    }

    // Changes to existing ReplicaSets, with the sizing annotations.
    for (i, rs) in sets.iter().enumerate() {
        if created && Some(i) == new_idx {
            continue;
        }
        let rs_name = rs.metadata.name.clone().unwrap_or_default();
        let before = rs_replicas(rs);
        let mut ann = annotations[i].clone();
        if sizes[i] != before
            || (sizes[i] > 0
                && annotation(rs, DESIRED_REPLICAS) != Some(replicas.to_string().as_str()))
        {
            ann.insert(DESIRED_REPLICAS.into(), replicas.to_string());
            ann.insert(MAX_REPLICAS.into(), (replicas + surge).to_string());
        }
        if sizes[i] != before {
            let how = if sizes[i] > before { "up" } else { "down" };
            plan.events.push((
                "ScalingReplicaSet".into(),
                format!(
                    "Scaled {how} replica set {rs_name} from {before} to {}",
                    sizes[i]
                ),
            ));
        }
        if sizes[i] != before || !ann.is_empty() {
            plan.update.insert(rs_name, (sizes[i], ann));
        }
    }

    // History beyond revisionHistoryLimit: empty old ReplicaSets, oldest first.
    let limit = d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let mut empty_old: Vec<&ReplicaSet> = sets
        .iter()
        .enumerate()
        .filter(|(i, rs)| {
            Some(*i) != new_idx
                && sizes[*i] == 0
                && rs_replicas(rs) == 0
                && rs.status.as_ref().map(|s| s.replicas).unwrap_or(0) == 0
                && rs.metadata.deletion_timestamp.is_none()
        })
        .map(|(_, rs)| rs)
        .collect();
    if empty_old.len() > limit && !paused {
        empty_old.sort_by_key(|rs| revision_of(rs));
        let n = empty_old.len() - limit;
        plan.delete = empty_old[..n]
            .iter()
            .map(|rs| rs.metadata.name.clone().unwrap_or_default())
            .collect();
    }

    // Status, from what the ReplicaSets report.
    let st = |rs: &ReplicaSet, f: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32| {
        rs.status.as_ref().map(f).unwrap_or(0)
    };
    let total: i32 = sets.iter().map(|rs| st(rs, |s| s.replicas)).sum();
    let ready: i32 = sets
        .iter()
        .map(|rs| st(rs, |s| s.ready_replicas.unwrap_or(0)))
        .sum();
    let available: i32 = sets
        .iter()
        .map(|rs| st(rs, |s| s.available_replicas.unwrap_or(0)))
        .sum();
    let updated = new_idx.map(|n| st(&sets[n], |s| s.replicas)).unwrap_or(0);
    let mut status = json!({
        "observedGeneration": d.metadata.generation.unwrap_or(0),
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": (replicas - available).max(0),
    });
    if let Some(c) = d.status.as_ref().and_then(|s| s.collision_count) {
        status["collisionCount"] = json!(c);
    }
    let old = d.status.as_ref();
    let progressed = old.is_some_and(|o| {
        updated > o.updated_replicas.unwrap_or(0)
            || total < o.replicas.unwrap_or(0)
            || ready > o.ready_replicas.unwrap_or(0)
            || available > o.available_replicas.unwrap_or(0)
    }) || !plan.events.is_empty();
    let new_name = new_idx.and_then(|n| sets[n].metadata.name.clone());
    let mut conds = conditions(d, new_name.as_deref(), created, &status, progressed, now);
    // A ReplicaSet that cannot create pods says so on the Deployment.
    if let Some(f) = sets.iter().find_map(|rs| {
        rs.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
            .cloned()
    }) {
        conds.push(json!({"type": "ReplicaFailure", "status": "True", "reason": f.reason,
            "message": f.message, "lastUpdateTime": now.round(jiff::Unit::Second).unwrap_or(now).to_string(),
            "lastTransitionTime": f.last_transition_time.map(|t| t.0.to_string())}));
    }
    status["conditions"] = Value::Array(conds);
    plan.status = status;
    if let Some(n) = new_idx {
        let rev = annotations[n]
            .get(REVISION)
            .cloned()
            .or_else(|| annotation(&sets[n], REVISION).map(str::to_string));
        let current = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION))
            .cloned();
        if rev.is_some() && rev != current {
            plan.revision = rev;
        }
    }
    plan
}

/// Proportional scaling while paused or when `replicas` changed mid-rollout.
fn scale(
    d: &Deployment,
    sets: &[ReplicaSet],
    new_idx: Option<usize>,
    sizes: &mut [i32],
    surge: i32,
) {
    let replicas = replicas_of(d);
    let active: Vec<usize> = (0..sets.len()).filter(|&i| sizes[i] > 0).collect();
    if active.len() <= 1 {
        let target = active
            .first()
            .copied()
            .or(new_idx)
            .or(sets.len().checked_sub(1));
        if let Some(t) = target {
            sizes[t] = replicas;
        }
        return;
    }
    if let Some(n) = new_idx
        && sizes[n] == replicas
        && rs_available(&sets[n]) == replicas
    {
        for (i, s) in sizes.iter_mut().enumerate() {
            if i != n {
                *s = 0;
            }
        }
        return;
    }
    let allowed = if replicas > 0 { replicas + surge } else { 0 };
    let current: i32 = sizes.iter().sum();
    let to_add = allowed - current;
    if to_add == 0 {
        return;
    }
    let mut order = active.clone();
    // Largest first (newer first among equals) when growing; the same order when shrinking.
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(b.cmp(&a)));
    let mut added = 0;
    for &i in &order {
        let annotated = annotation(&sets[i], MAX_REPLICAS)
            .and_then(|v| v.parse::<i32>().ok())
            .filter(|v| *v > 0)
            .unwrap_or(current.max(1));
        let target = if replicas == 0 {
            0
        } else {
            ((i64::from(sizes[i]) * i64::from(allowed) + i64::from(annotated) - 1)
                / i64::from(annotated)) as i32
        };
        let mut delta = target - sizes[i];
        delta = if to_add > 0 {
            delta.min(to_add - added).max(0)
        } else {
            delta.max(to_add - added).min(0)
        };
        sizes[i] += delta;
        added += delta;
    }
    if added != to_add
        && let Some(&first) = order.first()
    {
        sizes[first] = (sizes[first] + to_add - added).max(0);
    }
}

/// Runs the Deployment controller until `shutdown` turns true.
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
    let mut d_stream = watcher(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    )
    .boxed();
    let mut rs_stream = watcher(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .boxed();
    let mut pod_stream = pods_in;
    let mut deployments: Cache<Deployment> = Cache::new();
    let mut sets: Cache<ReplicaSet> = Cache::new();
    let mut pods: Cache<Pod> = Cache::new();
    let mut dirty: HashSet<String> = HashSet::new();
    // Progress deadlines and availability move with time alone.
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            ev = d_stream.next() => match ev {
                Some(Ok(ev)) => {
                    if let watcher::Event::Apply(d) = &ev {
                        dirty.insert(crate::key_of(&d.metadata));
                    }
                    let relisted = matches!(ev, watcher::Event::InitDone);
                    deployments.apply(ev);
                    if relisted {
                        dirty.extend(deployments.items.keys().cloned());
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("deployment controller: watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => return,
            },
            ev = rs_stream.next() => match ev {
                Some(Ok(ev)) => {
                    if let watcher::Event::Apply(rs) | watcher::Event::Delete(rs) = &ev {
                        dirty.extend(owner_key(rs));
                    }
                    sets.apply(ev);
                }
                Some(Err(e)) => {
                    tracing::warn!("deployment controller: replicaset watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => return,
            },
            ev = pod_stream.next() => match ev {
                Some(Ok(ev)) => {
                    // Recreate waits for old pods to be gone.
                    if let watcher::Event::Delete(p) = &ev
                        && let Some(o) = p.metadata.owner_references.as_ref().and_then(|o| o.iter().find(|o| o.controller == Some(true)))
                        && let Some(rs) = sets.get(&format!("{}/{}", p.metadata.namespace.as_deref().unwrap_or(""), o.name))
                    {
                        dirty.extend(owner_key(rs));
                    }
                    pods.apply(ev);
                }
                Some(Err(e)) => {
                    tracing::warn!("deployment controller: pod watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => return,
            },
            _ = tick.tick() => {
                dirty.extend(deployments.items.iter().filter(|(_, d)| {
                    condition(d, "Progressing").is_some_and(|c| c.reason.as_deref() == Some("ReplicaSetUpdated"))
                }).map(|(k, _)| k.clone()));
            }
        }
        if !deployments.synced || !sets.synced || !pods.synced {
            continue;
        }
        for key in std::mem::take(&mut dirty) {
            if let Some(d) = deployments.get(&key).cloned() {
                sync(&client, &d, &mut sets, &pods).await;
            }
        }
    }
}

/// The `namespace/name` of the Deployment controlling a ReplicaSet.
fn owner_key(rs: &ReplicaSet) -> Option<String> {
    let o = rs
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "Deployment")?;
    Some(format!(
        "{}/{}",
        rs.metadata.namespace.as_deref().unwrap_or(""),
        o.name
    ))
}

fn selects(d: &Deployment, rs: &ReplicaSet) -> bool {
    let sel = serde_json::to_value(d.spec.as_ref().map(|s| &s.selector)).unwrap_or(Value::Null);
    let Ok(sel) = skiff_api::selector::LabelSelector::from_object(&sel) else {
        return false;
    };
    if sel.is_empty() {
        return false;
    }
    let labels = rs.metadata.labels.as_ref();
    sel.matches(|k| labels.and_then(|l| l.get(k)).map(String::as_str))
}

async fn sync(
    client: &kube::Client,
    d: &Deployment,
    sets: &mut Cache<ReplicaSet>,
    pods: &Cache<Pod>,
) {
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let name = d.metadata.name.clone().unwrap_or_default();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    // Adopt orphan ReplicaSets the selector matches.
    let orphans: Vec<String> = sets
        .values()
        .filter(|rs| rs.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|rs| {
            rs.metadata
                .owner_references
                .as_ref()
                .is_none_or(|o| !o.iter().any(|o| o.controller == Some(true)))
        })
        .filter(|rs| selects(d, rs) && d.metadata.deletion_timestamp.is_none())
        .filter_map(|rs| rs.metadata.name.clone())
        .collect();
    for o in orphans {
        let patch = json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
            "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}]}});
        if let Ok(rs) = rs_api
            .patch(&o, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            sets.put(rs);
        }
    }
    let owned: Vec<&ReplicaSet> = sets
        .values()
        .filter(|rs| rs.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|rs| {
            rs.metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.iter().any(|o| o.controller == Some(true) && o.uid == uid))
        })
        .collect();
    // Recreate waits until the pods of old ReplicaSets have finished; only
    // then is it worth counting them.
    let plan = if is_recreate(d) {
        let wanted = template_without_hash(&template_of_deployment(d));
        let old_uids: HashSet<&str> = owned
            .iter()
            .filter(|rs| template_without_hash(&template_of_rs(rs)) != wanted)
            .filter_map(|rs| rs.metadata.uid.as_deref())
            .collect();
        let old_running = pods
            .values()
            .filter(|p| {
                p.metadata
                    .owner_references
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|o| old_uids.contains(o.uid.as_str())))
                    && !matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
            })
            .count();
        plan(d, &owned, old_running, Timestamp::now())
    } else {
        plan(d, &owned, 0, Timestamp::now())
    };

    let about = Involved {
        kind: "Deployment",
        api_version: "apps/v1",
        namespace: &ns,
        name: &name,
        uid: d.metadata.uid.as_deref(),
    };
    let mut status = plan.status.clone();
    if let Some(rs) = &plan.create {
        match serde_json::from_value::<ReplicaSet>(rs.clone()) {
            Ok(rs) => match rs_api.create(&PostParams::default(), &rs).await {
                Ok(made) => {
                    sets.put(made);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    // A ReplicaSet of that name with another template: a hash collision.
                    let c = d
                        .status
                        .as_ref()
                        .and_then(|s| s.collision_count)
                        .unwrap_or(0)
                        + 1;
                    status["collisionCount"] = json!(c);
                }
                Err(e) => {
                    tracing::warn!("deployment {ns}/{name}: creating its ReplicaSet: {e}");
                    return;
                }
            },
            Err(e) => {
                tracing::warn!("deployment {ns}/{name}: {e}");
                return;
            }
        }
    }
    for (rs_name, (replicas, ann)) in &plan.update {
        let patch = json!({"metadata": {"annotations": ann}, "spec": {"replicas": replicas}});
        match rs_api
            .patch(rs_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(rs) => {
                sets.put(rs);
            }
            Err(e) => tracing::debug!("deployment {ns}/{name}: scaling {rs_name}: {e}"),
        }
    }
    for (reason, message) in &plan.events {
        record(
            client,
            "deployment-controller",
            &about,
            "Normal",
            reason,
            message,
        )
        .await;
    }
    for rs_name in &plan.delete {
        let _ = rs_api.delete(rs_name, &DeleteParams::background()).await;
    }
    let d_api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    if let Some(rev) = &plan.revision {
        let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
        let _ = d_api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
    }
    let old = serde_json::to_value(&d.status).unwrap_or(Value::Null);
    if !same_status(&old, &status) {
        let _ = d_api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await;
    }
}

/// Whether two statuses say the same, ignoring condition timestamps that did not move.
fn same_status(old: &Value, new: &Value) -> bool {
    for k in [
        "observedGeneration",
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
        "collisionCount",
    ] {
        if old[k].as_i64().unwrap_or(0) != new[k].as_i64().unwrap_or(0) {
            return false;
        }
    }
    let conds = |v: &Value| -> Vec<(String, String, String, String, String)> {
        let mut c: Vec<_> = v["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
                (
                    s("type"),
                    s("status"),
                    s("reason"),
                    s("message"),
                    s("lastUpdateTime"),
                )
            })
            .collect();
        c.sort();
        c
    };
    conds(old) == conds(new)
}

#[cfg(test)]
mod tests;
