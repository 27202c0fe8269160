//! The OpenAPI documents the apiserver serves: `/openapi/v2` (Swagger 2.0) and
//! `/openapi/v3` (an index) with one OpenAPI 3.0 document per group/version.
//!
//! Everything is generated from the resource catalogue: the schemas come from
//! k8s-openapi's `schemars` implementations (which already use Kubernetes'
//! definition names such as `io.k8s.api.core.v1.Pod`), decorated with the
//! vendor extensions kubectl reads:
//!
//! - `x-kubernetes-group-version-kind` on the schema of every served kind (a
//!   list) and on every operation (a single object). `kubectl explain` finds a
//!   resource's kind from its operations and then the schema carrying that kind;
//!   `kubectl apply` finds the schema to compute a strategic merge patch from.
//! - `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key` on the
//!   properties [`skiff_api::strategic::field_patch`] knows.
//! - a `fieldValidation` query parameter on every PATCH operation, which is how
//!   kubectl decides that the server validates fields itself.
//! - PATCH request bodies listing the four patch content types; kubectl only
//!   computes a strategic merge patch from the v3 schema when
//!   `application/strategic-merge-patch+json` is among them.
//!
//! Documents are serialized once; [`OpenApi::shared`] builds them on first use.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;

use bytes::Bytes;
use k8s_openapi::api as k;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};
use skiff_api::catalog::{RESOURCES, ResourceInfo, Subresource};
use skiff_api::strategic::field_patch;

/// The prefix of every schema reference while building (the OpenAPI 3 form).
const V3_PREFIX: &str = "#/components/schemas/";
/// The Swagger 2.0 form of the same prefix.
const V2_PREFIX: &str = "#/definitions/";
/// `info.version` of every document.
const INFO_VERSION: &str = "v1.32.0";

const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// Content types a PATCH accepts.
const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];
/// Content types a response is offered in.
const PRODUCES: &[&str] = &["application/json", "application/yaml"];
/// Content types a list response is offered in (lists can also watch).
const PRODUCES_LIST: &[&str] = &[
    "application/json",
    "application/json;stream=watch",
    "application/yaml",
];

/// The served OpenAPI documents, serialized.
#[derive(Debug, Clone)]
pub struct OpenApi {
    v2: Bytes,
    v3_index: Bytes,
    v3: Vec<GroupVersionDoc>,
}

#[derive(Debug, Clone)]
struct GroupVersionDoc {
    /// `api/v1`, `apis/apps/v1`.
    path: String,
    body: Bytes,
    /// Upper-case hex SHA-512 of `body`.
    hash: String,
}

static SHARED: LazyLock<OpenApi> = LazyLock::new(OpenApi::build);

impl OpenApi {
    /// The process-wide documents, built on first call. Call it from a
    /// background task at startup to have them ready before the first request.
    pub fn shared() -> &'static OpenApi {
        &SHARED
    }

    /// Builds and serializes every document from the catalogue.
    pub fn build() -> Self {
        let model = Model::new();
        let mut all_paths = BTreeMap::new();
        let mut v3 = Vec::new();
        for gv in group_versions() {
            let resources: Vec<&ResourceInfo> = RESOURCES
                .iter()
                .filter(|r| r.group == gv.0 && r.version == gv.1)
                .collect();
            let paths = model.paths(&resources, Dialect::V3);
            // Kubernetes serves the watch event schema in every document.
            let mut roots: BTreeSet<String> = BTreeSet::from([WATCH_EVENT.to_string()]);
            paths.values().for_each(|p| collect_refs(p, &mut roots));
            let names = model.closure(roots);
            let mut schemas = Map::new();
            for name in &names {
                let mut schema = model.defs[name].clone();
                wrap_ref_siblings(&mut schema);
                schemas.insert(name.clone(), schema);
            }
            let doc = json!({
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": INFO_VERSION},
                "paths": paths,
                "components": {"schemas": schemas},
            });
            let body = Bytes::from(serde_json::to_vec(&doc).expect("documents serialize"));
            let hash = hex::encode_upper(Sha512::digest(&body));
            v3.push(GroupVersionDoc {
                path: gv_path(gv.0, gv.1),
                body,
                hash,
            });
            all_paths.extend(model.paths(&resources, Dialect::V2));
        }

        let mut index = Map::new();
        for d in &v3 {
            index.insert(
                d.path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{}?hash={}", d.path, d.hash)}),
            );
        }
        let v3_index =
            Bytes::from(serde_json::to_vec(&json!({ "paths": index })).expect("index serializes"));

        let mut definitions = Map::new();
        for (name, schema) in &model.defs {
            let mut schema = schema.clone();
            if name == INT_OR_STRING {
                schema["type"] = json!("string");
                schema["format"] = json!("int-or-string");
            } else if name == QUANTITY {
                schema["type"] = json!("string");
            }
            definitions.insert(name.clone(), schema);
        }
        let v2 = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": INFO_VERSION},
            "paths": all_paths.into_iter().collect::<Map<String, Value>>(),
            "definitions": definitions,
        });
        // Rewriting the serialized text is exact: the prefix only ever occurs
        // as a reference (quoted, at the start of a JSON string).
        let text = serde_json::to_string(&v2).expect("documents serialize");
        let v2 = Bytes::from(text.replace(&format!("\"{V3_PREFIX}"), &format!("\"{V2_PREFIX}")));

        OpenApi { v2, v3_index, v3 }
    }

    /// `GET /openapi/v2`: the Swagger 2.0 document as JSON.
    pub fn v2(&self) -> Bytes {
        self.v2.clone()
    }

    /// `GET /openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}, …}}`.
    pub fn v3_index(&self) -> Bytes {
        self.v3_index.clone()
    }

    /// `GET /openapi/v3/<gv_path>`, with `gv_path` like `api/v1` or `apis/apps/v1`
    /// (a leading `/` is ignored). `None` for a group/version not served.
    pub fn v3_document(&self, gv_path: &str) -> Option<Bytes> {
        self.find(gv_path).map(|d| d.body.clone())
    }

    /// The hash of a v3 document (upper-case hex SHA-512 of its bytes), as used
    /// in the index's `?hash=` and for the ETag.
    pub fn v3_hash(&self, gv_path: &str) -> Option<&str> {
        self.find(gv_path).map(|d| d.hash.as_str())
    }

    fn find(&self, gv_path: &str) -> Option<&GroupVersionDoc> {
        let p = gv_path.trim_start_matches('/');
        self.v3.iter().find(|d| d.path == p)
    }
}

