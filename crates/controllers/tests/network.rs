//! Node IPAM, Endpoints and EndpointSlices with the real kubectl against an
//! in-process API server running those controllers. The test plays the
//! kubelet: it creates pods already bound to a node and writes their status
//! (IP, Ready) itself.

use k8s_openapi::api::core::v1::{Endpoints, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

mod support;
use support::{Cluster, eventually, no_kubectl};

fn config() -> skiff_controllers::Config {
    skiff_controllers::Config {
        // Four /24s, to run out.
        cluster_cidr: ("10.42.0.0".parse().unwrap(), 22),
        node_cidr_mask: 24,
        ..Default::default()
    }
}

async fn cluster() -> Cluster {
    Cluster::start(
        "nodes,svc,endpoints,endpointslices,pods",
        |client, shutdown| {
            tokio::spawn(skiff_controllers::ipam::run(
                client.clone(),
                config(),
                shutdown.clone(),
            ));
            tokio::spawn(skiff_controllers::endpoints::run(
                client.clone(),
                config(),
                shutdown.clone(),
            ));
        },
    )
    .await
}

fn apply(c: &Cluster, name: &str, obj: Value) {
    let path = c.dir.path().join(format!("{name}.json"));
    std::fs::write(&path, obj.to_string()).unwrap();
    c.ok(&["apply", "-f", path.to_str().unwrap()]);
}

fn node(c: &Cluster, name: &str, spec: Value) {
    apply(
        c,
        name,
        json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": "zone-a"}}, "spec": spec}),
    );
}

fn cidrs(c: &Cluster) -> String {
    c.ok(&[
        "get",
        "nodes",
        "-o",
        "custom-columns=NAME:.metadata.name,CIDR:.spec.podCIDR,CIDRS:.spec.podCIDRs",
        "--no-headers",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_pod_cidrs_until_the_range_runs_out() {
    if no_kubectl() {
        return;
    }
    let c = cluster().await;
    // kubectl and the waits block: off the runtime the controllers run on.
    tokio::task::spawn_blocking(move || cidr_steps(&c))
        .await
        .unwrap();
}

fn cidr_steps(c: &Cluster) {
    // One node brings its own CIDR inside the range, one (a hollow node) outside it.
    node(
        c,
        "n0",
        json!({"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"]}),
    );
    node(
        c,
        "hollow",
        json!({"podCIDR": "10.128.7.0/24", "podCIDRs": ["10.128.7.0/24"]}),
    );
    for n in ["a", "b", "c"] {
        node(c, n, json!({}));
        c.wait(&format!("{n} has a CIDR"), || {
            cidrs(c)
                .lines()
                .any(|l| l.starts_with(&format!("{n} ")) && !l.contains("<none>"))
        });
    }
    let got = cidrs(c);
    let mut rows: Vec<Vec<&str>> = got
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            vec!["a", "10.42.1.0/24", "[10.42.1.0/24]"],
            vec!["b", "10.42.2.0/24", "[10.42.2.0/24]"],
            vec!["c", "10.42.3.0/24", "[10.42.3.0/24]"],
            vec!["hollow", "10.128.7.0/24", "[10.128.7.0/24]"],
            vec!["n0", "10.42.0.0/24", "[10.42.0.0/24]"],
        ],
        "{got}"
    );

    // The range is used up: d gets an Event instead.
    node(c, "d", json!({}));
    c.wait("CIDRNotAvailable event", || {
        c.ok(&[
            "get",
            "events",
            "-A",
            "--field-selector",
            "involvedObject.name=d",
            "-o",
            "custom-columns=TYPE:.type,REASON:.reason,MSG:.message,KIND:.involvedObject.kind",
            "--no-headers",
        ])
        .contains("Normal   CIDRNotAvailable   Node d status is now: CIDRNotAvailable   Node")
    });
    assert!(
        cidrs(c)
            .lines()
            .any(|l| l.starts_with("d ") && l.contains("<none>"))
    );

    // A deleted node's CIDR goes to the node waiting for one.
    c.ok(&["delete", "node", "b"]);
    c.wait("d gets b's CIDR", || {
        cidrs(c)
            .lines()
            .any(|l| l.starts_with("d ") && l.contains("10.42.2.0/24"))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cidrs_nodes_had_before_the_allocator_started_stay_theirs() {
    if no_kubectl() {
        return;
    }
    let stop = std::sync::Arc::new(std::sync::Mutex::new(None));
    let keep = stop.clone();
    let c = Cluster::start("nodes", move |_, shutdown| {
        *keep.lock().unwrap() = Some(shutdown.clone());
    })
    .await;
    let shutdown = stop.lock().unwrap().take().unwrap();
    let c = tokio::task::spawn_blocking(move || {
        node(
            &c,
            "old",
            json!({"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"]}),
        );
        node(&c, "new", json!({}));
        c
    })
    .await
    .unwrap();
    tokio::spawn(skiff_controllers::ipam::run(
        c.client.clone(),
        config(),
        shutdown,
    ));
    tokio::task::spawn_blocking(move || {
        c.wait("new gets the next free CIDR", || {
            cidrs(&c)
                .lines()
                .any(|l| l.starts_with("new ") && l.contains("10.42.1.0/24"))
        });
        assert!(
            cidrs(&c)
                .lines()
                .any(|l| l.starts_with("old ") && l.contains("10.42.0.0/24"))
        );
    })
    .await
    .unwrap();
}

async fn pod(client: &kube::Client, name: &str, node: &str, ip: &str, ready: bool, extra: Value) {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut obj = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx",
                 "ports": [{"name": "http", "containerPort": 8080}]}]}});
    if let (Some(o), Value::Object(e)) = (obj["spec"].as_object_mut(), extra) {
        o.extend(e);
    }
    let p: Pod = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &p).await.unwrap();
    set_status(client, name, ip, ready).await;
}

