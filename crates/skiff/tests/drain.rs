//! The multi-node controllers with the real kubectl against an in-process
//! server (no agent, no runc): nodes, leases and bound pods are written by
//! hand, the test plays the kubelets.
//!
//! - `kubectl drain` cordons a node and evicts its pods as far as their
//!   PodDisruptionBudget allows, retrying on kubectl's "Cannot evict pod as it
//!   would violate the pod's disruption budget." until replacements are
//!   Ready elsewhere; `kubectl uncordon` undoes the cordon.
//! - A node whose Lease stops renewing goes Unknown, gets the unreachable
//!   taint, its pods turn Ready=False and are deleted once their (shortened)
//!   default toleration runs out; pod GC removes them when the node is deleted.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Cluster {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    running: Option<skiff_apiserver::Running>,
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    stop: tokio::sync::watch::Sender<bool>,
    /// Nodes whose Lease the test renews every 500 ms.
    alive: Arc<Mutex<Vec<String>>>,
}

impl Cluster {
    fn start(
        tolerations: skiff_api::defaults::DefaultTolerationSeconds,
        controllers: skiff_controllers::Config,
    ) -> Option<Self> {
        if Command::new("kubectl")
            .args(["version", "--client"])
            .output()
            .is_err()
        {
            if std::env::var_os("CI").is_some() {
                panic!("kubectl is not installed; .ci/run must install it");
            }
            eprintln!("\n\n*** SKIPPING drain tests: no kubectl on PATH ***\n\n");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut config = skiff_apiserver::Config::new(dir.path());
        config.port = 0;
        config.default_toleration_seconds = tolerations;
        let running = rt
            .block_on(skiff_apiserver::start(config))
            .expect("server starts");
        let client = {
            let _g = rt.enter();
            kube::Client::new(
                skiff_apiserver::inproc::InProcess(running.server.clone()),
                "default",
            )
        };
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        rt.spawn(skiff_controllers::run(
            client.clone(),
            controllers,
            shutdown.clone(),
        ));
        let alive: Arc<Mutex<Vec<String>>> = Arc::default();
        rt.spawn(heartbeat(client.clone(), alive.clone(), shutdown));
        Some(Self {
            kubeconfig: running.kubeconfig.clone(),
            dir,
            running: Some(running),
            rt,
            client,
            stop,
            alive,
        })
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("kubectl runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn apply(&self, yaml: &str) {
        let p = self
            .dir
            .path()
            .join(format!("m-{}.yaml", Instant::now().elapsed().as_nanos()));
        std::fs::write(&p, yaml).unwrap();
        self.ok(&["apply", "-f", p.to_str().unwrap()]);
    }

    /// A Ready node whose Lease the test keeps renewing.
    fn node(&self, name: &str) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let n: Node = serde_json::from_value(json!({"metadata": {"name": name,
            "labels": {"kubernetes.io/hostname": name}}}))
        .unwrap();
        self.rt
            .block_on(nodes.create(&PostParams::default(), &n))
            .unwrap();
        let now = now();
        let st = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
             "lastHeartbeatTime": now, "lastTransitionTime": now},
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "ok",
             "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}});
        self.rt
            .block_on(nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&st)))
            .unwrap();
        self.alive.lock().unwrap().push(name.to_string());
    }

    /// A pod bound to `node`, Running and Ready, as its kubelet would report it.
    fn pod(&self, name: &str, node: &str, extra_meta: Value, tolerations: Option<Value>) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        let mut v = json!({"metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "busybox"}]}});
        if let Some(m) = extra_meta.as_object() {
            for (k, x) in m {
                v["metadata"][k] = x.clone();
            }
        }
        if let Some(t) = tolerations {
            v["spec"]["tolerations"] = t;
        }
        let p: Pod = serde_json::from_value(v).unwrap();
        self.rt
            .block_on(pods.create(&PostParams::default(), &p))
            .unwrap();
        let body = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        let req = http::Request::post(format!("/api/v1/namespaces/default/pods/{name}/binding"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap();
        self.rt.block_on(self.client.request::<Value>(req)).unwrap();
        let now = now();
        let st = json!({"status": {"phase": "Running", "podIP": "10.42.0.9", "startTime": now,
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}],
            "containerStatuses": [{"name": "web", "image": "busybox", "imageID": "", "ready": true,
                "restartCount": 0, "started": true, "state": {"running": {"startedAt": now}}}]}});
        self.rt
            .block_on(pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&st)))
            .unwrap();
    }

    fn jsonpath(&self, args: &[&str], expr: &str) -> String {
        let mut a: Vec<&str> = args.to_vec();
        let e = format!("jsonpath={expr}");
        a.extend(["-o", &e]);
        self.ok(&a)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(r) = self.running.take() {
            self.rt.block_on(r.stop());
        }
    }
}

