//! The scheduler as a client of the API: it watches pods, nodes, PodDisruptionBudgets and
//! storage (claims, volumes, classes), feeds
//! them to the [`Scheduler`] (whose cache is kept incrementally), and carries
//! out its actions. Bindings run concurrently (at most [`MAX_BINDINGS`] at a
//! time); a placed pod is assumed on its node at once, so a burst of pods
//! sees the earlier ones before their binding comes back. Events and status
//! patches are fire and forget, off the binding path; `Scheduled` events are
//! dropped while [`MAX_EVENT_WRITES`] event writes are already in flight.

use crate::preemption::{REASON_PREEMPTION_BY_SCHEDULER, disruption_message, preempted_message};
use crate::scheduler::{Action, Scheduler};
pub use crate::scheduler::{DEFAULT_SCHEDULER, NO_NODES, effective_node, wants};
use crate::volume_binding::{
    ANN_SELECTED_NODE, ClaimWait, PreBind, Volumes, check_bound_volume, claim_bound, claim_wait,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// The most bindings in flight at once.
pub const MAX_BINDINGS: usize = 256;
/// The most event writes in flight at once; `Scheduled` events beyond it are dropped.
pub const MAX_EVENT_WRITES: usize = 64;

/// The key of a pod in the queue.
pub fn key(pod: &Pod) -> String {
    crate::cache::pod_key(pod)
}

/// An event to record: on `pod`, optionally about a related object.
struct EventSpec<'a> {
    type_: &'a str,
    reason: &'a str,
    action: Option<&'a str>,
    message: &'a str,
    related: Option<&'a Pod>,
}

impl<'a> EventSpec<'a> {
    /// The Warning `FailedScheduling` a pod gets when it could not be placed or bound.
    fn failed_scheduling(message: &'a str) -> Self {
        EventSpec {
            type_: "Warning",
            reason: "FailedScheduling",
            action: Some("Scheduling"),
            message,
            related: None,
        }
    }
}

fn object_ref(pod: &Pod) -> serde_json::Value {
    json!({"kind": "Pod", "namespace": pod.metadata.namespace, "name": pod.metadata.name, "uid": pod.metadata.uid,
           "apiVersion": "v1", "resourceVersion": pod.metadata.resource_version})
}

async fn record(client: &kube::Client, pod: &Pod, e: EventSpec<'_>) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let now = now_rounded();
    let mut ev = json!({
        "metadata": {"name": format!("{name}.{:x}", Timestamp::now().as_nanosecond()), "namespace": ns},
        "involvedObject": object_ref(pod),
        "reason": e.reason, "message": e.message, "type": e.type_,
        "source": {"component": DEFAULT_SCHEDULER},
        "reportingComponent": DEFAULT_SCHEDULER,
        "count": 1, "firstTimestamp": now, "lastTimestamp": now,
    });
    if let Some(a) = e.action {
        ev["action"] = json!(a);
    }
    if let Some(r) = e.related {
        ev["related"] = object_ref(r);
    }
    let Ok(ev) = serde_json::from_value::<Event>(ev) else {
        return;
    };
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let _ = events.create(&PostParams::default(), &ev).await;
}

async fn bind(client: &kube::Client, pod: &Pod, node: &str) -> kube::Result<()> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let body = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
    let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/binding"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap_or_default())
        .expect("valid request");
    client.request::<serde_json::Value>(req).await.map(|_| ())
}

async fn mark_unschedulable(
    client: &kube::Client,
    pod: &Pod,
    message: &str,
    nominated: Option<&str>,
) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut conditions = conditions_without(pod, "PodScheduled");
    let prev = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    let message = message.to_string();
    if nominated.is_none()
        && prev
            .is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message.as_str()))
    {
        return;
    }
    let now = now_rounded();
    conditions.push(json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                           "lastProbeTime": null, "lastTransitionTime": now}));
    let mut patch = json!({"status": {"conditions": conditions}});
    if let Some(n) = nominated {
        patch["status"]["nominatedNodeName"] = json!(n);
    }
    let _ = pods
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await;
}

/// A pod's status conditions, except the one of type `type_` (which the caller replaces).
fn conditions_without(pod: &Pod, type_: &str) -> Vec<serde_json::Value> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.type_ != type_)
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect()
}

/// Now, to the second, as Kubernetes writes condition times.
fn now_rounded() -> String {
    let now = Timestamp::now();
    now.round(jiff::Unit::Second).unwrap_or(now).to_string()
}

