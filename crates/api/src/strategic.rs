//! Strategic merge patch for the built-in kinds, as the Kubernetes apiserver
//! applies `application/strategic-merge-patch+json`.
//!
//! # Layout
//! - [`strategic_merge`]: applies a patch to an object of one catalogue kind.
//! - [`field_patch`] and the `TABLE` behind it: the `patchStrategy` /
//!   `patchMergeKey` facts of the Go API types, keyed by OpenAPI definition name.
//! - `Ctx`: walks the kind's JSON schema (from k8s-openapi's `JsonSchema`
//!   impls) so every nested field knows its definition, and thus its strategy.
//! - The merge itself: maps merge recursively, lists merge by key or are
//!   replaced, and the directives `$patch`, `$retainKeys`,
//!   `$setElementOrder/<field>` and `$deleteFromPrimitiveList/<field>` are
//!   honoured and never appear in the result.
//!
//! List order follows Kubernetes: items named in the patch keep the patch's
//! order, items only on the server keep theirs, and the two are interleaved
//! by their position in the live list (so a new item goes before the server's
//! items it is not ordered against).

use crate::catalog::{RESOURCES, ResourceInfo};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

type Obj = Map<String, Value>;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList";

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch is malformed; the message is Kubernetes' wording.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> PatchError {
    PatchError::Invalid(msg.into())
}

/// Patch metadata of one field of one API type, as Kubernetes' Go struct tags give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPatch {
    /// `patchStrategy`: `"merge"`, `"retainKeys"`, `"merge,retainKeys"` or `"replace"`.
    pub strategy: &'static str,
    /// `patchMergeKey`, for merged lists of objects.
    pub merge_key: Option<&'static str>,
}

const CORE: &str = "io.k8s.api.core.v1.";

/// `(definition, field, patchStrategy, patchMergeKey)` for every tagged field
/// of the served types (Kubernetes v1.33 Go struct tags).
const TABLE: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "merge",
        None,
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "merge",
        Some("uid"),
    ),
    // core/v1
    ("PodSpec", "volumes", "merge,retainKeys", Some("name")),
    ("PodSpec", "initContainers", "merge", Some("name")),
    ("PodSpec", "containers", "merge", Some("name")),
    ("PodSpec", "ephemeralContainers", "merge", Some("name")),
    ("PodSpec", "imagePullSecrets", "merge", Some("name")),
    ("PodSpec", "hostAliases", "merge", Some("ip")),
    (
        "PodSpec",
        "topologySpreadConstraints",
        "merge",
        Some("topologyKey"),
    ),
    ("PodSpec", "schedulingGates", "merge", Some("name")),
    (
        "PodSpec",
        "resourceClaims",
        "merge,retainKeys",
        Some("name"),
    ),
    ("Container", "ports", "merge", Some("containerPort")),
    ("Container", "env", "merge", Some("name")),
    ("Container", "volumeMounts", "merge", Some("mountPath")),
    ("Container", "volumeDevices", "merge", Some("devicePath")),
    (
        "EphemeralContainer",
        "ports",
        "merge",
        Some("containerPort"),
    ),
    ("EphemeralContainer", "env", "merge", Some("name")),
    (
        "EphemeralContainer",
        "volumeMounts",
        "merge",
        Some("mountPath"),
    ),
    (
        "EphemeralContainer",
        "volumeDevices",
        "merge",
        Some("devicePath"),
    ),
    (
        "ContainerStatus",
        "allocatedResourcesStatus",
        "merge",
        Some("name"),
    ),
    ("PodStatus", "conditions", "merge", Some("type")),
    ("PodStatus", "podIPs", "merge", Some("ip")),
    ("PodStatus", "hostIPs", "merge", Some("ip")),
    (
        "PodStatus",
        "resourceClaimStatuses",
        "merge,retainKeys",
        Some("name"),
    ),
    ("NodeSpec", "podCIDRs", "merge", None),
    ("NodeStatus", "conditions", "merge", Some("type")),
    ("NodeStatus", "addresses", "merge", Some("type")),
    ("NamespaceStatus", "conditions", "merge", Some("type")),
    (
        "PersistentVolumeClaimStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    ("ServiceSpec", "ports", "merge", Some("port")),
    ("ServiceStatus", "conditions", "merge", Some("type")),
    ("ServiceAccount", "secrets", "merge", Some("name")),
    // other groups
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        "retainKeys",
        None,
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.batch.v1.JobStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.policy.v1.PodDisruptionBudgetSpec",
        "selector",
        "replace",
        None,
    ),
    (
        "io.k8s.api.policy.v1.PodDisruptionBudgetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
];

/// The patch strategy and merge key of `field` of the OpenAPI definition
/// `definition` (e.g. `"io.k8s.api.core.v1.PodSpec"`, `"containers"`), or
/// `None` when the Go field carries no patch tags.
pub fn field_patch(definition: &str, field: &str) -> Option<FieldPatch> {
    let short = definition.strip_prefix(CORE);
    TABLE
        .iter()
        .find(|(d, f, _, _)| {
            *f == field
                && if d.starts_with("io.") {
                    *d == definition
                } else {
                    Some(*d) == short
                }
        })
        .map(|(_, _, strategy, merge_key)| FieldPatch {
            strategy,
            merge_key: *merge_key,
        })
}

/// The strategy that governs merging, with `retainKeys` (which only tells
/// clients to send `$retainKeys`) taken out.
fn merge_strategy(fp: Option<FieldPatch>) -> &'static str {
    match fp {
        Some(fp) => fp
            .strategy
            .split(',')
            .find(|s| *s != "retainKeys")
            .unwrap_or(""),
        None => "",
    }
}

// ---------------------------------------------------------------------------
// Schema navigation

/// The JSON schema definitions of every served kind, and each kind's root definition.
struct Schemas {
    defs: Obj,
    roots: HashMap<String, String>,
}

fn kind_key(r: &ResourceInfo) -> String {
    format!("{}/{}/{}", r.group, r.version, r.kind)
}

