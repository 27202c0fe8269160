//! Per-kind defaulting, as the Kubernetes apiserver applies it on create and update.
//!
//! [`apply_defaults`] does what the generated defaulters of the v1 API groups do
//! (`SetDefaults_*` plus the `+default` markers on nested types), on the JSON
//! (v1 wire) form of an object. A field counts as unset when it is missing or
//! `null`; for fields that are plain (non-pointer) strings or numbers in Go, an
//! empty string or zero counts as unset too, as it does in Kubernetes.
//!
//! [`admit_pod`] does what the default admission plugins add to Pods only
//! (ServiceAccount, DefaultTolerationSeconds, Priority).
//!
//! Beyond the defaulters, two pieces of create-time behaviour live here because
//! a client sees them as defaults: the `serviceAccount` alias that the v1 Pod
//! conversion keeps equal to `serviceAccountName`, and the Namespace
//! `kubernetes` finalizer that the namespace strategy adds on create.

use crate::catalog::ResourceInfo;
use serde_json::{Map, Value, json};

/// Fills in the defaults Kubernetes sets for this kind. Values already set are kept,
/// except where Kubernetes itself overwrites them (the Namespace
/// `kubernetes.io/metadata.name` label, and `spec.serviceAccount`, an alias of
/// `spec.serviceAccountName`). Applying twice gives the same object as applying once.
pub fn apply_defaults(r: &ResourceInfo, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    match (r.group, r.version, r.kind) {
        ("", _, "Pod") => pod(obj),
        ("", _, "Namespace") => namespace(obj),
        ("", _, "Node") => node(obj),
        ("", _, "Secret") => default_str(root(obj), "type", "Opaque"),
        ("", _, "Service") => service(obj),
        ("", _, "Endpoints") => {
            for subset in items(obj, "subsets") {
                for port in map_items(subset, "ports") {
                    default_str(port, "protocol", "TCP");
                }
            }
        }
        ("", _, "PersistentVolume") => persistent_volume(obj),
        ("", _, "PersistentVolumeClaim") => persistent_volume_claim(root(obj)),
        ("apps", _, "Deployment") => deployment(obj),
        ("apps", _, "ReplicaSet") => {
            if let Some(spec) = child(root(obj), "spec") {
                default_val(spec, "replicas", json!(1));
                pod_template(spec);
            }
        }
        ("apps", _, "StatefulSet") => stateful_set(obj),
        ("apps", _, "DaemonSet") => daemon_set(obj),
        ("batch", _, "Job") => job(obj),
        ("batch", _, "CronJob") => cron_job(obj),
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => hpa_v2(obj),
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => {
            if let Some(spec) = child(root(obj), "spec") {
                default_val(spec, "minReplicas", json!(1));
            }
        }
        ("storage.k8s.io", _, "StorageClass") => {
            let m = root(obj);
            default_val(m, "reclaimPolicy", json!("Delete"));
            default_val(m, "volumeBindingMode", json!("Immediate"));
        }
        ("discovery.k8s.io", _, "EndpointSlice") => {
            for port in items(obj, "ports") {
                default_val(port, "name", json!(""));
                default_val(port, "protocol", json!("TCP"));
            }
        }
        ("scheduling.k8s.io", _, "PriorityClass") => {
            default_val(root(obj), "preemptionPolicy", json!("PreemptLowerPriority"));
        }
        // ConfigMap, ServiceAccount, Event (both groups), Lease, ControllerRevision and
        // PodDisruptionBudget have no defaults in their v1 APIs.
        _ => {}
    }
}

/// The `tolerationSeconds` of the NoExecute tolerations DefaultTolerationSeconds
/// admission adds (kube-apiserver's `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultTolerationSeconds {
    /// For `node.kubernetes.io/not-ready:NoExecute`.
    pub not_ready: i64,
    /// For `node.kubernetes.io/unreachable:NoExecute`.
    pub unreachable: i64,
}

impl Default for DefaultTolerationSeconds {
    fn default() -> Self {
        Self {
            not_ready: 300,
            unreachable: 300,
        }
    }
}

/// What the default admission plugins add to a Pod on create (never to pod templates):
///
/// - ServiceAccount: `serviceAccountName` (and its alias `serviceAccount`) become
///   `default` when unset; mirror pods are left alone. No token volume is added.
/// - DefaultTolerationSeconds: `node.kubernetes.io/not-ready` and
///   `node.kubernetes.io/unreachable` `NoExecute` tolerations for the seconds in
///   `toleration_seconds` (300 each by default), unless a toleration for that taint (or a
///   wildcard one) is present.
/// - Priority needs PriorityClass lookups; the apiserver's registry resolves it.
/// - `enableServiceLinks` true.
///
/// Values already set are kept.
pub fn admit_pod(pod: &mut Value, toleration_seconds: DefaultTolerationSeconds) {
    if !pod.is_object() {
        return;
    }
    let mirror = crate::meta::at(
        pod,
        &["metadata", "annotations", "kubernetes.io/config.mirror"],
    )
    .is_some();
    let spec = crate::meta::object_at(pod, &["spec"]);

    if !mirror {
        if is_unset_str(spec.get("serviceAccountName")) {
            let sa = spec
                .get("serviceAccount")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or("default")
                .to_string();
            spec.insert("serviceAccountName".into(), json!(sa));
        }
        let sa = spec["serviceAccountName"].clone();
        spec.insert("serviceAccount".into(), sa);
    }

    let tolerations = spec
        .entry("tolerations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !tolerations.is_array() {
        *tolerations = Value::Array(Vec::new());
    }
    let list = tolerations.as_array_mut().expect("just made an array");
    for (taint, seconds) in [
        ("node.kubernetes.io/not-ready", toleration_seconds.not_ready),
        (
            "node.kubernetes.io/unreachable",
            toleration_seconds.unreachable,
        ),
    ] {
        let tolerated = list.iter().any(|t| {
            let key = t.get("key").and_then(Value::as_str).unwrap_or("");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (key.is_empty() || key == taint) && (effect.is_empty() || effect == "NoExecute")
        });
        if !tolerated {
            list.push(
                json!({"key": taint, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": seconds}),
            );
        }
    }

    default_val(spec, "enableServiceLinks", json!(true));
}

/// The `imagePullPolicy` Kubernetes gives a container with this image: `Always` when
/// the tag is `latest` or there is neither tag nor digest, `IfNotPresent` otherwise
/// (a digest alone counts as pinned). An image Kubernetes cannot parse has no tag
/// and gets `IfNotPresent`, as in Kubernetes.
pub fn image_pull_policy_default(image: &str) -> &'static str {
    match image_tag(image) {
        Some(ImageRef {
            tag: None,
            digest: false,
        }) => "Always",
        Some(ImageRef {
            tag: Some("latest"),
            ..
        }) => "Always",
        _ => "IfNotPresent",
    }
}

struct ImageRef<'a> {
    tag: Option<&'a str>,
    digest: bool,
}

