//! The node's half of the `skiff.io/local-path` provisioner: when a volume
//! provisioned on this node is deleted, its directory is removed here (only
//! the node has it) and then the `skiff.io/local-path-cleanup` finalizer
//! is taken off so the PersistentVolume goes away.
//!
//! [`plan`] decides for one PersistentVolume, without IO; [`run`] watches
//! the volumes and carries the decisions out. A directory that does not look
//! like one the provisioner made (`…/pvc-<uid>_<namespace>_<claim>` for the
//! volume `pvc-<uid>`) is never removed: the agent refuses loudly and leaves
//! the finalizer, so a person can look.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::Api;
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::watch;

/// The finalizer the provisioner puts on the volumes it makes.
pub const CLEANUP_FINALIZER: &str = "skiff.io/local-path-cleanup";
/// The node label volumes are pinned with.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// What to do about one PersistentVolume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleanup {
    /// Not ours to act on (another node, not being deleted, no finalizer).
    Nothing,
    /// Remove the directory, then the finalizer (reclaimPolicy Delete).
    RemoveDir(PathBuf),
    /// Keep the data, remove only the finalizer (reclaimPolicy Retain or Recycle).
    KeepDir,
    /// The path does not look like a provisioned volume's: touch nothing. Carries why.
    Refuse(String),
}

/// Whether the volume's `nodeAffinity.required` pins it to `node` by hostname.
pub fn pinned_to(pv: &PersistentVolume, node: &str) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .is_some_and(|r| {
            r.node_selector_terms.iter().any(|t| {
                t.match_expressions.iter().flatten().any(|e| {
                    e.key == HOSTNAME_LABEL
                        && e.operator == "In"
                        && e.values.iter().flatten().any(|v| v == node)
                })
            })
        })
}

/// The host path of a volume: `hostPath.path` or `local.path`.
pub fn volume_path(pv: &PersistentVolume) -> Option<&str> {
    let spec = pv.spec.as_ref()?;
    spec.host_path
        .as_ref()
        .map(|h| h.path.as_str())
        .or_else(|| spec.local.as_ref().map(|l| l.path.as_str()))
}

/// Checks that `path` is a directory the provisioner made for the volume
/// `pv_name`: absolute, without `.`/`..`, below at least one directory, and
/// named `<pv_name>_…` where `pv_name` is `pvc-<uid>`.
pub fn provisioned_dir(pv_name: &str, path: &str) -> Result<PathBuf, String> {
    let refuse = |why: &str| {
        Err(format!(
            "refusing to remove {path:?} for PersistentVolume {pv_name:?}: {why}"
        ))
    };
    let Some(uid) = pv_name.strip_prefix("pvc-").filter(|u| !u.is_empty()) else {
        return refuse("the volume is not named pvc-<uid>");
    };
    if uid.contains('/') || uid.contains('_') {
        return refuse("the volume name is not pvc-<uid>");
    }
    let p = Path::new(path);
    if !p.is_absolute() {
        return refuse("the path is not absolute");
    }
    if p.components()
        .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
    {
        return refuse("the path is not normal");
    }
    if p.components().count() < 3 {
        return refuse("the path is not below a storage directory");
    }
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let Some(rest) = name.strip_prefix(&format!("{pv_name}_")) else {
        return refuse(&format!(
            "the directory is not named {pv_name}_<namespace>_<claim>"
        ));
    };
    if rest.is_empty() {
        return refuse(&format!(
            "the directory is not named {pv_name}_<namespace>_<claim>"
        ));
    }
    Ok(p.to_path_buf())
}

/// Decides what the agent on `node` does about `pv`.
pub fn plan(pv: &PersistentVolume, node: &str) -> Cleanup {
    let ours = pv
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == CLEANUP_FINALIZER);
    // While pv-protection is on, a claim is still bound to the volume (a pod
    // may be using it): the data stays until the protection controller lets go.
    let protected = pv
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == "kubernetes.io/pv-protection");
    if !ours || pv.metadata.deletion_timestamp.is_none() || protected || !pinned_to(pv, node) {
        return Cleanup::Nothing;
    }
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Delete");
    if policy != "Delete" {
        return Cleanup::KeepDir;
    }
    let name = pv.metadata.name.as_deref().unwrap_or("");
    let Some(path) = volume_path(pv) else {
        return Cleanup::Refuse(format!(
            "refusing to clean up PersistentVolume {name:?}: it has neither hostPath nor local path"
        ));
    };
    match provisioned_dir(name, path) {
        Ok(dir) => Cleanup::RemoveDir(dir),
        Err(why) => Cleanup::Refuse(why),
    }
}

/// The JSON patch that takes the cleanup finalizer off (tested against its
/// position, so a concurrent change of the list makes the patch fail rather
/// than remove another finalizer).
pub fn finalizer_patch(pv: &PersistentVolume) -> Option<serde_json::Value> {
    let i = pv
        .metadata
        .finalizers
        .iter()
        .flatten()
        .position(|f| f == CLEANUP_FINALIZER)?;
    Some(json!([
        {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": CLEANUP_FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
    ]))
}

/// How carrying out a plan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done, or nothing to do.
    Done,
    /// Failed for now: try again later.
    Retry,
    /// Refused: the directory and the finalizer stay. Carries why.
    Refused(String),
}