fn now() -> String {
    let t = jiff::Timestamp::now();
    t.round(jiff::Unit::Second).unwrap_or(t).to_string()
}

/// Renews the Leases of the live nodes, as their kubelets would.
async fn heartbeat(
    client: kube::Client,
    alive: Arc<Mutex<Vec<String>>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        let names = alive.lock().unwrap().clone();
        for n in names {
            let t = jiff::Timestamp::now().to_string();
            let l: Lease = serde_json::from_value(json!({"metadata": {"name": n},
                "spec": {"holderIdentity": n, "leaseDurationSeconds": 40, "renewTime": t}}))
            .unwrap();
            let patch = json!({"spec": {"renewTime": t}});
            if leases
                .patch(&n, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_err()
            {
                let _ = leases.create(&PostParams::default(), &l).await;
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Confirms the deletion of terminating pods on `node`, as a live kubelet does.
async fn kubelet_confirms_deletes(client: kube::Client, node: String) {
    let pods: Api<Pod> = Api::namespaced(client, "default");
    loop {
        if let Ok(list) = pods.list(&Default::default()).await {
            for p in list.items {
                if p.metadata.deletion_timestamp.is_some()
                    && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str())
                {
                    let _ = pods
                        .delete(
                            p.metadata.name.as_deref().unwrap_or(""),
                            &DeleteParams::default().grace_period(0),
                        )
                        .await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The row of `name` in a `kubectl get … --no-headers` table.
fn row(out: &str, name: &str) -> Option<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cols| cols.first().map(String::as_str) == Some(name))
}

#[test]
fn drain_evicts_as_far_as_the_disruption_budget_allows() {
    // The test plays the ReplicaSet controller itself (its pods are bound by hand
    // to node a), so the real one stays off.
    let controllers = skiff_controllers::Config {
        node_monitor_period: Duration::from_millis(500),
        workloads: false,
        ..Default::default()
    };
    let Some(c) = Cluster::start(Default::default(), controllers) else {
        return;
    };
    c.node("a");
    c.node("b");
    c.rt.spawn(kubelet_confirms_deletes(c.client.clone(), "a".into()));
    c.apply(
        "apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: busybox}]}
",
    );
    let rs_uid = c.jsonpath(&["get", "rs", "web"], "{.metadata.uid}");
    let owner = json!({"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
        "uid": rs_uid, "controller": true, "blockOwnerDeletion": true}]});
    for i in 0..3 {
        c.pod(&format!("web-{i}"), "a", owner.clone(), None);
    }
    c.apply(
        "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
",
    );
    // The disruption controller's status, as kubectl shows it.
    let pdb_row = wait_for(
        "the PDB to allow one disruption",
        Duration::from_secs(10),
        || {
            let r = row(&c.ok(&["get", "pdb", "--no-headers"]), "web")?;
            (r[3] == "1").then_some(r)
        },
    );
    assert_eq!(&pdb_row[..4], ["web", "2", "N/A", "1"]);
    assert_eq!(
        c.jsonpath(
            &["get", "pdb", "web"],
            "{.status.expectedPods} {.status.currentHealthy} {.status.desiredHealthy} {.status.observedGeneration} {.status.conditions[0].type}={.status.conditions[0].status}/{.status.conditions[0].reason}"
        ),
        "3 3 2 1 DisruptionAllowed=True/SufficientPods"
    );

    let out_path = c.dir.path().join("drain.out");
    let err_path = c.dir.path().join("drain.err");
    let mut drain = Command::new("kubectl")
        .env("KUBECONFIG", &c.kubeconfig)
        .args([
            "drain",
            "a",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=90s",
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    // One pod goes; the budget then refuses, and kubectl says it will retry.
    wait_for(
        "kubectl to report the disruption budget",
        Duration::from_secs(30),
        || {
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            err.contains("Cannot evict pod as it would violate the pod's disruption budget.")
                .then_some(())
        },
    );
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(
        err.contains("(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."),
        "{err}"
    );
    let nodes = c.ok(&["get", "nodes", "--no-headers"]);
    assert_eq!(
        row(&nodes, "a").unwrap()[1],
        "Ready,SchedulingDisabled",
        "{nodes}"
    );
    assert_eq!(row(&nodes, "b").unwrap()[1], "Ready", "{nodes}");
    assert_eq!(
        c.jsonpath(&["get", "node", "a"], "{.spec.unschedulable}"),
        "true"
    );
    // The node lifecycle controller taints the cordoned node.
    wait_for("the unschedulable taint", Duration::from_secs(10), || {
        c.jsonpath(&["get", "node", "a"], "{.spec.taints[*].key}")
            .contains("node.kubernetes.io/unschedulable")
            .then_some(())
    });
    let left = wait_for("one pod evicted", Duration::from_secs(10), || {
        let pods = c.ok(&["get", "pods", "--no-headers"]);
        (pods.lines().count() == 2).then_some(pods)
    });
    assert!(drain.try_wait().unwrap().is_none(), "drain waits: {left}");
    assert_eq!(
        c.jsonpath(
            &["get", "pdb", "web"],
            "{.status.currentHealthy} {.status.disruptionsAllowed}"
        ),
        "2 0"
    );

    // Replacements become Ready on b: the budget allows the rest to go.
    for i in 3..5 {
        c.pod(&format!("web-{i}"), "b", owner.clone(), None);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = drain.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "drain did not finish");
        std::thread::sleep(Duration::from_millis(250));
    };
    let out = std::fs::read_to_string(&out_path).unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(status.success(), "drain failed:\n{out}\n{err}");
    assert!(out.contains("node/a cordoned"), "{out}");
    assert!(out.contains("node/a drained"), "{out}");
    for i in 0..3 {
        assert!(out.contains(&format!("pod/web-{i} evicted")), "{out}");
        assert!(
            out.contains(&format!("evicting pod default/web-{i}")),
            "{out}"
        );
    }
    let pods = c.ok(&["get", "pods", "-o", "wide", "--no-headers"]);
    assert_eq!(pods.lines().count(), 2, "{pods}");
    assert!(pods.lines().all(|l| l.contains(" b ")), "{pods}");

    // The eviction subresource's own answers, as kube-apiserver words them.
    wait_for("the budget to settle", Duration::from_secs(10), || {
        (c.jsonpath(
            &["get", "pdb", "web"],
            "{.status.currentHealthy} {.status.disruptionsAllowed}",
        ) == "2 0")
            .then_some(())
    });
    let evict = |name: &str| -> (u16, Value) {
        let body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}});
        let req = http::Request::post(format!("/api/v1/namespaces/default/pods/{name}/eviction"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap();
        let (code, bytes) = c.rt.block_on(async {
            let resp = c
                .client
                .send(req.map(kube::client::Body::from))
                .await
                .unwrap();
            let code = resp.status().as_u16();
            (code, resp.into_body().collect_bytes().await.unwrap())
        });
        (code, serde_json::from_slice(&bytes).unwrap())
    };
    let (code, st) = evict("web-3");
    assert_eq!(code, 429, "{st}");
    assert_eq!(
        st,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Cannot evict pod as it would violate the pod's disruption budget.",
            "reason": "TooManyRequests", "code": 429,
            "details": {"causes": [{"reason": "DisruptionBudget",
                "message": "The disruption budget web needs 2 healthy pods and has 2 currently"}]}})
    );
    c.apply(
        "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web-too}
spec:
  maxUnavailable: 1
  selector: {matchLabels: {app: web}}
",
    );
    // maxUnavailable counts from the ReplicaSet's spec.replicas (3), read through the API.
    wait_for(
        "the second budget's status",
        Duration::from_secs(10),
        || {
            (c.jsonpath(
            &["get", "pdb", "web-too"],
            "{.status.expectedPods} {.status.desiredHealthy} {.status.currentHealthy} {.status.disruptionsAllowed}",
        ) == "3 2 2 0")
            .then_some(())
        },
    );
    let (code, st) = evict("web-3");
    assert_eq!(code, 500, "{st}");
    assert_eq!(
        st["message"],
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );

    assert_eq!(c.ok(&["uncordon", "a"]).trim(), "node/a uncordoned");
    let nodes = c.ok(&["get", "nodes", "--no-headers"]);
    assert_eq!(row(&nodes, "a").unwrap()[1], "Ready", "{nodes}");
    wait_for(
        "the unschedulable taint to go",
        Duration::from_secs(10),
        || {
            (!c.jsonpath(&["get", "node", "a"], "{.spec.taints[*].key}")
                .contains("node.kubernetes.io/unschedulable"))
            .then_some(())
        },
    );
}

#[test]
fn a_lost_node_goes_unknown_and_its_pods_are_evicted_after_their_toleration() {
    let controllers = skiff_controllers::Config {
        node_monitor_period: Duration::from_millis(250),
        node_monitor_grace_period: Duration::from_secs(2),
        pod_gc_quarantine: Duration::from_secs(1),
        pod_gc_period: Duration::from_millis(250),
        ..Default::default()
    };
    let tolerations = skiff_api::defaults::DefaultTolerationSeconds {
        not_ready: 300,
        unreachable: 3,
    };
    let Some(c) = Cluster::start(tolerations, controllers) else {
        return;
    };
    // A healthy node too: when every node is down Kubernetes suspects its own
    // network and taints none for NoExecute.
    c.node("alive");
    c.node("lost");
    c.pod("web", "lost", json!({}), None);
    c.pod(
        "stays",
        "lost",
        json!({}),
        Some(json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}])),
    );
    assert_eq!(
        c.jsonpath(
            &["get", "pod", "web"],
            "{.spec.tolerations[?(@.key==\"node.kubernetes.io/unreachable\")].tolerationSeconds}"
        ),
        "3",
        "the admission flag shortens the default toleration"
    );
    std::thread::sleep(Duration::from_secs(3));
    let nodes = c.ok(&["get", "nodes", "--no-headers"]);
    assert_eq!(
        row(&nodes, "lost").unwrap()[1],
        "Ready",
        "a renewing lease keeps it Ready"
    );

    // The kubelet dies: no more lease renewals.
    let lost_at = Instant::now();
    c.alive.lock().unwrap().retain(|n| n != "lost");
    wait_for("the node to go NotReady", Duration::from_secs(10), || {
        let nodes = c.ok(&["get", "nodes", "--no-headers"]);
        (row(&nodes, "lost")?[1] == "NotReady").then_some(())
    });
    assert!(
        lost_at.elapsed() >= Duration::from_secs(1),
        "not before the grace period"
    );
    assert_eq!(
        c.jsonpath(
            &["get", "node", "lost"],
            "{.status.conditions[?(@.type==\"Ready\")].status}/{.status.conditions[?(@.type==\"Ready\")].reason}/{.status.conditions[?(@.type==\"Ready\")].message}"
        ),
        "Unknown/NodeStatusUnknown/Kubelet stopped posting node status."
    );
    assert_eq!(
        c.jsonpath(
            &["get", "node", "lost"],
            "{.status.conditions[?(@.type==\"MemoryPressure\")].status}"
        ),
        "Unknown"
    );
    wait_for("the unreachable taints", Duration::from_secs(5), || {
        let t = c.jsonpath(
            &["get", "node", "lost"],
            "{range .spec.taints[*]}{.key}:{.effect} {end}",
        );
        (t.contains("node.kubernetes.io/unreachable:NoExecute")
            && t.contains("node.kubernetes.io/unreachable:NoSchedule"))
        .then_some(())
    });
    assert!(
        !c.jsonpath(
            &["get", "node", "lost"],
            "{.spec.taints[?(@.effect==\"NoExecute\")].timeAdded}"
        )
        .is_empty(),
        "the NoExecute taint carries timeAdded"
    );
    for p in ["web", "stays"] {
        wait_for(
            &format!("pod {p} Ready=False"),
            Duration::from_secs(5),
            || {
                (c.jsonpath(
                    &["get", "pod", p],
                    "{.status.conditions[?(@.type==\"Ready\")].status}",
                ) == "False")
                    .then_some(())
            },
        );
    }

    // After the 3 s toleration the taint manager deletes web; nobody confirms, so it stays Terminating.
    let web = wait_for("web to be terminating", Duration::from_secs(10), || {
        let pods = c.ok(&["get", "pods", "--no-headers"]);
        let r = row(&pods, "web")?;
        (r[2] == "Terminating").then_some(r)
    });
    assert_eq!(
        web[2], "Terminating",
        "Kubernetes no longer sets reason NodeLost"
    );
    assert_eq!(
        c.jsonpath(
            &["get", "pod", "web"],
            "{.status.conditions[?(@.type==\"DisruptionTarget\")].reason}: {.status.conditions[?(@.type==\"DisruptionTarget\")].message}"
        ),
        "DeletionByTaintManager: Taint manager: deleting due to NoExecute taint"
    );
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
        "--no-headers",
    ]);
    assert!(
        events.contains("TaintManagerEviction")
            && events.contains("Marking for deletion Pod default/web"),
        "{events}"
    );
    assert!(events.contains("NodeNotReady"), "{events}");
    let pods = c.ok(&["get", "pods", "--no-headers"]);
    assert_eq!(
        row(&pods, "stays").unwrap()[2],
        "Running",
        "tolerates forever: {pods}"
    );

    // The node is removed for good: pod GC force-deletes what was left on it.
    c.ok(&["delete", "node", "lost"]);
    wait_for(
        "pod GC to remove the orphans",
        Duration::from_secs(15),
        || {
            let pods = c.ok(&["get", "pods", "--no-headers", "--ignore-not-found"]);
            pods.trim().is_empty().then_some(())
        },
    );
}

