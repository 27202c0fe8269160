//! The API driven by a real client (kube-rs) over HTTPS, against a server on port 0.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use skiff_apiserver::{Config, Running};

async fn start(dir: &std::path::Path) -> Running {
    let mut c = Config::new(dir);
    c.port = 0;
    skiff_apiserver::start(c).await.expect("server starts")
}

async fn client(running: &Running) -> kube::Client {
    let kc = Kubeconfig::read_from(&running.kubeconfig).expect("kubeconfig readable");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig valid");
    kube::Client::try_from(cfg).expect("client")
}

fn pod(name: &str, labels: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn create_get_list_with_defaults_and_selectors() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let c = client(&running).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let created = pods
        .create(&PostParams::default(), &pod("web-1", json!({"app": "web"})))
        .await
        .unwrap();
    let md = &created.metadata;
    assert!(md.uid.is_some() && md.creation_timestamp.is_some() && md.resource_version.is_some());
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(
        spec.containers[0].image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );
    assert_eq!(
        created.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );

    pods.create(&PostParams::default(), &pod("db-1", json!({"app": "db"})))
        .await
        .unwrap();
    let web = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(web.items.len(), 1);
    assert_eq!(web.items[0].metadata.name.as_deref(), Some("web-1"));
    let by_name = pods
        .list(&ListParams::default().fields("metadata.name=db-1"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let all = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 2);

    // AlreadyExists
    let err = pods
        .create(&PostParams::default(), &pod("web-1", json!({})))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "AlreadyExists");
            assert_eq!(s.message, "pods \"web-1\" already exists");
        }
        other => panic!("unexpected {other:?}"),
    }
    running.stop().await;
}

#[tokio::test]
async fn pagination_with_limit_and_continue() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let c = client(&running).await;
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    for i in 0..25 {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": format!("cm-{i:02}")}, "data": {"k": "v"}}),
        )
        .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(10);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 25);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    running.stop().await;
}

