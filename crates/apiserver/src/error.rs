//! API errors, answered as Kubernetes `Status` objects so kubectl prints the
//! same messages it prints against Kubernetes.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use skiff_api::{FieldError, ResourceInfo};

/// An error answered to a client as a `Status`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason` (NotFound, AlreadyExists, Conflict, Invalid, …).
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`, if any.
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 404: `pods "x" not found`.
    pub fn not_found(r: &ResourceInfo, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(r)),
        )
        .with_details(json!({"name": name, "group": r.group, "kind": r.resource}))
    }

    /// 404 for a path that names nothing served.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    /// 409: `pods "x" already exists`.
    pub fn already_exists(r: &ResourceInfo, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(r)),
        )
        .with_details(json!({"name": name, "group": r.group, "kind": r.resource}))
    }

    /// 409: a stale resourceVersion.
    pub fn conflict(r: &ResourceInfo, name: &str) -> Self {
        Self::conflict_because(
            r,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 with a specific reason text.
    pub fn conflict_because(r: &ResourceInfo, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                qualified(r)
            ),
        )
        .with_details(json!({"name": name, "group": r.group, "kind": r.resource}))
    }

    /// 422: `Pod "x" is invalid: …` with one cause per field.
    pub fn invalid(r: &ResourceInfo, name: &str, errors: &[FieldError]) -> Self {
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.kind.reason(), "message": e.body(), "field": e.field}))
            .collect();
        let kind = if r.group.is_empty() {
            r.kind.to_string()
        } else {
            format!("{}.{}", r.kind, r.group)
        };
        Self::new(
            422,
            "Invalid",
            format!(
                "{kind} \"{name}\" is invalid: {}",
                skiff_api::field::aggregate(errors)
            ),
        )
        .with_details(json!({"name": name, "group": r.group, "kind": r.kind, "causes": causes}))
    }

    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 with a message.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 406.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    /// 415.
    pub fn unsupported_media_type(ct: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {ct}"
            ),
        )
    }

    /// 410: the requested resourceVersion is compacted.
    pub fn gone(requested: i64, oldest: i64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// 504: the client asked for a revision the server has not reached.
    pub fn too_large_resource_version(requested: i64, current: i64) -> Self {
        Self::new(504, "Timeout", format!("Too large resource version: {requested}, current: {current}"))
            .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}))
    }

    /// 403 for a path the caller may not use.
    pub fn forbidden_path(path: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!("forbidden: User cannot access path \"{path}\""),
        )
        .with_details(json!({}))
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// The error a remote `Status` object (e.g. from an agent) describes.
    pub fn from_status(code: u16, status: &Value) -> Self {
        let reason = match status["reason"].as_str().unwrap_or("") {
            "BadRequest" => "BadRequest",
            "NotFound" => "NotFound",
            "Forbidden" => "Forbidden",
            "Unauthorized" => "Unauthorized",
            "ServiceUnavailable" => "ServiceUnavailable",
            "Timeout" => "Timeout",
            "TooManyRequests" => "TooManyRequests",
            _ if code == 400 => "BadRequest",
            _ => "InternalError",
        };
        let mut e = Self::new(
            code,
            reason,
            status["message"].as_str().unwrap_or("").to_string(),
        );
        if status["details"].is_object() {
            e.details = Some(status["details"].clone());
        }
        e
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// `pods` or `deployments.apps`, as Kubernetes names a resource in messages.
pub fn qualified(r: &ResourceInfo) -> String {
    if r.group.is_empty() {
        r.resource.to_string()
    } else {
        format!("{}.{}", r.resource, r.group)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        let mut resp = (
            StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        )
            .into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

impl From<skiff_store::StoreError> for ApiError {
    fn from(e: skiff_store::StoreError) -> Self {
        match e {
            skiff_store::StoreError::Compacted {
                requested,
                compacted,
            } => Self::gone(requested, compacted),
            other => Self::internal(other.to_string()),
        }
    }
}

/// Result of an API operation.
pub type ApiResult<T> = Result<T, ApiError>;
