//! Table tests across the plugins, built from JSON objects as users write them.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use crate::filter::*;
use crate::score::*;
use crate::*;

pub(crate) fn pod(spec: Value) -> Pod {
    pod_l("p", json!({}), spec)
}

pub(crate) fn pod_l(name: &str, labels: Value, spec: Value) -> Pod {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "nginx"}]);
    }
    serde_json::from_value(
        json!({"metadata": {"name": name, "namespace": "default", "labels": labels}, "spec": spec}),
    )
    .unwrap()
}

pub(crate) fn node(name: &str, labels: Value, spec: Value) -> Node {
    let mut l = labels;
    l["kubernetes.io/hostname"] = json!(name);
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": l},
        "spec": spec,
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "10Gi"}},
    }))
    .unwrap()
}

pub(crate) fn bound(mut p: Pod, node: &str) -> Pod {
    p.spec.as_mut().unwrap().node_name = Some(node.into());
    p
}

pub(crate) fn req(cpu: &str, mem: &str) -> Value {
    json!([{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": cpu, "memory": mem}}}])
}

fn check(p: &Pod, n: Node, existing: Vec<Pod>) -> Result<(), Vec<String>> {
    let snap = Snapshot::new(vec![n], &existing);
    filter(p, &snap.nodes[0], &snap).map_err(|r| r.reasons)
}

fn node_affinity(exprs: Value, fields: Value) -> Value {
    json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": exprs, "matchFields": fields}]}}}})
}

type Case = (&'static str, Pod, Node, Vec<Pod>, Result<(), Vec<String>>);

#[test]
fn filters_pass_and_fail_with_kubernetes_reasons() {
    let untainted = || node("n1", json!({"zone": "a", "gen": "5"}), json!({}));
    let tainted = |t: Value| node("n1", json!({}), json!({"taints": [t]}));
    let ok = Ok(());
    let err = |s: &str| Err(vec![s.to_string()]);
    let cases: Vec<Case> = vec![
        (
            "plain pod fits",
            pod(json!({})),
            untainted(),
            vec![],
            ok.clone(),
        ),
        (
            "cordoned",
            pod(json!({})),
            node("n1", json!({}), json!({"unschedulable": true})),
            vec![],
            err(ERR_UNSCHEDULABLE),
        ),
        (
            "cordoned but tolerated",
            pod(
                json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}),
            ),
            node("n1", json!({}), json!({"unschedulable": true})),
            vec![],
            ok.clone(),
        ),
        (
            "nodeName other",
            pod(json!({"nodeName": "n2"})),
            untainted(),
            vec![],
            err(ERR_NODE_NAME),
        ),
        (
            "nodeName same",
            pod(json!({"nodeName": "n1"})),
            untainted(),
            vec![],
            ok.clone(),
        ),
        (
            "untolerated taint",
            pod(json!({})),
            tainted(json!({"key": "dedicated", "value": "db", "effect": "NoSchedule"})),
            vec![],
            err("node(s) had untolerated taint {dedicated: db}"),
        ),
        (
            "PreferNoSchedule does not filter",
            pod(json!({})),
            tainted(json!({"key": "k", "value": "v", "effect": "PreferNoSchedule"})),
            vec![],
            ok.clone(),
        ),
        (
            "NoExecute untolerated",
            pod(json!({})),
            tainted(json!({"key": "k", "effect": "NoExecute"})),
            vec![],
            err("node(s) had untolerated taint {k: }"),
        ),
        (
            "Equal toleration",
            pod(
                json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}),
            ),
            tainted(json!({"key": "dedicated", "value": "db", "effect": "NoSchedule"})),
            vec![],
            ok.clone(),
        ),
        (
            "Equal toleration wrong value",
            pod(json!({"tolerations": [{"key": "dedicated", "value": "web"}]})),
            tainted(json!({"key": "dedicated", "value": "db", "effect": "NoSchedule"})),
            vec![],
            err("node(s) had untolerated taint {dedicated: db}"),
        ),
        (
            "empty key Exists tolerates everything",
            pod(json!({"tolerations": [{"operator": "Exists"}]})),
            tainted(json!({"key": "x", "value": "y", "effect": "NoExecute"})),
            vec![],
            ok.clone(),
        ),
        (
            "effect mismatch",
            pod(
                json!({"tolerations": [{"key": "x", "operator": "Exists", "effect": "NoExecute"}]}),
            ),
            tainted(json!({"key": "x", "value": "y", "effect": "NoSchedule"})),
            vec![],
            err("node(s) had untolerated taint {x: y}"),
        ),
        (
            "nodeSelector matches",
            pod(json!({"nodeSelector": {"zone": "a"}})),
            untainted(),
            vec![],
            ok.clone(),
        ),
        (
            "nodeSelector misses",
            pod(json!({"nodeSelector": {"zone": "b"}})),
            untainted(),
            vec![],
            err(ERR_NODE_AFFINITY),
        ),
        (
            "In",
            pod(node_affinity(
                json!([{"key": "zone", "operator": "In", "values": ["a", "b"]}]),
                json!([]),
            )),
            untainted(),
            vec![],
            ok.clone(),
        ),
        (
            "NotIn",
            pod(node_affinity(
                json!([{"key": "zone", "operator": "NotIn", "values": ["a"]}]),
                json!([]),
            )),
            untainted(),
            vec![],
            err(ERR_NODE_AFFINITY),
        ),
        (
            "NotIn absent label",
            pod(node_affinity(
                json!([{"key": "rack", "operator": "NotIn", "values": ["a"]}]),
                json!([]),
            )),
            untainted(),
            vec![],
            ok.clone(),
        ),
        (
            "Exists",
            pod(node_affinity(
                json!([{"key": "zone", "operator": "Exists"}]),
                json!([]),
            )),
            untainted(),
            vec![],
            ok.clone(),
        ),
        (
            "DoesNotExist",
            pod(node_affinity(
                json!([{"key": "zone", "operator": "DoesNotExist"}]),
                json!([]),
            )),
            untainted(),
            vec![],
            err(ERR_NODE_AFFINITY),
        ),
        (
            "Gt",
            pod(node_affinity(
                json!([{"key": "gen", "operator": "Gt", "values": ["4"]}]),
                json!([]),
            )),
            untainted(),
            vec![],
            ok.clone(),
        ),
        (
            "Gt equal fails",
            pod(node_affinity(
                json!([{"key": "gen", "operator": "Gt", "values": ["5"]}]),
                json!([]),
            )),
            untainted(),
            vec![],
            err(ERR_NODE_AFFINITY),
        ),
        (
            "Lt",
            pod(node_affinity(
                json!([{"key": "gen", "operator": "Lt", "values": ["6"]}]),
                json!([]),
            )),
            untainted(),
            vec![],
            ok.clone(),
        ),
        (
            "Lt non-integer label",
            pod(node_affinity(
                json!([{"key": "zone", "operator": "Lt", "values": ["6"]}]),
                json!([]),
            )),
            untainted(),
            vec![],
            err(ERR_NODE_AFFINITY),
        ),
        (
            "matchFields metadata.name",
            pod(node_affinity(
                json!([]),
                json!([{"key": "metadata.name", "operator": "In", "values": ["n1"]}]),
            )),
            untainted(),
            vec![],
            ok.clone(),
        ),
        (
            "matchFields NotIn own name",
            pod(node_affinity(
                json!([]),
                json!([{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]),
            )),
            untainted(),
            vec![],
            err(ERR_NODE_AFFINITY),
        ),
        (
            "empty term matches nothing",
            pod(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}}}}),
            ),
            untainted(),
            vec![],
            err(ERR_NODE_AFFINITY),
        ),
        (
            "host port clash",
            pod(
                json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
            ),
            untainted(),
            vec![bound(
                pod(
                    json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]}]}),
                ),
                "n1",
            )],
            err(ERR_NODE_PORTS),
        ),
        (
            "host port other protocol",
            pod(
                json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]}]}),
            ),
            untainted(),
            vec![bound(
                pod(
                    json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
                ),
                "n1",
            )],
            ok.clone(),
        ),
        (
            "host port other IPs",
            pod(
                json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"}]}]}),
            ),
            untainted(),
            vec![bound(
                pod(
                    json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]}]}),
                ),
                "n1",
            )],
            ok.clone(),
        ),
        (
            "insufficient cpu and memory",
            pod(json!({"containers": req("3", "6Gi")})),
            untainted(),
            vec![bound(pod(json!({"containers": req("2", "4Gi")})), "n1")],
            Err(vec![
                "Insufficient cpu".into(),
                "Insufficient memory".into(),
            ]),
        ),
        (
            "extended resource",
            pod(
                json!({"containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "1"}}}]}),
            ),
            untainted(),
            vec![],
            err("Insufficient nvidia.com/gpu"),
        ),
        (
            "ephemeral storage",
            pod(
                json!({"containers": [{"name": "c", "resources": {"requests": {"ephemeral-storage": "11Gi"}}}]}),
            ),
            untainted(),
            vec![],
            err("Insufficient ephemeral-storage"),
        ),
    ];
    for (name, p, n, existing, want) in cases {
        assert_eq!(check(&p, n, existing), want, "{name}");
    }
}

