//! The resource catalogue: every kind skiff serves, with its group, version,
//! resource name, scope, short names, categories and subresources.
//!
//! The apiserver builds discovery, routing and OpenAPI from this table, so a
//! kind added here is served everywhere at once.

use serde_json::Value;

/// Verbs of a normal, fully served resource.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// A subresource served under a resource (`pods/status`, `deployments/scale`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subresource {
    /// The subresource's name: `status`, `scale`, `binding`, `eviction`.
    pub name: &'static str,
    /// The kind the subresource speaks (`Scale`, `Binding`, `Eviction`, or the parent kind).
    pub kind: &'static str,
    /// The group of that kind (`autoscaling` for Scale, `policy` for Eviction).
    pub kind_group: &'static str,
    /// The version of that kind.
    pub kind_version: &'static str,
    /// Verbs served on it.
    pub verbs: &'static [&'static str],
}

const STATUS: Subresource = Subresource {
    name: "status",
    kind: "",
    kind_group: "",
    kind_version: "",
    verbs: &["get", "patch", "update"],
};
const SCALE: Subresource = Subresource {
    name: "scale",
    kind: "Scale",
    kind_group: "autoscaling",
    kind_version: "v1",
    verbs: &["get", "patch", "update"],
};
const BINDING: Subresource = Subresource {
    name: "binding",
    kind: "Binding",
    kind_group: "",
    kind_version: "v1",
    verbs: &["create"],
};
const EVICTION: Subresource = Subresource {
    name: "eviction",
    kind: "Eviction",
    kind_group: "policy",
    kind_version: "v1",
    verbs: &["create"],
};

/// Converts a JSON object through its typed form: the result holds exactly
/// the fields the type knows. Fails with serde's message on a type error.
pub type RoundTrip = fn(&Value) -> Result<Value, serde_json::Error>;

/// Adds the kind's JSON schema to a generator and returns a reference to it.
pub type SchemaFn = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

/// One served resource: a kind at one group/version.
#[derive(Debug, Clone, Copy)]
pub struct ResourceInfo {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// Version within the group.
    pub version: &'static str,
    /// Plural resource name used in URLs.
    pub resource: &'static str,
    /// Singular name (`pod`).
    pub singular: &'static str,
    /// Kind (`Pod`).
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names (`po`).
    pub short_names: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// Subresources served.
    pub subresources: &'static [Subresource],
    /// The storage key prefix: resources that share storage (core and
    /// events.k8s.io Events, autoscaling v1 and v2 HPAs) share it.
    pub storage: &'static str,
    /// Whether this version is the one objects are stored in.
    pub storage_version: bool,
    /// The typed round trip for this kind.
    pub roundtrip: RoundTrip,
    /// The JSON schema of this kind.
    pub schema: SchemaFn,
}

impl ResourceInfo {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The subresource with that name, if served.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether the kind has a status subresource (so the main resource ignores status changes).
    pub fn has_status(&self) -> bool {
        self.subresource("status").is_some()
    }

    /// The URL path of the collection, `/api/v1/namespaces/{ns}/pods` style.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let root = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{root}/namespaces/{ns}/{}", self.resource),
            _ => format!("{root}/{}", self.resource),
        }
    }
}

fn roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(
    v: &Value,
) -> Result<Value, serde_json::Error> {
    let typed: T = serde_json::from_value(v.clone())?;
    serde_json::to_value(typed)
}

fn schema<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

macro_rules! res {
    ($group:expr, $version:expr, $resource:expr, $singular:expr, $kind:expr, $ns:expr,
     $short:expr, $cats:expr, $subs:expr, $storage:expr, $sv:expr, $ty:ty) => {
        ResourceInfo {
            group: $group,
            version: $version,
            resource: $resource,
            singular: $singular,
            kind: $kind,
            namespaced: $ns,
            short_names: $short,
            categories: $cats,
            subresources: $subs,
            storage: $storage,
            storage_version: $sv,
            roundtrip: roundtrip::<$ty>,
            schema: schema::<$ty>,
        }
    };
}

use k8s_openapi::api as k;

const NONE: &[&str] = &[];
const ALL: &[&str] = &["all"];

