//! Storage with the real kubectl against an in-process API server running the
//! storage controllers: the default `local-path` class, WaitForFirstConsumer
//! provisioning once a node is selected, Delete and Retain reclaim, and the
//! protection finalizers. No agent runs: the test plays its part (removing
//! the `skiff.io/local-path-cleanup` finalizer).

mod support;
use support::{Cluster, no_kubectl};

async fn cluster(node_path: &std::path::Path) -> Cluster {
    let config = skiff_controllers::Config {
        storage_node_path: node_path.to_path_buf(),
        ..Default::default()
    };
    Cluster::start("pvc,pv", move |client, shutdown| {
        tokio::spawn(skiff_controllers::storage::run(
            client.clone(),
            config,
            shutdown.clone(),
        ));
    })
    .await
}

/// `kubectl get <what> -o jsonpath=<jsonpath>`, which must succeed (so a
/// missing object fails the test rather than yielding kubectl's error text).
fn get(c: &Cluster, what: &[&str], jsonpath: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let jp = format!("jsonpath={jsonpath}");
    args.extend_from_slice(&["-o", &jp]);
    c.ok(&args)
}

/// `object reason: message` of every Event.
fn events(c: &Cluster) -> String {
    get(
        c,
        &["events"],
        r#"{range .items[*]}{.involvedObject.name} {.reason}: {.message}{"\n"}{end}"#,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_of_the_default_class_waits_for_its_node_then_is_provisioned_there() {
    if no_kubectl() {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let base = store.path().to_str().unwrap().to_string();
    let c = cluster(store.path()).await;
    tokio::task::spawn_blocking(move || {
        c.wait("the default class", || {
            c.kubectl(&["get", "storageclass"]).1.contains("local-path (default)")
        });
        let sc = c.ok(&["get", "storageclass", "local-path"]);
        assert!(
            sc.contains("skiff.io/local-path")
                && sc.contains("Delete")
                && sc.contains("WaitForFirstConsumer")
                && sc.contains("false"),
            "{sc}"
        );
        c.apply(
            "n1",
            r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1","labels":{"kubernetes.io/hostname":"n1"}}}"#,
        );
        c.apply(
            "data",
            r#"{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"data"},
               "spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}"#,
        );
        // Admission: the default class and the protection finalizer.
        assert_eq!(
            get(&c, &["pvc", "data"], "{.spec.storageClassName} {.metadata.finalizers}"),
            r#"local-path ["kubernetes.io/pvc-protection"]"#
        );
        c.wait("WaitForFirstConsumer", || {
            events(&c).contains(
                "data WaitForFirstConsumer: waiting for first consumer to be created before binding",
            )
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(get(&c, &["pvc", "data"], "{.status.phase}"), "Pending");
        assert_eq!(get(&c, &["pv"], "{.items[*].metadata.name}"), "");

        // The scheduler's part: the node of the first consumer.
        let t0 = std::time::Instant::now();
        c.ok(&[
            "annotate",
            "pvc",
            "data",
            "volume.kubernetes.io/selected-node=n1",
        ]);
        c.wait("bound", || {
            get(&c, &["pvc", "data"], "{.status.phase}") == "Bound"
        });
        // (Polled through kubectl every 100 ms, so an upper bound.)
        eprintln!("provisioned and bound in {:?}", t0.elapsed());
        let uid = get(&c, &["pvc", "data"], "{.metadata.uid}");
        let pv = format!("pvc-{uid}");
        assert_eq!(get(&c, &["pvc", "data"], "{.spec.volumeName}"), pv);
        assert_eq!(
            get(&c, &["pvc", "data"], "{.status.capacity.storage} {.status.accessModes}"),
            r#"1Gi ["ReadWriteOnce"]"#
        );
        c.wait("volume Bound", || {
            get(&c, &["pv", &pv], "{.status.phase}") == "Bound"
        });
        assert_eq!(
            get(&c, &["pv", &pv], "{.spec.hostPath.path} {.spec.hostPath.type}"),
            format!("{base}/{pv}_default_data DirectoryOrCreate")
        );
        assert_eq!(
            get(
                &c,
                &["pv", &pv],
                "{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]} {.spec.claimRef.uid} {.metadata.annotations.pv\\.kubernetes\\.io/provisioned-by}"
            ),
            format!("n1 {uid} skiff.io/local-path")
        );
        assert_eq!(
            get(&c, &["pv", &pv], "{.metadata.finalizers}"),
            r#"["skiff.io/local-path-cleanup","kubernetes.io/pv-protection"]"#
        );
        let table = c.ok(&["get", "pv"]);
        assert!(
            table.contains("RWO") && table.contains("Delete") && table.contains("default/data"),
            "{table}"
        );
        let ev = events(&c);
        for want in [
            "data ExternalProvisioning: Waiting for a volume to be created either by the external provisioner 'skiff.io/local-path'",
            "data Provisioning: External provisioner is provisioning volume for claim \"default/data\"",
            &format!("data ProvisioningSucceeded: Successfully provisioned volume {pv}"),
        ] {
            assert!(ev.contains(want), "{want} in\n{ev}");
        }

        // Deleting the claim deletes the volume, which waits for the agent.
        c.ok(&["delete", "pvc", "data", "--wait=false"]);
        c.wait("claim gone", || {
            !c.kubectl(&["get", "pvc", "data"]).0
        });
        c.wait("volume deleting, held by the cleanup finalizer only", || {
            get(&c, &["pv", &pv], "{.metadata.finalizers}") == r#"["skiff.io/local-path-cleanup"]"#
        });
        assert!(!get(&c, &["pv", &pv], "{.metadata.deletionTimestamp}").is_empty());
        assert_eq!(get(&c, &["pv", &pv], "{.status.phase}"), "Released");
        // The agent's part: the directory is removed, then the finalizer.
        c.ok(&[
            "patch",
            "pv",
            &pv,
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ]);
        c.wait("volume gone", || !c.kubectl(&["get", "pv", &pv]).0);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_volume_binds_is_protected_while_used_and_is_released() {
    if no_kubectl() {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let c = cluster(store.path()).await;
    tokio::task::spawn_blocking(move || {
        c.apply(
            "small",
            r#"{"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":"small"},
               "spec":{"capacity":{"storage":"1Gi"},"accessModes":["ReadWriteOnce"],
               "hostPath":{"path":"/tmp/small"}}}"#,
        );
        c.apply(
            "big",
            r#"{"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":"big"},
               "spec":{"capacity":{"storage":"5Gi"},"accessModes":["ReadWriteOnce"],
               "hostPath":{"path":"/tmp/big"}}}"#,
        );
        c.wait("volumes Available", || {
            get(&c, &["pv"], "{.items[*].status.phase}") == "Available Available"
        });
        assert_eq!(
            get(&c, &["pv", "big"], "{.spec.persistentVolumeReclaimPolicy} {.metadata.finalizers}"),
            r#"Retain ["kubernetes.io/pv-protection"]"#
        );
        c.apply(
            "claim",
            r#"{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"c"},
               "spec":{"storageClassName":"","accessModes":["ReadWriteOnce"],
               "resources":{"requests":{"storage":"2Gi"}}}}"#,
        );
        c.wait("bound to the smallest fit", || {
            get(&c, &["pvc", "c"], "{.status.phase} {.spec.volumeName}") == "Bound big"
        });
        assert_eq!(get(&c, &["pvc", "c"], "{.spec.storageClassName}"), "");
        c.wait("volume Bound", || {
            get(&c, &["pv", "big"], "{.status.phase} {.spec.claimRef.name}") == "Bound c"
        });
        assert_eq!(
            get(
                &c,
                &["pv", "big"],
                "{.metadata.annotations.pv\\.kubernetes\\.io/bound-by-controller}"
            ),
            "yes"
        );
        assert_eq!(get(&c, &["pv", "small"], "{.status.phase}"), "Available");

        // A scheduled pod that names the claim holds it while it exists.
        c.apply(
            "pod",
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"user"},
               "spec":{"nodeName":"n1","containers":[{"name":"c","image":"busybox"}],
               "volumes":[{"name":"d","persistentVolumeClaim":{"claimName":"c"}}]}}"#,
        );
        c.ok(&["delete", "pvc", "c", "--wait=false"]);
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(
            c.ok(&["get", "pvc", "c"]).contains("Terminating"),
            "the claim stays while its pod exists"
        );
        assert_eq!(get(&c, &["pv", "big"], "{.status.phase}"), "Bound");
        c.ok(&["delete", "pod", "user", "--grace-period=0", "--force"]);
        c.wait("claim gone", || !c.kubectl(&["get", "pvc", "c"]).0);
        c.wait("Released", || {
            get(&c, &["pv", "big"], "{.status.phase}") == "Released"
        });
        let table = c.ok(&["get", "pv", "big"]);
        assert!(table.contains("Released") && table.contains("default/c") && table.contains("Retain"), "{table}");
        // Retain: the volume stays, not offered to a new claim of the same name.
        c.apply(
            "claim2",
            r#"{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"c"},
               "spec":{"storageClassName":"","accessModes":["ReadWriteOnce"],
               "resources":{"requests":{"storage":"2Gi"}}}}"#,
        );
        c.wait("the new claim says why it waits", || {
            events(&c).contains("c FailedBinding: no persistent volumes available for this claim and no storage class is set")
        });
        assert_eq!(get(&c, &["pvc", "c"], "{.status.phase}"), "Pending");
        assert_eq!(get(&c, &["pv", "big"], "{.status.phase}"), "Released");
    })
    .await
    .unwrap();
}
