//! Conversion between versions that share storage: core/v1 and
//! events.k8s.io/v1 Events, autoscaling/v2 and autoscaling/v1 HPAs.
//!
//! Events map field for field (`involvedObject` ↔ `regarding`, `message` ↔ `note`,
//! `source` ↔ `deprecatedSource`, …), so both directions are lossless.
//!
//! HPAs follow Kubernetes' autoscaling/v1 conversion: the first `cpu` Resource
//! metric with an `averageUtilization` becomes `targetCPUUtilizationPercentage`,
//! and what v1 cannot hold travels in the round-trip annotations
//! `autoscaling.alpha.kubernetes.io/{metrics,current-metrics,behavior,conditions}`
//! (metrics in the autoscaling/v1 `MetricSpec` form), which the way back reads
//! and removes. As in Kubernetes, the CPU metric comes back after the others.

use crate::catalog::ResourceInfo;
use crate::meta;
use serde_json::{Map, Value, json};

/// Annotation holding the v2 metrics a v1 HPA cannot express.
pub const METRIC_SPECS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// Annotation holding the v2 `status.currentMetrics` of a v1 HPA.
pub const METRIC_STATUSES_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// Annotation holding the v2 `spec.behavior` of a v1 HPA.
pub const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";
/// Annotation holding the v2 `status.conditions` of a v1 HPA.
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";

const ROUND_TRIP_ANNOTATIONS: [&str; 4] = [
    METRIC_SPECS_ANNOTATION,
    METRIC_STATUSES_ANNOTATION,
    BEHAVIOR_ANNOTATION,
    CONDITIONS_ANNOTATION,
];

/// Converts an object from one version of a storage to another. Objects of
/// the same group and version are returned as they are; kinds without a
/// conversion only get their `apiVersion` and `kind` rewritten.
pub fn convert(obj: Value, from: &ResourceInfo, to: &ResourceInfo) -> Value {
    if from.group == to.group && from.version == to.version {
        return obj;
    }
    if !obj.is_object() {
        return obj;
    }
    let converted = match (from.kind, from.group, from.version, to.group, to.version) {
        ("Event", "", _, "events.k8s.io", _) => map_fields(&obj, EVENT_FIELDS, false),
        ("Event", "events.k8s.io", _, "", _) => map_fields(&obj, EVENT_FIELDS, true),
        ("HorizontalPodAutoscaler", "autoscaling", "v2", "autoscaling", "v1") => hpa_v2_to_v1(&obj),
        ("HorizontalPodAutoscaler", "autoscaling", "v1", "autoscaling", "v2") => hpa_v1_to_v2(&obj),
        _ => obj,
    };
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(to.api_version()));
    out.insert("kind".into(), Value::String(to.kind.into()));
    if let Value::Object(m) = converted {
        for (k, v) in m {
            if k != "apiVersion" && k != "kind" {
                out.insert(k, v);
            }
        }
    }
    Value::Object(out)
}

