use super::*;
use crate::testing::merge;
use jiff::SignedDuration;

/// StatefulSet `db` (3 replicas, image `img`, claim template `data`) with `extra` merged in.
fn sts(img: &str, extra: Value) -> StatefulSet {
    let mut v = json!({
        "metadata": {"name": "db", "namespace": "default", "uid": "sts-uid", "generation": 3},
        "spec": {"replicas": 3, "serviceName": "db", "podManagementPolicy": "OrderedReady",
                 "selector": {"matchLabels": {"app": "db"}},
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                 "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                 "revisionHistoryLimit": 10,
                 "template": {"metadata": {"labels": {"app": "db"}},
                              "spec": {"containers": [{"name": "c", "image": img}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"tier": "storage"}},
                     "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn now() -> Timestamp {
    "2026-01-01T01:00:00Z".parse().unwrap()
}

/// The revision a set's template makes, numbered `n`.
fn rev(set: &StatefulSet, n: i64) -> ControllerRevision {
    let p = plan(set, &[], &[], &[], now());
    let Some(Action::CreateRevision(mut r)) = p.actions.into_iter().next() else {
        panic!("no revision")
    };
    r["revision"] = json!(n);
    serde_json::from_value(r).unwrap()
}

fn rev_name(set: &StatefulSet) -> String {
    rev(set, 1).metadata.name.unwrap()
}

/// Pod `db-<o>` of revision `r` in `state`: "ready" (Running and Ready for an
/// hour), "fresh" (Ready for 5 s), "running" (not Ready), "pending",
/// "failed", "terminating" (Ready, being deleted).
fn pod(o: i32, r: &str, state: &str) -> Pod {
    let ready_at = match state {
        "fresh" => "2026-01-01T00:59:55Z",
        _ => "2026-01-01T00:00:00Z",
    };
    let (phase, ready) = match state {
        "ready" | "fresh" | "terminating" => ("Running", true),
        "running" => ("Running", false),
        "pending" => ("Pending", false),
        "failed" => ("Failed", false),
        other => panic!("{other}"),
    };
    let conds = if ready {
        json!([{"type": "Ready", "status": "True", "lastTransitionTime": ready_at}])
    } else {
        json!([{"type": "Ready", "status": "False", "lastTransitionTime": ready_at}])
    };
    let mut v = json!({
        "metadata": {"name": format!("db-{o}"), "namespace": "default", "uid": format!("uid-{o}"),
            "labels": {"app": "db", REVISION_LABEL: r, POD_NAME_LABEL: format!("db-{o}"),
                POD_INDEX_LABEL: o.to_string()},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
                "uid": "sts-uid", "controller": true}]},
        "spec": {"containers": []},
        "status": {"phase": phase, "conditions": conds}
    });
    if state == "terminating" {
        v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:59:00Z");
    }
    serde_json::from_value(v).unwrap()
}

fn claim(name: &str, owners: Value) -> PersistentVolumeClaim {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default",
        "ownerReferences": owners}, "spec": {}}))
    .unwrap()
}

/// The claims `data-db-<o>` of the ordinals, without owners.
fn claims(ords: &[i32]) -> Vec<PersistentVolumeClaim> {
    ords.iter()
        .map(|o| claim(&format!("data-db-{o}"), json!([])))
        .collect()
}

fn run_plan(
    set: &StatefulSet,
    pods: &[Pod],
    cl: &[PersistentVolumeClaim],
    revs: &[ControllerRevision],
) -> Plan {
    let p: Vec<&Pod> = pods.iter().collect();
    let c: Vec<&PersistentVolumeClaim> = cl.iter().collect();
    let r: Vec<&ControllerRevision> = revs.iter().collect();
    plan(set, &p, &c, &r, now())
}

