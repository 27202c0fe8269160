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
use std::process::Command;
use std::time::{Duration, Instant};

struct Cluster {
    kubeconfig: std::path::PathBuf,
    _stop: tokio::sync::watch::Sender<bool>,
    _running: skiff_apiserver::Running,
    _dir: tempfile::TempDir,
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let mut c = skiff_apiserver::Config::new(dir.path());
    c.port = 0;
    let running =
        skiff_apiserver::start_with_store(c, std::sync::Arc::new(skiff_store::MemoryStore::new()))
            .await
            .unwrap();
    let client = kube::Client::new(
        skiff_apiserver::inproc::InProcess(running.server.clone()),
        "default",
    );
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(skiff_controllers::replicaset::run(
        client.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(skiff_controllers::deployment::run(
        client.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(skiff_controllers::gc::run(client.clone(), shutdown));
    tokio::spawn(ready_every_pod(client));
    Cluster {
        kubeconfig: running.kubeconfig.clone(),
        _stop: stop,
        _running: running,
        _dir: dir,
    }
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

fn kubectl(c: &Cluster, args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", &c.kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ok(c: &Cluster, args: &[&str]) -> String {
    let (good, text) = kubectl(c, args);
    assert!(good, "kubectl {args:?}: {text}");
    text
}

fn wait(c: &Cluster, what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out: {what}\n{}",
            ok(c, &["get", "deploy,rs,pods", "-o", "wide"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn images(c: &Cluster) -> Vec<String> {
    let mut v: Vec<String> = ok(c, &["get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.deletionTimestamp}/{.spec.containers[0].image}{\"\\n\"}{end}"])
        .lines()
        .filter(|l| l.starts_with('/'))
        .map(|l| l.trim_start_matches('/').to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_sequence_with_real_kubectl() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        assert!(std::env::var_os("CI").is_none(), "kubectl missing in CI");
        eprintln!("\n*** SKIPPING rollout test: no kubectl ***\n");
        return;
    }
    let c = cluster().await;
    tokio::task::spawn_blocking(move || {
        ok(
            &c,
            &[
                "create",
                "deployment",
                "web",
                "--image=busybox:a",
                "--replicas=3",
            ],
        );
        let out = ok(
            &c,
            &["rollout", "status", "deployment/web", "--timeout=30s"],
        );
        assert!(
            out.contains("deployment \"web\" successfully rolled out"),
            "{out}"
        );
        assert_eq!(images(&c), vec!["busybox:a"; 3]);
        let rs = ok(&c, &["get", "rs", "-l", "app=web", "-o", "name"]);
        assert_eq!(rs.lines().count(), 1, "{rs}");
        assert!(
            rs.trim().starts_with("replicaset.apps/web-"),
            "pod-template-hash names: {rs}"
        );

        // set image: a rolling update to b.
        ok(
            &c,
            &[
                "annotate",
                "deployment/web",
                "kubernetes.io/change-cause=to b",
            ],
        );
        ok(&c, &["set", "image", "deployment/web", "busybox=busybox:b"]);
        let out = ok(
            &c,
            &["rollout", "status", "deployment/web", "--timeout=30s"],
        );
        assert!(out.contains("successfully rolled out"), "{out}");
        wait(&c, "only b pods", || images(&c) == vec!["busybox:b"; 3]);
        let history = ok(&c, &["rollout", "history", "deployment/web"]);
        let rows: Vec<&str> = history
            .lines()
            .filter(|l| l.starts_with(|ch: char| ch.is_ascii_digit()))
            .collect();
        assert_eq!(rows.len(), 2, "{history}");
        assert!(
            rows[1].starts_with('2') && rows[1].contains("to b"),
            "{history}"
        );
        let rev2 = ok(
            &c,
            &["rollout", "history", "deployment/web", "--revision=2"],
        );
        assert!(rev2.contains("busybox:b"), "{rev2}");

        // undo: back to a, as revision 3.
        ok(&c, &["rollout", "undo", "deployment/web"]);
        ok(
            &c,
            &["rollout", "status", "deployment/web", "--timeout=30s"],
        );
        wait(&c, "only a pods again", || {
            images(&c) == vec!["busybox:a"; 3]
        });
        let rev = ok(
            &c,
            &[
                "get",
                "deployment",
                "web",
                "-o",
                "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
            ],
        );
        assert_eq!(rev, "3");
        // undo --to-revision=2: b again.
        ok(
            &c,
            &["rollout", "undo", "deployment/web", "--to-revision=2"],
        );
        ok(
            &c,
            &["rollout", "status", "deployment/web", "--timeout=30s"],
        );
        wait(&c, "b pods again", || images(&c) == vec!["busybox:b"; 3]);

        // pause: changes pile up without a rollout; resume rolls them out at once.
        ok(&c, &["rollout", "pause", "deployment/web"]);
        ok(&c, &["set", "image", "deployment/web", "busybox=busybox:c"]);
        ok(
            &c,
            &["set", "resources", "deployment/web", "--limits=cpu=200m"],
        );
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(images(&c), vec!["busybox:b"; 3], "no rollout while paused");
        let rs_before = ok(&c, &["get", "rs", "-l", "app=web", "-o", "name"])
            .lines()
            .count();
        ok(&c, &["rollout", "resume", "deployment/web"]);
        ok(
            &c,
            &["rollout", "status", "deployment/web", "--timeout=30s"],
        );
        wait(&c, "c pods", || images(&c) == vec!["busybox:c"; 3]);
        let rs_after = ok(&c, &["get", "rs", "-l", "app=web", "-o", "name"])
            .lines()
            .count();
        assert_eq!(rs_after, rs_before + 1, "one rollout for both changes");

        // scale.
        ok(&c, &["scale", "deployment", "web", "--replicas=5"]);
        wait(&c, "5 pods", || images(&c).len() == 5);
        let ready = ok(&c, &["get", "deployment", "web", "--no-headers"]);
        wait(&c, "5/5", || {
            ok(&c, &["get", "deployment", "web", "--no-headers"])
                .split_whitespace()
                .nth(1)
                == Some("5/5")
        });
        let _ = ready;

        // restart: a new ReplicaSet with the same image.
        ok(&c, &["rollout", "restart", "deployment/web"]);
        let out = ok(
            &c,
            &["rollout", "status", "deployment/web", "--timeout=30s"],
        );
        assert!(out.contains("successfully rolled out"), "{out}");
        assert_eq!(
            ok(&c, &["get", "rs", "-l", "app=web", "-o", "name"])
                .lines()
                .count(),
            rs_after + 1
        );

        // delete: the ReplicaSets and pods go with it.
        ok(&c, &["delete", "deployment", "web"]);
        wait(&c, "everything collected", || {
            ok(&c, &["get", "rs,pods", "-l", "app=web", "-o", "name"])
                .trim()
                .is_empty()
        });
    })
    .await
    .unwrap();
}
