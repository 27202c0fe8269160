//! The rollout guarantees of a Deployment, checked at every state a pod watch
//! observes while 100 replicas are replaced: with RollingUpdate, never more
//! than `replicas + maxSurge` pods that are not terminating and never fewer
//! than `replicas - maxUnavailable` of them Ready; with Recreate, never a pod
//! of the old template and one of the new template at the same time.
//!
//! An in-process API server (MemoryStore) runs the Deployment and ReplicaSet
//! controllers and the garbage collector. A stand-in kubelet marks each new
//! pod Running and Ready after a short pseudo-random delay, so creations,
//! readiness and deletions of different pods interleave, and confirms
//! deletions after another such delay. The pod template carries a
//! `nodeName`, so deleted pods stay terminating (deletionTimestamp set)
//! until that kubelet removes them, as with a real node.

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The node every pod is placed on (no Node object: nothing checks it).
const NODE: &str = "stand-in";

mod support;
use support::Cluster;

async fn cluster() -> Cluster {
    Cluster::start("deploy,rs,pods", |client, shutdown| {
        tokio::spawn(skiff_controllers::replicaset::run(
            client.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(skiff_controllers::deployment::run(
            client.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(skiff_controllers::gc::run(client.clone(), shutdown.clone()));
        tokio::spawn(stand_in_kubelet(client.clone()));
    })
    .await
}

/// A delay of 0–39 ms derived from a pod's name and what is done to it, so
/// pods become Ready (and go away) in an order unrelated to their creation.
fn jitter(name: &str, salt: u64) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    Duration::from_millis(h % 40)
}

/// The stand-in kubelet: a new pod turns Running and Ready after a short
/// delay; a terminating pod is removed (grace 0) after another.
async fn stand_in_kubelet(client: kube::Client) {
    let mut s = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).boxed();
    let mut seen = std::collections::HashSet::new();
    while let Some(ev) = s.next().await {
        let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev else {
            continue;
        };
        let name = p.metadata.name.clone().unwrap_or_default();
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if p.metadata.deletion_timestamp.is_some() {
            if seen.insert(format!("{uid}/delete")) {
                tokio::spawn(async move {
                    tokio::time::sleep(jitter(&name, 1)).await;
                    let _ = api
                        .delete(&name, &DeleteParams::default().grace_period(0))
                        .await;
                });
            }
            continue;
        }
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            || !seen.insert(format!("{uid}/start"))
        {
            continue;
        }
        tokio::spawn(async move {
            tokio::time::sleep(jitter(&name, 2)).await;
            let now = jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap()
                .to_string();
            let status = json!({"status": {"phase": "Running", "startTime": now, "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}]}});
            let _ = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                .await;
        });
    }
}

/// What the invariants need of one pod.
#[derive(Debug, Clone, PartialEq)]
struct PodView {
    image: String,
    terminating: bool,
    ready: bool,
}

impl PodView {
    fn of(p: &Pod) -> PodView {
        PodView {
            image: p
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default(),
            terminating: p.metadata.deletion_timestamp.is_some(),
            ready: p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
        }
    }
}

/// Counts of one observed state.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    /// Pods without a deletionTimestamp.
    live: usize,
    /// Of those, Ready.
    ready: usize,
    /// Pods (terminating or not) of the old image.
    old: usize,
    /// Pods (terminating or not) of the new image.
    new: usize,
    /// Live pods of the new image.
    new_live: usize,
}

fn counts(pods: &BTreeMap<String, PodView>, new_image: &str) -> Counts {
    let mut c = Counts::default();
    for p in pods.values() {
        if p.image == new_image {
            c.new += 1;
        } else {
            c.old += 1;
        }
        if !p.terminating {
            c.live += 1;
            c.ready += usize::from(p.ready);
            c.new_live += usize::from(p.image == new_image);
        }
    }
    c
}

fn deployment(name: &str, replicas: i32, strategy: Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeName": NODE,
                    "containers": [{"name": "main", "image": "busybox:a"}],
                },
            },
        },
    }))
    .unwrap()
}

