//! `metrics.k8s.io/v1beta1` end to end in one process: a scripted node
//! reports cumulative usage, the server's scraper turns it into rates, and
//! the API (and the real `kubectl top`, when kubectl is installed) shows them.

use bytes::Bytes;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use skiff_apiserver::error::ApiError;
use skiff_apiserver::node::{
    ContainerSample, ExecProcess, LogRequest, NodeProxy, NodeTarget, PodConn, PodTarget,
    ResourceMetrics, UsageSample,
};
use skiff_apiserver::{Config, Running};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Sample `n` of node "n1" is taken at `n` × 10 s: the node burns half a
/// core, container `app` a quarter, `log` 123456789 nanocores.
struct Scripted {
    calls: AtomicI64,
}

fn sample(ts: i64, cpu: f64, mem: u64) -> UsageSample {
    UsageSample {
        timestamp_ms: ts,
        cpu_usage_seconds_total: cpu,
        memory_working_set_bytes: mem,
    }
}

#[async_trait::async_trait]
impl NodeProxy for Scripted {
    async fn resource_metrics(&self, node: &NodeTarget) -> Result<ResourceMetrics, ApiError> {
        assert_eq!(node.name, "n1");
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let ts = 1_700_000_000_000 + n * 10_000;
        let c = |name: &str, cpu: f64, mem: u64| ContainerSample {
            namespace: "default".into(),
            pod: "web".into(),
            container: name.into(),
            usage: sample(ts, cpu, mem),
        };
        Ok(ResourceMetrics {
            node: sample(ts, 1000.0 + n as f64 * 5.0, 2 << 30),
            containers: vec![
                c("app", n as f64 * 2.5, 100 << 20),
                c("log", n as f64 * 1.234_567_89, 5_000_000),
            ],
        })
    }
    async fn logs(
        &self,
        _: &PodTarget,
        _: &str,
        _: &LogRequest,
    ) -> Result<BoxStream<'static, Bytes>, ApiError> {
        Err(ApiError::bad_request("no logs here"))
    }
    async fn exec(
        &self,
        _: &PodTarget,
        _: &str,
        _: Vec<String>,
        _: bool,
        _: bool,
    ) -> Result<ExecProcess, ApiError> {
        Err(ApiError::bad_request("no exec here"))
    }
    async fn attach(&self, _: &PodTarget, _: &str, _: bool) -> Result<ExecProcess, ApiError> {
        Err(ApiError::bad_request("no attach here"))
    }
    async fn connect(&self, _: &PodTarget, _: u16) -> Result<PodConn, ApiError> {
        Err(ApiError::bad_request("no connect here"))
    }
}

async fn start(dir: &std::path::Path) -> Running {
    let mut c = Config::new(dir);
    c.port = 0;
    c.metric_resolution = Duration::from_millis(300);
    skiff_apiserver::start(c).await.expect("server starts")
}

async fn client(running: &Running) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(&running.kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

async fn get(c: &kube::Client, path: &str) -> Result<Value, kube::Error> {
    c.request::<Value>(http::Request::get(path).body(Vec::new()).unwrap())
        .await
}

async fn create(c: &kube::Client, path: &str, obj: Value) {
    c.request::<Value>(
        http::Request::post(path)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&obj).unwrap())
            .unwrap(),
    )
    .await
    .unwrap();
}

fn not_found(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound" => s.message,
        other => panic!("expected NotFound, got {other:?}"),
    }
}

fn node(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "tier": "edge"}},
        "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                   "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
    })
}

