//! Storage: the PersistentVolume binding controller, the built-in
//! `skiff.io/local-path` dynamic provisioner, and the PVC and PV protection
//! controllers, as kube-controller-manager (`persistentvolume-binder`,
//! `pvc-protection`, `pv-protection`) and k3s' local-path-provisioner run them.
//! Decisions are made by [`plan::plan`] (pure, table tested); [`run`] feeds
//! it from watches and carries out its writes.
//!
//! # Binding
//!
//! A claim is matched to the smallest Available volume of its class whose
//! access modes include the claim's (volumes with fewer modes tried first),
//! whose capacity covers the request, whose `volumeMode` is the claim's and
//! whose labels match the claim's selector; a volume whose `claimRef` already
//! names the claim, or a volume the claim names in `spec.volumeName`, is taken
//! first. Binding writes `spec.claimRef` (with the claim's UID) and
//! [`ANN_BOUND_BY_CONTROLLER`] on the volume and phase `Bound`; then
//! `spec.volumeName`, [`ANN_BIND_COMPLETED`] (and [`ANN_BOUND_BY_CONTROLLER`]
//! when the controller chose the volume) on the claim, and its status
//! `Bound` with the volume's `accessModes` and `capacity`. A volume whose claim
//! is gone becomes `Released`; then its `persistentVolumeReclaimPolicy` acts:
//! `Retain` keeps it, `Delete` deletes it (volumes this provisioner made;
//! others turn `Failed` with a `VolumeFailedDelete` event, except those of
//! another external provisioner, which deletes its own).
//!
//! A class with `volumeBindingMode: WaitForFirstConsumer` leaves its claims
//! `Pending` (event `WaitForFirstConsumer`) until the scheduler writes the
//! [`ANN_SELECTED_NODE`] annotation on the claim; then an Available volume
//! whose node affinity admits that node is bound, or one is provisioned on it.
//! (In Kubernetes the scheduler's volume binder picks such a volume; here the
//! controller does, so the scheduler need only annotate the claim.) With
//! `Immediate`, a claim is provisioned at once.
//!
//! Every provisioner is external to the binder, as in Kubernetes: the binder
//! writes [`ANN_STORAGE_PROVISIONER`] and [`ANN_BETA_STORAGE_PROVISIONER`] on
//! the claim with an `ExternalProvisioning` event, and the provisioner
//! (here [`LOCAL_PATH_PROVISIONER`], in the same loop) makes the volume.
//!
//! # The local-path provisioner and the node agent's part
//!
//! For a claim of a class with `provisioner: skiff.io/local-path` it creates
//! the PersistentVolume:
//!
//! - name `pvc-<claim uid>` ([`plan::provisioned_volume_name`]);
//! - annotation [`ANN_PROVISIONED_BY`]` = skiff.io/local-path`;
//! - finalizer [`LOCAL_PATH_CLEANUP_FINALIZER`] (`skiff.io/local-path-cleanup`)
//!   while its reclaim policy is `Delete` (the controller adds or removes it
//!   when the policy is changed, so deleting a `Retain` volume keeps its data);
//! - `spec.hostPath = {path: <nodePath>/pvc-<claim uid>_<namespace>_<claim name>, type: DirectoryOrCreate}`
//!   ([`plan::local_path_dir`]), where `<nodePath>` is the class parameter
//!   [`NODE_PATH_PARAMETER`] (`nodePath`), else [`crate::Config::storage_node_path`]
//!   (default [`DEFAULT_NODE_PATH`], `/var/lib/skiff/storage`);
//! - `spec.nodeAffinity.required`: one term, `kubernetes.io/hostname In [<node>]`,
//!   the node being the claim's [`ANN_SELECTED_NODE`] (its hostname label) for
//!   WaitForFirstConsumer, or for Immediate the Ready, schedulable node with
//!   the fewest volumes pinned to it;
//! - `capacity.storage` = the claim's request, the claim's `accessModes`
//!   (ReadWriteOnce and ReadWriteOncePod only) and `volumeMode`, the class's
//!   `reclaimPolicy` and `mountOptions`, `storageClassName`, and `claimRef`
//!   with the claim's UID.
//!
//! The directory is created by the node's agent when a pod mounts the volume
//! (`DirectoryOrCreate`). The controller cannot reach a node's disk, so
//! deleting the directory is the agent's part of the contract: **when a
//! PersistentVolume
//!
//! 1. has the finalizer `skiff.io/local-path-cleanup`,
//! 2. has a `deletionTimestamp`,
//! 3. no longer has the finalizer `kubernetes.io/pv-protection` (lifted by
//!    this controller once the volume is not `Bound`: no claim uses it), and
//! 4. is pinned by `spec.nodeAffinity.required` to the agent's node
//!    (`kubernetes.io/hostname` In `[<this node's hostname label>]`, see
//!    [`plan::pinned_hostname`]),
//!
//! the agent removes the directory `spec.hostPath.path` recursively (a
//! directory that was never made counts as removed) and then removes that one
//! finalizer from the volume** (a JSON patch or an update; other finalizers
//! are left to their owners), after which the API server deletes the object.
//! The controller deletes such a volume itself once it is `Released` with
//! reclaim policy `Delete`; an administrator may delete one at any time, and
//! condition 3 keeps the data while a claim is still bound. A `Retain` volume
//! carries no such finalizer, so its directory outlives the PV, as in k3s. A
//! volume whose node is gone for good keeps the finalizer until an
//! administrator removes it.
//!
//! # Protection
//!
//! The API server puts [`PVC_PROTECTION_FINALIZER`] on every new claim and
//! [`PV_PROTECTION_FINALIZER`] on every new volume. Once a claim is being
//! deleted and no scheduled pod in its namespace names it in a volume, its
//! finalizer is removed; once a volume is being deleted and is not `Bound`,
//! its finalizer is removed.
//!
//! # Bootstrap
//!
//! [`ensure_default_class`] creates the StorageClass `local-path` (the
//! default class, `WaitForFirstConsumer`, reclaim `Delete`) if absent; [`run`]
//! calls it at start.