/// Every served (group, version), in catalogue order.
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// The definition name a `$ref` points to.
fn ref_name(reference: &str) -> Option<&str> {
    reference.strip_prefix(V3_PREFIX)
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("{V3_PREFIX}{name}") })
}

/// Every definition, decorated, with refs in the OpenAPI 3 form.
struct Model {
    defs: BTreeMap<String, Value>,
    /// Definition name of each (group, version, kind).
    kinds: HashMap<(&'static str, &'static str, &'static str), String>,
    /// The definitions each definition refers to directly.
    edges: HashMap<String, BTreeSet<String>>,
}

impl Model {
    fn new() -> Self {
        let mut generator = SchemaSettings::openapi3()
            .with(|s| {
                s.transforms.clear();
                s.meta_schema = None;
            })
            .into_generator();
        let mut kinds = HashMap::new();
        for r in RESOURCES {
            let name = def_name(&(r.schema)(&mut generator));
            kinds.insert((r.group, r.version, r.kind), name);
        }
        let extra = [
            (
                ("autoscaling", "v1", "Scale"),
                generator.subschema_for::<k::autoscaling::v1::Scale>(),
            ),
            (
                ("", "v1", "Binding"),
                generator.subschema_for::<k::core::v1::Binding>(),
            ),
            (
                ("policy", "v1", "Eviction"),
                generator.subschema_for::<k::policy::v1::Eviction>(),
            ),
            (
                ("", "v1", "Status"),
                generator.subschema_for::<meta::Status>(),
            ),
            (
                ("", "v1", "APIResourceList"),
                generator.subschema_for::<meta::APIResourceList>(),
            ),
        ];
        for (key, schema) in extra {
            kinds.insert(key, def_name(&schema));
        }
        register_shared(&mut generator);

        let mut defs: BTreeMap<String, Value> =
            generator.take_definitions(false).into_iter().collect();

        // Kinds: list schemas and group-version-kind extensions.
        let mut gvks: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for ((group, version, kind), name) in &kinds {
            gvks.entry(name.clone())
                .or_default()
                .push(gvk(group, version, kind));
        }
        for r in RESOURCES {
            let item = &kinds[&(r.group, r.version, r.kind)];
            let list = format!("{item}List");
            defs.entry(list.clone())
                .or_insert_with(|| list_schema(r.kind, item));
            gvks.entry(list)
                .or_default()
                .push(gvk(r.group, r.version, &format!("{}List", r.kind)));
        }
        for (group, version) in group_versions() {
            for shared in [DELETE_OPTIONS, WATCH_EVENT] {
                let kind = shared.rsplit('.').next().unwrap_or_default();
                gvks.entry(shared.to_string())
                    .or_default()
                    .push(gvk(group, version, kind));
            }
        }
        for (name, list) in &mut gvks {
            list.sort_by_key(|v| v.to_string());
            list.dedup();
            if let Some(Value::Object(schema)) = defs.get_mut(name) {
                schema.insert(
                    "x-kubernetes-group-version-kind".into(),
                    Value::Array(list.clone()),
                );
            }
        }

        // Patch strategies.
        for (name, schema) in &mut defs {
            let Some(Value::Object(props)) = schema.get_mut("properties") else {
                continue;
            };
            for (field, prop) in props.iter_mut() {
                let short = name.rsplit('.').next().unwrap_or(name);
                let Some(patch) = field_patch(name, field).or_else(|| field_patch(short, field))
                else {
                    continue;
                };
                if let Value::Object(prop) = prop {
                    prop.insert("x-kubernetes-patch-strategy".into(), patch.strategy.into());
                    if let Some(key) = patch.merge_key {
                        prop.insert("x-kubernetes-patch-merge-key".into(), key.into());
                    }
                }
            }
        }

        let edges = defs
            .iter()
            .map(|(name, schema)| {
                let mut refs = BTreeSet::new();
                collect_refs(schema, &mut refs);
                (name.clone(), refs)
            })
            .collect();
        Model { defs, kinds, edges }
    }

    /// The definitions reachable from `roots`.
    fn closure(&self, roots: BTreeSet<String>) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<String> = roots.into_iter().collect();
        while let Some(name) = stack.pop() {
            if !self.defs.contains_key(&name) || !seen.insert(name.clone()) {
                continue;
            }
            if let Some(next) = self.edges.get(&name) {
                stack.extend(next.iter().filter(|n| !seen.contains(*n)).cloned());
            }
        }
        seen
    }

    /// The paths of one group/version's resources.
    fn paths(&self, resources: &[&ResourceInfo], dialect: Dialect) -> Map<String, Value> {
        let mut paths = BTreeMap::new();
        if let Some(first) = resources.first() {
            paths.insert(
                format!("/{}/", gv_path(first.group, first.version)),
                api_resources_path(first, dialect),
            );
        }
        for r in resources {
            self.resource_paths(r, dialect, &mut paths);
        }
        paths.into_iter().collect()
    }

