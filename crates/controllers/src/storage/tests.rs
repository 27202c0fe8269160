//! Table tests of the storage planner. The planner reads no clock; a small
//! stand-in API applies its writes so each case asserts what `kubectl get`
//! would show after the controllers settle.

use super::plan::*;
use super::*;
use crate::testing::merge;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

fn pvc(name: &str, spec: Value) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "resourceVersion": "1", "finalizers": [PVC_PROTECTION_FINALIZER]},
        "spec": spec, "status": {"phase": "Pending"}
    }))
    .unwrap()
}

fn claim(name: &str, size: &str, class: Option<&str>) -> PersistentVolumeClaim {
    let mut spec = json!({"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                          "resources": {"requests": {"storage": size}}});
    if let Some(c) = class {
        spec["storageClassName"] = json!(c);
    }
    pvc(name, spec)
}

fn pv(name: &str, size: &str, extra: Value) -> PersistentVolume {
    let mut v = json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "1",
                     "finalizers": [PV_PROTECTION_FINALIZER]},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                 "volumeMode": "Filesystem", "persistentVolumeReclaimPolicy": "Retain",
                 "hostPath": {"path": format!("/data/{name}")}},
        "status": {"phase": "Available"}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn class(name: &str, mode: &str, reclaim: &str) -> StorageClass {
    serde_json::from_value(json!({
        "metadata": {"name": name}, "provisioner": LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": reclaim, "volumeBindingMode": mode
    }))
    .unwrap()
}

fn node(name: &str, ready: bool) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {HOSTNAME_LABEL: name}},
        "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
    }))
    .unwrap()
}

fn opts() -> Options {
    Options {
        default_node_path: "/var/lib/skiff/storage".into(),
    }
}

fn deleting(m: &mut ObjectMetaAlias) {
    m.deletion_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
}

type ObjectMetaAlias = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The stand-in API: applies one round's writes; returns the events as `object Reason: message`.
fn apply(o: &mut Observed, actions: &[Action]) -> Vec<String> {
    let mut events = Vec::new();
    let gone = |m: &ObjectMetaAlias| {
        m.deletion_timestamp.is_some() && m.finalizers.as_ref().is_none_or(Vec::is_empty)
    };
    for a in actions {
        match a {
            Action::CreateVolume(v) => {
                let mut v = (**v).clone();
                let n = v.metadata.name.clone().unwrap();
                assert!(
                    !o.volumes
                        .iter()
                        .any(|x| x.metadata.name.as_ref() == Some(&n)),
                    "{n} created twice"
                );
                v.metadata.uid = Some(format!("uid-{n}"));
                v.metadata
                    .finalizers
                    .get_or_insert_with(Vec::new)
                    .push(PV_PROTECTION_FINALIZER.into());
                v.status = Some(k8s_openapi::api::core::v1::PersistentVolumeStatus {
                    phase: Some("Pending".into()),
                    ..Default::default()
                });
                o.volumes.push(v);
            }
            Action::UpdateVolume(v) => {
                let cur = o
                    .volumes
                    .iter_mut()
                    .find(|x| x.metadata.name == v.metadata.name)
                    .unwrap();
                let status = cur.status.clone();
                let dt = cur.metadata.deletion_timestamp.clone();
                *cur = (**v).clone();
                cur.status = status;
                cur.metadata.deletion_timestamp = dt;
            }
            Action::VolumeStatus { name, status } => {
                let cur = o
                    .volumes
                    .iter_mut()
                    .find(|x| x.metadata.name.as_ref() == Some(name))
                    .unwrap();
                cur.status = Some(status.clone());
            }
            Action::DeleteVolume { name, .. } => {
                let cur = o
                    .volumes
                    .iter_mut()
                    .find(|x| x.metadata.name.as_ref() == Some(name))
                    .unwrap();
                deleting(&mut cur.metadata);
            }
            Action::UpdateClaim(c) => {
                let cur = o
                    .claims
                    .iter_mut()
                    .find(|x| x.metadata.name == c.metadata.name)
                    .unwrap();
                let status = cur.status.clone();
                let dt = cur.metadata.deletion_timestamp.clone();
                *cur = (**c).clone();
                cur.status = status;
                cur.metadata.deletion_timestamp = dt;
            }
            Action::ClaimStatus { name, status, .. } => {
                let cur = o
                    .claims
                    .iter_mut()
                    .find(|x| x.metadata.name.as_ref() == Some(name))
                    .unwrap();
                cur.status = Some(status.clone());
            }
            Action::Event {
                about,
                reason,
                message,
                ..
            } => events.push(format!("{} {reason}: {message}", about.name)),
        }
    }
    o.volumes.retain(|v| !gone(&v.metadata));
    o.claims.retain(|c| !gone(&c.metadata));
    events
}

