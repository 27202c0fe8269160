//! Table tests of the node lifecycle planner: what a user sees on the node and its pods.

use super::*;
use serde_json::{Value, json};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const T0: &str = "2026-11-28T07:00:00Z";
const GRACE: Duration = Duration::from_secs(40);

fn node(conditions: Value, taints: Value, unschedulable: bool) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": "a", "creationTimestamp": "2026-11-28T06:00:00Z"},
        "spec": {"taints": taints, "unschedulable": unschedulable},
        "status": {"conditions": conditions},
    }))
    .unwrap()
}

fn kubelet_conditions(ready: &str, heartbeat: &str) -> Value {
    let c = |ty: &str, st: &str| {
        json!({"type": ty, "status": st, "reason": "KubeletReady", "message": "m",
               "lastHeartbeatTime": heartbeat, "lastTransitionTime": "2026-11-28T06:00:00Z"})
    };
    json!([
        c("Ready", ready),
        c("MemoryPressure", "False"),
        c("DiskPressure", "False"),
        c("PIDPressure", "False")
    ])
}

fn lease(renew: &str) -> Lease {
    serde_json::from_value(
        json!({"metadata": {"name": "a", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "a", "renewTime": renew}}),
    )
    .unwrap()
}

fn taint_keys(p: &NodePlan) -> Option<Vec<(String, String)>> {
    p.taints.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.key.clone(), t.effect.clone()))
            .collect()
    })
}

fn pairs(v: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
    Some(
        v.iter()
            .map(|(k, e)| (k.to_string(), e.to_string()))
            .collect(),
    )
}

/// (name, node, lease renewTime, conditions turn Unknown, taints after)
type NodeCase<'a> = (
    &'a str,
    Node,
    Option<&'a str>,
    bool,
    Option<Vec<(String, String)>>,
);

