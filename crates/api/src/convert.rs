//! Conversion between versions that share storage: core/v1 and
//! events.k8s.io/v1 Events, autoscaling/v2 and autoscaling/v1 HPAs.

use crate::catalog::ResourceInfo;
use serde_json::Value;

/// Converts an object from one version of a storage to another. Objects of
/// the same group and version are returned as they are.
pub fn convert(obj: Value, from: &ResourceInfo, to: &ResourceInfo) -> Value {
    if from.group == to.group && from.version == to.version {
        return obj;
    }
    let mut obj = obj;
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(to.api_version()));
        m.insert("kind".into(), Value::String(to.kind.into()));
    }
    obj
}
