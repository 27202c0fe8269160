//! Deployments with the real kubectl: create, rollout status, set image,
//! history, undo, pause/resume, scale, restart and delete, against an
//! in-process API server running the Deployment and ReplicaSet controllers
//! and the garbage collector. There are no nodes: a stand-in kubelet marks
//! every pod Running and Ready as soon as it appears, so only the
//! controllers' logic is under test (the runc end-to-end tests live in
//! crates/skiff/tests).

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use std::time::Duration;

mod support;
use support::{Cluster, no_kubectl};

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
        tokio::spawn(ready_every_pod(client.clone()));
    })
    .await
}

/// The stand-in kubelet: every new pod is Running and Ready at once.
async fn ready_every_pod(client: kube::Client) {
    let mut s = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).boxed();
    while let Some(ev) = s.next().await {
        let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev else {
            continue;
        };
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            || p.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap()
            .to_string();
        let api: Api<Pod> =
            Api::namespaced(client.clone(), p.metadata.namespace.as_deref().unwrap());
        let status = json!({"status": {"phase": "Running", "startTime": now, "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}]}});
        let _ = api
            .patch_status(
                p.metadata.name.as_deref().unwrap(),
                &PatchParams::default(),
                &Patch::Merge(status),
            )
            .await;
    }
}

fn images(c: &Cluster) -> Vec<String> {
    let mut v: Vec<String> = c.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.deletionTimestamp}/{.spec.containers[0].image}{\"\\n\"}{end}"])
        .lines()
        .filter(|l| l.starts_with('/'))
        .map(|l| l.trim_start_matches('/').to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_sequence_with_real_kubectl() {
    if no_kubectl() {
        return;
    }
    let c = cluster().await;
    tokio::task::spawn_blocking(move || {
        c.ok(&[
            "create",
            "deployment",
            "web",
            "--image=busybox:a",
            "--replicas=3",
        ]);
        let out = c.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
        assert!(
            out.contains("deployment \"web\" successfully rolled out"),
            "{out}"
        );
        assert_eq!(images(&c), vec!["busybox:a"; 3]);
        let rs = c.ok(&["get", "rs", "-l", "app=web", "-o", "name"]);
        assert_eq!(rs.lines().count(), 1, "{rs}");
        assert!(
            rs.trim().starts_with("replicaset.apps/web-"),
            "pod-template-hash names: {rs}"
        );

        // set image: a rolling update to b.
        c.ok(&[
            "annotate",
            "deployment/web",
            "kubernetes.io/change-cause=to b",
        ]);
        c.ok(&["set", "image", "deployment/web", "busybox=busybox:b"]);
        let out = c.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        c.wait("only b pods", || images(&c) == vec!["busybox:b"; 3]);
        let history = c.ok(&["rollout", "history", "deployment/web"]);
        let rows: Vec<&str> = history
            .lines()
            .filter(|l| l.starts_with(|ch: char| ch.is_ascii_digit()))
            .collect();
        assert_eq!(rows.len(), 2, "{history}");
        assert!(
            rows[1].starts_with('2') && rows[1].contains("to b"),
            "{history}"
        );
        let rev2 = c.ok(&["rollout", "history", "deployment/web", "--revision=2"]);
        assert!(rev2.contains("busybox:b"), "{rev2}");

        // undo: back to a, as revision 3.
        c.ok(&["rollout", "undo", "deployment/web"]);
        c.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
        c.wait("only a pods again", || images(&c) == vec!["busybox:a"; 3]);
        let rev = c.ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        ]);
        assert_eq!(rev, "3");
        // undo --to-revision=2: b again.
        c.ok(&["rollout", "undo", "deployment/web", "--to-revision=2"]);
        c.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
        c.wait("b pods again", || images(&c) == vec!["busybox:b"; 3]);

        // pause: changes pile up without a rollout; resume rolls them out at once.
        c.ok(&["rollout", "pause", "deployment/web"]);
        c.ok(&["set", "image", "deployment/web", "busybox=busybox:c"]);
        c.ok(&["set", "resources", "deployment/web", "--limits=cpu=200m"]);
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(images(&c), vec!["busybox:b"; 3], "no rollout while paused");
        let rs_before = c
            .ok(&["get", "rs", "-l", "app=web", "-o", "name"])
            .lines()
            .count();
        c.ok(&["rollout", "resume", "deployment/web"]);
        c.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
        c.wait("c pods", || images(&c) == vec!["busybox:c"; 3]);
        let rs_after = c
            .ok(&["get", "rs", "-l", "app=web", "-o", "name"])
            .lines()
            .count();
        assert_eq!(rs_after, rs_before + 1, "one rollout for both changes");

        // scale.
        c.ok(&["scale", "deployment", "web", "--replicas=5"]);
        c.wait("5 pods", || images(&c).len() == 5);
        let ready = c.ok(&["get", "deployment", "web", "--no-headers"]);
        c.wait("5/5", || {
            c.ok(&["get", "deployment", "web", "--no-headers"])
                .split_whitespace()
                .nth(1)
                == Some("5/5")
        });
        let _ = ready;

        // restart: a new ReplicaSet with the same image.
        c.ok(&["rollout", "restart", "deployment/web"]);
        let out = c.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        assert_eq!(
            c.ok(&["get", "rs", "-l", "app=web", "-o", "name"])
                .lines()
                .count(),
            rs_after + 1
        );

        // delete: the ReplicaSets and pods go with it.
        c.ok(&["delete", "deployment", "web"]);
        c.wait("everything collected", || {
            c.ok(&["get", "rs,pods", "-l", "app=web", "-o", "name"])
                .trim()
                .is_empty()
        });

        // --cascade=orphan: the Deployment goes, its ReplicaSet and pods stay, unowned.
        c.ok(&[
            "create",
            "deployment",
            "keep",
            "--image=busybox:a",
            "--replicas=2",
        ]);
        c.ok(&["rollout", "status", "deployment/keep", "--timeout=30s"]);
        c.ok(&["delete", "deployment", "keep", "--cascade=orphan"]);
        c.wait("the orphaned ReplicaSet unowned", || {
            let owners = c.ok(&[
                "get",
                "rs",
                "-l",
                "app=keep",
                "-o",
                "jsonpath={.items[*].metadata.ownerReferences}",
            ]);
            !c.kubectl(&["get", "deployment", "keep"]).0 && owners.trim().is_empty()
        });
        let pods = c.ok(&["get", "pods", "-l", "app=keep", "-o", "name"]);
        assert_eq!(pods.lines().count(), 2, "orphaned pods stay: {pods}");
        // --cascade=foreground on the ReplicaSet: its pods go first, then it.
        c.ok(&["delete", "rs", "-l", "app=keep", "--cascade=foreground"]);
        c.wait("foreground deletion done", || {
            c.ok(&["get", "rs,pods", "-l", "app=keep", "-o", "name"])
                .trim()
                .is_empty()
        });
    })
    .await
    .unwrap();
}