async fn set_status(client: &kube::Client, name: &str, ip: &str, ready: bool) {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap()
        .to_string();
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": now}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

async fn endpoints(client: &kube::Client, name: &str) -> Option<Endpoints> {
    Api::<Endpoints>::namespaced(client.clone(), "default")
        .get_opt(name)
        .await
        .unwrap()
}

async fn slices(client: &kube::Client, svc: &str) -> Vec<EndpointSlice> {
    Api::<EndpointSlice>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={svc}")))
        .await
        .unwrap()
        .items
}

/// (ready IPs, not-ready IPs) of the Endpoints.
fn ips(e: &Endpoints) -> (Vec<String>, Vec<String>) {
    let mut r = Vec::new();
    let mut n = Vec::new();
    for s in e.subsets.iter().flatten() {
        r.extend(s.addresses.iter().flatten().map(|a| a.ip.clone()));
        n.extend(s.not_ready_addresses.iter().flatten().map(|a| a.ip.clone()));
    }
    r.sort();
    n.sort();
    (r, n)
}

/// `ip ready serving terminating` of every endpoint of the slices, sorted.
fn slice_rows(ss: &[EndpointSlice]) -> Vec<String> {
    let mut v: Vec<String> = ss
        .iter()
        .flat_map(|s| &s.endpoints)
        .map(|e| {
            let c = e.conditions.clone().unwrap_or_default();
            format!(
                "{} {} {} {}",
                e.addresses[0],
                c.ready.unwrap_or(false),
                c.serving.unwrap_or(false),
                c.terminating.unwrap_or(false)
            )
        })
        .collect();
    v.sort();
    v
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_endpoints_and_slices_that_follow_their_pods() {
    if no_kubectl() {
        return;
    }
    let c = cluster().await;
    let client = c.client.clone();
    node(&c, "n1", json!({}));
    apply(
        &c,
        "svc",
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "labels": {"tier": "front"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
    );
    pod(&client, "p1", "n1", "10.42.0.11", true, json!({})).await;
    pod(
        &client,
        "p2",
        "n1",
        "10.42.0.12",
        false,
        json!({"hostname": "p2", "subdomain": "web"}),
    )
    .await;

    let want = (strs(&["10.42.0.11"]), strs(&["10.42.0.12"]));
    let ep = eventually("endpoints with both pods", async || {
        endpoints(&client, "web").await.filter(|e| ips(e) == want)
    })
    .await;
    // As kubectl shows them.
    let out = c.ok(&["get", "endpoints", "web", "--no-headers"]);
    assert!(out.starts_with("web   10.42.0.11:8080"), "{out}");
    let sub = serde_json::to_value(&ep.subsets).unwrap();
    assert_eq!(
        sub,
        json!([{
            "addresses": [{"ip": "10.42.0.11", "nodeName": "n1",
                "targetRef": {"kind": "Pod", "namespace": "default", "name": "p1",
                              "uid": sub[0]["addresses"][0]["targetRef"]["uid"]}}],
            "notReadyAddresses": [{"hostname": "p2", "ip": "10.42.0.12", "nodeName": "n1",
                "targetRef": {"kind": "Pod", "namespace": "default", "name": "p2",
                              "uid": sub[0]["notReadyAddresses"][0]["targetRef"]["uid"]}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }])
    );
    assert_eq!(ep.metadata.labels.as_ref().unwrap()["tier"], "front");
    assert!(
        ep.metadata
            .annotations
            .as_ref()
            .unwrap()
            .contains_key("endpoints.kubernetes.io/last-change-trigger-time")
    );

    let rows = eventually("slice with both pods", async || {
        let r = slice_rows(&slices(&client, "web").await);
        (r.len() == 2).then_some(r)
    })
    .await;
    assert_eq!(
        rows,
        strs(&["10.42.0.11 true true false", "10.42.0.12 false false false"])
    );
    let s = &slices(&client, "web").await[0];
    assert!(s.metadata.name.as_ref().unwrap().starts_with("web-"));
    assert_eq!(
        s.metadata.labels.as_ref().unwrap()["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(
        s.metadata.owner_references.as_ref().unwrap()[0].kind,
        "Service"
    );
    assert_eq!(s.endpoints[0].zone.as_deref(), Some("zone-a"));
    let out = c.ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
        "--no-headers",
    ]);
    let cols: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        &cols[1..4],
        ["IPv4", "8080", "10.42.0.11,10.42.0.12"],
        "{out}"
    );

    // Settled: nothing is rewritten.
    let rv = |e: &Endpoints| e.metadata.resource_version.clone();
    let ep_rv = rv(&endpoints(&client, "web").await.unwrap());
    let slice_rv = slices(&client, "web").await[0]
        .metadata
        .resource_version
        .clone();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rv(&endpoints(&client, "web").await.unwrap()), ep_rv);
    assert_eq!(
        slices(&client, "web").await[0].metadata.resource_version,
        slice_rv
    );

    // A readiness flip reaches both within ~100 ms (asserted with room for a
    // loaded machine), polled every 2 ms.
    let start = Instant::now();
    set_status(&client, "p1", "10.42.0.11", false).await;
    let flipped = (strs(&[]), strs(&["10.42.0.11", "10.42.0.12"]));
    let (mut ep_ms, mut slice_ms) = (None, None);
    while ep_ms.is_none() || slice_ms.is_none() {
        assert!(start.elapsed() < Duration::from_secs(10), "flip never seen");
        if ep_ms.is_none()
            && endpoints(&client, "web")
                .await
                .is_some_and(|e| ips(&e) == flipped)
        {
            ep_ms = Some(start.elapsed().as_millis());
        }
        if slice_ms.is_none()
            && slice_rows(&slices(&client, "web").await)
                .contains(&"10.42.0.11 false false false".to_string())
        {
            slice_ms = Some(start.elapsed().as_millis());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (ep_ms, slice_ms) = (ep_ms.unwrap(), slice_ms.unwrap());
    eprintln!("readiness flip: Endpoints after {ep_ms} ms, EndpointSlice after {slice_ms} ms");
    assert!(ep_ms < 500 && slice_ms < 500, "{ep_ms} / {slice_ms} ms");
    set_status(&client, "p1", "10.42.0.11", true).await;
    eventually("p1 ready again", async || {
        endpoints(&client, "web").await.filter(|e| ips(e) == want)
    })
    .await;

    // p2 is deleted: the kubelet has not confirmed yet, so it is terminating:
    // out of Endpoints, in the slice as terminating. Then it is gone.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.delete("p2", &DeleteParams::default()).await.unwrap();
    if pods.get_opt("p2").await.unwrap().is_some() {
        eventually("p2 out of endpoints", async || {
            endpoints(&client, "web")
                .await
                .filter(|e| ips(e) == (strs(&["10.42.0.11"]), strs(&[])))
        })
        .await;
        eventually("p2 terminating in the slice", async || {
            slice_rows(&slices(&client, "web").await)
                .contains(&"10.42.0.12 false false true".to_string())
                .then_some(())
        })
        .await;
        pods.delete("p2", &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
    }
    eventually("p2 out of the slice", async || {
        (slice_rows(&slices(&client, "web").await) == strs(&["10.42.0.11 true true false"]))
            .then_some(())
    })
    .await;

    // A Service without a selector keeps the Endpoints its user wrote.
    apply(
        &c,
        "manual",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "manual"},
        "spec": {"ports": [{"port": 80}]}}),
    );
    apply(
        &c,
        "manual-ep",
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "manual"},
        "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}]}),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let manual = endpoints(&client, "manual").await.unwrap();
    assert_eq!(ips(&manual), (strs(&["192.0.2.1"]), strs(&[])));
    // ... mirrored into a slice of the mirroring controller.
    let mirrored = eventually("a mirrored slice", async || {
        slices(&client, "manual").await.into_iter().next()
    })
    .await;
    assert_eq!(
        mirrored.metadata.labels.as_ref().unwrap()["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io"
    );
    assert_eq!(
        slice_rows(&[mirrored]),
        strs(&["192.0.2.1 true false false"])
    );
    // skip-mirror takes it away.
    c.ok(&[
        "label",
        "endpoints",
        "manual",
        "endpointslice.kubernetes.io/skip-mirror=true",
    ]);
    eventually("the mirrored slice gone", async || {
        slices(&client, "manual").await.is_empty().then_some(())
    })
    .await;
    assert_eq!(
        ips(&endpoints(&client, "manual").await.unwrap()),
        (strs(&["192.0.2.1"]), strs(&[]))
    );

    // Deleting the Service removes its Endpoints and slices.
    c.ok(&["delete", "service", "web"]);
    eventually("web's endpoints and slices gone", async || {
        (endpoints(&client, "web").await.is_none() && slices(&client, "web").await.is_empty())
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_services_and_many_pods() {
    if no_kubectl() {
        return;
    }
    let c = cluster().await;
    let client = c.client.clone();
    node(&c, "n1", json!({}));
    apply(
        &c,
        "svc",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
    );
    // No pods yet: one placeholder slice.
    let placeholder = eventually("placeholder slice", async || {
        let s = slices(&client, "web").await;
        (s.len() == 1).then(|| s.into_iter().next().unwrap())
    })
    .await;
    assert!(placeholder.endpoints.is_empty());
    assert_eq!(
        placeholder
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .get("service.kubernetes.io/headless"),
        Some(&String::new())
    );
    for i in 0..130 {
        pod(
            &client,
            &format!("p{i}"),
            "n1",
            &format!("10.42.1.{}", i + 1),
            true,
            json!({}),
        )
        .await;
    }
    let sizes = eventually("130 endpoints in two slices", async || {
        let mut v: Vec<usize> = slices(&client, "web")
            .await
            .iter()
            .map(|s| s.endpoints.len())
            .collect();
        v.sort();
        (v.iter().sum::<usize>() == 130).then_some(v)
    })
    .await;
    assert_eq!(sizes, vec![30, 100]);
    let ep = endpoints(&client, "web").await.unwrap();
    assert_eq!(ips(&ep).0.len(), 130);
    assert_eq!(
        ep.metadata
            .labels
            .as_ref()
            .unwrap()
            .get("service.kubernetes.io/headless"),
        Some(&String::new())
    );
}
