//! The ReplicaSet controller and the garbage collector against a real
//! in-process API server (no nodes: pods stay Pending, which is all these
//! controllers look at).

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;

mod support;
use support::{Cluster, eventually};

async fn cluster() -> Cluster {
    Cluster::start("rs,pods", |client, shutdown| {
        tokio::spawn(skiff_controllers::replicaset::run(
            client.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(skiff_controllers::gc::run(client.clone(), shutdown.clone()));
    })
    .await
}

fn rs(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap()
}

async fn pods_of(pods: &Api<Pod>, app: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

#[tokio::test]
async fn a_replicaset_keeps_its_count_adopts_orphans_and_its_pods_go_with_it() {
    let c = cluster().await;
    let sets: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");

    // An orphan with matching labels exists before the ReplicaSet: it is adopted.
    let orphan: Pod = serde_json::from_value(
        json!({"metadata": {"name": "stray", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    let created = sets
        .create(&PostParams::default(), &rs("web", 3))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    let list = eventually("3 pods", async || {
        let l = pods_of(&pods, "web").await;
        (l.len() == 3 && l.iter().all(|p| p.metadata.owner_references.is_some())).then_some(l)
    })
    .await;
    for p in &list {
        let r = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (r.kind.as_str(), r.uid.as_str(), r.controller),
            ("ReplicaSet", uid.as_str(), Some(true))
        );
    }
    // The orphan was adopted: it is one of the three, or (when the ReplicaSet saw
    // it only after creating three pods of its own) it was adopted and then
    // deleted as the surplus, never left running unowned.
    if let Some(stray) = pods.get_opt("stray").await.unwrap()
        && stray.metadata.deletion_timestamp.is_none()
    {
        assert_eq!(
            stray
                .metadata
                .owner_references
                .as_ref()
                .map(|o| o[0].uid.as_str()),
            Some(uid.as_str()),
            "the orphan was adopted"
        );
    }
    assert!(
        list.iter()
            .filter(|p| p.metadata.name.as_deref() != Some("stray"))
            .all(|p| p.metadata.name.as_deref().unwrap().starts_with("web-")),
        "new pods are named after the ReplicaSet"
    );
    // Status follows, with the generation observed.
    eventually("status", async || {
        let s = sets.get("web").await.unwrap().status?;
        (s.replicas == 3 && s.observed_generation == Some(1)).then_some(())
    })
    .await;
    // Nothing is created twice while things settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pods_of(&pods, "web").await.len(), 3);

    // A deleted pod is replaced; scaling down deletes the surplus.
    let victim = pods_of(&pods, "web").await[0]
        .metadata
        .name
        .clone()
        .unwrap();
    pods.delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    eventually("replacement", async || {
        let l = pods_of(&pods, "web").await;
        (l.len() == 3
            && l.iter()
                .all(|p| p.metadata.name.as_deref() != Some(victim.as_str())))
        .then_some(())
    })
    .await;
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    eventually("scale down to 1", async || {
        (pods_of(&pods, "web").await.len() == 1).then_some(())
    })
    .await;
    eventually("status replicas 1", async || {
        let s = sets.get("web").await.unwrap().status?;
        (s.replicas == 1 && s.observed_generation == Some(2)).then_some(())
    })
    .await;

    // Deleting the ReplicaSet (background, kubectl's default) deletes its pods.
    sets.delete("web", &DeleteParams::background())
        .await
        .unwrap();
    eventually("pods collected", async || {
        pods.list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn orphan_and_foreground_deletion_as_kubernetes_does_them() {
    let c = cluster().await;
    let sets: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");

    // Orphan: the ReplicaSet goes, its pods stay, without owner references.
    sets.create(&PostParams::default(), &rs("keep", 2))
        .await
        .unwrap();
    eventually("2 pods", async || {
        (pods_of(&pods, "keep").await.len() == 2).then_some(())
    })
    .await;
    sets.delete("keep", &DeleteParams::orphan()).await.unwrap();
    eventually("the orphaned ReplicaSet gone", async || {
        sets.get_opt("keep").await.unwrap().is_none().then_some(())
    })
    .await;
    let left = eventually("pods unlinked", async || {
        let l = pods_of(&pods, "keep").await;
        l.iter()
            .all(|p| {
                p.metadata
                    .owner_references
                    .as_ref()
                    .is_none_or(|o| o.is_empty())
            })
            .then_some(l)
    })
    .await;
    assert_eq!(left.len(), 2, "orphaned pods stay");

    // Foreground: the ReplicaSet stays (with its finalizer) until its pods are gone.
    sets.create(&PostParams::default(), &rs("fg", 2))
        .await
        .unwrap();
    eventually("2 pods", async || {
        (pods_of(&pods, "fg").await.len() == 2).then_some(())
    })
    .await;
    sets.delete("fg", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("the ReplicaSet and its pods gone", async || {
        let gone = sets.get_opt("fg").await.unwrap().is_none();
        let none = pods
            .list(&ListParams::default().labels("app=fg"))
            .await
            .unwrap()
            .items
            .is_empty();
        (gone && none).then_some(())
    })
    .await;
}