/// Whether the Deployment is rolled out the way `kubectl rollout status` decides it,
/// plus the Progressing reason NewReplicaSetAvailable.
fn rolled_out(d: &Deployment, replicas: i32) -> bool {
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(s) = d.status.as_ref() else {
        return false;
    };
    s.observed_generation.unwrap_or(0) >= generation
        && s.replicas == Some(replicas)
        && s.updated_replicas == Some(replicas)
        && s.available_replicas == Some(replicas)
        && s.conditions.as_ref().is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "Progressing"
                    && c.reason.as_deref() == Some("NewReplicaSetAvailable")
                    && c.status == "True"
            })
        })
}

/// The extremes seen over a rollout.
#[derive(Debug, Default)]
struct Seen {
    states: usize,
    max_live: usize,
    min_ready: usize,
    max_both: usize,
    /// The Deployment's status, each change seen by GETs every 20 ms during the
    /// second after the rollout was complete: (resourceVersion,
    /// observedGeneration, replicas, updatedReplicas, availableReplicas).
    after: Vec<StatusRow>,
}

type StatusRow = (String, Option<i64>, Option<i32>, Option<i32>, Option<i32>);

/// Creates the Deployment, waits until it is available, changes the image
/// and checks `check` against every state the pod watch shows until the
/// rollout is done: every pod on the new image, none terminating, the
/// Deployment's status complete.
async fn roll(
    name: &str,
    replicas: i32,
    strategy: Value,
    check: impl Fn(&Counts) -> Result<(), String>,
) -> Seen {
    let c = cluster().await;
    let deploys: Api<Deployment> = Api::default_namespaced(c.client.clone());
    deploys
        .create(
            &PostParams::default(),
            &deployment(name, replicas, strategy),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let mut stream = watcher(
        pods,
        watcher::Config::default().labels(&format!("app={name}")),
    )
    .boxed();
    let mut state: BTreeMap<String, PodView> = BTreeMap::new();
    let mut listing = false;
    let mut apply = |ev: watcher::Event<Pod>, state: &mut BTreeMap<String, PodView>| -> bool {
        match ev {
            watcher::Event::Init => {
                listing = true;
                state.clear();
                false
            }
            watcher::Event::InitApply(p) => {
                state.insert(p.metadata.name.clone().unwrap(), PodView::of(&p));
                false
            }
            watcher::Event::InitDone => {
                listing = false;
                true
            }
            watcher::Event::Apply(p) => {
                state.insert(p.metadata.name.clone().unwrap(), PodView::of(&p));
                !listing
            }
            watcher::Event::Delete(p) => {
                state.remove(p.metadata.name.as_deref().unwrap());
                !listing
            }
        }
    };

    // Available on image a.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ev = tokio::time::timeout_at(deadline.into(), stream.next())
            .await
            .unwrap_or_else(|_| panic!("{name}: not available within 60 s: {state:?}"))
            .unwrap()
            .unwrap();
        apply(ev, &mut state);
        let c = counts(&state, "busybox:b");
        if c.live == replicas as usize && c.ready == c.live && state.len() == c.live {
            break;
        }
    }
    let d = loop {
        let d = deploys.get(name).await.unwrap();
        if rolled_out(&d, replicas) {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: status not complete: {:?}",
            d.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(d.status.unwrap().available_replicas, Some(replicas));

    // Roll to image b, checking every observed state.
    deploys
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "main", "image": "busybox:b"}]}}}})),
        )
        .await
        .unwrap();
    let mut seen = Seen {
        min_ready: usize::MAX,
        ..Seen::default()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            ev = stream.next() => {
                let ev = ev.expect("the pod watch ended").expect("pod watch error");
                if apply(ev, &mut state) {
                    let n = counts(&state, "busybox:b");
                    seen.states += 1;
                    seen.max_live = seen.max_live.max(n.live);
                    seen.min_ready = seen.min_ready.min(n.ready);
                    seen.max_both = seen.max_both.max(n.old.min(n.new));
                    if let Err(e) = check(&n) {
                        panic!("{name}: state {} of the rollout breaks the guarantee: {e}\n{n:?}\npods: {state:#?}", seen.states);
                    }
                }
            }
            _ = tick.tick() => {
                assert!(Instant::now() < deadline, "{name}: rollout not finished within 120 s: {:?}\n{:?}",
                    counts(&state, "busybox:b"), deploys.get(name).await.unwrap().status);
                let n = counts(&state, "busybox:b");
                if n.new_live == replicas as usize && state.len() == n.new_live
                    && state.values().all(|p| p.ready)
                    && rolled_out(&deploys.get(name).await.unwrap(), replicas)
                {
                    break;
                }
            }
        }
    }
    // What the status does once complete (see `status_stays_complete_after_the_rollout`).
    let mut statuses = Vec::new();
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let d = deploys.get(name).await.unwrap();
        let s = d.status.clone().unwrap();
        let row = (
            d.metadata.resource_version.clone().unwrap_or_default(),
            s.observed_generation,
            s.replicas,
            s.updated_replicas,
            s.available_replicas,
        );
        if statuses.last() != Some(&row) {
            statuses.push(row);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("{name}: {seen:?}");
    seen.after = statuses;
    seen
}

