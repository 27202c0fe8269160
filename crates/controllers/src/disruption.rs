//! The disruption controller (kube-controller-manager's `disruption`): keeps
//! every PodDisruptionBudget's status current, which the eviction subresource
//! reads and spends.
//!
//! - `expectedPods`: for an integer `minAvailable`, the number of matching
//!   pods; for a percentage or `maxUnavailable`, the sum of `spec.replicas`
//!   of the pods' controllers (a ReplicaSet owned by a Deployment counts as
//!   the Deployment), read through the API.
//! - `desiredHealthy`: `minAvailable` (a percentage of `expectedPods`,
//!   rounded up), or `expectedPods - maxUnavailable` (likewise), at least 0.
//! - `currentHealthy`: matching pods that are Ready, not terminating and not
//!   listed in `disruptedPods`.
//! - `disruptedPods`: entries the eviction subresource wrote, dropped once the
//!   pod is terminating or gone, or after two minutes.
//! - `disruptionsAllowed`: `currentHealthy - desiredHealthy`, never below 0,
//!   and 0 while no pod is expected.
//! - The `DisruptionAllowed` condition (`SufficientPods`, `InsufficientPods`,
//!   or `SyncFailed` with the error when the scale cannot be read).

use crate::cache::Cache;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use skiff_api::selector::LabelSelector;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::sync::watch;

/// How long an eviction's entry in `disruptedPods` is trusted (Kubernetes' `DeletionTimeout`).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// A pod controller's scale: the UID it is counted under and its `spec.replicas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    /// The UID of the controller that owns the scale (a Deployment for its ReplicaSets).
    pub uid: String,
    /// Its `spec.replicas`.
    pub replicas: i32,
}

/// The pod's controller reference, if it has one.
pub fn controller_of(pod: &Pod) -> Option<&OwnerReference> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
}

/// Whether the budget needs its pods' controllers' scale.
pub fn needs_scale(pdb: &PodDisruptionBudget) -> bool {
    let spec = pdb.spec.as_ref();
    spec.and_then(|s| s.max_unavailable.as_ref()).is_some()
        || matches!(
            spec.and_then(|s| s.min_available.as_ref()),
            Some(IntOrString::String(_))
        )
}

/// `expectedPods` from the controllers' scale (`getExpectedScale`): each
/// controller counted once. `scales` maps a controller reference's UID to the
/// scale found for it. Pods without a controller are returned apart.
pub fn expected_scale(
    pods: &[&Pod],
    scales: &HashMap<String, Scale>,
) -> Result<(i32, Vec<String>), String> {
    let mut counted: BTreeMap<&str, i32> = BTreeMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let Some(owner) = controller_of(pod) else {
            unmanaged.push(pod.metadata.name.clone().unwrap_or_default());
            continue;
        };
        match scales.get(&owner.uid) {
            Some(s) => {
                counted.insert(&s.uid, s.replicas);
            }
            None => {
                return Err(format!(
                    "found no controllers for pod {:?}",
                    pod.metadata.name.as_deref().unwrap_or("")
                ));
            }
        }
    }
    Ok((counted.values().sum(), unmanaged))
}

/// `intstr.GetScaledValueFromIntOrPercent` rounding up.
pub fn scaled_value(v: &IntOrString, total: i32) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(num) = s.strip_suffix('%') else {
                return Err(
                    "invalid value for IntOrString: invalid type: string is not a percentage"
                        .to_string(),
                );
            };
            let p: i64 = num
                .parse()
                .map_err(|e| format!("invalid value for IntOrString: invalid value {s:?}: {e}"))?;
            Ok(((p * total as i64) as f64 / 100.0).ceil() as i32)
        }
    }
}