/// One eviction case: the pod, its budget's spec and status, what the API answers.
struct EvictionCase {
    name: &'static str,
    /// Bound and Running (else Pending, unbound).
    running: bool,
    ready: bool,
    phase: &'static str,
    /// The budget's spec additions and status; None for no budget.
    pdb: Option<(Value, Value)>,
    query: &'static str,
    code: u16,
    /// The cause message of a 429.
    cause: Option<&'static str>,
    /// Whether the pod is gone or terminating afterwards.
    deleted: bool,
}

#[test]
fn eviction_follows_kube_apiserver_rules() {
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let off = skiff_controllers::Config {
        node_lifecycle: false,
        pod_gc: false,
        disruption: false,
        ..Default::default()
    };
    let Some(c) = Cluster::start(Default::default(), off) else {
        return;
    };
    c.node("a");
    let status = |allowed: i64, healthy: i64, desired: i64| {
        json!({"disruptionsAllowed": allowed, "currentHealthy": healthy, "desiredHealthy": desired,
               "expectedPods": 3, "observedGeneration": 1})
    };
    let cases = [
        EvictionCase {
            name: "no-budget",
            running: true,
            ready: true,
            phase: "Running",
            pdb: None,
            query: "",
            code: 201,
            cause: None,
            deleted: true,
        },
        EvictionCase {
            name: "budget-allows",
            running: true,
            ready: true,
            phase: "Running",
            pdb: Some((json!({"minAvailable": 2}), status(1, 3, 2))),
            query: "",
            code: 201,
            cause: None,
            deleted: true,
        },
        EvictionCase {
            name: "budget-spent",
            running: true,
            ready: true,
            phase: "Running",
            pdb: Some((json!({"minAvailable": 2}), status(0, 2, 2))),
            query: "",
            code: 429,
            cause: Some(
                "The disruption budget budget-spent needs 2 healthy pods and has 2 currently",
            ),
            deleted: false,
        },
        EvictionCase {
            name: "budget-stale",
            running: true,
            ready: true,
            phase: "Running",
            pdb: Some((json!({"minAvailable": 2}), {
                let mut s = status(1, 3, 2);
                s["observedGeneration"] = json!(0);
                s
            })),
            query: "",
            code: 429,
            cause: Some(
                "The disruption budget budget-stale is still being processed by the server.",
            ),
            deleted: false,
        },
        EvictionCase {
            name: "succeeded",
            running: true,
            ready: false,
            phase: "Succeeded",
            pdb: Some((json!({"minAvailable": 2}), status(0, 2, 2))),
            query: "",
            code: 201,
            cause: None,
            deleted: true,
        },
        EvictionCase {
            name: "pending",
            running: false,
            ready: false,
            phase: "Pending",
            pdb: Some((json!({"minAvailable": 2}), status(0, 2, 2))),
            query: "",
            code: 201,
            cause: None,
            deleted: true,
        },
        EvictionCase {
            name: "unready-healthy-budget",
            running: true,
            ready: false,
            phase: "Running",
            pdb: Some((json!({"minAvailable": 2}), status(0, 2, 2))),
            query: "",
            code: 201,
            cause: None,
            deleted: true,
        },
        EvictionCase {
            name: "unready-disrupted-budget",
            running: true,
            ready: false,
            phase: "Running",
            pdb: Some((json!({"minAvailable": 2}), status(0, 1, 2))),
            query: "",
            code: 429,
            cause: Some(
                "The disruption budget unready-disrupted-budget needs 2 healthy pods and has 1 currently",
            ),
            deleted: false,
        },
        EvictionCase {
            name: "unready-always-allow",
            running: true,
            ready: false,
            phase: "Running",
            pdb: Some((
                json!({"minAvailable": 2, "unhealthyPodEvictionPolicy": "AlwaysAllow"}),
                status(0, 1, 2),
            )),
            query: "",
            code: 201,
            cause: None,
            deleted: true,
        },
        EvictionCase {
            name: "dry-run",
            running: true,
            ready: true,
            phase: "Running",
            pdb: Some((json!({"minAvailable": 2}), status(1, 3, 2))),
            query: "?dryRun=All",
            code: 201,
            cause: None,
            deleted: false,
        },
    ];
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.client.clone(), "default");
    for case in &cases {
        let name = case.name;
        let labels = json!({"labels": {"case": name}});
        if case.running {
            c.pod(name, "a", labels, None);
            let mut st = json!({"status": {"phase": case.phase}});
            if !case.ready {
                st["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
            }
            c.rt.block_on(pods.patch_status(name, &PatchParams::default(), &Patch::Strategic(&st)))
                .unwrap();
        } else {
            let p: Pod = serde_json::from_value(
                json!({"metadata": {"name": name, "labels": {"case": name}},
                "spec": {"containers": [{"name": "web", "image": "busybox"}]}}),
            )
            .unwrap();
            c.rt.block_on(pods.create(&PostParams::default(), &p))
                .unwrap();
        }
        if let Some((spec, st)) = &case.pdb {
            let budget = name;
            let mut spec = spec.clone();
            spec["selector"] = json!({"matchLabels": {"case": name}});
            let p: PodDisruptionBudget =
                serde_json::from_value(json!({"metadata": {"name": budget}, "spec": spec}))
                    .unwrap();
            c.rt.block_on(pdbs.create(&PostParams::default(), &p))
                .unwrap();
            c.rt.block_on(pdbs.patch_status(
                budget,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": st})),
            ))
            .unwrap();
        }
        let body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}});
        let req = http::Request::post(format!(
            "/api/v1/namespaces/default/pods/{name}/eviction{}",
            case.query
        ))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
        let (code, st): (u16, Value) = c.rt.block_on(async {
            let resp = c
                .client
                .send(req.map(kube::client::Body::from))
                .await
                .unwrap();
            let code = resp.status().as_u16();
            let bytes = resp.into_body().collect_bytes().await.unwrap();
            (code, serde_json::from_slice(&bytes).unwrap())
        });
        assert_eq!(code, case.code, "{name}: {st}");
        match case.cause {
            Some(cause) => {
                assert_eq!(st["reason"], "TooManyRequests", "{name}");
                assert_eq!(
                    st["message"],
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    "{name}"
                );
                assert_eq!(
                    st["details"]["causes"],
                    json!([{"reason": "DisruptionBudget", "message": cause}]),
                    "{name}"
                );
            }
            None => assert_eq!(st["status"], "Success", "{name}: {st}"),
        }
        let after = c.rt.block_on(pods.get_opt(name)).unwrap();
        let gone_or_terminating = after
            .as_ref()
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some());
        assert_eq!(gone_or_terminating, case.deleted, "{name}: {after:?}");
        if let Some(p) = after.filter(|p| p.metadata.deletion_timestamp.is_some()) {
            let cond = p
                .status
                .unwrap()
                .conditions
                .unwrap()
                .into_iter()
                .find(|c| c.type_ == "DisruptionTarget")
                .unwrap();
            assert_eq!(
                (
                    cond.status.as_str(),
                    cond.reason.as_deref(),
                    cond.message.as_deref()
                ),
                (
                    "True",
                    Some("EvictionByEvictionAPI"),
                    Some("Eviction API: evicting")
                ),
                "{name}"
            );
        }
    }
    // The budget that allowed one eviction spent it and remembers the pod.
    let b =
        c.rt.block_on(pdbs.get("budget-allows"))
            .unwrap()
            .status
            .unwrap();
    assert_eq!(b.disruptions_allowed, 0);
    assert!(b.disrupted_pods.unwrap().contains_key("budget-allows"));
    let cond = &b.conditions.unwrap()[0];
    assert_eq!(
        (
            cond.type_.as_str(),
            cond.status.as_str(),
            cond.reason.as_str()
        ),
        ("DisruptionAllowed", "False", "InsufficientPods")
    );
    // A dry run spends nothing.
    let b = c.rt.block_on(pdbs.get("dry-run")).unwrap().status.unwrap();
    assert_eq!((b.disruptions_allowed, b.disrupted_pods), (1, None));
    // The name in the body must be the pod's.
    let body =
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}});
    let req = http::Request::post("/api/v1/namespaces/default/pods/budget-spent/eviction")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let err = c.rt.block_on(c.client.request::<Value>(req)).unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 400 && s.message == "name in URL does not match name in Eviction object"),
        "{err}"
    );
}