/// Plans and applies rounds until only events are planned; the events, each once.
fn settle(o: &mut Observed) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for _ in 0..10 {
        let actions = plan(o, &opts());
        let writes = actions.iter().any(|a| !matches!(a, Action::Event { .. }));
        for e in apply(o, &actions) {
            if !all.contains(&e) {
                all.push(e);
            }
        }
        if !writes {
            return all;
        }
    }
    panic!("no fixed point after 10 rounds: {o:#?}");
}

fn claim_phase(o: &Observed, name: &str) -> String {
    let c = o
        .claims
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .unwrap();
    format!(
        "{}:{}",
        c.status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default(),
        c.spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default()
    )
}

fn volume_phases(o: &Observed) -> Vec<String> {
    let mut v: Vec<String> = o
        .volumes
        .iter()
        .map(|v| {
            format!(
                "{}={}{}",
                v.metadata.name.as_deref().unwrap(),
                v.status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_default(),
                if v.metadata.deletion_timestamp.is_some() {
                    "(deleting)"
                } else {
                    ""
                }
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn matching_rules() {
    let sel = |c: PersistentVolumeClaim, s: Value| {
        let mut v = serde_json::to_value(c).unwrap();
        v["spec"]["selector"] = s;
        serde_json::from_value::<PersistentVolumeClaim>(v).unwrap()
    };
    let modes = |c: PersistentVolumeClaim, m: Value| {
        let mut v = serde_json::to_value(c).unwrap();
        v["spec"]["accessModes"] = m;
        serde_json::from_value::<PersistentVolumeClaim>(v).unwrap()
    };
    let cases: Vec<(
        &str,
        PersistentVolumeClaim,
        Vec<PersistentVolume>,
        Option<&str>,
    )> = vec![
        (
            "smallest volume that fits",
            claim("c", "3Gi", Some("")),
            vec![
                pv("big", "10Gi", json!({})),
                pv("small", "1Gi", json!({})),
                pv("fit", "5Gi", json!({})),
            ],
            Some("fit"),
        ),
        (
            "units compare by value (3000Mi < 3Gi)",
            claim("c", "3Gi", Some("")),
            vec![
                pv("a", "3000Mi", json!({})),
                pv("b", "3221225472", json!({})),
            ],
            Some("b"),
        ),
        (
            "too small",
            claim("c", "3Gi", Some("")),
            vec![pv("a", "2Gi", json!({}))],
            None,
        ),
        (
            "class must match",
            claim("c", "1Gi", Some("fast")),
            vec![
                pv("slow", "1Gi", json!({"spec": {"storageClassName": "slow"}})),
                pv("none", "1Gi", json!({})),
                pv("fast", "9Gi", json!({"spec": {"storageClassName": "fast"}})),
            ],
            Some("fast"),
        ),
        (
            "a claim without class takes only classless volumes",
            claim("c", "1Gi", Some("")),
            vec![pv(
                "slow",
                "1Gi",
                json!({"spec": {"storageClassName": "slow"}}),
            )],
            None,
        ),
        (
            "access modes must all be offered",
            modes(claim("c", "1Gi", Some("")), json!(["ReadWriteMany"])),
            vec![
                pv("rwo", "1Gi", json!({})),
                pv(
                    "rwx",
                    "1Gi",
                    json!({"spec": {"accessModes": ["ReadWriteOnce", "ReadWriteMany"]}}),
                ),
            ],
            Some("rwx"),
        ),
        (
            "volumes with fewer modes are tried first, before size",
            claim("c", "1Gi", Some("")),
            vec![
                pv(
                    "two-modes",
                    "1Gi",
                    json!({"spec": {"accessModes": ["ReadWriteOnce", "ReadOnlyMany"]}}),
                ),
                pv("one-mode", "8Gi", json!({})),
            ],
            Some("one-mode"),
        ),
        (
            "volumeMode must match",
            claim("c", "1Gi", Some("")),
            vec![pv("block", "1Gi", json!({"spec": {"volumeMode": "Block"}}))],
            None,
        ),
        (
            "selector on labels",
            sel(
                claim("c", "1Gi", Some("")),
                json!({"matchLabels": {"tier": "db"}}),
            ),
            vec![
                pv("plain", "1Gi", json!({})),
                pv("db", "2Gi", json!({"metadata": {"labels": {"tier": "db"}}})),
            ],
            Some("db"),
        ),
        (
            "selector with expressions",
            sel(
                claim("c", "1Gi", Some("")),
                json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}),
            ),
            vec![
                pv("za", "1Gi", json!({"metadata": {"labels": {"zone": "a"}}})),
                pv("zb", "2Gi", json!({"metadata": {"labels": {"zone": "b"}}})),
            ],
            Some("zb"),
        ),
        (
            "pre-bound by claimRef wins over a smaller Available volume",
            claim("c", "1Gi", Some("")),
            vec![
                pv("small", "1Gi", json!({})),
                pv(
                    "mine",
                    "5Gi",
                    json!({"spec": {"claimRef": {"namespace": "default", "name": "c"}}}),
                ),
            ],
            Some("mine"),
        ),
        (
            "claimRef to another claim is not available",
            claim("c", "1Gi", Some("")),
            vec![pv(
                "theirs",
                "1Gi",
                json!({"spec": {"claimRef": {"namespace": "default", "name": "other"}}}),
            )],
            None,
        ),
        (
            "claimRef with another UID (an older claim of that name) is not ours",
            claim("c", "1Gi", Some("")),
            vec![pv(
                "old",
                "1Gi",
                json!({"spec": {"claimRef": {"namespace": "default", "name": "c", "uid": "older"}},
                                          "status": {"phase": "Released"}}),
            )],
            None,
        ),
        (
            "Released and Pending volumes are not taken",
            claim("c", "1Gi", Some("")),
            vec![
                pv("rel", "1Gi", json!({"status": {"phase": "Released"}})),
                pv("pend", "1Gi", json!({"status": {"phase": "Pending"}})),
            ],
            None,
        ),
    ];
    for (what, c, vols, want) in cases {
        let got =
            find_best_match(&c, vols.iter(), false, None).map(|v| v.metadata.name.clone().unwrap());
        assert_eq!(got.as_deref(), want, "{what}");
    }
}

#[test]
fn delay_binding_takes_only_prebound_volumes_until_a_node_is_chosen() {
    let c = claim("c", "1Gi", Some("local"));
    let on = |n: &str| {
        json!({"spec": {"storageClassName": "local", "nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": [n]}]}]}}}})
    };
    let vols = [pv("on-a", "1Gi", on("a")), pv("on-b", "2Gi", on("b"))];
    assert!(find_best_match(&c, vols.iter(), true, None).is_none());
    let b = BTreeMap::from([(HOSTNAME_LABEL.to_string(), "b".to_string())]);
    let got = find_best_match(&c, vols.iter(), true, Some(("b", &b))).unwrap();
    assert_eq!(got.metadata.name.as_deref(), Some("on-b"));
}