/// A field mapping: the path on one side, the path on the other.
type Pairs = &'static [(&'static [&'static str], &'static [&'static str])];

/// core/v1 Event paths → events.k8s.io/v1 Event paths, in events.k8s.io field order.
const EVENT_FIELDS: Pairs = &[
    (&["metadata"], &["metadata"]),
    (&["eventTime"], &["eventTime"]),
    (&["series"], &["series"]),
    (&["reportingComponent"], &["reportingController"]),
    (&["reportingInstance"], &["reportingInstance"]),
    (&["action"], &["action"]),
    (&["reason"], &["reason"]),
    (&["involvedObject"], &["regarding"]),
    (&["related"], &["related"]),
    (&["message"], &["note"]),
    (&["type"], &["type"]),
    (&["source", "component"], &["deprecatedSource", "component"]),
    (&["source", "host"], &["deprecatedSource", "host"]),
    (&["firstTimestamp"], &["deprecatedFirstTimestamp"]),
    (&["lastTimestamp"], &["deprecatedLastTimestamp"]),
    (&["count"], &["deprecatedCount"]),
];

/// Copies the value at `from` (when present, null included) to `to`.
fn copy(src: &Value, from: &[&str], dst: &mut Value, to: &[&str]) {
    if let Some(v) = meta::at(src, from) {
        meta::set(dst, to, v.clone());
    }
}

/// Builds a new object from `src` through `pairs`, left to right or (`reverse`)
/// right to left. An empty `source`/`deprecatedSource` object is carried as such.
fn map_fields(src: &Value, pairs: Pairs, reverse: bool) -> Value {
    let mut out = json!({});
    for (a, b) in pairs {
        let (from, to) = if reverse { (b, a) } else { (a, b) };
        if from.len() == 2 && to.len() == 2 && meta::at(src, &from[..1]).is_some() {
            // Keep an empty parent object present on the other side.
            meta::object_at(&mut out, &to[..1]);
        }
        copy(src, from, &mut out, to);
    }
    out
}

// ---------------------------------------------------------------------------
// HorizontalPodAutoscaler

/// For each metric type: its key, the spec field pairs (v2 → v1), the status
/// field pairs (v2 → v1).
const METRIC_TYPES: &[(&str, &str, Pairs, Pairs)] = &[
    (
        "Resource",
        "resource",
        &[
            (&["name"], &["name"]),
            (
                &["target", "averageUtilization"],
                &["targetAverageUtilization"],
            ),
            (&["target", "averageValue"], &["targetAverageValue"]),
        ],
        &[
            (&["name"], &["name"]),
            (
                &["current", "averageUtilization"],
                &["currentAverageUtilization"],
            ),
            (&["current", "averageValue"], &["currentAverageValue"]),
        ],
    ),
    (
        "ContainerResource",
        "containerResource",
        &[
            (&["name"], &["name"]),
            (
                &["target", "averageUtilization"],
                &["targetAverageUtilization"],
            ),
            (&["target", "averageValue"], &["targetAverageValue"]),
            (&["container"], &["container"]),
        ],
        &[
            (&["name"], &["name"]),
            (
                &["current", "averageUtilization"],
                &["currentAverageUtilization"],
            ),
            (&["current", "averageValue"], &["currentAverageValue"]),
            (&["container"], &["container"]),
        ],
    ),
    (
        "Pods",
        "pods",
        &[
            (&["metric", "name"], &["metricName"]),
            (&["target", "averageValue"], &["targetAverageValue"]),
            (&["metric", "selector"], &["selector"]),
        ],
        &[
            (&["metric", "name"], &["metricName"]),
            (&["current", "averageValue"], &["currentAverageValue"]),
            (&["metric", "selector"], &["selector"]),
        ],
    ),
    (
        "Object",
        "object",
        &[
            (&["describedObject"], &["target"]),
            (&["metric", "name"], &["metricName"]),
            (&["target", "value"], &["targetValue"]),
            (&["metric", "selector"], &["selector"]),
            (&["target", "averageValue"], &["averageValue"]),
        ],
        &[
            (&["describedObject"], &["target"]),
            (&["metric", "name"], &["metricName"]),
            (&["current", "value"], &["currentValue"]),
            (&["metric", "selector"], &["selector"]),
            (&["current", "averageValue"], &["averageValue"]),
        ],
    ),
    (
        "External",
        "external",
        &[
            (&["metric", "name"], &["metricName"]),
            (&["metric", "selector"], &["metricSelector"]),
            (&["target", "value"], &["targetValue"]),
            (&["target", "averageValue"], &["targetAverageValue"]),
        ],
        &[
            (&["metric", "name"], &["metricName"]),
            (&["metric", "selector"], &["metricSelector"]),
            (&["current", "value"], &["currentValue"]),
            (&["current", "averageValue"], &["currentAverageValue"]),
        ],
    ),
];

/// Converts one metric spec (`status == false`) or metric status between the v2
/// and v1 forms. `to_v1` picks the direction.
fn convert_metric(m: &Value, status: bool, to_v1: bool) -> Value {
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    let mut out = json!({"type": ty});
    let Some((_, key, spec_pairs, status_pairs)) = METRIC_TYPES.iter().find(|t| t.0 == ty) else {
        return out;
    };
    let Some(src) = m.get(*key).filter(|v| v.is_object()) else {
        return out;
    };
    let pairs = if status { status_pairs } else { spec_pairs };
    let mut body = map_fields(src, pairs, !to_v1);
    if !to_v1 && !status {
        // v1 has no target type; Kubernetes derives it from what is set.
        let has = |k: &str| src.get(k).is_some_and(|v| !v.is_null());
        let target_type = match ty {
            "Resource" | "ContainerResource" if has("targetAverageUtilization") => "Utilization",
            "Resource" | "ContainerResource" | "Pods" => "AverageValue",
            "Object" if has("averageValue") => "AverageValue",
            "External" if has("targetAverageValue") => "AverageValue",
            _ => "Value",
        };
        let target = meta::object_at(&mut body, &["target"]);
        let mut with_type = Map::new();
        with_type.insert("type".into(), json!(target_type));
        with_type.extend(std::mem::take(target));
        *target = with_type;
    }
    out[*key] = body;
    out
}

fn is_cpu_resource(m: &Value) -> bool {
    m.get("type").and_then(Value::as_str) == Some("Resource")
        && meta::str_at(m, &["resource", "name"]) == Some("cpu")
}

fn array<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    meta::at(v, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn hpa_v2_to_v1(src: &Value) -> Value {
    let mut out = json!({});
    copy(src, &["metadata"], &mut out, &["metadata"]);
    let mut annotations: Map<String, Value> = meta::at(src, &["metadata", "annotations"])
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for a in ROUND_TRIP_ANNOTATIONS {
        annotations.remove(a);
    }

    // Spec.
    if meta::at(src, &["spec"]).is_some() {
        meta::object_at(&mut out, &["spec"]);
    }
    for f in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        copy(src, &["spec", f], &mut out, &["spec", f]);
    }
    let metrics = array(src, &["spec", "metrics"]);
    if let Some(cpu) = metrics.iter().find(|m| is_cpu_resource(m))
        && let Some(u) = meta::at(cpu, &["resource", "target", "averageUtilization"])
        && !u.is_null()
    {
        meta::set(
            &mut out,
            &["spec", "targetCPUUtilizationPercentage"],
            u.clone(),
        );
    }
    let others: Vec<Value> = metrics
        .iter()
        .filter(|m| {
            !(is_cpu_resource(m)
                && meta::at(m, &["resource", "target", "averageUtilization"])
                    .is_some_and(|u| !u.is_null()))
        })
        .map(|m| convert_metric(m, false, true))
        .collect();
    if !others.is_empty() {
        annotations.insert(
            METRIC_SPECS_ANNOTATION.into(),
            json!(Value::Array(others).to_string()),
        );
    }
    if let Some(b) = meta::at(src, &["spec", "behavior"]).filter(|b| !b.is_null()) {
        annotations.insert(BEHAVIOR_ANNOTATION.into(), json!(b.to_string()));
    }

    // Status.
    if meta::at(src, &["status"]).is_some() {
        meta::object_at(&mut out, &["status"]);
    }
    for f in [
        "observedGeneration",
        "lastScaleTime",
        "currentReplicas",
        "desiredReplicas",
    ] {
        copy(src, &["status", f], &mut out, &["status", f]);
    }
    let current = array(src, &["status", "currentMetrics"]);
    for m in current.iter().filter(|m| is_cpu_resource(m)) {
        if let Some(u) = meta::at(m, &["resource", "current", "averageUtilization"])
            && !u.is_null()
        {
            meta::set(
                &mut out,
                &["status", "currentCPUUtilizationPercentage"],
                u.clone(),
            );
        }
    }
    if !current.is_empty() {
        let v1: Vec<Value> = current
            .iter()
            .map(|m| convert_metric(m, true, true))
            .collect();
        annotations.insert(
            METRIC_STATUSES_ANNOTATION.into(),
            json!(Value::Array(v1).to_string()),
        );
    }
    let conditions = array(src, &["status", "conditions"]);
    if !conditions.is_empty() {
        annotations.insert(
            CONDITIONS_ANNOTATION.into(),
            json!(Value::Array(conditions.to_vec()).to_string()),
        );
    }

    set_annotations(&mut out, annotations);
    out
}

fn hpa_v1_to_v2(src: &Value) -> Value {
    let mut out = json!({});
    copy(src, &["metadata"], &mut out, &["metadata"]);
    let mut annotations: Map<String, Value> = meta::at(src, &["metadata", "annotations"])
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    // Each annotation is used (and removed) only when it parses as a list/object.
    let mut take = |name: &str, want_array: bool| -> Option<Value> {
        let parsed: Value = serde_json::from_str(annotations.get(name)?.as_str()?).ok()?;
        if parsed.is_array() != want_array || (!want_array && !parsed.is_object()) {
            return None;
        }
        annotations.remove(name);
        Some(parsed)
    };
    let other_metrics = take(METRIC_SPECS_ANNOTATION, true);
    let behavior = take(BEHAVIOR_ANNOTATION, false);
    let current_metrics = take(METRIC_STATUSES_ANNOTATION, true);
    let conditions = take(CONDITIONS_ANNOTATION, true);

    // Spec.
    if meta::at(src, &["spec"]).is_some() {
        meta::object_at(&mut out, &["spec"]);
    }
    for f in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        copy(src, &["spec", f], &mut out, &["spec", f]);
    }
    let mut metrics: Vec<Value> = other_metrics
        .as_ref()
        .map(|m| array(m, &[]))
        .unwrap_or_default()
        .iter()
        .map(|m| convert_metric(m, false, false))
        .collect();
    if let Some(cpu) =
        meta::at(src, &["spec", "targetCPUUtilizationPercentage"]).filter(|v| !v.is_null())
    {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": cpu}}}));
    }
    if !metrics.is_empty() {
        meta::set(&mut out, &["spec", "metrics"], Value::Array(metrics));
    }
    if let Some(b) = behavior {
        meta::set(&mut out, &["spec", "behavior"], b);
    }

    // Status.
    if meta::at(src, &["status"]).is_some() {
        meta::object_at(&mut out, &["status"]);
    }
    for f in [
        "observedGeneration",
        "lastScaleTime",
        "currentReplicas",
        "desiredReplicas",
    ] {
        copy(src, &["status", f], &mut out, &["status", f]);
    }
    let current: Vec<Value> = match current_metrics {
        Some(list) => array(&list, &[])
            .iter()
            .map(|m| convert_metric(m, true, false))
            .collect(),
        None => meta::at(src, &["status", "currentCPUUtilizationPercentage"])
            .filter(|v| !v.is_null())
            .map(|cpu| {
                vec![json!({"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": cpu}}})]
            })
            .unwrap_or_default(),
    };
    if !current.is_empty() {
        meta::set(
            &mut out,
            &["status", "currentMetrics"],
            Value::Array(current),
        );
    }
    if let Some(c) = conditions {
        meta::set(&mut out, &["status", "conditions"], c);
    }

    set_annotations(&mut out, annotations);
    out
}