#[tokio::test]
async fn stale_update_conflicts_and_patches_apply() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let c = client(&running).await;
    let deploys: Api<Deployment> = Api::namespaced(c, "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "busybox:1"}, {"name": "side", "image": "busybox:1"}]}}}
    }))
    .unwrap();
    let created = deploys.create(&PostParams::default(), &d).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.spec.as_ref().unwrap().replicas, Some(1));

    // Strategic merge: one container's image changes by name, the other stays.
    let patched = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "busybox:2"}]}}}})),
        )
        .await
        .unwrap();
    let cs = &patched
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers;
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[0].image.as_deref(), Some("busybox:2"));
    assert_eq!(cs[1].image.as_deref(), Some("busybox:1"));
    assert_eq!(patched.metadata.generation, Some(2));

    // Merge patch on labels.
    let merged = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "fe"}}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.metadata.labels.as_ref().unwrap()["tier"], "fe");
    assert_eq!(
        merged.metadata.generation,
        Some(2),
        "metadata changes do not bump generation"
    );

    // JSON patch.
    let jp: json_patch_4::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]))
            .unwrap();
    let jpatched = deploys
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(jpatched.spec.as_ref().unwrap().replicas, Some(3));

    // An update carrying the resourceVersion of `created` is stale now.
    let mut stale = created.clone();
    stale.spec.as_mut().unwrap().replicas = Some(5);
    match deploys
        .replace("web", &PostParams::default(), &stale)
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "Conflict");
            assert!(
                s.message.contains("the object has been modified"),
                "{}",
                s.message
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    running.stop().await;
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let c = client(&running).await;
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    let mk = |n: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": n}})).unwrap()
    };
    let first = cms.create(&PostParams::default(), &mk("a")).await.unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    cms.create(&PostParams::default(), &mk("b")).await.unwrap();
    cms.delete("a", &DeleteParams::default()).await.unwrap();

    // Resume from after "a" was created: we see b ADDED then a DELETED.
    let mut stream = cms
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match stream.try_next().await.unwrap() {
            Some(WatchEvent::Added(cm)) => {
                seen.push(format!("ADDED {}", cm.metadata.name.unwrap()))
            }
            Some(WatchEvent::Deleted(cm)) => {
                seen.push(format!("DELETED {}", cm.metadata.name.unwrap()))
            }
            Some(WatchEvent::Modified(cm)) => {
                seen.push(format!("MODIFIED {}", cm.metadata.name.unwrap()))
            }
            Some(WatchEvent::Bookmark(_)) => {}
            Some(WatchEvent::Error(e)) => panic!("watch error {e:?}"),
            None => break,
        }
    }
    assert_eq!(seen, vec!["ADDED b".to_string(), "DELETED a".to_string()]);

    // A live event arrives on an open watch.
    let latest = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut live = cms
        .watch(&WatchParams::default().timeout(5), &latest)
        .await
        .unwrap()
        .boxed();
    cms.create(&PostParams::default(), &mk("c")).await.unwrap();
    match live.try_next().await.unwrap() {
        Some(WatchEvent::Added(cm)) => assert_eq!(cm.metadata.name.as_deref(), Some("c")),
        other => panic!("expected ADDED c, got {other:?}"),
    }
    running.stop().await;
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_contents() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let c = client(&running).await;
    let nss: Api<Namespace> = Api::all(c.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "scratch"}})).unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "scratch");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap(),
    )
    .await
    .unwrap();
    nss.delete("scratch", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match nss.get_opt("scratch").await.unwrap() {
            None => break,
            Some(ns) => {
                assert_eq!(
                    ns.status.and_then(|s| s.phase).as_deref(),
                    Some("Terminating")
                );
                assert!(
                    std::time::Instant::now() < deadline,
                    "namespace never went away"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    let all: Api<ConfigMap> = Api::all(c);
    let left = all
        .list(&ListParams::default().fields("metadata.namespace=scratch"))
        .await
        .unwrap();
    assert!(left.items.is_empty());
    running.stop().await;
}

#[tokio::test]
async fn unauthenticated_requests_get_401() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let kc = Kubeconfig::read_from(&running.kubeconfig).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    cfg.auth_info.token = Some("wrong".to_string().into());
    let c = kube::Client::try_from(cfg).unwrap();
    let pods: Api<Pod> = Api::namespaced(c, "default");
    match pods.list(&ListParams::default()).await.unwrap_err() {
        kube::Error::Api(s) => assert_eq!(s.code, 401),
        other => panic!("unexpected {other:?}"),
    }
    running.stop().await;
}

#[tokio::test]
async fn restart_keeps_objects_and_resource_versions_and_watch_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (rv_a, uid_a, old_rv) = {
        let running = start(dir.path()).await;
        let c = client(&running).await;
        let cms: Api<ConfigMap> = Api::namespaced(c, "default");
        let a = cms
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "a"}, "data": {"x": "1"}}))
                    .unwrap(),
            )
            .await
            .unwrap();
        let old_rv = a.metadata.resource_version.clone().unwrap();
        let b = cms
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "b"}})).unwrap(),
            )
            .await
            .unwrap();
        let _ = b;
        let a2 = cms.get("a").await.unwrap();
        running.stop().await;
        (
            a2.metadata.resource_version.unwrap(),
            a2.metadata.uid.unwrap(),
            old_rv,
        )
    };
    let token_before = std::fs::read_to_string(dir.path().join("token")).unwrap();
    let running = start(dir.path()).await;
    assert_eq!(
        std::fs::read_to_string(dir.path().join("token")).unwrap(),
        token_before,
        "the join token is kept"
    );
    let c = client(&running).await;
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    let a = cms.get("a").await.unwrap();
    assert_eq!(a.metadata.resource_version.as_deref(), Some(rv_a.as_str()));
    assert_eq!(a.metadata.uid.as_deref(), Some(uid_a.as_str()));
    assert_eq!(a.data.unwrap()["x"], "1");
    // A watch from before the restart resumes and sees "b" being created.
    let mut stream = cms
        .watch(&WatchParams::default().timeout(3), &old_rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Added(cm)) => assert_eq!(cm.metadata.name.as_deref(), Some("b")),
        other => panic!("expected ADDED b, got {other:?}"),
    }
    running.stop().await;
}

