//! The garbage collector: owner references honoured as Kubernetes honours
//! them.
//!
//! - A dependent whose owners are all gone is deleted (in the background).
//! - An owner deleted with `propagationPolicy: Foreground` carries the
//!   `foregroundDeletion` finalizer: its dependents are deleted first
//!   (themselves in the foreground), and the finalizer is removed once no
//!   dependent with `blockOwnerDeletion` is left.
//! - An owner deleted with `propagationPolicy: Orphan` carries the `orphan`
//!   finalizer: its dependents lose their reference to it, then the
//!   finalizer is removed.
//!
//! The decisions ([`dependent_action`], [`owner_action`]) are pure; [`run`]
//! keeps a metadata-only index of the kinds that commonly own or are owned,
//! and checks with a live read that an owner is really gone before deleting
//! anything because of its absence.

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PropagationPolicy};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// An owner reference, as the collector needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    /// The owner's uid.
    pub uid: String,
    /// Its apiVersion.
    pub api_version: String,
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// `blockOwnerDeletion`.
    pub block: bool,
}

/// One object in the collector's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// uid.
    pub uid: String,
    /// apiVersion.
    pub api_version: String,
    /// kind.
    pub kind: String,
    /// Namespace (None for cluster-scoped objects).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// Its owners.
    pub owners: Vec<OwnerRef>,
    /// Whether it has a deletionTimestamp.
    pub deleting: bool,
    /// Its finalizers.
    pub finalizers: Vec<String>,
}

impl Item {
    /// The index entry of an object's metadata.
    pub fn from_meta(api_version: &str, kind: &str, m: &ObjectMeta) -> Option<Item> {
        Some(Item {
            uid: m.uid.clone()?,
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace: m.namespace.clone(),
            name: m.name.clone()?,
            owners: m
                .owner_references
                .iter()
                .flatten()
                .map(|o| OwnerRef {
                    uid: o.uid.clone(),
                    api_version: o.api_version.clone(),
                    kind: o.kind.clone(),
                    name: o.name.clone(),
                    block: o.block_owner_deletion == Some(true),
                })
                .collect(),
            deleting: m.deletion_timestamp.is_some(),
            finalizers: m.finalizers.clone().unwrap_or_default(),
        })
    }

    fn has(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }
}

/// Kubernetes' finalizer for foreground deletion.
pub const FOREGROUND: &str = "foregroundDeletion";
/// Kubernetes' finalizer for orphaning deletion.
pub const ORPHAN: &str = "orphan";

/// What the collector does about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Delete the dependent, with this propagation policy; `absent` lists
    /// the owners whose absence must be confirmed by a live read first.
    Delete {
        /// The propagation policy: `Background` or `Foreground`.
        policy: &'static str,
        /// Owners believed gone.
        absent: Vec<OwnerRef>,
    },
    /// Remove these owners (by uid) from the dependent's references;
    /// `absent` as for [`Action::Delete`].
    RemoveOwners {
        /// The owner uids to drop.
        uids: Vec<String>,
        /// Owners believed gone.
        absent: Vec<OwnerRef>,
    },
    /// Remove this finalizer from the owner.
    RemoveFinalizer(&'static str),
}

/// What to do with `d` as a dependent, given the index.
pub fn dependent_action(d: &Item, items: &HashMap<String, Item>) -> Option<Action> {
    if d.owners.is_empty() || d.deleting {
        return None;
    }
    let mut absent = Vec::new();
    let mut waiting = Vec::new(); // owners deleted in the foreground
    let mut orphaning = Vec::new(); // owners deleted with orphan
    let mut solid = 0;
    for o in &d.owners {
        match items.get(&o.uid) {
            None => absent.push(o.clone()),
            Some(owner) if owner.deleting && owner.has(FOREGROUND) => waiting.push(o.clone()),
            Some(owner) if owner.deleting && owner.has(ORPHAN) => orphaning.push(o.clone()),
            Some(_) => solid += 1,
        }
    }
    if solid == 0 && orphaning.is_empty() && (!absent.is_empty() || !waiting.is_empty()) {
        let policy = if waiting.is_empty() {
            "Background"
        } else {
            "Foreground"
        };
        return Some(Action::Delete { policy, absent });
    }
    let drop: Vec<String> = absent
        .iter()
        .chain(orphaning.iter())
        .chain(if solid > 0 { waiting.iter() } else { [].iter() })
        .map(|o| o.uid.clone())
        .collect();
    if drop.is_empty() {
        return None;
    }
    Some(Action::RemoveOwners { uids: drop, absent })
}