/// Writes `metadata.annotations`, removing the key when there are none.
fn set_annotations(out: &mut Value, annotations: Map<String, Value>) {
    let Some(md) = out.get_mut("metadata").and_then(Value::as_object_mut) else {
        if !annotations.is_empty() {
            meta::set(
                out,
                &["metadata", "annotations"],
                Value::Object(annotations),
            );
        }
        return;
    };
    if annotations.is_empty() {
        md.remove("annotations");
    } else {
        md.insert("annotations".into(), Value::Object(annotations));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::lookup_kind;

    fn core_event() -> &'static ResourceInfo {
        lookup_kind("", "v1", "Event").unwrap()
    }
    fn events_event() -> &'static ResourceInfo {
        lookup_kind("events.k8s.io", "v1", "Event").unwrap()
    }
    fn hpa_v1() -> &'static ResourceInfo {
        lookup_kind("autoscaling", "v1", "HorizontalPodAutoscaler").unwrap()
    }
    fn hpa_v2() -> &'static ResourceInfo {
        lookup_kind("autoscaling", "v2", "HorizontalPodAutoscaler").unwrap()
    }

    fn full_core_event() -> Value {
        json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "p.17a", "namespace": "default", "resourceVersion": "5"},
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "p", "uid": "u1",
                "apiVersion": "v1", "fieldPath": "spec.containers{c}"},
            "reason": "Pulled", "message": "Successfully pulled image",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:01:00Z",
            "count": 3, "type": "Normal", "eventTime": null,
            "series": {"count": 2, "lastObservedTime": "2024-01-01T00:01:00.000000Z"},
            "action": "Pulling", "related": {"kind": "Node", "name": "node-1"},
            "reportingComponent": "kubelet", "reportingInstance": "node-1"})
    }

    #[test]
    fn core_event_to_events_v1_maps_every_field() {
        let out = convert(full_core_event(), core_event(), events_event());
        let want = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "p.17a", "namespace": "default", "resourceVersion": "5"},
            "eventTime": null,
            "series": {"count": 2, "lastObservedTime": "2024-01-01T00:01:00.000000Z"},
            "reportingController": "kubelet", "reportingInstance": "node-1",
            "action": "Pulling", "reason": "Pulled",
            "regarding": {"kind": "Pod", "namespace": "default", "name": "p", "uid": "u1",
                "apiVersion": "v1", "fieldPath": "spec.containers{c}"},
            "related": {"kind": "Node", "name": "node-1"},
            "note": "Successfully pulled image", "type": "Normal",
            "deprecatedSource": {"component": "kubelet", "host": "node-1"},
            "deprecatedFirstTimestamp": "2024-01-01T00:00:00Z",
            "deprecatedLastTimestamp": "2024-01-01T00:01:00Z", "deprecatedCount": 3});
        assert_eq!(out, want);
        (events_event().roundtrip)(&out).expect("valid events.k8s.io Event");
    }

    #[test]
    fn events_round_trip_is_lossless() {
        let cases = [
            full_core_event(),
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
                "involvedObject": {"kind": "Node", "name": "n"}, "reason": "Starting",
                "message": "m", "source": {}, "type": "Normal"}),
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
                "involvedObject": {}, "eventTime": "2024-01-01T00:00:00.123456Z",
                "reportingComponent": "c", "reportingInstance": "i", "action": "A",
                "reason": "R", "note_is_not_core": null}),
        ];
        for (i, ev) in cases.into_iter().enumerate() {
            let there = convert(ev.clone(), core_event(), events_event());
            let back = convert(there, events_event(), core_event());
            let mut want = ev;
            want.as_object_mut().unwrap().remove("note_is_not_core");
            assert_eq!(back, want, "case {i}");
            (core_event().roundtrip)(&back).expect("valid core Event");
        }
    }

    #[test]
    fn events_v1_to_core_reads_regarding_and_note() {
        let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "ns"}, "eventTime": "2024-01-01T00:00:00.000001Z",
            "reportingController": "skiff/scheduler", "reportingInstance": "skiff",
            "action": "Binding", "reason": "Scheduled", "regarding": {"kind": "Pod", "name": "p"},
            "note": "Successfully assigned ns/p to n", "type": "Normal"});
        let out = convert(ev, events_event(), core_event());
        assert_eq!(out["apiVersion"], "v1");
        assert_eq!(out["involvedObject"], json!({"kind": "Pod", "name": "p"}));
        assert_eq!(out["message"], "Successfully assigned ns/p to n");
        assert_eq!(out["reportingComponent"], "skiff/scheduler");
        assert_eq!(out["eventTime"], "2024-01-01T00:00:00.000001Z");
        assert!(out.get("source").is_none());
        assert!(out.get("count").is_none());
        assert!(out.get("note").is_none());
    }

    fn cpu_hpa_v2() -> Value {
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "h", "namespace": "default", "annotations": {"team": "a"}},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
                "minReplicas": 1, "maxReplicas": 10,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 50}}}]},
            "status": {"observedGeneration": 2, "lastScaleTime": "2024-01-01T00:00:00Z",
                "currentReplicas": 2, "desiredReplicas": 3,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": 70}}}]}})
    }

    #[test]
    fn hpa_v2_to_v1_cpu_only() {
        let out = convert(cpu_hpa_v2(), hpa_v2(), hpa_v1());
        assert_eq!(out["apiVersion"], "autoscaling/v1");
        assert_eq!(
            out["spec"],
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
                "minReplicas": 1, "maxReplicas": 10, "targetCPUUtilizationPercentage": 50})
        );
        assert_eq!(out["status"]["currentCPUUtilizationPercentage"], 70);
        assert_eq!(out["status"]["desiredReplicas"], 3);
        let annotations = out["metadata"]["annotations"].as_object().unwrap();
        assert_eq!(annotations["team"], "a");
        assert!(!annotations.contains_key(METRIC_SPECS_ANNOTATION));
        assert_eq!(
            annotations[METRIC_STATUSES_ANNOTATION],
            r#"[{"type":"Resource","resource":{"name":"cpu","currentAverageUtilization":70}}]"#
        );
        (hpa_v1().roundtrip)(&out).expect("valid v1 HPA");
    }

    #[test]
    fn hpa_cpu_only_round_trip_is_lossless() {
        let v2 = cpu_hpa_v2();
        let back = convert(convert(v2.clone(), hpa_v2(), hpa_v1()), hpa_v1(), hpa_v2());
        assert_eq!(back, v2);
    }

    #[test]
    fn hpa_round_trip_keeps_other_metrics_behavior_and_conditions() {
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "maxReplicas": 4,
                "metrics": [
                    {"type": "Pods", "pods": {"metric": {"name": "qps"},
                        "target": {"type": "AverageValue", "averageValue": "10"}}},
                    {"type": "Resource", "resource": {"name": "memory",
                        "target": {"type": "AverageValue", "averageValue": "1Gi"}}},
                    {"type": "Object", "object": {"describedObject": {"kind": "Ingress", "name": "i"},
                        "metric": {"name": "rps"}, "target": {"type": "Value", "value": "100"}}},
                    {"type": "External", "external": {"metric": {"name": "queue",
                        "selector": {"matchLabels": {"q": "a"}}},
                        "target": {"type": "AverageValue", "averageValue": "30"}}},
                    {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
                        "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
            "status": {"currentReplicas": 1, "desiredReplicas": 1,
                "currentMetrics": [{"type": "Pods", "pods": {"metric": {"name": "qps"},
                    "current": {"averageValue": "5"}}}],
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale",
                    "lastTransitionTime": "2024-01-01T00:00:00Z"}]}});
        let v1 = convert(v2.clone(), hpa_v2(), hpa_v1());
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 80);
        assert!(
            v1["status"]
                .get("currentCPUUtilizationPercentage")
                .is_none()
        );
        let stored: Value = serde_json::from_str(
            v1["metadata"]["annotations"][METRIC_SPECS_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            stored[0],
            json!({"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "10"}})
        );
        assert_eq!(
            stored[3],
            json!({"type": "External", "external": {"metricName": "queue",
                "metricSelector": {"matchLabels": {"q": "a"}}, "targetAverageValue": "30"}})
        );
        (hpa_v1().roundtrip)(&v1).expect("valid v1 HPA");

        let back = convert(v1, hpa_v1(), hpa_v2());
        assert_eq!(back["spec"]["metrics"], v2["spec"]["metrics"]);
        assert_eq!(back["spec"]["behavior"], v2["spec"]["behavior"]);
        assert_eq!(back["status"], v2["status"]);
        assert!(back["metadata"].get("annotations").is_none());
        (hpa_v2().roundtrip)(&back).expect("valid v2 HPA");
    }

    #[test]
    fn hpa_v1_without_cpu_target_has_no_metrics() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "h", "annotations": {METRIC_SPECS_ANNOTATION: "not json"}},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "maxReplicas": 3},
            "status": {"currentReplicas": 0, "desiredReplicas": 0, "currentCPUUtilizationPercentage": 12}});
        let v2 = convert(v1, hpa_v1(), hpa_v2());
        assert!(v2["spec"].get("metrics").is_none());
        assert_eq!(
            v2["status"]["currentMetrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12}}}])
        );
        // An annotation that does not parse is left where it is.
        assert_eq!(
            v2["metadata"]["annotations"][METRIC_SPECS_ANNOTATION],
            "not json"
        );
    }

    #[test]
    fn same_version_is_untouched_and_other_kinds_are_relabelled() {
        let ev = full_core_event();
        assert_eq!(convert(ev.clone(), core_event(), core_event()), ev);
        let pods = lookup_kind("", "v1", "Pod").unwrap();
        let out = convert(json!({"kind": "Pod", "metadata": {}}), hpa_v2(), pods);
        assert_eq!(
            out,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}})
        );
    }
}