    fn resource_paths(
        &self,
        r: &ResourceInfo,
        dialect: Dialect,
        paths: &mut BTreeMap<String, Value>,
    ) {
        let kind_def = &self.kinds[&(r.group, r.version, r.kind)];
        let list_def = format!("{kind_def}List");
        let root = format!("/{}", gv_path(r.group, r.version));
        let collection = if r.namespaced {
            format!("{root}/namespaces/{{namespace}}/{}", r.resource)
        } else {
            format!("{root}/{}", r.resource)
        };
        let item = format!("{collection}/{{name}}");
        let ids = OpIds::new(r);
        let own = gvk(r.group, r.version, r.kind);
        let ns_param: Vec<Param> = if r.namespaced {
            vec![NAMESPACE]
        } else {
            vec![]
        };
        let with_pretty = |mut v: Vec<Param>| {
            v.push(PRETTY);
            v
        };

        // Collection: list, create, deletecollection.
        let mut ops = Map::new();
        ops.insert(
            "get".into(),
            Op {
                description: format!("list or watch objects of kind {}", r.kind),
                id: ids.id("list", "", ""),
                action: "list",
                tag: &ids.tag,
                gvk: &own,
                params: LIST_PARAMS.to_vec(),
                body: None,
                responses: &[("200", "OK")],
                response: &list_def,
                produces: PRODUCES_LIST,
            }
            .render(dialect),
        );
        ops.insert(
            "post".into(),
            Op {
                description: format!("create a {}", r.kind),
                id: ids.id("create", "", ""),
                action: "post",
                tag: &ids.tag,
                gvk: &own,
                params: WRITE_PARAMS.to_vec(),
                body: Some((kind_def, &["*/*"])),
                responses: &[("200", "OK"), ("201", "Created"), ("202", "Accepted")],
                response: kind_def,
                produces: PRODUCES,
            }
            .render(dialect),
        );
        ops.insert(
            "delete".into(),
            Op {
                description: format!("delete collection of {}", r.kind),
                id: ids.id("delete", "Collection", ""),
                action: "deletecollection",
                tag: &ids.tag,
                gvk: &own,
                params: [DELETE_PARAMS, LIST_PARAMS].concat(),
                body: Some((DELETE_OPTIONS, &["*/*"])),
                responses: &[("200", "OK")],
                response: STATUS,
                produces: PRODUCES,
            }
            .render(dialect),
        );
        ops.insert(
            "parameters".into(),
            params(&with_pretty(ns_param.clone()), dialect),
        );
        paths.insert(collection, Value::Object(ops));

        // Item: read, replace, patch, delete.
        let mut item_params = vec![NAME];
        item_params.extend(ns_param.iter().copied());
        let mut ops = Map::new();
        ops.insert(
            "get".into(),
            Op {
                description: format!("read the specified {}", r.kind),
                id: ids.id("read", "", ""),
                action: "get",
                tag: &ids.tag,
                gvk: &own,
                params: vec![],
                body: None,
                responses: &[("200", "OK")],
                response: kind_def,
                produces: PRODUCES,
            }
            .render(dialect),
        );
        ops.insert(
            "put".into(),
            Op {
                description: format!("replace the specified {}", r.kind),
                id: ids.id("replace", "", ""),
                action: "put",
                tag: &ids.tag,
                gvk: &own,
                params: WRITE_PARAMS.to_vec(),
                body: Some((kind_def, &["*/*"])),
                responses: &[("200", "OK"), ("201", "Created")],
                response: kind_def,
                produces: PRODUCES,
            }
            .render(dialect),
        );
        ops.insert(
            "patch".into(),
            Op {
                description: format!("partially update the specified {}", r.kind),
                id: ids.id("patch", "", ""),
                action: "patch",
                tag: &ids.tag,
                gvk: &own,
                params: PATCH_PARAMS.to_vec(),
                body: Some((PATCH, PATCH_TYPES)),
                responses: &[("200", "OK"), ("201", "Created")],
                response: kind_def,
                produces: PRODUCES,
            }
            .render(dialect),
        );
        ops.insert(
            "delete".into(),
            Op {
                description: format!("delete a {}", r.kind),
                id: ids.id("delete", "", ""),
                action: "delete",
                tag: &ids.tag,
                gvk: &own,
                params: DELETE_PARAMS.to_vec(),
                body: Some((DELETE_OPTIONS, &["*/*"])),
                responses: &[("200", "OK"), ("202", "Accepted")],
                response: STATUS,
                produces: PRODUCES,
            }
            .render(dialect),
        );
        ops.insert(
            "parameters".into(),
            params(&with_pretty(item_params.clone()), dialect),
        );
        paths.insert(item.clone(), Value::Object(ops));

        // Every namespace at once.
        if r.namespaced {
            let mut ops = Map::new();
            ops.insert(
                "get".into(),
                Op {
                    description: format!("list or watch objects of kind {}", r.kind),
                    id: ids.id("list", "", "ForAllNamespaces"),
                    action: "list",
                    tag: &ids.tag,
                    gvk: &own,
                    params: LIST_PARAMS.to_vec(),
                    body: None,
                    responses: &[("200", "OK")],
                    response: &list_def,
                    produces: PRODUCES_LIST,
                }
                .render(dialect),
            );
            ops.insert("parameters".into(), params(&[PRETTY], dialect));
            paths.insert(format!("{root}/{}", r.resource), Value::Object(ops));
        }

        for sub in r.subresources {
            self.subresource_path(r, sub, &item, &item_params, &ids, dialect, paths);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn subresource_path(
        &self,
        r: &ResourceInfo,
        sub: &Subresource,
        item: &str,
        item_params: &[Param],
        ids: &OpIds,
        dialect: Dialect,
        paths: &mut BTreeMap<String, Value>,
    ) {
        let (group, version, kind) = if sub.kind.is_empty() {
            (r.group, r.version, r.kind)
        } else {
            (sub.kind_group, sub.kind_version, sub.kind)
        };
        let Some(def) = self.kinds.get(&(group, version, kind)) else {
            return;
        };
        let sub_gvk = gvk(group, version, kind);
        let suffix = capitalize(sub.name);
        let mut ops = Map::new();
        for verb in sub.verbs {
            let (method, op) = match *verb {
                "get" => (
                    "get",
                    Op {
                        description: format!("read {} of the specified {}", sub.name, r.kind),
                        id: ids.id("read", "", &suffix),
                        action: "get",
                        tag: &ids.tag,
                        gvk: &sub_gvk,
                        params: vec![],
                        body: None,
                        responses: &[("200", "OK")],
                        response: def,
                        produces: PRODUCES,
                    },
                ),
                "update" => (
                    "put",
                    Op {
                        description: format!("replace {} of the specified {}", sub.name, r.kind),
                        id: ids.id("replace", "", &suffix),
                        action: "put",
                        tag: &ids.tag,
                        gvk: &sub_gvk,
                        params: WRITE_PARAMS.to_vec(),
                        body: Some((def, &["*/*"])),
                        responses: &[("200", "OK"), ("201", "Created")],
                        response: def,
                        produces: PRODUCES,
                    },
                ),
                "patch" => (
                    "patch",
                    Op {
                        description: format!(
                            "partially update {} of the specified {}",
                            sub.name, r.kind
                        ),
                        id: ids.id("patch", "", &suffix),
                        action: "patch",
                        tag: &ids.tag,
                        gvk: &sub_gvk,
                        params: PATCH_PARAMS.to_vec(),
                        body: Some((PATCH, PATCH_TYPES)),
                        responses: &[("200", "OK"), ("201", "Created")],
                        response: def,
                        produces: PRODUCES,
                    },
                ),
                "create" => (
                    "post",
                    Op {
                        description: format!("create {} of a {}", sub.kind, r.kind),
                        id: ids.id("create", "", &suffix),
                        action: "post",
                        tag: &ids.tag,
                        gvk: &sub_gvk,
                        params: WRITE_PARAMS.to_vec(),
                        body: Some((def, &["*/*"])),
                        responses: &[("200", "OK"), ("201", "Created"), ("202", "Accepted")],
                        response: def,
                        produces: PRODUCES,
                    },
                ),
                _ => continue,
            };
            ops.insert(method.into(), op.render(dialect));
        }
        let mut common = item_params.to_vec();
        common.push(PRETTY);
        ops.insert("parameters".into(), params(&common, dialect));
        paths.insert(format!("{item}/{}", sub.name), Value::Object(ops));
    }
}

/// `GET /apis/<group>/<version>/`: the group/version's resource list.
fn api_resources_path(r: &ResourceInfo, dialect: Dialect) -> Value {
    let ids = OpIds::new(r);
    let id = format!("get{}{}APIResources", ids.group, ids.version);
    let mut op = json!({
        "description": "get available resources",
        "operationId": id,
        "tags": [ids.tag],
    });
    match dialect {
        Dialect::V3 => {
            let content: Map<String, Value> = PRODUCES
                .iter()
                .map(|ct| {
                    (
                        ct.to_string(),
                        json!({"schema": reference(API_RESOURCE_LIST)}),
                    )
                })
                .collect();
            op["responses"] = json!({
                "200": {"description": "OK", "content": content},
                "401": {"description": "Unauthorized"},
            });
        }
        Dialect::V2 => {
            op["consumes"] = json!(PRODUCES);
            op["produces"] = json!(PRODUCES);
            op["schemes"] = json!(["https"]);
            op["responses"] = json!({
                "200": {"description": "OK", "schema": reference(API_RESOURCE_LIST)},
                "401": {"description": "Unauthorized"},
            });
        }
    }
    json!({ "get": op })
}

/// Adds the shared apimachinery definitions every document may refer to.
fn register_shared(generator: &mut SchemaGenerator) {
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::WatchEvent<k::core::v1::Pod>>();
    generator.subschema_for::<meta::Patch>();
    generator.subschema_for::<meta::ListMeta>();
}

/// The definition name behind a `$ref` schema returned by `subschema_for`.
fn def_name(schema: &schemars::Schema) -> String {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(ref_name)
        .expect("every catalogued kind is a named definition")
        .to_string()
}

/// The `<Kind>List` schema Kubernetes serves for every resource.
fn list_schema(kind: &str, item: &str) -> Value {
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "The versioned schema of this representation of an object.",
                "type": "string",
            },
            "items": {
                "description": format!("The {kind} objects in the list."),
                "type": "array",
                "items": reference(item),
            },
            "kind": {
                "description": "The REST resource this object represents.",
                "type": "string",
            },
            "metadata": {
                "description": "Standard list metadata.",
                "$ref": format!("{V3_PREFIX}{LIST_META}"),
            },
        },
        "required": ["items"],
    })
}

