//! DaemonSets with the real kubectl against an in-process API server running
//! the DaemonSet controller and the garbage collector. Nodes are made through
//! the API; a stand-in scheduler+kubelet binds each pod to the node its
//! `metadata.name` affinity names and marks it Running and Ready.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;

mod support;
use support::{Cluster, no_kubectl};

async fn cluster() -> Cluster {
    Cluster::start("ds,pods", |client, shutdown| {
        tokio::spawn(skiff_controllers::daemonset::run(
            client.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(skiff_controllers::gc::run(client.clone(), shutdown.clone()));
        tokio::spawn(kubelet(client.clone()));
    })
    .await
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

fn node(c: &Cluster, name: &str, extra: &str) {
    let yaml = format!(
        r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}","labels":{{"kubernetes.io/hostname":"{name}"}}}}{extra}}}"#
    );
    let path = c.dir.path().join(format!("{name}.json"));
    std::fs::write(&path, yaml).unwrap();
    c.ok(&["apply", "-f", path.to_str().unwrap()]);
}

/// `node image` of each live pod of the DaemonSet, sorted.
fn placement(c: &Cluster) -> Vec<String> {
    let out = c.ok(
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
    if no_kubectl() {
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
        std::fs::write(c.dir.path().join("ds.json"), ds).unwrap();
        c.ok(&[
            "apply",
            "-f",
            c.dir.path().join("ds.json").to_str().unwrap(),
        ]);
        let out = c.ok(&["rollout", "status", "ds/agent", "--timeout=30s"]);
        assert!(
            out.contains("daemon set \"agent\" successfully rolled out"),
            "{out}"
        );
        assert_eq!(
            placement(&c),
            ["n1 busybox:a", "n2 busybox:a"],
            "the unschedulable node too, not the tainted one"
        );
        let row: Vec<String> = c
            .ok(&["get", "ds", "agent", "--no-headers"])
            .split_whitespace()
            .map(str::to_string)
            .collect();
        assert_eq!(
            &row[1..6],
            ["2", "2", "2", "2", "2"],
            "DESIRED CURRENT READY UP-TO-DATE AVAILABLE: {row:?}"
        );
        let tols = c.ok(&[
            "get",
            "pods",
            "-l",
            "app=agent",
            "-o",
            "jsonpath={.items[0].spec.tolerations[*].key}",
        ]);
        assert!(
            tols.contains("node.kubernetes.io/unschedulable")
                && tols.contains("node.kubernetes.io/not-ready"),
            "{tols}"
        );

        // A new node gets a pod; a node that goes loses its (unbound) pods to pod GC, so only count placement.
        node(&c, "n3", "");
        c.wait("pod on n3", || placement(&c).len() == 3);

        // A rolling update, one node at a time.
        c.ok(&["set", "image", "ds/agent", "agent=busybox:b"]);
        let out = c.ok(&["rollout", "status", "ds/agent", "--timeout=30s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        c.wait("all b", || {
            placement(&c) == ["n1 busybox:b", "n2 busybox:b", "n3 busybox:b"]
        });
        let history = c.ok(&["rollout", "history", "ds/agent"]);
        let rows: Vec<&str> = history
            .lines()
            .filter(|l| l.starts_with(|ch: char| ch.is_ascii_digit()))
            .collect();
        assert_eq!(rows.len(), 2, "{history}");
        let rev2 = c.ok(&["rollout", "history", "ds/agent", "--revision=2"]);
        assert!(rev2.contains("busybox:b"), "{rev2}");
        let hashes = c.ok(&[
            "get",
            "pods",
            "-l",
            "app=agent",
            "-o",
            "jsonpath={.items[*].metadata.labels.controller-revision-hash}",
        ]);
        let revs = c.ok(&[
            "get",
            "controllerrevisions",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        for h in hashes.split_whitespace() {
            assert!(revs.contains(&format!("agent-{h}")), "{h} in {revs}");
        }

        // Undo goes back to a (kubectl rollout undo reads the ControllerRevisions).
        c.ok(&["rollout", "undo", "ds/agent"]);
        c.ok(&["rollout", "status", "ds/agent", "--timeout=30s"]);
        c.wait("all a", || {
            placement(&c) == ["n1 busybox:a", "n2 busybox:a", "n3 busybox:a"]
        });

        // A node selector that no node matches: every pod goes.
        c.ok(&[
            "patch",
            "ds",
            "agent",
            "-p",
            r#"{"spec":{"template":{"spec":{"nodeSelector":{"role":"none"}}}}}"#,
        ]);
        c.wait("no pods", || placement(&c).is_empty());
        c.ok(&["label", "node", "n2", "role=none"]);
        c.wait("one pod on n2", || placement(&c) == ["n2 busybox:a"]);

        // Deleting the DaemonSet takes its pods.
        c.ok(&["delete", "ds", "agent"]);
        c.wait("collected", || placement(&c).is_empty());
    })
    .await
    .unwrap();
}
