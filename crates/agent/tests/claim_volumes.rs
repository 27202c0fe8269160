//! A pod with a persistentVolumeClaim volume on a real agent loop against an
//! in-process API server, with the fake runtime (no runc): while the claim is
//! missing the pod waits in ContainerCreating with the volume manager's
//! FailedMount words; once the claim is bound to a hostPath volume, the
//! container is created with the volume's directory bind-mounted, read-only
//! where the pod asks.

use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use skiff_agent::image::ImageStore;
use skiff_agent::kubelet::AgentConfig;
use skiff_agent::runtime::fake::FakeRuntime;
use std::sync::Arc;
use std::time::Duration;

mod support;
use support::api_server;

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A one-file image stored as if pulled.
fn image(store: &ImageStore, reference: &str) {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_size(2);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    b.append_data(&mut h, "app", &b"#!"[..]).unwrap();
    let layer = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &layer).unwrap();
    let layer_gz = gz.finish().unwrap();
    let cfg = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/app"]}, "rootfs": {"type": "layers", "diff_ids": [sha(&layer)]}}))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": sha(&cfg), "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": sha(&layer_gz), "size": layer_gz.len()}],
    }))
    .unwrap();
    store
        .add_manifest(reference, &manifest, &cfg, vec![(sha(&layer_gz), layer_gz)])
        .unwrap();
}

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_volume_waits_for_its_claim_then_mounts_the_volume_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = api_server(&dir.path().join("api")).await;
    let data_dir = dir.path().join("agent");
    let images = ImageStore::open(&data_dir.join("images")).unwrap();
    image(&images, "skiff.test/app:1");
    let runtime = Arc::new(FakeRuntime::new());
    let config = AgentConfig {
        node_name: "n1".into(),
        data_dir: data_dir.clone(),
        address: "127.0.0.1".into(),
        roles: vec![],
        crashloop_backoff_max: Duration::from_secs(300),
        self_assign: false,
        runtime_status: Ok("fake".into()),
        kubelet_port: 0,
        network: None,
    };
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(skiff_agent::kubelet::run(
        client.clone(),
        runtime.clone(),
        images,
        config,
        shutdown,
    ));

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &obj(json!({
        "metadata": {"name": "db-0"},
        "spec": {"nodeName": "n1", "containers": [{"name": "db", "image": "skiff.test/app:1", "imagePullPolicy": "IfNotPresent",
            "volumeMounts": [{"name": "data", "mountPath": "/data"},
                             {"name": "data", "mountPath": "/wal", "subPath": "wal"},
                             {"name": "seed", "mountPath": "/seed"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}},
                        {"name": "seed", "persistentVolumeClaim": {"claimName": "data-db-0", "readOnly": true}}]}
    }))).await.unwrap();

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let want = "Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[], \
                failed to process volumes=[data]: error processing PVC default/data-db-0: \
                failed to fetch PVC from API server: persistentvolumeclaims \"data-db-0\" not found";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = events.list(&ListParams::default()).await.unwrap();
        if list.items.iter().any(|e| {
            e.reason.as_deref() == Some("FailedMount") && e.message.as_deref() == Some(want)
        }) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no FailedMount event: {:?}",
            list.items
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The status is written after the event: wait for it, so the check below
    // cannot pass on a pod without container statuses.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let waiting = loop {
        let pod = pods.get("db-0").await.unwrap();
        let statuses = pod
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default();
        if !statuses.is_empty() {
            break statuses;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no container statuses"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        waiting.iter().all(|c| c
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .is_some_and(|w| w.reason.as_deref() == Some("ContainerCreating"))),
        "{waiting:?}"
    );
    assert!(
        runtime.mounts("db").is_none(),
        "no container before the claim is bound"
    );

    // The provisioner and the PV controller: a hostPath volume, the claim bound to it.
    let host = dir
        .path()
        .join("storage")
        .join("pvc-1234_default_data-db-0");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    pvs.create(&PostParams::default(), &obj(json!({
        "metadata": {"name": "pvc-1234"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                 "hostPath": {"path": host, "type": "DirectoryOrCreate"}}
    }))).await.unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    claims
        .create(
            &PostParams::default(),
            &obj(json!({
                "metadata": {"name": "data-db-0"},
                "spec": {"storageClassName": "local-path", "accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}, "volumeName": "pvc-1234"}
            })),
        )
        .await
        .unwrap();
    claims
        .patch_status(
            "data-db-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Bound"}})),
        )
        .await
        .unwrap();

    // The worker retries the start (every 10 s) and the container gets the volume.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mounts = loop {
        if let Some(m) = runtime.mounts("db") {
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the container was never created"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let of = |dest: &str| {
        let m = mounts
            .iter()
            .find(|m| m.destination == dest)
            .unwrap_or_else(|| panic!("{dest}: {mounts:?}"));
        (m.source.clone(), m.options.contains(&"ro".to_string()))
    };
    let host_s = host.to_string_lossy().to_string();
    assert_eq!(of("/data"), (host_s.clone(), false));
    assert_eq!(
        of("/wal"),
        (host.join("wal").to_string_lossy().to_string(), false)
    );
    assert_eq!(of("/seed"), (host_s, true));
    assert!(
        host.join("wal").is_dir(),
        "the directory and the subPath are made"
    );
}
