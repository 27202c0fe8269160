//! StatefulSets with the real kubectl against an in-process API server
//! running the StatefulSet controller and the garbage collector. A stand-in
//! kubelet marks each new pod Running and Ready after a short delay and keeps
//! a log of what it saw, so the tests can check the order of things.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;
use support::{Cluster, no_kubectl};

type Log = Arc<Mutex<Vec<String>>>;

async fn cluster(log: Log) -> Cluster {
    Cluster::start("sts,pods,pvc,controllerrevisions", |client, shutdown| {
        tokio::spawn(skiff_controllers::statefulset::run(
            client.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(skiff_controllers::gc::run(client.clone(), shutdown.clone()));
        // Claims carry pvc-protection (admission); its controller lets deleted ones go.
        tokio::spawn(skiff_controllers::storage::run(
            client.clone(),
            skiff_controllers::Config::default(),
            shutdown.clone(),
        ));
        tokio::spawn(kubelet(client.clone(), log));
    })
    .await
}

/// The stand-in kubelet: each new pod becomes Running and Ready 150 ms after
/// it appears (Running and never Ready when its image says "broken"). Logs "+db-0 <image>" when a pod appears, "ready db-0" when it
/// is marked Ready and "-db-0" when it is gone.
async fn kubelet(client: kube::Client, log: Log) {
    let mut s = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).boxed();
    let mut seen: HashSet<String> = HashSet::new();
    while let Some(ev) = s.next().await {
        match ev {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                let name = p.metadata.name.clone().unwrap_or_default();
                if p.metadata.deletion_timestamp.is_some() || !seen.insert(uid) {
                    continue;
                }
                let image = p.spec.as_ref().unwrap().containers[0]
                    .image
                    .clone()
                    .unwrap_or_default();
                log.lock().unwrap().push(format!("+{name} {image}"));
                let api: Api<Pod> = Api::namespaced(client.clone(), "default");
                let log = log.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    let now = jiff::Timestamp::now()
                        .round(jiff::Unit::Second)
                        .unwrap()
                        .to_string();
                    // Images named "broken" run but never become Ready.
                    let ready = if image.contains("broken") {
                        "False"
                    } else {
                        "True"
                    };
                    let status = json!({"status": {"phase": "Running", "startTime": now,
                        "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": now}]}});
                    // Logged before the pod is Ready, so nothing that waits for it can come first.
                    if ready == "True" {
                        log.lock().unwrap().push(format!("ready {name}"));
                    }
                    let _ = api
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                        .await;
                });
            }
            Ok(watcher::Event::Delete(p)) => {
                let name = p.metadata.name.clone().unwrap_or_default();
                log.lock().unwrap().push(format!("-{name}"));
            }
            _ => {}
        }
    }
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

/// The log lines that start with `prefix`, in order.
fn only(lines: &[String], prefix: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.starts_with(prefix))
        .cloned()
        .collect()
}