/// Marks a victim with DisruptionTarget, deletes it (gracefully) and records `Preempted` on it.
async fn evict(client: &kube::Client, preemptor: &Pod, victim: &Pod, node: &str) {
    let ns = victim.metadata.namespace.clone().unwrap_or_default();
    let name = victim.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let scheduler = preemptor
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or(DEFAULT_SCHEDULER);
    let mut conditions = conditions_without(victim, "DisruptionTarget");
    let now = now_rounded();
    conditions.push(json!({"type": "DisruptionTarget", "status": "True", "reason": REASON_PREEMPTION_BY_SCHEDULER,
                           "message": disruption_message(scheduler), "lastProbeTime": null, "lastTransitionTime": now}));
    let patch = json!({"status": {"conditions": conditions}});
    if let Err(e) = pods
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        tracing::debug!("preemption: marking {ns}/{name}: {e}");
    }
    if let Err(e) = pods.delete(&name, &DeleteParams::default()).await {
        tracing::debug!("preemption: deleting {ns}/{name}: {e}");
        return;
    }
    let uid = preemptor.metadata.uid.as_deref().unwrap_or("");
    record(
        client,
        victim,
        EventSpec {
            type_: "Normal",
            reason: "Preempted",
            action: Some("Preempting"),
            message: &preempted_message(uid, node),
            related: Some(preemptor),
        },
    )
    .await;
}

async fn clear_nomination(client: &kube::Client, pod: &Pod) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let patch = json!({"status": {"nominatedNodeName": null}});
    let _ = pods
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await;
}

/// What the loop needs to carry out actions.
/// The PodDisruptionBudgets, by `namespace/name`, kept from a watch.
#[derive(Default)]
struct Budgets {
    items: std::collections::HashMap<String, PodDisruptionBudget>,
    relist: Option<std::collections::HashMap<String, PodDisruptionBudget>>,
}

impl Budgets {
    /// Applies a watch event; true when the set changed.
    fn apply(&mut self, ev: watcher::Event<PodDisruptionBudget>) -> bool {
        let k = |p: &PodDisruptionBudget| {
            format!(
                "{}/{}",
                p.metadata.namespace.as_deref().unwrap_or(""),
                p.metadata.name.as_deref().unwrap_or("")
            )
        };
        match ev {
            watcher::Event::Apply(p) => {
                self.items.insert(k(&p), p);
                true
            }
            watcher::Event::Delete(p) => self.items.remove(&k(&p)).is_some(),
            watcher::Event::Init => {
                self.relist = Some(Default::default());
                false
            }
            watcher::Event::InitApply(p) => {
                self.relist
                    .get_or_insert_with(Default::default)
                    .insert(k(&p), p);
                false
            }
            watcher::Event::InitDone => {
                self.items = self.relist.take().unwrap_or_default();
                true
            }
        }
    }

    fn values(&self) -> impl Iterator<Item = &PodDisruptionBudget> {
        self.items.values()
    }
}

struct Io {
    client: kube::Client,
    volume_bind_timeout: Duration,
    bound_tx: tokio::sync::mpsc::UnboundedSender<(String, bool)>,
    bindings: Arc<Semaphore>,
    events: Arc<Semaphore>,
}

