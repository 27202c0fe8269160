//! The HPA controller against the in-process API server with the Deployment
//! and ReplicaSet controllers, a stand-in kubelet (every pod Running and
//! Ready at once) and a fake metrics API reporting one CPU figure for every
//! pod; read back with the real kubectl as a user would.

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use skiff_controllers::hpa::{MetricsClient, Options, PodMetrics};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

mod support;
use support::{Cluster, no_kubectl};

/// Reports `cpu` millicores for every pod of the selector.
struct FakeMetrics {
    client: kube::Client,
    cpu: Arc<AtomicI64>,
}

impl MetricsClient for FakeMetrics {
    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodMetrics>, String>> {
        Box::pin(async move {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            let list = pods
                .list(&ListParams::default().labels(selector))
                .await
                .map_err(|e| e.to_string())?;
            let cpu = self.cpu.load(Ordering::SeqCst);
            Ok(list
                .items
                .iter()
                .map(|p| {
                    serde_json::from_value(json!({
                        "metadata": {"name": p.metadata.name, "namespace": namespace},
                        "timestamp": jiff::Timestamp::now().round(jiff::Unit::Second).unwrap().to_string(),
                        "window": "15s",
                        "containers": [{"name": "c", "usage": {"cpu": format!("{cpu}m"), "memory": "10Mi"}}]}))
                    .unwrap()
                })
                .collect())
        })
    }
}

/// The stand-in kubelet: every new pod Running and Ready.
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
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap()
            .to_string();
        let api: Api<Pod> =
            Api::namespaced(client.clone(), p.metadata.namespace.as_deref().unwrap());
        let _ = api
            .patch_status(
                p.metadata.name.as_deref().unwrap(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Running", "startTime": now,
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}})),
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpa_scales_a_deployment_up_on_cpu_and_back_down_after_the_window() {
    if no_kubectl() {
        return;
    }
    let cpu = Arc::new(AtomicI64::new(300));
    let fake = cpu.clone();
    let c = Cluster::start("deploy,rs,pods,hpa", move |client, shutdown| {
        tokio::spawn(skiff_controllers::replicaset::run(
            client.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(skiff_controllers::deployment::run(
            client.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(kubelet(client.clone()));
        let opts = Options {
            sync_period: Duration::from_millis(300),
            cpu_initialization_period: Duration::ZERO,
            ..Default::default()
        };
        let metrics = Arc::new(FakeMetrics {
            client: client.clone(),
            cpu: fake,
        });
        tokio::spawn(skiff_controllers::hpa::run(
            client.clone(),
            opts,
            metrics,
            shutdown.clone(),
        ));
    })
    .await;
    tokio::task::spawn_blocking(move || {
        c.ok(&["create", "deployment", "web", "--image=busybox", "--replicas=1"]);
        c.ok(&["set", "resources", "deployment", "web", "--requests=cpu=100m"]);
        // A 4 s scale-down window instead of 300 s.
        let hpa = r#"{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler",
            "metadata":{"name":"web"},
            "spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},
              "minReplicas":1,"maxReplicas":4,
              "metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":50}}}],
              "behavior":{"scaleDown":{"stabilizationWindowSeconds":4}}}}"#;
        c.apply("hpa", hpa);

        // 300% of request against 50%: 6 wanted, held at maxReplicas 4.
        c.wait("scaled up to 4", || {
            c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]) == "4"
        });
        c.wait("status written", || {
            c.ok(&["get", "hpa", "web", "-o", "jsonpath={.status.desiredReplicas}"]) == "4"
        });
        let row = c.ok(&["get", "hpa", "web", "--no-headers"]);
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[..2], ["web", "Deployment/web"], "{row}");
        assert!(row.contains("300%/50%"), "{row}");
        let desc = c.ok(&["describe", "hpa", "web"]);
        for want in [
            "AbleToScale",
            "ScalingActive   True    ValidMetricFound",
            "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)",
            "ScalingLimited  True    TooManyReplicas",
            "SuccessfulRescale",
            "New size: 4; reason: cpu resource utilization (percentage of request) above target",
        ] {
            assert!(desc.contains(want), "{want}:\n{desc}");
        }
        let conds = c.ok(&["get", "hpa", "web", "-o",
            "jsonpath={.status.currentReplicas}/{.status.observedGeneration}/{.status.lastScaleTime}"]);
        assert!(conds.contains("/1/20"), "{conds}");

        // Load stops: 10% → 1 replica, once the 4 s window holds no higher
        // recommendation. Syncs every 300 ms recorded 4 until just before the
        // drop, so a second later the window still holds them (only a sync
        // stalled for 3 s could let this fail).
        cpu.store(10, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(
            c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
            "4",
            "held by the stabilization window"
        );
        c.wait("scaled down to 1", || {
            c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]) == "1"
        });
        let desc = c.ok(&["describe", "hpa", "web"]);
        assert!(desc.contains("New size: 1; reason: All metrics below target"), "{desc}");
    })
    .await
    .unwrap();
}