#[test]
fn node_health_and_taints() {
    let now = ts("2026-11-28T07:01:00Z");
    let long_ago = ts("2026-11-28T06:00:00Z");
    let unreachable = json!([
        {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": T0},
        {"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": T0}]);
    // (name, node, lease renewTime, conditions turn Unknown, taints after)
    let cases: Vec<NodeCase> = vec![
        (
            "a fresh lease keeps a Ready node as it is",
            node(
                kubelet_conditions("True", "2026-11-28T06:00:00Z"),
                json!([]),
                false,
            ),
            Some("2026-11-28T07:00:50Z"),
            false,
            None,
        ),
        (
            "a fresh heartbeat counts when the lease is stale",
            node(
                kubelet_conditions("True", "2026-11-28T07:00:30Z"),
                json!([]),
                false,
            ),
            Some("2026-11-28T06:00:00Z"),
            false,
            None,
        ),
        (
            "silence beyond the grace period: Unknown and unreachable",
            node(
                kubelet_conditions("True", "2026-11-28T07:00:10Z"),
                json!([]),
                false,
            ),
            Some("2026-11-28T07:00:15Z"),
            true,
            pairs(&[(UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")]),
        ),
        (
            "a kubelet that reports Ready=False: not-ready",
            node(
                kubelet_conditions("False", "2026-11-28T07:00:50Z"),
                json!([]),
                false,
            ),
            Some("2026-11-28T07:00:50Z"),
            false,
            pairs(&[(NOT_READY, "NoExecute"), (NOT_READY, "NoSchedule")]),
        ),
        (
            "Ready again: the taints go, others stay",
            node(
                kubelet_conditions("True", "2026-11-28T07:00:50Z"),
                json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"},
                     {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": T0},
                     {"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": T0}]),
                false,
            ),
            Some("2026-11-28T07:00:50Z"),
            false,
            pairs(&[("dedicated", "NoSchedule")]),
        ),
        (
            "already Unknown and tainted: nothing to write",
            node(
                json!(
                    KUBELET_CONDITIONS.map(|t| json!({"type": t, "status": "Unknown",
                "lastHeartbeatTime": "2026-11-28T06:00:00Z"}))
                ),
                unreachable,
                false,
            ),
            Some("2026-11-28T06:00:00Z"),
            false,
            None,
        ),
        (
            "a cordoned node gets the unschedulable taint",
            node(
                kubelet_conditions("True", "2026-11-28T07:00:50Z"),
                json!([]),
                true,
            ),
            None,
            false,
            pairs(&[(UNSCHEDULABLE, "NoSchedule")]),
        ),
        (
            "memory pressure brings its NoSchedule taint",
            node(
                json!([{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-11-28T07:00:50Z"},
                     {"type": "MemoryPressure", "status": "True", "lastHeartbeatTime": "2026-11-28T07:00:50Z"}]),
                json!([]),
                false,
            ),
            None,
            false,
            pairs(&[("node.kubernetes.io/memory-pressure", "NoSchedule")]),
        ),
    ];
    for (name, n, renew, unknown, taints) in cases {
        let l = renew.map(lease);
        let plan = plan_node(&n, l.as_ref(), now, GRACE, long_ago, NoExecute::Follow);
        assert_eq!(
            plan.conditions.is_some(),
            unknown,
            "{name}: conditions {:?}",
            plan.conditions
        );
        assert_eq!(taint_keys(&plan), taints, "{name}");
        if let Some(ts) = &plan.taints {
            for t in ts
                .iter()
                .filter(|t| t.key == UNREACHABLE || t.key == NOT_READY)
            {
                assert!(t.time_added.is_some(), "{name}: {t:?} has timeAdded");
            }
        }
    }
}

#[test]
fn a_silent_node_shows_kubernetes_unknown_conditions() {
    let now = ts("2026-11-28T07:01:00Z");
    let n = node(
        kubelet_conditions("True", "2026-11-28T07:00:00Z"),
        json!([]),
        false,
    );
    let plan = plan_node(
        &n,
        None,
        now,
        GRACE,
        ts("2026-11-28T06:00:00Z"),
        NoExecute::Follow,
    );
    let conds = plan.conditions.unwrap();
    let types: Vec<&str> = conds.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, KUBELET_CONDITIONS.to_vec());
    for c in &conds {
        assert_eq!(c.status, "Unknown");
        assert_eq!(c.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            c.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(c.last_transition_time.as_ref().unwrap().0, now);
        assert_eq!(
            c.last_heartbeat_time.as_ref().unwrap().0,
            ts("2026-11-28T07:00:00Z"),
            "the last heartbeat stays"
        );
    }
    let taints = plan.taints.unwrap();
    assert_eq!(taints[0].time_added.as_ref().unwrap().0, now);
}

#[test]
fn a_node_that_never_posted_gets_never_updated_conditions() {
    let n: Node = serde_json::from_value(
        json!({"metadata": {"name": "a", "creationTimestamp": "2026-11-28T06:00:00Z"}}),
    )
    .unwrap();
    let plan = plan_node(
        &n,
        None,
        ts(T0),
        GRACE,
        ts("2026-11-28T05:00:00Z"),
        NoExecute::Follow,
    );
    let conds = plan.conditions.unwrap();
    assert_eq!(conds.len(), 4);
    assert!(conds.iter().all(|c| c.status == "Unknown"
        && c.reason.as_deref() == Some("NodeStatusNeverUpdated")
        && c.message.as_deref() == Some("Kubelet never posted node status.")));
}

#[test]
fn the_grace_period_starts_no_earlier_than_the_controller() {
    let n = node(
        kubelet_conditions("True", "2026-11-28T05:00:00Z"),
        json!([]),
        false,
    );
    let started = ts("2026-11-28T07:00:30Z");
    let plan = plan_node(
        &n,
        None,
        ts("2026-11-28T07:01:00Z"),
        GRACE,
        started,
        NoExecute::Follow,
    );
    assert_eq!(
        plan,
        NodePlan::default(),
        "30 s after start is within the grace"
    );
    let plan = plan_node(
        &n,
        None,
        ts("2026-11-28T07:01:11Z"),
        GRACE,
        started,
        NoExecute::Follow,
    );
    assert!(plan.conditions.is_some());
}

fn pod(tolerations: Value, ready: &str, terminating: bool) -> Pod {
    let mut v = json!({"metadata": {"name": "p", "namespace": "default"},
        "spec": {"nodeName": "a", "containers": [], "tolerations": tolerations},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ready}]}});
    if terminating {
        v["metadata"]["deletionTimestamp"] = json!(T0);
    }
    serde_json::from_value(v).unwrap()
}

fn taints(v: Value) -> Vec<Taint> {
    serde_json::from_value(v).unwrap()
}

#[test]
fn the_taint_manager_deletes_per_toleration() {
    let now = ts("2026-11-28T07:01:00Z");
    let unreachable = json!([{"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": T0}]);
    let default_tol = |s: i64| {
        json!([{"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": s},
               {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": s}])
    };
    let cases = [
        ("no taints", json!([]), json!([]), Eviction::Never),
        (
            "only NoSchedule",
            json!([{"key": UNREACHABLE, "effect": "NoSchedule"}]),
            json!([]),
            Eviction::Never,
        ),
        (
            "not tolerated",
            unreachable.clone(),
            json!([]),
            Eviction::Now,
        ),
        (
            "tolerated for 300 s",
            unreachable.clone(),
            default_tol(300),
            Eviction::At(ts("2026-11-28T07:05:00Z")),
        ),
        (
            "tolerated for 30 s, already past",
            unreachable.clone(),
            default_tol(30),
            Eviction::Now,
        ),
        (
            "tolerated forever",
            unreachable.clone(),
            json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]),
            Eviction::Never,
        ),
        (
            "tolerationSeconds 0",
            unreachable.clone(),
            default_tol(0),
            Eviction::Now,
        ),
        (
            "a wildcard toleration",
            unreachable.clone(),
            json!([{"operator": "Exists"}]),
            Eviction::Never,
        ),
        (
            "the shortest of several wins",
            unreachable.clone(),
            json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 600},
                {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 120}]),
            Eviction::At(ts("2026-11-28T07:02:00Z")),
        ),
        (
            "one of two taints not tolerated",
            json!([{"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": T0},
                {"key": "maintenance", "value": "x", "effect": "NoExecute"}]),
            default_tol(300),
            Eviction::Now,
        ),
        (
            "Equal needs the value",
            json!([{"key": "maintenance", "value": "x", "effect": "NoExecute", "timeAdded": T0}]),
            json!([{"key": "maintenance", "operator": "Equal", "value": "y", "effect": "NoExecute"}]),
            Eviction::Now,
        ),
    ];
    for (name, t, tol, want) in cases {
        let p = pod(tol, "True", false);
        assert_eq!(taint_eviction(&p, &taints(t), now), want, "{name}");
    }
}