#[test]
fn too_many_pods() {
    let mut n = node("n1", json!({}), json!({}));
    n.status
        .as_mut()
        .unwrap()
        .allocatable
        .as_mut()
        .unwrap()
        .insert(
            "pods".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
        );
    assert_eq!(
        check(&pod(json!({})), n, vec![bound(pod(json!({})), "n1")]),
        Err(vec![ERR_TOO_MANY_PODS.into()])
    );
}

#[test]
fn pod_requests_sum_init_containers_sidecars_and_overhead() {
    let c =
        |cpu: &str| json!({"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "1Mi"}}});
    let sidecar = |cpu: &str| json!({"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": cpu}}});
    let cases = vec![
        (
            "app containers add up",
            json!({"containers": [c("100m"), c("200m")]}),
            300,
            2 << 20,
        ),
        (
            "init larger wins",
            json!({"containers": [c("100m")], "initContainers": [c("500m")]}),
            500,
            1 << 20,
        ),
        (
            "init smaller loses",
            json!({"containers": [c("1")], "initContainers": [c("500m")]}),
            1000,
            1 << 20,
        ),
        (
            "sidecar adds to app",
            json!({"containers": [c("100m")], "initContainers": [sidecar("50m")]}),
            150,
            1 << 20,
        ),
        (
            "init after sidecar runs beside it",
            json!({"containers": [c("100m")], "initContainers": [sidecar("300m"), c("500m")]}),
            800,
            1 << 20,
        ),
        (
            "overhead added",
            json!({"containers": [c("100m")], "overhead": {"cpu": "250m"}}),
            350,
            1 << 20,
        ),
    ];
    for (name, spec, cpu, mem) in cases {
        let r = pod_requests(&pod(spec));
        assert_eq!((r.milli_cpu, r.memory), (cpu, mem), "{name}");
    }
}

