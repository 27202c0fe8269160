//! The registry: Kubernetes' write semantics on top of the store and cache.
//!
//! Every verb is here as a plain async function over JSON objects; the HTTP
//! layer only parses requests and renders answers. Objects are kept in their
//! storage version and converted on the way in and out.

use crate::cache::{Cache, Obj};
use crate::error::{ApiError, ApiResult};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use skiff_api::catalog::{self, ResourceInfo};
use skiff_api::{convert, defaults, meta, validation};
use skiff_store::{Revision, Store, StoreError};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// How the server checks fields it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop unknown fields silently.
    Ignore,
    /// Drop them and warn (the default when a client says nothing).
    #[default]
    Warn,
    /// Reject the request.
    Strict,
}

impl FieldValidation {
    /// Parses the `fieldValidation` query parameter.
    pub fn parse(s: Option<&str>) -> ApiResult<Self> {
        match s {
            None | Some("") => Ok(Self::Warn),
            Some("Ignore") => Ok(Self::Ignore),
            Some("Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
            ))),
        }
    }
}

/// Options common to writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
}

/// What a write answers: the object and any warnings for the `Warning` header.
#[derive(Debug)]
pub struct Written {
    /// The object as the client's version sees it.
    pub object: Value,
    /// Warnings (unknown fields under `Warn`).
    pub warnings: Vec<String>,
    /// Whether the write created the object (HTTP 201).
    pub created: bool,
}

/// Kinds of patch a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 6902.
    Json,
    /// RFC 7386.
    Merge,
    /// Kubernetes' strategic merge patch.
    Strategic,
    /// Server-side apply (approximated as a strategic merge of the applied configuration).
    Apply,
}

impl PatchType {
    /// From a request's `Content-Type`.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// DeleteOptions as the registry uses them.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy`: Orphan, Background, Foreground.
    pub propagation_policy: Option<String>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub precondition_rv: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Reads a `DeleteOptions` body merged with query parameters.
    pub fn from_parts(
        body: Option<&Value>,
        query: &dyn Fn(&str) -> Option<String>,
    ) -> ApiResult<Self> {
        let mut o = DeleteOptions::default();
        if let Some(b) = body {
            o.grace_period_seconds = b.get("gracePeriodSeconds").and_then(Value::as_i64);
            o.propagation_policy = b
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string);
            if b.get("orphanDependents").and_then(Value::as_bool) == Some(true)
                && o.propagation_policy.is_none()
            {
                o.propagation_policy = Some("Orphan".into());
            }
            o.precondition_uid = meta::str_at(b, &["preconditions", "uid"]).map(str::to_string);
            o.precondition_rv =
                meta::str_at(b, &["preconditions", "resourceVersion"]).map(str::to_string);
            o.dry_run = b
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v == "All"));
        }
        if let Some(g) = query("gracePeriodSeconds") {
            o.grace_period_seconds =
                Some(g.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}"))
                })?);
        }
        if let Some(p) = query("propagationPolicy") {
            o.propagation_policy = Some(p);
        }
        if query("dryRun").as_deref() == Some("All") {
            o.dry_run = true;
        }
        if let Some(p) = &o.propagation_policy
            && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(ApiError::bad_request(format!(
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
        Ok(o)
    }
}

/// Cluster-wide settings the registry needs.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// `--service-cidr`.
    pub service_cidr: (Ipv4Addr, u8),
    /// NodePort range.
    pub node_port_range: (u16, u16),
    /// The seconds of the default not-ready/unreachable tolerations.
    pub default_toleration_seconds: defaults::DefaultTolerationSeconds,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            service_cidr: (Ipv4Addr::new(10, 43, 0, 0), 16),
            node_port_range: (30000, 32767),
            default_toleration_seconds: Default::default(),
        }
    }
}

/// The registry.
pub struct Registry {
    store: Arc<dyn Store>,
    cache: Arc<Cache>,
    config: RegistryConfig,
    alloc_lock: tokio::sync::Mutex<()>,
}

/// The storage key of an object.
pub fn key(r: &ResourceInfo, ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) if r.namespaced => format!("/registry/{}/{ns}/{name}", r.storage),
        _ => format!("/registry/{}/{name}", r.storage),
    }
}

/// The key prefix of a collection (all namespaces when `ns` is None).
pub fn prefix(r: &ResourceInfo, ns: Option<&str>) -> String {
    match ns {
        Some(ns) if r.namespaced => format!("/registry/{}/{ns}/", r.storage),
        _ => format!("/registry/{}/", r.storage),
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

fn ts_plus(secs: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs);
    t.round(jiff::Unit::Second).unwrap_or(t).to_string()
}

/// Random suffix for generateName, from Kubernetes' alphabet (no vowels, no confusable digits).
pub fn random_suffix(n: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Kinds whose `metadata.generation` tracks spec changes.
fn tracks_generation(r: &ResourceInfo) -> bool {
    matches!(r.group, "apps" | "batch" | "autoscaling" | "policy")
}

/// Everything but metadata and status: what a generation bump compares.
fn spec_part(v: &Value) -> Value {
    let mut m = v.as_object().cloned().unwrap_or_default();
    m.remove("metadata");
    m.remove("status");
    m.remove("apiVersion");
    m.remove("kind");
    Value::Object(m)
}

/// Unknown fields of `input` relative to its typed round trip `known`.
fn unknown_fields(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    None if !v.is_null() => out.push(p),
                    Some(kv) => unknown_fields(v, kv, &p, out),
                    None => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                unknown_fields(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Type-checks an incoming object of kind `r` and drops unknown fields per `mode`.
pub fn decode_object(
    r: &ResourceInfo,
    input: Value,
    mode: FieldValidation,
) -> ApiResult<(Value, Vec<String>)> {
    if !input.is_object() {
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: the object is not a JSON object",
            r.kind, r.version, r.kind
        )));
    }
    if let Some(k) = input.get("kind").and_then(Value::as_str)
        && k != r.kind
        && !k.is_empty()
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            r.kind
        )));
    }
    if let Some(av) = input.get("apiVersion").and_then(Value::as_str)
        && !av.is_empty()
        && av != r.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            r.api_version()
        )));
    }
    let known = (r.roundtrip)(&input).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            r.kind, r.version, r.kind
        ))
    })?;
    let mut unknown = Vec::new();
    if mode != FieldValidation::Ignore {
        unknown_fields(&input, &known, "", &mut unknown);
    }
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        match mode {
            FieldValidation::Strict => {
                return Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    r.kind,
                    r.version,
                    r.kind,
                    list.join(", ")
                )));
            }
            FieldValidation::Warn => warnings = list,
            FieldValidation::Ignore => {}
        }
    }
    let mut known = known;
    if let Some(m) = known.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(r.api_version()));
        m.insert("kind".into(), Value::String(r.kind.into()));
    }
    Ok((known, warnings))
}