#[test]
fn pods_on_a_node_that_is_not_ready() {
    let now = ts("2026-11-28T07:01:00Z");
    let down = node(
        json!([{"type": "Ready", "status": "Unknown"}]),
        json!([{"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": T0}]),
        false,
    );
    let up = node(
        json!([{"type": "Ready", "status": "True"}]),
        json!([]),
        false,
    );
    let tol = json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]);
    let cases = [
        (
            "ready pod on a lost node",
            &down,
            pod(tol.clone(), "True", false),
            PodPlan {
                mark_not_ready: true,
                eviction: Eviction::At(ts("2026-11-28T07:05:00Z")),
            },
        ),
        (
            "already not ready",
            &down,
            pod(tol.clone(), "False", false),
            PodPlan {
                mark_not_ready: false,
                eviction: Eviction::At(ts("2026-11-28T07:05:00Z")),
            },
        ),
        (
            "terminating already",
            &down,
            pod(json!([]), "False", true),
            PodPlan {
                mark_not_ready: false,
                eviction: Eviction::Never,
            },
        ),
        (
            "healthy node",
            &up,
            pod(tol, "True", false),
            PodPlan {
                mark_not_ready: false,
                eviction: Eviction::Never,
            },
        ),
    ];
    for (name, n, p, want) in cases {
        assert_eq!(plan_pod(&p, n, now), want, "{name}");
    }
}

#[test]
fn a_pod_condition_keeps_its_transition_time_while_its_status_stays() {
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
        "status": {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": T0}]}}))
    .unwrap();
    let later = Time(ts("2026-11-28T07:05:00Z"));
    let same = PodCondition {
        type_: "Ready".into(),
        status: "False".into(),
        last_transition_time: Some(later.clone()),
        ..Default::default()
    };
    assert_eq!(updated_condition(&p, same), None, "no change, no write");
    let flip = PodCondition {
        type_: "Ready".into(),
        status: "True".into(),
        last_transition_time: Some(later.clone()),
        ..Default::default()
    };
    assert_eq!(
        updated_condition(&p, flip).unwrap().last_transition_time,
        Some(later.clone())
    );
    let new = PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        last_transition_time: Some(later.clone()),
        ..Default::default()
    };
    assert_eq!(
        updated_condition(&p, new).unwrap().last_transition_time,
        Some(later)
    );
}