use std::collections::BTreeMap;

#[test]
fn binding_writes_what_kubernetes_writes() {
    let mut o = Observed {
        claims: vec![claim("c", "1Gi", Some(""))],
        volumes: vec![pv("v", "2Gi", json!({"status": {"phase": "Pending"}}))],
        ..Default::default()
    };
    let events = settle(&mut o);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(claim_phase(&o, "c"), "Bound:v");
    assert_eq!(volume_phases(&o), ["v=Bound"]);
    let c = serde_json::to_value(&o.claims[0]).unwrap();
    assert_eq!(
        c["metadata"]["annotations"],
        json!({ANN_BOUND_BY_CONTROLLER: "yes", ANN_BIND_COMPLETED: "yes"})
    );
    assert_eq!(
        c["status"],
        json!({"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "2Gi"}, "phase": "Bound"})
    );
    let v = serde_json::to_value(&o.volumes[0]).unwrap();
    assert_eq!(
        v["metadata"]["annotations"],
        json!({ANN_BOUND_BY_CONTROLLER: "yes"})
    );
    assert_eq!(
        v["spec"]["claimRef"],
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "c", "namespace": "default",
               "resourceVersion": "1", "uid": "uid-c"})
    );
}

#[test]
fn prebinding_by_the_user() {
    // (what, claim volumeName, volume, claim phase, volume annotations, events)
    type Case = (
        &'static str,
        &'static str,
        PersistentVolume,
        &'static str,
        Value,
        Vec<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "claim names an Available volume",
            "v",
            pv("v", "1Gi", json!({})),
            "Bound:v",
            json!({ANN_BOUND_BY_CONTROLLER: "yes"}),
            vec![],
        ),
        (
            "volume's claimRef names the claim (no UID): no bound-by-controller on the volume",
            "",
            pv(
                "v",
                "1Gi",
                json!({"spec": {"claimRef": {"namespace": "default", "name": "c"}}}),
            ),
            "Bound:v",
            Value::Null,
            vec![],
        ),
        (
            "claim names a volume too small",
            "v",
            pv("v", "512Mi", json!({})),
            "Pending:v",
            Value::Null,
            vec![
                "c VolumeMismatch: Cannot bind to requested volume \"v\": requested PV is too small",
            ],
        ),
        (
            "claim names a volume of another class",
            "v",
            pv("v", "1Gi", json!({"spec": {"storageClassName": "x"}})),
            "Pending:v",
            Value::Null,
            vec![
                "c VolumeMismatch: Cannot bind to requested volume \"v\": storageClassName does not match",
            ],
        ),
        (
            "claim names a volume bound elsewhere",
            "v",
            pv(
                "v",
                "1Gi",
                json!({"spec": {"claimRef": {"namespace": "default", "name": "other", "uid": "u"}}}),
            ),
            "Pending:v",
            Value::Null,
            vec!["c FailedBinding: volume \"v\" already bound to a different claim."],
        ),
        (
            "claim names a missing volume",
            "nope",
            pv("v", "1Gi", json!({})),
            "Pending:nope",
            Value::Null,
            vec![],
        ),
    ];
    for (what, want_vol, v, phase, anns, want_events) in cases {
        let mut c = claim("c", "1Gi", Some(""));
        if !want_vol.is_empty() {
            c.spec.as_mut().unwrap().volume_name = Some(want_vol.into());
        }
        let mut o = Observed {
            claims: vec![c],
            volumes: vec![v],
            ..Default::default()
        };
        let events = settle(&mut o);
        assert_eq!(claim_phase(&o, "c"), phase, "{what}");
        assert_eq!(events, want_events, "{what}");
        let v = serde_json::to_value(&o.volumes[0]).unwrap();
        assert_eq!(v["metadata"]["annotations"], anns, "{what}");
    }
}