/// `(expectedPods, desiredHealthy)` (`getExpectedPodCount`); `scale` is the
/// controllers' total, needed when [`needs_scale`].
pub fn expected_and_desired(
    pdb: &PodDisruptionBudget,
    matching: i32,
    scale: Option<i32>,
) -> Result<(i32, i32), String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    if let Some(max) = &spec.max_unavailable {
        let expected = scale.unwrap_or(0);
        let max = scaled_value(max, expected)?;
        return Ok((expected, (expected - max).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(i)) => Ok((matching, *i)),
        Some(v @ IntOrString::String(_)) => {
            let expected = scale.unwrap_or(0);
            Ok((expected, scaled_value(v, expected)?))
        }
        None => Ok((0, 0)),
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Sets a `metav1.Condition` as `meta.SetStatusCondition` does.
pub fn set_condition(list: &mut Vec<Condition>, mut cond: Condition) {
    match list.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(old) => {
            if old.status == cond.status {
                cond.last_transition_time = old.last_transition_time.clone();
            }
            *old = cond;
        }
        None => list.push(cond),
    }
}

fn allowed_condition(status: &mut PodDisruptionBudgetStatus, now: Timestamp) {
    let ok = status.disruptions_allowed > 0;
    let list = status.conditions.get_or_insert_with(Vec::new);
    set_condition(
        list,
        Condition {
            type_: "DisruptionAllowed".into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: if ok {
                "SufficientPods"
            } else {
                "InsufficientPods"
            }
            .into(),
            message: String::new(),
            observed_generation: status.observed_generation,
            last_transition_time: Time(now),
        },
    );
}

/// The budget's status for its matching pods (`trySync` + `updatePdbStatus`).
/// `expected` is `(expectedPods, desiredHealthy)` or the error that made it
/// unknowable, which fails safe: no disruption allowed, `SyncFailed`.
pub fn compute_status(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    expected: Result<(i32, i32), String>,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let old = pdb.status.clone().unwrap_or_default();
    let (expected_pods, desired) = match expected {
        Ok(v) => v,
        Err(e) => {
            let mut st = old;
            st.disruptions_allowed = 0;
            set_condition(
                st.conditions.get_or_insert_with(Vec::new),
                Condition {
                    type_: "DisruptionAllowed".into(),
                    status: "False".into(),
                    reason: "SyncFailed".into(),
                    message: e,
                    observed_generation: st.observed_generation,
                    last_transition_time: Time(now),
                },
            );
            return st;
        }
    };
    // Evictions the API approved whose pods are not terminating yet.
    let recorded = old.disrupted_pods.clone().unwrap_or_default();
    let timeout = jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default();
    let mut disrupted: BTreeMap<String, Time> = BTreeMap::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        if let Some(t) = recorded.get(&name)
            && t.0 + timeout >= now
        {
            disrupted.insert(name, t.clone());
        }
    }
    let healthy = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or("")))
        .filter(|p| is_ready(p))
        .count() as i32;
    let mut allowed = healthy - desired;
    if expected_pods <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let mut st = PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy: desired,
        expected_pods,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: pdb.metadata.generation,
        conditions: old.conditions.clone(),
    };
    allowed_condition(&mut st, now);
    st
}

/// When the budget must be looked at again for a `disruptedPods` entry to expire.
pub fn recheck_at(status: &PodDisruptionBudgetStatus) -> Option<Timestamp> {
    let timeout = jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default();
    status
        .disrupted_pods
        .as_ref()?
        .values()
        .map(|t| t.0 + timeout)
        .min()
}

/// The pods of the budget's namespace its selector matches.
pub fn matching_pods<'a>(
    pdb: &PodDisruptionBudget,
    pods: impl Iterator<Item = &'a Pod>,
) -> Vec<&'a Pod> {
    let ns = pdb.metadata.namespace.as_deref().unwrap_or("");
    let sel = pdb
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .map(|s| serde_json::to_value(s).unwrap_or_default())
        .unwrap_or(serde_json::Value::Null);
    let Ok(sel) = LabelSelector::from_object(&sel) else {
        return Vec::new();
    };
    pods.filter(|p| p.metadata.namespace.as_deref().unwrap_or("") == ns)
        .filter(|p| {
            sel.matches(|k| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(k))
                    .map(String::as_str)
            })
        })
        .collect()
}

/// Reads a pod controller's scale through the API (the finders of `getExpectedScale`).
async fn find_scale(client: &kube::Client, ns: &str, r: &OwnerReference) -> Option<Scale> {
    let group = r.api_version.split('/').next().unwrap_or("");
    match (group, r.kind.as_str()) {
        ("apps", "ReplicaSet") => {
            let rs = Api::<ReplicaSet>::namespaced(client.clone(), ns)
                .get(&r.name)
                .await
                .ok()?;
            if rs.metadata.uid.as_deref() != Some(r.uid.as_str()) {
                return None;
            }
            let owner = rs
                .metadata
                .owner_references
                .as_ref()
                .and_then(|os| os.iter().find(|o| o.controller == Some(true)));
            if let Some(o) = owner
                && o.kind == "Deployment"
                && o.api_version.starts_with("apps/")
            {
                let d = Api::<Deployment>::namespaced(client.clone(), ns)
                    .get(&o.name)
                    .await
                    .ok()?;
                if d.metadata.uid.as_deref() == Some(o.uid.as_str()) {
                    return Some(Scale {
                        uid: o.uid.clone(),
                        replicas: d.spec.and_then(|s| s.replicas).unwrap_or(1),
                    });
                }
                return None;
            }
            Some(Scale {
                uid: r.uid.clone(),
                replicas: rs.spec.and_then(|s| s.replicas).unwrap_or(1),
            })
        }
        ("apps", "StatefulSet") => {
            let s = Api::<StatefulSet>::namespaced(client.clone(), ns)
                .get(&r.name)
                .await
                .ok()?;
            (s.metadata.uid.as_deref() == Some(r.uid.as_str())).then(|| Scale {
                uid: r.uid.clone(),
                replicas: s.spec.and_then(|s| s.replicas).unwrap_or(1),
            })
        }
        ("apps", "Deployment") => {
            let d = Api::<Deployment>::namespaced(client.clone(), ns)
                .get(&r.name)
                .await
                .ok()?;
            (d.metadata.uid.as_deref() == Some(r.uid.as_str())).then(|| Scale {
                uid: r.uid.clone(),
                replicas: d.spec.and_then(|s| s.replicas).unwrap_or(1),
            })
        }
        ("v1", "ReplicationController") => {
            let rc = Api::<ReplicationController>::namespaced(client.clone(), ns)
                .get(&r.name)
                .await
                .ok()?;
            (rc.metadata.uid.as_deref() == Some(r.uid.as_str())).then(|| Scale {
                uid: r.uid.clone(),
                replicas: rc.spec.and_then(|s| s.replicas).unwrap_or(1),
            })
        }
        _ => None,
    }
}