#[test]
fn pod_anti_affinity_by_hostname_and_existing_anti_affinity() {
    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    let web = |n: &str| bound(pod_l("w", json!({"app": "web"}), json!({})), n);
    let nodes = || {
        vec![
            node("n1", json!({}), json!({})),
            node("n2", json!({}), json!({})),
        ]
    };
    let snap = Snapshot::new(nodes(), &[web("n1")]);
    let incoming = pod_l("new", json!({"app": "web"}), anti.clone());
    assert_eq!(
        filter(&incoming, &snap.nodes[0], &snap)
            .unwrap_err()
            .reasons,
        vec![ERR_POD_ANTI_AFFINITY]
    );
    assert!(filter(&incoming, &snap.nodes[1], &snap).is_ok());
    // An existing pod's anti-affinity keeps a matching newcomer away.
    let snap = Snapshot::new(
        nodes(),
        &[bound(pod_l("w", json!({"app": "web"}), anti), "n1")],
    );
    let plain = pod_l("new", json!({"app": "web"}), json!({}));
    assert_eq!(
        filter(&plain, &snap.nodes[0], &snap).unwrap_err().reasons,
        vec![ERR_EXISTING_ANTI_AFFINITY]
    );
    // Required affinity: only where a matching pod is, except for the first of a self-matching group.
    let aff = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    let snap = Snapshot::new(
        nodes(),
        &[bound(pod_l("d", json!({"app": "db"}), json!({})), "n2")],
    );
    let p = pod_l("new", json!({}), aff.clone());
    assert_eq!(
        filter(&p, &snap.nodes[0], &snap).unwrap_err().reasons,
        vec![ERR_POD_AFFINITY]
    );
    assert!(filter(&p, &snap.nodes[1], &snap).is_ok());
    let empty = Snapshot::new(nodes(), &[]);
    assert!(
        filter(
            &pod_l("new", json!({"app": "db"}), aff.clone()),
            &empty.nodes[0],
            &empty
        )
        .is_ok()
    );
    assert!(filter(&pod_l("new", json!({}), aff), &empty.nodes[0], &empty).is_err());
}