/// A short form of the plan's pod and claim steps: "+claim data-db-0",
/// "+pod db-0@<rev>", "-pod db-2", "owners data-db-3 Pod/db-3".
fn steps(p: &Plan) -> Vec<String> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateClaim { claim, .. } => {
                Some(format!("+claim {}", claim["metadata"]["name"].as_str()?))
            }
            Action::CreatePod(p) => Some(format!(
                "+pod {}@{}",
                p["metadata"]["name"].as_str()?,
                p["metadata"]["labels"][REVISION_LABEL].as_str()?
            )),
            Action::DeletePod(n) => Some(format!("-pod {n}")),
            Action::SetClaimOwners { claim, owners } => Some(format!(
                "owners {claim} {}",
                owners
                    .as_array()?
                    .iter()
                    .map(|o| format!(
                        "{}/{}",
                        o["kind"].as_str().unwrap(),
                        o["name"].as_str().unwrap()
                    ))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn pods_and_claims_come_up_in_order() {
    let base = sts("img:1", json!({}));
    let r1 = rev_name(&base);
    let r = |o: i32, s: &str| pod(o, &r1, s);
    let parallel = json!({"spec": {"podManagementPolicy": "Parallel"}});
    let min_ready = json!({"spec": {"minReadySeconds": 10}});
    // (what, extra spec, pods, claims present, expected steps)
    type Case<'a> = (&'a str, Value, Vec<Pod>, Vec<i32>, Vec<String>);
    let cases: Vec<Case> = vec![
        (
            "first pod after its claim",
            json!({}),
            vec![],
            vec![],
            vec!["+claim data-db-0".into(), format!("+pod db-0@{r1}")],
        ),
        (
            "an existing claim is reused",
            json!({}),
            vec![],
            vec![0],
            vec![format!("+pod db-0@{r1}")],
        ),
        (
            "waits for db-0 to be Ready",
            json!({}),
            vec![r(0, "running")],
            vec![0],
            vec![],
        ),
        (
            "a Pending pod gets its missing claims",
            json!({}),
            vec![r(0, "pending")],
            vec![],
            vec!["+claim data-db-0".into()],
        ),
        (
            "db-1 once db-0 is Ready",
            json!({}),
            vec![r(0, "ready")],
            vec![0],
            vec!["+claim data-db-1".into(), format!("+pod db-1@{r1}")],
        ),
        (
            "minReadySeconds: ready 5 s is not available",
            min_ready.clone(),
            vec![r(0, "fresh")],
            vec![0],
            vec![],
        ),
        (
            "minReadySeconds: ready an hour is",
            min_ready,
            vec![r(0, "ready")],
            vec![0],
            vec!["+claim data-db-1".into(), format!("+pod db-1@{r1}")],
        ),
        (
            "a terminating pod blocks",
            json!({}),
            vec![r(0, "terminating")],
            vec![0],
            vec![],
        ),
        (
            "a failed pod is deleted, nothing else",
            json!({}),
            vec![r(0, "ready"), r(1, "failed")],
            vec![0, 1],
            vec!["-pod db-1".into()],
        ),
        (
            "an unready middle pod blocks the next",
            json!({}),
            vec![r(0, "ready"), r(1, "running")],
            vec![0, 1],
            vec![],
        ),
        (
            "Parallel: all at once",
            parallel.clone(),
            vec![],
            vec![],
            vec![
                "+claim data-db-0".into(),
                format!("+pod db-0@{r1}"),
                "+claim data-db-1".into(),
                format!("+pod db-1@{r1}"),
                "+claim data-db-2".into(),
                format!("+pod db-2@{r1}"),
            ],
        ),
        (
            "Parallel: a failed pod does not hold the others",
            parallel,
            vec![r(1, "failed")],
            vec![0, 1, 2],
            vec![
                format!("+pod db-0@{r1}"),
                "-pod db-1".into(),
                format!("+pod db-2@{r1}"),
            ],
        ),
        (
            "ordinals.start",
            json!({"spec": {"ordinals": {"start": 5}}}),
            vec![],
            vec![],
            vec!["+claim data-db-5".into(), format!("+pod db-5@{r1}")],
        ),
    ];
    for (what, extra, pods, have, want) in cases {
        let set = sts("img:1", extra);
        let revs = vec![rev(&set, 1)];
        let p = run_plan(&set, &pods, &claims(&have), &revs);
        assert_eq!(steps(&p), want, "{what}");
    }
}

#[test]
fn scale_down_goes_highest_first() {
    let base = sts("img:1", json!({}));
    let r1 = rev_name(&base);
    let r = |o: i32, s: &str| pod(o, &r1, s);
    let five = |states: [&str; 5]| -> Vec<Pod> {
        states
            .iter()
            .enumerate()
            .map(|(i, s)| r(i as i32, s))
            .collect()
    };
    let parallel = json!({"spec": {"podManagementPolicy": "Parallel"}});
    let cases: Vec<(&str, Value, Vec<Pod>, Vec<&str>)> = vec![
        (
            "one at a time, db-4 first",
            json!({}),
            five(["ready"; 5]),
            vec!["-pod db-4"],
        ),
        (
            "then db-3 once db-4 is gone",
            json!({}),
            five(["ready"; 5])[..4].to_vec(),
            vec!["-pod db-3"],
        ),
        (
            "a terminating db-4 holds db-3",
            json!({}),
            five(["ready", "ready", "ready", "ready", "terminating"]),
            vec![],
        ),
        (
            "an unready db-4 goes (the first unhealthy)",
            json!({}),
            five(["ready", "ready", "ready", "ready", "running"]),
            vec!["-pod db-4"],
        ),
        (
            "an unready db-3 holds a healthy db-4? no: db-4 goes first",
            json!({}),
            five(["ready", "ready", "ready", "running", "ready"]),
            vec!["-pod db-4"],
        ),
        (
            "an unready replica holds scale down",
            json!({}),
            five(["ready", "running", "ready", "ready", "ready"]),
            vec![],
        ),
        (
            "Parallel: both at once",
            parallel,
            five(["ready"; 5]),
            vec!["-pod db-4", "-pod db-3"],
        ),
    ];
    for (what, extra, pods, want) in cases {
        let set = sts("img:1", extra);
        let revs = vec![rev(&set, 1)];
        let p = run_plan(&set, &pods, &claims(&[0, 1, 2, 3, 4]), &revs);
        assert_eq!(steps(&p), want, "{what}");
    }
}

#[test]
fn rolling_update_goes_highest_first_within_partition_and_max_unavailable() {
    let old = sts("img:1", json!({}));
    let r1 = rev_name(&old);
    let r2 = rev_name(&sts("img:2", json!({})));
    let status = json!({"status": {"currentRevision": r1}});
    let pods_at = |revs: [(&str, &str); 3]| -> Vec<Pod> {
        revs.iter()
            .enumerate()
            .map(|(i, (r, s))| pod(i as i32, r, s))
            .collect()
    };
    let with = |v: Value| {
        let mut s = status.clone();
        merge(&mut s, v);
        s
    };
    let all_old = pods_at([(&r1, "ready"), (&r1, "ready"), (&r1, "ready")]);
    let cases: Vec<(&str, Value, Vec<Pod>, Vec<String>)> = vec![
        (
            "db-2 first",
            status.clone(),
            all_old.clone(),
            vec!["-pod db-2".into()],
        ),
        (
            "a missing db-2 comes back at the update revision",
            status.clone(),
            all_old[..2].to_vec(),
            vec![format!("+pod db-2@{r2}")],
        ),
        (
            "waits for the new db-2 to be Ready",
            status.clone(),
            pods_at([(&r1, "ready"), (&r1, "ready"), (&r2, "running")]),
            vec![],
        ),
        (
            "then db-1",
            status.clone(),
            pods_at([(&r1, "ready"), (&r1, "ready"), (&r2, "ready")]),
            vec!["-pod db-1".into()],
        ),
        (
            "partition 2 stops after db-2",
            with(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 2}}}})),
            pods_at([(&r1, "ready"), (&r1, "ready"), (&r2, "ready")]),
            vec![],
        ),
        (
            "a pod below the partition comes back at the current revision",
            with(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 2}}}})),
            pods_at([(&r1, "ready"), (&r1, "ready"), (&r2, "ready")])[1..].to_vec(),
            vec![format!("+pod db-0@{r1}")],
        ),
        (
            "maxUnavailable 2: two at once",
            with(json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}}}})),
            all_old.clone(),
            vec!["-pod db-2".into(), "-pod db-1".into()],
        ),
        (
            "OrderedReady: an unready pod holds the rollout",
            with(json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}}}})),
            pods_at([(&r1, "ready"), (&r2, "running"), (&r1, "ready")]),
            vec![],
        ),
        (
            "Parallel, maxUnavailable 2 counts an unhealthy pod",
            with(
                json!({"spec": {"podManagementPolicy": "Parallel", "updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}}}}),
            ),
            pods_at([(&r1, "ready"), (&r2, "running"), (&r1, "ready")]),
            vec!["-pod db-2".into()],
        ),
        (
            "maxUnavailable 50% of 3 rounds up to 2",
            with(
                json!({"spec": {"podManagementPolicy": "Parallel", "updateStrategy": {"rollingUpdate": {"maxUnavailable": "50%"}}}}),
            ),
            all_old.clone(),
            vec!["-pod db-2".into(), "-pod db-1".into()],
        ),
        (
            "OnDelete replaces nothing",
            with(json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}})),
            all_old.clone(),
            vec![],
        ),
        (
            "OnDelete: a deleted pod comes back new",
            with(json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}})),
            all_old[1..].to_vec(),
            vec![format!("+pod db-0@{r2}")],
        ),
    ];
    for (what, extra, pods, want) in cases {
        let set = sts("img:2", extra);
        let revs = vec![rev(&old, 1), rev(&set, 2)];
        let p = run_plan(&set, &pods, &claims(&[0, 1, 2]), &revs);
        assert_eq!(steps(&p), want, "{what}");
    }
}