#[tokio::test]
async fn watch_from_a_compacted_revision_gets_410_expired() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::new(dir.path());
    c.port = 0;
    c.retain_revisions = 5;
    c.compact_interval = std::time::Duration::from_millis(50);
    let old_rv = {
        let running = skiff_apiserver::start(c.clone()).await.unwrap();
        let client = client(&running).await;
        let cms: Api<ConfigMap> = Api::namespaced(client, "default");
        let first = cms
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "first"}})).unwrap(),
            )
            .await
            .unwrap();
        for i in 0..30 {
            cms.create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": format!("n{i}")}})).unwrap(),
            )
            .await
            .unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        running.stop().await;
        first.metadata.resource_version.unwrap()
    };
    let running = skiff_apiserver::start(c).await.unwrap();
    let client = client(&running).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut stream = cms
        .watch(&WatchParams::default().timeout(3), &old_rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
            assert!(
                e.message.starts_with("too old resource version"),
                "{}",
                e.message
            );
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    // The objects themselves survived compaction.
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items.len(),
        31
    );
    running.stop().await;
}

#[tokio::test]
async fn bound_pods_delete_gracefully_and_finalizers_hold_objects() {
    use k8s_openapi::api::core::v1::Binding;
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let c = client(&running).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let mut p = pod("bound", json!({}));
    p.spec.as_mut().unwrap().termination_grace_period_seconds = Some(20);
    pods.create(&PostParams::default(), &p).await.unwrap();

    // Bind it to a node through pods/binding, as a scheduler does.
    let binding: Binding = serde_json::from_value(
        json!({"metadata": {"name": "bound"}, "target": {"kind": "Node", "name": "n1"}}),
    )
    .unwrap();
    let _: serde_json::Value = c
        .request(
            http::Request::post("/api/v1/namespaces/default/pods/bound/binding")
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&binding).unwrap())
                .unwrap(),
        )
        .await
        .unwrap();
    let bound = pods.get("bound").await.unwrap();
    assert_eq!(
        bound.spec.as_ref().unwrap().node_name.as_deref(),
        Some("n1")
    );
    let conds = bound.status.unwrap().conditions.unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
    );
    let on_node = pods
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    assert_eq!(on_node.items.len(), 1);

    // A bound pod waits for its kubelet: deletionTimestamp set, object kept.
    let res = pods
        .delete("bound", &DeleteParams::default())
        .await
        .unwrap();
    let pending = res
        .left()
        .expect("the pod is returned while its deletion is pending");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(pending.metadata.deletion_grace_period_seconds, Some(20));
    assert!(pods.get_opt("bound").await.unwrap().is_some());
    // Grace 0 (what the kubelet sends when the containers are gone) removes it.
    pods.delete(
        "bound",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(pods.get_opt("bound").await.unwrap().is_none());

    // A finalizer holds a ConfigMap until it is removed.
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let held = cms.get("held").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    // No new finalizers on an object being deleted.
    let err = cms
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "x.io/more"]}})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err:?}"
    );
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(
        cms.get_opt("held").await.unwrap().is_none(),
        "removing the last finalizer completes the delete"
    );
    running.stop().await;
}

#[tokio::test]
async fn dry_run_generate_name_and_validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let c = client(&running).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let dry = pods
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &pod("dry", json!({})),
        )
        .await
        .unwrap();
    assert_eq!(dry.metadata.name.as_deref(), Some("dry"));
    assert!(
        pods.get_opt("dry").await.unwrap().is_none(),
        "dryRun stores nothing"
    );

    let mut g = pod("", json!({}));
    g.metadata.name = None;
    g.metadata.generate_name = Some("web-".into());
    let made = pods.create(&PostParams::default(), &g).await.unwrap();
    let name = made.metadata.name.unwrap();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");

    let bad: Pod = serde_json::from_value(json!({"metadata": {"name": "bad"}, "spec": {"containers": [{"name": "c"}], "restartPolicy": "Sometimes"}})).unwrap();
    match pods.create(&PostParams::default(), &bad).await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert_eq!(s.reason, "Invalid");
            assert!(
                s.message.starts_with("Pod \"bad\" is invalid: ["),
                "{}",
                s.message
            );
            assert!(
                s.message
                    .contains("spec.containers[0].image: Required value"),
                "{}",
                s.message
            );
            assert!(
                s.message
                    .contains("spec.restartPolicy: Unsupported value: \"Sometimes\""),
                "{}",
                s.message
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(pods.get_opt("bad").await.unwrap().is_none());
    running.stop().await;
}