#[test]
fn two_claims_never_share_one_volume() {
    let mut o = Observed {
        claims: vec![claim("a", "1Gi", Some("")), claim("b", "1Gi", Some(""))],
        volumes: vec![pv("v", "1Gi", json!({}))],
        ..Default::default()
    };
    let events = settle(&mut o);
    let phases = [claim_phase(&o, "a"), claim_phase(&o, "b")];
    assert_eq!(
        phases.iter().filter(|p| p.starts_with("Bound")).count(),
        1,
        "{phases:?}"
    );
    assert_eq!(
        events,
        [
            "b FailedBinding: no persistent volumes available for this claim and no storage class is set"
        ]
    );
}

#[test]
fn claims_that_cannot_bind_say_why() {
    let mut other = class("ext", "Immediate", "Delete");
    other.provisioner = "ebs.csi.aws.com".into();
    let mut intree = class("none", "Immediate", "Delete");
    intree.provisioner = "kubernetes.io/no-provisioner".into();
    let cases = [
        (
            Some(""),
            "FailedBinding: no persistent volumes available for this claim and no storage class is set",
        ),
        (
            Some("missing"),
            "ProvisioningFailed: storageclass.storage.k8s.io \"missing\" not found",
        ),
        (
            Some("none"),
            "ProvisioningFailed: no volume plugin matched name: kubernetes.io/no-provisioner",
        ),
        (
            Some("ext"),
            "ExternalProvisioning: Waiting for a volume to be created either by the external provisioner 'ebs.csi.aws.com' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
        ),
        (
            Some("local-path"),
            "WaitForFirstConsumer: waiting for first consumer to be created before binding",
        ),
    ];
    for (class_name, want) in cases {
        let mut o = Observed {
            claims: vec![claim("c", "1Gi", class_name)],
            classes: vec![other.clone(), intree.clone(), default_class()],
            ..Default::default()
        };
        let events = settle(&mut o);
        assert_eq!(events, [format!("c {want}")], "{class_name:?}");
        assert_eq!(claim_phase(&o, "c"), "Pending:");
        assert!(o.volumes.is_empty());
        if class_name == Some("ext") {
            let a = o.claims[0].metadata.annotations.clone().unwrap();
            assert_eq!(a[ANN_STORAGE_PROVISIONER], "ebs.csi.aws.com");
            assert_eq!(a[ANN_BETA_STORAGE_PROVISIONER], "ebs.csi.aws.com");
        }
    }
}