fn named(name: &str, zone: &str, ready: &str, taints: Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "creationTimestamp": "2026-11-28T06:00:00Z",
                     "labels": {"topology.kubernetes.io/zone": zone}},
        "spec": {"taints": taints},
        "status": {"conditions": [{"type": "Ready", "status": ready,
                                   "lastHeartbeatTime": "2026-11-28T07:00:50Z"}]},
    }))
    .unwrap()
}

#[test]
fn zone_states_follow_kubernetes() {
    let cases = [
        ("all ready", vec![true, true, true], ZoneState::Normal),
        ("one of two down", vec![true, false], ZoneState::Normal),
        ("none ready", vec![false], ZoneState::FullDisruption),
        (
            "two of three down: not more than two",
            vec![false, false, true],
            ZoneState::Normal,
        ),
        (
            "three of five down: 60 %",
            vec![false, false, false, true, true],
            ZoneState::PartialDisruption,
        ),
        (
            "three of six down: 50 %",
            vec![false, false, false, true, true, true],
            ZoneState::Normal,
        ),
    ];
    for (name, ready, want) in cases {
        assert_eq!(zone_state(&ready), want, "{name}");
    }
}

#[test]
fn no_execute_taints_by_the_cluster_disruption() {
    let now = ts("2026-11-28T07:01:00Z");
    let started = ts("2026-11-28T06:00:00Z");
    let held = json!([{"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": T0}]);
    let no_exec = |plans: &HashMap<String, NodePlan>, nodes: &[&Node], name: &str| -> Vec<String> {
        let n = nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
            .unwrap();
        let taints = plans[name]
            .taints
            .clone()
            .or_else(|| n.spec.as_ref().and_then(|s| s.taints.clone()))
            .unwrap_or_default();
        taints
            .iter()
            .filter(|t| t.effect == "NoExecute")
            .map(|t| t.key.clone())
            .collect()
    };
    // One node lost among healthy ones: tainted.
    let (a, b) = (
        named("a", "z1", "Unknown", json!([])),
        named("b", "z1", "True", json!([])),
    );
    let nodes = [&a, &b];
    let plans = plan_cluster(&nodes, &HashMap::new(), now, GRACE, started);
    assert_eq!(no_exec(&plans, &nodes, "a"), vec![UNREACHABLE.to_string()]);
    // Every node of every zone down (a single-node cluster whose kubelet is not Ready,
    // or the server cut off): no NoExecute taints, existing ones lifted.
    let (a, b) = (
        named("a", "z1", "False", held.clone()),
        named("b", "z2", "Unknown", json!([])),
    );
    let nodes = [&a, &b];
    let plans = plan_cluster(&nodes, &HashMap::new(), now, GRACE, started);
    assert!(no_exec(&plans, &nodes, "a").is_empty());
    assert!(no_exec(&plans, &nodes, "b").is_empty());
    // One zone fully down while another is healthy: that zone is tainted.
    let (a, b) = (
        named("a", "z1", "False", json!([])),
        named("b", "z2", "True", json!([])),
    );
    let nodes = [&a, &b];
    let plans = plan_cluster(&nodes, &HashMap::new(), now, GRACE, started);
    assert_eq!(no_exec(&plans, &nodes, "a"), vec![NOT_READY.to_string()]);
    // A partially disrupted zone: taints already there stay, no new ones.
    let zone: Vec<Node> = vec![
        named("p1", "z1", "Unknown", held.clone()),
        named("p2", "z1", "Unknown", json!([])),
        named("p3", "z1", "Unknown", json!([])),
        named("p4", "z1", "True", held),
        named("h", "z2", "True", json!([])),
    ];
    let nodes: Vec<&Node> = zone.iter().collect();
    let plans = plan_cluster(&nodes, &HashMap::new(), now, GRACE, started);
    assert_eq!(no_exec(&plans, &nodes, "p1"), vec![UNREACHABLE.to_string()]);
    assert!(no_exec(&plans, &nodes, "p2").is_empty());
    assert!(
        no_exec(&plans, &nodes, "p4").is_empty(),
        "a Ready node loses it"
    );
}