#[test]
fn topology_spread_max_skew() {
    let spread = |skew: i32| {
        json!({"topologySpreadConstraints": [{"maxSkew": skew, "topologyKey": "zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]})
    };
    let nodes = || {
        vec![
            node("a1", json!({"zone": "a"}), json!({})),
            node("b1", json!({"zone": "b"}), json!({})),
            node("x", json!({}), json!({})),
        ]
    };
    let web = |n: &str| bound(pod_l("w", json!({"app": "web"}), json!({})), n);
    let snap = Snapshot::new(nodes(), &[web("a1"), web("a1"), web("b1")]);
    let cases = vec![
        (1, 0, Err(ERR_SPREAD)),
        (1, 1, Ok(())),
        (2, 0, Ok(())),
        (1, 2, Err(ERR_SPREAD_LABEL)),
    ];
    for (skew, node_idx, want) in cases {
        let p = pod_l("new", json!({"app": "web"}), spread(skew));
        let got = filter(&p, &snap.nodes[node_idx], &snap).map_err(|r| r.reasons[0].clone());
        assert_eq!(
            got,
            want.map_err(String::from),
            "skew {skew} node {node_idx}"
        );
    }
}

#[test]
fn least_allocated_and_balanced_allocation_math() {
    // 4 cpu / 8Gi node with 1 cpu / 2Gi requested; the pod asks 1 cpu / 2Gi.
    let snap = Snapshot::new(
        vec![node("n1", json!({}), json!({}))],
        &[bound(pod(json!({"containers": req("1", "2Gi")})), "n1")],
    );
    let p = pod(json!({"containers": req("1", "2Gi")}));
    assert_eq!(least_allocated(&p, &snap.nodes[0]), 50);
    assert_eq!(balanced_allocation(&p, &snap.nodes[0]), 100);
    // cpu 3/4 used, memory 2/8: (75 − 25) / 2 = 25 → 75; least: (25 + 75) / 2 = 50.
    let p = pod(json!({"containers": req("2", "0")}));
    assert_eq!(balanced_allocation(&p, &snap.nodes[0]), 75);
    // Without requests, scoring assumes 100m and 200Mi.
    let empty = Snapshot::new(vec![node("n1", json!({}), json!({}))], &[]);
    let best_effort = pod(json!({}));
    // cpu: (4000−100)·100/4000 = 97; memory: (8192−200)·100/8192 = 97.
    assert_eq!(least_allocated(&best_effort, &empty.nodes[0]), 97);
}

#[test]
fn scores_prefer_affinity_weights_taints_and_images() {
    let pref = json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}},
        {"weight": 30, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}}});
    let snap = Snapshot::new(
        vec![
            node("n1", json!({"ssd": "1"}), json!({})),
            node("n2", json!({"zone": "a"}), json!({})),
            node("n3", json!({"ssd": "1", "zone": "a"}), json!({})),
        ],
        &[],
    );
    let p = pod(pref);
    assert_eq!(
        snap.nodes
            .iter()
            .map(|n| node_affinity_raw(&p, n))
            .collect::<Vec<_>>(),
        vec![10, 30, 40]
    );
    let feasible: Vec<_> = snap.nodes.iter().collect();
    let scores = score(&p, &feasible, &snap);
    assert_eq!(
        scores.iter().map(|s| s.plugins[1]).collect::<Vec<_>>(),
        vec![25, 75, 100]
    );
    assert_eq!(schedule(&p, &snap, 0).unwrap(), "n3");

    // PreferNoSchedule: 2 untolerated, 1 untolerated, 0 → 0, 50, 100.
    let t = |k: &str| json!({"key": k, "effect": "PreferNoSchedule"});
    let snap = Snapshot::new(
        vec![
            node("n1", json!({}), json!({"taints": [t("a"), t("b")]})),
            node("n2", json!({}), json!({"taints": [t("a"), t("c")]})),
            node("n3", json!({}), json!({})),
        ],
        &[],
    );
    let p = pod(
        json!({"tolerations": [{"key": "c", "operator": "Exists", "effect": "PreferNoSchedule"}]}),
    );
    let feasible: Vec<_> = snap.nodes.iter().collect();
    assert_eq!(
        score(&p, &feasible, &snap)
            .iter()
            .map(|s| s.plugins[0])
            .collect::<Vec<_>>(),
        vec![0, 50, 100]
    );

    // ImageLocality: below 23 MiB scores 0; a 500 MiB image on 1 of 2 nodes scores (250−23)/(1000−23).
    let with_image = |name: &str, size: i64| {
        let mut n = node(name, json!({}), json!({}));
        n.status.as_mut().unwrap().images = Some(vec![
            serde_json::from_value(json!({"names": ["nginx:latest"], "sizeBytes": size})).unwrap(),
        ]);
        n
    };
    let mb = 1024 * 1024;
    let snap = Snapshot::new(
        vec![with_image("n1", 500 * mb), node("n2", json!({}), json!({}))],
        &[],
    );
    assert_eq!(
        image_locality(&pod(json!({})), &snap.nodes[0], &snap),
        100 * (250 - 23) / (1000 - 23)
    );
    assert_eq!(image_locality(&pod(json!({})), &snap.nodes[1], &snap), 0);
    let snap = Snapshot::new(vec![with_image("n1", 10 * mb)], &[]);
    assert_eq!(image_locality(&pod(json!({})), &snap.nodes[0], &snap), 0);
}