fn pod_qos_class(pod: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let containers = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            pod["spec"]["initContainers"]
                .as_array()
                .into_iter()
                .flatten(),
        );
    for c in containers {
        let req = c["resources"]["requests"].as_object();
        let lim = c["resources"]["limits"].as_object();
        if req.is_some_and(|m| !m.is_empty()) || lim.is_some_and(|m| !m.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = lim.and_then(|m| m.get(res));
            let q = req.and_then(|m| m.get(res)).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// `stringData` of a Secret is write-only: its entries overwrite `data`
/// (base64-encoded) and it is never stored, as Kubernetes converts it.
fn merge_string_data(obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else { return };
    let Some(Value::Object(sd)) = m.remove("stringData") else {
        return;
    };
    let data = m.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    let data = data.as_object_mut().expect("object");
    for (k, v) in sd {
        let text = v.as_str().unwrap_or_default();
        data.insert(
            k,
            Value::String(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                text,
            )),
        );
    }
}

/// Kubernetes generates a Job's selector from its uid unless
/// `spec.manualSelector` is true, and labels the pod template to match.
fn generate_job_selector(job: &mut Map<String, Value>) {
    let uid = job
        .get("metadata")
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = job
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let labels = json!({
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    });
    let tl = spec.entry("template").or_insert(json!({}));
    let tm = meta::object_at(tl, &["metadata", "labels"]);
    for (k, v) in labels.as_object().expect("object") {
        tm.insert(k.clone(), v.clone());
    }
    if spec.get("selector").is_none_or(Value::is_null) {
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        );
    }
}

