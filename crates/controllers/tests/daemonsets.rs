//! DaemonSets with the real kubectl against an in-process API server running
//! the DaemonSet controller and the garbage collector. Nodes are made through
//! the API; a stand-in scheduler+kubelet binds each pod to the node its
//! `metadata.name` affinity names and marks it Running and Ready.

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
    tokio::spawn(skiff_controllers::daemonset::run(
        client.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(skiff_controllers::gc::run(client.clone(), shutdown));
    tokio::spawn(kubelet(client.clone()));
    Cluster {
        kubeconfig: running.kubeconfig.clone(),
        _stop: stop,
        _running: running,
        _dir: dir,
    }
}

/// The stand-in scheduler and kubelet: binds each new pod to its pinned node, Running and Ready.
async fn kubelet(client: kube::Client) {
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
        let Some(node) = skiff_controllers::daemonset::target_node(&p) else {
            continue;
        };
        let ns = p.metadata.namespace.clone().unwrap();
        let name = p.metadata.name.clone().unwrap();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_none_or(str::is_empty)
        {
            let binding = json!({"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": ns},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
            let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/binding"))
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&binding).unwrap())
                .unwrap();
            let _ = client.request_text(req).await;
        }
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap()
            .to_string();
        let status = json!({"status": {"phase": "Running", "startTime": now, "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
        let _ = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
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
            ok(c, &["get", "ds,pods", "-o", "wide"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn node(c: &Cluster, name: &str, extra: &str) {
    let yaml = format!(
        r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}","labels":{{"kubernetes.io/hostname":"{name}"}}}}{extra}}}"#
    );
    let path = c._dir.path().join(format!("{name}.json"));
    std::fs::write(&path, yaml).unwrap();
    ok(c, &["apply", "-f", path.to_str().unwrap()]);
}

/// `node image` of each live pod of the DaemonSet, sorted.
fn placement(c: &Cluster) -> Vec<String> {
    let out = ok(
        c,
        &[
            "get",
            "pods",
            "-l",
            "app=agent",
            "-o",
            "jsonpath={range .items[*]}{.metadata.deletionTimestamp}/{.spec.nodeName} {.spec.containers[0].image}{\"\\n\"}{end}",
        ],
    );
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with('/'))
        .map(|l| l.trim_start_matches('/').to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_follows_its_nodes_and_rolls_out_with_kubectl() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        assert!(std::env::var_os("CI").is_none(), "kubectl missing in CI");
        eprintln!("\n*** SKIPPING daemonset test: no kubectl ***\n");
        return;
    }
    let c = cluster().await;
    tokio::task::spawn_blocking(move || {
        node(&c, "n1", "");
        node(&c, "n2", r#","spec":{"unschedulable":true}"#);
        node(
            &c,
            "tainted",
            r#","spec":{"taints":[{"key":"dedicated","value":"db","effect":"NoSchedule"}]}"#,
        );
        let ds = r#"{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"agent"},
            "spec":{"selector":{"matchLabels":{"app":"agent"}},
            "template":{"metadata":{"labels":{"app":"agent"}},
            "spec":{"containers":[{"name":"agent","image":"busybox:a"}]}}}}"#;
        std::fs::write(c._dir.path().join("ds.json"), ds).unwrap();
        ok(
            &c,
            &[
                "apply",
                "-f",
                c._dir.path().join("ds.json").to_str().unwrap(),
            ],
        );
        let out = ok(&c, &["rollout", "status", "ds/agent", "--timeout=30s"]);
        assert!(
            out.contains("daemon set \"agent\" successfully rolled out"),
            "{out}"
        );
        assert_eq!(
            placement(&c),
            ["n1 busybox:a", "n2 busybox:a"],
            "the unschedulable node too, not the tainted one"
        );
        let row: Vec<String> = ok(&c, &["get", "ds", "agent", "--no-headers"])
            .split_whitespace()
            .map(str::to_string)
            .collect();
        assert_eq!(
            &row[1..6],
            ["2", "2", "2", "2", "2"],
            "DESIRED CURRENT READY UP-TO-DATE AVAILABLE: {row:?}"
        );
        let tols = ok(
            &c,
            &[
                "get",
                "pods",
                "-l",
                "app=agent",
                "-o",
                "jsonpath={.items[0].spec.tolerations[*].key}",
            ],
        );
        assert!(
            tols.contains("node.kubernetes.io/unschedulable")
                && tols.contains("node.kubernetes.io/not-ready"),
            "{tols}"
        );

        // A new node gets a pod; a node that goes loses its (unbound) pods to pod GC, so only count placement.
        node(&c, "n3", "");
        wait(&c, "pod on n3", || placement(&c).len() == 3);

        // A rolling update, one node at a time.
        ok(&c, &["set", "image", "ds/agent", "agent=busybox:b"]);
        let out = ok(&c, &["rollout", "status", "ds/agent", "--timeout=30s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        wait(&c, "all b", || {
            placement(&c) == ["n1 busybox:b", "n2 busybox:b", "n3 busybox:b"]
        });
        let history = ok(&c, &["rollout", "history", "ds/agent"]);
        let rows: Vec<&str> = history
            .lines()
            .filter(|l| l.starts_with(|ch: char| ch.is_ascii_digit()))
            .collect();
        assert_eq!(rows.len(), 2, "{history}");
        let rev2 = ok(&c, &["rollout", "history", "ds/agent", "--revision=2"]);
        assert!(rev2.contains("busybox:b"), "{rev2}");
        let hashes = ok(
            &c,
            &[
                "get",
                "pods",
                "-l",
                "app=agent",
                "-o",
                "jsonpath={.items[*].metadata.labels.controller-revision-hash}",
            ],
        );
        let revs = ok(
            &c,
            &[
                "get",
                "controllerrevisions",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
        );
        for h in hashes.split_whitespace() {
            assert!(revs.contains(&format!("agent-{h}")), "{h} in {revs}");
        }

        // Undo goes back to a (kubectl rollout undo reads the ControllerRevisions).
        ok(&c, &["rollout", "undo", "ds/agent"]);
        ok(&c, &["rollout", "status", "ds/agent", "--timeout=30s"]);
        wait(&c, "all a", || {
            placement(&c) == ["n1 busybox:a", "n2 busybox:a", "n3 busybox:a"]
        });

        // A node selector that no node matches: every pod goes.
        ok(
            &c,
            &[
                "patch",
                "ds",
                "agent",
                "-p",
                r#"{"spec":{"template":{"spec":{"nodeSelector":{"role":"none"}}}}}"#,
            ],
        );
        wait(&c, "no pods", || placement(&c).is_empty());
        ok(&c, &["label", "node", "n2", "role=none"]);
        wait(&c, "one pod on n2", || placement(&c) == ["n2 busybox:a"]);

        // Deleting the DaemonSet takes its pods.
        ok(&c, &["delete", "ds", "agent"]);
        wait(&c, "collected", || placement(&c).is_empty());
    })
    .await
    .unwrap();
}