pub mod plan;

use crate::cache::Cache;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use plan::{Action, Observed, Options};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::watch;

/// The provisioner name of the built-in dynamic provisioner.
pub const LOCAL_PATH_PROVISIONER: &str = "skiff.io/local-path";
/// The name of the default StorageClass (as in k3s).
pub const DEFAULT_CLASS_NAME: &str = "local-path";
/// The finalizer on provisioned volumes that the node agent removes once the
/// volume's directory is gone.
pub const LOCAL_PATH_CLEANUP_FINALIZER: &str = "skiff.io/local-path-cleanup";
/// The StorageClass parameter naming the node directory volumes are made under.
pub const NODE_PATH_PARAMETER: &str = "nodePath";
/// The node directory volumes are made under when a class does not say.
pub const DEFAULT_NODE_PATH: &str = "/var/lib/skiff/storage";
/// The node label a provisioned volume is pinned by.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Set on a claim (and volume) once binding is complete.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set where the controller, not the user, made the bind.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// On a provisioned volume: the provisioner that made it.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// On a claim: the provisioner expected to provision it.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The beta spelling of [`ANN_STORAGE_PROVISIONER`], still written.
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// On a claim: the node the scheduler chose for its first consumer.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The beta annotation that once carried the class name.
pub const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// The annotation marking the default StorageClass.
pub const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta spelling of [`ANN_DEFAULT_CLASS`].
pub const ANN_BETA_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// The finalizer the API server puts on claims.
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";
/// The finalizer the API server puts on volumes.
pub const PV_PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";

/// The default StorageClass `local-path`.
pub fn default_class() -> StorageClass {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": DEFAULT_CLASS_NAME,
                     "annotations": {ANN_DEFAULT_CLASS: "true"}},
        "provisioner": LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": false,
    }))
    .expect("a valid StorageClass")
}

