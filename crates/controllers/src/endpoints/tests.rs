use super::*;
use crate::testing::merge;
use serde_json::{Value, json};

fn svc(extra: Value) -> Service {
    let mut v = json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid",
                     "labels": {"app": "web"}, "creationTimestamp": "2026-11-28T07:00:00Z"},
        "spec": {"selector": {"app": "web"}, "clusterIP": "10.43.0.10",
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

/// A running pod `name` on node `n1` with IP 10.42.0.`i`, Ready or not.
fn pod(name: &str, i: u32, ready: bool, extra: Value) -> Pod {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
                 "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": format!("10.42.{}.{}", i / 250, i % 250 + 1),
                   "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                                   "lastTransitionTime": "2026-11-28T07:01:00Z"}]}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn node(name: &str, zone: Option<&str>) -> Node {
    let mut v = json!({"metadata": {"name": name}});
    if let Some(z) = zone {
        v["metadata"]["labels"] = json!({"topology.kubernetes.io/zone": z});
    }
    serde_json::from_value(v).unwrap()
}

/// Ready IPs, not-ready IPs and ports (`name:port`) of a subset.
type Shape = (Vec<String>, Vec<String>, Vec<String>);

/// A table row: name, Service changes, pods, the subsets wanted.
type Case = (&'static str, Value, Vec<Pod>, Vec<Shape>);

/// Ready and not-ready IPs of each subset, with its ports as `name:port`.
fn shape(e: &Endpoints) -> Vec<Shape> {
    let ips = |l: &Option<Vec<EndpointAddress>>| -> Vec<String> {
        l.iter().flatten().map(|a| a.ip.clone()).collect()
    };
    e.subsets
        .iter()
        .flatten()
        .map(|s| {
            (
                ips(&s.addresses),
                ips(&s.not_ready_addresses),
                s.ports
                    .iter()
                    .flatten()
                    .map(|p| format!("{}:{}", p.name.as_deref().unwrap_or(""), p.port))
                    .collect(),
            )
        })
        .collect()
}

fn v(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

#[test]
fn which_pods_are_ready_not_ready_or_left_out_of_endpoints() {
    let terminating = json!({"metadata": {"deletionTimestamp": "2026-11-28T07:02:00Z"}});
    let cases: Vec<Case> = vec![
        (
            "ready and not ready",
            json!({}),
            vec![pod("a", 0, true, json!({})), pod("b", 1, false, json!({}))],
            vec![(v(&["10.42.0.1"]), v(&["10.42.0.2"]), v(&["http:8080"]))],
        ),
        (
            "publishNotReadyAddresses: all ready, terminating too",
            json!({"spec": {"publishNotReadyAddresses": true}}),
            vec![
                pod("a", 0, true, json!({})),
                pod("b", 1, false, json!({})),
                pod("c", 2, true, terminating.clone()),
            ],
            vec![(
                v(&["10.42.0.1", "10.42.0.2", "10.42.0.3"]),
                v(&[]),
                v(&["http:8080"]),
            )],
        ),
        (
            "terminating, no IP, finished and unselected pods are out",
            json!({}),
            vec![
                pod("a", 0, true, json!({})),
                pod("term", 1, true, terminating),
                pod("noip", 2, true, json!({"status": {"podIP": null}})),
                pod("done", 3, false, json!({"status": {"phase": "Succeeded"}})),
                pod("failed", 4, false, json!({"status": {"phase": "Failed"}})),
                pod(
                    "other",
                    5,
                    true,
                    json!({"metadata": {"labels": {"app": "db"}}}),
                ),
            ],
            vec![(v(&["10.42.0.1"]), v(&[]), v(&["http:8080"]))],
        ),
        ("no pods: no subsets", json!({}), vec![], vec![]),
        (
            "pending pods without an IP are not listed",
            json!({}),
            vec![pod(
                "p",
                0,
                false,
                json!({"status": {"phase": "Pending", "podIP": null}}),
            )],
            vec![],
        ),
    ];
    for (name, extra, pods, want) in cases {
        let s = svc(extra);
        let refs: Vec<&Pod> = pods.iter().collect();
        assert_eq!(shape(&endpoints_for(&s, &refs)), want, "{name}");
    }
}

#[test]
fn ports_resolve_per_pod_and_subsets_group_by_port_set() {
    let two_ports = json!({"spec": {"ports": [
        {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "protocol": "TCP"}]}});
    let web = |port: i32| json!({"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"name": "web", "containerPort": port}]}]}});
    let cases: Vec<Case> = vec![
        (
            "named targetPort per pod; defaulted targetPort; pods without the name skip that port",
            two_ports,
            vec![
                pod("a", 0, true, web(8080)),
                pod("b", 1, true, web(8081)),
                pod("c", 2, false, web(8080)),
                pod("d", 3, true, json!({})), // no port named web
            ],
            // Repacked as Kubernetes does: ports with the same (address,
            // readiness) set share a subset.
            vec![
                (v(&["10.42.0.1"]), v(&["10.42.0.3"]), v(&["http:8080"])),
                (v(&["10.42.0.2"]), v(&[]), v(&["http:8081"])),
                (
                    v(&["10.42.0.1", "10.42.0.2", "10.42.0.4"]),
                    v(&["10.42.0.3"]),
                    v(&["metrics:9090"]),
                ),
            ],
        ),
        (
            "ports every address shares go in one subset",
            json!({"spec": {"ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "metrics", "port": 9090, "protocol": "TCP"}]}}),
            vec![pod("a", 0, true, json!({})), pod("b", 1, false, json!({}))],
            vec![(
                v(&["10.42.0.1"]),
                v(&["10.42.0.2"]),
                v(&["http:8080", "metrics:9090"]),
            )],
        ),
        (
            "a named port of another protocol does not match",
            json!({"spec": {"ports": [{"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}]}}),
            vec![
                pod(
                    "a",
                    0,
                    true,
                    json!({"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"name": "dns", "containerPort": 5353}]}]}}),
                ),
                pod(
                    "b",
                    1,
                    true,
                    json!({"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"name": "dns", "containerPort": 5353, "protocol": "UDP"}]}]}}),
                ),
            ],
            vec![(v(&["10.42.0.2"]), v(&[]), v(&["dns:5353"]))],
        ),
        (
            "headless without ports: addresses without ports",
            json!({"spec": {"clusterIP": "None", "ports": null}}),
            vec![pod("a", 0, true, json!({}))],
            vec![(v(&["10.42.0.1"]), v(&[]), v(&[]))],
        ),
    ];
    for (name, extra, pods, want) in cases {
        let s = svc(extra);
        let refs: Vec<&Pod> = pods.iter().collect();
        assert_eq!(shape(&endpoints_for(&s, &refs)), want, "{name}");
    }
}

#[test]
fn addresses_carry_node_target_ref_and_hostname_when_the_subdomain_matches() {
    let s = svc(json!({}));
    let with = pod(
        "a",
        0,
        true,
        json!({"spec": {"hostname": "a-host", "subdomain": "web"}}),
    );
    let other = pod(
        "b",
        1,
        true,
        json!({"spec": {"hostname": "b-host", "subdomain": "other"}}),
    );
    let e = endpoints_for(&s, &[&with, &other]);
    let got = serde_json::to_value(&e.subsets.unwrap()[0].addresses).unwrap();
    assert_eq!(
        got,
        json!([
            {"ip": "10.42.0.1", "hostname": "a-host", "nodeName": "n1",
             "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}},
            {"ip": "10.42.0.2", "nodeName": "n1",
             "targetRef": {"kind": "Pod", "namespace": "default", "name": "b", "uid": "uid-b"}}
        ])
    );
}

#[test]
fn endpoints_labels_copy_the_service_and_mark_headless() {
    let cases = [
        ("10.43.0.10", json!({"app": "web"})),
        (
            "None",
            json!({"app": "web", "service.kubernetes.io/headless": ""}),
        ),
    ];
    for (ip, want) in cases {
        let s = svc(json!({"spec": {"clusterIP": ip}}));
        let e = endpoints_for(&s, &[]);
        assert_eq!(
            serde_json::to_value(&e.metadata.labels).unwrap(),
            want,
            "{ip}"
        );
        assert_eq!(e.metadata.name.as_deref(), Some("web"));
    }
}

#[test]
fn more_than_1000_addresses_are_truncated_ready_first() {
    let s = svc(json!({}));
    let cases = [
        (1000, 0, 1000, 0, false),
        (600, 500, 600, 400, true),
        (1200, 30, 1000, 0, true),
    ];
    for (ready, not_ready, want_ready, want_not, truncated) in cases {
        let pods: Vec<Pod> = (0..ready + not_ready)
            .map(|i| pod(&format!("p{i}"), i, i < ready, json!({})))
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let e = endpoints_for(&s, &refs);
        let shape = shape(&e);
        let (r, n): (usize, usize) = shape
            .iter()
            .fold((0, 0), |(r, n), s| (r + s.0.len(), n + s.1.len()));
        assert_eq!((r, n), (want_ready, want_not), "{ready}+{not_ready}");
        let ann = e
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(OVER_CAPACITY_ANNOTATION));
        assert_eq!(ann.map(String::as_str), truncated.then_some("truncated"));
    }
}

/// `obj` as the API server would return it (through JSON), with a resourceVersion.
fn stored<T: serde::Serialize + serde::de::DeserializeOwned>(obj: &T, name: &str) -> T {
    let mut v = serde_json::to_value(obj).unwrap();
    v["metadata"]["resourceVersion"] = json!("7");
    v["metadata"]["name"] = json!(name);
    v["metadata"]["uid"] = json!(format!("uid-{name}"));
    serde_json::from_value(v).unwrap()
}

#[test]
fn endpoints_are_written_only_when_they_change() {
    let s = svc(json!({}));
    let a = pod("a", 0, true, json!({}));
    let b = pod("b", 1, false, json!({}));
    let first = plan_endpoints(&s, &[&a, &b], None, Some("2026-11-28T07:01:00Z")).unwrap();
    assert_eq!(
        first.metadata.annotations.as_ref().unwrap()[TRIGGER_TIME_ANNOTATION],
        "2026-11-28T07:01:00Z"
    );
    let cur = stored(&first, "web");
    // Same inputs, a later trigger time: nothing to write.
    assert_eq!(
        plan_endpoints(&s, &[&a, &b], Some(&cur), Some("2026-11-28T08:00:00Z")),
        None
    );
    // Pods listed in another order: still nothing.
    assert_eq!(plan_endpoints(&s, &[&b, &a], Some(&cur), None), None);
    // b turns Ready: written, over the stored version.
    let b_ready = pod("b", 1, true, json!({}));
    let next = plan_endpoints(&s, &[&a, &b_ready], Some(&cur), None).unwrap();
    assert_eq!(next.metadata.resource_version.as_deref(), Some("7"));
    assert_eq!(
        shape(&next),
        vec![(v(&["10.42.0.1", "10.42.0.2"]), v(&[]), v(&["http:8080"]))]
    );
    // A service label change is written too.
    let relabeled = svc(json!({"metadata": {"labels": {"tier": "front"}}}));
    assert!(plan_endpoints(&relabeled, &[&a, &b], Some(&cur), None).is_some());
}

#[test]
fn services_without_a_selector_are_left_alone() {
    let cases = [
        (json!({}), true),
        (json!({"spec": {"selector": null}}), false),
        (json!({"spec": {"selector": {}}}), false),
        (
            json!({"spec": {"type": "ExternalName", "externalName": "x.example"}}),
            false,
        ),
    ];
    for (extra, served) in cases {
        let mut s = svc(extra.clone());
        if extra["spec"]["selector"] == json!({}) {
            s.spec.as_mut().unwrap().selector = Some(BTreeMap::new());
        }
        assert_eq!(selector(&s).is_some(), served, "{extra}");
    }
}

// --- EndpointSlices ------------------------------------------------------

fn nodes(ns: &[Node]) -> HashMap<String, &Node> {
    ns.iter()
        .map(|n| (n.metadata.name.clone().unwrap(), n))
        .collect()
}

/// (ready, serving, terminating) of each endpoint by pod name, over all slices.
fn conditions(slices: &[EndpointSlice]) -> BTreeMap<String, (bool, bool, bool)> {
    slices
        .iter()
        .flat_map(|s| &s.endpoints)
        .map(|e| {
            let c = e.conditions.clone().unwrap();
            (
                e.target_ref.as_ref().unwrap().name.clone().unwrap(),
                (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap()),
            )
        })
        .collect()
}

#[test]
fn slice_conditions_follow_readiness_and_termination() {
    let terminating = json!({"metadata": {"deletionTimestamp": "2026-11-28T07:02:00Z"}});
    let n = [node("n1", None)];
    let cases = [
        ("ready", json!({}), true, json!({}), (true, true, false)),
        (
            "not ready",
            json!({}),
            false,
            json!({}),
            (false, false, false),
        ),
        (
            "ready, terminating",
            json!({}),
            true,
            terminating.clone(),
            (false, true, true),
        ),
        (
            "not ready, terminating",
            json!({}),
            false,
            terminating.clone(),
            (false, false, true),
        ),
        (
            "publishNotReadyAddresses, not ready",
            json!({"spec": {"publishNotReadyAddresses": true}}),
            false,
            json!({}),
            (true, false, false),
        ),
        (
            "publishNotReadyAddresses, terminating",
            json!({"spec": {"publishNotReadyAddresses": true}}),
            true,
            terminating,
            (true, true, true),
        ),
    ];
    for (name, extra, ready, pod_extra, want) in cases {
        let s = svc(extra);
        let p = pod("p", 0, ready, pod_extra);
        let plan = plan_slices(&s, &[&p], &nodes(&n), &[], 100, None);
        assert_eq!(
            conditions(&plan.create),
            BTreeMap::from([("p".to_string(), want)]),
            "{name}"
        );
    }
}

#[test]
fn a_new_slice_looks_as_kubernetes_writes_it() {
    let s = svc(
        json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080,
        "protocol": "TCP", "appProtocol": "http"}]}}),
    );
    let n = [node("n1", Some("zone-a"))];
    let p = pod(
        "a",
        0,
        true,
        json!({"spec": {"hostname": "a", "subdomain": "web"}}),
    );
    let plan = plan_slices(
        &s,
        &[&p],
        &nodes(&n),
        &[],
        100,
        Some("2026-11-28T07:01:00Z"),
    );
    assert_eq!(plan.create.len(), 1);
    assert_eq!(
        serde_json::to_value(&plan.create[0]).unwrap(),
        json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "addressType": "IPv4",
            "endpoints": [{
                "addresses": ["10.42.0.1"],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "hostname": "a",
                "nodeName": "n1",
                "targetRef": {"kind": "Pod", "name": "a", "namespace": "default", "uid": "uid-a"},
                "zone": "zone-a"
            }],
            "metadata": {
                "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2026-11-28T07:01:00Z"},
                "generateName": "web-",
                "labels": {"app": "web", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                           "kubernetes.io/service-name": "web"},
                "namespace": "default",
                "ownerReferences": [{"apiVersion": "v1", "blockOwnerDeletion": true, "controller": true,
                                     "kind": "Service", "name": "web", "uid": "svc-uid"}]
            },
            "ports": [{"appProtocol": "http", "name": "http", "port": 8080, "protocol": "TCP"}]
        })
    );
}

#[test]
fn slice_labels_keep_the_controllers_own_and_mark_headless() {
    let s = svc(
        json!({"metadata": {"labels": {"kubernetes.io/service-name": "spoof",
        "endpointslice.kubernetes.io/managed-by": "me"}}, "spec": {"clusterIP": "None"}}),
    );
    assert_eq!(
        serde_json::to_value(slice_labels(&s)).unwrap(),
        json!({"app": "web", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
               "kubernetes.io/service-name": "web", "service.kubernetes.io/headless": ""})
    );
}

#[test]
fn pods_on_unknown_nodes_are_left_out_of_slices_unless_publishing_not_ready() {
    let p = pod("a", 0, true, json!({"spec": {"nodeName": "gone"}}));
    let n = [node("n1", None)];
    for (extra, listed) in [
        (json!({}), false),
        (json!({"spec": {"publishNotReadyAddresses": true}}), true),
    ] {
        let s = svc(extra.clone());
        let plan = plan_slices(&s, &[&p], &nodes(&n), &[], 100, None);
        assert_eq!(plan.create.len(), 1, "{extra}");
        assert_eq!(
            plan.create[0].endpoints.len(),
            usize::from(listed),
            "{extra}"
        );
    }
}

/// Plans, then pretends the API stored the result (names s0, s1, ...).
fn apply(plan: SlicePlan, existing: Vec<EndpointSlice>) -> Vec<EndpointSlice> {
    let mut out: Vec<EndpointSlice> = existing
        .into_iter()
        .filter(|s| !plan.delete.contains(s.metadata.name.as_ref().unwrap()))
        .filter(|s| {
            !plan
                .update
                .iter()
                .any(|u| u.metadata.name == s.metadata.name)
        })
        .collect();
    for u in plan.update {
        let name = u.metadata.name.clone().unwrap();
        out.push(stored(&u, &name));
    }
    let base = out.len() + 100;
    for (i, c) in plan.create.into_iter().enumerate() {
        out.push(stored(&c, &format!("web-s{}", base + i)));
    }
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

fn sizes(slices: &[EndpointSlice]) -> Vec<usize> {
    let mut v: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
    v.sort();
    v
}

#[test]
fn slices_hold_at_most_max_endpoints_and_change_as_little_as_they_can() {
    let s = svc(json!({}));
    let n = [node("n1", None)];
    let nodes = nodes(&n);
    let mut pods: Vec<Pod> = (0..250)
        .map(|i| pod(&format!("p{i:03}"), i, true, json!({})))
        .collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let plan = plan_slices(&s, &refs, &nodes, &[], 100, None);
    assert_eq!(
        (plan.create.len(), plan.update.len(), plan.delete.len()),
        (3, 0, 0)
    );
    let slices = apply(plan, vec![]);
    assert_eq!(sizes(&slices), vec![50, 100, 100]);

    // Unchanged: no writes at all.
    let existing: Vec<&EndpointSlice> = slices.iter().collect();
    assert!(plan_slices(&s, &refs, &nodes, &existing, 100, None).is_empty());

    // One pod turns not Ready: exactly its slice is updated.
    pods[7] = pod("p007", 7, false, json!({}));
    let refs: Vec<&Pod> = pods.iter().collect();
    let plan = plan_slices(&s, &refs, &nodes, &existing, 100, None);
    assert_eq!(
        (plan.create.len(), plan.update.len(), plan.delete.len()),
        (0, 1, 0)
    );
    assert_eq!(conditions(&plan.update)["p007"], (false, false, false));
    let slices = apply(plan, slices.clone());
    assert_eq!(sizes(&slices), vec![50, 100, 100]);

    // Ten pods go and five come: the new ones fill the slices being changed.
    let mut pods: Vec<Pod> = pods.split_off(10);
    pods.extend((300..305).map(|i| pod(&format!("p{i}"), i, true, json!({}))));
    let refs: Vec<&Pod> = pods.iter().collect();
    let existing: Vec<&EndpointSlice> = slices.iter().collect();
    let plan = plan_slices(&s, &refs, &nodes, &existing, 100, None);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    let slices = apply(plan, slices.clone());
    assert_eq!(sizes(&slices).iter().sum::<usize>(), 245);
    assert_eq!(slices.len(), 3);

    // Every pod gone: one placeholder slice without endpoints or ports.
    let existing: Vec<&EndpointSlice> = slices.iter().collect();
    let plan = plan_slices(&s, &[], &nodes, &existing, 100, None);
    let slices = apply(plan, slices.clone());
    assert_eq!(sizes(&slices), vec![0]);
    assert_eq!(slices[0].ports.as_deref().unwrap_or(&[]).len(), 0);
    // ... which then stays as it is.
    let existing: Vec<&EndpointSlice> = slices.iter().collect();
    assert!(plan_slices(&s, &[], &nodes, &existing, 100, None).is_empty());
}

#[test]
fn pods_with_different_ports_go_to_different_slices() {
    let s = svc(
        json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}]}}),
    );
    let n = [node("n1", None)];
    let web = |port: i32| json!({"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"name": "web", "containerPort": port}]}]}});
    let a = pod("a", 0, true, web(8080));
    let b = pod("b", 1, true, web(9090));
    let c = pod("c", 2, true, json!({}));
    let plan = plan_slices(&s, &[&a, &b, &c], &nodes(&n), &[], 100, None);
    let mut got: Vec<(Vec<i32>, usize)> = plan
        .create
        .iter()
        .map(|s| {
            (
                s.ports.iter().flatten().map(|p| p.port.unwrap()).collect(),
                s.endpoints.len(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, vec![(vec![], 1), (vec![8080], 1), (vec![9090], 1)]);
}

#[test]
fn a_slice_with_stale_labels_or_another_port_set_is_fixed() {
    let s = svc(json!({}));
    let n = [node("n1", None)];
    let p = pod("a", 0, true, json!({}));
    let slices = apply(plan_slices(&s, &[&p], &nodes(&n), &[], 100, None), vec![]);
    // The Service gets a new label: the slice is updated, not replaced.
    let relabeled = svc(json!({"metadata": {"labels": {"tier": "front"}}}));
    let existing: Vec<&EndpointSlice> = slices.iter().collect();
    let plan = plan_slices(&relabeled, &[&p], &nodes(&n), &existing, 100, None);
    assert_eq!((plan.create.len(), plan.update.len()), (0, 1));
    assert_eq!(
        plan.update[0].metadata.labels.as_ref().unwrap()["tier"],
        "front"
    );
    // The Service's port changes: a new slice, the old one deleted.
    let moved = svc(
        json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8081, "protocol": "TCP"}]}}),
    );
    let plan = plan_slices(&moved, &[&p], &nodes(&n), &existing, 100, None);
    assert_eq!(
        (plan.create.len(), plan.update.len(), plan.delete.len()),
        (1, 0, 1)
    );
}

#[test]
fn the_trigger_time_is_the_newest_change() {
    let s = svc(json!({}));
    let a = pod("a", 0, true, json!({}));
    let b = pod(
        "b",
        1,
        true,
        json!({"status": {"conditions": [{"type": "Ready", "status": "True",
        "lastTransitionTime": "2026-11-28T07:05:00Z"}]}}),
    );
    assert_eq!(
        trigger_time(&s, &[]).as_deref(),
        Some("2026-11-28T07:00:00Z")
    );
    assert_eq!(
        trigger_time(&s, &[&a, &b]).as_deref(),
        Some("2026-11-28T07:05:00Z")
    );
}