#[test]
fn wait_for_first_consumer_provisions_on_the_selected_node() {
    let mut o = Observed {
        claims: vec![claim("data", "2Gi", Some("local-path"))],
        classes: vec![default_class()],
        nodes: vec![node("n1", true), node("n2", true)],
        ..Default::default()
    };
    let events = settle(&mut o);
    assert_eq!(
        events,
        ["data WaitForFirstConsumer: waiting for first consumer to be created before binding"]
    );
    assert!(o.volumes.is_empty());
    o.claims[0]
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ANN_SELECTED_NODE.into(), "n2".into());
    let events = settle(&mut o);
    assert_eq!(
        events,
        [
            "data ExternalProvisioning: Waiting for a volume to be created either by the external provisioner 'skiff.io/local-path' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
            "data Provisioning: External provisioner is provisioning volume for claim \"default/data\"",
            "data ProvisioningSucceeded: Successfully provisioned volume pvc-uid-data",
        ]
    );
    assert_eq!(claim_phase(&o, "data"), "Bound:pvc-uid-data");
    assert_eq!(volume_phases(&o), ["pvc-uid-data=Bound"]);
    let v = serde_json::to_value(&o.volumes[0]).unwrap();
    assert_eq!(
        v["metadata"]["annotations"],
        json!({ANN_PROVISIONED_BY: LOCAL_PATH_PROVISIONER})
    );
    assert_eq!(
        v["metadata"]["finalizers"],
        json!([LOCAL_PATH_CLEANUP_FINALIZER, PV_PROTECTION_FINALIZER])
    );
    assert_eq!(
        v["spec"]["hostPath"],
        json!({"path": "/var/lib/skiff/storage/pvc-uid-data_default_data", "type": "DirectoryOrCreate"})
    );
    assert_eq!(
        v["spec"]["nodeAffinity"],
        json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]}})
    );
    assert_eq!(v["spec"]["capacity"], json!({"storage": "2Gi"}));
    assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(v["spec"]["storageClassName"], "local-path");
    assert_eq!(v["spec"]["claimRef"]["uid"], "uid-data");
    let c = serde_json::to_value(&o.claims[0]).unwrap();
    assert_eq!(
        c["metadata"]["annotations"],
        json!({ANN_SELECTED_NODE: "n2", ANN_BETA_STORAGE_PROVISIONER: LOCAL_PATH_PROVISIONER,
               ANN_STORAGE_PROVISIONER: LOCAL_PATH_PROVISIONER, ANN_BOUND_BY_CONTROLLER: "yes",
               ANN_BIND_COMPLETED: "yes"})
    );
}

#[test]
fn the_class_node_path_parameter_and_immediate_placement() {
    let mut sc = class("fast", "Immediate", "Retain");
    sc.parameters = Some(BTreeMap::from([(
        NODE_PATH_PARAMETER.to_string(),
        "/mnt/ssd/".to_string(),
    )]));
    let existing = |n: &str, on: &str| {
        pv(
            n,
            "1Gi",
            json!({"spec": {"claimRef": {"namespace": "x", "name": n, "uid": "u"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [on]}]}]}}},
            "status": {"phase": "Released"}}),
        )
    };
    let mut o = Observed {
        claims: vec![claim("c", "1Gi", Some("fast"))],
        classes: vec![sc],
        // n1 holds one volume, n2 none but is not Ready, n3 none.
        nodes: vec![node("n1", true), node("n2", false), node("n3", true)],
        volumes: vec![existing("old", "n1")],
        ..Default::default()
    };
    settle(&mut o);
    assert_eq!(claim_phase(&o, "c"), "Bound:pvc-uid-c");
    let v = o
        .volumes
        .iter()
        .find(|v| v.metadata.name.as_deref() == Some("pvc-uid-c"))
        .unwrap();
    assert_eq!(pinned_hostname(v), Some("n3"));
    let spec = v.spec.as_ref().unwrap();
    assert_eq!(
        spec.host_path.as_ref().unwrap().path,
        "/mnt/ssd/pvc-uid-c_default_c"
    );
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Retain")
    );

    // No Ready node: the provisioner says so and makes nothing.
    let mut o = Observed {
        claims: vec![claim("c", "1Gi", Some("fast"))],
        classes: vec![class("fast", "Immediate", "Delete")],
        nodes: vec![node("n2", false)],
        ..Default::default()
    };
    let events = settle(&mut o);
    assert_eq!(
        events.last().unwrap(),
        "c ProvisioningFailed: failed to provision volume with StorageClass \"fast\": no Ready node to place the volume on"
    );
    assert!(o.volumes.is_empty());
}