impl Io {
    fn carry_out(&self, action: Action) {
        match action {
            Action::Bind { pod, node, volumes } => {
                let (c, tx) = (self.client.clone(), self.bound_tx.clone());
                let (bindings, events) = (self.bindings.clone(), self.events.clone());
                let timeout = self.volume_bind_timeout;
                tokio::spawn(async move {
                    let k = key(&pod);
                    if !volumes.is_empty()
                        && let Err(e) = bind_volumes(&c, &pod, &node, &volumes, timeout).await
                    {
                        tracing::debug!("binding volumes of {k}: {e}");
                        let _ = tx.send((k, false));
                        let message = format!("running PreBind plugin \"VolumeBinding\": {e}");
                        record(&c, &pod, EventSpec::failed_scheduling(&message)).await;
                        return;
                    }
                    let permit = bindings.acquire_owned().await;
                    let res = bind(&c, &pod, &node).await;
                    drop(permit);
                    if let Err(e) = &res {
                        tracing::debug!("binding {k}: {e}");
                    }
                    let _ = tx.send((k, res.is_ok()));
                    if res.is_ok()
                        && let Ok(_permit) = events.try_acquire_owned()
                    {
                        let msg = format!(
                            "Successfully assigned {}/{} to {node}",
                            pod.metadata.namespace.as_deref().unwrap_or(""),
                            pod.metadata.name.as_deref().unwrap_or("")
                        );
                        let e = EventSpec {
                            type_: "Normal",
                            reason: "Scheduled",
                            action: Some("Binding"),
                            message: &msg,
                            related: None,
                        };
                        record(&c, &pod, e).await;
                    }
                });
            }
            Action::Unschedulable { pod, message } => {
                let (c, events) = (self.client.clone(), self.events.clone());
                tokio::spawn(async move {
                    let _permit = events.acquire_owned().await;
                    mark_unschedulable(&c, &pod, &message, None).await;
                    record(&c, &pod, EventSpec::failed_scheduling(&message)).await;
                });
            }
            Action::Preempt {
                pod,
                node,
                victims,
                clear_nominated,
                message,
            } => {
                let c = self.client.clone();
                tokio::spawn(async move {
                    mark_unschedulable(&c, &pod, &message, Some(&node)).await;
                    record(&c, &pod, EventSpec::failed_scheduling(&message)).await;
                    let evictions = victims.iter().map(|v| evict(&c, &pod, v, &node));
                    futures::future::join_all(evictions).await;
                    for p in &clear_nominated {
                        clear_nomination(&c, p).await;
                    }
                });
            }
        }
    }
}

/// How long PreBind waits for a pod's claims to be bound (`bindTimeoutSeconds`).
pub const VOLUME_BIND_TIMEOUT: Duration = Duration::from_secs(600);

/// How often PreBind looks at the claims it waits for.
const VOLUME_BIND_POLL: Duration = Duration::from_millis(200);

/// VolumeBinding's PreBind: asks for a volume on `node` for each claim to
/// provision (the `volume.kubernetes.io/selected-node` annotation) and
/// pre-binds the chosen static volumes (their `claimRef`), then waits until
/// every claim is bound. Errors carry Kubernetes' words (`binding volumes: …`).
async fn bind_volumes(
    client: &kube::Client,
    pod: &Pod,
    node: &str,
    work: &PreBind,
    timeout: Duration,
) -> Result<(), String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let patch = json!({"metadata": {"annotations": {ANN_SELECTED_NODE: node}}});
    for c in &work.provision {
        api.patch(c, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("binding volumes: {}", api_message(&e)))?;
    }
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for b in &work.static_binds {
        let patch = json!({"spec": {"claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
            "namespace": ns, "name": b.claim, "uid": b.claim_uid}}});
        pvs.patch(&b.volume, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("binding volumes: {}", api_message(&e)))?;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    // (claim, provisioned: true, or pre-bound to a static volume: false)
    let mut waiting: Vec<(&String, bool)> = work
        .provision
        .iter()
        .map(|c| (c, true))
        .chain(work.static_binds.iter().map(|b| (&b.claim, false)))
        .collect();
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for (c, provisioned) in waiting {
            match api.get_opt(c).await {
                Ok(Some(pvc)) => {
                    // A pre-bound claim cannot fail: the PV controller binds it.
                    let wait = match (provisioned, claim_bound(&pvc)) {
                        (true, _) => claim_wait(&pvc, node),
                        (false, true) => ClaimWait::Bound,
                        (false, false) => ClaimWait::Pending,
                    };
                    match wait {
                        ClaimWait::Bound => check_volume(client, &pvc, node)
                            .await
                            .map_err(|e| format!("binding volumes: {e}"))?,
                        ClaimWait::Pending => still.push((c, provisioned)),
                        ClaimWait::Failed(msg) => return Err(format!("binding volumes: {msg}")),
                    }
                }
                Ok(None) => {
                    return Err(format!(
                        "binding volumes: persistentvolumeclaim \"{c}\" not found"
                    ));
                }
                Err(_) => still.push((c, provisioned)),
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err("binding volumes: context deadline exceeded".to_string());
        }
        tokio::time::sleep(VOLUME_BIND_POLL).await;
    }
    Ok(())
}

/// Checks that a bound claim's volume accepts the node.
async fn check_volume(
    client: &kube::Client,
    pvc: &PersistentVolumeClaim,
    node: &str,
) -> Result<(), String> {
    let pv_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&pv_name)
        .await
        .map_err(|e| api_message(&e))?;
    let node = Api::<Node>::all(client.clone())
        .get(node)
        .await
        .map_err(|e| api_message(&e))?;
    check_bound_volume(&pv, &node)
}