/// Carries out the plan for one volume.
pub async fn clean_up(client: &kube::Client, pv: &PersistentVolume, node: &str) -> Outcome {
    let name = pv.metadata.name.clone().unwrap_or_default();
    match plan(pv, node) {
        Cleanup::Nothing => return Outcome::Done,
        Cleanup::Refuse(why) => {
            tracing::error!("local-path cleanup: {why}; the finalizer {CLEANUP_FINALIZER} stays");
            return Outcome::Refused(why);
        }
        Cleanup::KeepDir => {}
        Cleanup::RemoveDir(dir) => match std::fs::remove_dir_all(&dir) {
            Ok(()) => tracing::info!("local-path cleanup: removed {}", dir.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!("local-path cleanup: removing {}: {e}", dir.display());
                return Outcome::Retry;
            }
        },
    }
    let Some(patch) = finalizer_patch(pv) else {
        return Outcome::Done;
    };
    // A JSON patch, sent as such (kube's typed JSON patch needs a feature skiff does not build).
    let req = http::Request::patch(format!("/api/v1/persistentvolumes/{name}"))
        .header("content-type", "application/json-patch+json")
        .body(serde_json::to_vec(&patch).unwrap_or_default());
    let Ok(req) = req else {
        return Outcome::Retry;
    };
    match client.request::<serde_json::Value>(req).await {
        Ok(_) => Outcome::Done,
        Err(kube::Error::Api(s)) if s.code == 404 => Outcome::Done,
        Err(e) => {
            tracing::warn!("local-path cleanup: removing the finalizer of {name}: {e}");
            Outcome::Retry
        }
    }
}

/// Records a Warning `VolumeFailedDelete` event on the volume, as the PV
/// controller does when a volume cannot be deleted.
async fn warn(client: &kube::Client, pv: &PersistentVolume, node: &str, message: &str) {
    let name = pv.metadata.name.clone().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let now = now.round(jiff::Unit::Second).unwrap_or(now).to_string();
    let ev = json!({
        "metadata": {"name": format!("{name}.{:x}", jiff::Timestamp::now().as_nanosecond()), "namespace": "default"},
        "involvedObject": {"kind": "PersistentVolume", "apiVersion": "v1", "name": name, "uid": pv.metadata.uid},
        "reason": "VolumeFailedDelete", "message": message, "type": "Warning",
        "source": {"component": "kubelet", "host": node}, "reportingComponent": "kubelet", "reportingInstance": node,
        "count": 1, "firstTimestamp": now, "lastTimestamp": now,
    });
    let Ok(ev) = serde_json::from_value::<k8s_openapi::api::core::v1::Event>(ev) else {
        return;
    };
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    let _ = events.create(&Default::default(), &ev).await;
}

/// How often volumes whose cleanup failed are tried again.
const RETRY: Duration = Duration::from_secs(5);

