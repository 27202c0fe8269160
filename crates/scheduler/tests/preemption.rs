//! Preemption end to end against a real in-process API server: a node full of
//! low-priority pods, a PriorityClass, and a high-priority pod that does not
//! fit. A stand-in kubelet runs bound pods at once and confirms deletions.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

mod support;
use support::{api_server, eventually};

async fn kubelet(client: kube::Client) {
    let mut s = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).boxed();
    while let Some(ev) = s.next().await {
        let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev else {
            continue;
        };
        let api: Api<Pod> =
            Api::namespaced(client.clone(), p.metadata.namespace.as_deref().unwrap());
        let name = p.metadata.name.clone().unwrap();
        if p.metadata.deletion_timestamp.is_some() {
            let _ = api
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await;
        } else if p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some()
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running")
        {
            let _ = api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"phase": "Running"}})),
                )
                .await;
        }
    }
}

fn pod(name: &str, cpu: &str, class: Option<&str>) -> Pod {
    let mut p = json!({"metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]}});
    if let Some(c) = class {
        p["spec"]["priorityClassName"] = json!(c);
    }
    serde_json::from_value(p).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_priority_pod_preempts_a_lower_one_and_takes_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = api_server(dir.path()).await;
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(skiff_scheduler::run::run(client.clone(), shutdown));
    tokio::spawn(kubelet(client.clone()));

    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"},
        "status": {"capacity": {"cpu": "1", "memory": "1Gi", "pods": "10"},
                   "allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"},
                   "conditions": [{"type": "Ready", "status": "True"}]}}))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();

    let classes: Api<k8s_openapi::api::scheduling::v1::PriorityClass> = Api::all(client.clone());
    for (name, value) in [("low", 10), ("high", 1000)] {
        classes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}, "value": value}))
                    .unwrap(),
            )
            .await
            .unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // The node is full: 400m at priority 0, 500m at priority 10.
    pods.create(&PostParams::default(), &pod("zero", "400m", None))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("ten", "500m", Some("low")))
        .await
        .unwrap();
    for p in ["zero", "ten"] {
        eventually("bound", async || {
            pods.get(p)
                .await
                .unwrap()
                .spec?
                .node_name
                .filter(|n| n == "n1")
                .map(|_| ())
        })
        .await;
    }

    // 500m at priority 1000: both lower-priority pods are candidates; as in
    // Kubernetes the most important ones are reprieved first: "ten" fits back
    // beside "vip" (500m + 500m), "zero" does not and is the victim.
    pods.create(&PostParams::default(), &pod("vip", "500m", Some("high")))
        .await
        .unwrap();
    let nominated = eventually("nominatedNodeName", async || {
        pods.get("vip").await.unwrap().status?.nominated_node_name
    })
    .await;
    assert_eq!(nominated, "n1");
    eventually("vip bound to n1", async || {
        pods.get("vip")
            .await
            .unwrap()
            .spec?
            .node_name
            .filter(|n| n == "n1")
            .map(|_| ())
    })
    .await;
    assert!(
        pods.get_opt("zero").await.unwrap().is_none(),
        "the victim is gone"
    );
    assert!(
        pods.get_opt("ten").await.unwrap().is_some(),
        "the reprieved pod stays"
    );

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let preempted = eventually("Preempted event", async || {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Preempted"))
    })
    .await;
    assert_eq!(preempted.involved_object.name.as_deref(), Some("zero"));
    let vip_uid = pods.get("vip").await.unwrap().metadata.uid.unwrap();
    assert_eq!(
        preempted.message.as_deref(),
        Some(format!("Preempted by pod {vip_uid} on node n1").as_str())
    );
    drop(server);
}
