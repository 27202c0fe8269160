//! HTTP: parses Kubernetes request paths and parameters, calls the registry
//! and renders objects, lists, tables and watch streams.

use crate::cache::{CacheEvent, Obj, WatchKind};
use crate::error::{ApiError, ApiResult};
use crate::registry::{DeleteOptions, FieldValidation, PatchType, Registry, WriteOptions};
use crate::table::{self, IncludeObject, Output};
use crate::{Server, discovery};
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skiff_api::catalog::{self, ResourceInfo};
use skiff_api::meta;
use skiff_api::selector::{FieldSelector, LabelSelector};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted (Kubernetes' limit is 3 MiB for objects).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// A parsed resource request.
#[derive(Debug)]
struct Target {
    r: &'static ResourceInfo,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn value_response(status: StatusCode, v: &Value) -> Response {
    json_response(
        status,
        Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
    )
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(h) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("Warning", h);
        }
    }
    resp
}

/// Query parameters (first value wins).
struct Query(HashMap<String, String>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        let mut m = HashMap::new();
        if let Some(q) = q {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                m.entry(k.into_owned()).or_insert_with(|| v.into_owned());
            }
        }
        Self(m)
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1"))
    }
    fn write_options(&self) -> ApiResult<WriteOptions> {
        let dry_run = match self.get("dryRun") {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Invalid dryRun value: {other:?}: supported values: \"All\""
                )));
            }
        };
        Ok(WriteOptions {
            dry_run,
            field_validation: FieldValidation::parse(self.get("fieldValidation"))?,
        })
    }
}