/// Splits an image reference into tag and digest presence; `None` when it is not a
/// valid reference (empty, upper-case repository, bad tag or digest).
fn image_tag(image: &str) -> Option<ImageRef<'_>> {
    let (named, digest) = match image.split_once('@') {
        Some((n, d)) => {
            let (algo, hex) = d.split_once(':')?;
            let algo_ok = !algo.is_empty()
                && algo
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+._-".contains(c));
            if !algo_ok || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            (n, true)
        }
        None => (image, false),
    };
    let last_slash = named.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match named[last_slash..].rfind(':') {
        Some(i) => (&named[..last_slash + i], Some(&named[last_slash + i + 1..])),
        None => (named, None),
    };
    if let Some(t) = tag {
        let mut chars = t.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !first_ok
            || t.len() > 128
            || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return None;
        }
    }
    // The first component is a registry host when it looks like one.
    let path = match name.split_once('/') {
        Some((host, rest))
            if host.contains(['.', ':'])
                || host == "localhost"
                || host.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            rest
        }
        _ => name,
    };
    let path_ok = !path.is_empty()
        && path.split('/').all(|c| {
            !c.is_empty()
                && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
                && c.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
        });
    if !path_ok {
        return None;
    }
    Some(ImageRef { tag, digest })
}

// ---------------------------------------------------------------------------
// JSON helpers

fn root(obj: &mut Value) -> &mut Map<String, Value> {
    obj.as_object_mut().expect("checked to be an object")
}

/// The object under `key`, if it is one.
fn child<'a>(m: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    m.get_mut(key).and_then(Value::as_object_mut)
}

/// The object under `key`, created when missing or null.
fn child_or_new<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = m.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("just made an object")
}

/// The objects in the array under a top-level `key` of the object.
fn items<'a>(obj: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    map_items(root(obj), key)
}

/// The objects in the array under `key`.
fn map_items<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    m.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

fn is_unset(v: Option<&Value>) -> bool {
    v.is_none_or(Value::is_null)
}

fn is_unset_str(v: Option<&Value>) -> bool {
    is_unset(v) || v.and_then(Value::as_str) == Some("")
}

fn is_unset_num(v: Option<&Value>) -> bool {
    is_unset(v) || v.and_then(Value::as_f64) == Some(0.0)
}

/// Sets a pointer-typed field when missing or null.
fn default_val(m: &mut Map<String, Value>, key: &str, value: Value) {
    if is_unset(m.get(key)) {
        m.insert(key.into(), value);
    }
}

/// Sets a plain string field when missing, null or empty.
fn default_str(m: &mut Map<String, Value>, key: &str, value: &str) {
    if is_unset_str(m.get(key)) {
        m.insert(key.into(), json!(value));
    }
}

/// Sets a plain number field when missing, null or zero.
fn default_num(m: &mut Map<String, Value>, key: &str, value: i64) {
    if is_unset_num(m.get(key)) {
        m.insert(key.into(), json!(value));
    }
}

// ---------------------------------------------------------------------------
// Pods and pod templates

fn pod(obj: &mut Value) {
    let spec = child_or_new(root(obj), "spec");
    // Pod only (not templates): requests default to limits, service links on,
    // host-network ports.
    for key in ["containers", "initContainers"] {
        for c in map_items(spec, key) {
            requests_from_limits(c);
        }
    }
    default_val(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for key in ["containers", "initContainers"] {
            for c in map_items(spec, key) {
                for port in map_items(c, "ports") {
                    if is_unset_num(port.get("hostPort"))
                        && let Some(cp) = port.get("containerPort").cloned()
                    {
                        port.insert("hostPort".into(), cp);
                    }
                }
            }
        }
    }
    pod_spec(spec);
}

fn requests_from_limits(c: &mut Map<String, Value>) {
    let Some(resources) = child(c, "resources") else {
        return;
    };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    let requests = child_or_new(resources, "requests");
    for (k, v) in limits {
        requests.entry(k).or_insert(v);
    }
}

/// Defaults `template.spec` of a workload spec.
fn pod_template(workload_spec: &mut Map<String, Value>) {
    let template = child_or_new(workload_spec, "template");
    pod_spec(child_or_new(template, "spec"));
}

fn pod_spec(spec: &mut Map<String, Value>) {
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default_val(spec, "securityContext", json!({}));
    default_val(spec, "terminationGracePeriodSeconds", json!(30));
    default_str(spec, "schedulerName", "default-scheduler");
    // The v1 conversion keeps the deprecated alias equal to serviceAccountName.
    if is_unset_str(spec.get("serviceAccountName")) {
        if let Some(sa) = spec
            .get("serviceAccount")
            .filter(|v| !is_unset_str(Some(v)))
            .cloned()
        {
            spec.insert("serviceAccountName".into(), sa);
        }
    } else {
        let sa = spec["serviceAccountName"].clone();
        spec.insert("serviceAccount".into(), sa);
    }
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        for c in map_items(spec, key) {
            container(c);
        }
    }
    for v in map_items(spec, "volumes") {
        volume(v);
    }
}

