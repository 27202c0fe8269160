//! Table tests of the disruption controller's status computation.

use super::*;
use serde_json::{Value, json};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const NOW: &str = "2026-11-28T07:00:00Z";

fn pdb(spec: Value, status: Value) -> PodDisruptionBudget {
    serde_json::from_value(
        json!({"metadata": {"name": "web", "namespace": "default", "generation": 2},
        "spec": spec, "status": status}),
    )
    .unwrap()
}

fn pod(name: &str, ready: bool, terminating: bool, owner: Option<&str>) -> Pod {
    let mut v = json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": []},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
    if terminating {
        v["metadata"]["deletionTimestamp"] = json!(NOW);
    }
    if let Some(uid) = owner {
        v["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": "web-rs", "uid": uid, "controller": true}]);
    }
    serde_json::from_value(v).unwrap()
}

#[test]
fn expected_and_desired_follow_kubernetes() {
    let cases = [
        (
            "minAvailable 2 of 3 pods",
            json!({"minAvailable": 2}),
            3,
            None,
            Ok((3, 2)),
        ),
        (
            "minAvailable 50% of 5 rounds up",
            json!({"minAvailable": "50%"}),
            3,
            Some(5),
            Ok((5, 3)),
        ),
        (
            "maxUnavailable 1 of 4",
            json!({"maxUnavailable": 1}),
            2,
            Some(4),
            Ok((4, 3)),
        ),
        (
            "maxUnavailable 30% of 4 rounds up",
            json!({"maxUnavailable": "30%"}),
            4,
            Some(4),
            Ok((4, 2)),
        ),
        (
            "maxUnavailable above the scale floors at 0",
            json!({"maxUnavailable": 9}),
            4,
            Some(4),
            Ok((4, 0)),
        ),
        (
            "a bad percentage",
            json!({"minAvailable": "x%"}),
            1,
            Some(1),
            Err(()),
        ),
    ];
    for (name, spec, matching, scale, want) in cases {
        let got = expected_and_desired(&pdb(spec, json!({})), matching, scale);
        match want {
            Ok(w) => assert_eq!(got, Ok(w), "{name}"),
            Err(()) => assert!(got.is_err(), "{name}: {got:?}"),
        }
    }
}

#[test]
fn the_scale_counts_each_controller_once() {
    let a = pod("a", true, false, Some("rs1"));
    let b = pod("b", true, false, Some("rs1"));
    let c = pod("c", true, false, None);
    let scales: HashMap<String, Scale> = [(
        "rs1".to_string(),
        Scale {
            uid: "deploy1".into(),
            replicas: 3,
        },
    )]
    .into();
    assert_eq!(
        expected_scale(&[&a, &b, &c], &scales),
        Ok((3, vec!["c".to_string()]))
    );
    let d = pod("d", true, false, Some("gone"));
    assert_eq!(
        expected_scale(&[&a, &d], &scales),
        Err("found no controllers for pod \"d\"".to_string())
    );
}

/// (name, pods, recorded disruptedPods, (expected, desired), healthy, allowed, condition reason)
type StatusCase<'a> = (&'a str, Vec<&'a Pod>, Value, (i32, i32), i32, i32, &'a str);

fn refs(ps: &[Pod]) -> Vec<&Pod> {
    ps.iter().collect()
}