/// Entry point for every request under `/api` and `/apis`, and the non-resource paths.
pub async fn handle(server: Arc<Server>, req: Request<Body>) -> Response {
    match route(server, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route(server: Arc<Server>, req: Request<Body>) -> ApiResult<Response> {
    let path = req.uri().path().to_string();
    let query = Query::parse(req.uri().query());
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let method = req.method().clone();
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();

    match segs.as_slice() {
        ["version"] => return Ok(value_response(StatusCode::OK, &discovery::version())),
        ["cacerts"] => {
            let mut r = (StatusCode::OK, server.ca_pem().to_string()).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return Ok(r);
        }
        ["healthz"] | ["livez"] => return Ok(plain("ok")),
        ["readyz"] => {
            return Ok(if server.is_ready() {
                plain("ok")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
            });
        }
        ["healthz", _] | ["livez", _] | ["readyz", _] => return Ok(plain("ok")),
        ["openapi", "v2"] => return Ok(json_response(StatusCode::OK, server.openapi().v2())),
        ["openapi", "v3"] => return Ok(json_response(StatusCode::OK, server.openapi().v3_index())),
        ["openapi", "v3", rest @ ..] => {
            let gv = rest.join("/");
            return match server.openapi().v3_document(&gv) {
                Some(b) => Ok(json_response(StatusCode::OK, b)),
                None => Err(ApiError::no_route()),
            };
        }
        ["api"] => {
            return Ok(discovery_response(&accept, true, || {
                discovery::core_versions(&server.address)
            }));
        }
        ["apis"] => return Ok(discovery_response(&accept, false, discovery::group_list)),
        ["api", "v1"] => {
            return Ok(value_response(
                StatusCode::OK,
                &discovery::resource_list("", "v1").expect("core"),
            ));
        }
        ["apis", g] => {
            return discovery::group(g)
                .map(|v| value_response(StatusCode::OK, &v))
                .ok_or_else(ApiError::no_route);
        }
        ["apis", g, v] => {
            return discovery::resource_list(g, v)
                .map(|v| value_response(StatusCode::OK, &v))
                .ok_or_else(ApiError::no_route);
        }
        _ => {}
    }

    if let [
        "apis",
        crate::metrics_api::GROUP,
        crate::metrics_api::VERSION,
        rest @ ..,
    ] = segs.as_slice()
    {
        if method != Method::GET {
            return Err(ApiError::method_not_allowed());
        }
        let v = crate::metrics_api::get(&server, rest, req.uri().query()).await?;
        return Ok(value_response(StatusCode::OK, &v));
    }
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", v, rest),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return Err(ApiError::no_route()),
    };
    if group.is_empty()
        && let [
            "namespaces",
            ns,
            "pods",
            name,
            sub @ ("log" | "exec" | "attach"),
        ] = rest
    {
        return pod_stream(server, ns, name, sub, &query, req).await;
    }
    if group.is_empty()
        && let ["namespaces", ns, "pods", name, "portforward"] = rest
    {
        let pods = catalog::lookup("", "v1", "pods").expect("pods");
        let obj = server.registry().get(pods, Some(ns), name).await?;
        let target = Arc::new(server.pod_target(&obj.value).await?);
        let proxy = server.node_proxy(&target.node);
        let connect: crate::portforward::Connector = Arc::new(move |port| {
            let (proxy, target) = (proxy.clone(), target.clone());
            Box::pin(async move { proxy.connect(&target, port).await })
        });
        return crate::portforward::portforward_upgrade(req, connect);
    }
    let target = parse_target(group, version, rest).ok_or_else(ApiError::no_route)?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let body = match method {
        Method::GET | Method::HEAD => Bytes::new(),
        _ => {
            let collected = http_body_util::Limited::new(req.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
            collected.to_bytes()
        }
    };
    let output = table::negotiate(&accept);
    let reg = server.registry();
    let t = &target;
    let ns = t.ns.as_deref();
    match (&method, t.name.as_deref(), t.sub.as_deref()) {
        (&Method::GET, None, None) => {
            if query.flag("watch") {
                watch(server.clone(), t, &query, output).await
            } else {
                list(reg, t, &query, output).await
            }
        }
        (&Method::POST, None, None) => {
            let ns = if t.r.namespaced {
                Some(ns.ok_or_else(ApiError::method_not_allowed)?)
            } else {
                None
            };
            let obj = decode_body(&content_type, &body)?;
            let w = reg.create(t.r, ns, obj, &query.write_options()?).await?;
            Ok(with_warnings(
                render_one(t.r, &w.object, output, &query, StatusCode::CREATED),
                &w.warnings,
            ))
        }
        (&Method::DELETE, None, None) => delete_collection(reg, t, &query, &body).await,
        (&Method::GET, Some(name), None) => {
            let obj = reg.get(t.r, ns, name).await?;
            if output == Output::Object
                && catalog::storage_info(t.r).version == t.r.version
                && catalog::storage_info(t.r).group == t.r.group
            {
                return Ok(json_response(StatusCode::OK, obj.json.clone()));
            }
            Ok(render_one(
                t.r,
                &Registry::to_version(t.r, &obj),
                output,
                &query,
                StatusCode::OK,
            ))
        }
        (&Method::PUT, Some(name), None)
        | (&Method::PUT, Some(name), Some("status"))
        | (&Method::PUT, Some(name), Some("finalize")) => {
            let obj = decode_body(&content_type, &body)?;
            let w = reg
                .update(
                    t.r,
                    ns,
                    name,
                    t.sub.as_deref(),
                    obj,
                    &query.write_options()?,
                )
                .await?;
            Ok(with_warnings(
                render_one(t.r, &w.object, output, &query, StatusCode::OK),
                &w.warnings,
            ))
        }
        (&Method::PATCH, Some(name), None) | (&Method::PATCH, Some(name), Some("status")) => {
            let kind = PatchType::from_content_type(&content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(&content_type))?;
            let w = reg
                .patch(
                    t.r,
                    ns,
                    name,
                    t.sub.as_deref(),
                    kind,
                    &body,
                    &query.write_options()?,
                )
                .await?;
            let code = if w.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(with_warnings(
                render_one(t.r, &w.object, output, &query, code),
                &w.warnings,
            ))
        }
        (&Method::DELETE, Some(name), None) => {
            let body_v: Option<Value> = if body.is_empty() {
                None
            } else {
                Some(decode_body(&content_type, &body)?)
            };
            let opts =
                DeleteOptions::from_parts(body_v.as_ref(), &|k| query.get(k).map(str::to_string))?;
            let (obj, gone) = reg.delete(t.r, ns, name, &opts).await?;
            // Kubernetes answers 202 while a graceful deletion is pending.
            let code = if gone {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            Ok(render_one(t.r, &obj, output, &query, code))
        }
        (&Method::GET, Some(name), Some("status")) => {
            let obj = reg.get(t.r, ns, name).await?;
            Ok(render_one(
                t.r,
                &Registry::to_version(t.r, &obj),
                output,
                &query,
                StatusCode::OK,
            ))
        }
        (&Method::GET, Some(name), Some("scale")) => {
            let obj = reg.get(t.r, ns, name).await?;
            Ok(value_response(
                StatusCode::OK,
                &Registry::scale_of(t.r, &obj),
            ))
        }
        (&Method::PUT, Some(name), Some("scale")) => {
            let scale = decode_body(&content_type, &body)?;
            let s = reg
                .set_scale(t.r, ns, name, &scale, &query.write_options()?)
                .await?;
            Ok(value_response(StatusCode::OK, &s))
        }
        (&Method::PATCH, Some(name), Some("scale")) => {
            let kind = PatchType::from_content_type(&content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(&content_type))?;
            let current = reg.get(t.r, ns, name).await?;
            let scale = Registry::scale_of(t.r, &current);
            let patch: Value =
                serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
            let scale_info = catalog::lookup("apps", "v1", "deployments").expect("deployments");
            let kind = if kind == PatchType::Strategic || kind == PatchType::Apply {
                PatchType::Merge
            } else {
                kind
            };
            let mut patched = crate::registry::apply_patch(scale_info, kind, &scale, &patch)?;
            if patched["metadata"]["resourceVersion"] == scale["metadata"]["resourceVersion"]
                && let Some(m) = patched["metadata"].as_object_mut()
            {
                m.remove("resourceVersion");
            }
            let s = reg
                .set_scale(t.r, ns, name, &patched, &query.write_options()?)
                .await?;
            Ok(value_response(StatusCode::OK, &s))
        }
        (&Method::POST, Some(name), Some("binding")) if t.r.resource == "pods" => {
            let b = decode_body(&content_type, &body)?;
            reg.bind(t.r, ns, name, b, &query.write_options()?).await?;
            Ok(value_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        (&Method::POST, Some(name), Some("eviction")) if t.r.resource == "pods" => {
            let b = decode_body(&content_type, &body)?;
            let opts = DeleteOptions::from_parts(b.get("deleteOptions"), &|k| {
                query.get(k).map(str::to_string)
            })?;
            let status = reg.evict(t.r, ns, name, &b, &opts).await?;
            let code = status["code"]
                .as_u64()
                .and_then(|c| StatusCode::from_u16(c as u16).ok())
                .unwrap_or(StatusCode::CREATED);
            Ok(value_response(code, &status))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// `pods/log`, `pods/exec` and `pods/attach`: answered by the pod's node.
async fn pod_stream(
    server: Arc<Server>,
    ns: &str,
    name: &str,
    sub: &str,
    query: &Query,
    req: Request<Body>,
) -> ApiResult<Response> {
    let pods = catalog::lookup("", "v1", "pods").expect("pods");
    let obj = server.registry().get(pods, Some(ns), name).await?;
    let target = server.pod_target(&obj.value).await?;
    let container = crate::node::pick_container(&obj.value, query.get("container"))?;
    let proxy = server.node_proxy(&target.node);
    match sub {
        "log" => {
            let int = |k: &str| -> ApiResult<Option<i64>> {
                match query.get(k) {
                    None | Some("") => Ok(None),
                    Some(v) => v
                        .parse()
                        .map(Some)
                        .map_err(|_| ApiError::bad_request(format!("invalid {k}: {v:?}"))),
                }
            };
            let lr = crate::node::LogRequest {
                follow: query.flag("follow"),
                previous: query.flag("previous"),
                tail_lines: int("tailLines")?,
                since_seconds: int("sinceSeconds")?,
                since_time: query.get("sinceTime").map(str::to_string),
                timestamps: query.flag("timestamps"),
                limit_bytes: int("limitBytes")?,
            };
            let stream = proxy.logs(&target, &container, &lr).await?;
            let body = Body::from_stream(stream.map(Ok::<_, std::convert::Infallible>));
            let mut resp = Response::new(body);
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            Ok(resp)
        }
        _ => {
            let all = |k: &str| -> Vec<String> {
                url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                    .filter(|(key, _)| key == k)
                    .map(|(_, v)| v.into_owned())
                    .collect()
            };
            if sub == "attach" {
                let stdin = query.flag("stdin");
                let fut = {
                    let target = target.clone();
                    let container = container.clone();
                    Box::pin(async move { proxy.attach(&target, &container, stdin).await })
                };
                return crate::node::exec_upgrade(req, fut);
            }
            let command = all("command");
            if command.is_empty() {
                return Err(ApiError::bad_request("you must specify at least 1 command"));
            }
            let stdin = query.flag("stdin");
            let tty = query.flag("tty");
            let fut = {
                let target = target.clone();
                let container = container.clone();
                Box::pin(async move { proxy.exec(&target, &container, command, stdin, tty).await })
            };
            crate::node::exec_upgrade(req, fut)
        }
    }
}

fn plain(s: &'static str) -> Response {
    let mut r = (StatusCode::OK, s).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn discovery_response(accept: &str, core: bool, legacy: impl FnOnce() -> Value) -> Response {
    for part in accept.split(',') {
        let p = part.replace(' ', "");
        if p.contains("g=apidiscovery.k8s.io") && p.contains("as=APIGroupDiscoveryList") {
            let v = if p.contains("v=v2beta1") {
                "v2beta1"
            } else if p.contains("v=v2") {
                "v2"
            } else {
                continue;
            };
            let body = discovery::aggregated(core, &format!("apidiscovery.k8s.io/{v}"));
            let mut resp = value_response(StatusCode::OK, &body);
            let ct =
                format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList");
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&ct).expect("ascii"),
            );
            resp.headers_mut()
                .insert(header::VARY, HeaderValue::from_static("Accept"));
            return resp;
        }
        if p.starts_with("application/json") && !p.contains("as=") {
            break;
        }
    }
    value_response(StatusCode::OK, &legacy())
}

fn parse_target(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let find = |res: &str| catalog::lookup(group, version, res);
    let t = match rest {
        ["namespaces", ns, res, tail @ ..] if find(res).is_some_and(|r| r.namespaced) => {
            let r = find(res)?;
            match tail {
                [] => Target {
                    r,
                    ns: Some(ns.to_string()),
                    name: None,
                    sub: None,
                },
                [name] => Target {
                    r,
                    ns: Some(ns.to_string()),
                    name: Some(name.to_string()),
                    sub: None,
                },
                [name, sub] => {
                    r.subresource(sub)?;
                    Target {
                        r,
                        ns: Some(ns.to_string()),
                        name: Some(name.to_string()),
                        sub: Some(sub.to_string()),
                    }
                }
                _ => return None,
            }
        }
        [res] => Target {
            r: find(res)?,
            ns: None,
            name: None,
            sub: None,
        },
        [res, name] => {
            let r = find(res)?;
            if r.namespaced {
                return None;
            }
            Target {
                r,
                ns: None,
                name: Some(name.to_string()),
                sub: None,
            }
        }
        [res, name, sub] => {
            let r = find(res)?;
            if r.namespaced
                || (r.subresource(sub).is_none()
                    && !(r.resource == "namespaces" && *sub == "finalize"))
            {
                return None;
            }
            Target {
                r,
                ns: None,
                name: Some(name.to_string()),
                sub: Some(sub.to_string()),
            }
        }
        _ => return None,
    };
    Some(t)
}

fn decode_body(content_type: &str, body: &[u8]) -> ApiResult<Value> {
    let base = content_type.split(';').next().unwrap_or("").trim();
    if base == "application/yaml" {
        return serde_saphyr::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
    }
    if base == crate::protobuf::CONTENT_TYPE {
        let mut v = crate::protobuf::decode(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body of the request could not be decoded as protobuf: {e}"
            ))
        })?;
        strip_go_zero_values(&mut v);
        return Ok(v);
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

/// Fields that are plain (non-pointer) values in Kubernetes' Go types: Go
/// writes their zero value on the protobuf wire, but its JSON omits them,
/// so a JSON client would never have sent them.
const GO_NON_POINTER_FIELDS: &[&str] = &[
    "stdin",
    "stdinOnce",
    "tty",
    "hostIPC",
    "hostNetwork",
    "hostPID",
    "paused",
    "minReadySeconds",
    "publishNotReadyAddresses",
    "healthCheckNodePort",
    "hostPort",
    "nodePort",
    "readOnly",
    "unschedulable",
];

fn strip_go_zero_values(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, v| {
                !(GO_NON_POINTER_FIELDS.contains(&k.as_str())
                    && (v == &json!(0) || v == &json!(false)))
            });
            for (_, child) in m.iter_mut() {
                strip_go_zero_values(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_go_zero_values),
        _ => {}
    }
}

fn render_one(
    r: &ResourceInfo,
    obj: &Value,
    output: Output,
    query: &Query,
    code: StatusCode,
) -> Response {
    match output {
        Output::Object => value_response(code, obj),
        Output::Table(mv) => {
            let include = IncludeObject::parse(query.get("includeObject"));
            let list_meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
            value_response(
                code,
                &table::table(r, std::slice::from_ref(obj), include, mv, list_meta, true),
            )
        }
        Output::Metadata(mv) => value_response(code, &table::partial(obj, mv)),
    }
}

/// Selectors and filters of a list or watch.
pub(crate) struct Filter {
    labels: Option<LabelSelector>,
    pub(crate) fields: Option<FieldSelector>,
}

impl Filter {
    /// The `labelSelector` and `fieldSelector` of a raw query string.
    pub(crate) fn from_query(r: &ResourceInfo, query: Option<&str>) -> ApiResult<Self> {
        Self::parse(r, &Query::parse(query))
    }

    fn parse(r: &ResourceInfo, q: &Query) -> ApiResult<Self> {
        let labels = match q.get("labelSelector").filter(|s| !s.is_empty()) {
            Some(s) => {
                Some(LabelSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?)
            }
            None => None,
        };
        let fields = match q.get("fieldSelector").filter(|s| !s.is_empty()) {
            Some(s) => {
                let f =
                    FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
                f.validate_for(r)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                Some(f)
            }
            None => None,
        };
        Ok(Self { labels, fields })
    }

    pub(crate) fn matches(&self, r: &ResourceInfo, obj: &Value) -> bool {
        self.labels.as_ref().is_none_or(|l| l.matches_object(obj))
            && self.fields.as_ref().is_none_or(|f| f.matches(r, obj))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: i64,
    start: String,
}

async fn list(reg: &Registry, t: &Target, q: &Query, output: Output) -> ApiResult<Response> {
    let filter = Filter::parse(t.r, q)?;
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let after = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let raw = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, c)
                .map_err(|_| {
                    ApiError::bad_request("continue key is not valid: illegal base64 data")
                })?;
            let tok: ContinueToken = serde_json::from_slice(&raw)
                .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
            Some(tok)
        }
        None => None,
    };
    if after.is_none()
        && let Some(rv) = q
            .get("resourceVersion")
            .filter(|s| !s.is_empty() && *s != "0")
    {
        let want: i64 = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
        let current = reg.cache().revision();
        if q.get("resourceVersionMatch") == Some("Exact") && want != current {
            // Only the current state is kept in memory; older snapshots are gone.
            return Err(ApiError::gone(want, current));
        }
        if want > current
            && tokio::time::timeout(Duration::from_secs(3), reg.cache().wait_for(want))
                .await
                .is_err()
        {
            return Err(ApiError::too_large_resource_version(
                want,
                reg.cache().revision(),
            ));
        }
    }
    let (objs, rev) = reg
        .list(
            t.r,
            t.ns.as_deref(),
            after.as_ref().map(|a| a.start.as_str()),
        )
        .await?;
    let list_rev = after.as_ref().map(|a| a.rv).unwrap_or(rev);
    let mut selected: Vec<Arc<Obj>> = Vec::new();
    let mut more = false;
    let mut remaining = 0usize;
    let storage = catalog::storage_info(t.r);
    for o in objs {
        if !filter.matches(storage, &o.value) {
            continue;
        }
        if selected.len() >= limit {
            more = true;
            remaining += 1;
            continue;
        }
        selected.push(o);
    }
    let mut list_meta = json!({"resourceVersion": list_rev.to_string()});
    if more && let Some(last) = selected.last() {
        let tok = serde_json::to_vec(&ContinueToken {
            rv: list_rev,
            start: last.key.clone(),
        })
        .expect("serializable");
        list_meta["continue"] = json!(base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            tok
        ));
        if filter.labels.is_none() && filter.fields.is_none() {
            list_meta["remainingItemCount"] = json!(remaining);
        }
    }
    match output {
        Output::Object => {
            // Concatenate the cached bytes: no re-serialization for the storage version.
            let mut buf =
                Vec::with_capacity(64 + selected.iter().map(|o| o.json.len() + 1).sum::<usize>());
            buf.extend_from_slice(
                format!(
                    "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
                    t.r.kind,
                    t.r.api_version(),
                    list_meta
                )
                .as_bytes(),
            );
            for (i, o) in selected.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                buf.extend_from_slice(&Registry::bytes_in_version(t.r, o));
            }
            buf.extend_from_slice(b"]}");
            Ok(json_response(StatusCode::OK, Bytes::from(buf)))
        }
        Output::Table(mv) => {
            let include = IncludeObject::parse(q.get("includeObject"));
            let objs: Vec<Value> = selected
                .iter()
                .map(|o| Registry::to_version(t.r, o))
                .collect();
            Ok(value_response(
                StatusCode::OK,
                &table::table(t.r, &objs, include, mv, list_meta, true),
            ))
        }
        Output::Metadata(mv) => {
            let items: Vec<Value> = selected
                .iter()
                .map(|o| table::partial(&o.value, mv))
                .collect();
            Ok(value_response(
                StatusCode::OK,
                &json!({"kind": "PartialObjectMetadataList", "apiVersion": mv, "metadata": list_meta, "items": items}),
            ))
        }
    }
}

async fn delete_collection(
    reg: &Registry,
    t: &Target,
    q: &Query,
    body: &[u8],
) -> ApiResult<Response> {
    let filter = Filter::parse(t.r, q)?;
    let body_v: Option<Value> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(body).ok()
    };
    let opts = DeleteOptions::from_parts(body_v.as_ref(), &|k| q.get(k).map(str::to_string))?;
    let (objs, rev) = reg.list(t.r, t.ns.as_deref(), None).await?;
    let storage = catalog::storage_info(t.r);
    let mut items = Vec::new();
    for o in objs.iter().filter(|o| filter.matches(storage, &o.value)) {
        let ns = if t.r.namespaced {
            Some(meta::namespace(&o.value))
        } else {
            None
        };
        match reg.delete(t.r, ns, meta::name(&o.value), &opts).await {
            Ok((v, _)) => items.push(v),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(value_response(
        StatusCode::OK,
        &json!({"kind": format!("{}List", t.r.kind), "apiVersion": t.r.api_version(), "metadata": {"resourceVersion": rev.to_string()}, "items": items}),
    ))
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// Renders one watch event's object in the negotiated form.
struct WatchRenderer {
    r: &'static ResourceInfo,
    output: Output,
    include: IncludeObject,
    sent_columns: bool,
}

impl WatchRenderer {
    /// Renders a cached object. In the common case (JSON in the storage
    /// version) the line is the cached bytes wrapped: nothing is cloned or
    /// serialized per watcher, so fan-out to many watchers stays cheap.
    fn render_cached(&mut self, kind: &str, obj: &Obj) -> Bytes {
        let storage = catalog::storage_info(self.r);
        if self.output == Output::Object
            && storage.group == self.r.group
            && storage.version == self.r.version
        {
            let mut line = Vec::with_capacity(obj.json.len() + 40);
            line.extend_from_slice(b"{\"type\":\"");
            line.extend_from_slice(kind.as_bytes());
            line.extend_from_slice(b"\",\"object\":");
            line.extend_from_slice(&obj.json);
            line.extend_from_slice(b"}\n");
            return Bytes::from(line);
        }
        self.render(kind, &Registry::to_version(self.r, obj))
    }

    fn render(&mut self, kind: &str, obj: &Value) -> Bytes {
        match self.output {
            Output::Object => event_line(kind, obj),
            Output::Metadata(mv) => event_line(kind, &table::partial(obj, mv)),
            Output::Table(mv) => {
                let cols = !self.sent_columns;
                self.sent_columns = true;
                let t = table::table(
                    self.r,
                    std::slice::from_ref(obj),
                    self.include,
                    mv,
                    json!({"resourceVersion": obj["metadata"]["resourceVersion"]}),
                    cols,
                );
                event_line(kind, &t)
            }
        }
    }
}

async fn watch(server: Arc<Server>, t: &Target, q: &Query, output: Output) -> ApiResult<Response> {
    let r = t.r;
    let storage = catalog::storage_info(r);
    let filter = Filter::parse(r, q)?;
    let reg = server.registry();
    reg.sync().await?;
    let prefix = crate::registry::prefix(storage, t.ns.as_deref());
    let bookmarks = q.flag("allowWatchBookmarks");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800 + rand::random::<u64>() % 1800));
    let rv = q.get("resourceVersion").filter(|s| !s.is_empty());
    let send_initial = match q.get("sendInitialEvents") {
        Some("true") => true,
        Some(_) => false,
        None => rv.is_none() || rv == Some("0"),
    };
    let mut renderer = WatchRenderer {
        r,
        output,
        include: IncludeObject::parse(q.get("includeObject")),
        sent_columns: false,
    };

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let cache = reg.cache().clone();
    let mut start_after = 0;
    let (initial, sub) = if send_initial || rv.is_none() {
        let (items, sub) = cache.snapshot_and_subscribe(&prefix);
        (items, sub)
    } else {
        let after: i64 = rv.and_then(|s| s.parse().ok()).ok_or_else(|| {
            ApiError::bad_request(format!("invalid resource version: {}", rv.unwrap_or("")))
        })?;
        start_after = after;
        match cache.subscribe(after) {
            Ok(sub) => (Vec::new(), sub),
            Err(oldest) => {
                // Kubernetes answers an expired watch with an ERROR event, not an HTTP error.
                let status = ApiError::gone(after, oldest).status();
                let line = event_line("ERROR", &status);
                return Ok(stream_response(
                    futures::stream::once(async move { line }).boxed(),
                ));
            }
        }
    };
    let kind_name = r.kind;
    let api_version = r.api_version();
    tokio::spawn(async move {
        let mut last = sub.rev.max(start_after);
        for o in &initial {
            if filter.matches(storage, &o.value)
                && tx.send(renderer.render_cached("ADDED", o)).await.is_err()
            {
                return;
            }
        }
        if send_initial && bookmarks {
            let bm = json!({"kind": kind_name, "apiVersion": api_version, "metadata": {"resourceVersion": last.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
            if tx.send(event_line("BOOKMARK", &bm)).await.is_err() {
                return;
            }
        }
        let mut live = sub.live;
        let emit = |ev: &CacheEvent, renderer: &mut WatchRenderer| -> Option<Bytes> {
            if !ev.obj.key.starts_with(&prefix) {
                return None;
            }
            let now_match = filter.matches(storage, &ev.obj.value);
            let was_match = ev
                .prev
                .as_ref()
                .is_some_and(|p| filter.matches(storage, &p.value));
            let kind = match ev.kind {
                WatchKind::Deleted => {
                    if now_match || was_match {
                        "DELETED"
                    } else {
                        return None;
                    }
                }
                WatchKind::Added | WatchKind::Modified => match (was_match, now_match) {
                    (false, true) => "ADDED",
                    (true, true) => "MODIFIED",
                    (true, false) => "DELETED",
                    (false, false) => return None,
                },
            };
            Some(renderer.render_cached(kind, &ev.obj))
        };
        for ev in &sub.backlog {
            if let Some(line) = emit(ev, &mut renderer)
                && tx.send(line).await.is_err()
            {
                return;
            }
            last = last.max(ev.rev());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
                _ = tick.tick(), if bookmarks => {
                    let bm = json!({"kind": kind_name, "apiVersion": api_version, "metadata": {"resourceVersion": last.to_string()}});
                    if tx.send(event_line("BOOKMARK", &bm)).await.is_err() { return; }
                }
                ev = live.recv() => match ev {
                    Ok(ev) => {
                        if ev.rev() <= last { continue; }
                        last = ev.rev();
                        if let Some(line) = emit(&ev, &mut renderer)
                            && tx.send(line).await.is_err() { return; }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let status = ApiError::gone(last, last).status();
                        let _ = tx.send(event_line("ERROR", &status)).await;
                        return;
                    }
                    Err(_) => return,
                }
            }
        }
    });
    let stream = tokio_stream_from(rx);
    Ok(stream_response(stream))
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> futures::stream::BoxStream<'static, Bytes> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

fn stream_response(stream: futures::stream::BoxStream<'static, Bytes>) -> Response {
    let body = Body::from_stream(stream.map(Ok::<_, std::convert::Infallible>));
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_resources() {
        let t = parse_target(
            "",
            "v1",
            &["namespaces", "default", "pods", "web", "status"],
        )
        .unwrap();
        assert_eq!(t.r.resource, "pods");
        assert_eq!(t.ns.as_deref(), Some("default"));
        assert_eq!(t.sub.as_deref(), Some("status"));
        let t = parse_target("", "v1", &["namespaces", "kube-system"]).unwrap();
        assert_eq!(t.r.resource, "namespaces");
        assert_eq!(t.name.as_deref(), Some("kube-system"));
        let t = parse_target("", "v1", &["pods"]).unwrap();
        assert!(t.ns.is_none() && t.name.is_none());
        assert!(
            parse_target("", "v1", &["pods", "x"]).is_none(),
            "namespaced items need a namespace"
        );
        let t = parse_target(
            "apps",
            "v1",
            &["namespaces", "d", "deployments", "x", "scale"],
        )
        .unwrap();
        assert_eq!(t.sub.as_deref(), Some("scale"));
        assert!(parse_target("", "v1", &["namespaces", "d", "configmaps", "x", "scale"]).is_none());
    }
}