fn ref_name(v: &Value) -> Option<&str> {
    v.get("$ref")?.as_str()?.rsplit('/').next()
}

impl Schemas {
    fn build<'r>(kinds: impl IntoIterator<Item = &'r ResourceInfo>) -> Schemas {
        let mut generator = schemars::SchemaGenerator::default();
        let mut roots = HashMap::new();
        for r in kinds {
            let schema = (r.schema)(&mut generator);
            if let Some(name) = ref_name(schema.as_value()) {
                roots.insert(kind_key(r), name.to_string());
            }
        }
        Schemas {
            defs: generator.take_definitions(false),
            roots,
        }
    }

    fn root(&self, r: &ResourceInfo) -> Option<Ctx<'_>> {
        let name = self.roots.get(&kind_key(r))?;
        Some(Ctx {
            defs: &self.defs,
            def: Some(name),
            schema: self.defs.get(name),
        })
    }
}

/// The schemas of every catalogue kind, built once.
fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| Schemas::build(RESOURCES))
}

/// Where in the type tree a value sits: its definition (if it is a named
/// type) and its schema (if known). Unknown places merge maps and replace lists.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    defs: &'a Obj,
    def: Option<&'a str>,
    schema: Option<&'a Value>,
}

impl<'a> Ctx<'a> {
    fn unknown(&self) -> Ctx<'a> {
        Ctx {
            defs: self.defs,
            def: None,
            schema: None,
        }
    }

    fn resolve(&self, v: &'a Value) -> Ctx<'a> {
        match ref_name(v) {
            Some(name) => Ctx {
                defs: self.defs,
                def: Some(name),
                schema: self.defs.get(name),
            },
            None => Ctx {
                defs: self.defs,
                def: None,
                schema: Some(v),
            },
        }
    }

    /// The place of `field` inside this object, with the field's patch tags.
    fn field(&self, field: &str) -> (Ctx<'a>, Option<FieldPatch>) {
        let Some(schema) = self.schema else {
            return (self.unknown(), None);
        };
        if let Some(prop) = schema.get("properties").and_then(|p| p.get(field)) {
            let fp = self.def.and_then(|d| field_patch(d, field));
            return (self.resolve(prop), fp);
        }
        match schema.get("additionalProperties") {
            Some(ap @ Value::Object(_)) => (self.resolve(ap), None),
            _ => (self.unknown(), None),
        }
    }

    /// The place of the items of this list.
    fn items(&self) -> Ctx<'a> {
        match self.schema.and_then(|s| s.get("items")) {
            Some(items) => self.resolve(items),
            None => self.unknown(),
        }
    }

    /// Go's kind name of this place, for the "cannot merge lists" message.
    fn go_kind(&self) -> &'static str {
        match self
            .schema
            .and_then(|s| s.get("type"))
            .and_then(Value::as_str)
        {
            Some("string") => "string",
            Some("integer") => "int",
            Some("boolean") => "bool",
            Some("array") => "slice",
            _ => "struct",
        }
    }
}

// ---------------------------------------------------------------------------
// Go-style rendering for error messages