#[test]
fn reclaim_policies_when_the_claim_goes() {
    // (what, volume, volumes after the claim is deleted, events)
    let bound = |n: &str, policy: &str, extra: Value| {
        let mut v = pv(
            n,
            "1Gi",
            json!({"spec": {"persistentVolumeReclaimPolicy": policy,
                   "claimRef": {"namespace": "default", "name": "c", "uid": "uid-c"}},
                   "status": {"phase": "Bound"}}),
        );
        let mut j = serde_json::to_value(&v).unwrap();
        merge(&mut j, extra);
        v = serde_json::from_value(j).unwrap();
        v
    };
    let provisioned = json!({"metadata": {"annotations": {ANN_PROVISIONED_BY: LOCAL_PATH_PROVISIONER},
        "finalizers": [LOCAL_PATH_CLEANUP_FINALIZER, PV_PROTECTION_FINALIZER]}});
    let cases = [
        (
            "Retain: Released, kept",
            bound("v", "Retain", json!({})),
            "v=Released",
            vec![],
        ),
        (
            "Delete, provisioned here: deleted, held by the cleanup finalizer only",
            bound("v", "Delete", provisioned.clone()),
            "v=Released(deleting)",
            vec![],
        ),
        (
            "Delete, made by hand: Failed",
            bound("v", "Delete", json!({})),
            "v=Failed",
            vec![
                "v VolumeFailedDelete: error getting deleter volume plugin for volume \"v\": no deletable volume plugin matched",
            ],
        ),
        (
            "Delete, another external provisioner: Released, left to it",
            bound(
                "v",
                "Delete",
                json!({"metadata": {"annotations": {ANN_PROVISIONED_BY: "ebs.csi.aws.com"}}}),
            ),
            "v=Released",
            vec![],
        ),
        (
            "Recycle: Failed",
            bound("v", "Recycle", json!({})),
            "v=Failed",
            vec!["v VolumeFailedRecycle: No recycler plugin found for the volume!"],
        ),
    ];
    for (what, v, want, want_events) in cases {
        let mut o = Observed {
            volumes: vec![v],
            ..Default::default()
        };
        let events = settle(&mut o);
        assert_eq!(volume_phases(&o), [want], "{what}");
        assert_eq!(events, want_events, "{what}");
        if want.contains("deleting") {
            assert_eq!(
                o.volumes[0].metadata.finalizers.as_deref(),
                Some(&[LOCAL_PATH_CLEANUP_FINALIZER.to_string()][..]),
                "{what}: pv-protection lifted, the agent's finalizer left"
            );
        }
    }
    // A new claim of the same name does not take the Released volume back.
    let mut o = Observed {
        claims: vec![{
            let mut c = claim("c", "1Gi", Some(""));
            c.metadata.uid = Some("uid-new".into());
            c
        }],
        volumes: vec![bound("v", "Retain", json!({}))],
        ..Default::default()
    };
    settle(&mut o);
    assert_eq!(volume_phases(&o), ["v=Released"]);
    assert_eq!(claim_phase(&o, "c"), "Pending:");
}

#[test]
fn a_bound_claim_that_loses_its_volume_is_lost() {
    let mut c = claim("c", "1Gi", Some(""));
    c.spec.as_mut().unwrap().volume_name = Some("gone".into());
    c.metadata.annotations = Some(BTreeMap::from([(ANN_BIND_COMPLETED.into(), "yes".into())]));
    let mut o = Observed {
        claims: vec![c],
        ..Default::default()
    };
    let events = settle(&mut o);
    assert_eq!(claim_phase(&o, "c"), "Lost:gone");
    assert_eq!(
        events,
        ["c ClaimLost: Bound claim has lost its PersistentVolume. Data on the volume is lost!"]
    );
}