#[test]
fn a_fixed_template_replaces_a_pod_stuck_on_a_bad_revision() {
    // kubernetes#67250: r2 never becomes Ready; r3 fixes it.
    let good = sts("img:1", json!({}));
    let bad = sts("img:broken", json!({}));
    let r1 = rev_name(&good);
    let r2 = rev_name(&bad);
    let r3 = rev_name(&sts("img:3", json!({})));
    let revs = vec![
        rev(&good, 1),
        rev(&bad, 2),
        rev(&sts("img:3", json!({})), 3),
    ];
    let stuck = vec![
        pod(0, &r1, "ready"),
        pod(1, &r1, "ready"),
        pod(2, &r2, "running"),
    ];
    let status = json!({"status": {"currentRevision": r1}});
    type Case<'a> = (&'a str, &'a str, Value, Vec<Pod>, Vec<String>);
    let cases: Vec<Case> = vec![
        (
            "the bad template itself waits, as Kubernetes",
            "img:broken",
            status.clone(),
            stuck.clone(),
            vec![],
        ),
        (
            "the fixed template replaces the stuck pod at once",
            "img:3",
            status.clone(),
            stuck.clone(),
            vec!["-pod db-2".into()],
        ),
        (
            "and it comes back fixed",
            "img:3",
            status.clone(),
            stuck[..2].to_vec(),
            vec![format!("+pod db-2@{r3}")],
        ),
        (
            "a pod of the update revision is still waited for",
            "img:3",
            status.clone(),
            vec![
                pod(0, &r1, "ready"),
                pod(1, &r1, "ready"),
                pod(2, &r3, "running"),
            ],
            vec![],
        ),
        (
            "a first deployment that never became Ready",
            "img:3",
            json!({"status": {"currentRevision": r2}}),
            vec![pod(0, &r2, "running")],
            vec!["-pod db-0".into()],
        ),
        (
            "not below the partition",
            "img:3",
            json!({"status": {"currentRevision": r1}, "spec": {"updateStrategy": {"rollingUpdate": {"partition": 3}}}}),
            stuck.clone(),
            vec![],
        ),
        (
            "not with OnDelete",
            "img:3",
            json!({"status": {"currentRevision": r1}, "spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}}),
            stuck.clone(),
            vec![],
        ),
    ];
    for (what, img, extra, pods, want) in cases {
        let set = sts(img, extra);
        let p = run_plan(&set, &pods, &claims(&[0, 1, 2]), &revs);
        assert_eq!(steps(&p), want, "{what}");
    }
}

#[test]
fn pods_and_claims_look_as_kubernetes_makes_them() {
    let set = sts(
        "img:1",
        json!({"spec": {"template": {"spec": {"volumes": [{"name": "data", "emptyDir": {}},
        {"name": "cfg", "configMap": {"name": "c"}}]}}}}),
    );
    let r1 = rev_name(&set);
    let p = run_plan(&set, &[], &[], &[rev(&set, 1)]);
    let claim = match &p.actions[0] {
        Action::CreateClaim { claim, pod } => {
            assert_eq!(pod, "db-0");
            claim.clone()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(claim["metadata"]["name"], "data-db-0");
    assert_eq!(
        claim["metadata"]["labels"],
        json!({"tier": "storage", "app": "db"})
    );
    assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    assert!(
        claim["metadata"]["ownerReferences"].is_null(),
        "Retain: no owner"
    );
    let Action::CreatePod(pod) = &p.actions[1] else {
        panic!()
    };
    assert_eq!(pod["metadata"]["name"], "db-0");
    assert_eq!(
        pod["metadata"]["labels"],
        json!({"app": "db", POD_NAME_LABEL: "db-0", POD_INDEX_LABEL: "0", REVISION_LABEL: r1})
    );
    assert_eq!(pod["spec"]["hostname"], "db-0");
    assert_eq!(pod["spec"]["subdomain"], "db");
    assert_eq!(
        pod["spec"]["volumes"],
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}},
               {"name": "cfg", "configMap": {"name": "c"}}]),
        "the claim replaces the template's volume of its name"
    );
    assert_eq!(
        pod["metadata"]["ownerReferences"],
        json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "sts-uid",
                "controller": true, "blockOwnerDeletion": true}])
    );

    // whenDeleted: Delete makes the set the claim's controller from the start.
    let set = sts(
        "img:1",
        json!({"spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"}}}),
    );
    let p = run_plan(&set, &[], &[], &[rev(&set, 1)]);
    let Action::CreateClaim { claim, .. } = &p.actions[0] else {
        panic!()
    };
    assert_eq!(
        claim["metadata"]["ownerReferences"][0]["kind"],
        "StatefulSet"
    );
}