/// Creates the default StorageClass unless a class of that name exists.
pub async fn ensure_default_class(client: &kube::Client) -> Result<(), kube::Error> {
    let api = Api::<StorageClass>::all(client.clone());
    if api.get_opt(DEFAULT_CLASS_NAME).await?.is_some() {
        return Ok(());
    }
    match api.create(&PostParams::default(), &default_class()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The component name Events are recorded under.
const COMPONENT: &str = "persistentvolume-controller";
/// The component the provisioner's Events are recorded under.
const PROVISIONER_COMPONENT: &str = "skiff.io/local-path";

/// An object a write returned.
enum Written {
    Volume(Box<PersistentVolume>),
    Claim(Box<PersistentVolumeClaim>),
}

/// Remembers the resourceVersion a write returned, so a later step of the
/// same round on the same object does not conflict with the round's own write.
fn note(rvs: &mut HashMap<String, String>, key: String, rv: &Option<String>) {
    if let Some(rv) = rv {
        rvs.insert(key, rv.clone());
    }
}

/// A merge patch setting a claim's status: fields left unset are cleared.
fn claim_status_patch(
    status: &k8s_openapi::api::core::v1::PersistentVolumeClaimStatus,
) -> serde_json::Value {
    let mut v = serde_json::to_value(status).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        for k in ["accessModes", "capacity"] {
            m.entry(k).or_insert(serde_json::Value::Null);
        }
    }
    v
}

/// Carries out one action: Err when it failed (the next round retries), else
/// the object written, when the write returns one.
async fn execute(
    client: &kube::Client,
    a: &Action,
    rvs: &mut HashMap<String, String>,
) -> Result<Option<Written>, ()> {
    let pvs = Api::<PersistentVolume>::all(client.clone());
    let pp = PostParams::default();
    let merge_status =
        |status: serde_json::Value| Patch::Merge(serde_json::json!({"status": status}));
    let res: Result<Option<Written>, kube::Error> = match a {
        Action::CreateVolume(v) => pvs
            .create(&pp, v)
            .await
            .map(|o| Some(Written::Volume(Box::new(o)))),
        Action::UpdateVolume(v) => {
            let mut v = (**v).clone();
            let name = v.metadata.name.clone().unwrap_or_default();
            let key = format!("pv/{name}");
            if let Some(rv) = rvs.get(&key) {
                v.metadata.resource_version = Some(rv.clone());
            }
            v.status = None;
            pvs.replace(&name, &pp, &v).await.map(|o| {
                note(rvs, key, &o.metadata.resource_version);
                Some(Written::Volume(Box::new(o)))
            })
        }
        Action::VolumeStatus { name, status } => pvs
            .patch_status(
                name,
                &PatchParams::default(),
                &merge_status(serde_json::to_value(status).unwrap_or_default()),
            )
            .await
            .map(|o| {
                note(rvs, format!("pv/{name}"), &o.metadata.resource_version);
                Some(Written::Volume(Box::new(o)))
            }),
        Action::DeleteVolume { name, uid } => pvs
            .delete(
                name,
                &DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                },
            )
            .await
            .map(|_| None),
        Action::UpdateClaim(c) => {
            let mut c = (**c).clone();
            let ns = c.metadata.namespace.clone().unwrap_or_default();
            let name = c.metadata.name.clone().unwrap_or_default();
            let key = format!("pvc/{ns}/{name}");
            if let Some(rv) = rvs.get(&key) {
                c.metadata.resource_version = Some(rv.clone());
            }
            c.status = None;
            Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
                .replace(&name, &pp, &c)
                .await
                .map(|o| {
                    note(rvs, key, &o.metadata.resource_version);
                    Some(Written::Claim(Box::new(o)))
                })
        }
        Action::ClaimStatus {
            namespace,
            name,
            status,
        } => Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
            .patch_status(
                name,
                &PatchParams::default(),
                &merge_status(claim_status_patch(status)),
            )
            .await
            .map(|o| {
                note(
                    rvs,
                    format!("pvc/{namespace}/{name}"),
                    &o.metadata.resource_version,
                );
                Some(Written::Claim(Box::new(o)))
            }),
        Action::Event {
            about,
            type_,
            reason,
            message,
        } => {
            let component = if matches!(*reason, "Provisioning" | "ProvisioningSucceeded")
                || (*reason == "ProvisioningFailed" && message.starts_with("failed to provision"))
            {
                PROVISIONER_COMPONENT
            } else {
                COMPONENT
            };
            crate::events::record(
                client,
                component,
                &crate::events::Involved {
                    kind: about.kind,
                    api_version: "v1",
                    namespace: &about.namespace,
                    name: &about.name,
                    uid: Some(&about.uid),
                },
                type_,
                reason,
                message,
            )
            .await;
            Ok(None)
        }
    };
    res.map_err(|e| tracing::debug!("storage: {a:?}: {e}"))
}

