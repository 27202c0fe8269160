//! Discovery: `/version`, `/api`, `/apis`, per group-version resource lists,
//! and the aggregated (apidiscovery.k8s.io/v2) form kubectl 1.32 asks for first.

use serde_json::{Value, json};
use skiff_api::catalog::{self, RESOURCES, ResourceInfo};

/// The Kubernetes version skiff reports, matching the kubectl it is tested with.
pub const KUBE_MINOR: &str = "32";

/// `GET /version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0+skiff-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "skiff",
        "gitTreeState": "clean",
        "buildDate": "2026-11-28T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

fn scope(r: &ResourceInfo) -> &'static str {
    if r.namespaced {
        "Namespaced"
    } else {
        "Cluster"
    }
}

/// `GET /api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_json(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": vs,
        "preferredVersion": {"groupVersion": format!("{group}/{}", versions[0]), "version": versions[0]},
    })
}

/// `GET /apis`.
pub fn group_list() -> Value {
    let groups: Vec<Value> = catalog::groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_json(g, &vs))
        .chain(std::iter::once(crate::metrics_api::api_group()))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}`.
pub fn group(name: &str) -> Option<Value> {
    if name == crate::metrics_api::GROUP {
        let mut v = crate::metrics_api::api_group();
        v["kind"] = json!("APIGroup");
        v["apiVersion"] = json!("v1");
        return Some(v);
    }
    catalog::groups()
        .into_iter()
        .find(|(g, _)| *g == name && !g.is_empty())
        .map(|(g, vs)| {
            let mut v = group_json(g, &vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            v
        })
}

/// `GET /api/v1` or `/apis/{group}/{version}`: the legacy APIResourceList.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    if group == crate::metrics_api::GROUP {
        return (version == crate::metrics_api::VERSION).then(crate::metrics_api::resource_list);
    }
    let mut resources = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut e = json!({
            "name": r.resource,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": catalog::ALL_VERBS,
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        if r.storage_version || r.resource == "events" {
            e["storageVersionHash"] = json!(storage_hash(r));
        }
        resources.push(e);
        for s in r.subresources {
            let mut e = json!({
                "name": format!("{}/{}", r.resource, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": if s.kind.is_empty() { r.kind } else { s.kind },
                "verbs": s.verbs,
            });
            if !s.kind_group.is_empty() {
                e["group"] = json!(s.kind_group);
                e["version"] = json!(s.kind_version);
            }
            resources.push(e);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn storage_hash(r: &ResourceInfo) -> String {
    use sha2::Digest;
    let s = catalog::storage_info(r);
    let d = sha2::Sha256::digest(format!("{}/{}/{}", s.group, s.version, s.kind).as_bytes());
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &d[..8])
}

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let subs: Vec<Value> = r
        .subresources
        .iter()
        .map(|s| {
            let (g, v, k) = if s.kind.is_empty() {
                (r.group, r.version, r.kind)
            } else {
                (s.kind_group, s.kind_version, s.kind)
            };
            json!({"subresource": s.name, "responseKind": {"group": g, "version": v, "kind": k}, "verbs": s.verbs})
        })
        .collect();
    let mut e = json!({
        "resource": r.resource,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": scope(r),
        "singularResource": r.singular,
        "verbs": catalog::ALL_VERBS,
    });
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    if !subs.is_empty() {
        e["subresources"] = json!(subs);
    }
    e
}

/// The aggregated discovery document for the core group (`/api`) or the named groups (`/apis`).
pub fn aggregated(core: bool, api_version: &str) -> Value {
    let mut items = Vec::new();
    for (g, versions) in catalog::groups() {
        if core != g.is_empty() {
            continue;
        }
        let vs: Vec<Value> = versions
            .iter()
            .map(|v| {
                let resources: Vec<Value> = RESOURCES
                    .iter()
                    .filter(|r| r.group == g && r.version == *v)
                    .map(aggregated_resource)
                    .collect();
                json!({"version": v, "resources": resources, "freshness": "Current"})
            })
            .collect();
        items.push(json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": vs}));
    }
    if !core {
        // Served by the apiserver itself here, where Kubernetes aggregates metrics-server.
        items.push(crate::metrics_api::aggregated_item());
    }
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_list_has_pods_with_subresources() {
        let l = resource_list("", "v1").unwrap();
        let names: Vec<&str> = l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"pods"));
        assert!(names.contains(&"pods/status"));
        assert!(names.contains(&"pods/binding"));
    }

    #[test]
    fn aggregated_apis_lists_apps_with_scale_kind() {
        let a = aggregated(false, "apidiscovery.k8s.io/v2");
        let apps = a["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["metadata"]["name"] == "apps")
            .unwrap();
        let deploy = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        let scale = deploy["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "scale")
            .unwrap();
        assert_eq!(scale["responseKind"]["kind"], "Scale");
        assert_eq!(scale["responseKind"]["group"], "autoscaling");
        assert_eq!(deploy["categories"][0], "all");
        assert!(
            a["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["metadata"]["name"] != "")
        );
    }

    #[test]
    fn metrics_group_is_discoverable_as_kubectl_top_needs() {
        let names = |l: &Value, key: &str| -> Vec<String> {
            l[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| {
                    g["name"]
                        .as_str()
                        .or(g["metadata"]["name"].as_str())
                        .unwrap()
                        .to_string()
                })
                .collect()
        };
        assert!(names(&group_list(), "groups").contains(&"metrics.k8s.io".to_string()));
        let agg = aggregated(false, "apidiscovery.k8s.io/v2");
        let item = agg["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["metadata"]["name"] == "metrics.k8s.io")
            .expect("metrics.k8s.io in aggregated discovery");
        let v = &item["versions"][0];
        assert_eq!(v["version"], "v1beta1");
        assert_eq!(v["resources"][0]["responseKind"]["kind"], "NodeMetrics");
        assert_eq!(v["resources"][1]["scope"], "Namespaced");
        assert!(
            aggregated(true, "apidiscovery.k8s.io/v2")["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["metadata"]["name"] != "metrics.k8s.io")
        );
        assert_eq!(group("metrics.k8s.io").unwrap()["kind"], "APIGroup");
        assert!(resource_list("metrics.k8s.io", "v1").is_none());
    }

    #[test]
    fn autoscaling_prefers_v2() {
        let g = group("autoscaling").unwrap();
        assert_eq!(g["preferredVersion"]["version"], "v2");
    }
}
