//! `kubectl get` tables: column definitions and rows per kind.

use crate::catalog::ResourceInfo;
use serde_json::Value;

/// One column of a table, as `meta.k8s.io/v1 TableColumnDefinition`.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Header, e.g. `Name`.
    pub name: &'static str,
    /// `string`, `integer`, `date`, …
    pub type_: &'static str,
    /// OpenAPI format, e.g. `name`.
    pub format: &'static str,
    /// Description.
    pub description: &'static str,
    /// 0 for default columns, 1 for `-o wide`.
    pub priority: u8,
}

/// The columns for this kind.
pub fn columns(_r: &ResourceInfo) -> Vec<Column> {
    vec![Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: "Name",
        priority: 0,
    }]
}

/// One row's cells for this kind, `now` giving ages.
pub fn row(_r: &ResourceInfo, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
    vec![Value::String(crate::meta::name(obj).to_string())]
}