/// An API error's message as Kubernetes prints it.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Options of the scheduler loop.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long PreBind waits for a pod's claims to be bound before the pod is scheduled again.
    pub volume_bind_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            volume_bind_timeout: VOLUME_BIND_TIMEOUT,
        }
    }
}

/// Runs the scheduler until `shutdown` turns true.
pub async fn run(client: kube::Client, shutdown: watch::Receiver<bool>) {
    run_with(client, shutdown, Options::default()).await
}

/// Applies a storage watch event to the scheduler; on a (re-)list the
/// objects are gathered and replace the kind's map at its end.
fn storage_event<T>(
    sched: &mut Scheduler,
    relist: &mut Option<Vec<T>>,
    ev: watcher::Event<T>,
    put: fn(&mut Volumes, T),
    remove: fn(&mut Volumes, &T),
    clear: fn(&mut Volumes),
) {
    let now = Timestamp::now();
    match ev {
        watcher::Event::Init => *relist = Some(Vec::new()),
        watcher::Event::InitApply(o) => relist.get_or_insert_with(Vec::new).push(o),
        watcher::Event::InitDone => {
            let items = relist.take().unwrap_or_default();
            sched.on_storage(
                |v| {
                    clear(v);
                    for o in items {
                        put(v, o);
                    }
                },
                now,
            );
        }
        watcher::Event::Apply(o) => sched.on_storage(|v| put(v, o), now),
        watcher::Event::Delete(o) => sched.on_storage(|v| remove(v, &o), now),
    }
}

/// A watch of every object of kind `K`.
fn watch_all<K>(client: &kube::Client) -> BoxStream<'static, watcher::Result<watcher::Event<K>>>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(Api::<K>::all(client.clone()), watcher::Config::default()).boxed()
}