#[test]
fn claims_follow_the_retention_policy() {
    let set_ref = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
        "uid": "sts-uid", "controller": true, "blockOwnerDeletion": true}]);
    let policy = |deleted: &str, scaled: &str| json!({"spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": deleted, "whenScaled": scaled}}});
    // (what, policy, claims of db-0..db-3, steps): 4 ready pods, 3 replicas.
    let cases: Vec<(&str, Value, Vec<PersistentVolumeClaim>, Vec<&str>)> = vec![
        (
            "Retain/Retain: nothing",
            policy("Retain", "Retain"),
            claims(&[0, 1, 2, 3]),
            vec!["-pod db-3"],
        ),
        (
            "Retain/Retain drops a set reference",
            policy("Retain", "Retain"),
            vec![
                claim("data-db-0", set_ref.clone()),
                claim("data-db-1", json!([])),
                claim("data-db-2", json!([])),
                claim("data-db-3", json!([])),
            ],
            vec!["owners data-db-0 ", "-pod db-3"],
        ),
        (
            "whenDeleted Delete: the set owns every claim",
            policy("Delete", "Retain"),
            claims(&[0, 1, 2, 3]),
            vec![
                "owners data-db-0 StatefulSet/db",
                "owners data-db-1 StatefulSet/db",
                "owners data-db-2 StatefulSet/db",
                "owners data-db-3 StatefulSet/db",
                "-pod db-3",
            ],
        ),
        (
            "whenScaled Delete: the scaled-down pod owns its claim before it goes",
            policy("Retain", "Delete"),
            claims(&[0, 1, 2, 3]),
            vec!["owners data-db-3 Pod/db-3", "-pod db-3"],
        ),
        (
            "both Delete",
            policy("Delete", "Delete"),
            vec![
                claim("data-db-0", set_ref.clone()),
                claim("data-db-1", set_ref.clone()),
                claim("data-db-2", set_ref.clone()),
                claim("data-db-3", set_ref.clone()),
            ],
            vec!["owners data-db-3 Pod/db-3", "-pod db-3"],
        ),
    ];
    for (what, extra, cl, want) in cases {
        let set = sts("img:1", extra);
        let r1 = rev_name(&set);
        let pods: Vec<Pod> = (0..4).map(|o| pod(o, &r1, "ready")).collect();
        let p = run_plan(&set, &pods, &cl, &[rev(&set, 1)]);
        assert_eq!(steps(&p), want, "{what}");
    }
}