#[tokio::test]
async fn events_are_shared_between_core_and_events_k8s_io() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event as NewEvent;
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let c = client(&running).await;
    let core: Api<CoreEvent> = Api::namespaced(c.clone(), "default");
    let ev: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "nginx.1"},
        "involvedObject": {"kind": "Pod", "name": "nginx", "namespace": "default"},
        "reason": "Scheduled", "message": "Successfully assigned default/nginx to n1", "type": "Normal",
        "source": {"component": "default-scheduler"}, "count": 1,
        "firstTimestamp": "2026-11-28T05:00:00Z", "lastTimestamp": "2026-11-28T05:00:00Z"
    }))
    .unwrap();
    core.create(&PostParams::default(), &ev).await.unwrap();
    let by_obj = core
        .list(&ListParams::default().fields("involvedObject.name=nginx,reason=Scheduled"))
        .await
        .unwrap();
    assert_eq!(by_obj.items.len(), 1);
    let newer: Api<NewEvent> = Api::namespaced(c, "default");
    let e = newer.get("nginx.1").await.unwrap();
    assert_eq!(e.regarding.as_ref().unwrap().name.as_deref(), Some("nginx"));
    assert_eq!(
        e.note.as_deref(),
        Some("Successfully assigned default/nginx to n1")
    );
    assert_eq!(e.deprecated_count, Some(1));
    running.stop().await;
}

#[tokio::test]
async fn in_process_client_uses_the_same_api_without_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let c = kube::Client::new(
        skiff_apiserver::inproc::InProcess(running.server.clone()),
        "default",
    );
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut w = cms
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "inproc"}})).unwrap(),
    )
    .await
    .unwrap();
    match w.try_next().await.unwrap() {
        Some(WatchEvent::Added(cm)) => assert_eq!(cm.metadata.name.as_deref(), Some("inproc")),
        other => panic!("expected ADDED, got {other:?}"),
    }
    // Seen over HTTPS too: one server, one store.
    let https = client(&running).await;
    let via_tls: Api<ConfigMap> = Api::default_namespaced(https);
    assert!(via_tls.get_opt("inproc").await.unwrap().is_some());
    running.stop().await;
}

#[tokio::test]
async fn secret_string_data_is_merged_into_data_and_never_stored() {
    use k8s_openapi::api::core::v1::Secret;
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let c = client(&running).await;
    let secrets: Api<Secret> = Api::namespaced(c, "default");
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "creds"}, "data": {"user": "YWRtaW4=", "password": "b2xk"}, "stringData": {"password": "s3cret"}})).unwrap();
    let created = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert!(created.string_data.is_none());
    let data = created.data.unwrap();
    assert_eq!(data["user"].0, b"admin");
    assert_eq!(data["password"].0, b"s3cret", "stringData overrides data");
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    let patched = secrets
        .patch(
            "creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"token": "t"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["token"].0, b"t");
    assert!(secrets.get("creds").await.unwrap().string_data.is_none());
    running.stop().await;
}

