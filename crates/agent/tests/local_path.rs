//! The local-path cleanup against a real in-process API server, without
//! runc: deleting a provisioned volume of this node removes its directory and
//! then the volume; a Retain volume keeps its data; a volume whose path does
//! not look provisioned keeps both its directory and its finalizer; another
//! node's volume is left alone.

use k8s_openapi::api::core::v1::{Event, PersistentVolume};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use skiff_agent::local_path::CLEANUP_FINALIZER;
use std::path::Path;
use std::time::Duration;

mod support;
use support::api_server;

async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn volume(name: &str, path: &Path, node: &str, policy: &str) -> PersistentVolume {
    serde_json::from_value(json!({
        "metadata": {"name": name, "finalizers": [CLEANUP_FINALIZER]},
        "spec": {"storageClassName": "local-path", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": policy,
                 "hostPath": {"path": path, "type": "DirectoryOrCreate"},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_local_path_volumes_of_this_node_lose_their_directories() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = api_server(&dir.path().join("api")).await;
    let storage = dir.path().join("storage");
    let made = |name: &str| {
        let p = storage.join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("data"), "kept?").unwrap();
        p
    };
    let deleted = made("pvc-1111_default_data-db-0");
    let retained = made("pvc-2222_default_data-db-1");
    let precious = made("precious");
    let elsewhere = made("pvc-4444_default_data-db-3");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pp = PostParams::default();
    pvs.create(&pp, &volume("pvc-1111", &deleted, "n1", "Delete"))
        .await
        .unwrap();
    pvs.create(&pp, &volume("pvc-2222", &retained, "n1", "Retain"))
        .await
        .unwrap();
    pvs.create(&pp, &volume("pvc-3333", &precious, "n1", "Delete"))
        .await
        .unwrap();
    pvs.create(&pp, &volume("pvc-4444", &elsewhere, "n2", "Delete"))
        .await
        .unwrap();

    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(skiff_agent::local_path::run(
        client.clone(),
        "n1".into(),
        shutdown,
    ));
    for name in ["pvc-1111", "pvc-2222", "pvc-3333", "pvc-4444"] {
        pvs.delete(name, &DeleteParams::default()).await.unwrap();
    }
    // New volumes carry pv-protection (admission): while it is on, a claim may
    // still be bound and the data stays.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(deleted.exists(), "a protected volume keeps its directory");
    // The pv-protection controller lets go once no claim is bound.
    for name in ["pvc-1111", "pvc-2222", "pvc-3333", "pvc-4444"] {
        let pv = pvs.get(name).await.unwrap();
        let keep: Vec<String> = pv
            .metadata
            .finalizers
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f != "kubernetes.io/pv-protection")
            .collect();
        pvs.patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"metadata": {"finalizers": keep}})),
        )
        .await
        .unwrap();
    }
    eventually("pvc-1111 gone", async || {
        pvs.get_opt("pvc-1111").await.unwrap().is_none()
    })
    .await;
    assert!(
        !deleted.exists(),
        "the Delete volume's directory is removed"
    );
    eventually("pvc-2222 gone", async || {
        pvs.get_opt("pvc-2222").await.unwrap().is_none()
    })
    .await;
    assert!(
        retained.join("data").exists(),
        "a Retain volume keeps its data"
    );

    // Refused and foreign volumes stay, with their finalizer and their data.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (name, path) in [("pvc-3333", &precious), ("pvc-4444", &elsewhere)] {
        let pv = pvs.get(name).await.unwrap();
        assert!(pv.metadata.deletion_timestamp.is_some(), "{name}");
        assert_eq!(
            pv.metadata.finalizers.as_deref(),
            Some(&[CLEANUP_FINALIZER.to_string()][..]),
            "{name}"
        );
        assert!(path.join("data").exists(), "{name}'s data is untouched");
    }
    // The refusal is loud: a Warning event on the volume says why.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let warned: Vec<(String, String, String)> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| {
            (
                e.involved_object.name.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        warned,
        vec![(
            "pvc-3333".to_string(),
            "VolumeFailedDelete".to_string(),
            format!(
                "refusing to remove {:?} for PersistentVolume \"pvc-3333\": \
                 the directory is not named pvc-3333_<namespace>_<claim>",
                precious.display().to_string()
            )
        )]
    );
}