#[test]
fn protection_finalizers() {
    let pod = |name: &str, node: &str, claim: &str, phase: &str| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [],
                     "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]},
            "status": {"phase": phase}
        }))
        .unwrap()
    };
    // (what, pods, claim finalizer kept)
    let cases = [
        ("no pod", vec![], false),
        (
            "a running pod uses it",
            vec![pod("p", "n1", "c", "Running")],
            true,
        ),
        (
            "a pending, unscheduled pod does not hold it",
            vec![pod("p", "", "c", "Pending")],
            false,
        ),
        (
            "a pod using another claim",
            vec![pod("p", "n1", "other", "Running")],
            false,
        ),
        (
            "a finished pod still names it (as in Kubernetes)",
            vec![pod("p", "n1", "c", "Succeeded")],
            true,
        ),
    ];
    for (what, pods, kept) in cases {
        let mut c = claim("c", "1Gi", Some(""));
        deleting(&mut c.metadata);
        let mut o = Observed {
            claims: vec![c],
            pods,
            ..Default::default()
        };
        settle(&mut o);
        assert_eq!(!o.claims.is_empty(), kept, "{what}");
    }
    // A Bound volume being deleted keeps pv-protection; once its claim is gone it is lifted.
    let mut v = pv(
        "v",
        "1Gi",
        json!({"spec": {"claimRef": {"namespace": "default", "name": "c", "uid": "uid-c"}},
               "status": {"phase": "Bound"}}),
    );
    deleting(&mut v.metadata);
    let mut c = claim("c", "1Gi", Some(""));
    c.spec.as_mut().unwrap().volume_name = Some("v".into());
    c.metadata.annotations = Some(BTreeMap::from([(ANN_BIND_COMPLETED.into(), "yes".into())]));
    let mut o = Observed {
        claims: vec![c],
        volumes: vec![v],
        ..Default::default()
    };
    settle(&mut o);
    assert_eq!(volume_phases(&o), ["v=Bound(deleting)"]);
    o.claims.clear();
    settle(&mut o);
    assert!(o.volumes.is_empty(), "{o:#?}");
}

#[test]
fn the_default_class() {
    let v = serde_json::to_value(default_class()).unwrap();
    assert_eq!(
        v,
        json!({"allowVolumeExpansion": false, "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
               "metadata": {"annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                            "name": "local-path"},
               "provisioner": "skiff.io/local-path", "reclaimPolicy": "Delete",
               "volumeBindingMode": "WaitForFirstConsumer"})
    );
}

#[test]
fn a_claim_made_before_any_default_class_gets_it_later() {
    // No class at all (admission found no default then); "" means none and stays.
    let mut unset = claim("late", "1Gi", None);
    unset.spec.as_mut().unwrap().storage_class_name = None;
    let mut o = Observed {
        claims: vec![unset, claim("none", "1Gi", Some(""))],
        classes: vec![default_class()],
        ..Default::default()
    };
    let events = settle(&mut o);
    let class_of = |o: &Observed, n: &str| {
        o.claims
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(n))
            .and_then(|c| c.spec.as_ref()?.storage_class_name.clone())
    };
    assert_eq!(class_of(&o, "late").as_deref(), Some("local-path"));
    assert_eq!(class_of(&o, "none").as_deref(), Some(""));
    assert_eq!(
        events,
        [
            "none FailedBinding: no persistent volumes available for this claim and no storage class is set",
            "late WaitForFirstConsumer: waiting for first consumer to be created before binding",
        ]
    );
}

#[test]
fn wait_for_first_consumer_names_the_pods_not_yet_scheduled() {
    let pod = |name: &str, node: &str| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [],
                     "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}
        }))
        .unwrap()
    };
    let cases = [
        (
            vec![],
            "WaitForFirstConsumer: waiting for first consumer to be created before binding",
        ),
        (
            vec![pod("db-0", "")],
            "WaitForPodScheduled: waiting for pod db-0 to be scheduled",
        ),
        (
            vec![pod("a", ""), pod("b", ""), pod("c", "n1")],
            "WaitForPodScheduled: waiting for pods a,b to be scheduled",
        ),
    ];
    for (pods, want) in cases {
        let mut o = Observed {
            claims: vec![claim("data", "1Gi", Some("local-path"))],
            classes: vec![default_class()],
            pods,
            ..Default::default()
        };
        assert_eq!(settle(&mut o), [format!("data {want}")]);
    }
}

#[test]
fn only_pods_with_claims_and_node_changes_that_matter_start_a_round() {
    use kube::runtime::watcher::Event;
    use std::sync::Arc;
    let pod = |name: &str, claim: bool| -> Arc<Pod> {
        let vols = if claim {
            json!([{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}])
        } else {
            json!([{"name": "e", "emptyDir": {}}])
        };
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default",
                "resourceVersion": "1"}, "spec": {"containers": [], "volumes": vols}}))
            .unwrap(),
        )
    };
    let mut pods = crate::cache::Cache::new();
    assert!(!apply_pod(&mut pods, Event::Apply(pod("plain", false))));
    assert!(apply_pod(&mut pods, Event::Apply(pod("db", true))));
    assert_eq!(pods.values().count(), 1);

    let mut nodes = crate::cache::Cache::new();
    let mut n = node("n1", true);
    n.metadata.resource_version = Some("1".into());
    assert!(apply_node(&mut nodes, Event::Apply(n.clone())));
    let mut beat = n.clone();
    beat.metadata.resource_version = Some("2".into());
    beat.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_heartbeat_time =
        Some(Time("2026-01-01T00:00:10Z".parse().unwrap()));
    assert!(!apply_node(&mut nodes, Event::Apply(beat)), "a heartbeat");
    let mut down = node("n1", false);
    down.metadata.resource_version = Some("3".into());
    assert!(apply_node(&mut nodes, Event::Apply(down)), "NotReady");
}