fn container(c: &mut Map<String, Value>) {
    if is_unset_str(c.get("imagePullPolicy")) {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = image_pull_policy_default(image);
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    for port in map_items(c, "ports") {
        default_str(port, "protocol", "TCP");
    }
    for env in map_items(c, "env") {
        if let Some(field_ref) = child(env, "valueFrom").and_then(|v| child(v, "fieldRef")) {
            default_str(field_ref, "apiVersion", "v1");
        }
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = child(c, key) {
            probe(p);
        }
    }
    if let Some(lifecycle) = child(c, "lifecycle") {
        for key in ["postStart", "preStop"] {
            if let Some(get) = child(lifecycle, key).and_then(|h| child(h, "httpGet")) {
                http_get(get);
            }
        }
    }
}

fn probe(p: &mut Map<String, Value>) {
    default_num(p, "timeoutSeconds", 1);
    default_num(p, "periodSeconds", 10);
    default_num(p, "successThreshold", 1);
    default_num(p, "failureThreshold", 3);
    if let Some(get) = child(p, "httpGet") {
        http_get(get);
    }
    if let Some(grpc) = child(p, "grpc") {
        default_val(grpc, "service", json!(""));
    }
}

fn http_get(get: &mut Map<String, Value>) {
    default_str(get, "path", "/");
    default_str(get, "scheme", "HTTP");
}

fn field_ref_items(m: &mut Map<String, Value>) {
    for item in map_items(m, "items") {
        if let Some(field_ref) = child(item, "fieldRef") {
            default_str(field_ref, "apiVersion", "v1");
        }
    }
}

fn volume(v: &mut Map<String, Value>) {
    let has_source = v.iter().any(|(k, val)| k != "name" && !val.is_null());
    if !has_source {
        v.insert("emptyDir".into(), json!({}));
    }
    volume_source(v);
    for key in ["secret", "configMap"] {
        if let Some(s) = child(v, key) {
            default_val(s, "defaultMode", json!(420));
        }
    }
    if let Some(d) = child(v, "downwardAPI") {
        default_val(d, "defaultMode", json!(420));
        field_ref_items(d);
    }
    if let Some(p) = child(v, "projected") {
        default_val(p, "defaultMode", json!(420));
        for source in map_items(p, "sources") {
            if let Some(d) = child(source, "downwardAPI") {
                field_ref_items(d);
            }
            if let Some(t) = child(source, "serviceAccountToken") {
                default_val(t, "expirationSeconds", json!(3600));
            }
        }
    }
    if let Some(spec) = child(v, "ephemeral")
        .and_then(|e| child(e, "volumeClaimTemplate"))
        .and_then(|t| child(t, "spec"))
    {
        pvc_spec(spec);
    }
}

/// Defaults shared by pod volumes and persistent volume sources.
fn volume_source(v: &mut Map<String, Value>) {
    if let Some(h) = child(v, "hostPath") {
        default_val(h, "type", json!(""));
    }
    if let Some(i) = child(v, "iscsi") {
        default_str(i, "iscsiInterface", "default");
    }
    if let Some(r) = child(v, "rbd") {
        default_str(r, "pool", "rbd");
        default_str(r, "user", "admin");
        default_str(r, "keyring", "/etc/ceph/keyring");
    }
    if let Some(a) = child(v, "azureDisk") {
        default_val(a, "cachingMode", json!("ReadWrite"));
        default_val(a, "kind", json!("Shared"));
        default_val(a, "fsType", json!("ext4"));
        default_val(a, "readOnly", json!(false));
    }
    if let Some(s) = child(v, "scaleIO") {
        default_str(s, "storageMode", "ThinProvisioned");
        default_str(s, "fsType", "xfs");
    }
}

// ---------------------------------------------------------------------------
// Core kinds

fn namespace(obj: &mut Value) {
    let m = root(obj);
    let name = crate::meta::name(&Value::Object(m.clone())).to_string();
    let terminating = m
        .get("metadata")
        .is_some_and(|md| !is_unset(md.get("deletionTimestamp")));
    if !name.is_empty() {
        let labels = child_or_new(child_or_new(m, "metadata"), "labels");
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    if !terminating {
        let spec = child_or_new(m, "spec");
        let finalizers = spec.entry("finalizers").or_insert_with(|| json!([]));
        if !finalizers.is_array() {
            *finalizers = json!([]);
        }
        let list = finalizers.as_array_mut().expect("just made an array");
        if !list.iter().any(|f| f == "kubernetes") {
            list.push(json!("kubernetes"));
        }
    }
    default_str(child_or_new(m, "status"), "phase", "Active");
}

fn node(obj: &mut Value) {
    if let Some(status) = child(root(obj), "status")
        && is_unset(status.get("allocatable"))
        && let Some(capacity) = status.get("capacity").filter(|c| !c.is_null()).cloned()
    {
        status.insert("allocatable".into(), capacity);
    }
}

fn service(obj: &mut Value) {
    let m = root(obj);
    let spec = child_or_new(m, "spec");
    default_str(spec, "sessionAffinity", "None");
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let timeout = crate::meta::at(
                &Value::Object(spec.clone()),
                &["sessionAffinityConfig", "clientIP", "timeoutSeconds"],
            )
            .is_some_and(|v| !v.is_null());
            if !timeout {
                spec.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    default_str(spec, "type", "ClusterIP");
    for port in map_items(spec, "ports") {
        default_str(port, "protocol", "TCP");
        let target = port.get("targetPort");
        if (is_unset_num(target) || is_unset_str(target))
            && let Some(p) = port.get("port").cloned()
        {
            port.insert("targetPort".into(), p);
        }
    }
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let externally_accessible =
        ty == "LoadBalancer" || ty == "NodePort" || (ty == "ClusterIP" && has_external_ips);
    if externally_accessible {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(ty.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        default_val(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        default_val(spec, "allocateLoadBalancerNodePorts", json!(true));
        if let Some(lb) = child(m, "status").and_then(|s| child(s, "loadBalancer")) {
            for ingress in map_items(lb, "ingress") {
                if !is_unset_str(ingress.get("ip")) {
                    default_val(ingress, "ipMode", json!("VIP"));
                }
            }
        }
    }
}

fn persistent_volume(obj: &mut Value) {
    let m = root(obj);
    let spec = child_or_new(m, "spec");
    default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
    default_val(spec, "volumeMode", json!("Filesystem"));
    volume_source(spec);
    default_str(child_or_new(m, "status"), "phase", "Pending");
}

/// A PersistentVolumeClaim object (also a StatefulSet volumeClaimTemplate).
fn persistent_volume_claim(m: &mut Map<String, Value>) {
    pvc_spec(child_or_new(m, "spec"));
    default_str(child_or_new(m, "status"), "phase", "Pending");
}

fn pvc_spec(spec: &mut Map<String, Value>) {
    default_val(spec, "volumeMode", json!("Filesystem"));
}

// ---------------------------------------------------------------------------
// Workloads

fn deployment(obj: &mut Value) {
    let spec = child_or_new(root(obj), "spec");
    default_val(spec, "replicas", json!(1));
    let strategy = child_or_new(spec, "strategy");
    default_str(strategy, "type", "RollingUpdate");
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        let ru = child_or_new(strategy, "rollingUpdate");
        default_val(ru, "maxUnavailable", json!("25%"));
        default_val(ru, "maxSurge", json!("25%"));
    }
    default_val(spec, "revisionHistoryLimit", json!(10));
    default_val(spec, "progressDeadlineSeconds", json!(600));
    pod_template(spec);
}

fn stateful_set(obj: &mut Value) {
    let spec = child_or_new(root(obj), "spec");
    default_str(spec, "podManagementPolicy", "OrderedReady");
    let strategy = child_or_new(spec, "updateStrategy");
    if is_unset_str(strategy.get("type")) {
        strategy.insert("type".into(), json!("RollingUpdate"));
        child_or_new(strategy, "rollingUpdate");
    }
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
        && let Some(ru) = child(strategy, "rollingUpdate")
    {
        default_val(ru, "partition", json!(0));
    }
    let retention = child_or_new(spec, "persistentVolumeClaimRetentionPolicy");
    default_str(retention, "whenDeleted", "Retain");
    default_str(retention, "whenScaled", "Retain");
    default_val(spec, "replicas", json!(1));
    default_val(spec, "revisionHistoryLimit", json!(10));
    pod_template(spec);
    for claim in map_items(spec, "volumeClaimTemplates") {
        persistent_volume_claim(claim);
    }
}

fn daemon_set(obj: &mut Value) {
    let spec = child_or_new(root(obj), "spec");
    let strategy = child_or_new(spec, "updateStrategy");
    default_str(strategy, "type", "RollingUpdate");
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        let ru = child_or_new(strategy, "rollingUpdate");
        default_val(ru, "maxUnavailable", json!(1));
        default_val(ru, "maxSurge", json!(0));
    }
    default_val(spec, "revisionHistoryLimit", json!(10));
    pod_template(spec);
}

fn job(obj: &mut Value) {
    let m = root(obj);
    let spec = child_or_new(m, "spec");
    if is_unset(spec.get("completions")) && is_unset(spec.get("parallelism")) {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    default_val(spec, "parallelism", json!(1));
    let backoff = if is_unset(spec.get("backoffLimitPerIndex")) {
        6
    } else {
        i64::from(i32::MAX)
    };
    default_val(spec, "backoffLimit", json!(backoff));
    default_val(spec, "completionMode", json!("NonIndexed"));
    default_val(spec, "suspend", json!(false));
    let has_failure_policy = !is_unset(spec.get("podFailurePolicy"));
    if let Some(pfp) = child(spec, "podFailurePolicy") {
        for rule in map_items(pfp, "rules") {
            for pattern in map_items(rule, "onPodConditions") {
                default_str(pattern, "status", "True");
            }
        }
    }
    let replacement = if has_failure_policy {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    default_val(spec, "podReplacementPolicy", json!(replacement));
    default_val(spec, "manualSelector", json!(false));
    pod_template(spec);
    let template_labels = crate::meta::at(
        &Value::Object(spec.clone()),
        &["template", "metadata", "labels"],
    )
    .filter(|l| l.is_object())
    .cloned();
    if let Some(labels) = template_labels {
        let metadata = child_or_new(m, "metadata");
        let empty = metadata
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty);
        if empty {
            metadata.insert("labels".into(), labels);
        }
    }
}

fn cron_job(obj: &mut Value) {
    let spec = child_or_new(root(obj), "spec");
    default_str(spec, "concurrencyPolicy", "Allow");
    default_val(spec, "suspend", json!(false));
    default_val(spec, "successfulJobsHistoryLimit", json!(3));
    default_val(spec, "failedJobsHistoryLimit", json!(1));
    let job_spec = child_or_new(child_or_new(spec, "jobTemplate"), "spec");
    pod_template(job_spec);
}

fn hpa_v2(obj: &mut Value) {
    let spec = child_or_new(root(obj), "spec");
    default_val(spec, "minReplicas", json!(1));
    let no_metrics = spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_metrics {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    if let Some(behavior) = child(spec, "behavior") {
        let up = child_or_new(behavior, "scaleUp");
        default_val(up, "stabilizationWindowSeconds", json!(0));
        default_val(up, "selectPolicy", json!("Max"));
        default_val(
            up,
            "policies",
            json!([{"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
        // The scale-down window stays unset: the controller's flag decides it.
        let down = child_or_new(behavior, "scaleDown");
        default_val(down, "selectPolicy", json!("Max"));
        default_val(
            down,
            "policies",
            json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::lookup_kind;

    fn info(api_version: &str, kind: &str) -> &'static ResourceInfo {
        let (g, v) = crate::catalog::split_api_version(api_version);
        lookup_kind(g, v, kind).unwrap_or_else(|| panic!("no {api_version} {kind}"))
    }

    fn defaulted(obj: &Value) -> Value {
        let r = info(
            obj["apiVersion"].as_str().unwrap(),
            obj["kind"].as_str().unwrap(),
        );
        let mut out = obj.clone();
        apply_defaults(r, &mut out);
        out
    }

    fn path<'a>(v: &'a Value, p: &str) -> &'a Value {
        let mut cur = v;
        for part in p.split('.') {
            cur = match part.parse::<usize>() {
                Ok(i) => &cur[i],
                Err(_) => &cur[part],
            };
        }
        cur
    }

    fn container_pod(c: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [c]}})
    }

    /// Each case: an object, then (path, expected value) pairs after defaulting;
    /// `Value::Null` means the field must be absent.
    /// A named input with the (path, value) pairs expected after defaulting.
    type Case = (&'static str, Value, Vec<(&'static str, Value)>);

    fn cases() -> Vec<Case> {
        vec![
            (
                "pod spec defaults",
                container_pod(json!({"name": "c", "image": "nginx"})),
                vec![
                    ("spec.restartPolicy", json!("Always")),
                    ("spec.dnsPolicy", json!("ClusterFirst")),
                    ("spec.schedulerName", json!("default-scheduler")),
                    ("spec.terminationGracePeriodSeconds", json!(30)),
                    ("spec.securityContext", json!({})),
                    ("spec.enableServiceLinks", json!(true)),
                    ("spec.containers.0.imagePullPolicy", json!("Always")),
                    (
                        "spec.containers.0.terminationMessagePath",
                        json!("/dev/termination-log"),
                    ),
                    ("spec.containers.0.terminationMessagePolicy", json!("File")),
                    ("spec.serviceAccountName", Value::Null),
                    ("spec.tolerations", Value::Null),
                ],
            ),
            (
                "user values are never overwritten",
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                    "spec": {"restartPolicy": "Never", "dnsPolicy": "Default",
                        "schedulerName": "mine", "terminationGracePeriodSeconds": 0,
                        "securityContext": {"runAsUser": 1}, "enableServiceLinks": false,
                        "containers": [{"name": "c", "image": "nginx", "imagePullPolicy": "Never",
                            "terminationMessagePath": "/x", "terminationMessagePolicy": "FallbackToLogsOnError",
                            "ports": [{"containerPort": 53, "protocol": "UDP"}],
                            "livenessProbe": {"exec": {"command": ["true"]}, "timeoutSeconds": 5,
                                "periodSeconds": 7, "successThreshold": 1, "failureThreshold": 9}}]}}),
                vec![
                    ("spec.restartPolicy", json!("Never")),
                    ("spec.dnsPolicy", json!("Default")),
                    ("spec.schedulerName", json!("mine")),
                    ("spec.terminationGracePeriodSeconds", json!(0)),
                    ("spec.securityContext", json!({"runAsUser": 1})),
                    ("spec.enableServiceLinks", json!(false)),
                    ("spec.containers.0.imagePullPolicy", json!("Never")),
                    ("spec.containers.0.terminationMessagePath", json!("/x")),
                    (
                        "spec.containers.0.terminationMessagePolicy",
                        json!("FallbackToLogsOnError"),
                    ),
                    ("spec.containers.0.ports.0.protocol", json!("UDP")),
                    ("spec.containers.0.livenessProbe.timeoutSeconds", json!(5)),
                    ("spec.containers.0.livenessProbe.periodSeconds", json!(7)),
                    ("spec.containers.0.livenessProbe.failureThreshold", json!(9)),
                ],
            ),
            (
                "container ports, probes, env fieldRef, lifecycle",
                container_pod(json!({"name": "c", "image": "nginx:1.25",
                    "ports": [{"containerPort": 80}],
                    "readinessProbe": {"httpGet": {"port": 80}},
                    "startupProbe": {"grpc": {"port": 9000}},
                    "lifecycle": {"preStop": {"httpGet": {"port": 80, "path": "/stop"}}},
                    "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]})),
                vec![
                    ("spec.containers.0.imagePullPolicy", json!("IfNotPresent")),
                    ("spec.containers.0.ports.0.protocol", json!("TCP")),
                    ("spec.containers.0.ports.0.hostPort", Value::Null),
                    ("spec.containers.0.readinessProbe.timeoutSeconds", json!(1)),
                    ("spec.containers.0.readinessProbe.periodSeconds", json!(10)),
                    (
                        "spec.containers.0.readinessProbe.successThreshold",
                        json!(1),
                    ),
                    (
                        "spec.containers.0.readinessProbe.failureThreshold",
                        json!(3),
                    ),
                    (
                        "spec.containers.0.readinessProbe.httpGet.scheme",
                        json!("HTTP"),
                    ),
                    ("spec.containers.0.readinessProbe.httpGet.path", json!("/")),
                    ("spec.containers.0.startupProbe.grpc.service", json!("")),
                    (
                        "spec.containers.0.lifecycle.preStop.httpGet.path",
                        json!("/stop"),
                    ),
                    (
                        "spec.containers.0.lifecycle.preStop.httpGet.scheme",
                        json!("HTTP"),
                    ),
                    (
                        "spec.containers.0.env.0.valueFrom.fieldRef.apiVersion",
                        json!("v1"),
                    ),
                ],
            ),
            (
                "pod requests default to limits, kept where set",
                container_pod(json!({"name": "c", "image": "i",
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "100m"}}})),
                vec![
                    (
                        "spec.containers.0.resources.requests",
                        json!({"cpu": "100m", "memory": "1Gi"}),
                    ),
                    (
                        "spec.containers.0.resources.limits",
                        json!({"cpu": "1", "memory": "1Gi"}),
                    ),
                ],
            ),
            (
                "init and ephemeral containers",
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                    "spec": {"containers": [{"name": "c", "image": "i"}],
                        "initContainers": [{"name": "i", "image": "busybox:latest",
                            "resources": {"limits": {"cpu": "1"}}}],
                        "ephemeralContainers": [{"name": "e", "image": "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}]}}),
                vec![
                    ("spec.initContainers.0.imagePullPolicy", json!("Always")),
                    (
                        "spec.initContainers.0.resources.requests",
                        json!({"cpu": "1"}),
                    ),
                    (
                        "spec.ephemeralContainers.0.imagePullPolicy",
                        json!("IfNotPresent"),
                    ),
                    (
                        "spec.ephemeralContainers.0.terminationMessagePolicy",
                        json!("File"),
                    ),
                ],
            ),
            (
                "host network pods get host ports",
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                    "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "i",
                        "ports": [{"containerPort": 8080}, {"containerPort": 9090, "hostPort": 9090}]}]}}),
                vec![
                    ("spec.containers.0.ports.0.hostPort", json!(8080)),
                    ("spec.containers.0.ports.1.hostPort", json!(9090)),
                ],
            ),
            (
                "volumes",
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                    "spec": {"containers": [{"name": "c", "image": "i"}], "volumes": [
                        {"name": "cm", "configMap": {"name": "x"}},
                        {"name": "s", "secret": {"secretName": "x", "defaultMode": 256}},
                        {"name": "d", "downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                        {"name": "p", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}},
                            {"downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}},
                        {"name": "h", "hostPath": {"path": "/tmp"}},
                        {"name": "e", "emptyDir": {}},
                        {"name": "bare"},
                        {"name": "eph", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"]}}}}]}}),
                vec![
                    ("spec.volumes.0.configMap.defaultMode", json!(420)),
                    ("spec.volumes.1.secret.defaultMode", json!(256)),
                    ("spec.volumes.2.downwardAPI.defaultMode", json!(420)),
                    (
                        "spec.volumes.2.downwardAPI.items.0.fieldRef.apiVersion",
                        json!("v1"),
                    ),
                    ("spec.volumes.3.projected.defaultMode", json!(420)),
                    (
                        "spec.volumes.3.projected.sources.0.serviceAccountToken.expirationSeconds",
                        json!(3600),
                    ),
                    (
                        "spec.volumes.3.projected.sources.1.downwardAPI.items.0.fieldRef.apiVersion",
                        json!("v1"),
                    ),
                    ("spec.volumes.4.hostPath.type", json!("")),
                    ("spec.volumes.5.emptyDir", json!({})),
                    ("spec.volumes.6.emptyDir", json!({})),
                    (
                        "spec.volumes.7.ephemeral.volumeClaimTemplate.spec.volumeMode",
                        json!("Filesystem"),
                    ),
                ],
            ),
            (
                "serviceAccount alias follows serviceAccountName",
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                    "spec": {"serviceAccount": "old", "containers": [{"name": "c", "image": "i"}]}}),
                vec![
                    ("spec.serviceAccountName", json!("old")),
                    ("spec.serviceAccount", json!("old")),
                ],
            ),
            (
                "deployment",
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                    "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c", "image": "nginx:1",
                        "resources": {"limits": {"cpu": "1"}}}]}}}}),
                vec![
                    ("spec.replicas", json!(1)),
                    ("spec.strategy.type", json!("RollingUpdate")),
                    ("spec.strategy.rollingUpdate.maxUnavailable", json!("25%")),
                    ("spec.strategy.rollingUpdate.maxSurge", json!("25%")),
                    ("spec.revisionHistoryLimit", json!(10)),
                    ("spec.progressDeadlineSeconds", json!(600)),
                    ("spec.template.spec.restartPolicy", json!("Always")),
                    (
                        "spec.template.spec.containers.0.imagePullPolicy",
                        json!("IfNotPresent"),
                    ),
                    // Templates get no requests-from-limits and no service links.
                    (
                        "spec.template.spec.containers.0.resources.requests",
                        Value::Null,
                    ),
                    ("spec.template.spec.enableServiceLinks", Value::Null),
                ],
            ),
            (
                "deployment Recreate gets no rollingUpdate",
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                    "spec": {"replicas": 0, "strategy": {"type": "Recreate"}, "template": {"spec": {"containers": []}}}}),
                vec![
                    ("spec.replicas", json!(0)),
                    ("spec.strategy", json!({"type": "Recreate"})),
                ],
            ),
            (
                "replicaset",
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"},
                    "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
                vec![
                    ("spec.replicas", json!(1)),
                    ("spec.template.spec.dnsPolicy", json!("ClusterFirst")),
                ],
            ),
            (
                "statefulset",
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
                    "spec": {"serviceName": "s", "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}},
                        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}),
                vec![
                    ("spec.replicas", json!(1)),
                    ("spec.podManagementPolicy", json!("OrderedReady")),
                    (
                        "spec.updateStrategy",
                        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                    ),
                    ("spec.revisionHistoryLimit", json!(10)),
                    (
                        "spec.persistentVolumeClaimRetentionPolicy",
                        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                    ),
                    (
                        "spec.volumeClaimTemplates.0.spec.volumeMode",
                        json!("Filesystem"),
                    ),
                    ("spec.volumeClaimTemplates.0.status.phase", json!("Pending")),
                    (
                        "spec.template.spec.schedulerName",
                        json!("default-scheduler"),
                    ),
                ],
            ),
            (
                "statefulset explicit RollingUpdate without rollingUpdate stays so",
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
                    "spec": {"updateStrategy": {"type": "RollingUpdate"}, "template": {"spec": {"containers": []}}}}),
                vec![("spec.updateStrategy", json!({"type": "RollingUpdate"}))],
            ),
            (
                "daemonset",
                json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
                    "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
                vec![
                    (
                        "spec.updateStrategy",
                        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
                    ),
                    ("spec.revisionHistoryLimit", json!(10)),
                    (
                        "spec.template.spec.terminationGracePeriodSeconds",
                        json!(30),
                    ),
                ],
            ),
            (
                "job",
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                    "spec": {"template": {"metadata": {"labels": {"app": "x"}},
                        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}),
                vec![
                    ("spec.parallelism", json!(1)),
                    ("spec.completions", json!(1)),
                    ("spec.backoffLimit", json!(6)),
                    ("spec.completionMode", json!("NonIndexed")),
                    ("spec.suspend", json!(false)),
                    ("spec.manualSelector", json!(false)),
                    ("spec.podReplacementPolicy", json!("TerminatingOrFailed")),
                    ("spec.template.spec.restartPolicy", json!("Never")),
                    ("metadata.labels", json!({"app": "x"})),
                ],
            ),
            (
                "job with parallelism leaves completions unset",
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "labels": {"mine": "1"}},
                    "spec": {"parallelism": 3, "backoffLimitPerIndex": 1, "completionMode": "Indexed", "completions": null,
                        "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
                        "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}}}}),
                vec![
                    ("spec.parallelism", json!(3)),
                    ("spec.completions", Value::Null),
                    ("spec.backoffLimit", json!(2147483647)),
                    ("spec.completionMode", json!("Indexed")),
                    ("spec.podReplacementPolicy", json!("Failed")),
                    (
                        "spec.podFailurePolicy.rules.0.onPodConditions.0.status",
                        json!("True"),
                    ),
                    ("metadata.labels", json!({"mine": "1"})),
                ],
            ),
            (
                "cronjob",
                json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                    "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                        "containers": [{"name": "c", "image": "busybox"}]}}}}}}),
                vec![
                    ("spec.concurrencyPolicy", json!("Allow")),
                    ("spec.suspend", json!(false)),
                    ("spec.successfulJobsHistoryLimit", json!(3)),
                    ("spec.failedJobsHistoryLimit", json!(1)),
                    (
                        "spec.jobTemplate.spec.template.spec.containers.0.imagePullPolicy",
                        json!("Always"),
                    ),
                    (
                        "spec.jobTemplate.spec.template.spec.restartPolicy",
                        json!("Always"),
                    ),
                    // The job template spec is not defaulted as a Job.
                    ("spec.jobTemplate.spec.backoffLimit", Value::Null),
                ],
            ),
            (
                "service ClusterIP",
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                    "spec": {"selector": {"a": "b"}, "ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}}),
                vec![
                    ("spec.type", json!("ClusterIP")),
                    ("spec.sessionAffinity", json!("None")),
                    ("spec.internalTrafficPolicy", json!("Cluster")),
                    ("spec.externalTrafficPolicy", Value::Null),
                    ("spec.ports.0.protocol", json!("TCP")),
                    ("spec.ports.0.targetPort", json!(80)),
                    ("spec.ports.1.protocol", json!("UDP")),
                    ("spec.ports.1.targetPort", json!("dns")),
                    ("spec.clusterIP", Value::Null),
                ],
            ),
            (
                "service LoadBalancer with ClientIP affinity",
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                    "spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 80, "targetPort": 0}]},
                    "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"hostname": "h"}]}}}),
                vec![
                    ("spec.externalTrafficPolicy", json!("Cluster")),
                    ("spec.internalTrafficPolicy", json!("Cluster")),
                    ("spec.allocateLoadBalancerNodePorts", json!(true)),
                    (
                        "spec.sessionAffinityConfig",
                        json!({"clientIP": {"timeoutSeconds": 10800}}),
                    ),
                    ("spec.ports.0.targetPort", json!(80)),
                    ("spec.ports.0.nodePort", Value::Null),
                    ("status.loadBalancer.ingress.0.ipMode", json!("VIP")),
                    ("status.loadBalancer.ingress.1.ipMode", Value::Null),
                ],
            ),
            (
                "service ExternalName gets no traffic policies",
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                    "spec": {"type": "ExternalName", "externalName": "example.com",
                        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}}}),
                vec![
                    ("spec.internalTrafficPolicy", Value::Null),
                    ("spec.externalTrafficPolicy", Value::Null),
                    ("spec.sessionAffinity", json!("None")),
                    ("spec.sessionAffinityConfig", Value::Null),
                ],
            ),
            (
                "namespace",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
                vec![
                    (
                        "metadata.labels",
                        json!({"kubernetes.io/metadata.name": "team"}),
                    ),
                    ("spec.finalizers", json!(["kubernetes"])),
                    ("status.phase", json!("Active")),
                ],
            ),
            (
                "node allocatable defaults to capacity",
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"},
                    "status": {"capacity": {"cpu": "2", "pods": "110"}}}),
                vec![
                    ("status.allocatable", json!({"cpu": "2", "pods": "110"})),
                    ("status.phase", Value::Null),
                ],
            ),
            (
                "persistent volume",
                json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv"},
                    "spec": {"capacity": {"storage": "1Gi"}, "hostPath": {"path": "/data"}}}),
                vec![
                    ("spec.persistentVolumeReclaimPolicy", json!("Retain")),
                    ("spec.volumeMode", json!("Filesystem")),
                    ("spec.hostPath.type", json!("")),
                    ("status.phase", json!("Pending")),
                ],
            ),
            (
                "persistent volume claim",
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Block"}}),
                vec![
                    ("spec.volumeMode", json!("Block")),
                    ("status.phase", json!("Pending")),
                ],
            ),
            (
                "secret",
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}),
                vec![("type", json!("Opaque"))],
            ),
            (
                "secret keeps its type",
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "kubernetes.io/tls"}),
                vec![("type", json!("kubernetes.io/tls"))],
            ),
            (
                "endpoints",
                json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"},
                    "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}),
                vec![("subsets.0.ports.0.protocol", json!("TCP"))],
            ),
            (
                "endpointslice",
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "e"},
                    "addressType": "IPv4", "endpoints": [], "ports": [{"port": 80}, {"name": "x", "protocol": "UDP"}]}),
                vec![
                    ("ports.0.name", json!("")),
                    ("ports.0.protocol", json!("TCP")),
                    ("ports.1.name", json!("x")),
                    ("ports.1.protocol", json!("UDP")),
                ],
            ),
            (
                "storageclass",
                json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "s"},
                    "provisioner": "p"}),
                vec![
                    ("reclaimPolicy", json!("Delete")),
                    ("volumeBindingMode", json!("Immediate")),
                ],
            ),
            (
                "priorityclass",
                json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "p"},
                    "value": 10}),
                vec![("preemptionPolicy", json!("PreemptLowerPriority"))],
            ),
            (
                "hpa v2 gets cpu metric and no behavior",
                json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
                    "spec": {"maxReplicas": 5, "scaleTargetRef": {"kind": "Deployment", "name": "d", "apiVersion": "apps/v1"}}}),
                vec![
                    ("spec.minReplicas", json!(1)),
                    (
                        "spec.metrics",
                        json!([{"type": "Resource", "resource": {"name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 80}}}]),
                    ),
                    ("spec.behavior", Value::Null),
                ],
            ),
            (
                "hpa v2 behavior is filled in",
                json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
                    "spec": {"maxReplicas": 5, "minReplicas": 2, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
                        "metrics": [{"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1"}}}]}}),
                vec![
                    ("spec.minReplicas", json!(2)),
                    ("spec.metrics.0.type", json!("Pods")),
                    ("spec.metrics.1", Value::Null),
                    (
                        "spec.behavior.scaleUp",
                        json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                            {"type": "Pods", "value": 4, "periodSeconds": 15},
                            {"type": "Percent", "value": 100, "periodSeconds": 15}]}),
                    ),
                    (
                        "spec.behavior.scaleDown",
                        json!({"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "policies": [
                            {"type": "Percent", "value": 100, "periodSeconds": 15}]}),
                    ),
                ],
            ),
            (
                "hpa v1 only minReplicas",
                json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
                    "spec": {"maxReplicas": 5}}),
                vec![
                    ("spec.minReplicas", json!(1)),
                    ("spec.targetCPUUtilizationPercentage", Value::Null),
                ],
            ),
            (
                "configmap has no defaults",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
                vec![("data", Value::Null), ("immutable", Value::Null)],
            ),
        ]
    }

    #[test]
    fn table() {
        let cases = cases();
        assert!(cases.len() >= 25);
        for (name, input, expected) in cases {
            let out = defaulted(&input);
            for (p, want) in expected {
                assert_eq!(path(&out, p), &want, "{name}: {p}\n{out:#}");
            }
        }
    }

    #[test]
    fn applying_twice_equals_applying_once() {
        for (name, input, _) in cases() {
            let once = defaulted(&input);
            assert_eq!(defaulted(&once), once, "{name}");
        }
    }

    #[test]
    fn defaulted_objects_survive_the_typed_round_trip() {
        for (name, input, _) in cases() {
            let r = info(
                input["apiVersion"].as_str().unwrap(),
                input["kind"].as_str().unwrap(),
            );
            let out = defaulted(&input);
            (r.roundtrip)(&out).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        let sha = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("docker.io/library/nginx", "Always"),
            ("localhost:5000/app", "Always"),
            ("localhost:5000/app:v1", "IfNotPresent"),
            ("registry.example.com:5000/team/app:latest", "Always"),
            (&format!("nginx@{sha}"), "IfNotPresent"),
            (&format!("nginx:latest@{sha}"), "Always"),
            (&format!("nginx:1.0@{sha}"), "IfNotPresent"),
            ("", "IfNotPresent"),
            ("Nginx", "IfNotPresent"),
            ("nginx:", "IfNotPresent"),
            ("nginx@sha256:bad", "IfNotPresent"),
        ];
        for (image, want) in cases {
            assert_eq!(image_pull_policy_default(image), want, "{image:?}");
        }
    }

    #[test]
    fn namespace_keeps_user_finalizers_and_adds_kubernetes() {
        let mut ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "a", "labels": {"kubernetes.io/metadata.name": "wrong", "x": "y"}},
            "spec": {"finalizers": ["example.com/f"]}, "status": {"phase": "Terminating"}});
        apply_defaults(info("v1", "Namespace"), &mut ns);
        assert_eq!(
            ns["spec"]["finalizers"],
            json!(["example.com/f", "kubernetes"])
        );
        assert_eq!(
            ns["metadata"]["labels"],
            json!({"kubernetes.io/metadata.name": "a", "x": "y"})
        );
        assert_eq!(ns["status"]["phase"], "Terminating");

        let mut terminating = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "a", "deletionTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"finalizers": []}});
        apply_defaults(info("v1", "Namespace"), &mut terminating);
        assert_eq!(terminating["spec"]["finalizers"], json!([]));
    }

    #[test]
    fn admit_pod_adds_admission_fields() {
        let mut pod = container_pod(json!({"name": "c", "image": "i"}));
        admit_pod(&mut pod, DefaultTolerationSeconds::default());
        let spec = &pod["spec"];
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["serviceAccount"], "default");
        assert_eq!(
            spec["priority"],
            Value::Null,
            "the registry resolves priority"
        );
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(
            spec["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ])
        );
        let once = pod.clone();
        admit_pod(&mut pod, DefaultTolerationSeconds::default());
        assert_eq!(pod, once, "admission is idempotent");
    }

    #[test]
    fn admit_pod_uses_the_configured_toleration_seconds() {
        let mut pod = container_pod(json!({"name": "c", "image": "i"}));
        let secs = DefaultTolerationSeconds {
            not_ready: 7,
            unreachable: 2,
        };
        admit_pod(&mut pod, secs);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 7},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}
            ])
        );
    }

    #[test]
    fn admit_pod_keeps_what_is_set() {
        let cases = [
            (
                json!({"serviceAccountName": "builder", "priority": 5, "preemptionPolicy": "Never",
                    "enableServiceLinks": false,
                    "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                        "effect": "NoExecute", "tolerationSeconds": 5}]}),
                json!({"serviceAccountName": "builder", "serviceAccount": "builder", "priority": 5,
                    "preemptionPolicy": "Never", "enableServiceLinks": false,
                    "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                        "effect": "NoExecute", "tolerationSeconds": 5},
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                        "effect": "NoExecute", "tolerationSeconds": 300}]}),
            ),
            (
                // A wildcard toleration tolerates both taints.
                json!({"serviceAccount": "legacy", "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists"}]}),
                json!({"serviceAccount": "legacy", "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists"}], "serviceAccountName": "legacy",
                    "enableServiceLinks": true}),
            ),
            (
                // Classes are left for the registry to resolve.
                json!({"serviceAccountName": "a", "priorityClassName": "high",
                    "tolerations": [{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]}),
                json!({"serviceAccountName": "a", "priorityClassName": "high",
                    "tolerations": [{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
                        {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                        "effect": "NoExecute", "tolerationSeconds": 300},
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                        "effect": "NoExecute", "tolerationSeconds": 300}],
                    "serviceAccount": "a", "enableServiceLinks": true}),
            ),
        ];
        for (i, (spec, want)) in cases.into_iter().enumerate() {
            let mut pod = json!({"metadata": {"name": "p"}, "spec": spec});
            admit_pod(&mut pod, DefaultTolerationSeconds::default());
            assert_eq!(pod["spec"], want, "case {i}");
        }
    }

    #[test]
    fn admit_pod_leaves_mirror_pods_without_service_account() {
        let mut pod = json!({"metadata": {"name": "p",
            "annotations": {"kubernetes.io/config.mirror": "x"}}, "spec": {}});
        admit_pod(&mut pod, DefaultTolerationSeconds::default());
        assert!(pod["spec"].get("serviceAccountName").is_none());
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);
    }
}