/// Watches PersistentVolumes and cleans up those of this node that are
/// being deleted, until `shutdown` turns true.
pub async fn run(client: kube::Client, node: String, mut shutdown: watch::Receiver<bool>) {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut retry: BTreeMap<String, PersistentVolume> = BTreeMap::new();
    // Volumes refused once, so the warning is not repeated on every update.
    let mut refused: std::collections::BTreeSet<String> = Default::default();
    let mut tick = tokio::time::interval(RETRY);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            ev = stream.next() => match ev {
                Some(Ok(watcher::Event::Apply(pv) | watcher::Event::InitApply(pv))) => {
                    let name = pv.metadata.name.clone().unwrap_or_default();
                    retry.remove(&name);
                    match clean_up(&client, &pv, &node).await {
                        Outcome::Done => {}
                        Outcome::Retry => {
                            retry.insert(name, pv);
                        }
                        Outcome::Refused(why) => {
                            if refused.insert(name) {
                                warn(&client, &pv, &node, &why).await;
                            }
                        }
                    }
                }
                Some(Ok(watcher::Event::Delete(pv))) => {
                    retry.remove(pv.metadata.name.as_deref().unwrap_or(""));
                    refused.remove(pv.metadata.name.as_deref().unwrap_or(""));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!("local-path cleanup: PersistentVolume watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => return,
            },
            _ = tick.tick() => {
                for (name, pv) in std::mem::take(&mut retry) {
                    // The latest version: the finalizer list may have moved.
                    let pv = match api.get_opt(&name).await {
                        Ok(Some(latest)) => latest,
                        Ok(None) => continue,
                        Err(_) => pv,
                    };
                    if clean_up(&client, &pv, &node).await == Outcome::Retry {
                        retry.insert(name, pv);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const UID: &str = "0b6e3c7e-1111-4222-8333-944455556666";

    fn pv(patch: Value) -> PersistentVolume {
        let mut v = json!({
            "metadata": {"name": format!("pvc-{UID}"), "finalizers": [CLEANUP_FINALIZER],
                         "deletionTimestamp": "2026-11-28T10:00:00Z"},
            "spec": {"persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local-path",
                     "hostPath": {"path": format!("/var/lib/skiff/storage/pvc-{UID}_default_data-db-0"), "type": "DirectoryOrCreate"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": HOSTNAME_LABEL, "operator": "In", "values": ["n1"]}]}]}}}
        });
        json_merge(&mut v, patch);
        serde_json::from_value(v).unwrap()
    }

    fn json_merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    if v.is_null() {
                        a.remove(&k);
                    } else {
                        json_merge(a.entry(k).or_insert(Value::Null), v);
                    }
                }
            }
            (a, b) => *a = b,
        }
    }

    #[test]
    fn only_this_nodes_deleted_volumes_with_the_finalizer_are_cleaned_up() {
        let dir = PathBuf::from(format!(
            "/var/lib/skiff/storage/pvc-{UID}_default_data-db-0"
        ));
        let cases: Vec<(&str, Value, &str, Cleanup)> = vec![
            (
                "deleted, Delete policy, on this node",
                json!({}),
                "n1",
                Cleanup::RemoveDir(dir.clone()),
            ),
            ("another node's volume", json!({}), "n2", Cleanup::Nothing),
            (
                "a claim still bound (pv-protection on)",
                json!({"metadata": {"finalizers": ["kubernetes.io/pv-protection", CLEANUP_FINALIZER]}}),
                "n1",
                Cleanup::Nothing,
            ),
            (
                "not being deleted",
                json!({"metadata": {"deletionTimestamp": null}}),
                "n1",
                Cleanup::Nothing,
            ),
            (
                "finalizer already gone",
                json!({"metadata": {"finalizers": ["kubernetes.io/pv-protection"]}}),
                "n1",
                Cleanup::Nothing,
            ),
            (
                "Retain keeps the data",
                json!({"spec": {"persistentVolumeReclaimPolicy": "Retain"}}),
                "n1",
                Cleanup::KeepDir,
            ),
            (
                "a local volume",
                json!({"spec": {"hostPath": null, "local": {"path": format!("/mnt/disks/pvc-{UID}_ns_c")}}}),
                "n1",
                Cleanup::RemoveDir(PathBuf::from(format!("/mnt/disks/pvc-{UID}_ns_c"))),
            ),
            (
                "no path at all",
                json!({"spec": {"hostPath": null}}),
                "n1",
                Cleanup::Refuse(format!(
                    "refusing to clean up PersistentVolume \"pvc-{UID}\": it has neither hostPath nor local path"
                )),
            ),
            (
                "a path not made for this volume",
                json!({"spec": {"hostPath": {"path": "/var/lib/skiff"}}}),
                "n1",
                Cleanup::Refuse(format!(
                    "refusing to remove \"/var/lib/skiff\" for PersistentVolume \"pvc-{UID}\": the directory is not named pvc-{UID}_<namespace>_<claim>"
                )),
            ),
        ];
        for (name, patch, node, want) in cases {
            assert_eq!(plan(&pv(patch), node), want, "{name}");
        }
    }

    #[test]
    fn directories_that_do_not_look_provisioned_are_refused() {
        let name = format!("pvc-{UID}");
        let ok = format!("/var/lib/skiff/storage/pvc-{UID}_default_data");
        assert_eq!(provisioned_dir(&name, &ok), Ok(PathBuf::from(&ok)));
        let refused = [
            ("/", &name),
            ("/etc", &name),
            (&format!("/pvc-{UID}_default_data") as &str, &name),
            (&format!("storage/pvc-{UID}_default_data"), &name),
            (&format!("/var/lib/skiff/../pvc-{UID}_default_data"), &name),
            (
                &format!("/var/lib/skiff/storage/pvc-{UID}_default_data/.."),
                &name,
            ),
            (&format!("/var/lib/skiff/storage/pvc-{UID}_"), &name),
            (&format!("/var/lib/skiff/storage/pvc-{UID}"), &name),
            ("/var/lib/skiff/storage/pvc-other_default_data", &name),
            (&ok, &"my-volume".to_string()),
            (&ok, &"pvc-".to_string()),
        ];
        for (path, pv_name) in refused {
            let e = provisioned_dir(pv_name, path).unwrap_err();
            assert!(e.starts_with("refusing to remove"), "{path}: {e}");
        }
    }

    #[test]
    fn the_finalizer_patch_tests_its_position() {
        assert_eq!(
            finalizer_patch(&pv(json!({}))).unwrap(),
            json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": CLEANUP_FINALIZER},
                {"op": "remove", "path": "/metadata/finalizers/0"},
            ])
        );
        assert!(finalizer_patch(&pv(json!({"metadata": {"finalizers": []}}))).is_none());
    }
}
