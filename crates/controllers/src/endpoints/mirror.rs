//! The EndpointSlice mirroring controller: the Endpoints a user writes for a
//! Service without a selector are mirrored into EndpointSlices (managed by
//! `endpointslicemirroring-controller.k8s.io`, owned by the Endpoints), so
//! that consumers of slices see them too.
//!
//! Nothing is mirrored when the Service is missing or has a selector, when
//! the Endpoints carry `endpointslice.kubernetes.io/skip-mirror: "true"`, or
//! when they are a leader-election lock; mirrored slices left then are deleted.
//! At most 1000 addresses of a subset are mirrored (ready ones first), as
//! `--mirroring-max-endpoints-per-subset` defaults to.

use super::{
    Group, LEADER_ANNOTATION, MANAGED_BY_LABEL, SERVICE_NAME_LABEL, SlicePlan, Template,
    reconcile_slices,
};
use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The mirroring controller's value of the managed-by label.
pub const MIRROR_CONTROLLER_NAME: &str = "endpointslicemirroring-controller.k8s.io";
/// Endpoints with this label set to `true` are not mirrored.
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
/// The most addresses of one subset that are mirrored.
pub const MAX_MIRRORED_PER_SUBSET: usize = 1000;
/// kubectl's record of the last applied object, never copied onto slices.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Whether `ep` is to be mirrored: its Service exists without a selector, it
/// is not marked skip-mirror and is no leader-election lock.
pub fn should_mirror(svc: Option<&Service>, ep: Option<&Endpoints>) -> bool {
    let (Some(svc), Some(ep)) = (svc, ep) else {
        return false;
    };
    let has_selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|s| !s.is_empty());
    let skip = ep
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SKIP_MIRROR_LABEL))
        .is_some_and(|v| v == "true");
    let leader = ep
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
    !has_selector && !skip && !leader
}

/// An Endpoints address as a slice endpoint, with its address type; None
/// for an address that is not an IP.
fn address_endpoint(a: &EndpointAddress, ready: bool) -> Option<(&'static str, Endpoint)> {
    let ip: IpAddr = a.ip.parse().ok()?;
    let kind = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    let ep = Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            ..Default::default()
        }),
        target_ref: a.target_ref.clone(),
        node_name: a.node_name.clone(),
        hostname: a.hostname.clone().filter(|h| !h.is_empty()),
        ..Default::default()
    };
    Some((kind, ep))
}

/// How mirrored slices of `ep` look apart from their endpoints.
fn template(ep: &Endpoints) -> Template {
    let name = ep.metadata.name.clone().unwrap_or_default();
    let mut labels = ep.metadata.labels.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MIRROR_CONTROLLER_NAME.into());
    let mut ann = ep.metadata.annotations.clone().unwrap_or_default();
    ann.remove(super::TRIGGER_TIME_ANNOTATION);
    ann.remove(LAST_APPLIED);
    Template {
        meta: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: ep.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!ann.is_empty()).then_some(ann),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Endpoints".into(),
                name,
                uid: ep.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        compare_annotations: true,
        placeholder: false,
    }
}