/// What to do with `o` as an owner being deleted, given its dependents.
pub fn owner_action(o: &Item, dependents: &[&Item]) -> Option<Action> {
    if !o.deleting {
        return None;
    }
    let refs = |d: &&Item| d.owners.iter().any(|r| r.uid == o.uid);
    if o.has(ORPHAN) && !dependents.iter().any(refs) {
        return Some(Action::RemoveFinalizer(ORPHAN));
    }
    if o.has(FOREGROUND)
        && !o.has(ORPHAN)
        && !dependents
            .iter()
            .any(|d| d.owners.iter().any(|r| r.uid == o.uid && r.block))
    {
        return Some(Action::RemoveFinalizer(FOREGROUND));
    }
    None
}

/// The kinds the collector indexes: (apiVersion, kind).
const KINDS: &[(&str, &str)] = &[
    ("v1", "Pod"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "ControllerRevision"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "PersistentVolumeClaim"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
];

/// The REST path of an object.
fn path_of(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Option<String> {
    let (group, version) = skiff_api::catalog::split_api_version(api_version);
    let r = skiff_api::catalog::lookup_kind(group, version, kind)?;
    let mut p = r.collection_path(namespace.filter(|_| r.namespaced));
    p.push('/');
    p.push_str(name);
    Some(p)
}

/// Whether the owner is really gone: a live read finds no object of that
/// name, or one with another uid. An owner of a kind not served counts as present.
async fn gone(client: &kube::Client, owner: &OwnerRef, namespace: Option<&str>) -> bool {
    let Some(path) = path_of(&owner.api_version, &owner.kind, namespace, &owner.name) else {
        return false;
    };
    match client
        .request::<Value>(
            http::Request::get(path)
                .body(Vec::new())
                .expect("valid request"),
        )
        .await
    {
        Ok(v) => v["metadata"]["uid"] != owner.uid.as_str(),
        Err(kube::Error::Api(s)) => s.code == 404,
        Err(_) => false,
    }
}

type Msg = (String, Option<Item>, Option<String>);

/// Forwards one kind's metadata watch to the collector.
fn watch_kind<K>(
    client: kube::Client,
    api_version: &'static str,
    kind: &'static str,
    tx: mpsc::Sender<Msg>,
) where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    tokio::spawn(async move {
        let mut s = watcher::watcher(
            Api::<PartialObjectMeta<K>>::all(client),
            watcher::Config::default(),
        )
        .boxed();
        let mut seen: HashSet<String> = HashSet::new();
        let mut relist: Option<HashSet<String>> = None;
        while let Some(ev) = s.next().await {
            let ev: watcher::Event<PartialObjectMeta<K>> = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::debug!("garbage collector: watch {kind}: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let msgs: Vec<Msg> = match ev {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                    let Some(item) = Item::from_meta(api_version, kind, &o.metadata) else {
                        continue;
                    };
                    if let Some(r) = relist.as_mut() {
                        r.insert(item.uid.clone());
                    }
                    seen.insert(item.uid.clone());
                    vec![(item.uid.clone(), Some(item), None)]
                }
                watcher::Event::Delete(o) => {
                    let Some(uid) = o.metadata.uid.clone() else {
                        continue;
                    };
                    seen.remove(&uid);
                    vec![(uid, None, None)]
                }
                watcher::Event::Init => {
                    relist = Some(HashSet::new());
                    vec![]
                }
                watcher::Event::InitDone => {
                    let fresh = relist.take().unwrap_or_default();
                    let stale: Vec<String> = seen.difference(&fresh).cloned().collect();
                    seen = fresh;
                    let mut m: Vec<Msg> = stale.into_iter().map(|u| (u, None, None)).collect();
                    m.push((String::new(), None, Some(kind.to_string())));
                    m
                }
            };
            for m in msgs {
                if tx.send(m).await.is_err() {
                    return;
                }
            }
        }
    });
}