#[tokio::test]
async fn priority_classes_resolve_into_pod_priority_as_admission_does() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let c = client(&running).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pcs: Api<k8s_openapi::api::scheduling::v1::PriorityClass> = Api::all(c.clone());
    let create = |name: &str, spec_extra: serde_json::Value| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
        for (k, v) in spec_extra.as_object().unwrap() {
            p["spec"][k] = v.clone();
        }
        serde_json::from_value::<Pod>(p).unwrap()
    };
    let spec_of = |p: &Pod| {
        let s = p.spec.as_ref().unwrap();
        (
            s.priority,
            s.priority_class_name.clone(),
            s.preemption_policy.clone(),
        )
    };

    // The built-in classes exist, as in Kubernetes.
    let names: Vec<String> = pcs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert!(
        names.contains(&"system-node-critical".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"system-cluster-critical".to_string()),
        "{names:?}"
    );

    // No class and no default: priority 0.
    let p = pods
        .create(&PostParams::default(), &create("plain", json!({})))
        .await
        .unwrap();
    assert_eq!(
        spec_of(&p),
        (Some(0), None, Some("PreemptLowerPriority".into()))
    );

    // A named class gives its value and policy.
    pcs.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": "batch"}, "value": 100, "preemptionPolicy": "Never"}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let p = pods
        .create(
            &PostParams::default(),
            &create("b", json!({"priorityClassName": "batch"})),
        )
        .await
        .unwrap();
    assert_eq!(
        spec_of(&p),
        (Some(100), Some("batch".into()), Some("Never".into()))
    );
    let p = pods
        .create(
            &PostParams::default(),
            &create(
                "crit",
                json!({"priorityClassName": "system-cluster-critical"}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(spec_of(&p).0, Some(2_000_000_000));

    // An unknown class, or a priority that disagrees with the class: 403, nothing stored.
    for (name, extra, want) in [
        (
            "u",
            json!({"priorityClassName": "nope"}),
            "pods \"u\" is forbidden: no PriorityClass with name nope was found",
        ),
        (
            "v",
            json!({"priorityClassName": "batch", "priority": 7}),
            "pods \"v\" is forbidden: the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 100 from the given PriorityClass name",
        ),
    ] {
        match pods
            .create(&PostParams::default(), &create(name, extra))
            .await
            .unwrap_err()
        {
            kube::Error::Api(s) => {
                assert_eq!((s.code, s.message.as_str()), (403, want));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(pods.get_opt(name).await.unwrap().is_none());
    }

    // A globalDefault class applies to pods that name none.
    pcs.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": "normal"}, "value": 1000, "globalDefault": true}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let p = pods
        .create(&PostParams::default(), &create("d", json!({})))
        .await
        .unwrap();
    assert_eq!(
        spec_of(&p),
        (
            Some(1000),
            Some("normal".into()),
            Some("PreemptLowerPriority".into())
        )
    );
    running.stop().await;
}

#[tokio::test]
async fn the_join_token_buys_a_node_its_own_token_and_kubelet_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let admin = client(&running).await;
    let join_token = std::fs::read_to_string(dir.path().join("token"))
        .unwrap()
        .trim()
        .to_string();
    let with_token = |t: &str| {
        let kc = Kubeconfig::read_from(&running.kubeconfig).unwrap();
        let t = t.to_string();
        async move {
            let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .unwrap();
            cfg.auth_info.token = Some(t.into());
            kube::Client::try_from(cfg).unwrap()
        }
    };
    let ask = |c: kube::Client, name: &str| {
        let body =
            serde_json::to_vec(&json!({"nodeName": name, "addresses": ["127.0.0.1"]})).unwrap();
        async move {
            c.request::<serde_json::Value>(
                http::Request::post("/v1-skiff/node-credentials")
                    .header("content-type", "application/json")
                    .body(body)
                    .unwrap(),
            )
            .await
        }
    };
    let creds = ask(with_token(&join_token).await, "worker-1")
        .await
        .unwrap();
    let node_token = creds["token"].as_str().unwrap().to_string();
    assert!(
        node_token.starts_with("skiff-node:worker-1:"),
        "{node_token}"
    );
    assert!(
        creds["servingCert"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert!(
        creds["servingKey"]
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY")
    );
    assert_eq!(creds["caCert"].as_str().unwrap(), running.ca_pem);

    // The node token works for the API, and is the same on every ask.
    let node = with_token(&node_token).await;
    let pods: Api<Pod> = Api::namespaced(node.clone(), "default");
    pods.list(&ListParams::default()).await.unwrap();
    let again = ask(admin.clone(), "worker-1").await.unwrap();
    assert_eq!(again["token"], creds["token"]);

    // A node token cannot mint credentials, nor pass for another node.
    match ask(node, "worker-2").await.unwrap_err() {
        kube::Error::Api(s) => assert_eq!(s.code, 403),
        other => panic!("unexpected {other:?}"),
    }
    let forged = node_token.replace("worker-1", "worker-2");
    let pods: Api<Pod> = Api::namespaced(with_token(&forged).await, "default");
    match pods.list(&ListParams::default()).await.unwrap_err() {
        kube::Error::Api(s) => assert_eq!(s.code, 401),
        other => panic!("unexpected {other:?}"),
    }
    // A bad node name is refused.
    match ask(with_token(&join_token).await, "Bad_Name")
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => assert_eq!(s.code, 400),
        other => panic!("unexpected {other:?}"),
    }
    running.stop().await;
}