#[test]
fn the_cleanup_finalizer_follows_the_reclaim_policy() {
    // Provisioned under a Retain class: no cleanup finalizer, so deleting the PV keeps the data.
    let mut c = claim("c", "1Gi", Some("keep"));
    c.metadata.annotations = Some(BTreeMap::from([(ANN_SELECTED_NODE.into(), "n1".into())]));
    let mut o = Observed {
        claims: vec![c],
        classes: vec![class("keep", "WaitForFirstConsumer", "Retain")],
        ..Default::default()
    };
    settle(&mut o);
    let finalizers = |o: &Observed| o.volumes[0].metadata.finalizers.clone().unwrap_or_default();
    assert_eq!(finalizers(&o), [PV_PROTECTION_FINALIZER]);
    // The administrator switches it to Delete: the finalizer comes; back to Retain: it goes.
    for (policy, want) in [
        (
            "Delete",
            vec![PV_PROTECTION_FINALIZER, LOCAL_PATH_CLEANUP_FINALIZER],
        ),
        ("Retain", vec![PV_PROTECTION_FINALIZER]),
    ] {
        o.volumes[0]
            .spec
            .as_mut()
            .unwrap()
            .persistent_volume_reclaim_policy = Some(policy.into());
        settle(&mut o);
        assert_eq!(finalizers(&o), want, "{policy}");
    }
    // Hand-made volumes are never given it.
    let mut o = Observed {
        volumes: vec![pv(
            "manual",
            "1Gi",
            json!({"spec": {"persistentVolumeReclaimPolicy": "Delete"}}),
        )],
        ..Default::default()
    };
    settle(&mut o);
    assert_eq!(finalizers(&o), [PV_PROTECTION_FINALIZER]);
}

#[test]
fn mismatches_are_explained() {
    // A volume pre-bound (by claimRef) to a claim of another volumeMode: both hear why.
    let mut c = claim("c", "1Gi", Some(""));
    c.spec.as_mut().unwrap().volume_mode = Some("Block".into());
    let mut o = Observed {
        claims: vec![c],
        volumes: vec![pv(
            "v",
            "1Gi",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "c", "uid": "uid-c"}}}),
        )],
        ..Default::default()
    };
    let events = settle(&mut o);
    assert_eq!(
        events,
        [
            "v VolumeMismatch: Cannot bind PersistentVolume to requested PersistentVolumeClaim \"c\" due to incompatible volumeMode.",
            "c VolumeMismatch: Cannot bind PersistentVolume \"v\" to requested PersistentVolumeClaim due to incompatible volumeMode.",
            "c FailedBinding: no persistent volumes available for this claim and no storage class is set",
        ]
    );
    // A claim naming a volume that is being deleted.
    let mut v = pv("v", "1Gi", json!({}));
    v.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    deleting(&mut v.metadata);
    let mut c = claim("c", "1Gi", Some(""));
    c.spec.as_mut().unwrap().volume_name = Some("v".into());
    let mut o = Observed {
        claims: vec![c],
        volumes: vec![v],
        ..Default::default()
    };
    assert_eq!(
        settle(&mut o),
        [
            "c VolumeMismatch: Cannot bind to requested volume \"v\": the volume is marked for deletion \"v\""
        ]
    );
    assert_eq!(claim_phase(&o, "c"), "Pending:v");
}

#[test]
fn a_lost_claim_keeps_no_access_modes_or_capacity() {
    let mut o = Observed {
        claims: vec![claim("c", "1Gi", Some(""))],
        volumes: vec![pv("v", "1Gi", json!({}))],
        ..Default::default()
    };
    settle(&mut o);
    assert_eq!(claim_phase(&o, "c"), "Bound:v");
    o.volumes.clear();
    let events = settle(&mut o);
    assert_eq!(
        events,
        ["c ClaimLost: Bound claim has lost its PersistentVolume. Data on the volume is lost!"]
    );
    let st = o.claims[0].status.clone().unwrap();
    assert_eq!(
        (st.phase.as_deref(), st.access_modes, st.capacity),
        (Some("Lost"), None, None)
    );
    // Said once, not on every round.
    assert!(settle(&mut o).is_empty());
}