impl Registry {
    /// A registry over a store and its cache.
    pub fn new(store: Arc<dyn Store>, cache: Arc<Cache>, config: RegistryConfig) -> Self {
        Self {
            store,
            cache,
            config,
            alloc_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The datastore.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The cache.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// Waits until the cache has every acknowledged write.
    pub async fn sync(&self) -> ApiResult<()> {
        let rev = self.store.current_revision().await?;
        self.cache.wait_for(rev).await;
        Ok(())
    }

    /// Converts a stored object to the version of `r`.
    pub fn to_version(r: &ResourceInfo, obj: &Obj) -> Value {
        let storage = catalog::storage_info(r);
        if storage.group == r.group && storage.version == r.version {
            obj.value.clone()
        } else {
            convert::convert(obj.value.clone(), storage, r)
        }
    }

    /// The object's bytes in the version of `r` (no copy when it is the storage version).
    pub fn bytes_in_version(r: &ResourceInfo, obj: &Obj) -> Bytes {
        let storage = catalog::storage_info(r);
        if storage.group == r.group && storage.version == r.version {
            obj.json.clone()
        } else {
            Bytes::from(serde_json::to_vec(&Self::to_version(r, obj)).unwrap_or_default())
        }
    }

    /// GET one object (storage version, cached).
    pub async fn get(&self, r: &ResourceInfo, ns: Option<&str>, name: &str) -> ApiResult<Arc<Obj>> {
        self.sync().await?;
        self.cache
            .get(&key(r, ns, name))
            .ok_or_else(|| ApiError::not_found(r, name))
    }

    fn get_cached(&self, r: &ResourceInfo, ns: Option<&str>, name: &str) -> ApiResult<Arc<Obj>> {
        self.cache
            .get(&key(r, ns, name))
            .ok_or_else(|| ApiError::not_found(r, name))
    }

    async fn ensure_namespace(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        creating: bool,
    ) -> ApiResult<()> {
        if !r.namespaced {
            return Ok(());
        }
        let ns = ns.ok_or_else(|| ApiError::bad_request("a namespace is required"))?;
        let nsr = catalog::lookup("", "v1", "namespaces").expect("namespaces served");
        let mut found = self.cache.get(&key(nsr, None, ns));
        if found.is_none() {
            // Perhaps only just created, through another server.
            self.sync().await?;
            found = self.cache.get(&key(nsr, None, ns));
        }
        match found {
            None => Err(ApiError::not_found(nsr, ns)),
            Some(o)
                if creating && meta::at(&o.value, &["metadata", "deletionTimestamp"]).is_some() =>
            {
                Err(ApiError::forbidden(format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    crate::error::qualified(r),
                )))
            }
            _ => Ok(()),
        }
    }

    /// Kubernetes' Priority admission: a pod's `priorityClassName` (or, without
    /// one, the `globalDefault` class) becomes `spec.priority` and
    /// `spec.preemptionPolicy`; an unknown class or a conflicting value given
    /// in the spec is refused with 403.
    fn admit_priority(&self, pod: &mut Value) -> ApiResult<()> {
        let pcr = catalog::lookup("scheduling.k8s.io", "v1", "priorityclasses")
            .expect("priorityclasses served");
        let pod_name = meta::name(pod).to_string();
        let forbidden =
            |why: String| ApiError::forbidden(format!("pods \"{pod_name}\" is forbidden: {why}"));
        let spec = meta::object_at(pod, &["spec"]);
        let class_name = spec
            .get("priorityClassName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let class = if class_name.is_empty() {
            // The default class with the lowest value, as Kubernetes picks among several.
            let (classes, _) = self.cache.list(&prefix(pcr, None), None);
            classes
                .into_iter()
                .filter(|c| c.value["globalDefault"] == true)
                .min_by_key(|c| c.value["value"].as_i64().unwrap_or(0))
        } else {
            Some(
                self.cache
                    .get(&key(pcr, None, &class_name))
                    .ok_or_else(|| {
                        forbidden(format!("no PriorityClass with name {class_name} was found"))
                    })?,
            )
        };
        let (name, value, policy) = match &class {
            Some(c) => (
                meta::name(&c.value).to_string(),
                c.value["value"].as_i64().unwrap_or(0),
                c.value["preemptionPolicy"]
                    .as_str()
                    .unwrap_or("PreemptLowerPriority")
                    .to_string(),
            ),
            None => (String::new(), 0, "PreemptLowerPriority".to_string()),
        };
        match spec.get("priority").and_then(Value::as_i64) {
            Some(p) if p != value => {
                return Err(forbidden(format!(
                    "the integer value of priority ({p}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
                )));
            }
            _ => {}
        }
        match spec.get("preemptionPolicy").and_then(Value::as_str) {
            Some(p) if p != policy && class.is_some() => {
                return Err(forbidden(format!(
                    "the string value of PreemptionPolicy ({p}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
                )));
            }
            Some(_) => {}
            None => {
                spec.insert("preemptionPolicy".into(), json!(policy));
            }
        }
        if !name.is_empty() {
            spec.insert("priorityClassName".into(), json!(name));
        }
        spec.insert("priority".into(), json!(value));
        Ok(())
    }

    /// Kubernetes' DefaultStorageClass admission: a claim with no
    /// `storageClassName` (absent, not `""`) and no beta class annotation gets
    /// the default class, the newest if several are marked default.
    fn admit_default_storage_class(&self, claim: &mut Value) {
        if !claim["spec"]["storageClassName"].is_null()
            || !claim["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"]
                .is_null()
        {
            return;
        }
        let scr = catalog::lookup("storage.k8s.io", "v1", "storageclasses")
            .expect("storageclasses served");
        let (classes, _) = self.cache.list(&prefix(scr, None), None);
        let is_default = |c: &Value| {
            let a = &c["metadata"]["annotations"];
            a["storageclass.kubernetes.io/is-default-class"] == "true"
                || a["storageclass.beta.kubernetes.io/is-default-class"] == "true"
        };
        let newest = classes
            .iter()
            .filter(|c| is_default(&c.value))
            .max_by(|a, b| {
                let ts = |c: &Value| {
                    c["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                };
                ts(&a.value)
                    .cmp(&ts(&b.value))
                    .then_with(|| meta::name(&b.value).cmp(meta::name(&a.value)))
            });
        if let Some(c) = newest {
            let name = meta::name(&c.value).to_string();
            meta::object_at(claim, &["spec"]).insert("storageClassName".into(), json!(name));
        }
    }

    /// CREATE.
    pub async fn create(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        input: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let (mut obj, warnings) = decode_object(r, input, opts.field_validation)?;
        // A create needs no read of the datastore first: the write itself
        // refuses a name that exists. The cache answers admission; it is
        // brought up to date first where a stale answer would be wrong
        // (allocation, default classes), or on a miss that may be staleness
        // (the namespace, a priority class), as Kubernetes reads those
        // through informers that lag too.
        let storage = catalog::storage_info(r);
        if matches!(storage.resource, "services" | "persistentvolumeclaims") || opts.dry_run {
            self.sync().await?;
        } else if storage.resource == "pods"
            && let Some(class) = meta::str_at(&obj, &["spec", "priorityClassName"])
            && !class.is_empty()
        {
            let pcr = catalog::lookup("scheduling.k8s.io", "v1", "priorityclasses")
                .expect("priorityclasses served");
            if self.cache.get(&key(pcr, None, class)).is_none() {
                self.sync().await?;
            }
        }
        // Namespace from the URL wins; a different one in the body is an error.
        if r.namespaced {
            let url_ns = ns.unwrap_or("default");
            match meta::str_at(&obj, &["metadata", "namespace"]) {
                Some(body_ns) if !body_ns.is_empty() && body_ns != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => meta::set(
                    &mut obj,
                    &["metadata", "namespace"],
                    Value::String(url_ns.into()),
                ),
            }
        } else if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("namespace");
        }
        let ns = if r.namespaced {
            Some(meta::namespace(&obj).to_string())
        } else {
            None
        };

        if meta::name(&obj).is_empty() {
            match meta::str_at(&obj, &["metadata", "generateName"]) {
                Some(g) if !g.is_empty() => {
                    let base: String = g.chars().take(63 - 5).collect();
                    let name = format!("{base}{}", random_suffix(5));
                    meta::set(&mut obj, &["metadata", "name"], Value::String(name));
                }
                _ => {
                    return Err(ApiError::invalid(
                        r,
                        "",
                        &[skiff_api::FieldError::required(
                            "metadata.name",
                            "name or generateName is required",
                        )],
                    ));
                }
            }
        }
        self.ensure_namespace(r, ns.as_deref(), meta::name(&obj), true)
            .await?;
        let md = meta::object_at(&mut obj, &["metadata"]);
        md.insert(
            "uid".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
        md.insert("creationTimestamp".into(), Value::String(now()));
        md.remove("resourceVersion");
        md.remove("deletionTimestamp");
        md.remove("deletionGracePeriodSeconds");
        md.remove("managedFields");
        md.remove("selfLink");
        if tracks_generation(r) {
            md.insert("generation".into(), json!(1));
        } else {
            md.remove("generation");
        }
        self.prepare_for_create(r, &mut obj);
        let mut stored = convert::convert(obj, r, storage);
        if storage.resource == "secrets" {
            merge_string_data(&mut stored);
        }
        defaults::apply_defaults(storage, &mut stored);
        if storage.resource == "pods" {
            defaults::admit_pod(&mut stored, self.config.default_toleration_seconds);
            self.admit_priority(&mut stored)?;
        }
        if storage.resource == "persistentvolumeclaims" {
            self.admit_default_storage_class(&mut stored);
            add_finalizer(&mut stored, "kubernetes.io/pvc-protection");
        }
        if storage.resource == "persistentvolumes" {
            add_finalizer(&mut stored, "kubernetes.io/pv-protection");
        }
        let name = meta::name(&stored).to_string();
        let errs = validation::validate_create(storage, &stored);
        if !errs.is_empty() {
            return Err(ApiError::invalid(r, &name, &errs));
        }
        let k = key(storage, ns.as_deref(), &name);
        let _guard = if storage.resource == "services" {
            Some(self.alloc_lock.lock().await)
        } else {
            None
        };
        if storage.resource == "services" {
            self.allocate_service(&mut stored, None)?;
        }
        if opts.dry_run {
            if self.cache.get(&k).is_some() {
                return Err(ApiError::already_exists(r, &name));
            }
            return Ok(Written {
                object: convert::convert(stored, storage, r),
                warnings,
                created: true,
            });
        }
        let bytes = Bytes::from(
            serde_json::to_vec(&stored).map_err(|e| ApiError::internal(e.to_string()))?,
        );
        let rev = match self.store.create(&k, bytes).await {
            Ok(rev) => rev,
            Err(StoreError::AlreadyExists { .. }) => {
                return Err(ApiError::already_exists(r, &name));
            }
            Err(e) => return Err(e.into()),
        };
        self.cache.wait_for(rev).await;
        let obj = self
            .cache
            .get(&k)
            .filter(|o| o.rev == rev)
            .map(|o| Self::to_version(r, &o));
        let object = match obj {
            Some(o) => o,
            None => {
                meta::set(
                    &mut stored,
                    &["metadata", "resourceVersion"],
                    Value::String(rev.to_string()),
                );
                convert::convert(stored, storage, r)
            }
        };
        Ok(Written {
            object,
            warnings,
            created: true,
        })
    }

    fn prepare_for_create(&self, r: &ResourceInfo, obj: &mut Value) {
        let Some(m) = obj.as_object_mut() else { return };
        // Nodes may set their status on create, as the kubelet does when it registers.
        if r.has_status() && r.resource != "nodes" {
            m.remove("status");
        }
        match r.resource {
            "pods" => {
                let qos = pod_qos_class(&Value::Object(m.clone()));
                m.insert(
                    "status".into(),
                    json!({"phase": "Pending", "qosClass": qos}),
                );
            }
            "namespaces" => {
                m.insert("status".into(), json!({"phase": "Active"}));
            }
            "jobs" => generate_job_selector(m),
            _ => {}
        }
    }

    /// Allocates the cluster IP and node ports of a Service (old is the previous version on update).
    fn allocate_service(&self, svc: &mut Value, old: Option<&Value>) -> ApiResult<()> {
        let svcs = catalog::lookup("", "v1", "services").expect("services served");
        let spec = meta::object_at(svc, &["spec"]);
        let type_ = spec
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        let (items, _) = self.cache.list(&prefix(svcs, None), None);
        let my_key = old.map(|o| key(svcs, Some(meta::namespace(o)), meta::name(o)));
        let others: Vec<&Arc<Obj>> = items
            .iter()
            .filter(|o| Some(&o.key) != my_key.as_ref())
            .collect();
        if type_ == "ExternalName" {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
            return Ok(());
        }
        let requested = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let old_ip = old
            .and_then(|o| meta::str_at(o, &["spec", "clusterIP"]))
            .unwrap_or("")
            .to_string();
        let ip = if !old_ip.is_empty() && (requested.is_empty() || requested == old_ip) {
            old_ip
        } else if requested == "None" {
            "None".to_string()
        } else {
            let (base, bits) = self.config.service_cidr;
            let size = 1u32 << (32 - bits as u32);
            let base_n = u32::from(base);
            let used: std::collections::HashSet<String> = others
                .iter()
                .filter_map(|o| meta::str_at(&o.value, &["spec", "clusterIP"]).map(str::to_string))
                .collect();
            if !requested.is_empty() {
                let parsed: Ipv4Addr = requested.parse().map_err(|_| {
                    ApiError::invalid(
                        svcs,
                        meta::name(&Value::Null),
                        &[skiff_api::FieldError::invalid(
                            "spec.clusterIPs[0]",
                            requested.clone(),
                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        )],
                    )
                })?;
                let n = u32::from(parsed);
                if n < base_n || n >= base_n + size {
                    return Err(ApiError::invalid(
                        svcs,
                        "",
                        &[skiff_api::FieldError::invalid(
                            "spec.clusterIPs",
                            json!([requested]),
                            format!(
                                "failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {base}/{bits}"
                            ),
                        )],
                    ));
                }
                if used.contains(&requested) {
                    return Err(ApiError::invalid(
                        svcs,
                        "",
                        &[skiff_api::FieldError::invalid(
                            "spec.clusterIPs",
                            json!([requested]),
                            format!(
                                "failed to allocate IP {requested}: provided IP is already allocated"
                            ),
                        )],
                    ));
                }
                requested
            } else {
                // .1 is the kubernetes service; dynamic allocation starts above it.
                let mut found = None;
                for off in 2..size.saturating_sub(1) {
                    let cand = Ipv4Addr::from(base_n + off).to_string();
                    if !used.contains(&cand) {
                        found = Some(cand);
                        break;
                    }
                }
                found.ok_or_else(|| {
                    ApiError::internal("failed to allocate a serviceIP: range is full")
                })?
            }
        };
        spec.insert("clusterIP".into(), Value::String(ip.clone()));
        spec.insert("clusterIPs".into(), json!([ip]));
        spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
        spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
        if type_ == "NodePort" || type_ == "LoadBalancer" {
            let mut used: std::collections::HashSet<i64> = others
                .iter()
                .flat_map(|o| {
                    o.value["spec"]["ports"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
                .collect();
            let old_ports: Vec<Value> = old
                .and_then(|o| o["spec"]["ports"].as_array().cloned())
                .unwrap_or_default();
            let (lo, hi) = self.config.node_port_range;
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for (i, p) in ports.iter_mut().enumerate() {
                    let cur = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
                    if cur != 0 {
                        if !(lo as i64..=hi as i64).contains(&cur) {
                            return Err(ApiError::invalid(
                                svcs,
                                "",
                                &[skiff_api::FieldError::invalid(
                                    format!("spec.ports[{i}].nodePort"),
                                    cur,
                                    format!(
                                        "provided port is not in the valid range. The range of valid ports is {lo}-{hi}"
                                    ),
                                )],
                            ));
                        }
                        let was_mine = old_ports
                            .iter()
                            .any(|op| op.get("nodePort").and_then(Value::as_i64) == Some(cur));
                        if used.contains(&cur) && !was_mine {
                            return Err(ApiError::invalid(
                                svcs,
                                "",
                                &[skiff_api::FieldError::invalid(
                                    format!("spec.ports[{i}].nodePort"),
                                    cur,
                                    "provided port is already allocated",
                                )],
                            ));
                        }
                        used.insert(cur);
                        continue;
                    }
                    let keep = old_ports
                        .iter()
                        .find(|op| {
                            op.get("port") == p.get("port")
                                && op.get("protocol") == p.get("protocol")
                        })
                        .and_then(|op| op.get("nodePort").and_then(Value::as_i64));
                    let port = match keep {
                        Some(k) => k,
                        None => {
                            let span = (hi - lo + 1) as i64;
                            let start = (rand::random::<u32>() as i64) % span;
                            (0..span)
                                .map(|o| lo as i64 + (start + o) % span)
                                .find(|c| !used.contains(c))
                                .ok_or_else(|| {
                                    ApiError::internal(
                                        "failed to allocate a nodePort: range is full",
                                    )
                                })?
                        }
                    };
                    used.insert(port);
                    p.as_object_mut()
                        .expect("port object")
                        .insert("nodePort".into(), json!(port));
                }
            }
        } else if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports {
                if let Some(m) = p.as_object_mut() {
                    m.remove("nodePort");
                }
            }
        }
        Ok(())
    }

    /// UPDATE (PUT) of the main resource or a subresource (`status`).
    pub async fn update(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        input: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let (obj, warnings) = decode_object(r, input, opts.field_validation)?;
        let body_name = meta::name(&obj);
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if r.namespaced
            && let Some(bns) = meta::str_at(&obj, &["metadata", "namespace"])
            && !bns.is_empty()
            && Some(bns) != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let expected_rv = meta::str_at(&obj, &["metadata", "resourceVersion"])
            .map(str::to_string)
            .filter(|s| !s.is_empty());
        self.sync().await?;
        let storage = catalog::storage_info(r);
        let incoming = convert::convert(obj, r, storage);
        self.guaranteed_update(r, ns, name, sub, expected_rv, opts, warnings, |_old| {
            Ok(incoming.clone())
        })
        .await
    }

    /// PATCH of the main resource or a subresource.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        kind: PatchType,
        patch: &[u8],
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let patch_value: Value = match kind {
            PatchType::Apply => serde_saphyr::from_slice(patch)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?,
            _ => serde_json::from_slice(patch)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
        };
        self.sync().await?;
        if kind == PatchType::Apply && self.cache.get(&key(r, ns, name)).is_none() {
            // Server-side apply of a new object creates it.
            let mut obj = patch_value;
            meta::set(&mut obj, &["metadata", "name"], Value::String(name.into()));
            return self.create(r, ns, obj, opts).await;
        }
        let storage = catalog::storage_info(r);
        let mut warnings = Vec::new();
        let mut patch_rv: Option<String> = None;
        if let Some(rv) =
            meta::str_at(&patch_value, &["metadata", "resourceVersion"]).filter(|s| !s.is_empty())
        {
            patch_rv = Some(rv.to_string());
        }
        let mode = opts.field_validation;
        let warn_ref = &mut warnings;
        let result = self
            .guaranteed_update(r, ns, name, sub, patch_rv, opts, Vec::new(), |old| {
                let current = convert::convert(old.clone(), storage, r);
                let patched = apply_patch(r, kind, &current, &patch_value)?;
                let (typed, w) = decode_object(r, patched, mode)?;
                warn_ref.extend(w);
                Ok(convert::convert(typed, r, storage))
            })
            .await?;
        let mut result = result;
        result.warnings.extend(warnings);
        Ok(result)
    }

    /// Read-modify-write with retries on conflict, Kubernetes' GuaranteedUpdate.
    #[allow(clippy::too_many_arguments)]
    async fn guaranteed_update<F>(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        expected_rv: Option<String>,
        opts: &WriteOptions,
        warnings: Vec<String>,
        mut mutate: F,
    ) -> ApiResult<Written>
    where
        F: FnMut(&Value) -> ApiResult<Value>,
    {
        let storage = catalog::storage_info(r);
        let k = key(storage, ns, name);
        for _attempt in 0..16 {
            let old = self
                .get_cached(storage, ns, name)
                .map_err(|_| ApiError::not_found(r, name))?;
            if let Some(rv) = &expected_rv
                && *rv != old.rev.to_string()
            {
                return Err(ApiError::conflict(r, name));
            }
            let mut incoming = mutate(&old.value)?;
            if storage.resource == "secrets" {
                merge_string_data(&mut incoming);
            }
            let mut new = self.merge_update(storage, sub, &old.value, incoming)?;
            defaults::apply_defaults(storage, &mut new);
            let errs = validation::validate_update(storage, &new, &old.value);
            if !errs.is_empty() {
                return Err(ApiError::invalid(r, name, &errs));
            }
            let _guard = if storage.resource == "services" {
                Some(self.alloc_lock.lock().await)
            } else {
                None
            };
            if storage.resource == "services" {
                self.allocate_service(&mut new, Some(&old.value))?;
            }
            let mut old_cmp = old.value.clone();
            if let Some(m) = old_cmp.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            if new == old_cmp {
                // No change: no write, same resourceVersion.
                return Ok(Written {
                    object: Self::to_version(r, &old),
                    warnings,
                    created: false,
                });
            }
            if opts.dry_run {
                meta::set(
                    &mut new,
                    &["metadata", "resourceVersion"],
                    Value::String(old.rev.to_string()),
                );
                return Ok(Written {
                    object: convert::convert(new, storage, r),
                    warnings,
                    created: false,
                });
            }
            // An update that clears the last finalizer of an object being deleted completes the delete.
            let finishing = meta::at(&new, &["metadata", "deletionTimestamp"]).is_some()
                && new["metadata"]["finalizers"]
                    .as_array()
                    .is_none_or(|f| f.is_empty())
                && new["metadata"]["deletionGracePeriodSeconds"]
                    .as_i64()
                    .unwrap_or(0)
                    == 0
                && !(storage.resource == "namespaces"
                    && new["spec"]["finalizers"]
                        .as_array()
                        .is_some_and(|f| !f.is_empty()));
            let bytes = Bytes::from(
                serde_json::to_vec(&new).map_err(|e| ApiError::internal(e.to_string()))?,
            );
            match self.store.update(&k, bytes, old.rev).await {
                Ok(rev) => {
                    self.cache.wait_for(rev).await;
                    let mut object = match self.cache.get(&k).filter(|o| o.rev == rev) {
                        Some(o) => Self::to_version(r, &o),
                        None => {
                            meta::set(
                                &mut new,
                                &["metadata", "resourceVersion"],
                                Value::String(rev.to_string()),
                            );
                            convert::convert(new, storage, r)
                        }
                    };
                    if finishing {
                        match self.store.delete(&k, Some(rev)).await {
                            Ok(kv) => {
                                self.cache.wait_for(kv.mod_revision).await;
                                meta::set(
                                    &mut object,
                                    &["metadata", "resourceVersion"],
                                    Value::String(kv.mod_revision.to_string()),
                                );
                            }
                            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    return Ok(Written {
                        object,
                        warnings,
                        created: false,
                    });
                }
                Err(StoreError::Conflict { .. }) if expected_rv.is_none() => {
                    self.sync().await?;
                    continue;
                }
                Err(StoreError::Conflict { .. }) => return Err(ApiError::conflict(r, name)),
                Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(r, name)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(r, name))
    }

    /// Combines an incoming object with the stored one: immutable metadata,
    /// status vs spec per subresource, generation.
    fn merge_update(
        &self,
        r: &ResourceInfo,
        sub: Option<&str>,
        old: &Value,
        incoming: Value,
    ) -> ApiResult<Value> {
        let mut new = incoming;
        if sub == Some("finalize") {
            // namespaces/finalize changes only spec.finalizers.
            let mut out = old.clone();
            let f = new["spec"]["finalizers"].clone();
            meta::set(
                &mut out,
                &["spec", "finalizers"],
                if f.is_null() { json!([]) } else { f },
            );
            if let Some(md) = out.get_mut("metadata").and_then(Value::as_object_mut) {
                md.remove("resourceVersion");
            }
            return Ok(out);
        }
        if sub == Some("status") {
            // The status subresource changes only status.
            let mut out = old.clone();
            if let Some(m) = out.as_object_mut() {
                match new.get("status") {
                    Some(s) => m.insert("status".into(), s.clone()),
                    None => m.remove("status"),
                };
                if let Some(md) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                    md.remove("resourceVersion");
                }
            }
            return Ok(out);
        }
        let old_md = old.get("metadata").cloned().unwrap_or(json!({}));
        {
            let md = meta::object_at(&mut new, &["metadata"]);
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ] {
                match old_md.get(k) {
                    Some(v) => md.insert(k.to_string(), v.clone()),
                    None => md.remove(k),
                };
            }
            md.remove("resourceVersion");
            md.remove("managedFields");
            md.remove("selfLink");
        }
        if r.resource == "namespaces" {
            // spec.finalizers changes only through namespaces/finalize.
            let f = old["spec"]["finalizers"].clone();
            if f.is_null() {
                if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("finalizers");
                }
            } else {
                meta::set(&mut new, &["spec", "finalizers"], f);
            }
        }
        if r.has_status()
            && let Some(m) = new.as_object_mut()
        {
            match old.get("status") {
                Some(s) => m.insert("status".into(), s.clone()),
                None => m.remove("status"),
            };
        }
        // An object being deleted may not gain finalizers.
        if meta::at(old, &["metadata", "deletionTimestamp"]).is_some() {
            let old_f: Vec<Value> = old["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let new_f: Vec<Value> = new["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if new_f.iter().any(|f| !old_f.contains(f)) {
                return Err(ApiError::invalid(
                    r,
                    meta::name(old),
                    &[skiff_api::FieldError::forbidden(
                        "metadata.finalizers",
                        "no new finalizers can be added if the object is being deleted",
                    )],
                ));
            }
        }
        if tracks_generation(r) {
            let gen_ = old["metadata"]["generation"].as_i64().unwrap_or(1);
            let bumped = if spec_part(old) != spec_part(&new) {
                gen_ + 1
            } else {
                gen_
            };
            meta::set(&mut new, &["metadata", "generation"], json!(bumped));
        }
        Ok(new)
    }

    /// DELETE. Returns the object (its last state, or its state while deletion is pending).
    pub async fn delete(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<(Value, bool)> {
        self.sync().await?;
        let storage = catalog::storage_info(r);
        let k = key(storage, ns, name);
        for _ in 0..16 {
            let old = self
                .get_cached(storage, ns, name)
                .map_err(|_| ApiError::not_found(r, name))?;
            if let Some(uid) = &opts.precondition_uid
                && meta::str_at(&old.value, &["metadata", "uid"]) != Some(uid.as_str())
            {
                return Err(ApiError::conflict_because(
                    r,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta::str_at(&old.value, &["metadata", "uid"]).unwrap_or("")
                    ),
                ));
            }
            if let Some(rv) = &opts.precondition_rv
                && *rv != old.rev.to_string()
            {
                return Err(ApiError::conflict_because(
                    r,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        old.rev
                    ),
                ));
            }
            let mut new = old.value.clone();
            if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            let grace = self.grace_period(storage, &old.value, opts);
            let mut finalizers: Vec<Value> = new["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let already = meta::at(&old.value, &["metadata", "deletionTimestamp"]).is_some();
            match opts.propagation_policy.as_deref() {
                Some("Orphan") if !finalizers.contains(&json!("orphan")) && !already => {
                    finalizers.push(json!("orphan"))
                }
                Some("Foreground")
                    if !finalizers.contains(&json!("foregroundDeletion")) && !already =>
                {
                    finalizers.push(json!("foregroundDeletion"))
                }
                _ => {}
            }
            let ns_pending = storage.resource == "namespaces"
                && new["spec"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty());
            let graceful = grace > 0 || !finalizers.is_empty() || ns_pending;
            if graceful {
                let old_grace = old.value["metadata"]["deletionGracePeriodSeconds"].as_i64();
                if already
                    && old_grace.is_some_and(|g| g <= grace)
                    && finalizers.len()
                        == old.value["metadata"]["finalizers"]
                            .as_array()
                            .map_or(0, |f| f.len())
                {
                    return Ok((Self::to_version(r, &old), false));
                }
                let md = meta::object_at(&mut new, &["metadata"]);
                if !already || old_grace.is_some_and(|g| grace < g) {
                    md.insert("deletionTimestamp".into(), Value::String(ts_plus(grace)));
                    md.insert("deletionGracePeriodSeconds".into(), json!(grace));
                }
                if !finalizers.is_empty() {
                    md.insert("finalizers".into(), Value::Array(finalizers));
                }
                if storage.resource == "namespaces" {
                    meta::set(&mut new, &["status", "phase"], json!("Terminating"));
                }
                if opts.dry_run {
                    return Ok((convert::convert(new, storage, r), false));
                }
                let bytes = Bytes::from(
                    serde_json::to_vec(&new).map_err(|e| ApiError::internal(e.to_string()))?,
                );
                match self.store.update(&k, bytes, old.rev).await {
                    Ok(rev) => {
                        self.cache.wait_for(rev).await;
                        meta::set(
                            &mut new,
                            &["metadata", "resourceVersion"],
                            Value::String(rev.to_string()),
                        );
                        return Ok((convert::convert(new, storage, r), false));
                    }
                    Err(StoreError::Conflict { .. }) => {
                        self.sync().await?;
                        continue;
                    }
                    Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(r, name)),
                    Err(e) => return Err(e.into()),
                }
            }
            if opts.dry_run {
                return Ok((Self::to_version(r, &old), true));
            }
            match self.store.delete(&k, Some(old.rev)).await {
                Ok(kv) => {
                    self.cache.wait_for(kv.mod_revision).await;
                    let mut obj = Self::to_version(r, &old);
                    meta::set(
                        &mut obj,
                        &["metadata", "resourceVersion"],
                        Value::String(kv.mod_revision.to_string()),
                    );
                    return Ok((obj, true));
                }
                Err(StoreError::Conflict { .. }) => {
                    self.sync().await?;
                    continue;
                }
                Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(r, name)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(r, name))
    }

    /// The grace period a delete gets: pods bound to a node and not yet
    /// terminal wait for their kubelet; everything else goes at once.
    fn grace_period(&self, r: &ResourceInfo, obj: &Value, opts: &DeleteOptions) -> i64 {
        if r.resource != "pods" {
            return 0;
        }
        let scheduled = meta::str_at(obj, &["spec", "nodeName"]).is_some_and(|n| !n.is_empty());
        let phase = meta::str_at(obj, &["status", "phase"]).unwrap_or("");
        if !scheduled || phase == "Succeeded" || phase == "Failed" {
            return 0;
        }
        let g = opts
            .grace_period_seconds
            .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30);
        // A grace of 0 from a client is "force": Kubernetes turns it into 1 s
        // so the kubelet still sees the deletion, except when the pod is gone already.
        if g == 0 && opts.grace_period_seconds == Some(0) {
            0
        } else {
            g.max(0)
        }
    }

    /// Current objects of a collection (storage version), filtered by the caller.
    pub async fn list(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        after_key: Option<&str>,
    ) -> ApiResult<(Vec<Arc<Obj>>, Revision)> {
        self.sync().await?;
        let storage = catalog::storage_info(r);
        Ok(self.cache.list(&prefix(storage, ns), after_key))
    }

    /// POST pods/{name}/binding.
    pub async fn bind(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        binding: Value,
        opts: &WriteOptions,
    ) -> ApiResult<()> {
        let target = meta::str_at(&binding, &["target", "name"])
            .unwrap_or("")
            .to_string();
        if target.is_empty() {
            return Err(ApiError::invalid(
                r,
                name,
                &[skiff_api::FieldError::required("target.name", "")],
            ));
        }
        self.sync().await?;
        let old = self.get_cached(r, ns, name)?;
        if meta::at(&old.value, &["metadata", "deletionTimestamp"]).is_some() {
            return Err(ApiError::conflict_because(
                r,
                name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        if let Some(n) = meta::str_at(&old.value, &["spec", "nodeName"]).filter(|n| !n.is_empty()) {
            return Err(ApiError::conflict_because(
                r,
                name,
                &format!("pod {name} is already assigned to node \"{n}\""),
            ));
        }
        if opts.dry_run {
            return Ok(());
        }
        let mut new = old.value.clone();
        if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        meta::set(&mut new, &["spec", "nodeName"], Value::String(target));
        let conds = meta::object_at(&mut new, &["status"])
            .entry("conditions")
            .or_insert(json!([]));
        if let Some(list) = conds.as_array_mut() {
            list.retain(|c| c["type"] != "PodScheduled");
            list.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()}));
        }
        let bytes =
            Bytes::from(serde_json::to_vec(&new).map_err(|e| ApiError::internal(e.to_string()))?);
        match self.store.update(&key(r, ns, name), bytes, old.rev).await {
            Ok(rev) => {
                self.cache.wait_for(rev).await;
                Ok(())
            }
            Err(StoreError::Conflict { .. }) => Err(ApiError::conflict(r, name)),
            Err(e) => Err(e.into()),
        }
    }

    /// The object of a scale subresource.
    pub fn scale_of(r: &ResourceInfo, obj: &Obj) -> Value {
        let v = &obj.value;
        let selector = v["spec"]["selector"].clone();
        let sel = skiff_api::selector::LabelSelector::from_object(&selector)
            .map(|s| s.to_string())
            .unwrap_or_default();
        let md = &v["metadata"];
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": md["name"], "namespace": md["namespace"], "uid": md["uid"],
                "resourceVersion": obj.rev.to_string(), "creationTimestamp": md["creationTimestamp"],
            },
            "spec": {"replicas": v["spec"]["replicas"].as_i64().unwrap_or(if r.resource == "deployments" || r.resource == "replicasets" || r.resource == "statefulsets" { 1 } else { 0 })},
            "status": {"replicas": v["status"]["replicas"].as_i64().unwrap_or(0), "selector": sel},
        })
    }