/// Runs the garbage collector until `shutdown` turns true.
pub async fn run(client: kube::Client, mut shutdown: watch::Receiver<bool>) {
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
    let (tx, mut rx) = mpsc::channel::<Msg>(4096);
    watch_kind::<core::Pod>(client.clone(), "v1", "Pod", tx.clone());
    watch_kind::<apps::ReplicaSet>(client.clone(), "apps/v1", "ReplicaSet", tx.clone());
    watch_kind::<apps::Deployment>(client.clone(), "apps/v1", "Deployment", tx.clone());
    watch_kind::<apps::StatefulSet>(client.clone(), "apps/v1", "StatefulSet", tx.clone());
    watch_kind::<apps::DaemonSet>(client.clone(), "apps/v1", "DaemonSet", tx.clone());
    watch_kind::<apps::ControllerRevision>(
        client.clone(),
        "apps/v1",
        "ControllerRevision",
        tx.clone(),
    );
    watch_kind::<batch::Job>(client.clone(), "batch/v1", "Job", tx.clone());
    watch_kind::<batch::CronJob>(client.clone(), "batch/v1", "CronJob", tx.clone());
    watch_kind::<core::ConfigMap>(client.clone(), "v1", "ConfigMap", tx.clone());
    watch_kind::<core::Secret>(client.clone(), "v1", "Secret", tx.clone());
    watch_kind::<core::Service>(client.clone(), "v1", "Service", tx.clone());
    watch_kind::<core::PersistentVolumeClaim>(
        client.clone(),
        "v1",
        "PersistentVolumeClaim",
        tx.clone(),
    );
    watch_kind::<k8s_openapi::api::discovery::v1::EndpointSlice>(
        client.clone(),
        "discovery.k8s.io/v1",
        "EndpointSlice",
        tx.clone(),
    );
    drop(tx);

    let mut items: HashMap<String, Item> = HashMap::new();
    let mut dependents: HashMap<String, HashSet<String>> = HashMap::new();
    let mut synced: HashSet<String> = HashSet::new();
    let mut dirty: HashSet<String> = HashSet::new();
    // Live reads that found an owner still there: retried later, not at once.
    let mut retry = tokio::time::interval(Duration::from_secs(5));
    let mut deferred: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = retry.tick() => dirty.extend(deferred.drain()),
            m = rx.recv() => {
                let Some((uid, item, done)) = m else { return };
                if let Some(kind) = done {
                    synced.insert(kind);
                    continue;
                }
                // Unlink the old version from its owners.
                if let Some(old) = items.remove(&uid) {
                    for o in &old.owners {
                        if let Some(set) = dependents.get_mut(&o.uid) {
                            set.remove(&uid);
                            dirty.insert(o.uid.clone());
                        }
                    }
                }
                if let Some(item) = item {
                    for o in &item.owners {
                        dependents.entry(o.uid.clone()).or_default().insert(uid.clone());
                        dirty.insert(o.uid.clone());
                    }
                    items.insert(uid.clone(), item);
                }
                dirty.insert(uid.clone());
                // Its dependents may now have lost their owner or see it deleting.
                if let Some(ds) = dependents.get(&uid) {
                    dirty.extend(ds.iter().cloned());
                }
                // Drain what is queued before acting, so a burst is handled once.
                if !rx.is_empty() {
                    continue;
                }
            }
        }
        if synced.len() < KINDS.len() {
            continue;
        }
        for uid in std::mem::take(&mut dirty) {
            let Some(item) = items.get(&uid).cloned() else {
                continue;
            };
            let deps: Vec<&Item> = dependents
                .get(&uid)
                .into_iter()
                .flatten()
                .filter_map(|d| items.get(d))
                .collect();
            let action = owner_action(&item, &deps).or_else(|| dependent_action(&item, &items));
            if let Some(a) = action
                && !carry_out(&client, &item, a).await
            {
                deferred.insert(uid);
            }
        }
    }
}