#[test]
fn revisions_are_recorded_renumbered_and_trimmed() {
    let v1 = sts("img:1", json!({}));
    let v2 = sts("img:2", json!({}));
    // The first sync records revision 1 and makes it current and update.
    let p = run_plan(&v1, &[], &[], &[]);
    let Action::CreateRevision(r) = &p.actions[0] else {
        panic!()
    };
    let name = r["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("db-"), "{name}");
    assert_eq!(r["revision"], 1);
    assert_eq!(r["metadata"]["labels"]["app"], "db");
    assert_eq!(r["metadata"]["labels"][REVISION_LABEL], name);
    assert_eq!(r["data"]["spec"]["template"]["$patch"], "replace");
    assert_eq!(
        r["data"]["spec"]["template"]["spec"]["containers"][0]["image"],
        "img:1"
    );
    assert_eq!(p.status["currentRevision"], name);
    assert_eq!(p.status["updateRevision"], name);
    // Recorded already: nothing to do.
    let p = run_plan(&v1, &[], &[], &[rev(&v1, 1)]);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::CreateRevision(_) | Action::Renumber { .. }))
    );
    // A new template is revision 2; going back renumbers revision 1 to 3.
    let p = run_plan(&v2, &[], &[], &[rev(&v1, 1)]);
    assert!(matches!(&p.actions[0], Action::CreateRevision(r) if r["revision"] == 2));
    let p = run_plan(&v1, &[], &[], &[rev(&v1, 1), rev(&v2, 2)]);
    assert_eq!(
        p.actions[0],
        Action::Renumber {
            name: rev_name(&v1),
            revision: 3
        }
    );
    // A name taken by other data: the collision count goes up and the name changes.
    let mut clash = rev(&v1, 1);
    clash.data = Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
        json!({"spec": {"template": {"other": true}}}),
    ));
    let p = run_plan(&v1, &[], &[], &[clash]);
    let Action::CreateRevision(r) = &p.actions[0] else {
        panic!()
    };
    assert_ne!(r["metadata"]["name"], json!(rev_name(&v1)));
    assert_eq!(p.status["collisionCount"], 1);

    // History: revisionHistoryLimit 1 keeps the newest unused one besides those in use.
    let limited = |img: &str| sts(img, json!({"spec": {"revisionHistoryLimit": 1}}));
    let revs: Vec<ControllerRevision> = (1..=4)
        .map(|i| rev(&limited(&format!("img:{i}")), i))
        .collect();
    let set = limited("img:4");
    let p = run_plan(
        &set,
        &[pod(0, &rev_name(&limited("img:2")), "ready")],
        &claims(&[0]),
        &revs,
    );
    let dropped: Vec<&Action> = p
        .actions
        .iter()
        .filter(|a| matches!(a, Action::DeleteRevision(_)))
        .collect();
    assert_eq!(
        dropped,
        [&Action::DeleteRevision(rev_name(&limited("img:1")))],
        "img:2 is used by a pod, img:3 is within the limit, img:4 is the update"
    );
}