/// Brings one budget's status up to date; returns when to look again.
async fn sync(
    client: &kube::Client,
    pdb: &PodDisruptionBudget,
    pods: &Cache<Pod>,
) -> Option<Timestamp> {
    let now = crate::now_rounded();
    let matching = matching_pods(pdb, pods.values());
    let ns = pdb.metadata.namespace.clone().unwrap_or_default();
    let expected = if needs_scale(pdb) {
        let mut scales = HashMap::new();
        for p in &matching {
            if let Some(r) = controller_of(p)
                && !scales.contains_key(&r.uid)
                && let Some(s) = find_scale(client, &ns, r).await
            {
                scales.insert(r.uid.clone(), s);
            }
        }
        expected_scale(&matching, &scales)
            .map_err(|e| e.to_string())
            .and_then(|(n, _unmanaged)| expected_and_desired(pdb, matching.len() as i32, Some(n)))
    } else {
        expected_and_desired(pdb, matching.len() as i32, None)
    };
    let status = compute_status(pdb, &matching, expected, now);
    let recheck = recheck_at(&status);
    if pdb.status.as_ref() != Some(&status) {
        let mut new = pdb.clone();
        new.status = Some(status);
        let name = pdb.metadata.name.clone().unwrap_or_default();
        if let Err(e) = Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns)
            .replace_status(&name, &PostParams::default(), &new)
            .await
        {
            tracing::debug!("disruption: status of {ns}/{name}: {e}");
        }
    }
    recheck
}

/// Runs the disruption controller until `shutdown` turns true.
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
    let mut pdbs_w = watcher(
        Api::<PodDisruptionBudget>::all(client.clone()),
        watcher::Config::default(),
    )
    .boxed();
    let mut pods_w = pods_in;
    let mut pdbs: Cache<PodDisruptionBudget> = Cache::new();
    let mut pods: Cache<Pod> = Cache::new();
    let mut dirty = true;
    let mut next_resync = tokio::time::Instant::now();
    loop {
        let debounce = if dirty {
            tokio::time::Instant::now() + Duration::from_millis(20)
        } else {
            next_resync
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            ev = pdbs_w.next() => match ev {
                Some(Ok(e)) => dirty |= pdbs.apply(e),
                Some(Err(e)) => tracing::debug!("disruption: pdb watch: {e}"),
                None => return,
            },
            ev = pods_w.next() => match ev {
                Some(Ok(e)) => dirty |= pods.apply(e),
                Some(Err(e)) => tracing::debug!("disruption: pod watch: {e}"),
                None => return,
            },
            _ = tokio::time::sleep_until(debounce) => {
                if !(pdbs.synced && pods.synced) {
                    continue;
                }
                dirty = false;
                // Scales of controllers change without a pod or budget event; look again now and then.
                let mut wake = tokio::time::Instant::now() + Duration::from_secs(15);
                let list: Vec<PodDisruptionBudget> = pdbs.values().cloned().collect();
                for pdb in &list {
                    if let Some(at) = sync(&client, pdb, &pods).await {
                        let now = Timestamp::now();
                        let ms = at.duration_since(now).as_millis().max(100) as u64;
                        wake = wake.min(tokio::time::Instant::now() + Duration::from_millis(ms));
                    }
                }
                next_resync = wake;
            }
        }
    }
}

#[cfg(test)]
mod tests;