/// Collects every definition name referenced under `v`.
fn collect_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(s)) => {
                        if let Some(name) = ref_name(s) {
                            out.insert(name.to_string());
                        }
                    }
                    ("enum" | "default" | "example", _) => {}
                    _ => collect_refs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_refs(i, out)),
        _ => {}
    }
}

/// OpenAPI 3.0 ignores the siblings of `$ref`; Kubernetes moves the reference
/// into `allOf` so a field keeps its own description and extensions.
fn wrap_ref_siblings(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.len() > 1
                && let Some(r) = map.remove("$ref")
            {
                map.insert("allOf".into(), json!([{ "$ref": r }]));
            }
            for (key, value) in map.iter_mut() {
                if !key.starts_with("x-") && !matches!(key.as_str(), "enum" | "default" | "example")
                {
                    wrap_ref_siblings(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(wrap_ref_siblings),
        _ => {}
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Builds Kubernetes-style operation ids (`readCoreV1NamespacedPodStatus`) and tags (`core_v1`).
struct OpIds {
    group: String,
    version: String,
    namespaced: &'static str,
    kind: &'static str,
    tag: String,
}

impl OpIds {
    fn new(r: &ResourceInfo) -> Self {
        let group = if r.group.is_empty() {
            "Core".to_string()
        } else {
            r.group
                .trim_end_matches(".k8s.io")
                .split('.')
                .map(capitalize)
                .collect()
        };
        let mut tag = group.clone();
        if let Some(first) = tag.get_mut(0..1) {
            first.make_ascii_lowercase();
        }
        OpIds {
            tag: format!("{tag}_{}", r.version),
            group,
            version: capitalize(r.version),
            namespaced: if r.namespaced { "Namespaced" } else { "" },
            kind: r.kind,
        }
    }

    /// `verb` + group + version + `infix` + Namespaced? + kind + `suffix`.
    fn id(&self, verb: &str, infix: &str, suffix: &str) -> String {
        let namespaced = if suffix == "ForAllNamespaces" {
            ""
        } else {
            self.namespaced
        };
        format!(
            "{verb}{}{}{infix}{namespaced}{}{suffix}",
            self.group, self.version, self.kind
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// Swagger 2.0.
    V2,
    /// OpenAPI 3.0.
    V3,
}

/// A query or path parameter.
#[derive(Debug, Clone, Copy)]
struct Param {
    name: &'static str,
    location: &'static str,
    ty: &'static str,
    description: &'static str,
}

const fn query(name: &'static str, ty: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: "query",
        ty,
        description,
    }
}

const NAME: Param = Param {
    name: "name",
    location: "path",
    ty: "string",
    description: "name of the object",
};
const NAMESPACE: Param = Param {
    name: "namespace",
    location: "path",
    ty: "string",
    description: "namespace the object lives in",
};
const PRETTY: Param = query("pretty", "string", "If 'true', the output is indented.");
const DRY_RUN: Param = query(
    "dryRun",
    "string",
    "When present, the change is checked but not stored. The only valid value is All.",
);
const FIELD_MANAGER: Param = query(
    "fieldManager",
    "string",
    "The name of the actor making the change, recorded in managedFields. At most 128 printable characters; required for apply patches.",
);
const FIELD_VALIDATION: Param = query(
    "fieldValidation",
    "string",
    "How the server treats unknown or duplicate fields in the request body: Ignore drops them, Warn drops them and returns a warning for each, Strict rejects the request.",
);
const FORCE: Param = query(
    "force",
    "boolean",
    "Forces an apply patch to take over fields owned by other managers. Must be unset for other patch types.",
);
const WRITE_PARAMS: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
const PATCH_PARAMS: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE];
const DELETE_PARAMS: &[Param] = &[
    DRY_RUN,
    query(
        "gracePeriodSeconds",
        "integer",
        "Seconds to wait before the object is deleted; zero deletes at once, unset uses the kind's default.",
    ),
    query(
        "orphanDependents",
        "boolean",
        "Deprecated in favour of propagationPolicy: whether dependents are orphaned.",
    ),
    query(
        "propagationPolicy",
        "string",
        "How dependents are garbage collected: Orphan, Background or Foreground.",
    ),
];
const LIST_PARAMS: &[Param] = &[
    query(
        "allowWatchBookmarks",
        "boolean",
        "Asks a watch to send BOOKMARK events.",
    ),
    query(
        "continue",
        "string",
        "The continue token of a previous, limited list call, to fetch the next chunk.",
    ),
    query(
        "fieldSelector",
        "string",
        "Restricts the returned objects by their fields. Defaults to everything.",
    ),
    query(
        "labelSelector",
        "string",
        "Restricts the returned objects by their labels. Defaults to everything.",
    ),
    query(
        "limit",
        "integer",
        "The maximum number of objects to return; the list metadata then carries a continue token if more exist.",
    ),
    query(
        "resourceVersion",
        "string",
        "Constrains which resource versions the request may be served from.",
    ),
    query(
        "resourceVersionMatch",
        "string",
        "How resourceVersion applies to a list call: Exact or NotOlderThan.",
    ),
    query(
        "sendInitialEvents",
        "boolean",
        "Asks a watch to start with synthetic ADDED events for the current state.",
    ),
    query(
        "timeoutSeconds",
        "integer",
        "Limits the duration of a list or watch call.",
    ),
    query(
        "watch",
        "boolean",
        "Streams add, update and delete notifications instead of returning a list.",
    ),
];

fn params(list: &[Param], dialect: Dialect) -> Value {
    Value::Array(list.iter().map(|p| p.render(dialect)).collect())
}

impl Param {
    fn render(&self, dialect: Dialect) -> Value {
        let mut m = Map::new();
        m.insert("description".into(), self.description.into());
        m.insert("in".into(), self.location.into());
        m.insert("name".into(), self.name.into());
        if self.location == "path" {
            m.insert("required".into(), true.into());
        }
        match dialect {
            Dialect::V3 => {
                m.insert(
                    "schema".into(),
                    json!({"type": self.ty, "uniqueItems": true}),
                );
            }
            Dialect::V2 => {
                m.insert("type".into(), self.ty.into());
                m.insert("uniqueItems".into(), true.into());
            }
        }
        Value::Object(m)
    }
}

/// One operation on a path.
struct Op<'a> {
    description: String,
    id: String,
    action: &'static str,
    tag: &'a str,
    gvk: &'a Value,
    params: Vec<Param>,
    /// The request body's definition and the content types it is accepted in.
    body: Option<(&'a str, &'a [&'a str])>,
    responses: &'a [(&'a str, &'a str)],
    response: &'a str,
    produces: &'a [&'a str],
}

impl Op<'_> {
    fn render(&self, dialect: Dialect) -> Value {
        let mut m = Map::new();
        m.insert("description".into(), self.description.clone().into());
        m.insert("operationId".into(), self.id.clone().into());
        let mut parameters = params(&self.params, dialect);
        let mut responses = Map::new();
        for (code, text) in self.responses {
            let response = match dialect {
                Dialect::V3 => {
                    let content: Map<String, Value> = self
                        .produces
                        .iter()
                        .map(|ct| (ct.to_string(), json!({"schema": reference(self.response)})))
                        .collect();
                    json!({"description": text, "content": content})
                }
                Dialect::V2 => json!({"description": text, "schema": reference(self.response)}),
            };
            responses.insert(code.to_string(), response);
        }
        responses.insert("401".into(), json!({"description": "Unauthorized"}));
        match (dialect, self.body) {
            (Dialect::V3, Some((def, types))) => {
                let content: Map<String, Value> = types
                    .iter()
                    .map(|ct| {
                        let ct = if *ct == "*/*" { "application/json" } else { ct };
                        (ct.to_string(), json!({"schema": reference(def)}))
                    })
                    .collect();
                m.insert(
                    "requestBody".into(),
                    json!({"content": content, "required": true}),
                );
            }
            (Dialect::V2, body) => {
                if let Some((def, _)) = body
                    && let Value::Array(list) = &mut parameters
                {
                    list.insert(
                        0,
                        json!({"in": "body", "name": "body", "required": true, "schema": reference(def)}),
                    );
                }
                let consumes: Vec<&str> = body.map(|(_, t)| t.to_vec()).unwrap_or(vec!["*/*"]);
                m.insert("consumes".into(), json!(consumes));
                m.insert("produces".into(), json!(self.produces));
                m.insert("schemes".into(), json!(["https"]));
            }
            (Dialect::V3, None) => {}
        }
        if !self.params.is_empty() || dialect == Dialect::V2 && self.body.is_some() {
            m.insert("parameters".into(), parameters);
        }
        m.insert("responses".into(), Value::Object(responses));
        m.insert("tags".into(), json!([self.tag]));
        m.insert("x-kubernetes-action".into(), self.action.into());
        m.insert("x-kubernetes-group-version-kind".into(), self.gvk.clone());
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> &'static OpenApi {
        OpenApi::shared()
    }

    fn v3(path: &str) -> Value {
        let bytes = api()
            .v3_document(path)
            .unwrap_or_else(|| panic!("{path} is served"));
        serde_json::from_slice(&bytes).expect("v3 document is JSON")
    }

    fn v2() -> Value {
        serde_json::from_slice(&api().v2()).expect("v2 document is JSON")
    }

    /// Every `$ref` under `v`, in the document's own prefix.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, value) in map {
                    match (k.as_str(), value) {
                        ("$ref", Value::String(s)) => out.push(s.clone()),
                        _ => refs(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| refs(i, out)),
            _ => {}
        }
    }

    #[test]
    fn index_lists_every_group_version_with_its_hash() {
        let index: Value = serde_json::from_slice(&api().v3_index()).unwrap();
        let paths = index["paths"].as_object().unwrap();
        let mut expected: Vec<String> = RESOURCES
            .iter()
            .map(|r| gv_path(r.group, r.version))
            .collect();
        expected.sort();
        expected.dedup();
        let mut got: Vec<String> = paths.keys().cloned().collect();
        got.sort();
        assert_eq!(got, expected);
        for want in [
            "api/v1",
            "apis/apps/v1",
            "apis/autoscaling/v1",
            "apis/autoscaling/v2",
        ] {
            let hash = api().v3_hash(want).unwrap();
            assert_eq!(hash.len(), 128, "{want}");
            assert_eq!(
                paths[want]["serverRelativeURL"],
                format!("/openapi/v3/{want}?hash={hash}")
            );
            let body = api().v3_document(want).unwrap();
            assert_eq!(hex::encode_upper(Sha512::digest(&body)), hash);
        }
        assert!(api().v3_document("/api/v1").is_some());
        assert!(api().v3_document("apis/apps/v9").is_none());
        assert!(api().v3_hash("apis/nope/v1").is_none());
    }

    #[test]
    fn every_document_is_openapi_3_and_every_ref_resolves() {
        for gv in group_versions() {
            let path = gv_path(gv.0, gv.1);
            let doc = v3(&path);
            assert_eq!(doc["openapi"], "3.0.0", "{path}");
            let schemas = doc["components"]["schemas"].as_object().unwrap();
            let mut all = Vec::new();
            refs(&doc, &mut all);
            assert!(!all.is_empty());
            for r in all {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("{path}: bad ref {r}"));
                assert!(schemas.contains_key(name), "{path}: {r} does not resolve");
            }
            // A document only carries what it uses.
            if path != "api/v1" {
                assert!(
                    !schemas.contains_key("io.k8s.api.core.v1.Namespace"),
                    "{path}"
                );
            }
        }
    }

    #[test]
    fn kinds_carry_their_group_version_kind() {
        let cases = [
            (
                "api/v1",
                "io.k8s.api.core.v1.Pod",
                json!([{"group": "", "kind": "Pod", "version": "v1"}]),
            ),
            (
                "api/v1",
                "io.k8s.api.core.v1.PodList",
                json!([{"group": "", "kind": "PodList", "version": "v1"}]),
            ),
            (
                "api/v1",
                STATUS,
                json!([{"group": "", "kind": "Status", "version": "v1"}]),
            ),
            (
                "apis/apps/v1",
                "io.k8s.api.apps.v1.Deployment",
                json!([{"group": "apps", "kind": "Deployment", "version": "v1"}]),
            ),
            (
                "apis/apps/v1",
                "io.k8s.api.autoscaling.v1.Scale",
                json!([{"group": "autoscaling", "kind": "Scale", "version": "v1"}]),
            ),
            (
                "apis/events.k8s.io/v1",
                "io.k8s.api.events.v1.Event",
                json!([{"group": "events.k8s.io", "kind": "Event", "version": "v1"}]),
            ),
            (
                "apis/autoscaling/v2",
                "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
                json!([{"group": "autoscaling", "kind": "HorizontalPodAutoscaler", "version": "v2"}]),
            ),
        ];
        for (path, name, want) in cases {
            let doc = v3(path);
            assert_eq!(
                doc["components"]["schemas"][name]["x-kubernetes-group-version-kind"], want,
                "{path} {name}"
            );
        }
        let doc = v3("apis/batch/v1");
        let delete =
            doc["components"]["schemas"][DELETE_OPTIONS]["x-kubernetes-group-version-kind"]
                .as_array()
                .unwrap()
                .clone();
        for want in [
            gvk("", "v1", "DeleteOptions"),
            gvk("batch", "v1", "DeleteOptions"),
        ] {
            assert!(delete.contains(&want), "{want}");
        }
    }

    #[test]
    fn every_patch_operation_accepts_field_validation_and_strategic_merge() {
        for gv in group_versions() {
            let path = gv_path(gv.0, gv.1);
            let doc = v3(&path);
            let mut patches = 0;
            for (p, item) in doc["paths"].as_object().unwrap() {
                let Some(op) = item.get("patch") else {
                    continue;
                };
                patches += 1;
                let names: Vec<&str> = op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                for want in ["fieldValidation", "dryRun", "fieldManager", "force"] {
                    assert!(names.contains(&want), "{p}: {want} in {names:?}");
                }
                let content = op["requestBody"]["content"].as_object().unwrap();
                for ct in PATCH_TYPES {
                    assert!(content.contains_key(*ct), "{p}: {ct}");
                }
                assert!(op["x-kubernetes-group-version-kind"].is_object(), "{p}");
                assert_eq!(op["x-kubernetes-action"], "patch", "{p}");
            }
            assert!(patches > 0, "{path}");
        }
    }

    #[test]
    fn pod_paths_and_operations() {
        let doc = v3("api/v1");
        let paths = &doc["paths"];
        let item = &paths["/api/v1/namespaces/{namespace}/pods/{name}"];
        let pod = json!({"group": "", "kind": "Pod", "version": "v1"});
        let cases = [
            (
                "/api/v1/namespaces/{namespace}/pods",
                "get",
                "list",
                "listCoreV1NamespacedPod",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods",
                "post",
                "post",
                "createCoreV1NamespacedPod",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods",
                "delete",
                "deletecollection",
                "deleteCoreV1CollectionNamespacedPod",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}",
                "get",
                "get",
                "readCoreV1NamespacedPod",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}",
                "put",
                "put",
                "replaceCoreV1NamespacedPod",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}",
                "patch",
                "patch",
                "patchCoreV1NamespacedPod",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}",
                "delete",
                "delete",
                "deleteCoreV1NamespacedPod",
            ),
            (
                "/api/v1/pods",
                "get",
                "list",
                "listCoreV1PodForAllNamespaces",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}/status",
                "patch",
                "patch",
                "patchCoreV1NamespacedPodStatus",
            ),
            ("/api/v1/nodes/{name}", "get", "get", "readCoreV1Node"),
        ];
        for (path, method, action, id) in cases {
            let op = &paths[path][method];
            assert_eq!(op["x-kubernetes-action"], action, "{path} {method}");
            assert_eq!(op["operationId"], id, "{path} {method}");
            assert_eq!(op["tags"], json!(["core_v1"]));
        }
        assert_eq!(item["get"]["x-kubernetes-group-version-kind"], pod);
        let common: Vec<&str> = item["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(common, ["name", "namespace", "pretty"]);
        assert_eq!(
            item["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.Pod"
        );
        let binding = &paths["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"];
        assert_eq!(
            binding["x-kubernetes-group-version-kind"]["kind"],
            "Binding"
        );
        assert_eq!(binding["operationId"], "createCoreV1NamespacedPodBinding");
        let eviction = &paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"];
        assert_eq!(
            eviction["x-kubernetes-group-version-kind"],
            json!({"group": "policy", "kind": "Eviction", "version": "v1"})
        );
        assert!(
            paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]
                .get("patch")
                .is_none()
        );
        // A cluster-scoped kind has no namespaced path.
        assert!(paths.get("/api/v1/namespaces/{namespace}/nodes").is_none());
        assert!(paths["/api/v1/"]["get"]["responses"]["200"].is_object());

        let apps = v3("apis/apps/v1");
        let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
        assert_eq!(
            scale["put"]["x-kubernetes-group-version-kind"],
            json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
        );
        assert_eq!(
            scale["get"]["operationId"],
            "readAppsV1NamespacedDeploymentScale"
        );
        let sc = v3("apis/storage.k8s.io/v1");
        assert_eq!(
            sc["paths"]["/apis/storage.k8s.io/v1/storageclasses"]["get"]["tags"],
            json!(["storage_v1"])
        );
    }

    #[test]
    fn explain_can_walk_from_pod_to_containers() {
        // kubectl explain pods.spec.containers: follow properties through
        // allOf/$ref and array items, as its template does.
        let doc = v3("api/v1");
        let schemas = &doc["components"]["schemas"];
        let resolve = |s: &Value| -> Value {
            let s = s.get("allOf").and_then(|a| a.get(0)).unwrap_or(s);
            match s.get("$ref").and_then(Value::as_str) {
                Some(r) => schemas[r.strip_prefix(V3_PREFIX).unwrap()].clone(),
                None => s.clone(),
            }
        };
        let pod = &schemas["io.k8s.api.core.v1.Pod"];
        let spec = &pod["properties"]["spec"];
        assert!(
            spec["description"]
                .as_str()
                .unwrap()
                .contains("desired behavior")
        );
        let containers = &resolve(spec)["properties"]["containers"];
        assert_eq!(containers["type"], "array");
        let container = resolve(&containers["items"]);
        assert!(container["properties"]["image"].is_object());
        assert_eq!(
            container["properties"]["resources"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.ResourceRequirements"
        );
        // Quantity and IntOrString stay typeless so explain shows their names.
        assert!(schemas[QUANTITY].get("type").is_none());
    }

    #[test]
    fn patch_strategies_come_from_the_strategic_table() {
        let cases = [
            (
                "api/v1",
                "io.k8s.api.core.v1.PodSpec",
                "containers",
                Some(("merge", Some("name"))),
            ),
            (
                "api/v1",
                "io.k8s.api.core.v1.Container",
                "env",
                Some(("merge", Some("name"))),
            ),
            (
                "apis/apps/v1",
                "io.k8s.api.core.v1.PodSpec",
                "containers",
                Some(("merge", Some("name"))),
            ),
            ("api/v1", "io.k8s.api.core.v1.PodSpec", "hostname", None),
        ];
        for (path, def, field, want) in cases {
            let doc = v3(path);
            let prop = &doc["components"]["schemas"][def]["properties"][field];
            assert!(prop.is_object(), "{def}.{field}");
            let strategy = prop
                .get("x-kubernetes-patch-strategy")
                .and_then(Value::as_str);
            let key = prop
                .get("x-kubernetes-patch-merge-key")
                .and_then(Value::as_str);
            match want {
                Some((s, k)) => {
                    assert_eq!(strategy, Some(s), "{def}.{field}");
                    assert_eq!(key, k, "{def}.{field}");
                }
                None => assert_eq!((strategy, key), (None, None), "{def}.{field}"),
            }
        }
    }

    #[test]
    fn v2_has_the_same_definitions_and_resolving_refs() {
        let doc = v2();
        assert_eq!(doc["swagger"], "2.0");
        let defs = doc["definitions"].as_object().unwrap();
        for gv in group_versions() {
            let v3doc = v3(&gv_path(gv.0, gv.1));
            for name in v3doc["components"]["schemas"].as_object().unwrap().keys() {
                assert!(defs.contains_key(name), "{name}");
            }
        }
        assert_eq!(
            defs["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        assert_eq!(
            defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        // Swagger 2 keeps $ref beside a description rather than allOf.
        assert_eq!(
            defs["io.k8s.api.core.v1.Pod"]["properties"]["spec"]["$ref"],
            "#/definitions/io.k8s.api.core.v1.PodSpec"
        );
        assert_eq!(defs[INT_OR_STRING]["format"], "int-or-string");
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in all {
            let name = r
                .strip_prefix("#/definitions/")
                .unwrap_or_else(|| panic!("bad ref {r}"));
            assert!(defs.contains_key(name), "{r} does not resolve");
        }
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["consumes"], json!(PATCH_TYPES));
        let names: Vec<&str> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["body", "dryRun", "fieldManager", "fieldValidation", "force"]
        );
        assert_eq!(patch["parameters"][1]["type"], "string");
    }

    #[test]
    fn operation_ids_follow_kubernetes() {
        let cases = [
            ("", "v1", "pods", "read", "", "", "readCoreV1NamespacedPod"),
            (
                "apps",
                "v1",
                "deployments",
                "patch",
                "",
                "Scale",
                "patchAppsV1NamespacedDeploymentScale",
            ),
            (
                "storage.k8s.io",
                "v1",
                "storageclasses",
                "delete",
                "Collection",
                "",
                "deleteStorageV1CollectionStorageClass",
            ),
            (
                "discovery.k8s.io",
                "v1",
                "endpointslices",
                "list",
                "",
                "ForAllNamespaces",
                "listDiscoveryV1EndpointSliceForAllNamespaces",
            ),
            (
                "autoscaling",
                "v2",
                "horizontalpodautoscalers",
                "create",
                "",
                "",
                "createAutoscalingV2NamespacedHorizontalPodAutoscaler",
            ),
        ];
        for (g, v, res, verb, infix, suffix, want) in cases {
            let r = skiff_api::catalog::lookup(g, v, res).unwrap();
            assert_eq!(OpIds::new(r).id(verb, infix, suffix), want);
        }
        let r = skiff_api::catalog::lookup("coordination.k8s.io", "v1", "leases").unwrap();
        assert_eq!(OpIds::new(r).tag, "coordination_v1");
    }
}