/// Plans the mirrored slices of `ep` (to be mirrored, see [`should_mirror`]);
/// `existing` are the slices the mirroring controller manages for it.
pub fn plan_mirror(ep: &Endpoints, existing: &[&EndpointSlice], max_per_slice: usize) -> SlicePlan {
    let mut want: BTreeMap<String, Group> = BTreeMap::new();
    for ss in ep.subsets.iter().flatten() {
        let ports: Vec<SlicePort> = ss
            .ports
            .iter()
            .flatten()
            .map(|p| SlicePort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let ready = ss.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = ss.not_ready_addresses.iter().flatten().map(|a| (a, false));
        for (a, r) in ready.chain(not_ready).take(MAX_MIRRORED_PER_SUBSET) {
            if let Some((kind, e)) = address_endpoint(a, r) {
                Group::add(&mut want, kind, ports.clone(), e);
            }
        }
    }
    reconcile_slices(&template(ep), want, existing, max_per_slice, None)
}

/// What to delete when nothing is to be mirrored: every mirrored slice.
pub fn plan_unmirror(existing: &[&EndpointSlice]) -> SlicePlan {
    SlicePlan {
        delete: existing
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn svc(selector: Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "ext", "namespace": "default"},
            "spec": {"selector": selector, "ports": [{"port": 80}]}}))
        .unwrap()
    }

    fn eps(extra: Value) -> Endpoints {
        let mut v = json!({
            "metadata": {"name": "ext", "namespace": "default", "uid": "ep-uid",
                         "labels": {"team": "a"},
                         "annotations": {"note": "x", LAST_APPLIED: "{}",
                                         "endpoints.kubernetes.io/last-change-trigger-time": "t"}},
            "subsets": [{"addresses": [{"ip": "192.0.2.1", "hostname": "one"}, {"ip": "2001:db8::1"}],
                         "notReadyAddresses": [{"ip": "192.0.2.2", "nodeName": "n1"}],
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}]
        });
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn what_is_mirrored() {
        let cases = [
            ("no selector", Some(svc(Value::Null)), eps(json!({})), true),
            ("empty selector", Some(svc(json!({}))), eps(json!({})), true),
            (
                "a selector",
                Some(svc(json!({"app": "x"}))),
                eps(json!({})),
                false,
            ),
            ("no service", None, eps(json!({})), false),
            (
                "skip-mirror",
                Some(svc(Value::Null)),
                eps(json!({"metadata": {"name": "ext", "labels": {SKIP_MIRROR_LABEL: "true"}}})),
                false,
            ),
            (
                "skip-mirror false",
                Some(svc(Value::Null)),
                eps(json!({"metadata": {"name": "ext", "labels": {SKIP_MIRROR_LABEL: "false"}}})),
                true,
            ),
            (
                "leader lock",
                Some(svc(Value::Null)),
                eps(json!({"metadata": {"name": "ext", "annotations": {LEADER_ANNOTATION: "{}"}}})),
                false,
            ),
        ];
        for (name, s, e, want) in cases {
            assert_eq!(should_mirror(s.as_ref(), Some(&e)), want, "{name}");
        }
        assert!(!should_mirror(Some(&svc(Value::Null)), None));
    }

    #[test]
    fn mirrored_slices_look_as_kubernetes_writes_them() {
        let plan = plan_mirror(&eps(json!({})), &[], 100);
        let mut got: Vec<Value> = plan
            .create
            .iter()
            .map(|s| serde_json::to_value(s).unwrap())
            .collect();
        got.sort_by_key(|v| v["addressType"].to_string());
        let meta = json!({
            "annotations": {"note": "x"},
            "generateName": "ext-",
            "labels": {"endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io",
                       "kubernetes.io/service-name": "ext", "team": "a"},
            "namespace": "default",
            "ownerReferences": [{"apiVersion": "v1", "blockOwnerDeletion": true, "controller": true,
                                 "kind": "Endpoints", "name": "ext", "uid": "ep-uid"}]
        });
        let ports = json!([{"name": "http", "port": 80, "protocol": "TCP"}]);
        assert_eq!(
            got,
            vec![
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                       "addressType": "IPv4", "metadata": meta, "ports": ports,
                       "endpoints": [
                           {"addresses": ["192.0.2.1"], "conditions": {"ready": true}, "hostname": "one"},
                           {"addresses": ["192.0.2.2"], "conditions": {"ready": false}, "nodeName": "n1"}]}),
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                       "addressType": "IPv6", "metadata": meta, "ports": ports,
                       "endpoints": [{"addresses": ["2001:db8::1"], "conditions": {"ready": true}}]}),
            ]
        );
    }

    fn stored(s: &EndpointSlice, name: &str) -> EndpointSlice {
        let mut v = serde_json::to_value(s).unwrap();
        v["metadata"]["name"] = json!(name);
        v["metadata"]["resourceVersion"] = json!("3");
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn mirroring_writes_only_changes() {
        let e = eps(json!({}));
        let plan = plan_mirror(&e, &[], 100);
        let slices: Vec<EndpointSlice> = plan
            .create
            .iter()
            .enumerate()
            .map(|(i, s)| stored(s, &format!("ext-{i}")))
            .collect();
        let existing: Vec<&EndpointSlice> = slices.iter().collect();
        assert!(plan_mirror(&e, &existing, 100).is_empty());
        // An annotation change on the Endpoints reaches the slices.
        let mut e2 = e.clone();
        e2.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("note".into(), "y".into());
        let plan = plan_mirror(&e2, &existing, 100);
        assert_eq!((plan.create.len(), plan.update.len()), (0, 2));
        // An address going away updates only its slice.
        let e3 = eps(
            json!({"subsets": [{"addresses": [{"ip": "192.0.2.1", "hostname": "one"}],
            "notReadyAddresses": [{"ip": "192.0.2.2", "nodeName": "n1"}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}]}),
        );
        let plan = plan_mirror(&e3, &existing, 100);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (0, 0, 1)
        );
        assert_eq!(plan_unmirror(&existing).delete, vec!["ext-0", "ext-1"]);
    }

    #[test]
    fn at_most_1000_addresses_of_a_subset_are_mirrored_ready_first() {
        let addrs = |n: u32, base: u32| -> Vec<Value> {
            (0..n)
                .map(|i| json!({"ip": std::net::Ipv4Addr::from(base + i).to_string()}))
                .collect()
        };
        let e = eps(json!({"subsets": [{
            "addresses": addrs(900, 0x0a00_0000),
            "notReadyAddresses": addrs(300, 0x0b00_0000),
            "ports": [{"port": 80}]}]}));
        let plan = plan_mirror(&e, &[], 100);
        let all: Vec<&Endpoint> = plan.create.iter().flat_map(|s| &s.endpoints).collect();
        assert_eq!(all.len(), 1000);
        let ready = all
            .iter()
            .filter(|e| e.conditions.as_ref().unwrap().ready == Some(true))
            .count();
        assert_eq!(ready, 900);
        assert!(plan.create.iter().all(|s| s.endpoints.len() <= 100));
    }
}