fn rolling(max_surge: Value, max_unavailable: Value) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_rolling_update_stays_within_25_percent_surge_and_unavailability() {
    // No strategy given: the defaults are RollingUpdate with 25% / 25%.
    let seen = roll("web", 100, json!({}), |c| {
        if c.live > 125 {
            return Err(format!(
                "{} pods not terminating > 100 + maxSurge 25",
                c.live
            ));
        }
        if c.ready < 75 {
            return Err(format!(
                "{} Ready pods not terminating < 100 - maxUnavailable 25",
                c.ready
            ));
        }
        Ok(())
    })
    .await;
    // The surge was used, so the upper bound was tested. (Whether Ready dips
    // below 100 depends on how fast the stand-in kubelet readies pods: old
    // pods only go as new ones become available, so it need not.)
    assert!(seen.max_live > 100, "{seen:?}");
    assert!(seen.max_both > 0, "old and new pods side by side: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_without_surge_never_adds_a_pod() {
    let seen = roll("nosurge", 100, rolling(json!(0), json!(10)), |c| {
        if c.live > 100 {
            return Err(format!(
                "{} pods not terminating > 100 + maxSurge 0",
                c.live
            ));
        }
        if c.ready < 90 {
            return Err(format!(
                "{} Ready pods not terminating < 100 - maxUnavailable 10",
                c.ready
            ));
        }
        Ok(())
    })
    .await;
    assert!(seen.min_ready < 100, "{seen:?}");
    assert!(seen.max_both > 0, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_never_runs_old_and_new_pods_together() {
    let seen = roll("recreate", 100, json!({"type": "Recreate"}), |c| {
        if c.old > 0 && c.new > 0 {
            return Err(format!(
                "{} pods of the old template and {} of the new one at once (terminating ones included)",
                c.old, c.new
            ));
        }
        if c.live > 100 {
            return Err(format!("{} pods not terminating > 100", c.live));
        }
        Ok(())
    })
    .await;
    // All old pods went before the new ones came.
    assert_eq!(seen.min_ready, 0, "{seen:?}");
}

/// Once `kubectl rollout status` would say "successfully rolled out", the
/// Deployment's status stays complete: nothing changes any more. (It used to
/// flap for a second or more with stale figures, e.g. 100/100/100 → 52/52/47
/// → 142/100/142, when a lagging watch took the controller's ReplicaSet cache
/// back behind the versions its own writes had returned.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_stays_complete_after_the_rollout() {
    let seen = roll("settle", 100, json!({}), |_| Ok(())).await;
    assert!(
        seen.after
            .iter()
            .all(|r| (r.2, r.3, r.4) == (Some(100), Some(100), Some(100))),
        "the Deployment's status went back after it was complete \
         (resourceVersion, observedGeneration, replicas, updatedReplicas, availableReplicas): {:?}",
        seen.after
    );
}
