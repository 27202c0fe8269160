//! Content negotiation for `meta.k8s.io` Tables and PartialObjectMetadata,
//! which `kubectl get` asks for.

use serde_json::{Value, json};
use skiff_api::ResourceInfo;
use skiff_api::printers;

/// What form the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The objects themselves.
    Object,
    /// A `Table` (`as=Table;g=meta.k8s.io;v=v1` or `v1beta1`), with its apiVersion.
    Table(&'static str),
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata(&'static str),
}

/// What `includeObject` asked rows to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object.
    None,
    /// PartialObjectMetadata (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` parameter.
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// Picks the output form from an Accept header, in the client's order of preference.
pub fn negotiate(accept: &str) -> Output {
    for part in accept.split(',') {
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or("");
        if media != "application/json" && media != "*/*" && media != "application/*" {
            continue;
        }
        let (mut as_, mut g, mut v) = ("", "", "");
        for p in params {
            if let Some((k, val)) = p.split_once('=') {
                match k.trim() {
                    "as" => as_ = val.trim(),
                    "g" => g = val.trim(),
                    "v" => v = val.trim(),
                    _ => {}
                }
            }
        }
        if as_.is_empty() {
            return Output::Object;
        }
        if g != "meta.k8s.io" {
            continue;
        }
        let version = match v {
            "v1" => "meta.k8s.io/v1",
            "v1beta1" => "meta.k8s.io/v1beta1",
            _ => continue,
        };
        match as_ {
            "Table" => return Output::Table(version),
            "PartialObjectMetadata" | "PartialObjectMetadataList" => {
                return Output::Metadata(version);
            }
            _ => continue,
        }
    }
    Output::Object
}

/// The PartialObjectMetadata of an object.
pub fn partial(obj: &Value, api_version: &str) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": api_version, "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

/// The column definitions of a kind's table.
pub fn column_definitions(r: &ResourceInfo) -> Vec<Value> {
    printers::columns(r)
        .into_iter()
        .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect()
}

/// One table row for an object.
pub fn row(
    r: &ResourceInfo,
    obj: &Value,
    include: IncludeObject,
    meta_version: &str,
    now: jiff::Timestamp,
) -> Value {
    let cells = printers::row(r, obj, now);
    let mut row = json!({"cells": cells});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => row["object"] = partial(obj, meta_version),
        IncludeObject::Object => row["object"] = obj.clone(),
    }
    row
}

/// A whole table.
pub fn table(
    r: &ResourceInfo,
    objs: &[Value],
    include: IncludeObject,
    meta_version: &str,
    list_meta: Value,
    with_columns: bool,
) -> Value {
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| row(r, o, include, meta_version, now))
        .collect();
    let mut t =
        json!({"kind": "Table", "apiVersion": meta_version, "metadata": list_meta, "rows": rows});
    if with_columns {
        t["columnDefinitions"] = json!(column_definitions(r));
    } else {
        t["columnDefinitions"] = json!(null);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_accept_header_selects_table_v1() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(a), Output::Table("meta.k8s.io/v1"));
        assert_eq!(negotiate("application/json"), Output::Object);
        assert_eq!(
            negotiate("application/vnd.kubernetes.protobuf, */*"),
            Output::Object
        );
        assert_eq!(
            negotiate("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
            Output::Metadata("meta.k8s.io/v1")
        );
    }
}
