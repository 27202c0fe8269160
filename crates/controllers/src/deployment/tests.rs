use super::*;
use crate::testing::merge;

fn deployment(replicas: i32, image: &str, extra: Value) -> Deployment {
    let mut v = json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 2,
                     "annotations": {"kubernetes.io/change-cause": "v2", "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": image}]}}}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

/// A ReplicaSet of `web` for `image`: revision, spec replicas, available, age in seconds.
fn rs(image: &str, revision: i64, replicas: i32, available: i32, age: i64) -> ReplicaSet {
    let d = deployment(3, image, json!({}));
    let t = template_of_deployment(&d);
    let hash = template_hash(&t, 0);
    let mut t = t;
    t["metadata"]["labels"][HASH_LABEL] = json!(hash);
    serde_json::from_value(json!({
        "metadata": {"name": format!("web-{hash}"), "namespace": "default", "uid": format!("uid-{hash}"),
            "creationTimestamp": (Timestamp::now() - SignedDuration::from_secs(age)).round(jiff::Unit::Second).unwrap().to_string(),
            "annotations": {REVISION: revision.to_string(), DESIRED_REPLICAS: "3", MAX_REPLICAS: "4"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d-uid", "controller": true}]},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web", HASH_LABEL: hash}}, "template": t},
        "status": {"replicas": replicas, "readyReplicas": available, "availableReplicas": available}
    }))
    .unwrap()
}

fn name_of(image: &str) -> String {
    format!(
        "web-{}",
        template_hash(&template_of_deployment(&deployment(3, image, json!({}))), 0)
    )
}

fn cond<'a>(p: &'a Plan, type_: &str) -> &'a Value {
    p.status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or(&Value::Null)
}

#[test]
fn fenceposts_resolve_as_kubernetes_resolves_them() {
    let cases = [
        (10, json!({}), (3, 2)),
        (3, json!({}), (1, 0)),
        (1, json!({"maxSurge": 0, "maxUnavailable": 0}), (0, 1)),
        (10, json!({"maxSurge": "50%", "maxUnavailable": 4}), (5, 4)),
    ];
    for (replicas, ru, want) in cases {
        let d = deployment(
            replicas,
            "a",
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": ru}}}),
        );
        assert_eq!(fenceposts(&d), want, "{replicas} {ru}");
    }
    let d = deployment(4, "a", json!({"spec": {"strategy": {"type": "Recreate"}}}));
    assert_eq!(fenceposts(&d), (0, 0));
}

#[test]
fn hashes_follow_the_template_only() {
    let a = template_of_deployment(&deployment(3, "a", json!({})));
    let b = template_of_deployment(&deployment(3, "b", json!({})));
    assert_ne!(template_hash(&a, 0), template_hash(&b, 0));
    assert_ne!(
        template_hash(&a, 0),
        template_hash(&a, 1),
        "collisions change the hash"
    );
    let mut labelled = a.clone();
    labelled["metadata"]["labels"][HASH_LABEL] = json!("xyz");
    assert_eq!(template_hash(&a, 0), template_hash(&labelled, 0));
    assert!(
        template_hash(&a, 0)
            .chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
    );
}