#[test]
fn status_counts_and_completes_the_rollout() {
    let old = sts("img:1", json!({}));
    let r1 = rev_name(&old);
    let r2 = rev_name(&sts("img:2", json!({})));
    let revs = |set: &StatefulSet| vec![rev(&old, 1), rev(set, 2)];
    // Mid-rollout: db-2 new, the rest old.
    let set = sts(
        "img:2",
        json!({"status": {"currentRevision": r1}, "spec": {"minReadySeconds": 10}}),
    );
    let pods = vec![
        pod(0, &r1, "ready"),
        pod(1, &r1, "fresh"),
        pod(2, &r2, "ready"),
    ];
    let p = run_plan(&set, &pods, &claims(&[0, 1, 2]), &revs(&set));
    assert_eq!(
        p.status,
        json!({"observedGeneration": 3, "replicas": 3, "readyReplicas": 3, "currentReplicas": 2,
               "updatedReplicas": 1, "currentRevision": r1, "updateRevision": r2,
               "collisionCount": 0, "availableReplicas": 2})
    );
    // All new and Ready: the update revision becomes current.
    let pods = vec![
        pod(0, &r2, "ready"),
        pod(1, &r2, "ready"),
        pod(2, &r2, "ready"),
    ];
    let p = run_plan(&set, &pods, &claims(&[0, 1, 2]), &revs(&set));
    assert_eq!(p.status["currentRevision"], json!(r2));
    assert_eq!(p.status["currentReplicas"], 3);
    // A rolling deletion counts one current replica less, as Kubernetes does.
    let set = sts("img:2", json!({"status": {"currentRevision": r1}}));
    let pods = vec![
        pod(0, &r1, "ready"),
        pod(1, &r1, "ready"),
        pod(2, &r1, "ready"),
    ];
    let p = run_plan(&set, &pods, &claims(&[0, 1, 2]), &revs(&set));
    assert_eq!(p.status["currentReplicas"], 2);
    assert_eq!(p.status["updatedReplicas"], 0);
    let _ = SignedDuration::ZERO;
}