/// Logs a failed watch of `kind` (at debug: it is retried) and pauses
/// before the stream is polled again.
async fn watch_failed(kind: &str, e: &watcher::Error) {
    tracing::debug!("scheduler {kind} watch: {e}");
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Runs the scheduler with `opts` until `shutdown` turns true.
pub async fn run_with(client: kube::Client, mut shutdown: watch::Receiver<bool>, opts: Options) {
    let mut pods_stream = watch_all::<Pod>(&client);
    let mut nodes_stream = watch_all::<Node>(&client);
    let mut pdb_stream = watch_all::<PodDisruptionBudget>(&client);
    let mut claims_stream = watch_all::<PersistentVolumeClaim>(&client);
    let mut pvs_stream = watch_all::<PersistentVolume>(&client);
    let mut classes_stream = watch_all::<StorageClass>(&client);
    let (mut claims_relist, mut pvs_relist, mut classes_relist) = (None, None, None);
    let mut pdbs = Budgets::default();
    let mut sched = Scheduler::new();
    // Keys seen during a (re-)list, to forget what disappeared meanwhile.
    let mut listed_pods: Option<HashSet<String>> = None;
    let mut listed_nodes: Option<HashSet<String>> = None;
    // Bindings run concurrently; their results come back here.
    let (bound_tx, mut bound_rx) = tokio::sync::mpsc::unbounded_channel::<(String, bool)>();
    let io = Io {
        client: client.clone(),
        volume_bind_timeout: opts.volume_bind_timeout,
        bound_tx,
        bindings: Arc::new(Semaphore::new(MAX_BINDINGS)),
        events: Arc::new(Semaphore::new(MAX_EVENT_WRITES)),
    };
    loop {
        let wait = sched
            .next_wakeup()
            .map(|t| {
                Duration::from_millis(
                    t.duration_since(Timestamp::now())
                        .as_millis()
                        .clamp(10, 1000) as u64,
                )
            })
            .unwrap_or(Duration::from_secs(1));
        tokio::select! {
            _ = shutdown.changed() => return,
            ev = pods_stream.next() => match ev {
                Some(Ok(watcher::Event::Init)) => listed_pods = Some(HashSet::new()),
                Some(Ok(watcher::Event::InitApply(p))) => {
                    if let Some(l) = listed_pods.as_mut() {
                        l.insert(key(&p));
                    }
                    sched.on_pod(p, Timestamp::now());
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    if let Some(l) = listed_pods.take() {
                        sched.resync_pods(&l, Timestamp::now());
                    }
                }
                Some(Ok(watcher::Event::Apply(p))) => sched.on_pod(p, Timestamp::now()),
                Some(Ok(watcher::Event::Delete(p))) => sched.on_pod_deleted(&p, Timestamp::now()),
                Some(Err(e)) => {
                    tracing::warn!("scheduler pod watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => return,
            },
            ev = nodes_stream.next() => match ev {
                Some(Ok(watcher::Event::Init)) => listed_nodes = Some(HashSet::new()),
                Some(Ok(watcher::Event::InitApply(n))) => {
                    if let Some(l) = listed_nodes.as_mut() {
                        l.insert(n.metadata.name.clone().unwrap_or_default());
                    }
                    sched.on_node(&n, Timestamp::now());
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    if let Some(l) = listed_nodes.take() {
                        sched.resync_nodes(&l);
                    }
                }
                Some(Ok(watcher::Event::Apply(n))) => sched.on_node(&n, Timestamp::now()),
                Some(Ok(watcher::Event::Delete(n))) => {
                    sched.on_node_deleted(n.metadata.name.as_deref().unwrap_or(""));
                }
                Some(Err(e)) => {
                    tracing::warn!("scheduler node watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => return,
            },
            ev = pdb_stream.next() => match ev {
                Some(Ok(ev)) => {
                    if pdbs.apply(ev) {
                        sched.on_budgets(pdbs.values().map(crate::preemption::Budget::of).collect());
                    }
                }
                Some(Err(e)) => watch_failed("PodDisruptionBudget", &e).await,
                None => return,
            },
            ev = claims_stream.next() => match ev {
                Some(Ok(ev)) => storage_event(&mut sched, &mut claims_relist, ev,
                    Volumes::put_claim, Volumes::remove_claim, |v| v.claims.clear()),
                Some(Err(e)) => watch_failed("PersistentVolumeClaim", &e).await,
                None => return,
            },
            ev = pvs_stream.next() => match ev {
                Some(Ok(ev)) => storage_event(&mut sched, &mut pvs_relist, ev,
                    Volumes::put_volume, Volumes::remove_volume, |v| v.volumes.clear()),
                Some(Err(e)) => watch_failed("PersistentVolume", &e).await,
                None => return,
            },
            ev = classes_stream.next() => match ev {
                Some(Ok(ev)) => storage_event(&mut sched, &mut classes_relist, ev,
                    Volumes::put_class, Volumes::remove_class, |v| v.classes.clear()),
                Some(Err(e)) => watch_failed("StorageClass", &e).await,
                None => return,
            },
            Some((k, ok)) = bound_rx.recv() => sched.on_bound(&k, ok, Timestamp::now()),
            _ = tokio::time::sleep(wait) => {}
        }
        // Place everything that is due.
        let now = Timestamp::now();
        while let Some(action) = sched.schedule_next(now) {
            io.carry_out(action);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_that_is_not_ready_carries_the_not_ready_taint() {
        let ready: Node = serde_json::from_value(json!({"metadata": {"name": "a"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})).unwrap();
        assert!(
            effective_node(&ready)
                .spec
                .and_then(|s| s.taints)
                .unwrap_or_default()
                .is_empty()
        );
        let not_ready: Node = serde_json::from_value(json!({"metadata": {"name": "b"}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}})).unwrap();
        let taints = effective_node(&not_ready).spec.unwrap().taints.unwrap();
        assert_eq!(taints.len(), 1);
        assert_eq!(
            (taints[0].key.as_str(), taints[0].effect.as_str()),
            ("node.kubernetes.io/not-ready", "NoSchedule")
        );
    }

    #[test]
    fn only_unbound_live_pods_for_this_scheduler_are_wanted() {
        let p = |v: serde_json::Value| -> Pod { serde_json::from_value(v).unwrap() };
        assert!(wants(&p(
            json!({"metadata": {"name": "a"}, "spec": {"containers": []}})
        )));
        assert!(!wants(&p(
            json!({"metadata": {"name": "a"}, "spec": {"containers": [], "nodeName": "n"}})
        )));
        assert!(!wants(&p(
            json!({"metadata": {"name": "a"}, "spec": {"containers": [], "schedulerName": "other"}})
        )));
        assert!(!wants(&p(
            json!({"metadata": {"name": "a", "deletionTimestamp": "2026-11-28T05:00:00Z"}, "spec": {"containers": []}})
        )));
    }
}
