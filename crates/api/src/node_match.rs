//! Which nodes a pod may run on, by Kubernetes' rules: taints and
//! tolerations, node selectors, and node selector terms of required node
//! affinity. The scheduler, the DaemonSet controller and the taint manager
//! all decide with these.

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};

/// Whether a toleration tolerates a taint (`ToleratesTaint`): effects match
/// (or the toleration has none), keys match (or the toleration's is empty),
/// and `Exists` or an equal value.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty())
        && e != taint.effect
    {
        return false;
    }
    if let Some(k) = t.key.as_deref().filter(|k| !k.is_empty())
        && k != taint.key
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// Whether one node selector requirement holds for a label (or field) value.
pub fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value, values) else {
                return false;
            };
            let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether a node selector term matches the node named `name` with `labels`:
/// every `matchExpressions` requirement on labels and every `matchFields`
/// requirement (only `metadata.name`, `In`/`NotIn` with one value) holds. A
/// term with neither matches nothing.
pub fn term_matches<'a>(
    term: &NodeSelectorTerm,
    name: &str,
    labels: impl Fn(&str) -> Option<&'a str>,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| requirement_matches(r, labels(&r.key)))
        && fields.iter().all(|r| {
            r.key == "metadata.name"
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && r.values.as_ref().is_some_and(|v| v.len() == 1)
                && requirement_matches(r, Some(name))
        })
}

/// Whether a pod spec's `nodeSelector` and required node affinity (its terms
/// ORed) both admit the node named `name` with `labels`.
pub fn selector_and_affinity_match<'a>(
    spec: &PodSpec,
    name: &str,
    labels: impl Fn(&str) -> Option<&'a str> + Copy,
) -> bool {
    if let Some(sel) = spec.node_selector.as_ref()
        && !sel.iter().all(|(k, v)| labels(k) == Some(v.as_str()))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        None => true,
        Some(r) => r
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, name, labels)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tol(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn tolerations_match_taints_as_kubernetes_matches_them() {
        let taint: Taint = serde_json::from_value(
            json!({"key": "dedicated", "value": "db", "effect": "NoSchedule"}),
        )
        .unwrap();
        let cases = [
            (
                json!({"key": "dedicated", "value": "db", "effect": "NoSchedule"}),
                true,
            ),
            (
                json!({"key": "dedicated", "operator": "Equal", "value": "db"}),
                true,
            ),
            (json!({"key": "dedicated", "value": "web"}), false),
            (json!({"key": "dedicated", "operator": "Exists"}), true),
            (json!({"operator": "Exists"}), true),
            (
                json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}),
                false,
            ),
            (json!({"key": "other", "operator": "Exists"}), false),
        ];
        for (t, want) in cases {
            assert_eq!(tolerates(&tol(t.clone()), &taint), want, "{t}");
        }
    }

    #[test]
    fn selectors_and_affinity_terms_admit_nodes() {
        let labels = |k: &str| match k {
            "disk" => Some("ssd"),
            "cores" => Some("8"),
            _ => None,
        };
        let spec = |v: serde_json::Value| -> PodSpec { serde_json::from_value(v).unwrap() };
        let affinity = |terms: serde_json::Value| {
            spec(json!({"containers": [], "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}))
        };
        let cases = [
            ("no constraints", spec(json!({"containers": []})), true),
            (
                "selector matches",
                spec(json!({"containers": [], "nodeSelector": {"disk": "ssd"}})),
                true,
            ),
            (
                "selector differs",
                spec(json!({"containers": [], "nodeSelector": {"disk": "hdd"}})),
                false,
            ),
            (
                "In",
                affinity(
                    json!([{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]),
                ),
                true,
            ),
            (
                "NotIn",
                affinity(
                    json!([{"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]}]),
                ),
                false,
            ),
            (
                "Gt",
                affinity(
                    json!([{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}]),
                ),
                true,
            ),
            (
                "DoesNotExist",
                affinity(
                    json!([{"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}]),
                ),
                true,
            ),
            (
                "terms are ORed",
                affinity(
                    json!([{"matchExpressions": [{"key": "gpu", "operator": "Exists"}]},
                                               {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]),
                ),
                true,
            ),
            (
                "matchFields on another name",
                affinity(
                    json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]),
                ),
                false,
            ),
            (
                "an empty term matches nothing",
                affinity(json!([{}])),
                false,
            ),
        ];
        for (what, s, want) in cases {
            assert_eq!(
                selector_and_affinity_match(&s, "n1", labels),
                want,
                "{what}"
            );
        }
    }
}