#[test]
fn a_set_being_deleted_makes_no_pods() {
    let set = sts(
        "img:1",
        json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
    );
    let p = run_plan(&set, &[], &[], &[rev(&sts("img:1", json!({})), 1)]);
    assert_eq!(steps(&p), Vec::<String>::new());
}

#[test]
fn ordinals_parse_only_canonical_names() {
    for (name, want) in [
        ("db-0", Some(0)),
        ("db-12", Some(12)),
        ("db-01", None),
        ("db-x", None),
        ("db", None),
        ("dbx-1", None),
        ("db-a-1", None),
    ] {
        assert_eq!(ordinal_of("db", name), want, "{name}");
    }
}

#[test]
fn orphans_its_selector_matches_are_adopted() {
    let set = sts("img:1", json!({}));
    let r1 = rev_name(&set);
    let orphan = |mut p: Pod| {
        p.metadata.owner_references = None;
        p
    };
    let mut stranger = orphan(pod(2, &r1, "ready"));
    stranger.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
    let mut other_owner = pod(1, &r1, "ready");
    other_owner.metadata.owner_references.as_mut().unwrap()[0].uid = "other".into();
    let mut orphan_rev = rev(&set, 1);
    orphan_rev.metadata.owner_references = None;
    orphan_rev.metadata.uid = Some("rev-uid".into());
    let pods = vec![orphan(pod(0, &r1, "ready")), other_owner, stranger];
    let p = run_plan(&set, &pods, &claims(&[0, 1]), &[orphan_rev]);
    let adopted: Vec<&Action> = p
        .actions
        .iter()
        .filter(|a| matches!(a, Action::AdoptPod { .. } | Action::AdoptRevision { .. }))
        .collect();
    assert_eq!(
        adopted,
        [
            &Action::AdoptPod {
                name: "db-0".into(),
                uid: "uid-0".into()
            },
            &Action::AdoptRevision {
                name: r1.clone(),
                uid: "rev-uid".into()
            },
        ],
        "db-0 matches; a pod of another controller and one the selector misses are left"
    );
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::CreateRevision(_))),
        "the adopted revision is the update revision"
    );
    assert_eq!(
        steps(&p),
        vec![format!("+pod db-1@{r1}")],
        "db-0 counts as the set's"
    );
}

#[test]
fn a_pod_missing_its_identity_labels_gets_them_back() {
    let set = sts("img:1", json!({"spec": {"replicas": 1}}));
    let r1 = rev_name(&set);
    let mut p0 = pod(0, &r1, "ready");
    p0.metadata.labels.as_mut().unwrap().remove(POD_INDEX_LABEL);
    let p = run_plan(&set, &[p0], &claims(&[0]), &[rev(&set, 1)]);
    assert_eq!(
        p.actions,
        [Action::UpdateIdentity {
            name: "db-0".into(),
            labels: json!({POD_NAME_LABEL: "db-0", POD_INDEX_LABEL: "0"})
        }]
    );
    // A set being deleted records no revision and touches nothing.
    let gone = sts(
        "img:1",
        json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
    );
    assert_eq!(run_plan(&gone, &[], &[], &[]).actions, []);
}

#[test]
fn a_claim_still_owned_by_an_earlier_pod_or_being_deleted_holds_the_pod() {
    let set = sts("img:1", json!({"spec": {"replicas": 1}}));
    let r1 = rev_name(&set);
    let old_pod_ref = json!([{"apiVersion": "v1", "kind": "Pod", "name": "db-0",
        "uid": "old-uid", "controller": true}]);
    let mut deleting = claim("data-db-0", json!([]));
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ));
    let cases: Vec<(&str, Vec<PersistentVolumeClaim>, Vec<String>)> = vec![
        (
            "a plain claim is used",
            vec![claim("data-db-0", json!([]))],
            vec![format!("+pod db-0@{r1}")],
        ),
        (
            "a claim a scaled-down pod still owns",
            vec![claim("data-db-0", old_pod_ref)],
            vec![],
        ),
        ("a claim being deleted", vec![deleting], vec![]),
    ];
    for (what, cl, want) in cases {
        let p = run_plan(&set, &[], &cl, &[rev(&set, 1)]);
        assert_eq!(steps(&p), want, "{what}");
    }
}