/// Every resource skiff serves. The first entry of a group is its preferred version.
pub static RESOURCES: &[ResourceInfo] = &[
    // core/v1
    res!(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
        NONE,
        &[STATUS],
        "namespaces",
        true,
        k::core::v1::Namespace
    ),
    res!(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        true,
        &["po"],
        ALL,
        &[STATUS, BINDING, EVICTION],
        "pods",
        true,
        k::core::v1::Pod
    ),
    res!(
        "",
        "v1",
        "events",
        "event",
        "Event",
        true,
        &["ev"],
        NONE,
        &[],
        "events",
        true,
        k::core::v1::Event
    ),
    res!(
        "",
        "v1",
        "nodes",
        "node",
        "Node",
        false,
        &["no"],
        NONE,
        &[STATUS],
        "minions",
        true,
        k::core::v1::Node
    ),
    res!(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &["cm"],
        NONE,
        &[],
        "configmaps",
        true,
        k::core::v1::ConfigMap
    ),
    res!(
        "",
        "v1",
        "secrets",
        "secret",
        "Secret",
        true,
        NONE,
        NONE,
        &[],
        "secrets",
        true,
        k::core::v1::Secret
    ),
    res!(
        "",
        "v1",
        "services",
        "service",
        "Service",
        true,
        &["svc"],
        ALL,
        &[STATUS],
        "services/specs",
        true,
        k::core::v1::Service
    ),
    res!(
        "",
        "v1",
        "endpoints",
        "endpoints",
        "Endpoints",
        true,
        &["ep"],
        NONE,
        &[],
        "services/endpoints",
        true,
        k::core::v1::Endpoints
    ),
    res!(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        NONE,
        &[],
        "serviceaccounts",
        true,
        k::core::v1::ServiceAccount
    ),
    res!(
        "",
        "v1",
        "persistentvolumes",
        "persistentvolume",
        "PersistentVolume",
        false,
        &["pv"],
        NONE,
        &[STATUS],
        "persistentvolumes",
        true,
        k::core::v1::PersistentVolume
    ),
    res!(
        "",
        "v1",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        NONE,
        &[STATUS],
        "persistentvolumeclaims",
        true,
        k::core::v1::PersistentVolumeClaim
    ),
    // apps/v1
    res!(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        true,
        &["deploy"],
        ALL,
        &[STATUS, SCALE],
        "deployments",
        true,
        k::apps::v1::Deployment
    ),
    res!(
        "apps",
        "v1",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        &["rs"],
        ALL,
        &[STATUS, SCALE],
        "replicasets",
        true,
        k::apps::v1::ReplicaSet
    ),
    res!(
        "apps",
        "v1",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
        &["sts"],
        ALL,
        &[STATUS, SCALE],
        "statefulsets",
        true,
        k::apps::v1::StatefulSet
    ),
    res!(
        "apps",
        "v1",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        true,
        &["ds"],
        ALL,
        &[STATUS],
        "daemonsets",
        true,
        k::apps::v1::DaemonSet
    ),
    res!(
        "apps",
        "v1",
        "controllerrevisions",
        "controllerrevision",
        "ControllerRevision",
        true,
        NONE,
        NONE,
        &[],
        "controllerrevisions",
        true,
        k::apps::v1::ControllerRevision
    ),
    // batch/v1
    res!(
        "batch",
        "v1",
        "jobs",
        "job",
        "Job",
        true,
        NONE,
        ALL,
        &[STATUS],
        "jobs",
        true,
        k::batch::v1::Job
    ),
    res!(
        "batch",
        "v1",
        "cronjobs",
        "cronjob",
        "CronJob",
        true,
        &["cj"],
        ALL,
        &[STATUS],
        "cronjobs",
        true,
        k::batch::v1::CronJob
    ),
    // autoscaling: v2 preferred and stored, v1 converted
    res!(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "HorizontalPodAutoscaler",
        true,
        &["hpa"],
        ALL,
        &[STATUS],
        "horizontalpodautoscalers",
        true,
        k::autoscaling::v2::HorizontalPodAutoscaler
    ),
    res!(
        "autoscaling",
        "v1",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "HorizontalPodAutoscaler",
        true,
        &["hpa"],
        ALL,
        &[STATUS],
        "horizontalpodautoscalers",
        false,
        k::autoscaling::v1::HorizontalPodAutoscaler
    ),
    // storage.k8s.io/v1
    res!(
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "storageclass",
        "StorageClass",
        false,
        &["sc"],
        NONE,
        &[],
        "storageclasses",
        true,
        k::storage::v1::StorageClass
    ),
    // coordination.k8s.io/v1
    res!(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        NONE,
        NONE,
        &[],
        "leases",
        true,
        k::coordination::v1::Lease
    ),
    // discovery.k8s.io/v1
    res!(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        true,
        NONE,
        NONE,
        &[],
        "endpointslices",
        true,
        k::discovery::v1::EndpointSlice
    ),
    // scheduling.k8s.io/v1
    res!(
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        "priorityclass",
        "PriorityClass",
        false,
        &["pc"],
        NONE,
        &[],
        "priorityclasses",
        true,
        k::scheduling::v1::PriorityClass
    ),
    // policy/v1
    res!(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        NONE,
        &[STATUS],
        "poddisruptionbudgets",
        true,
        k::policy::v1::PodDisruptionBudget
    ),
    // events.k8s.io/v1 shares storage with core/v1 events
    res!(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        true,
        NONE,
        NONE,
        &[],
        "events",
        false,
        k::events::v1::Event
    ),
];

/// The groups served, in discovery order, each with its versions (preferred first).
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.version) {
                    versions.push(r.version)
                }
            }
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// The resource at `group/version/resource`.
pub fn lookup(group: &str, version: &str, resource: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.resource == resource)
}

/// The resource that serves `kind` at `group/version`.
pub fn lookup_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// The version objects of this resource are stored in.
pub fn storage_info(r: &ResourceInfo) -> &'static ResourceInfo {
    RESOURCES
        .iter()
        .find(|s| s.storage == r.storage && s.storage_version)
        .expect("every storage has a storage version")
}

/// Splits an `apiVersion` into group and version.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_storage_has_exactly_one_storage_version() {
        for r in RESOURCES {
            let n = RESOURCES
                .iter()
                .filter(|s| s.storage == r.storage && s.storage_version)
                .count();
            assert_eq!(n, 1, "{}", r.storage);
        }
    }

    #[test]
    fn roundtrip_drops_unknown_fields_and_keeps_known_ones() {
        let pod = lookup("", "v1", "pods").unwrap();
        let v = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c", "image": "i", "bogus": 1}]}});
        let out = (pod.roundtrip)(&v).unwrap();
        assert_eq!(out["spec"]["containers"][0]["image"], "i");
        assert!(out["spec"]["containers"][0].get("bogus").is_none());
    }

    #[test]
    fn core_collection_paths() {
        let pod = lookup("", "v1", "pods").unwrap();
        assert_eq!(
            pod.collection_path(Some("default")),
            "/api/v1/namespaces/default/pods"
        );
        let sc = lookup("storage.k8s.io", "v1", "storageclasses").unwrap();
        assert_eq!(
            sc.collection_path(None),
            "/apis/storage.k8s.io/v1/storageclasses"
        );
    }
}