#[test]
fn preferred_pod_affinity_scores_topology() {
    let pref = json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}}]}}});
    let snap = Snapshot::new(
        vec![
            node("n1", json!({"zone": "a"}), json!({})),
            node("n2", json!({"zone": "a"}), json!({})),
            node("n3", json!({"zone": "b"}), json!({})),
        ],
        &[bound(pod_l("d", json!({"app": "db"}), json!({})), "n1")],
    );
    let p = pod(pref);
    let feasible: Vec<_> = snap.nodes.iter().collect();
    assert_eq!(
        score(&p, &feasible, &snap)
            .iter()
            .map(|s| s.plugins[4])
            .collect::<Vec<_>>(),
        vec![100, 100, 0]
    );
}

#[test]
fn fit_error_message_for_mixed_reasons() {
    let snap = Snapshot::new(
        vec![
            node(
                "n1",
                json!({}),
                json!({"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}),
            ),
            node(
                "n2",
                json!({}),
                json!({"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}),
            ),
            node("n3", json!({}), json!({})),
        ],
        &[],
    );
    let p = pod(json!({"containers": req("5", "1Gi")}));
    let err = schedule(&p, &snap, 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {dedicated: db}. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    let mut never = p.clone();
    never.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
    assert_eq!(
        schedule(&never, &snap, 0).unwrap_err().to_string(),
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {dedicated: db}. \
         preemption: not eligible due to preemptionPolicy=Never."
    );
    // Resolvable by preemption but nothing of lower priority to evict.
    let snap = Snapshot::new(
        vec![node("n1", json!({}), json!({}))],
        &[bound(pod(json!({"containers": req("3", "1Gi")})), "n1")],
    );
    let p = pod(json!({"containers": req("2", "1Gi")}));
    assert_eq!(
        schedule(&p, &snap, 0).unwrap_err().to_string(),
        "0/1 nodes are available: 1 Insufficient cpu. \
         preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
    // matchFields narrowing: nodes outside the list are reported by plugin.
    let snap = Snapshot::new(
        vec![
            node("n1", json!({}), json!({})),
            node("n2", json!({}), json!({"unschedulable": true})),
        ],
        &[],
    );
    let p = pod(node_affinity(
        json!([]),
        json!([{"key": "metadata.name", "operator": "In", "values": ["n2"]}]),
    ));
    assert_eq!(
        schedule(&p, &snap, 0).unwrap_err().to_string(),
        "0/2 nodes are available: 1 node(s) didn't satisfy plugin(s) [NodeAffinity], 1 node(s) were unschedulable. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
}

#[test]
fn schedule_breaks_ties_by_seed() {
    let snap = Snapshot::new(
        vec![
            node("n1", json!({}), json!({})),
            node("n2", json!({}), json!({})),
        ],
        &[],
    );
    assert_eq!(schedule(&pod(json!({})), &snap, 0).unwrap(), "n1");
    assert_eq!(schedule(&pod(json!({})), &snap, 1).unwrap(), "n2");
}

#[test]
fn queue_orders_by_priority_then_age_and_backs_off() {
    let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let s = |n: i64| t0 + jiff::SignedDuration::from_secs(n);
    let mut q = SchedulingQueue::new();
    q.add("ns/old-low", 0, s(0));
    q.add("ns/high", 100, s(2));
    q.add("ns/new-low", 0, s(1));
    let order: Vec<_> = std::iter::from_fn(|| q.pop(s(3)).map(|p| p.key)).collect();
    assert_eq!(order, vec!["ns/high", "ns/old-low", "ns/new-low"]);

    // Back-off doubles from 1 s to at most 10 s.
    let backoffs: Vec<i64> = (1..=6)
        .map(|a| {
            QueuedPod {
                key: String::new(),
                priority: 0,
                timestamp: t0,
                initial_attempt: t0,
                attempts: a,
            }
            .backoff_duration()
            .as_secs()
        })
        .collect();
    assert_eq!(backoffs, vec![1, 2, 4, 8, 10, 10]);

    let mut q = SchedulingQueue::new();
    q.add("ns/p", 0, s(0));
    let p = q.pop(s(0)).unwrap();
    assert_eq!(p.attempts, 1);
    q.backoff("ns/p", s(0));
    assert!(q.pop(s(0)).is_none(), "still backing off");
    assert_eq!(q.next_backoff_expiry(), Some(s(1)));
    assert_eq!(q.pop(s(1)).unwrap().attempts, 2);
    // Unschedulable pods wait for a cluster event; inside the back-off they go to the back-off queue.
    q.unschedulable("ns/p", s(1));
    assert!(q.pop(s(10)).is_none());
    q.move_all_to_active_or_backoff(s(2));
    assert_eq!(q.lens(), (0, 1, 0));
    assert_eq!(q.pop(s(3)).unwrap().attempts, 3);
    q.unschedulable("ns/p", s(3));
    q.move_all_to_active_or_backoff(s(20));
    assert_eq!(q.lens(), (1, 0, 0));
    // After five minutes unschedulable pods are retried without an event.
    q.pop(s(20)).unwrap();
    q.unschedulable("ns/p", s(20));
    assert!(q.pop(s(300)).is_none());
    assert!(q.pop(s(321)).is_some());
}