fn kubectl(running: &Running, cache: &std::path::Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&running.kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_and_pod_metrics_from_scripted_samples() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    running.server.set_node_proxy(
        "n1",
        Arc::new(Scripted {
            calls: AtomicI64::new(0),
        }),
    );
    let c = client(&running).await;

    // Discovery.
    let rl = get(&c, "/apis/metrics.k8s.io/v1beta1").await.unwrap();
    let kinds: Vec<(&str, &str, bool)> = rl["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["kind"].as_str().unwrap(),
                r["namespaced"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("nodes", "NodeMetrics", false),
            ("pods", "PodMetrics", true)
        ]
    );
    let group = get(&c, "/apis/metrics.k8s.io").await.unwrap();
    assert_eq!(
        group["preferredVersion"]["groupVersion"],
        "metrics.k8s.io/v1beta1"
    );

    create(&c, "/api/v1/nodes", node("n1")).await;
    // n2 has no way to reach it: its scrapes fail and it has no metrics.
    create(&c, "/api/v1/nodes", node("n2")).await;
    create(
        &c,
        "/api/v1/namespaces/default/pods",
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [
                {"name": "app", "image": "busybox"}, {"name": "log", "image": "busybox"}]}
        }),
    )
    .await;

    let mut nm = Value::Null;
    for _ in 0..100 {
        match get(&c, "/apis/metrics.k8s.io/v1beta1/nodes/n1").await {
            Ok(v) => {
                nm = v;
                break;
            }
            Err(e) => {
                not_found(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(nm["kind"], "NodeMetrics", "n1 got metrics: {nm}");
    assert_eq!(nm["apiVersion"], "metrics.k8s.io/v1beta1");
    assert_eq!(nm["metadata"]["name"], "n1");
    assert_eq!(nm["metadata"]["labels"]["tier"], "edge");
    assert!(nm["metadata"]["creationTimestamp"].is_string());
    assert_eq!(nm["window"], "10s");
    assert_eq!(nm["usage"], json!({"cpu": "500m", "memory": "2Gi"}));
    let ts = nm["timestamp"].as_str().unwrap();
    assert!(
        ts.starts_with("2023-11-14T22:") && ts.ends_with('Z'),
        "{ts}"
    );

    let list = get(&c, "/apis/metrics.k8s.io/v1beta1/nodes").await.unwrap();
    assert_eq!(list["kind"], "NodeMetricsList");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["n1"], "n2 has no metrics");
    let none = get(
        &c,
        "/apis/metrics.k8s.io/v1beta1/nodes?labelSelector=tier%3Dcore",
    )
    .await
    .unwrap();
    assert_eq!(none["items"], json!([]));
    assert_eq!(
        not_found(
            get(&c, "/apis/metrics.k8s.io/v1beta1/nodes/n2")
                .await
                .unwrap_err()
        ),
        "nodemetrics.metrics.k8s.io \"n2\" not found"
    );
    assert_eq!(
        not_found(
            get(&c, "/apis/metrics.k8s.io/v1beta1/nodes/n3")
                .await
                .unwrap_err()
        ),
        "nodes \"n3\" not found"
    );

    let pm = get(
        &c,
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web",
    )
    .await
    .unwrap();
    assert_eq!(pm["kind"], "PodMetrics");
    assert_eq!(pm["metadata"]["namespace"], "default");
    assert_eq!(pm["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(pm["window"], "10s");
    assert_eq!(
        pm["containers"],
        json!([
            {"name": "app", "usage": {"cpu": "250m", "memory": "100Mi"}},
            {"name": "log", "usage": {"cpu": "123456789n", "memory": "5000000"}},
        ])
    );
    for path in [
        "/apis/metrics.k8s.io/v1beta1/pods",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dweb",
        "/apis/metrics.k8s.io/v1beta1/pods?fieldSelector=metadata.name%3Dweb",
    ] {
        let l = get(&c, path).await.unwrap();
        assert_eq!(l["kind"], "PodMetricsList", "{path}");
        assert_eq!(l["items"].as_array().unwrap().len(), 1, "{path}");
        assert!(
            l["items"][0].get("kind").is_none(),
            "list items carry no kind"
        );
    }
    for path in [
        "/apis/metrics.k8s.io/v1beta1/namespaces/kube-system/pods",
        "/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Ddb",
        "/apis/metrics.k8s.io/v1beta1/pods?fieldSelector=metadata.name%3Dother",
    ] {
        assert_eq!(get(&c, path).await.unwrap()["items"], json!([]), "{path}");
    }
    assert_eq!(
        not_found(
            get(
                &c,
                "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope"
            )
            .await
            .unwrap_err()
        ),
        "pods \"nope\" not found"
    );

    // The real kubectl, when present (it rounds CPU up to whole millicores).
    let cache = dir.path().join("kubectl-cache");
    let Some(top_nodes) = kubectl(&running, &cache, &["top", "node", "n1"]) else {
        eprintln!("kubectl not found: skipping kubectl top");
        running.stop().await;
        return;
    };
    assert_eq!(
        rows(&top_nodes),
        [
            vec!["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
            vec!["n1", "500m", "12%", "2048Mi", "25%"],
        ],
        "{top_nodes}"
    );
    let top_pods = kubectl(&running, &cache, &["top", "pod", "-A", "--containers"]).unwrap();
    assert_eq!(
        rows(&top_pods),
        [
            vec!["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"],
            vec!["default", "web", "app", "250m", "100Mi"],
            vec!["default", "web", "log", "124m", "4Mi"],
        ],
        "{top_pods}"
    );
    let top_pod = kubectl(&running, &cache, &["top", "pod", "-l", "app=web"]).unwrap();
    assert_eq!(
        rows(&top_pod),
        [
            vec!["NAME", "CPU(cores)", "MEMORY(bytes)"],
            vec!["web", "374m", "104Mi"],
        ],
        "{top_pod}"
    );
    running.stop().await;
}