/// Carries out one action; false when it should be retried later.
async fn carry_out(client: &kube::Client, item: &Item, action: Action) -> bool {
    let Some(path) = path_of(
        &item.api_version,
        &item.kind,
        item.namespace.as_deref(),
        &item.name,
    ) else {
        return true;
    };
    let absent = match &action {
        Action::Delete { absent, .. } | Action::RemoveOwners { absent, .. } => absent.clone(),
        Action::RemoveFinalizer(_) => Vec::new(),
    };
    for o in &absent {
        if !gone(client, o, item.namespace.as_deref()).await {
            return false;
        }
    }
    let result = match action {
        Action::Delete { policy, .. } => {
            let dp = DeleteParams {
                propagation_policy: Some(if policy == "Foreground" {
                    PropagationPolicy::Foreground
                } else {
                    PropagationPolicy::Background
                }),
                preconditions: Some(kube::api::Preconditions {
                    uid: Some(item.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            let body = serde_json::to_vec(&dp).unwrap_or_default();
            client
                .request_text(
                    http::Request::delete(path)
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(body)
                        .expect("valid request"),
                )
                .await
                .map(|_| ())
        }
        Action::RemoveOwners { uids, .. } => {
            let keep: Vec<Value> = item
                .owners
                .iter()
                .filter(|o| !uids.contains(&o.uid))
                .map(|o| {
                    json!({"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid,
                           "blockOwnerDeletion": o.block})
                })
                .collect();
            // No references left: the field goes, as Kubernetes' objects omit an empty list.
            let refs = if keep.is_empty() {
                Value::Null
            } else {
                Value::Array(keep)
            };
            patch(client, path, json!({"metadata": {"ownerReferences": refs}})).await
        }
        Action::RemoveFinalizer(f) => {
            let keep: Vec<&String> = item.finalizers.iter().filter(|x| *x != f).collect();
            patch(client, path, json!({"metadata": {"finalizers": keep}})).await
        }
    };
    match result {
        Ok(()) => true,
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => true,
        Err(e) => {
            tracing::debug!("garbage collector: {}/{}: {e}", item.kind, item.name);
            false
        }
    }
}

async fn patch(client: &kube::Client, path: String, body: Value) -> Result<(), kube::Error> {
    client
        .request_text(
            http::Request::patch(path)
                .header(http::header::CONTENT_TYPE, "application/merge-patch+json")
                .body(serde_json::to_vec(&body).unwrap_or_default())
                .expect("valid request"),
        )
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(uid: &str, owners: &[(&str, bool)], deleting: bool, finalizers: &[&str]) -> Item {
        Item {
            uid: uid.into(),
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            namespace: Some("default".into()),
            name: uid.into(),
            owners: owners
                .iter()
                .map(|(u, block)| OwnerRef {
                    uid: (*u).into(),
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: (*u).into(),
                    block: *block,
                })
                .collect(),
            deleting,
            finalizers: finalizers.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn index(items: &[Item]) -> HashMap<String, Item> {
        items.iter().map(|i| (i.uid.clone(), i.clone())).collect()
    }

    #[test]
    fn dependents_follow_their_owners() {
        let owner = item("o", &[], false, &[]);
        let fg = item("fg", &[], true, &[FOREGROUND]);
        let orphaning = item("orph", &[], true, &[ORPHAN]);
        let other = item("other", &[], false, &[]);
        let idx = index(&[owner, fg, orphaning, other]);
        let kind = |a: Option<Action>| match a {
            None => "keep".to_string(),
            Some(Action::Delete { policy, .. }) => format!("delete {policy}"),
            Some(Action::RemoveOwners { uids, .. }) => format!("unlink {}", uids.join(",")),
            Some(Action::RemoveFinalizer(f)) => format!("finalize {f}"),
        };
        let cases: &[(&str, Item, &str)] = &[
            (
                "owner present",
                item("d", &[("o", true)], false, &[]),
                "keep",
            ),
            (
                "owner gone",
                item("d", &[("gone", true)], false, &[]),
                "delete Background",
            ),
            (
                "owner deleted in the foreground",
                item("d", &[("fg", true)], false, &[]),
                "delete Foreground",
            ),
            (
                "owner orphaning",
                item("d", &[("orph", true)], false, &[]),
                "unlink orph",
            ),
            (
                "one owner gone, one present",
                item("d", &[("gone", false), ("o", true)], false, &[]),
                "unlink gone",
            ),
            (
                "foreground owner beside a solid one",
                item("d", &[("fg", true), ("other", false)], false, &[]),
                "unlink fg",
            ),
            (
                "already being deleted",
                item("d", &[("gone", true)], true, &[]),
                "keep",
            ),
            ("no owners", item("d", &[], false, &[]), "keep"),
        ];
        for (what, d, want) in cases {
            assert_eq!(kind(dependent_action(d, &idx)), *want, "{what}");
        }
    }

    #[test]
    fn owners_release_their_finalizers_when_dependents_are_dealt_with() {
        let fg = item("fg", &[], true, &[FOREGROUND]);
        let blocking = item("d1", &[("fg", true)], true, &[]);
        let non_blocking = item("d2", &[("fg", false)], false, &[]);
        assert_eq!(
            owner_action(&fg, &[&blocking]),
            None,
            "a blocking dependent holds it"
        );
        assert_eq!(
            owner_action(&fg, &[&non_blocking]),
            Some(Action::RemoveFinalizer(FOREGROUND))
        );
        assert_eq!(
            owner_action(&fg, &[]),
            Some(Action::RemoveFinalizer(FOREGROUND))
        );

        let orph = item("orph", &[], true, &[ORPHAN]);
        let still = item("d", &[("orph", false)], false, &[]);
        assert_eq!(
            owner_action(&orph, &[&still]),
            None,
            "dependents must be unlinked first"
        );
        assert_eq!(
            owner_action(&orph, &[]),
            Some(Action::RemoveFinalizer(ORPHAN))
        );

        let live = item("live", &[], false, &[FOREGROUND]);
        assert_eq!(owner_action(&live, &[]), None, "only deleting owners");
    }

    #[test]
    fn paths_come_from_the_catalog() {
        assert_eq!(
            path_of("apps/v1", "ReplicaSet", Some("default"), "web").as_deref(),
            Some("/apis/apps/v1/namespaces/default/replicasets/web")
        );
        assert_eq!(
            path_of("v1", "Node", Some("default"), "n1").as_deref(),
            Some("/api/v1/nodes/n1"),
            "cluster-scoped owners ignore the dependent's namespace"
        );
        assert_eq!(path_of("example.com/v1", "Widget", None, "w"), None);
    }
}