/// `name image` of each pod of the set, sorted.
fn pods(c: &Cluster) -> Vec<String> {
    let out = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=db",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.containers[0].image}{\"\\n\"}{end}",
    ]);
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_comes_up_in_order_scales_rolls_and_undoes_with_kubectl() {
    if no_kubectl() {
        return;
    }
    let log: Log = Arc::default();
    let c = cluster(log.clone()).await;
    tokio::task::spawn_blocking(move || {
        let sts = r#"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"db"},
            "spec":{"serviceName":"db","replicas":3,"selector":{"matchLabels":{"app":"db"}},
            "template":{"metadata":{"labels":{"app":"db"}},
              "spec":{"containers":[{"name":"db","image":"busybox:a"}]}},
            "volumeClaimTemplates":[{"metadata":{"name":"data"},
              "spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}]}}"#;
        c.apply("sts", sts);
        let out = c.ok(&["rollout", "status", "sts/db", "--timeout=30s"]);
        // kubectl's wording whenever rollingUpdate is set (the default puts partition 0 there).
        assert!(
            out.ends_with("partitioned roll out complete: 3 new pods have been updated...\n"),
            "{out}"
        );
        // In order: each pod appears only after the one before it is Ready.
        let lines = take(&log);
        assert_eq!(
            lines,
            [
                "+db-0 busybox:a",
                "ready db-0",
                "+db-1 busybox:a",
                "ready db-1",
                "+db-2 busybox:a",
                "ready db-2"
            ],
            "{lines:?}"
        );
        // One claim per ordinal, the pods' volumes on them; stable network identity.
        let claims = c.ok(&[
            "get",
            "pvc",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        assert_eq!(claims, "data-db-0 data-db-1 data-db-2");
        let vol = c.ok(&[
            "get",
            "pod",
            "db-1",
            "-o",
            "jsonpath={.spec.volumes[0].persistentVolumeClaim.claimName} {.spec.hostname} {.spec.subdomain} {.metadata.labels.apps\\.kubernetes\\.io/pod-index}",
        ]);
        assert_eq!(vol, "data-db-1 db-1 db 1");
        let events = c.ok(&["get", "events", "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}"]);
        assert!(
            events.contains("SuccessfulCreate: create Pod db-0 in StatefulSet db successful"),
            "{events}"
        );
        assert!(
            events.contains("SuccessfulCreate: create Claim data-db-0 Pod db-0 in StatefulSet db success"),
            "{events}"
        );

        // Scale up to 5, then down to 3: db-4 goes before db-3, their claims stay.
        c.ok(&["scale", "sts", "db", "--replicas=5"]);
        c.wait("5 ready", || {
            c.ok(&["get", "sts", "db", "-o", "jsonpath={.status.readyReplicas}"]) == "5"
        });
        take(&log);
        c.ok(&["scale", "sts", "db", "--replicas=3"]);
        c.wait("3 pods", || pods(&c).len() == 3);
        let lines = take(&log);
        assert_eq!(only(&lines, "-"), ["-db-4", "-db-3"], "{lines:?}");
        let claims = c.ok(&["get", "pvc", "-o", "jsonpath={.items[*].metadata.name}"]);
        assert_eq!(claims, "data-db-0 data-db-1 data-db-2 data-db-3 data-db-4", "Retain");
        let events = c.ok(&["get", "events", "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}"]);
        assert!(
            events.contains("SuccessfulDelete: delete Pod db-4 in StatefulSet db successful"),
            "{events}"
        );
        c.wait("status settles at 3", || {
            c.ok(&["get", "sts", "db", "-o", "jsonpath={.status.replicas}/{.status.readyReplicas}"]) == "3/3"
        });

        let row: Vec<String> = c
            .ok(&["get", "sts", "db", "--no-headers"])
            .split_whitespace()
            .map(str::to_string)
            .collect();
        assert_eq!(&row[..2], ["db", "3/3"], "NAME READY: {row:?}");

        // A template change rolls db-2, db-1, db-0.
        c.ok(&["set", "image", "sts/db", "db=busybox:b"]);
        let out = c.ok(&["rollout", "status", "sts/db", "--timeout=30s"]);
        assert!(out.contains("partitioned roll out complete: 3 new pods have been updated..."), "{out}");
        c.wait("all b", || pods(&c) == ["db-0 busybox:b", "db-1 busybox:b", "db-2 busybox:b"]);
        let lines = take(&log);
        assert_eq!(only(&lines, "-"), ["-db-2", "-db-1", "-db-0"], "{lines:?}");
        assert_eq!(only(&lines, "+"), ["+db-2 busybox:b", "+db-1 busybox:b", "+db-0 busybox:b"]);
        let history = c.ok(&["rollout", "history", "sts/db"]);
        let rows: Vec<&str> = history
            .lines()
            .filter(|l| l.starts_with(|ch: char| ch.is_ascii_digit()))
            .collect();
        assert_eq!(rows.len(), 2, "{history}");
        assert!(history.starts_with("statefulset.apps/db"), "{history}");
        let rev2 = c.ok(&["rollout", "history", "sts/db", "--revision=2"]);
        assert!(rev2.contains("busybox:b"), "{rev2}");
        let status = c.ok(&["get", "sts", "db", "-o",
            "jsonpath={.status.currentRevision} {.status.updateRevision} {.status.currentReplicas} {.status.updatedReplicas} {.status.observedGeneration}"]);
        let f: Vec<&str> = status.split(' ').collect();
        assert_eq!(f[0], f[1], "{status}");
        assert_eq!(&f[2..4], ["3", "3"], "{status}");
        let hashes = c.ok(&["get", "pods", "-l", "app=db", "-o",
            "jsonpath={.items[*].metadata.labels.controller-revision-hash}"]);
        assert!(hashes.split(' ').all(|h| h == f[0]), "{hashes} vs {status}");

        // Undo goes back to busybox:a (kubectl reads the ControllerRevisions).
        c.ok(&["rollout", "undo", "sts/db"]);
        c.ok(&["rollout", "status", "sts/db", "--timeout=30s"]);
        c.wait("all a", || pods(&c) == ["db-0 busybox:a", "db-1 busybox:a", "db-2 busybox:a"]);
        let history = c.ok(&["rollout", "history", "sts/db"]);
        let revs: Vec<&str> = history
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.starts_with(|ch: char| ch.is_ascii_digit()))
            .collect();
        assert_eq!(revs, ["2", "3"], "the old revision is renumbered: {history}");

        // Orphaned and re-created, the set adopts its pods and revisions: no pod is replaced.
        take(&log);
        c.ok(&["delete", "sts", "db", "--cascade=orphan"]);
        c.wait("orphaned", || {
            c.ok(&["get", "pods", "-l", "app=db", "-o", "jsonpath={.items[*].metadata.ownerReferences}"]).is_empty()
        });
        c.apply("sts", sts);
        let uid = c.ok(&["get", "sts", "db", "-o", "jsonpath={.metadata.uid}"]);
        c.wait("adopted", || {
            c.ok(&["get", "pods", "-l", "app=db", "-o", "jsonpath={.items[*].metadata.ownerReferences[0].uid}"])
                == format!("{uid} {uid} {uid}")
        });
        c.ok(&["rollout", "status", "sts/db", "--timeout=30s"]);
        assert_eq!(pods(&c), ["db-0 busybox:a", "db-1 busybox:a", "db-2 busybox:a"]);
        let lines = take(&log);
        assert!(only(&lines, "-").is_empty() && only(&lines, "+").is_empty(), "{lines:?}");
        let history = c.ok(&["rollout", "history", "sts/db"]);
        assert_eq!(history.lines().filter(|l| l.starts_with(|ch: char| ch.is_ascii_digit())).count(), 2, "{history}");

        // Deleting the set takes its pods; the claims stay (whenDeleted: Retain).
        c.ok(&["delete", "sts", "db"]);
        c.wait("pods collected", || pods(&c).is_empty());
        let claims = c.ok(&["get", "pvc", "-o", "jsonpath={.items[*].metadata.name}"]);
        assert_eq!(claims.split(' ').count(), 5, "{claims}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_go_with_the_set_and_scaled_down_pods_under_delete_policies() {
    if no_kubectl() {
        return;
    }
    let log: Log = Arc::default();
    let c = cluster(log.clone()).await;
    tokio::task::spawn_blocking(move || {
        let sts = r#"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"db"},
            "spec":{"serviceName":"db","replicas":3,"podManagementPolicy":"Parallel",
            "persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Delete","whenScaled":"Delete"},
            "selector":{"matchLabels":{"app":"db"}},
            "template":{"metadata":{"labels":{"app":"db"}},
              "spec":{"containers":[{"name":"db","image":"busybox:a"}]}},
            "volumeClaimTemplates":[{"metadata":{"name":"data"},
              "spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}]}}"#;
        c.apply("sts", sts);
        c.ok(&["rollout", "status", "sts/db", "--timeout=30s"]);
        let owners = c.ok(&["get", "pvc", "data-db-2", "-o", "jsonpath={.metadata.ownerReferences[*].kind}"]);
        assert_eq!(owners, "StatefulSet");
        c.ok(&["scale", "sts", "db", "--replicas=1"]);
        c.wait("claims of scaled-down pods go", || {
            c.ok(&["get", "pvc", "-o", "jsonpath={.items[*].metadata.name}"]) == "data-db-0"
        });
        // Scaling back up makes fresh claims once the old ones are gone.
        c.ok(&["scale", "sts", "db", "--replicas=2"]);
        c.ok(&["rollout", "status", "sts/db", "--timeout=30s"]);
        assert_eq!(
            c.ok(&["get", "pvc", "-o", "jsonpath={.items[*].metadata.name}"]),
            "data-db-0 data-db-1"
        );
        c.ok(&["delete", "sts", "db"]);
        c.wait("the last claim goes with the set", || {
            c.ok(&["get", "pvc", "-o", "jsonpath={.items[*].metadata.name}"]).is_empty()
        });
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_stuck_on_an_unready_pod_recovers_when_the_template_is_fixed() {
    if no_kubectl() {
        return;
    }
    let log: Log = Arc::default();
    let c = cluster(log.clone()).await;
    tokio::task::spawn_blocking(move || {
        let sts = r#"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"db"},
            "spec":{"serviceName":"db","replicas":3,"selector":{"matchLabels":{"app":"db"}},
            "template":{"metadata":{"labels":{"app":"db"}},
              "spec":{"containers":[{"name":"db","image":"busybox:a"}]}}}}"#;
        c.apply("sts", sts);
        c.ok(&["rollout", "status", "sts/db", "--timeout=30s"]);
        // A template that never becomes Ready: db-2 is replaced and the rollout stops there.
        c.ok(&["set", "image", "sts/db", "db=busybox:broken"]);
        c.wait("db-2 broken", || {
            pods(&c).contains(&"db-2 busybox:broken".to_string())
        });
        let (done, out) = c.kubectl(&["rollout", "status", "sts/db", "--timeout=2s"]);
        assert!(!done, "{out}");
        assert_eq!(
            pods(&c),
            ["db-0 busybox:a", "db-1 busybox:a", "db-2 busybox:broken"],
            "stopped at the first pod, as Kubernetes"
        );
        // The fix replaces the stuck pod without anyone deleting it (kubernetes#67250).
        take(&log);
        c.ok(&["set", "image", "sts/db", "db=busybox:c"]);
        c.ok(&["rollout", "status", "sts/db", "--timeout=30s"]);
        c.wait("all c", || {
            pods(&c) == ["db-0 busybox:c", "db-1 busybox:c", "db-2 busybox:c"]
        });
        let lines = take(&log);
        assert_eq!(only(&lines, "-"), ["-db-2", "-db-1", "-db-0"], "{lines:?}");
    })
    .await
    .unwrap();
}