#[test]
fn a_new_deployment_gets_its_first_replicaset() {
    let d = deployment(3, "a", json!({}));
    let p = plan(&d, &[], 0, Timestamp::now());
    let rs = p.create.as_ref().expect("a ReplicaSet is created");
    assert_eq!(rs["metadata"]["name"], json!(name_of("a")));
    assert_eq!(rs["spec"]["replicas"], 3);
    let hash = rs["spec"]["template"]["metadata"]["labels"][HASH_LABEL].clone();
    assert_eq!(rs["spec"]["selector"]["matchLabels"][HASH_LABEL], hash);
    assert_eq!(rs["metadata"]["labels"][HASH_LABEL], hash);
    assert_eq!(rs["metadata"]["annotations"][REVISION], "1");
    assert_eq!(
        rs["metadata"]["annotations"]["kubernetes.io/change-cause"],
        "v2"
    );
    assert_eq!(
        rs["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        Value::Null
    );
    assert_eq!(rs["metadata"]["ownerReferences"][0]["uid"], "d-uid");
    assert_eq!(
        p.events,
        vec![(
            "ScalingReplicaSet".to_string(),
            format!("Scaled up replica set {} from 0 to 3", name_of("a"))
        )]
    );
    assert_eq!(cond(&p, "Progressing")["reason"], "NewReplicaSetCreated");
    assert_eq!(
        cond(&p, "Progressing")["message"],
        format!("Created new replica set \"{}\"", name_of("a"))
    );
    assert_eq!(p.revision.as_deref(), Some("1"));
}

#[test]
fn a_rolling_update_steps_within_surge_and_unavailability() {
    // 3 replicas, 25%/25%: surge 1, unavailable 0.
    let d = deployment(3, "b", json!({}));
    let old = rs("a", 1, 3, 3, 100);
    // Step 1: the new ReplicaSet is created with the one surge pod.
    let p = plan(&d, &[&old], 0, Timestamp::now());
    assert_eq!(p.create.as_ref().unwrap()["spec"]["replicas"], 1);
    assert_eq!(
        p.create.as_ref().unwrap()["metadata"]["annotations"][REVISION],
        "2"
    );
    assert!(
        p.update.values().all(|(r, _)| *r == 3),
        "no old pod goes before the new one is available: {:?}",
        p.update
    );
    // Step 2: the new pod is available: one old pod goes.
    let new = rs("b", 2, 1, 1, 10);
    let p = plan(&d, &[&old, &new], 0, Timestamp::now());
    assert_eq!(p.update.get(&name_of("a")).map(|u| u.0), Some(2));
    assert!(p.events.contains(&(
        "ScalingReplicaSet".into(),
        format!("Scaled down replica set {} from 3 to 2", name_of("a"))
    )));
    // Step 3: with room again, the new ReplicaSet grows.
    let old = rs("a", 1, 2, 2, 100);
    let p = plan(&d, &[&old, &new], 0, Timestamp::now());
    assert_eq!(p.update.get(&name_of("b")).map(|u| u.0), Some(2));
    // Unavailable new pods hold the old ones.
    let stuck = rs("b", 2, 1, 0, 10);
    let old = rs("a", 1, 3, 3, 100);
    let p = plan(&d, &[&old, &stuck], 0, Timestamp::now());
    assert!(!p.update.contains_key(&name_of("a")) || p.update[&name_of("a")].0 == 3);
    // Done: all new, old at zero.
    let done = rs("b", 2, 3, 3, 10);
    let empty = rs("a", 1, 0, 0, 100);
    let p = plan(&d, &[&empty, &done], 0, Timestamp::now());
    assert!(p.create.is_none() && p.events.is_empty(), "{p:?}");
    assert_eq!(cond(&p, "Progressing")["reason"], "NewReplicaSetAvailable");
    assert_eq!(cond(&p, "Available")["status"], "True");
    assert_eq!(p.status["updatedReplicas"], 3);
    assert_eq!(p.status["availableReplicas"], 3);
}

#[test]
fn recreate_scales_old_to_zero_and_waits_for_their_pods() {
    let d = deployment(3, "b", json!({"spec": {"strategy": {"type": "Recreate"}}}));
    let old = rs("a", 1, 3, 3, 100);
    let p = plan(&d, &[&old], 3, Timestamp::now());
    assert_eq!(p.update.get(&name_of("a")).map(|u| u.0), Some(0));
    assert_eq!(p.create.as_ref().unwrap()["spec"]["replicas"], 0);
    let old = rs("a", 1, 0, 0, 100);
    let new = rs("b", 2, 0, 0, 10);
    let p = plan(&d, &[&old, &new], 1, Timestamp::now());
    assert!(
        !p.update.contains_key(&name_of("b")),
        "old pods still running"
    );
    let p = plan(&d, &[&old, &new], 0, Timestamp::now());
    assert_eq!(p.update.get(&name_of("b")).map(|u| u.0), Some(3));
}

#[test]
fn a_rollback_reuses_the_old_replicaset_as_the_newest_revision() {
    let d = deployment(3, "a", json!({}));
    let old = rs("a", 1, 0, 0, 100);
    let cur = rs("b", 2, 3, 3, 10);
    let p = plan(&d, &[&old, &cur], 0, Timestamp::now());
    assert!(p.create.is_none());
    let (size, ann) = &p.update[&name_of("a")];
    assert_eq!(ann.get(REVISION).map(String::as_str), Some("3"));
    assert_eq!(ann.get(REVISION_HISTORY).map(String::as_str), Some("1"));
    assert_eq!(*size, 1, "it grows within the surge");
    assert_eq!(p.revision.as_deref(), Some("3"));
}

#[test]
fn paused_deployments_do_not_roll_out_but_scale() {
    let d = deployment(5, "b", json!({"spec": {"paused": true}}));
    let cur = rs("a", 1, 3, 3, 100);
    let p = plan(&d, &[&cur], 0, Timestamp::now());
    assert!(p.create.is_none(), "no rollout while paused");
    assert_eq!(p.update.get(&name_of("a")).map(|u| u.0), Some(5));
    assert_eq!(cond(&p, "Progressing")["reason"], "DeploymentPaused");
    assert_eq!(cond(&p, "Progressing")["status"], "Unknown");
}

#[test]
fn scaling_mid_rollout_is_proportional() {
    // 10 → 20 replicas while old has 8 and new 5 (surge 3 at 10 replicas: 13 in all).
    let d = deployment(20, "b", json!({}));
    let mut old = rs("a", 1, 8, 8, 100);
    let mut new = rs("b", 2, 5, 0, 10);
    for r in [&mut old, &mut new] {
        let a = r.metadata.annotations.as_mut().unwrap();
        a.insert(DESIRED_REPLICAS.into(), "10".into());
        a.insert(MAX_REPLICAS.into(), "13".into());
    }
    let p = plan(&d, &[&old, &new], 0, Timestamp::now());
    let o = p.update[&name_of("a")].0;
    let n = p.update[&name_of("b")].0;
    assert_eq!(o + n, 25, "20 + surge 5");
    assert!(o > 8 && n > 5, "both grow in proportion: old {o}, new {n}");
    assert_eq!(
        p.update[&name_of("a")]
            .1
            .get(DESIRED_REPLICAS)
            .map(String::as_str),
        Some("20")
    );
}

#[test]
fn old_history_beyond_the_limit_is_deleted_oldest_first() {
    let d = deployment(1, "z", json!({"spec": {"revisionHistoryLimit": 2}}));
    let olds: Vec<ReplicaSet> = (1..=4)
        .map(|i| rs(&format!("v{i}"), i, 0, 0, 100 - i))
        .collect();
    let cur = rs("z", 5, 1, 1, 1);
    let mut all: Vec<&ReplicaSet> = olds.iter().collect();
    all.push(&cur);
    let p = plan(&d, &all, 0, Timestamp::now());
    assert_eq!(p.delete, vec![name_of("v1"), name_of("v2")]);
}

#[test]
fn a_stalled_rollout_exceeds_its_progress_deadline() {
    let then = Timestamp::now() - SignedDuration::from_secs(30);
    let d = deployment(
        3,
        "b",
        json!({"spec": {"progressDeadlineSeconds": 10}, "status": {
        "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3, "readyReplicas": 3,
        "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
            "message": "x", "lastUpdateTime": then.to_string(), "lastTransitionTime": then.to_string()}]}}),
    );
    let old = rs("a", 1, 3, 3, 100);
    let stuck = rs("b", 2, 1, 0, 40);
    let p = plan(&d, &[&old, &stuck], 0, Timestamp::now());
    let c = cond(&p, "Progressing");
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("False"), Some("ProgressDeadlineExceeded"))
    );
    assert_eq!(
        c["message"],
        format!("ReplicaSet \"{}\" has timed out progressing.", name_of("b"))
    );
}