#[test]
fn status_counts_healthy_pods_and_allowed_disruptions() {
    let now = ts(NOW);
    let three = [
        pod("a", true, false, None),
        pod("b", true, false, None),
        pod("c", true, false, None),
    ];
    // (name, pods, recorded disruptedPods, expected/desired, healthy, allowed, condition reason)
    let mixed = [
        pod("a", true, false, None),
        pod("b", false, false, None),
        pod("c", true, true, None),
    ];
    let cases: Vec<StatusCase> = vec![
        (
            "three ready, two needed",
            refs(&three),
            json!({}),
            (3, 2),
            3,
            1,
            "SufficientPods",
        ),
        (
            "unready and terminating pods do not count",
            refs(&mixed),
            json!({}),
            (3, 1),
            1,
            0,
            "InsufficientPods",
        ),
        (
            "a pod the API just evicted does not count",
            refs(&three),
            json!({"b": "2026-11-28T06:59:30Z"}),
            (3, 2),
            2,
            0,
            "InsufficientPods",
        ),
        (
            "an eviction older than two minutes is forgotten",
            refs(&three),
            json!({"b": "2026-11-28T06:57:00Z"}),
            (3, 2),
            3,
            1,
            "SufficientPods",
        ),
        (
            "no pods expected: nothing allowed",
            vec![],
            json!({}),
            (0, 0),
            0,
            0,
            "InsufficientPods",
        ),
    ];
    for (name, pods, disrupted, exp, healthy, allowed, reason) in cases {
        let p = pdb(
            json!({"minAvailable": 2}),
            json!({"disruptedPods": disrupted, "currentHealthy": 0,
            "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0}),
        );
        let st = compute_status(&p, &pods, Ok(exp), now);
        assert_eq!(st.current_healthy, healthy, "{name}");
        assert_eq!(st.desired_healthy, exp.1, "{name}");
        assert_eq!(st.expected_pods, exp.0, "{name}");
        assert_eq!(st.disruptions_allowed, allowed, "{name}");
        assert_eq!(st.observed_generation, Some(2), "{name}");
        let c = &st.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.type_.as_str(), c.reason.as_str()),
            ("DisruptionAllowed", reason),
            "{name}"
        );
        assert_eq!(
            c.status,
            if allowed > 0 { "True" } else { "False" },
            "{name}"
        );
    }
}

#[test]
fn an_evicted_pod_that_is_terminating_leaves_disrupted_pods() {
    let now = ts(NOW);
    let a = pod("a", true, true, None);
    let b = pod("b", true, false, None);
    let p = pdb(
        json!({"minAvailable": 1}),
        json!({"disruptedPods": {"a": "2026-11-28T06:59:50Z"},
        "currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0}),
    );
    let st = compute_status(&p, &[&a, &b], Ok((2, 1)), now);
    assert_eq!(st.disrupted_pods, None);
    assert_eq!((st.current_healthy, st.disruptions_allowed), (1, 0));
}

#[test]
fn an_unknowable_scale_fails_safe() {
    let p = pdb(
        json!({"maxUnavailable": 1}),
        json!({"currentHealthy": 3, "desiredHealthy": 2,
        "disruptionsAllowed": 1, "expectedPods": 3, "observedGeneration": 1}),
    );
    let st = compute_status(
        &p,
        &[],
        Err("found no controllers for pod \"a\"".into()),
        ts(NOW),
    );
    assert_eq!(st.disruptions_allowed, 0);
    let c = &st.conditions.unwrap()[0];
    assert_eq!(
        (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
        ("False", "SyncFailed", "found no controllers for pod \"a\"")
    );
}

#[test]
fn the_condition_keeps_its_transition_time() {
    let p = pdb(
        json!({"minAvailable": 1}),
        json!({"currentHealthy": 2, "desiredHealthy": 1,
        "disruptionsAllowed": 1, "expectedPods": 2, "observedGeneration": 2,
        "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods", "message": "",
                        "observedGeneration": 2, "lastTransitionTime": "2026-11-28T06:00:00Z"}]}),
    );
    let a = pod("a", true, false, None);
    let b = pod("b", true, false, None);
    let st = compute_status(&p, &[&a, &b], Ok((2, 1)), ts(NOW));
    assert_eq!(
        Some(&st),
        p.status.as_ref(),
        "nothing changed, nothing to write"
    );
}

#[test]
fn selectors_match_within_the_namespace() {
    let p = pdb(
        json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}),
        json!({}),
    );
    let a = pod("a", true, false, None);
    let mut other_ns = pod("b", true, false, None);
    other_ns.metadata.namespace = Some("other".into());
    let mut other_app = pod("c", true, false, None);
    other_app.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
    let pods = [a, other_ns, other_app];
    let got: Vec<&str> = matching_pods(&p, pods.iter())
        .iter()
        .map(|p| p.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(got, vec!["a"]);
    let none = pdb(json!({"minAvailable": 1}), json!({}));
    assert!(
        matching_pods(&none, pods.iter()).is_empty(),
        "a null selector matches nothing"
    );
}