/// The objects an action concerns: itself, and the other side of a binding.
fn touches(a: &Action) -> Vec<String> {
    let pv = |n: &str| format!("pv/{n}");
    let pvc = |ns: &str, n: &str| format!("pvc/{ns}/{n}");
    match a {
        Action::CreateVolume(v) | Action::UpdateVolume(v) => {
            let mut out = vec![pv(v.metadata.name.as_deref().unwrap_or(""))];
            if let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                out.push(pvc(
                    r.namespace.as_deref().unwrap_or(""),
                    r.name.as_deref().unwrap_or(""),
                ));
            }
            out
        }
        Action::VolumeStatus { name, .. } | Action::DeleteVolume { name, .. } => vec![pv(name)],
        Action::UpdateClaim(c) => {
            let mut out = vec![pvc(
                c.metadata.namespace.as_deref().unwrap_or(""),
                c.metadata.name.as_deref().unwrap_or(""),
            )];
            if let Some(v) = c.spec.as_ref().and_then(|s| s.volume_name.as_deref()) {
                out.push(pv(v));
            }
            out
        }
        Action::ClaimStatus {
            namespace, name, ..
        } => vec![pvc(namespace, name)],
        Action::Event { .. } => Vec::new(),
    }
}

/// What of a node the planner reads: its labels, and whether it is Ready and schedulable.
fn node_digest(n: &Node) -> (Option<&std::collections::BTreeMap<String, String>>, bool) {
    (n.metadata.labels.as_ref(), plan::node_ready(n))
}

/// Applies a node event; true only when something the planner reads changed
/// (heartbeats alone do not start a round).
fn apply_node(nodes: &mut Cache<Node>, e: watcher::Event<Node>) -> bool {
    if let watcher::Event::Apply(n) = &e
        && let Some(cur) = nodes.get(&crate::key_of(&n.metadata))
        && node_digest(cur) == node_digest(n)
    {
        nodes.apply(e);
        return false;
    }
    nodes.apply(e)
}

/// Whether a pod names a claim in a volume (the only pods storage looks at).
fn names_a_claim(p: &Pod) -> bool {
    p.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some())
}

/// Applies a pod event, keeping only pods that name claims; true when the cache changed.
fn apply_pod(pods: &mut Cache<Pod>, e: watcher::Event<std::sync::Arc<Pod>>) -> bool {
    match e {
        watcher::Event::Apply(p) if !names_a_claim(&p) => {
            if pods.get(&crate::key_of(&p.metadata)).is_some() {
                pods.apply(watcher::Event::Delete(p))
            } else {
                false
            }
        }
        watcher::Event::InitApply(p) if !names_a_claim(&p) => false,
        e => pods.apply(e),
    }
}

/// Runs the storage controllers (with a pod watch of their own) until `shutdown` turns true.
pub async fn run(client: kube::Client, config: crate::Config, shutdown: watch::Receiver<bool>) {
    run_with_pods(
        client.clone(),
        config,
        crate::informer::own_pods(client.clone()),
        shutdown,
    )
    .await
}