    /// PUT/PATCH deployments/{name}/scale: sets spec.replicas.
    pub async fn set_scale(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        scale: &Value,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid(
                &SCALE_INFO,
                name,
                &[skiff_api::FieldError::invalid(
                    "spec.replicas",
                    replicas,
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let expected = meta::str_at(scale, &["metadata", "resourceVersion"])
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        self.sync().await?;
        let w = self
            .guaranteed_update(r, ns, name, None, expected, opts, Vec::new(), |old| {
                let mut new = old.clone();
                meta::set(&mut new, &["spec", "replicas"], json!(replicas));
                Ok(new)
            })
            .await?;
        let rev: i64 = meta::str_at(&w.object, &["metadata", "resourceVersion"])
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let obj = Obj {
            key: String::new(),
            value: w.object.clone(),
            json: Bytes::new(),
            rev,
        };
        Ok(Self::scale_of(r, &obj))
    }
}

/// A stand-in ResourceInfo for Scale errors.
static SCALE_INFO: ResourceInfo = {
    let mut r = catalog::RESOURCES[0];
    r.group = "autoscaling";
    r.kind = "Scale";
    r.resource = "scale";
    r
};

/// Applies a patch of `kind` to `current` (in the version of `r`).
pub fn apply_patch(
    r: &ResourceInfo,
    kind: PatchType,
    current: &Value,
    patch: &Value,
) -> ApiResult<Value> {
    match kind {
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
                ApiError::bad_request(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &p)
                .map_err(|e| ApiError::unprocessable_patch(e.to_string()))?;
            Ok(doc)
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            let mut doc = current.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchType::Strategic | PatchType::Apply => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            }
            skiff_api::strategic::strategic_merge(r, current, patch)
                .map_err(|e| ApiError::bad_request(e.to_string()))
        }
    }
}

impl ApiError {
    /// 422 for a JSON patch that cannot be applied.
    pub fn unprocessable_patch(msg: String) -> Self {
        ApiError {
            code: 422,
            reason: "Invalid",
            message: msg,
            details: None,
        }
    }
}

/// The message of every eviction a disruption budget refuses.
pub const EVICTION_REFUSED: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";

/// How often an eviction retries after a conflict, as Kubernetes' `EvictionsRetry` (20 steps).
const EVICTION_ATTEMPTS: usize = 20;

/// The most pods a budget may list in `status.disruptedPods` before evictions are refused.
const MAX_DISRUPTED_PODS: usize = 2000;

impl ApiError {
    /// 429 with a `DisruptionBudget` cause, as the eviction subresource answers.
    fn too_many_requests(cause: String, retry_after: i64) -> Self {
        let mut details = json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]});
        if retry_after > 0 {
            details["retryAfterSeconds"] = json!(retry_after);
        }
        ApiError {
            code: 429,
            reason: "TooManyRequests",
            message: EVICTION_REFUSED.into(),
            details: Some(details),
        }
    }

    /// 403 about a PodDisruptionBudget.
    fn pdb_forbidden(name: &str, why: &str) -> Self {
        ApiError {
            code: 403,
            reason: "Forbidden",
            message: format!("poddisruptionbudget.policy \"{name}\" is forbidden: {why}"),
            details: Some(json!({"name": name, "group": "policy", "kind": "poddisruptionbudget"})),
        }
    }
}

