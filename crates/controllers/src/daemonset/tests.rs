use super::*;
use crate::testing::merge;
use jiff::SignedDuration;

fn ds(extra: Value) -> DaemonSet {
    let mut v = json!({
        "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 2},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                 "template": {"metadata": {"labels": {"app": "agent"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn node(name: &str, extra: Value) -> Node {
    let mut v = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}});
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

/// A daemon pod on `node` with revision `hash`, available or not.
fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Pod {
    let conds = if ready {
        json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}])
    } else {
        json!([])
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": "agent", REVISION_HASH_LABEL: hash},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                "uid": "ds-uid", "controller": true}]},
        "spec": {"nodeName": node, "containers": []},
        "status": {"phase": "Running", "conditions": conds}
    }))
    .unwrap()
}

fn now() -> Timestamp {
    "2026-01-01T01:00:00Z".parse().unwrap()
}

#[test]
fn eligibility_follows_selectors_affinity_and_taints() {
    let taint =
        |key: &str, effect: &str| json!({"spec": {"taints": [{"key": key, "effect": effect}]}});
    // (what, ds extra, node extra, (should run, should continue))
    let cases: Vec<(&str, Value, Value, (bool, bool))> = vec![
        ("plain node", json!({}), json!({}), (true, true)),
        (
            "unschedulable does not matter",
            json!({}),
            json!({"spec": {"unschedulable": true}}),
            (true, true),
        ),
        (
            "unschedulable taint tolerated by default",
            json!({}),
            taint("node.kubernetes.io/unschedulable", "NoSchedule"),
            (true, true),
        ),
        (
            "not-ready NoExecute tolerated by default",
            json!({}),
            taint("node.kubernetes.io/not-ready", "NoExecute"),
            (true, true),
        ),
        (
            "disk-pressure tolerated",
            json!({}),
            taint("node.kubernetes.io/disk-pressure", "NoSchedule"),
            (true, true),
        ),
        (
            "network-unavailable not tolerated without hostNetwork",
            json!({}),
            taint("node.kubernetes.io/network-unavailable", "NoSchedule"),
            (false, true),
        ),
        (
            "network-unavailable tolerated with hostNetwork",
            json!({"spec": {"template": {"spec": {"hostNetwork": true}}}}),
            taint("node.kubernetes.io/network-unavailable", "NoSchedule"),
            (true, true),
        ),
        (
            "foreign NoSchedule: keep running ones",
            json!({}),
            taint("dedicated", "NoSchedule"),
            (false, true),
        ),
        (
            "foreign NoExecute: none",
            json!({}),
            taint("dedicated", "NoExecute"),
            (false, false),
        ),
        (
            "PreferNoSchedule ignored",
            json!({}),
            taint("dedicated", "PreferNoSchedule"),
            (true, true),
        ),
        (
            "own toleration",
            json!({"spec": {"template": {"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}}}}),
            taint("dedicated", "NoExecute"),
            (true, true),
        ),
        (
            "control plane taint",
            json!({}),
            taint("node-role.kubernetes.io/control-plane", "NoSchedule"),
            (false, true),
        ),
        (
            "node selector matches",
            json!({"spec": {"template": {"spec": {"nodeSelector": {"disk": "ssd"}}}}}),
            json!({"metadata": {"labels": {"disk": "ssd"}}}),
            (true, true),
        ),
        (
            "node selector misses",
            json!({"spec": {"template": {"spec": {"nodeSelector": {"disk": "ssd"}}}}}),
            json!({}),
            (false, false),
        ),
        (
            "required affinity In",
            json!({"spec": {"template": {"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}}}}}}),
            json!({"metadata": {"labels": {"zone": "b"}}}),
            (true, true),
        ),
        (
            "required affinity NotIn",
            json!({"spec": {"template": {"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["b"]}]}]}}}}}}}),
            json!({"metadata": {"labels": {"zone": "b"}}}),
            (false, false),
        ),
        (
            "matchFields name",
            json!({"spec": {"template": {"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["other"]}]}]}}}}}}}),
            json!({}),
            (false, false),
        ),
    ];
    for (what, d, n, want) in cases {
        assert_eq!(node_should_run(&ds(d), &node("n1", n)), want, "{what}");
    }
}

#[test]
fn one_pod_per_eligible_node_and_misscheduled_pods_go() {
    let d = ds(json!({"spec": {"template": {"spec": {"nodeSelector": {"role": "edge"}}}}}));
    let edge = |n: &str| node(n, json!({"metadata": {"labels": {"role": "edge"}}}));
    let nodes = [edge("a"), edge("b"), node("c", json!({})), edge("d")];
    let h = hash_of(&d);
    let pods = [
        pod("pa", "a", &h, true),
        pod("pc", "c", &h, true),
        pod("pd1", "d", &h, true),
        pod("pd2", "d", &h, true),
    ];
    let nrefs: Vec<&Node> = nodes.iter().collect();
    let prefs: Vec<&Pod> = pods.iter().collect();
    let p = plan(&d, &nrefs, &prefs, &h, now());
    assert_eq!(p.create_on, ["b"]);
    assert_eq!(p.delete, ["pc", "pd2"], "misscheduled on c, surplus on d");
    assert_eq!(
        p.status,
        json!({"currentNumberScheduled": 2, "numberMisscheduled": 1, "desiredNumberScheduled": 3,
               "numberReady": 2, "observedGeneration": 2, "updatedNumberScheduled": 2,
               "numberAvailable": 2, "numberUnavailable": 1})
    );
}

#[test]
fn failed_pods_are_replaced_and_unbound_pods_for_gone_nodes_deleted() {
    let d = ds(json!({}));
    let h = hash_of(&d);
    let mut failed = pod("f", "a", &h, false);
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    let mut stray: Pod = serde_json::from_value(pod_for_node(&d, "gone", &h)).unwrap();
    stray.metadata.name = Some("stray".into());
    stray.metadata.uid = Some("uid-stray".into());
    let bound_gone = pod("bg", "gone2", &h, true);
    let nodes = [node("a", json!({}))];
    let p = plan(
        &d,
        &nodes.iter().collect::<Vec<_>>(),
        &[&failed, &stray, &bound_gone],
        &h,
        now(),
    );
    assert_eq!(
        p.delete,
        ["f", "stray"],
        "bound pods on gone nodes are pod GC's"
    );
    assert!(
        p.create_on.is_empty(),
        "replaced once the failed one is gone"
    );
    assert_eq!(target_node(&stray).as_deref(), Some("gone"));
}

#[test]
fn rolling_update_steps_within_max_unavailable() {
    let d = ds(json!({}));
    let h = hash_of(&d);
    let nodes: Vec<Node> = ["a", "b", "c"].iter().map(|n| node(n, json!({}))).collect();
    let nrefs: Vec<&Node> = nodes.iter().collect();
    // (what, pods, want deleted, want created on)
    type Case<'a> = (&'a str, Vec<Pod>, Vec<&'a str>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "all old: one goes",
            vec![
                pod("pa", "a", "old", true),
                pod("pb", "b", "old", true),
                pod("pc", "c", "old", true),
            ],
            vec!["pa"],
            vec![],
        ),
        (
            "one replaced but not ready: wait",
            vec![
                pod("na", "a", &h, false),
                pod("pb", "b", "old", true),
                pod("pc", "c", "old", true),
            ],
            vec![],
            vec![],
        ),
        (
            "a node without pod counts as unavailable",
            vec![pod("pb", "b", "old", true), pod("pc", "c", "old", true)],
            vec![],
            vec!["a"],
        ),
        (
            "new one ready: next old goes",
            vec![
                pod("na", "a", &h, true),
                pod("pb", "b", "old", true),
                pod("pc", "c", "old", true),
            ],
            vec!["pb"],
            vec![],
        ),
        (
            "unavailable old pods go regardless",
            vec![
                pod("na", "a", &h, false),
                pod("pb", "b", "old", false),
                pod("pc", "c", "old", true),
            ],
            vec!["pb"],
            vec![],
        ),
        (
            "done",
            vec![
                pod("na", "a", &h, true),
                pod("nb", "b", &h, true),
                pod("nc", "c", &h, true),
            ],
            vec![],
            vec![],
        ),
    ];
    for (what, pods, del, create) in cases {
        let p = plan(&d, &nrefs, &pods.iter().collect::<Vec<_>>(), &h, now());
        assert_eq!(p.delete, del, "{what}: delete");
        assert_eq!(p.create_on, create, "{what}: create");
    }
    // maxUnavailable 2 deletes two at once; 50% of 3 rounds up to 2.
    for mu in [json!(2), json!("50%")] {
        let d = ds(json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": mu}}}}));
        let h = hash_of(&d);
        let pods = [
            pod("pa", "a", "old", true),
            pod("pb", "b", "old", true),
            pod("pc", "c", "old", true),
        ];
        let p = plan(&d, &nrefs, &pods.iter().collect::<Vec<_>>(), &h, now());
        assert_eq!(p.delete.len(), 2, "{mu}");
    }
    // OnDelete: old pods stay; a deleted one comes back new.
    let d = ds(json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}}));
    let h = hash_of(&d);
    let pods = [pod("pb", "b", "old", true), pod("pc", "c", "old", true)];
    let p = plan(&d, &nrefs, &pods.iter().collect::<Vec<_>>(), &h, now());
    assert!(p.delete.is_empty());
    assert_eq!(p.create_on, ["a"]);
    assert_eq!(p.status["updatedNumberScheduled"], 0);
}

#[test]
fn surge_starts_new_pods_beside_old_ones() {
    let d = ds(
        json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}}),
    );
    let h = hash_of(&d);
    let nodes: Vec<Node> = ["a", "b"].iter().map(|n| node(n, json!({}))).collect();
    let nrefs: Vec<&Node> = nodes.iter().collect();
    let step = |pods: Vec<Pod>| plan(&d, &nrefs, &pods.iter().collect::<Vec<_>>(), &h, now());
    let p = step(vec![
        pod("pa", "a", "old", true),
        pod("pb", "b", "old", true),
    ]);
    assert_eq!((p.create_on, p.delete), (vec!["a".to_string()], vec![]));
    let p = step(vec![
        pod("pa", "a", "old", true),
        pod("na", "a", &h, false),
        pod("pb", "b", "old", true),
    ]);
    assert_eq!(
        (p.create_on.len(), p.delete.len()),
        (0, 0),
        "waits for the new pod"
    );
    let p = step(vec![
        pod("pa", "a", "old", true),
        pod("na", "a", &h, true),
        pod("pb", "b", "old", true),
    ]);
    assert_eq!(p.delete, ["pa"]);
    assert_eq!(p.create_on, ["b"]);
}

#[test]
fn availability_honours_min_ready_seconds() {
    let d = ds(json!({"spec": {"minReadySeconds": 30}}));
    let h = hash_of(&d);
    let nodes = [node("a", json!({}))];
    let mut fresh = pod("pa", "a", &h, true);
    fresh.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now() - SignedDuration::from_secs(10)),
    );
    let p = plan(&d, &nodes.iter().collect::<Vec<_>>(), &[&fresh], &h, now());
    assert_eq!(
        (
            p.status["numberReady"].as_i64(),
            p.status["numberAvailable"].as_i64()
        ),
        (Some(1), Some(0))
    );
    assert_eq!(p.status["numberUnavailable"], 1);
}

#[test]
fn pods_are_pinned_to_their_node_with_default_tolerations() {
    let d = ds(
        json!({"metadata": {"generation": 4}, "spec": {"template": {"spec": {"hostNetwork": true, "affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}}}}),
    );
    let p = pod_for_node(&d, "n7", "abc");
    let terms = &p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    assert_eq!(
        terms[0]["matchFields"],
        json!([{"key": "metadata.name", "operator": "In", "values": ["n7"]}])
    );
    assert_eq!(
        terms[0]["matchExpressions"][0]["key"], "zone",
        "the template's terms are kept"
    );
    let keys: Vec<&str> = p["spec"]["tolerations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
            "node.kubernetes.io/disk-pressure",
            "node.kubernetes.io/memory-pressure",
            "node.kubernetes.io/pid-pressure",
            "node.kubernetes.io/unschedulable",
            "node.kubernetes.io/network-unavailable"
        ]
    );
    assert_eq!(p["metadata"]["labels"][REVISION_HASH_LABEL], "abc");
    assert_eq!(p["metadata"]["labels"]["pod-template-generation"], "4");
    assert_eq!(p["metadata"]["generateName"], "agent-");
    assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
    assert_eq!(revision_data(&d)["spec"]["template"]["$patch"], "replace");
}