/// Renders a JSON value as Go's `%v` renders the decoded `interface{}`.
fn go_fmt(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => go_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_fmt).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_fmt(&m[k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`).
fn go_float(f: f64) -> String {
    if f == 0.0 || !f.is_finite() {
        return f.to_string();
    }
    let exp = f.abs().log10().floor() as i32;
    if (-4..21).contains(&exp) {
        f.to_string()
    } else {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((mantissa, e)) => {
                let e: i32 = e.parse().unwrap_or(0);
                let sign = if e < 0 { '-' } else { '+' };
                format!("{mantissa}e{sign}{:02}", e.abs())
            }
            None => s,
        }
    }
}

/// Go's type name of a decoded JSON value.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn err_no_merge_key(m: &Value, key: &str) -> PatchError {
    invalid(format!(
        "map: {} does not contain declared merge key: {key}",
        go_fmt(m)
    ))
}

fn err_no_merge_key_obj(m: &Obj, key: &str) -> PatchError {
    err_no_merge_key(&Value::Object(m.clone()), key)
}

fn err_bad_patch_type(t: &Value, m: &Obj) -> PatchError {
    invalid(format!(
        "unknown patch type: {} in map: {}",
        go_fmt(t),
        go_fmt(&Value::Object(m.clone()))
    ))
}

fn err_bad_arg_type(expected: &str, actual: &Value) -> PatchError {
    invalid(format!(
        "expected a {expected}, but received a {}",
        go_type(actual)
    ))
}

const ERR_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const ERR_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const ERR_SET_ORDER: &str = "invalid patch format of setElementOrder list";

// ---------------------------------------------------------------------------
// Directive removal

fn is_directive_key(k: &str) -> bool {
    k == DIRECTIVE
        || k == RETAIN_KEYS
        || k.starts_with(SET_ORDER)
        || k.starts_with(DELETE_PRIMITIVE)
}

/// Prepares a patch value taken whole (the original has no such field, or one
/// of another type): nulls are dropped, and a map carrying `$patch` is dropped
/// entirely, as Kubernetes does. Other directive keys are removed too.
fn take_whole(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            let mut out = Obj::new();
            for (k, v) in m {
                if v.is_null() || is_directive_key(&k) {
                    continue;
                }
                if let Some(v) = take_whole(v) {
                    out.insert(k, v);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(take_whole).collect(),
        )),
        other => Some(other),
    }
}

/// Removes directive keys and nulls from a value that replaces or joins the
/// original (a replaced list, an appended list item, a `$patch: replace` map).
/// Kubernetes leaves these keys for the typed decode to drop; the effect is the same.
fn strip(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_obj(m)),
        Value::Array(items) => Value::Array(items.into_iter().map(strip).collect()),
        other => other,
    }
}

fn strip_obj(m: Obj) -> Obj {
    m.into_iter()
        .filter(|(k, v)| !v.is_null() && !is_directive_key(k))
        .map(|(k, v)| (k, strip(v)))
        .collect()
}

// ---------------------------------------------------------------------------
// The merge

/// Applies the strategic merge patch `patch` to `original`, an object of the
/// kind `r`, and returns the patched object.
///
/// Fails with Kubernetes' message when the patch is malformed: a merge-keyed
/// list item without its key, an unknown `$patch`, a `$retainKeys` list that
/// does not name every patched field, a `$setElementOrder` list that
/// disagrees with the patch list, and so on.
pub fn strategic_merge(
    r: &ResourceInfo,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let patch = match patch {
        Value::Object(p) => p.clone(),
        Value::Null => return Ok(original.clone()),
        other => {
            return Err(invalid(format!(
                "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                json_kind(other)
            )));
        }
    };
    let original = match original {
        Value::Object(o) => o.clone(),
        Value::Null => Obj::new(),
        other => return Err(err_bad_arg_type("map[string]interface {}", other)),
    };
    let merged = match schemas().root(r) {
        Some(ctx) => merge_map(original, patch, ctx)?,
        None => {
            // A kind outside the catalogue: build its schema on the spot.
            let own = Schemas::build([r]);
            let ctx = own.root(r).unwrap_or(Ctx {
                defs: &own.defs,
                def: None,
                schema: None,
            });
            merge_map(original, patch, ctx)?
        }
    };
    Ok(Value::Object(merged))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn same_type(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Splits `$prefix/field` into `field`.
fn extract_key<'k>(key: &'k str, prefix: &str) -> Result<&'k str, PatchError> {
    match key.split_once('/') {
        Some((p, rest)) if p == prefix => Ok(rest),
        _ if prefix == DELETE_PRIMITIVE => Err(invalid(ERR_PRIMITIVE_LIST)),
        _ => Err(invalid(ERR_SET_ORDER)),
    }
}

fn merge_map(mut original: Obj, mut patch: Obj, ctx: Ctx<'_>) -> Result<Obj, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.shift_remove(DIRECTIVE);
                Ok(strip_obj(patch))
            }
            Some("delete") => Ok(Obj::new()),
            _ => Err(err_bad_patch_type(directive, &patch)),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    apply_set_element_order(&mut original, &mut patch, ctx)?;

    for (k, patch_value) in patch {
        let (key, is_delete_list) = if k.starts_with(DELETE_PRIMITIVE) {
            (extract_key(&k, DELETE_PRIMITIVE)?.to_string(), true)
        } else {
            (k, false)
        };
        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let Some(slot) = original.get_mut(&key) else {
            if !is_delete_list && let Some(v) = take_whole(patch_value) {
                original.insert(key, v);
            }
            continue;
        };
        if !same_type(slot, &patch_value) {
            if !is_delete_list {
                match take_whole(patch_value) {
                    Some(v) => *slot = v,
                    None => {
                        original.shift_remove(&key);
                    }
                }
            }
            continue;
        }
        let (child, fp) = ctx.field(&key);
        let strategy = merge_strategy(fp);
        let merged = match (slot.take(), patch_value) {
            (Value::Object(o), Value::Object(p)) => {
                if strategy == "replace" {
                    Value::Object(strip_obj(p))
                } else {
                    Value::Object(merge_map(o, p, child)?)
                }
            }
            (Value::Array(o), Value::Array(p)) => {
                if strategy == "merge" {
                    let merge_key = fp.and_then(|f| f.merge_key);
                    Value::Array(merge_list(o, p, child.items(), merge_key, is_delete_list)?)
                } else {
                    strip(Value::Array(p))
                }
            }
            (_, p) => p,
        };
        *slot = merged;
    }
    Ok(original)
}

/// `$retainKeys`: drops every original field the list does not name, after
/// checking that the patch sets no field outside the list.
fn apply_retain_keys(original: &mut Obj, patch: &mut Obj) -> Result<(), PatchError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(invalid(ERR_RETAIN_KEYS));
    };
    let named = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_PRIMITIVE) || k.starts_with(SET_ORDER) {
            continue;
        }
        if !named(k) {
            return Err(invalid(ERR_RETAIN_KEYS));
        }
    }
    original.retain(|k, _| named(k));
    Ok(())
}

/// `$setElementOrder/<field>`: merges `<field>` now and orders the result as
/// the directive lists it, keeping server-only items near their old neighbours.
fn apply_set_element_order(
    original: &mut Obj,
    patch: &mut Obj,
    ctx: Ctx<'_>,
) -> Result<(), PatchError> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ORDER))
        .cloned()
        .collect();
    for key in keys {
        let order = patch.shift_remove(&key).unwrap_or(Value::Null);
        let Value::Array(order) = order else {
            return Err(err_bad_arg_type("[]interface {}", &order));
        };
        let field = extract_key(&key, SET_ORDER)?.to_string();
        let original_list = match original.get(&field) {
            None => None,
            Some(Value::Array(l)) => Some(l.clone()),
            Some(other) => return Err(err_bad_arg_type("[]interface {}", other)),
        };
        let patch_list = match patch.get(&field) {
            None => None,
            Some(Value::Array(l)) => Some(l.clone()),
            Some(other) => return Err(err_bad_arg_type("[]interface {}", other)),
        };
        let (child, fp) = ctx.field(&field);
        let merge_key = fp.and_then(|f| f.merge_key);
        let is_merge = merge_strategy(fp) == "merge";
        validate_set_order(patch_list.as_deref().unwrap_or(&[]), &order, merge_key)?;

        let merged = match (&original_list, patch_list) {
            (Some(o), None) => o.clone(),
            (o, Some(p)) if is_merge => merge_list(
                o.clone().unwrap_or_default(),
                p,
                child.items(),
                merge_key,
                false,
            )?,
            (_, Some(p)) => p.into_iter().map(strip).collect(),
            (None, None) => continue,
        };
        let original_list = original_list.unwrap_or_default();
        // Maps are ordered by merge key; anything else (scalars, or maps of a
        // list without a merge key) by whole value.
        let is_map = merge_key.is_some()
            && merged
                .iter()
                .chain(original_list.iter())
                .next()
                .is_some_and(Value::is_object);
        let key_for_maps = if is_map { merge_key } else { None };
        let (in_order, server_only) = partition(merged, &order, key_for_maps)?;
        let ordered = normalize_order(
            in_order,
            server_only,
            &order,
            &original_list,
            key_for_maps,
            is_map,
        )?;
        original.insert(field.clone(), Value::Array(ordered));
        patch.shift_remove(&field);
    }
    Ok(())
}

/// Checks that the patch list's items appear in the `$setElementOrder` list,
/// in the same relative order (deletions aside).
fn validate_set_order(
    patch_list: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), PatchError> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let kept: Vec<&Value> = match merge_key {
        Some(_) => {
            let mut kept = Vec::new();
            for item in patch_list {
                let Value::Object(m) = item else {
                    return Err(err_bad_arg_type("map[string]interface {}", item));
                };
                if m.get(DIRECTIVE).and_then(Value::as_str) != Some("delete") {
                    kept.push(item);
                }
            }
            kept
        }
        None => patch_list.iter().collect(),
    };
    let (mut pi, mut oi) = (0, 0);
    while pi < kept.len() && oi < order.len() {
        if kept[pi].get(DIRECTIVE).is_some() {
            pi += 1;
            continue;
        }
        if merge_key_equal(kept[pi], &order[oi], merge_key)? {
            pi += 1;
        }
        oi += 1;
    }
    if pi < kept.len() && oi >= order.len() {
        return Err(invalid(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ORDER} list:\n{}\n",
            go_fmt(&Value::Array(patch_list.to_vec())),
            go_fmt(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

fn merge_key_equal(a: &Value, b: &Value, merge_key: Option<&str>) -> Result<bool, PatchError> {
    let Some(key) = merge_key else {
        return Ok(a == b);
    };
    let (Value::Object(ma), Value::Object(mb)) = (a, b) else {
        let bad = if a.is_object() { b } else { a };
        return Err(err_bad_arg_type("map[string]interface {}", bad));
    };
    let ka = ma.get(key).ok_or_else(|| err_no_merge_key(a, key))?;
    let kb = mb.get(key).ok_or_else(|| err_no_merge_key(b, key))?;
    Ok(ka == kb)
}

/// Whether list items are maps (else scalars); errors on mixed types and lists of lists.
fn element_is_map(original: &[Value], patch: &[Value]) -> Result<bool, PatchError> {
    let mut first: Option<&Value> = None;
    for v in original.iter().chain(patch) {
        match first {
            None => {
                if v.is_array() {
                    return Err(invalid("lists of lists are not supported"));
                }
                first = Some(v);
            }
            Some(f) if !same_type(f, v) => {
                return Err(invalid(format!(
                    "list element types are not identical: [{} {}]",
                    go_fmt(&Value::Array(original.to_vec())),
                    go_fmt(&Value::Array(patch.to_vec()))
                )));
            }
            Some(_) => {}
        }
    }
    Ok(first.is_some_and(Value::is_object))
}

/// Merges a list with patch strategy `merge`.
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    items: Ctx<'_>,
    merge_key: Option<&str>,
    is_delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let is_map = element_is_map(&original, &patch)?;
    if !is_map {
        if is_delete_list {
            return Ok(original
                .into_iter()
                .filter(|v| !patch.contains(v))
                .collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(patch.iter()) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        let (in_patch, server_only) = partition(merged, &patch, None)?;
        return normalize_order(in_patch, server_only, &patch, &original, None, false);
    }

    let Some(key) = merge_key.filter(|k| !k.is_empty()) else {
        return Err(invalid(format!(
            "cannot merge lists without merge key for type {}",
            items.go_kind()
        )));
    };
    let (server, patch) = apply_special_items(original, patch, key)?;
    let mut merged = server.clone();
    for item in &patch {
        let value = item.get(key).ok_or_else(|| err_no_merge_key(item, key))?;
        let found = find_by_key(&merged, key, value)?;
        let Value::Object(p) = item.clone() else {
            unreachable!("element_is_map checked every item")
        };
        match found {
            Some(i) => {
                let Value::Object(o) = merged[i].take() else {
                    unreachable!("find_by_key only matches maps")
                };
                merged[i] = Value::Object(merge_map(o, p, items)?);
            }
            None => merged.push(Value::Object(strip_obj(p))),
        }
    }
    let (in_patch, server_only) = partition(merged, &patch, Some(key))?;
    normalize_order(in_patch, server_only, &patch, &server, Some(key), true)
}

/// Handles `$patch` items of a merge-keyed list: `delete` removes the matching
/// items, `replace` makes the other patch items the whole list. Returns the
/// server list to merge into and the remaining patch items.
fn apply_special_items(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let value = item.get(key).ok_or_else(|| err_no_merge_key(&item, key))?;
                while let Some(i) = find_by_key(&original, key, value)? {
                    original.remove(i);
                }
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(invalid(
                    "merging lists cannot yet be specified in the patch",
                ));
            }
            _ => {
                let Value::Object(m) = &item else {
                    unreachable!("element_is_map checked every item")
                };
                return Err(err_bad_patch_type(directive, m));
            }
        }
    }
    if replace {
        return Ok((plain.into_iter().map(strip).collect(), Vec::new()));
    }
    Ok((original, plain))
}

/// Index of the first map in `list` whose `key` equals `value`.
fn find_by_key(list: &[Value], key: &str, value: &Value) -> Result<Option<usize>, PatchError> {
    for (i, v) in list.iter().enumerate() {
        let Value::Object(m) = v else {
            return Err(invalid(format!("value for key {i} is not a map.")));
        };
        if m.get(key) == Some(value) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Splits `items` into those present in `by` and those not.
fn partition(
    items: Vec<Value>,
    by: &[Value],
    merge_key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for item in items {
        let found = match merge_key {
            None => by.contains(&item),
            Some(key) => {
                let Value::Object(m) = &item else {
                    return Err(err_bad_arg_type("map[string]interface {}", &item));
                };
                let value = m.get(key).ok_or_else(|| err_no_merge_key_obj(m, key))?;
                find_by_key(by, key, value)?.is_some()
            }
        };
        if found {
            present.push(item);
        } else {
            absent.push(item);
        }
    }
    Ok((present, absent))
}

/// Position of `item` in `list`: by merge key for maps, by value otherwise.
fn index_of(list: &[Value], item: &Value, merge_key: Option<&str>, is_map: bool) -> Option<usize> {
    if is_map {
        let key = merge_key.unwrap_or_default();
        let want = item.get(key);
        list.iter().position(|v| v.get(key) == want)
    } else {
        list.iter().position(|v| v == item)
    }
}

/// Sorts `patch_items` by `patch_order` and `server_only` by `server_order`,
/// then interleaves them: a server-only item goes first only when it stood
/// before the patch item in the live list.
fn normalize_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
    is_map: bool,
) -> Result<Vec<Value>, PatchError> {
    let patch_items = sort_by_order(patch_items, patch_order, merge_key, is_map)?;
    let server_only = sort_by_order(server_only, server_order, merge_key, is_map)?;

    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                match (
                    index_of(server_order, l, merge_key, is_map),
                    index_of(server_order, r, merge_key, is_map),
                ) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

fn sort_by_order(
    items: Vec<Value>,
    order: &[Value],
    merge_key: Option<&str>,
    is_map: bool,
) -> Result<Vec<Value>, PatchError> {
    let mut deletes = Vec::new();
    let mut keep = Vec::with_capacity(items.len());
    if is_map {
        let key = merge_key.unwrap_or_default();
        for v in items.iter().chain(order) {
            let Value::Object(m) = v else {
                return Err(err_bad_arg_type("map[string]interface {}", v));
            };
            if !m.contains_key(key) {
                return Err(err_no_merge_key(v, key));
            }
        }
        for v in items {
            if v.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                deletes.push(v);
            } else {
                keep.push(v);
            }
        }
    } else {
        keep = items;
    }
    keep.sort_by_key(|v| index_of(order, v, merge_key, is_map).unwrap_or(usize::MAX));
    keep.extend(deletes);
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::lookup;
    use serde_json::json;

    fn res(group: &str, resource: &str) -> &'static ResourceInfo {
        let version = match group {
            "autoscaling" => "v2",
            _ => "v1",
        };
        lookup(group, version, resource).expect("served resource")
    }

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    }

    struct Case {
        name: &'static str,
        group: &'static str,
        resource: &'static str,
        original: Value,
        patch: Value,
        want: Value,
    }

    fn cases() -> Vec<Case> {
        let two = pod(json!({"containers": [
            {"name": "a", "image": "a:1", "args": ["x", "y"]},
            {"name": "b", "image": "b:1"}
        ]}));
        vec![
            Case {
                name: "change one container's image by name",
                group: "",
                resource: "pods",
                original: two.clone(),
                patch: json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}}),
                want: pod(json!({"containers": [
                    {"name": "a", "image": "a:1", "args": ["x", "y"]},
                    {"name": "b", "image": "b:2"}
                ]})),
            },
            Case {
                name: "add a container goes before unordered server items",
                group: "",
                resource: "pods",
                original: two.clone(),
                patch: json!({"spec": {"containers": [{"name": "c", "image": "c:1"}]}}),
                want: pod(json!({"containers": [
                    {"name": "c", "image": "c:1"},
                    {"name": "a", "image": "a:1", "args": ["x", "y"]},
                    {"name": "b", "image": "b:1"}
                ]})),
            },
            Case {
                name: "delete a container with $patch delete",
                group: "",
                resource: "pods",
                original: two.clone(),
                patch: json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
                want: pod(json!({"containers": [{"name": "b", "image": "b:1"}]})),
            },
            Case {
                name: "env merges by name",
                group: "",
                resource: "pods",
                original: pod(json!({"containers": [{"name": "a", "env": [
                    {"name": "A", "value": "1"}, {"name": "B", "value": "2"}
                ]}]})),
                patch: json!({"spec": {"containers": [{"name": "a", "env": [
                    {"name": "B", "value": "3"}, {"name": "C", "value": "4"}
                ]}]}}),
                want: pod(json!({"containers": [{"name": "a", "env": [
                    {"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}
                ]}]})),
            },
            Case {
                name: "ports merge by containerPort",
                group: "",
                resource: "pods",
                original: pod(json!({"containers": [{"name": "a", "ports": [
                    {"containerPort": 80, "name": "http"}, {"containerPort": 443}
                ]}]})),
                patch: json!({"spec": {"containers": [{"name": "a", "ports": [
                    {"containerPort": 80, "name": "web"}
                ]}]}}),
                want: pod(json!({"containers": [{"name": "a", "ports": [
                    {"containerPort": 80, "name": "web"}, {"containerPort": 443}
                ]}]})),
            },
            Case {
                name: "volumeMounts merge by mountPath",
                group: "",
                resource: "pods",
                original: pod(json!({"containers": [{"name": "a", "volumeMounts": [
                    {"name": "v", "mountPath": "/data"}
                ]}]})),
                patch: json!({"spec": {"containers": [{"name": "a", "volumeMounts": [
                    {"mountPath": "/data", "readOnly": true}
                ]}]}}),
                want: pod(json!({"containers": [{"name": "a", "volumeMounts": [
                    {"name": "v", "mountPath": "/data", "readOnly": true}
                ]}]})),
            },
            Case {
                name: "finalizers union keeps known items in place",
                group: "",
                resource: "configmaps",
                original: json!({"metadata": {"name": "c", "finalizers": ["a", "b"]}}),
                patch: json!({"metadata": {"finalizers": ["b", "c"]}}),
                want: json!({"metadata": {"name": "c", "finalizers": ["a", "b", "c"]}}),
            },
            Case {
                name: "finalizers union puts unordered new items first",
                group: "",
                resource: "configmaps",
                original: json!({"metadata": {"name": "c", "finalizers": ["a", "b"]}}),
                patch: json!({"metadata": {"finalizers": ["c"]}}),
                want: json!({"metadata": {"name": "c", "finalizers": ["c", "a", "b"]}}),
            },
            Case {
                name: "finalizers $deleteFromPrimitiveList",
                group: "",
                resource: "configmaps",
                original: json!({"metadata": {"name": "c", "finalizers": ["a", "b", "c"]}}),
                patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
                want: json!({"metadata": {"name": "c", "finalizers": ["a", "c"]}}),
            },
            Case {
                name: "$deleteFromPrimitiveList on an absent list adds nothing",
                group: "",
                resource: "configmaps",
                original: json!({"metadata": {"name": "c"}}),
                patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
                want: json!({"metadata": {"name": "c"}}),
            },
            Case {
                name: "null deletes a label, other labels stay",
                group: "",
                resource: "configmaps",
                original: json!({"metadata": {"name": "c", "labels": {"a": "1", "b": "2"}}}),
                patch: json!({"metadata": {"labels": {"a": null, "c": "3"}}}),
                want: json!({"metadata": {"name": "c", "labels": {"b": "2", "c": "3"}}}),
            },
            Case {
                name: "$patch replace on a map",
                group: "",
                resource: "configmaps",
                original: json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}),
                patch: json!({"data": {"$patch": "replace", "z": "9"}}),
                want: json!({"metadata": {"name": "c"}, "data": {"z": "9"}}),
            },
            Case {
                name: "$patch replace on a list",
                group: "",
                resource: "pods",
                original: two.clone(),
                patch: json!({"spec": {"containers": [
                    {"$patch": "replace"}, {"name": "z", "image": "z:1"}
                ]}}),
                want: pod(json!({"containers": [{"name": "z", "image": "z:1"}]})),
            },
            Case {
                name: "$retainKeys switches a volume from emptyDir to hostPath",
                group: "",
                resource: "pods",
                original: pod(json!({"volumes": [{"name": "v", "emptyDir": {}}]})),
                patch: json!({"spec": {"volumes": [{
                    "name": "v", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/x"}
                }]}}),
                want: pod(json!({"volumes": [{"name": "v", "hostPath": {"path": "/x"}}]})),
            },
            Case {
                name: "$setElementOrder reorders containers",
                group: "",
                resource: "pods",
                original: two.clone(),
                patch: json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}),
                want: pod(json!({"containers": [
                    {"name": "b", "image": "b:1"},
                    {"name": "a", "image": "a:1", "args": ["x", "y"]}
                ]})),
            },
            Case {
                name: "tolerations have no strategy and are replaced",
                group: "",
                resource: "pods",
                original: pod(json!({"tolerations": [
                    {"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}
                ]})),
                patch: json!({"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}}),
                want: pod(json!({"tolerations": [{"key": "c", "operator": "Exists"}]})),
            },
            Case {
                name: "args are replaced",
                group: "",
                resource: "pods",
                original: two.clone(),
                patch: json!({"spec": {"containers": [{"name": "a", "args": ["z"]}]}}),
                want: pod(json!({"containers": [
                    {"name": "a", "image": "a:1", "args": ["z"]},
                    {"name": "b", "image": "b:1"}
                ]})),
            },
            Case {
                name: "pod status conditions merge by type",
                group: "",
                resource: "pods",
                original: json!({"status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}
                ]}}),
                patch: json!({"status": {"conditions": [
                    {"type": "Ready", "status": "True"}
                ]}}),
                want: json!({"status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}
                ]}}),
            },
            Case {
                name: "kubectl apply patch with last-applied and $setElementOrder",
                group: "apps",
                resource: "deployments",
                original: json!({
                    "metadata": {"name": "d", "annotations": {
                        "kubectl.kubernetes.io/last-applied-configuration": "old",
                        "deployment.kubernetes.io/revision": "1"
                    }},
                    "spec": {"replicas": 1, "template": {"spec": {"containers": [
                        {"name": "web", "image": "nginx:1", "imagePullPolicy": "IfNotPresent"},
                        {"name": "side", "image": "busybox"}
                    ]}}}
                }),
                patch: json!({
                    "metadata": {"annotations": {
                        "kubectl.kubernetes.io/last-applied-configuration": "new"
                    }},
                    "spec": {"template": {"spec": {
                        "$setElementOrder/containers": [{"name": "web"}, {"name": "side"}],
                        "containers": [{"image": "nginx:2", "name": "web"}]
                    }}}
                }),
                want: json!({
                    "metadata": {"name": "d", "annotations": {
                        "kubectl.kubernetes.io/last-applied-configuration": "new",
                        "deployment.kubernetes.io/revision": "1"
                    }},
                    "spec": {"replicas": 1, "template": {"spec": {"containers": [
                        {"name": "web", "image": "nginx:2", "imagePullPolicy": "IfNotPresent"},
                        {"name": "side", "image": "busybox"}
                    ]}}}
                }),
            },
            Case {
                name: "kubectl apply adds a container in the declared position",
                group: "apps",
                resource: "deployments",
                original: json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "a", "image": "a"}, {"name": "c", "image": "c"}
                ]}}}}),
                patch: json!({"spec": {"template": {"spec": {
                    "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
                    "containers": [{"name": "b", "image": "b"}]
                }}}}),
                want: json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "a", "image": "a"}, {"name": "b", "image": "b"}, {"name": "c", "image": "c"}
                ]}}}}),
            },
            Case {
                name: "$setElementOrder on a list without merge key orders by value",
                group: "",
                resource: "pods",
                original: pod(json!({"tolerations": [{"key": "a"}, {"key": "b"}]})),
                patch: json!({"spec": {"$setElementOrder/tolerations": [{"key": "b"}, {"key": "a"}]}}),
                want: pod(json!({"tolerations": [{"key": "b"}, {"key": "a"}]})),
            },
            Case {
                name: "unknown fields' lists are replaced",
                group: "",
                resource: "pods",
                original: json!({"spec": {"bogus": [{"name": "a", "x": 1}]}}),
                patch: json!({"spec": {"bogus": [{"name": "a", "y": 2}]}}),
                want: json!({"spec": {"bogus": [{"name": "a", "y": 2}]}}),
            },
            Case {
                name: "deployment strategy $retainKeys drops rollingUpdate",
                group: "apps",
                resource: "deployments",
                original: json!({"spec": {"strategy": {
                    "type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}
                }}}),
                patch: json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
                want: json!({"spec": {"strategy": {"type": "Recreate"}}}),
            },
            Case {
                name: "node status addresses merge by type",
                group: "",
                resource: "nodes",
                original: json!({"status": {"addresses": [
                    {"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n"}
                ]}}),
                patch: json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}}),
                want: json!({"status": {"addresses": [
                    {"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "n"}
                ]}}),
            },
            Case {
                name: "service ports merge by port",
                group: "",
                resource: "services",
                original: json!({"spec": {"ports": [
                    {"port": 80, "targetPort": 8080, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}
                ]}}),
                patch: json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
                want: json!({"spec": {"ports": [
                    {"port": 80, "targetPort": 9090, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}
                ]}}),
            },
            Case {
                name: "ownerReferences merge by uid",
                group: "",
                resource: "configmaps",
                original: json!({"metadata": {"ownerReferences": [
                    {"uid": "1", "kind": "A", "name": "a"}
                ]}}),
                patch: json!({"metadata": {"ownerReferences": [
                    {"uid": "1", "controller": true}, {"uid": "2", "kind": "B", "name": "b"}
                ]}}),
                want: json!({"metadata": {"ownerReferences": [
                    {"uid": "1", "kind": "A", "name": "a", "controller": true},
                    {"uid": "2", "kind": "B", "name": "b"}
                ]}}),
            },
            Case {
                name: "pdb selector has strategy replace",
                group: "policy",
                resource: "poddisruptionbudgets",
                original: json!({"spec": {"selector": {"matchLabels": {"a": "1"}}}}),
                patch: json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
                want: json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
            },
            Case {
                name: "job status conditions merge by type",
                group: "batch",
                resource: "jobs",
                original: json!({"status": {"conditions": [{"type": "Suspended", "status": "True"}]}}),
                patch: json!({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}),
                want: json!({"status": {"conditions": [
                    {"type": "Complete", "status": "True"}, {"type": "Suspended", "status": "True"}
                ]}}),
            },
            Case {
                name: "hpa v2 status conditions merge by type",
                group: "autoscaling",
                resource: "horizontalpodautoscalers",
                original: json!({"status": {"conditions": [
                    {"type": "AbleToScale", "status": "True"}, {"type": "ScalingActive", "status": "False"}
                ]}}),
                patch: json!({"status": {"conditions": [{"type": "ScalingActive", "status": "True"}]}}),
                want: json!({"status": {"conditions": [
                    {"type": "AbleToScale", "status": "True"}, {"type": "ScalingActive", "status": "True"}
                ]}}),
            },
            Case {
                name: "directives are removed from a field the original lacks",
                group: "",
                resource: "pods",
                original: pod(json!({})),
                patch: json!({"spec": {"volumes": [
                    {"name": "v", "$retainKeys": ["name", "emptyDir"], "emptyDir": {}},
                    {"name": "gone", "$patch": "delete"}
                ]}}),
                want: pod(json!({"volumes": [{"name": "v", "emptyDir": {}}]})),
            },
            Case {
                name: "$setElementOrder on finalizers",
                group: "",
                resource: "configmaps",
                original: json!({"metadata": {"finalizers": ["a", "b"]}}),
                patch: json!({"metadata": {
                    "$setElementOrder/finalizers": ["b", "c", "a"], "finalizers": ["c"]
                }}),
                want: json!({"metadata": {"finalizers": ["b", "c", "a"]}}),
            },
            Case {
                name: "hostAliases merge by ip",
                group: "",
                resource: "pods",
                original: pod(json!({"hostAliases": [{"ip": "1.1.1.1", "hostnames": ["a"]}]})),
                patch: json!({"spec": {"hostAliases": [{"ip": "1.1.1.1", "hostnames": ["b"]}]}}),
                want: pod(json!({"hostAliases": [{"ip": "1.1.1.1", "hostnames": ["b"]}]})),
            },
            Case {
                name: "a map replaces a scalar of another type",
                group: "",
                resource: "configmaps",
                original: json!({"data": "x"}),
                patch: json!({"data": {"a": "1", "b": null}}),
                want: json!({"data": {"a": "1"}}),
            },
            Case {
                name: "$patch delete on a map empties it",
                group: "",
                resource: "pods",
                original: pod(json!({"nodeSelector": {"a": "1"}, "restartPolicy": "Always"})),
                patch: json!({"spec": {"nodeSelector": {"$patch": "delete"}}}),
                want: pod(json!({"nodeSelector": {}, "restartPolicy": "Always"})),
            },
        ]
    }

    #[test]
    fn strategic_merge_cases() {
        for c in cases() {
            let got = strategic_merge(res(c.group, c.resource), &c.original, &c.patch)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(got, c.want, "{}", c.name);
            // Directives never reach the stored object.
            let text = serde_json::to_string(&got).unwrap();
            assert!(
                !text.contains("\"$"),
                "{}: directive left in {text}",
                c.name
            );
        }
    }

    #[test]
    fn malformed_patches_fail_like_kubernetes() {
        let p = res("", "pods");
        let original = pod(json!({"containers": [{"name": "a", "image": "a"}]}));
        let table: &[(&str, Value, &str)] = &[
            (
                "list item without merge key",
                json!({"spec": {"containers": [{"image": "x"}]}}),
                "map: map[image:x] does not contain declared merge key: name",
            ),
            (
                "delete item without merge key",
                json!({"spec": {"containers": [{"$patch": "delete"}]}}),
                "map: map[$patch:delete] does not contain declared merge key: name",
            ),
            (
                "unknown $patch on a map",
                json!({"spec": {"$patch": "bogus"}}),
                "unknown patch type: bogus in map: map[$patch:bogus]",
            ),
            (
                "$patch merge on a map",
                json!({"metadata": {"$patch": "merge", "name": "x"}}),
                "unknown patch type: merge in map: map[$patch:merge name:x]",
            ),
            (
                "$patch merge in a list",
                json!({"spec": {"containers": [{"$patch": "merge"}]}}),
                "merging lists cannot yet be specified in the patch",
            ),
            (
                "$retainKeys not naming a patched field",
                json!({"spec": {"$retainKeys": ["containers"], "hostname": "h"}}),
                "invalid patch format of retainKeys",
            ),
            (
                "$retainKeys not a list",
                json!({"spec": {"$retainKeys": "containers"}}),
                "invalid patch format of retainKeys",
            ),
            (
                "$deleteFromPrimitiveList without a field",
                json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}}),
                "invalid patch format of primitive list",
            ),
            (
                "$setElementOrder not a list",
                json!({"spec": {"$setElementOrder/containers": "a"}}),
                "expected a []interface {}, but received a string",
            ),
            (
                "mixed element types",
                json!({"spec": {"containers": ["a"]}}),
                "list element types are not identical: [[map[image:a name:a]] [a]]",
            ),
            (
                "patch is not an object",
                json!([1]),
                "json: cannot unmarshal array into Go value of type map[string]interface {}",
            ),
        ];
        for (name, patch, want) in table {
            let err = strategic_merge(p, &original, patch).expect_err(name);
            assert_eq!(err.to_string(), *want, "{name}");
        }
    }

    #[test]
    fn set_element_order_must_agree_with_patch_list() {
        let p = res("", "pods");
        let original = pod(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "b", "image": "x"}]
        }});
        let err = strategic_merge(p, &original, &patch).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("The order in patch list:\n[map[image:x name:b]]\n doesn't match $setElementOrder list:"),
            "{err}"
        );
    }

    #[test]
    fn field_patch_answers_from_go_tags() {
        let want = |strategy, merge_key| {
            Some(FieldPatch {
                strategy,
                merge_key,
            })
        };
        assert_eq!(
            field_patch("io.k8s.api.core.v1.PodSpec", "containers"),
            want("merge", Some("name"))
        );
        assert_eq!(
            field_patch("io.k8s.api.core.v1.PodSpec", "volumes"),
            want("merge,retainKeys", Some("name"))
        );
        assert_eq!(
            field_patch("io.k8s.api.apps.v1.DeploymentSpec", "strategy"),
            want("retainKeys", None)
        );
        assert_eq!(
            field_patch(
                "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                "finalizers"
            ),
            want("merge", None)
        );
        assert_eq!(
            field_patch("io.k8s.api.core.v1.PodSpec", "tolerations"),
            None
        );
        // Short core names are an internal shorthand, not accepted from callers.
        assert_eq!(field_patch("PodSpec", "containers"), None);
        assert_eq!(
            merge_strategy(field_patch("io.k8s.api.core.v1.PodSpec", "volumes")),
            "merge"
        );
    }

    #[test]
    fn every_table_entry_names_a_real_field_of_a_served_definition() {
        let s = schemas();
        assert_eq!(
            s.roots.get("/v1/Pod").map(String::as_str),
            Some("io.k8s.api.core.v1.Pod")
        );
        for (def, field, strategy, key) in TABLE {
            let full = if def.starts_with("io.") {
                def.to_string()
            } else {
                format!("{CORE}{def}")
            };
            let schema = s
                .defs
                .get(&full)
                .unwrap_or_else(|| panic!("{full} is not a served definition"));
            let prop = schema["properties"]
                .get(*field)
                .unwrap_or_else(|| panic!("{full} has no field {field}"));
            let ctx = Ctx {
                defs: &s.defs,
                def: Some(&full),
                schema: Some(schema),
            };
            if strategy.contains("merge") {
                assert_eq!(prop["type"], "array", "{full}.{field}");
                if let Some(key) = key {
                    let (list, _) = ctx.field(field);
                    let item = list.items().schema.expect("item schema");
                    assert!(
                        item["properties"].get(*key).is_some(),
                        "{full}.{field} items lack {key}"
                    );
                }
            } else {
                assert!(prop.get("$ref").is_some(), "{full}.{field} is an object");
            }
        }
    }

    #[test]
    fn navigation_reaches_nested_pod_template() {
        let s = schemas();
        let deploy = s.root(res("apps", "deployments")).unwrap();
        let (spec, _) = deploy.field("spec");
        let (template, _) = spec.field("template");
        let (pod_spec, _) = template.field("spec");
        assert_eq!(pod_spec.def, Some("io.k8s.api.core.v1.PodSpec"));
        let (containers, fp) = pod_spec.field("containers");
        assert_eq!(fp.and_then(|f| f.merge_key), Some("name"));
        assert_eq!(containers.items().def, Some("io.k8s.api.core.v1.Container"));
        let (labels, fp) = deploy.field("metadata").0.field("labels");
        assert!(fp.is_none());
        assert!(labels.field("anything").1.is_none());
    }

    #[test]
    fn go_formatting_of_values() {
        assert_eq!(
            go_fmt(&json!({"b": [1, "x"], "a": null})),
            "map[a:<nil> b:[1 x]]"
        );
        assert_eq!(go_fmt(&json!(1.5)), "1.5");
        assert_eq!(go_float(1e21), "1e+21");
    }
}