fn pod_is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Terminal, pending and terminating pods are deleted without asking a budget.
fn can_ignore_pdb(pod: &Value) -> bool {
    matches!(
        meta::str_at(pod, &["status", "phase"]),
        Some("Succeeded" | "Failed" | "Pending")
    ) || meta::at(pod, &["metadata", "deletionTimestamp"]).is_some()
}

/// Whether the delete must be pinned to the resourceVersion read, so the pod
/// cannot turn Ready (and count for a budget) in between.
fn should_enforce_resource_version(pod: &Value) -> bool {
    !matches!(
        meta::str_at(pod, &["status", "phase"]),
        Some("Succeeded" | "Failed")
    ) && meta::at(pod, &["metadata", "deletionTimestamp"]).is_none()
}

/// Sets a condition as `UpdatePodCondition` / `SetStatusCondition` do: the
/// transition time moves only when the status changes. Returns whether anything changed.
pub fn set_condition(conditions: &mut Vec<Value>, mut cond: Value, now: &str) -> bool {
    let ty = cond["type"].clone();
    match conditions.iter_mut().find(|c| c["type"] == ty) {
        Some(old) => {
            let transition = if old["status"] == cond["status"] {
                old["lastTransitionTime"].clone()
            } else {
                json!(now)
            };
            cond["lastTransitionTime"] = transition;
            if let Some(p) = old.get("lastProbeTime")
                && cond.get("lastProbeTime").is_none()
            {
                cond["lastProbeTime"] = p.clone();
            }
            let changed = *old != cond;
            *old = cond;
            changed
        }
        None => {
            cond["lastTransitionTime"] = json!(now);
            conditions.push(cond);
            true
        }
    }
}