/// Runs the storage controllers on a shared pod stream until `shutdown` turns
/// true: creates the default class, then plans a round whenever a claim,
/// volume, class, node or pod changes (and every 15 s).
pub async fn run_with_pods(
    client: kube::Client,
    config: crate::Config,
    pods_in: crate::informer::PodStream,
    mut shutdown: watch::Receiver<bool>,
) {
    if config.default_storage_class {
        for _ in 0..50 {
            match ensure_default_class(&client).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::debug!("storage: default class: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    let opts = Options {
        default_node_path: config.storage_node_path.to_string_lossy().into_owned(),
    };
    let wc = watcher::Config::default;
    let mut claims_w = watcher(Api::<PersistentVolumeClaim>::all(client.clone()), wc()).boxed();
    let mut volumes_w = watcher(Api::<PersistentVolume>::all(client.clone()), wc()).boxed();
    let mut classes_w = watcher(Api::<StorageClass>::all(client.clone()), wc()).boxed();
    let mut nodes_w = watcher(Api::<Node>::all(client.clone()), wc()).boxed();
    let mut pods_w = pods_in;
    let mut claims: Cache<PersistentVolumeClaim> = Cache::new();
    let mut volumes: Cache<PersistentVolume> = Cache::new();
    let mut classes: Cache<StorageClass> = Cache::new();
    let mut nodes: Cache<Node> = Cache::new();
    let mut pods: Cache<Pod> = Cache::new();
    // Events already recorded (object UID, reason, message): Kubernetes repeats
    // them on every resync and aggregates them; recording each once is enough.
    let mut recorded: HashSet<(String, &'static str, String)> = HashSet::new();
    let mut dirty = true;
    let mut next_resync = tokio::time::Instant::now();
    // Rounds in a row with a failed write: the retry waits 0.5 s, doubling to 16 s.
    let mut failing: u32 = 0;
    loop {
        let wake = if dirty {
            tokio::time::Instant::now() + Duration::from_millis(20)
        } else {
            next_resync
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            ev = claims_w.next() => match ev {
                Some(Ok(e)) => dirty |= claims.apply(e),
                Some(Err(e)) => tracing::debug!("storage: claim watch: {e}"),
                None => return,
            },
            ev = volumes_w.next() => match ev {
                Some(Ok(e)) => dirty |= volumes.apply(e),
                Some(Err(e)) => tracing::debug!("storage: volume watch: {e}"),
                None => return,
            },
            ev = classes_w.next() => match ev {
                Some(Ok(e)) => dirty |= classes.apply(e),
                Some(Err(e)) => tracing::debug!("storage: class watch: {e}"),
                None => return,
            },
            ev = nodes_w.next() => match ev {
                Some(Ok(e)) => dirty |= apply_node(&mut nodes, e),
                Some(Err(e)) => tracing::debug!("storage: node watch: {e}"),
                None => return,
            },
            ev = pods_w.next() => match ev {
                Some(Ok(e)) => dirty |= apply_pod(&mut pods, e),
                Some(Err(e)) => tracing::debug!("storage: pod watch: {e}"),
                None => return,
            },
            _ = tokio::time::sleep_until(wake) => {
                if !(claims.synced && volumes.synced && classes.synced && nodes.synced && pods.synced) {
                    continue;
                }
                dirty = false;
                next_resync = tokio::time::Instant::now() + Duration::from_secs(15);
                let observed = Observed {
                    claims: claims.values().cloned().collect(),
                    volumes: volumes.values().cloned().collect(),
                    classes: classes.values().cloned().collect(),
                    nodes: nodes.values().cloned().collect(),
                    pods: pods.values().cloned().collect(),
                };
                let actions = plan::plan(&observed, &opts);
                let mut rvs = HashMap::new();
                // Objects a failed write touched: the rest of their steps wait
                // for the next round, as Kubernetes' bind stops at its first error.
                let mut failed: HashSet<String> = HashSet::new();
                for a in &actions {
                    if let Action::Event { about, reason, message, .. } = a
                        && !recorded.insert((about.uid.clone(), reason, message.clone()))
                    {
                        continue;
                    }
                    let touched = touches(a);
                    if touched.iter().any(|k| failed.contains(k)) {
                        continue;
                    }
                    match execute(&client, a, &mut rvs).await {
                        // What a write returned is newer than the watch may be yet.
                        Ok(Some(Written::Volume(v))) => volumes.put(*v),
                        Ok(Some(Written::Claim(c))) => claims.put(*c),
                        Ok(None) => {}
                        Err(()) => {
                            failed.extend(touched);
                            // A conflict or a failure: look again soon with fresh objects.
                            let wait = Duration::from_millis(500 << failing.min(5));
                            next_resync = tokio::time::Instant::now() + wait;
                        }
                    }
                }
                failing = if failed.is_empty() { 0 } else { failing + 1 };
                // Forget the recorded events of objects that are gone.
                let live: HashSet<&str> = claims
                    .values()
                    .filter_map(|c| c.metadata.uid.as_deref())
                    .chain(volumes.values().filter_map(|v| v.metadata.uid.as_deref()))
                    .collect();
                recorded.retain(|(uid, _, _)| live.contains(uid.as_str()));
            }
        }
    }
}

#[cfg(test)]
mod tests;