/// The `DisruptionAllowed` condition of a budget for its `disruptionsAllowed`.
fn pdb_condition(status: &mut Value, now: &str) {
    let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0) > 0;
    let cond = json!({
        "type": "DisruptionAllowed",
        "status": if allowed { "True" } else { "False" },
        "observedGeneration": status["observedGeneration"].as_i64().unwrap_or(0),
        "reason": if allowed { "SufficientPods" } else { "InsufficientPods" },
        "message": "",
    });
    let list = status
        .as_object_mut()
        .map(|m| m.entry("conditions").or_insert(json!([])));
    if let Some(Value::Array(list)) = list {
        set_condition(list, cond, now);
    }
}

impl Registry {
    /// POST pods/{name}/eviction, as kube-apiserver's `EvictionREST.Create`:
    /// the pod is deleted (after gaining the `DisruptionTarget` condition) when
    /// no PodDisruptionBudget guards it, when it need not ask (terminal, pending
    /// or terminating), when it is unhealthy and the budget lets unhealthy pods
    /// go, or when its budget has a disruption to spare (spent here, with the
    /// pod recorded in `status.disruptedPods`). Otherwise 429. Returns the
    /// `Status` to answer; its `code` is the HTTP status.
    pub async fn evict(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        eviction: &Value,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        if meta::name(eviction) != name {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Eviction object",
            ));
        }
        let success = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
        let ns_name = ns.unwrap_or("default");
        let rv_unset = opts.precondition_rv.is_none();
        // Pods that need not ask a budget go at once.
        let mut pod;
        let mut attempt = 0;
        loop {
            self.sync().await?;
            pod = self.get_cached(r, ns, name)?;
            if !can_ignore_pdb(&pod.value) {
                break;
            }
            let mut o = opts.clone();
            if should_enforce_resource_version(&pod.value) && rv_unset {
                o.precondition_rv = Some(pod.rev.to_string());
            }
            match self.disrupt_and_delete(r, ns, name, &o).await {
                Err(e) if e.code == 409 && rv_unset && attempt + 1 < EVICTION_ATTEMPTS => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(success),
            }
        }
        let pdb_r = catalog::lookup("policy", "v1", "poddisruptionbudgets").expect("served");
        let labels = &pod.value;
        let (all, _) = self.list(pdb_r, Some(ns_name), None).await?;
        let pdbs: Vec<Arc<Obj>> = all
            .into_iter()
            .filter(|p| {
                skiff_api::selector::LabelSelector::from_object(&p.value["spec"]["selector"])
                    // An empty or null selector matches nothing here, not everything.
                    .is_ok_and(|s| !s.is_empty() && s.matches_object(labels))
            })
            .collect();
        if pdbs.len() > 1 {
            return Ok(
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                "code": 500}),
            );
        }
        let mut pin_rv = false;
        let mut pdb_name = String::new();
        if let Some(pdb) = pdbs.into_iter().next() {
            pdb_name = meta::name(&pdb.value).to_string();
            let st = &pdb.value["status"];
            let unhealthy_may_go = !pod_is_ready(&pod.value)
                && (pdb.value["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
                    || (st["currentHealthy"].as_i64().unwrap_or(0)
                        >= st["desiredHealthy"].as_i64().unwrap_or(0)
                        && st["desiredHealthy"].as_i64().unwrap_or(0) > 0));
            if unhealthy_may_go {
                // Not counted as healthy: no disruption is spent, but the delete is pinned.
                pin_rv = true;
            } else {
                self.spend_disruption(pdb_r, ns_name, &pdb_name, name, opts.dry_run)
                    .await?;
            }
        }
        let mut o = opts.clone();
        if pin_rv {
            o.precondition_rv = Some(pod.rev.to_string());
        }
        match self.disrupt_and_delete(r, ns, name, &o).await {
            Err(e) if e.code == 409 && pin_rv && rv_unset => Err(ApiError::too_many_requests(
                format!("The disruption budget {pdb_name} is still being processed by the server."),
                10,
            )),
            Err(e) => Err(e),
            Ok(()) => Ok(success),
        }
    }

    /// `checkAndDecrement` with retries on conflict: spends one disruption of
    /// the budget and records the pod in `status.disruptedPods`.
    async fn spend_disruption(
        &self,
        pdb_r: &ResourceInfo,
        ns: &str,
        pdb_name: &str,
        pod_name: &str,
        dry_run: bool,
    ) -> ApiResult<()> {
        for _ in 0..EVICTION_ATTEMPTS {
            self.sync().await?;
            let pdb = self.get_cached(pdb_r, Some(ns), pdb_name)?;
            let v = &pdb.value;
            let st = &v["status"];
            let generation = v["metadata"]["generation"].as_i64().unwrap_or(0);
            if st["observedGeneration"].as_i64().unwrap_or(0) < generation {
                return Err(ApiError::too_many_requests(
                    format!(
                        "The disruption budget {pdb_name} is still being processed by the server."
                    ),
                    10,
                ));
            }
            let allowed = st["disruptionsAllowed"].as_i64().unwrap_or(0);
            if allowed < 0 {
                return Err(ApiError::pdb_forbidden(
                    pdb_name,
                    "pdb disruptions allowed is negative",
                ));
            }
            if st["disruptedPods"].as_object().map_or(0, |m| m.len()) > MAX_DISRUPTED_PODS {
                return Err(ApiError::pdb_forbidden(
                    pdb_name,
                    "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
                ));
            }
            if allowed == 0 {
                return Err(ApiError::too_many_requests(
                    format!(
                        "The disruption budget {pdb_name} needs {} healthy pods and has {} currently",
                        st["desiredHealthy"].as_i64().unwrap_or(0),
                        st["currentHealthy"].as_i64().unwrap_or(0)
                    ),
                    0,
                ));
            }
            if dry_run {
                return Ok(());
            }
            let mut new = v.clone();
            let now = now();
            let status = meta::object_at(&mut new, &["status"]);
            status.insert("disruptionsAllowed".into(), json!(allowed - 1));
            let disrupted = status.entry("disruptedPods").or_insert(json!({}));
            if !disrupted.is_object() {
                *disrupted = json!({});
            }
            disrupted[pod_name] = json!(now);
            if allowed - 1 == 0 {
                pdb_condition(&mut new["status"], &now);
            }
            let opts = WriteOptions::default();
            match self
                .guaranteed_update(
                    pdb_r,
                    Some(ns),
                    pdb_name,
                    Some("status"),
                    Some(pdb.rev.to_string()),
                    &opts,
                    Vec::new(),
                    |_| Ok(new.clone()),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.code == 409 => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiError {
            code: 504,
            reason: "Timeout",
            message: format!("couldn't update PodDisruptionBudget \"{pdb_name}\" due to conflicts"),
            details: Some(json!({"retryAfterSeconds": 10})),
        })
    }

    /// `addConditionAndDeletePod`: marks the pod `DisruptionTarget`
    /// (EvictionByEvictionAPI) under the delete's preconditions, then deletes it.
    async fn disrupt_and_delete(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<()> {
        let mut opts = opts.clone();
        if !opts.dry_run {
            let uid = opts.precondition_uid.clone();
            let w = self
                .guaranteed_update(
                    r,
                    ns,
                    name,
                    Some("status"),
                    opts.precondition_rv.clone(),
                    &WriteOptions::default(),
                    Vec::new(),
                    |old| {
                        if let Some(uid) = &uid
                            && meta::str_at(old, &["metadata", "uid"]) != Some(uid.as_str())
                        {
                            return Err(ApiError::conflict_because(
                                r,
                                name,
                                &format!(
                                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                                    meta::str_at(old, &["metadata", "uid"]).unwrap_or("")
                                ),
                            ));
                        }
                        let mut new = old.clone();
                        let list = meta::object_at(&mut new, &["status"])
                            .entry("conditions")
                            .or_insert(json!([]));
                        if let Value::Array(list) = list {
                            set_condition(
                                list,
                                json!({"type": "DisruptionTarget", "status": "True", "lastProbeTime": null,
                                       "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}),
                                &now(),
                            );
                        }
                        Ok(new)
                    },
                )
                .await?;
            if opts.precondition_rv.is_some() {
                // This update moved the resourceVersion; the delete is pinned to it.
                opts.precondition_rv =
                    meta::str_at(&w.object, &["metadata", "resourceVersion"]).map(str::to_string);
            }
        }
        self.delete(r, ns, name, &opts).await.map(|_| ())
    }
}

/// Kubernetes' StorageObjectInUseProtection admission: a new claim or volume
/// carries its protection finalizer.
fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let md = meta::object_at(obj, &["metadata"]);
    let list = md.entry("finalizers").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(a) = list.as_array_mut()
        && !a.iter().any(|f| f == finalizer)
    {
        a.push(json!(finalizer));
    }
}
